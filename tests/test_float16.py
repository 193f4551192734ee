"""The 2-byte storage type (issue 17): float16 stores with a power-of-two scale.

Every source kind that can hold one (zarr, HDF5, the on-the-fly features source) returns
the dequantised float32 values, and every registered method (tests/_registries.py) gives
on it bitwise the result it gives on the float32 matrix of those values.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import _budget
from chunked_medoids._quant import FLOAT16_MAX, check_scale, choose_scale, dequantise, quantise
from tests._registries import METHODS

N, K = 60, 3


def _X(n=N, seed=0, spread=1000.0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 4)) * spread


def _dequantised(X, scale, metric="euclidean"):
    """By hand: float32 distances, times scale, rounded to float16, divided by scale."""
    d32 = cm.from_features(X, metric).read_rows(0, X.shape[0])
    q = (d32 * np.float32(scale)).astype(np.float16)
    return q.astype(np.float32) / np.float32(scale)


@pytest.fixture(scope="module")
def stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("f16")
    X = _X()
    z = cm.build_dissimilarity(X, d / "D.zarr", dtype="float16", memory_limit="2MiB", block_rows=7)
    h = cm.build_dissimilarity(X, d / "D.h5", dtype="float16", memory_limit="2MiB", block_rows=8)
    f = cm.from_features(X, dtype="float16", block_rows=11)
    ref = _dequantised(X, z.scale)
    return {"X": X, "dir": d, "zarr": z, "hdf5": h, "features": f, "ref": ref}


# -- the scale ---------------------------------------------------------------------------------
def test_choose_scale_is_a_power_of_two_in_range():
    for bound in (1e-30, 3e-5, 0.7, 1.0, 2.0, 12345.6, 65504.0, 1e9, 3.4e38):
        s = choose_scale(bound)
        assert math.frexp(s)[0] == 0.5  # a power of two
        assert 2.0 ** 14 < bound * s <= 2.0 ** 15 or s in (2.0 ** -100, 2.0 ** 100)
    assert choose_scale(0.0) == 1.0


def test_check_scale_refuses_non_powers_of_two():
    assert check_scale(0.25) == 0.25 and check_scale(8) == 8.0
    with pytest.raises(cm.InvalidParameterError, match=r"power of two.*0\.25"):
        check_scale(0.3)
    for bad in (0, -2.0, float("inf"), float("nan")):
        with pytest.raises(cm.InvalidParameterError, match="scale"):
            check_scale(bad)
    with pytest.raises(cm.InvalidTypeError, match="scale"):
        check_scale("1")


def test_quantise_dequantise_round_trip_is_exact_on_float16_values():
    rng = np.random.default_rng(3)
    q = rng.uniform(0, 60000, size=1000).astype(np.float16)
    for scale in (2.0 ** -7, 1.0, 2.0 ** 9):
        v = dequantise(q, scale)
        assert v.dtype == np.float32
        np.testing.assert_array_equal(quantise(v, scale), q)  # exact both ways (power of two)


def test_scale_round_trip_through_the_metadata(stores):
    z, h, f = stores["zarr"], stores["hdf5"], stores["features"]
    assert z.scale == h.scale == f.scale
    assert z.storage_dtype == h.storage_dtype == np.float16 and z.dtype == np.float32
    X = stores["X"]
    bound = 4 * float(cm.from_features(X).read_rows(0, 1).max())  # the documented choice
    assert z.scale == choose_scale(bound)
    assert z.meta["scale"] == z.scale and z.meta["dtype"] == "float16"
    import h5py
    import zarr

    assert json.loads(h5py.File(stores["dir"] / "D.h5")["dissimilarity"].attrs["chunked_medoids"])["scale"] == z.scale
    arr = zarr.open_array(str(stores["dir"] / "D.zarr"), mode="r")
    assert arr.dtype == np.float16 and arr.attrs["chunked_medoids"]["scale"] == z.scale
    # stored = distance x scale, exactly what the readers divide back
    np.testing.assert_array_equal(arr[:], quantise(stores["ref"], z.scale))
    for key in ("zarr", "hdf5"):
        info = cm.store_info(stores["dir"] / ("D.zarr" if key == "zarr" else "D.h5"))
        assert info["dtype"] == "float16" and info["scale"] == z.scale and info["values_dtype"] == "float32"
        assert info["nbytes"] == N * N * 2


def test_explicit_scale_round_trip(tmp_path):
    X = _X(30)
    s = cm.build_dissimilarity(X, tmp_path / "s.zarr", dtype="float16", scale=2.0 ** -3)
    assert s.scale == 2.0 ** -3 and cm.store_info(tmp_path / "s.zarr")["scale"] == 2.0 ** -3
    np.testing.assert_array_equal(s.read_rows(0, 30), _dequantised(X, 2.0 ** -3))
    f = cm.from_features(X, dtype="float16", scale=2.0 ** -3)
    np.testing.assert_array_equal(f.take_rows([5, 1, 5]), s.take_rows([5, 1, 5]))
    with pytest.raises(cm.InvalidParameterError, match="dtype='float16'"):
        cm.build_dissimilarity(X, tmp_path / "t.zarr", scale=0.5)
    with pytest.raises(cm.InvalidParameterError, match="dtype='float16'"):
        cm.from_features(X, scale=0.5)


@pytest.mark.parametrize("key", ["zarr", "hdf5", "features"])
def test_every_source_kind_reads_the_dequantised_values(stores, key):
    src, ref = stores[key], stores["ref"]
    np.testing.assert_array_equal(src.read_rows(0, N), ref)
    idx = np.array([17, 3, 59, 3, 0])
    np.testing.assert_array_equal(src.take_rows(idx), ref[idx])
    for a, b in ((0, 5), (5, 23), (40, 60)):
        blk = src.read_rows(a, b)
        assert blk.dtype == np.float32 and blk.flags.c_contiguous
        np.testing.assert_array_equal(blk, ref[a:b])
    # float16 rounding: relative error at most 2**-11 of the float32 distance
    d32 = cm.from_features(stores["X"]).read_rows(0, N)
    assert np.all(np.abs(ref - d32) <= d32 * 2.0 ** -11 + 1e-30)


def test_float16_sources_have_their_own_fingerprint(stores):
    assert stores["zarr"].fingerprint() != cm.open_dissimilarity(stores["ref"]).fingerprint()
    f32 = cm.from_features(stores["X"])
    assert stores["features"].fingerprint() != f32.fingerprint()


def test_foreign_float16_zarr_and_hdf5_read_with_scale_one(tmp_path):
    import h5py
    import zarr

    D = cm.from_features(_X(20)).read_rows(0, 20).astype(np.float16)
    z = zarr.create_array(str(tmp_path / "f.zarr"), shape=D.shape, chunks=(6, 20), dtype="f2")
    z[:] = D
    with h5py.File(tmp_path / "f.h5", "w") as f:
        f.create_dataset("dissimilarity", data=D, chunks=(5, 20))
    for path in (tmp_path / "f.zarr", tmp_path / "f.h5"):
        src = cm.open_dissimilarity(path)
        assert src.dtype == np.float32 and src.scale == 1.0
        np.testing.assert_array_equal(src.read_rows(0, 20), D.astype(np.float32))
    bad = D.copy()
    bad[2, 3] = 7.0  # asymmetric: the stream validator sees the float32 values
    z[:] = bad
    with pytest.raises(cm.DissimilarityError):
        cm.fasterpam(tmp_path / "f.zarr", 2, random_state=0)


# -- every algorithm ---------------------------------------------------------------------------
def _same(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss


def _run(name, src):
    fn = METHODS[name].func
    try:
        return fn(src, K, random_state=4, memory_limit=2 ** 16)
    except cm.ChunkedMedoidsError as exc:  # e.g. a features-only method given a matrix
        return exc


#: methods that, given a from_features source, compute from its features in float64 (its
#: dtype does not matter to them by definition): LargeCLARA.
FROM_FEATURES = [m for m in METHODS if METHODS[m].func.__module__.endswith(".clara_large")]


@pytest.mark.parametrize("name", list(METHODS))
def test_every_method_on_float16_equals_the_dequantised_float32_matrix(stores, name):
    ref = _run(name, cm.open_dissimilarity(stores["ref"]))
    for key in ("zarr", "hdf5", "features"):
        got = _run(name, stores[key])
        if key == "features" and name in FROM_FEATURES:
            _same(got, _run(name, cm.from_features(stores["X"])))
            continue
        if isinstance(ref, Exception):
            assert type(got) is type(ref), (name, key, got)
            continue
        assert not isinstance(got, Exception), (name, key, got)
        _same(got, ref)


@pytest.mark.parametrize("key", ["zarr", "hdf5", "features"])
def test_inits_silhouettes_and_dynmsc_on_float16(stores, key):
    ref = cm.open_dissimilarity(stores["ref"])
    src = stores[key]
    assert cm.build(src, 4).tolist() == cm.build(ref, 4).tolist()
    assert cm.lab(src, 4, random_state=1).tolist() == cm.lab(ref, 4, random_state=1).tolist()
    labels = np.arange(N) % 3
    assert cm.silhouette(src, labels) == cm.silhouette(ref, labels)
    assert cm.medoid_silhouette(src, [0, 10, 20]) == cm.medoid_silhouette(ref, [0, 10, 20])
    a, b = cm.dynmsc(src, 4, random_state=0), cm.dynmsc(ref, 4, random_state=0)
    assert a.k == b.k
    _same(a, b)


def test_float16_fasterpam_is_the_same_across_block_sizes_and_threads(stores):
    base = cm.fasterpam(stores["zarr"], K, random_state=2)
    for opts in ({"block_rows": 5}, {"block_rows": 60}, {"num_workers": 1}, {"memory_limit": 2 ** 16}):
        _same(cm.fasterpam(stores["hdf5"], K, random_state=2, **opts), base)
        _same(cm.fasterpam(stores["features"], K, random_state=2, **opts), base)


# -- overflow ----------------------------------------------------------------------------------
def test_a_scale_that_overflows_row_zero_is_refused_before_anything_is_written(tmp_path):
    X = _X(20)
    big = float(cm.from_features(X).read_rows(0, 1).max())
    scale = 2.0 ** math.ceil(math.log2(FLOAT16_MAX / big))  # big * scale > 65504
    with pytest.raises(cm.QuantisationOverflowError, match=r"scale=.*float32") as info:
        cm.build_dissimilarity(X, tmp_path / "o.zarr", dtype="float16", scale=scale)
    assert "D[0," in str(info.value)
    assert isinstance(info.value, OverflowError)
    assert not (tmp_path / "o.zarr").exists()
    with pytest.raises(cm.QuantisationOverflowError):
        cm.from_features(X, dtype="float16", scale=scale)


@pytest.mark.parametrize("suffix", [".zarr", ".h5"])
def test_an_overflow_later_in_the_build_is_refused_and_leaves_the_store_incomplete(tmp_path, suffix):
    # point 0 sits in the middle: its row fits the scale, the distance between the ends does not
    X = np.array([[0.0], [1.0], [-1.0], [0.5]])
    scale = 2.0 ** 15  # 1 x 2**15 fits, 2 x 2**15 = 65536 > 65504
    path = tmp_path / f"o{suffix}"
    with pytest.raises(cm.QuantisationOverflowError, match=r"scale=16384\.0") as info:
        cm.build_dissimilarity(X, path, dtype="float16", scale=scale, block_rows=1)
    assert "D[1, 2]" in str(info.value) or "D[2, 1]" in str(info.value)
    with pytest.raises(cm.IncompleteStoreError):
        cm.open_dissimilarity(path)
    with pytest.raises(cm.QuantisationOverflowError):
        cm.from_features(X, dtype="float16", scale=scale).read_rows(0, 4)


def test_the_chosen_scale_never_overflows_for_spread_out_data(tmp_path):
    for spread in (1e-20, 1.0, 1e6, 1e30):
        X = _X(25, seed=1, spread=spread)
        src = cm.from_features(X, dtype="float16")
        rows = src.read_stored_rows(0, 25)
        assert rows.dtype == np.float16 and np.isfinite(rows).all()
        assert 2.0 ** 12 < float(rows.max()) <= FLOAT16_MAX


# -- budget, rebuild rules, CLI ----------------------------------------------------------------
def test_budget_counts_two_byte_items_and_the_conversion_buffer():
    assert _budget.reader_bytes(4) == 20 and _budget.reader_bytes(4, 4) == 20
    assert _budget.reader_bytes(4, 2) == 5 * 2 + 4
    n, limit = 10000, 64 << 20
    f32 = _budget.block_rows(n, 4, limit, 1, readers=1, held=2)
    f16 = _budget.block_rows(n, 4, limit, 1, readers=1, held=2, storage_itemsize=2)
    assert f32 == limit // (n * (20 + 2 * 4)) and f16 == limit // (n * (14 + 2 * 4))
    assert _budget.read_concurrency(100, n, 4, 100, limit, 8, 2) >= _budget.read_concurrency(100, n, 4, 100, limit, 8)


def test_engine_sizes_float16_blocks_with_the_budget(stores):
    eng = cm.Engine(memory_limit=2 ** 20)
    z = stores["zarr"]
    assert eng.block_rows_for(z, blocks_in_flight=3) <= 2 ** 20 // (N * (14 + 8))
    assert z.storage_itemsize == 2 and z.itemsize == 4


def test_rebuild_rules_know_the_dtype_and_scale(tmp_path):
    X = _X(30)
    p = tmp_path / "r.zarr"
    a = cm.build_dissimilarity(X, p, dtype="float16")
    b = cm.build_dissimilarity(X, p, dtype="float16")  # complete, same arguments: unchanged
    assert a.fingerprint() == b.fingerprint()
    with pytest.raises(cm.StoreExistsError, match="scale"):
        cm.build_dissimilarity(X, p, dtype="float16", scale=a.scale / 2)
    with pytest.raises(cm.StoreExistsError, match="dtype"):
        cm.build_dissimilarity(X, p, dtype="float32")


def test_cli_build_and_info_show_dtype_and_scale(tmp_path):
    from tests.test_cli import run_cli

    X = _X(40)
    np.save(tmp_path / "X.npy", X)
    out = tmp_path / "D.zarr"
    proc = run_cli("build", tmp_path / "X.npy", "-o", out, "--metric", "euclidean", "--dtype", "float16")
    assert proc.returncode == 0, proc.stderr
    proc = run_cli("info", out)
    assert proc.returncode == 0, proc.stderr
    scale = cm.open_dissimilarity(out).scale
    assert "float16" in proc.stdout and f"scale {scale!r}" in proc.stdout
    info = json.loads(run_cli("info", out, "--json").stdout)
    assert info["dtype"] == "float16" and info["scale"] == scale
    proc = run_cli("build", tmp_path / "X.npy", "-o", tmp_path / "E.zarr", "--metric", "euclidean",
                   "--dtype", "float16", "--scale", "0.3")
    assert proc.returncode == 2 and "power of two" in proc.stderr


# -- the conversion kernel -----------------------------------------------------------------------
@pytest.mark.parametrize("scale", [2.0 ** -100, 2.0 ** -20, 2.0 ** -3, 1.0, 2.0 ** 5, 2.0 ** 100])
def test_conversion_kernel_is_bitwise_numpy_on_every_float16(scale):
    from chunked_medoids._kernels.convert import f16_to_f32
    from chunked_medoids._quant import _kernel_factors

    q = np.arange(65536, dtype=np.uint32).astype(np.uint16).view(np.float16).reshape(256, 256)
    with np.errstate(invalid="ignore"):
        ref = q.astype(np.float32) * np.float32(1.0 / scale)
    out = np.empty(q.shape, np.float32)
    f16_to_f32(q.view(np.uint16), *_kernel_factors(scale), out)
    finite = np.isfinite(ref)
    np.testing.assert_array_equal(out.view(np.uint32)[finite], ref.view(np.uint32)[finite])
    np.testing.assert_array_equal(np.isnan(out), np.isnan(ref))
    np.testing.assert_array_equal(np.isinf(out) & (out > 0), np.isinf(ref) & (ref > 0))
    np.testing.assert_array_equal(dequantise(q, scale)[finite], ref[finite])
