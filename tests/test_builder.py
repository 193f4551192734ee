"""build_dissimilarity / store_info: round trips, metadata, resumption, overwrite rules."""

import json
import os

import h5py
import numpy as np
import pytest
import zarr
from scipy.spatial.distance import cdist

import chunked_medoids.builder as builder
from chunked_medoids import (
    IncompleteStoreError,
    InvalidParameterError,
    InvalidTypeError,
    StoreCorruptionError,
    StoreExistsError,
    StoreLockedError,
    UnknownNameError,
    UnsupportedDtypeError,
    _budget,
    build_dissimilarity,
    from_features,
    open_dissimilarity,
)
from chunked_medoids._store_meta import ATTR
from chunked_medoids._version import __version__
from chunked_medoids.builder import COMPRESSORS, plan_stripes, store_info


@pytest.fixture
def X(rng):
    return rng.normal(size=(61, 4))


def _meta(path, dataset="dissimilarity"):
    if str(path).endswith(".zarr"):
        return dict(zarr.open_array(str(path), mode="r").attrs[ATTR])
    with h5py.File(path, "r") as f:
        return json.loads(f[dataset].attrs[ATTR])


def _full(src):
    return src.read_rows(0, src.n)


def _check_valid(D):
    assert np.array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    assert np.isfinite(D).all()


SCIPY = {"euclidean": "euclidean", "manhattan": "cityblock", "chebyshev": "chebyshev",
         "cosine": "cosine", "sqeuclidean": "sqeuclidean"}


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
@pytest.mark.parametrize("metric,dtype", [("euclidean", "float32"), ("manhattan", "float64"),
                                          ("cosine", "float64"), ("chebyshev", "float32")])
def test_round_trip_matches_cdist_and_features_source(tmp_path, X, suffix, metric, dtype):
    path = tmp_path / f"m{suffix}"
    src = build_dissimilarity(X, path, metric, dtype=dtype, block_rows=9)
    assert src.kind == ("zarr" if suffix == ".zarr" else "hdf5")
    assert src.n == 61 and src.dtype == np.dtype(dtype)
    D = _full(src)
    ref = cdist(X, X, SCIPY[metric])
    np.fill_diagonal(ref, 0)
    tol = 1e-6 if dtype == "float32" else 1e-12
    np.testing.assert_allclose(D, ref, rtol=tol, atol=tol)
    # bit-identical to the on-the-fly source with the same dtype, whatever the blocks
    np.testing.assert_array_equal(D, from_features(X, metric, dtype=dtype).read_rows(0, 61))
    _check_valid(D)


def test_minkowski_params_and_stripe_height_do_not_change_values(tmp_path, X):
    a = _full(build_dissimilarity(X, tmp_path / "a.zarr", "minkowski", p=3, block_rows=5))
    b = _full(build_dissimilarity(X, tmp_path / "b.zarr", "minkowski", p=3, block_rows=61))
    c = _full(build_dissimilarity(X, tmp_path / "c.h5", "minkowski", p=3, block_rows=13))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, c)
    np.testing.assert_allclose(a, cdist(X, X, "minkowski", p=3), rtol=1e-6, atol=1e-6)


def test_integer_dtype_for_integer_valued_metric(tmp_path, rng):
    Xi = rng.integers(0, 20, size=(40, 3)).astype(np.float64)
    src = build_dissimilarity(Xi, tmp_path / "i.zarr", "manhattan", dtype="int32", block_rows=7)
    D = _full(src)
    assert D.dtype == np.int32
    np.testing.assert_array_equal(D, cdist(Xi, Xi, "cityblock").astype(np.int32))
    _check_valid(D)
    assert store_info(tmp_path / "i.zarr")["fill_value"] == -1


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_metadata_content(tmp_path, X, suffix):
    path = tmp_path / f"m{suffix}"
    build_dissimilarity(X, path, "minkowski", p=2.5, dtype="float64", block_rows=10)
    meta = _meta(path)
    assert meta["format"] == 1 and meta["n"] == 61 and meta["dtype"] == "float64"
    assert meta["metric"] == "minkowski" and meta["metric_params"] == {"p": 2.5}
    assert meta["version"] == __version__
    assert meta["stripe_rows"] == 10 and meta["n_stripes"] == 7
    assert meta["completed_stripes"] == list(range(7)) and meta["complete"] is True
    assert meta["features_shape"] == [61, 4]
    # the fingerprint is a content hash of X: same values in another array -> same; else not
    fp = meta["features_fingerprint"]
    assert fp == builder._features_hash(from_features(X.copy()))
    build_dissimilarity(X + 1e-9, tmp_path / f"o{suffix}", "minkowski", p=2.5, dtype="float64")
    assert _meta(tmp_path / f"o{suffix}")["features_fingerprint"] != fp
    if suffix == ".zarr":
        arr = zarr.open_array(str(path), mode="r")
        assert arr.chunks == (10, 61)  # one chunk = one row stripe
        assert np.isnan(arr.fill_value)
        assert os.path.isfile(path / "c" / "6" / "0")
    else:
        with h5py.File(path, "r") as f:
            d = f["dissimilarity"]
            assert np.isnan(d.fillvalue) and d.compression == "lzf"
            assert 10 % d.chunks[0] == 0 and d.chunks[1] == 61


def test_lost_chunk_reads_nan_and_is_repaired(tmp_path, X, monkeypatch):
    path = tmp_path / "m.zarr"
    build_dissimilarity(X, path, block_rows=10)
    os.remove(path / "c" / "2" / "0")
    src = open_dissimilarity(path)  # metadata still says complete ...
    # ... but the lost stripe is reported, never read as plausible zeros (or as NaN)
    with pytest.raises(StoreCorruptionError, match="rows 20:30"):
        src.read_rows(20, 30)
    assert store_info(path)["missing_stripes"] == 1  # store_info looks at the chunks themselves
    # a rebuild with the same arguments repairs exactly that stripe
    calls = _counting(monkeypatch, "_write_zarr_stripe")
    src = build_dissimilarity(X, path, block_rows=10)
    assert calls == [20]
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))
    assert _meta(path)["complete"] is True and store_info(path)["missing_stripes"] == 0


# ---------------------------------------------------------------------------------------
# resumption
# ---------------------------------------------------------------------------------------
class Boom(RuntimeError):
    pass


def _counting(monkeypatch, name, fail_at=None):
    """Wrap builder.<name> (the stripe task): count calls, raise on call number fail_at."""
    orig = getattr(builder, name)
    calls = []

    def wrapper(block, start, stop, state):
        calls.append(start)
        if fail_at is not None and len(calls) == fail_at:
            raise Boom(f"injected failure in stripe {start}:{stop}")
        return orig(block, start, stop, state)

    monkeypatch.setattr(builder, name, wrapper)
    return calls


@pytest.mark.parametrize("suffix,task", [(".zarr", "_write_zarr_stripe"), (".h5", "_return_block")])
def test_resume_computes_only_missing_stripes(tmp_path, X, monkeypatch, suffix, task):
    path = tmp_path / f"m{suffix}"
    n_stripes = 9  # 61 rows, 7 per stripe
    with monkeypatch.context() as mp:
        calls = _counting(mp, task, fail_at=4)
        with pytest.raises(Boom):
            build_dissimilarity(X, path, block_rows=7, num_workers=1)
        assert len(calls) == 4
    meta = _meta(path)
    assert meta["complete"] is False
    done = len(meta["completed_stripes"])
    assert done == 3  # stripes finished before the failure were recorded
    info = store_info(path)
    assert info["complete"] is False and info["completed_stripes"] == 3 and info["missing_stripes"] == 6
    # an incomplete store refuses to open for clustering and says how much is missing
    with pytest.raises(IncompleteStoreError, match=r"6 of 9 row stripes"):
        open_dissimilarity(path)
    part = open_dissimilarity(path, allow_incomplete=True)
    lost = min(set(range(n_stripes)) - set(meta["completed_stripes"]))
    assert np.isnan(part.read_rows(7 * lost, min(7 * lost + 7, 61))).all()
    kept = min(meta["completed_stripes"])
    assert np.isfinite(part.read_rows(7 * kept, min(7 * kept + 7, 61))).all()
    part.close()  # HDF5: a file open for reading cannot be reopened for writing in-process
    # rerun with the same arguments: only the 6 missing stripes are computed
    calls = _counting(monkeypatch, task)
    src = build_dissimilarity(X, path, block_rows=7)
    assert len(calls) == n_stripes - done
    assert sorted(calls) == [7 * i for i in range(n_stripes) if i not in meta["completed_stripes"]]
    assert _meta(path)["complete"] is True
    fresh = build_dissimilarity(X, tmp_path / f"fresh{suffix}", block_rows=7)
    np.testing.assert_array_equal(_full(src), _full(fresh))  # bit for bit


def test_resume_parallel_failure_then_finish(tmp_path, X, monkeypatch):
    path = tmp_path / "p.zarr"
    with monkeypatch.context() as mp:
        _counting(mp, "_write_zarr_stripe", fail_at=5)
        with pytest.raises(Boom):
            build_dissimilarity(X, path, block_rows=5, num_workers=2)
    assert _meta(path)["complete"] is False
    src = build_dissimilarity(X, path, block_rows=5)
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))


def test_resume_keeps_store_stripes_and_rejects_other_arguments(tmp_path, X, monkeypatch):
    path = tmp_path / "r.zarr"
    with monkeypatch.context() as mp:
        _counting(mp, "_write_zarr_stripe", fail_at=2)
        with pytest.raises(Boom):
            build_dissimilarity(X, path, block_rows=7, num_workers=1)
    # other metric / dtype / X / explicit stripe height: refused, store untouched
    for kwargs, what in [({"metric": "manhattan"}, "metric"), ({"dtype": "float64"}, "dtype"),
                         ({"block_rows": 8}, "stripe_rows")]:
        with pytest.raises(StoreExistsError, match=what):
            build_dissimilarity(X, path, **kwargs)
    with pytest.raises(StoreExistsError, match="features X"):
        build_dissimilarity(X * 2, path, block_rows=7)
    assert _meta(path)["complete"] is False
    # no block_rows: the store's stripe height is reused when it fits the budget
    calls = _counting(monkeypatch, "_write_zarr_stripe")
    src = build_dissimilarity(X, path, memory_limit="64MiB")
    assert len(calls) == 8 and _meta(path)["stripe_rows"] == 7
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))


def test_resume_refuses_budget_too_small_for_store_stripes(tmp_path, rng, monkeypatch):
    Xb = rng.random((300, 2))
    path = tmp_path / "b.zarr"
    with monkeypatch.context() as mp:
        _counting(mp, "_write_zarr_stripe", fail_at=2)
        with pytest.raises(Boom):
            build_dissimilarity(Xb, path, block_rows=300 // 2, num_workers=1)
    with pytest.raises(InvalidParameterError, match="memory_limit"):
        build_dissimilarity(Xb, path, memory_limit=2**16)


# ---------------------------------------------------------------------------------------
# overwrite rules
# ---------------------------------------------------------------------------------------
def test_complete_store_same_arguments_returned_unchanged(tmp_path, X, monkeypatch):
    path = tmp_path / "c.zarr"
    build_dissimilarity(X, path, block_rows=10)
    before = {p: os.stat(os.path.join(dp, p)).st_mtime_ns
              for dp, _, fs in os.walk(path) for p in fs}
    calls = _counting(monkeypatch, "_write_zarr_stripe")
    src = build_dissimilarity(X.copy(), path, memory_limit="16MiB", block_rows=20)
    assert calls == []
    after = {p: os.stat(os.path.join(dp, p)).st_mtime_ns for dp, _, fs in os.walk(path) for p in fs}
    assert before == after and src.block_rows == 10
    with pytest.raises(StoreExistsError, match="complete matrix built with other arguments"):
        build_dissimilarity(X, path, "manhattan")
    src = build_dissimilarity(X, path, "manhattan", overwrite=True)
    np.testing.assert_allclose(_full(src), cdist(X, X, "cityblock"), rtol=1e-6)
    assert _meta(path)["metric"] == "manhattan"


def test_foreign_stores_are_never_touched(tmp_path, X):
    zpath = tmp_path / "f.zarr"
    z = zarr.create_array(str(zpath), shape=(61, 61), chunks=(61, 61), dtype="f4")
    z[:] = 1.0
    with pytest.raises(StoreExistsError, match="not written by build_dissimilarity"):
        build_dissimilarity(X, zpath)
    assert np.all(zarr.open_array(str(zpath), mode="r")[:] == 1.0)
    build_dissimilarity(X, zpath, overwrite=True)
    assert _meta(zpath)["complete"] is True

    notes = tmp_path / "notes.h5"
    notes.write_text("not hdf5")
    with pytest.raises(StoreExistsError):
        build_dissimilarity(X, notes)
    assert notes.read_text() == "not hdf5"

    hpath = tmp_path / "f.h5"
    with h5py.File(hpath, "w") as f:
        f["dissimilarity"] = np.ones((61, 61), np.float32)
        f["other"] = np.arange(5)
    with pytest.raises(StoreExistsError):
        build_dissimilarity(X, hpath)
    # another dataset name: added next to the existing ones
    src = build_dissimilarity(X, hpath, dataset="euclid")
    assert src.dataset.strip("/") == "euclid"
    # overwrite replaces only the named dataset
    build_dissimilarity(X, hpath, "manhattan", overwrite=True)
    with h5py.File(hpath, "r") as f:
        assert set(f.keys()) == {"dissimilarity", "other", "euclid"}
        np.testing.assert_array_equal(f["other"][:], np.arange(5))
        assert json.loads(f["dissimilarity"].attrs[ATTR])["metric"] == "manhattan"


def test_concurrent_build_is_locked_out(tmp_path, X):
    path = tmp_path / "l.zarr"
    with builder._build_lock(str(path)):
        with pytest.raises(StoreLockedError, match="another process"):
            build_dissimilarity(X, path)
    assert not os.path.exists(path)
    build_dissimilarity(X, path)
    assert not os.path.exists(str(path) + ".lock")


# ---------------------------------------------------------------------------------------
# validation
# ---------------------------------------------------------------------------------------
def test_nonfinite_features_rejected_before_anything_is_written(tmp_path, X):
    Xn = X.copy()
    Xn[17, 2] = np.nan
    for name in ("n.zarr", "n.h5"):
        with pytest.raises(InvalidParameterError, match=r"X\[17, 2\]"):
            build_dissimilarity(Xn, tmp_path / name)
        assert not os.path.exists(tmp_path / name)
    Xn[17, 2] = np.inf
    with pytest.raises(InvalidParameterError):
        build_dissimilarity(Xn, tmp_path / "i.zarr")
    assert os.listdir(tmp_path) == []


@pytest.mark.parametrize("kwargs,exc,match", [
    ({"store": "m.npy"}, InvalidParameterError, "store must end in"),
    ({"store": 3}, InvalidTypeError, "store must be a path"),
    ({"dtype": "int16"}, UnsupportedDtypeError, "dtype"),
    ({"dtype": "int8"}, UnsupportedDtypeError, "dtype"),
    ({"dtype": "banana"}, UnsupportedDtypeError, "dtype"),
    ({"memory_limit": "lots"}, InvalidParameterError, "memory_limit"),
    ({"memory_limit": 10}, InvalidParameterError, "memory_limit"),
    ({"memory_limit": True}, InvalidTypeError, "memory_limit"),
    ({"block_rows": 0}, InvalidParameterError, "block_rows"),
    ({"block_rows": 2.5}, InvalidTypeError, "block_rows"),
    ({"compressor": "snappy"}, UnknownNameError, "compressor"),
    ({"compressor": "lzf"}, InvalidParameterError, "lzf"),
    ({"compressor": 5}, InvalidTypeError, "compressor"),
    ({"dataset": "other"}, InvalidParameterError, "dataset"),
    ({"overwrite": "yes"}, InvalidTypeError, "overwrite"),
    ({"metric": "nope"}, UnknownNameError, "nope"),
])
def test_bad_arguments_raise_typed_errors(tmp_path, X, kwargs, exc, match):
    kwargs = dict(kwargs)
    store = kwargs.pop("store", "m.zarr")
    store = tmp_path / store if isinstance(store, str) else store
    with pytest.raises(exc, match=match):
        build_dissimilarity(X, store, **kwargs)
    assert os.listdir(tmp_path) == []


def test_bad_hdf5_dataset_and_compressor(tmp_path, X):
    with pytest.raises(InvalidParameterError, match="dataset"):
        build_dissimilarity(X, tmp_path / "m.h5", dataset="")
    with pytest.raises(InvalidParameterError, match="unknown"):
        build_dissimilarity(X, tmp_path / "m.h5", compressor={"compresion": "gzip"})
    assert os.listdir(tmp_path) == []


# ---------------------------------------------------------------------------------------
# compressors, store_info, progress, sizing
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_every_available_compressor_round_trips(tmp_path, X, fmt):
    ref = from_features(X).read_rows(0, 61)
    names = [None, "default"] + [k for k, v in COMPRESSORS.items() if (v[1] if fmt == "zarr" else v[2])]
    if fmt == "hdf5":
        pytest.importorskip("hdf5plugin")  # blosc/zstd filters; readers import it too
        import hdf5plugin  # noqa: F401
    for i, name in enumerate(names):
        path = tmp_path / (f"c{i}.zarr" if fmt == "zarr" else f"c{i}.h5")
        np.testing.assert_array_equal(_full(build_dissimilarity(X, path, compressor=name)), ref)
        assert _meta(path)["compressor"] == {None: "none", "default": builder._DEFAULT_COMPRESSOR[fmt]}.get(name, name)


def test_store_info(tmp_path, X):
    zp = tmp_path / "s.zarr"
    build_dissimilarity(X, zp, "minkowski", p=3, block_rows=16, compressor=None)
    info = store_info(zp)
    json.dumps(info)  # JSON-able for the CLI
    assert info["format"] == "zarr" and info["shape"] == [61, 61] and info["dtype"] == "float32"
    assert info["chunks"] == [16, 61] and info["managed"] and info["complete"]
    assert info["metric"] == "minkowski" and info["metric_params"] == {"p": 3.0}
    assert (info["stripe_rows"], info["n_stripes"], info["completed_stripes"], info["missing_stripes"]) == (16, 4, 4, 0)
    assert info["nbytes"] == 61 * 61 * 4 and info["fill_value"] == "NaN"
    assert info["stored_bytes"] == 4 * 16 * 61 * 4  # edge chunk stored padded
    assert info["compression_ratio"] == pytest.approx(1.0, rel=1e-2)  # uncompressed (+ crc32c)
    assert info["size_on_disk"] > info["stored_bytes"]  # + zarr.json

    hp = tmp_path / "s.h5"
    Xr = np.repeat(X[:4], 16, axis=0)  # few distinct rows: compressible
    build_dissimilarity(Xr, hp, compressor="gzip")
    info = store_info(hp)
    assert info["format"] == "hdf5" and info["dataset"] == "/dissimilarity" and info["compression"] == "gzip"
    assert info["complete"] and info["completed_stripes"] == info["n_stripes"]
    assert info["compression_ratio"] > 2

    foreign = tmp_path / "x.h5"
    with h5py.File(foreign, "w") as f:
        f["D"] = np.zeros((3, 3), np.float64)
    info = store_info(foreign)
    assert not info["managed"] and info["complete"] and info["metric"] is None and info["dataset"] == "/D"
    with pytest.raises(FileNotFoundError):
        store_info(tmp_path / "missing.zarr")


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_progress_bar(tmp_path, X, suffix, capsys):
    build_dissimilarity(X, tmp_path / f"p{suffix}", block_rows=20, progress=True)
    assert "build stripes" in capsys.readouterr().err


@pytest.mark.parametrize("n,d,itemsize,limit,p", [
    (20000, 3, 4, 256 << 20, 2), (6000, 50, 8, 32 << 20, 4), (100, 2, 4, 1 << 16, 1),
    (10**6, 10, 4, 1 << 30, 8), (5000, 3, 4, 1 << 30, 2),
])
@pytest.mark.parametrize("fmt", ["zarr", "hdf5"])
def test_plan_stripes_fits_budget(n, d, itemsize, limit, p, fmt):
    plan = plan_stripes(n, d, itemsize, limit, p, fmt=fmt)
    m = plan["stripe_rows"]
    assert 1 <= m <= n and plan["n_stripes"] == -(-n // m)
    if plan["max_rows"] > 1:
        assert plan["estimated_peak"] <= limit
    assert m * n * itemsize <= max(builder.MAX_STRIPE_BYTES, n * itemsize)
    if fmt == "hdf5":
        assert m % plan["h5_chunk_rows"] == 0
    assert plan_stripes(n, d, itemsize, limit, p, block_rows=7, fmt=fmt)["stripe_rows"] == min(7, n)
    if n == 5000:  # small matrix, large budget: at least 4 stripes per thread
        assert plan["n_stripes"] >= 4 * p


@pytest.mark.distributed
@pytest.mark.parametrize("suffix,compressor", [(".zarr", "default"), (".h5", "default"), (".h5", "gzip")])
def test_distributed_client_builds_same_matrix(tmp_path, X, local_cluster, suffix, compressor):
    path = tmp_path / f"d{suffix}"
    src = build_dissimilarity(X, path, block_rows=8, client=local_cluster, compressor=compressor)
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))
    assert _meta(path)["complete"] is True


def test_feature_inputs_of_every_kind_give_the_same_matrix(tmp_path, X):
    import dask.array as da

    ref = from_features(X).read_rows(0, 61)
    np.save(tmp_path / "X.npy", X)
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f["feats"] = X
    for i, obj in enumerate([da.from_array(X, chunks=(10, 4)), str(tmp_path / "X.npy"), X.tolist()]):
        src = build_dissimilarity(obj, tmp_path / f"k{i}.zarr", block_rows=11)
        np.testing.assert_array_equal(_full(src), ref)
    src = build_dissimilarity(tmp_path / "X.h5", tmp_path / "k.h5", features_dataset="feats")
    np.testing.assert_array_equal(_full(src), ref)
    one = build_dissimilarity(X[:1], tmp_path / "one.zarr")
    assert one.n == 1 and _full(one).tolist() == [[0.0]]


def test_completed_stripes_are_recorded_during_a_zarr_build(tmp_path, X, monkeypatch):
    import time

    path = tmp_path / "rec.zarr"
    monkeypatch.setattr(builder, "RECORD_INTERVAL", 0.02)
    seen = []
    orig = builder._write_zarr_stripe

    def slow(block, start, stop, state):
        seen.append(len(_meta(path)["completed_stripes"]))
        out = orig(block, start, stop, state)
        time.sleep(0.1)
        return out

    monkeypatch.setattr(builder, "_write_zarr_stripe", slow)
    build_dissimilarity(X, path, block_rows=10, num_workers=1)
    assert seen[0] == 0 and max(seen) >= 3  # the driver mirrored the chunks while building
    assert seen == sorted(seen)


KILL_SNIPPET = """
import sys, time
import numpy as np
import chunked_medoids.builder as b
X = np.random.default_rng(3).normal(size=(61, 4))
orig = b._write_zarr_stripe
count = [0]
def slow(block, start, stop, state):
    out = orig(block, start, stop, state)
    count[0] += 1
    if count[0] == 4:
        print("FOUR", flush=True)
    time.sleep(0.2)
    return out
b._write_zarr_stripe = slow
b.build_dissimilarity(X, sys.argv[1], block_rows=7, num_workers=1)
print("DONE", flush=True)
"""


def test_killed_build_never_claims_completeness_and_resumes(tmp_path):
    import signal
    import subprocess
    import sys

    path = tmp_path / "k.zarr"
    proc = subprocess.Popen([sys.executable, "-c", KILL_SNIPPET, str(path)], stdout=subprocess.PIPE,
                            text=True)
    try:
        assert proc.stdout.readline().strip() == "FOUR"
        proc.send_signal(signal.SIGKILL)  # no cleanup, no finally blocks
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert _meta(path)["complete"] is False
    info = store_info(path)
    assert not info["complete"] and 4 <= info["completed_stripes"] < 9
    with pytest.raises(IncompleteStoreError):
        open_dissimilarity(path)
    X = np.random.default_rng(3).normal(size=(61, 4))
    src = build_dissimilarity(X, path, block_rows=7)  # the lock died with the process
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))


@pytest.mark.parametrize("compressor", ["gzip", None, "lzf"])
def test_hdf5_stripes_of_several_chunks_with_edge_chunk(tmp_path, X, monkeypatch, compressor):
    # gzip / None: chunks encoded in the tasks and written raw (H5Dwrite_chunk); lzf: h5py
    monkeypatch.setattr(_budget, "HDF5_CHUNK_BYTES", 61 * 4 * 4)  # 4-row chunks
    path = tmp_path / "e.h5"
    src = build_dissimilarity(X, path, block_rows=12, compressor=compressor)
    with h5py.File(path, "r") as f:
        d = f["dissimilarity"]
        assert d.chunks == (4, 61) and d.compression == (None if compressor is None else compressor)
        assert d.id.get_num_chunks() == 16  # 61 rows -> 15 full chunks + 1 padded edge chunk
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, 61))
    src.close()
    with h5py.File(path, "r") as f:  # plain h5py (HDF5's own filters) reads the same values
        np.testing.assert_array_equal(f["dissimilarity"][:], from_features(X).read_rows(0, 61))
