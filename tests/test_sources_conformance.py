"""One conformance suite run over every source kind (docs/architecture.rst §3).

All kinds hold the same matrix: the one produced by ``from_features`` on a small random X
(written to disk for the stored kinds), so every kind must return identical rows.  The
generic checks are the public suite :mod:`chunked_medoids.testing` (which third-party
source kinds run too, see tests/test_testing_custom_kind.py); the kind-specific ones follow.
"""

import json
import os
import pickle

import dask.array as da
import h5py
import numpy as np
import pytest
import zarr
from scipy.spatial.distance import cdist

from chunked_medoids import (
    DissimilarityError,
    Engine,
    IncompleteStoreError,
    InvalidParameterError,
    InvalidTypeError,
    UnknownNameError,
    UnsupportedDtypeError,
    open_dissimilarity,
    testing,
)
from chunked_medoids._store_meta import ATTR
from chunked_medoids.sources import SOURCE_KINDS
from chunked_medoids.sources.features import from_features

N = testing.N  # 37: not a multiple of any chunk height used below
CHUNK = testing.CHUNK
DTYPES = list(testing.DTYPES)


def reference(seed, dtype):
    X, metric = testing.reference_features(seed, dtype)
    D = testing.reference_matrix(seed, dtype)
    return X, metric, D


def _write_h5(path, name, D, attrs=None):
    with h5py.File(path, "a") as f:
        ds = f.create_dataset(name, data=D, chunks=(min(CHUNK, D.shape[0]), D.shape[1]))
        for k, v in (attrs or {}).items():
            ds.attrs[k] = v


# Each builder writes what it needs under ``d`` (idempotently) and returns an opener.
def b_numpy(d, X, metric, D):
    return lambda: open_dissimilarity(D)


def b_npy_path(d, X, metric, D):
    p = d / "D.npy"
    if not p.exists():
        np.save(p, D)
    return lambda: open_dissimilarity(str(p))


def b_memmap(d, X, metric, D):
    p = d / "D.dat"
    if not p.exists():
        mm = np.memmap(p, dtype=D.dtype, mode="w+", shape=D.shape)
        mm[:] = D
        mm.flush()
        del mm
    return lambda: open_dissimilarity(np.memmap(p, dtype=D.dtype, mode="r", shape=D.shape))


def b_dask(d, X, metric, D):
    return lambda: open_dissimilarity(da.from_array(D, chunks=(CHUNK, N)))


def b_zarr_path(d, X, metric, D):
    p = d / "D.zarr"
    if not p.exists():
        z = zarr.create_array(store=str(p), shape=D.shape, chunks=(CHUNK, N), dtype=D.dtype)
        z[:] = D
    return lambda: open_dissimilarity(p)


def b_zarr_array(d, X, metric, D):
    p = d / "D.zarr"
    b_zarr_path(d, X, metric, D)
    return lambda: open_dissimilarity(zarr.open_array(str(p), mode="r"))


def b_zarr_group_sharded(d, X, metric, D):
    p = d / "G.zarr"
    if not p.exists():
        g = zarr.open_group(str(p), mode="w")
        z = g.create_array("sub/D", shape=D.shape, chunks=(4, N), shards=(CHUNK, N), dtype=D.dtype)
        z[:] = D
    return lambda: open_dissimilarity(str(p), dataset="sub/D")


def b_zarr_memory(d, X, metric, D):
    z = zarr.create_array(store={}, shape=D.shape, chunks=(CHUNK, N), dtype=D.dtype)
    z[:] = D
    return lambda: open_dissimilarity(z)


def b_hdf5_path(d, X, metric, D):
    p = d / "D.h5"
    if not p.exists():
        _write_h5(p, "dissimilarity", D)
    return lambda: open_dissimilarity(str(p))


def b_hdf5_dataset_name(d, X, metric, D):
    p = d / "custom.hdf5"
    if not p.exists():
        _write_h5(p, "grp/mydist", D)
        _write_h5(p, "other", D[:3, :3])
    return lambda: open_dissimilarity(p, dataset="grp/mydist")


def b_h5py_dataset(d, X, metric, D):
    p = d / "D.h5"
    b_hdf5_path(d, X, metric, D)
    files = []

    def opener():
        f = h5py.File(p, "r")
        files.append(f)
        return open_dissimilarity(f["dissimilarity"])

    opener.files = files
    return opener


def b_features(d, X, metric, D):
    return lambda: open_dissimilarity(X, kind="features", metric=metric, dtype=D.dtype,
                                      feature_block_rows=10)


BUILDERS = {
    "numpy": (b_numpy, "numpy"),
    "npy_path": (b_npy_path, "numpy"),
    "memmap": (b_memmap, "numpy"),
    "dask": (b_dask, "dask"),
    "zarr_path": (b_zarr_path, "zarr"),
    "zarr_array": (b_zarr_array, "zarr"),
    "zarr_group_sharded": (b_zarr_group_sharded, "zarr"),
    "zarr_memory": (b_zarr_memory, "zarr"),
    "hdf5_path": (b_hdf5_path, "hdf5"),
    "hdf5_dataset_name": (b_hdf5_dataset_name, "hdf5"),
    "h5py_dataset": (b_h5py_dataset, "hdf5"),
    "features": (b_features, "features"),
}
FILE_BACKED = {"npy_path", "memmap", "zarr_path", "zarr_array", "zarr_group_sharded",
               "hdf5_path", "hdf5_dataset_name", "h5py_dataset"}


@pytest.fixture(params=DTYPES)
def dtype(request):
    return request.param


@pytest.fixture(params=list(BUILDERS))
def case(request, tmp_path, dtype):
    builder, kind = BUILDERS[request.param]
    X, metric, D = reference(0, dtype)
    d = tmp_path / "a"
    d.mkdir()
    opener = builder(d, X, metric, D)
    yield request.param, kind, opener, D
    for f in getattr(opener, "files", []):
        f.close()


def test_reference_matrix_is_the_metric(dtype):
    X, metric, D = reference(0, dtype)
    ref = cdist(X, X, "cityblock" if metric == "manhattan" else metric)
    if np.issubdtype(D.dtype, np.integer):
        np.testing.assert_array_equal(D, ref.astype(D.dtype))
    else:
        np.testing.assert_allclose(D, ref, rtol=1e-6 if D.dtype == np.float32 else 1e-12)
    assert (D == D.T).all() and (np.diag(D) == 0).all()


def test_suite_cases_are_the_documented_ones():
    # the public suite's ranges and indices for n=37, chunk 8 (what this file always tested)
    assert testing.read_cases(N, CHUNK) == [(0, 0), (5, 5), (0, N), (0, 1), (N - 1, N), (3, 17),
                                            (CHUNK, 2 * CHUNK), (7, 9), (30, N)]
    assert testing.take_cases(N, CHUNK) == [[], [0], [N - 1, 0], [5, 3, 5, 36, 3, 0], list(range(N))[::-1],
                                            [8, 9, 10, 11], [2, 2, 2]]


def test_kind_n_dtype_shape(case):
    name, kind, opener, D = case
    chunked = name in ("dask", "zarr_path", "zarr_array", "hdf5_path", "h5py_dataset", "zarr_group_sharded")
    testing.check_metadata(opener(), D, kind=kind, block_rows=CHUNK if chunked else None)


@pytest.mark.parametrize("start,stop", testing.read_cases(N, CHUNK))
def test_read_rows(case, start, stop):
    _, _, opener, D = case
    testing.check_read_rows(opener(), D, start, stop)


@pytest.mark.parametrize("idx", testing.take_cases(N, CHUNK))
def test_take_rows(case, idx):
    _, _, opener, D = case
    testing.check_take_rows(opener(), D, idx)


def test_read_and_take_argument_errors(case):
    testing.check_argument_errors(case[2]())


def test_pickle_roundtrip(case):
    name, _, opener, D = case
    testing.check_pickle(opener(), D, file_backed=name in FILE_BACKED)


def test_fingerprint_stable_and_data_dependent(case, tmp_path, dtype):
    name, _, opener, D = case
    X2, metric2, D2 = reference(1, dtype)
    assert not np.array_equal(D, D2)
    d2 = tmp_path / "b"
    d2.mkdir()
    other = BUILDERS[name][0](d2, X2, metric2, D2)
    try:
        testing.check_fingerprint(opener, other)
    finally:
        for f in getattr(other, "files", []):
            f.close()


def row_sums(block, start, stop, state):
    return block.astype(np.float64).sum(axis=1)


def test_engine_map_blocks_threads(case):
    _, _, opener, D = case
    testing.check_engine(opener(), D)


def test_pickled_modules_sees_classes():
    assert "numpy" in {m.split(".")[0] for m in testing.pickled_modules(pickle.dumps(np.zeros(2)))}


def test_distributed_like_pickling_of_block_tasks(tmp_path):
    """What a distributed worker does: unpickle (source, function) and run the block task."""
    from chunked_medoids.engine import _run_block

    X, metric, D = reference(0, "float32")
    for name, (builder, _) in BUILDERS.items():
        d = tmp_path / name
        d.mkdir()
        opener = builder(d, X, metric, D)
        src = opener()
        src.read_rows(0, 1)
        task = pickle.dumps((_run_block, src, row_sums, 3, 11, None))
        fn, s, f, a, b, st = pickle.loads(task)
        np.testing.assert_allclose(fn(s, f, a, b, st), D[3:11].astype(np.float64).sum(axis=1))
        for fh in getattr(opener, "files", []):
            fh.close()


def test_hdf5_reopens_after_fork(tmp_path, monkeypatch):
    """The handle cache is keyed by pid: a process with another pid opens its own file."""
    X, metric, D = reference(0, "float64")
    opener = b_hdf5_path(tmp_path, X, metric, D)
    src = opener()
    src.read_rows(0, 1)
    first = src._ref._file
    assert first is not None
    real = os.getpid()
    monkeypatch.setattr(os, "getpid", lambda: real + 1)
    np.testing.assert_array_equal(src.read_rows(2, 5), D[2:5])
    assert src._ref._file is not first
    first.close()


def test_distributed_cluster_reads_file_backed_sources(tmp_path, local_cluster):
    X, metric, D = reference(0, "float32")
    expected = D.astype(np.float64).sum(axis=1)
    for name in ["npy_path", "zarr_path", "hdf5_dataset_name", "features"]:
        d = tmp_path / name
        d.mkdir()
        src = BUILDERS[name][0](d, X, metric, D)()
        with Engine(client=local_cluster, block_rows=10) as eng:
            np.testing.assert_allclose(np.concatenate(eng.map_blocks(src, row_sums)), expected)


# -- dispatch ------------------------------------------------------------------------------


def test_registry_order_and_descriptions():
    names = list(SOURCE_KINDS)
    assert names[:6] == ["numpy", "npy", "dask", "zarr", "hdf5", "features"]
    for entry in SOURCE_KINDS.values():
        assert entry.description


def test_passthrough_and_unknown_object():
    src = open_dissimilarity(np.zeros((2, 2)))
    assert open_dissimilarity(src) is src
    with pytest.raises(InvalidTypeError) as ei:
        open_dissimilarity(object())
    for name in SOURCE_KINDS:
        assert name in str(ei.value)
    with pytest.raises(InvalidTypeError, match="cannot open 'D.csv'"):
        open_dissimilarity("D.csv")
    with pytest.raises(UnknownNameError, match="kind must be one of"):
        open_dissimilarity(np.zeros((2, 2)), kind="parquet")


def test_features_kind_only_when_asked():
    X = np.random.default_rng(0).normal(size=(5, 5))
    assert open_dissimilarity(X, validate=False).kind == "numpy"  # a square array is a matrix
    assert open_dissimilarity(X, kind="features").kind == "features"


def test_unknown_options_rejected(tmp_path):
    X, metric, D = reference(0, "float32")
    b_zarr_path(tmp_path, X, metric, D)
    b_hdf5_path(tmp_path, X, metric, D)
    for path in (tmp_path / "D.zarr", tmp_path / "D.h5"):
        with pytest.raises(InvalidTypeError, match="colour"):
            open_dissimilarity(path, colour="red")
    with pytest.raises(InvalidTypeError, match="no options"):
        open_dissimilarity(da.from_array(D), colour="red")


# -- zarr specifics ------------------------------------------------------------------------


def _zarr(path, D, attrs=None, dtype=None):
    z = zarr.create_array(store=str(path), shape=D.shape, chunks=(CHUNK, D.shape[1]),
                          dtype=dtype or D.dtype)
    z[:] = D
    if attrs:
        z.attrs.update(attrs)
    return z


def _meta(complete, n_stripes=5, done=(0, 1)):
    return {"format": 1, "n": N, "dtype": "float32", "metric": "euclidean", "metric_params": {},
            "features_fingerprint": "abc", "version": "0", "stripe_rows": 8,
            "n_stripes": n_stripes, "completed_stripes": list(done), "complete": complete}


def test_zarr_incomplete_store(tmp_path):
    _, _, D = reference(0, "float32")
    p = tmp_path / "inc.zarr"
    _zarr(p, D, {ATTR: _meta(False)})
    with pytest.raises(IncompleteStoreError, match="3 of 5 row stripes"):
        open_dissimilarity(p)
    assert issubclass(IncompleteStoreError, DissimilarityError)
    src = open_dissimilarity(p, allow_incomplete=True)
    np.testing.assert_array_equal(src.read_rows(0, N), D)
    p2 = tmp_path / "done.zarr"
    _zarr(p2, D, {ATTR: _meta(True, done=range(5))})
    src2 = open_dissimilarity(p2)
    assert src2.meta["complete"] is True
    # our metadata enters the fingerprint: same values, different metadata -> different
    assert src2.fingerprint() != open_dissimilarity(p, allow_incomplete=True).fingerprint()


def test_zarr_incomplete_metadata_on_group(tmp_path):
    _, _, D = reference(0, "float32")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.attrs[ATTR] = _meta(False)
    g.create_array("dissimilarity", shape=D.shape, chunks=(CHUNK, N), dtype=D.dtype)[:] = D
    with pytest.raises(IncompleteStoreError):
        open_dissimilarity(tmp_path / "g.zarr")
    with pytest.raises(IncompleteStoreError):  # the array object alone still finds its group's metadata
        open_dissimilarity(zarr.open_array(str(tmp_path / "g.zarr"), path="dissimilarity", mode="r"))
    assert open_dissimilarity(tmp_path / "g.zarr", allow_incomplete=True).n == N


def test_zarr_errors(tmp_path):
    _, _, D = reference(0, "float32")
    with pytest.raises(FileNotFoundError, match="missing.zarr"):
        open_dissimilarity(tmp_path / "missing.zarr")
    _zarr(tmp_path / "rect.zarr", D[:5])
    with pytest.raises(InvalidParameterError, match=r"square.*\(5, 37\)"):
        open_dissimilarity(tmp_path / "rect.zarr")
    _zarr(tmp_path / "i16.zarr", D, dtype="int16")  # float16 is the 2-byte store type now
    with pytest.raises(UnsupportedDtypeError, match="int16"):
        open_dissimilarity(tmp_path / "i16.zarr")
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", shape=(2, 2), dtype="f4")
    g.create_array("b/c", shape=(3, 3), dtype="f4")
    with pytest.raises(UnknownNameError, match=r"'dissimilarity'.*does not exist.*a \(2, 2\).*b/c \(3, 3\)"):
        open_dissimilarity(tmp_path / "g.zarr")
    assert open_dissimilarity(tmp_path / "g.zarr", dataset="b/c").n == 3
    with pytest.raises(InvalidParameterError, match="not a group"):
        open_dissimilarity(tmp_path / "rect.zarr", dataset="x")


def test_zarr_sharded_block_rows_and_zarr_v2(tmp_path):
    _, _, D = reference(0, "float64")
    z = zarr.create_array(store=str(tmp_path / "s.zarr"), shape=D.shape, chunks=(2, N),
                          shards=(16, N), dtype=D.dtype)
    z[:] = D
    assert open_dissimilarity(tmp_path / "s.zarr").block_rows == 16
    z2 = zarr.create_array(store=str(tmp_path / "v2.zarr"), shape=D.shape, chunks=(6, N),
                           dtype=D.dtype, zarr_format=2)
    z2[:] = D
    src = open_dissimilarity(tmp_path / "v2.zarr")
    assert src.block_rows == 6
    np.testing.assert_array_equal(src.take_rows([30, 1, 2]), D[[30, 1, 2]])


# -- HDF5 specifics ------------------------------------------------------------------------


def test_hdf5_errors(tmp_path):
    _, _, D = reference(0, "float32")
    with pytest.raises(FileNotFoundError, match="nope.h5"):
        open_dissimilarity(tmp_path / "nope.h5")
    (tmp_path / "text.h5").write_text("not hdf5")
    with pytest.raises(InvalidParameterError, match="not an HDF5 file"):
        open_dissimilarity(tmp_path / "text.h5")
    p = tmp_path / "m.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("rect", data=D[:4])
        f.create_dataset("grp/i16", data=D.astype(np.int16))  # float16 is the 2-byte store type now
        f.create_dataset("cplx", data=D.astype(np.complex64))
        f.create_dataset("threed", data=np.zeros((2, 2, 2)))
    with pytest.raises(UnknownNameError) as ei:
        open_dissimilarity(p)
    msg = str(ei.value)
    assert "'dissimilarity'" in msg and "does not exist" in msg
    assert "rect (4, 37)" in msg and "grp/i16 (37, 37)" in msg and "dataset='name'" in msg
    with pytest.raises(UnknownNameError, match="is a group"):
        open_dissimilarity(p, dataset="grp")
    with pytest.raises(InvalidParameterError, match=r"square.*\(4, 37\)"):
        open_dissimilarity(p, dataset="rect")
    with pytest.raises(InvalidParameterError, match=r"square.*\(2, 2, 2\)"):
        open_dissimilarity(p, dataset="threed")
    with pytest.raises(UnsupportedDtypeError, match="int16"):
        open_dissimilarity(p, dataset="grp/i16")
    with pytest.raises(UnsupportedDtypeError, match="complex64"):
        open_dissimilarity(p, dataset="cplx")


def test_hdf5_dataset_object_conflicting_name(tmp_path):
    X, metric, D = reference(0, "float32")
    b_hdf5_path(tmp_path, X, metric, D)
    with h5py.File(tmp_path / "D.h5", "r") as f:
        with pytest.raises(InvalidParameterError, match="cannot be combined"):
            open_dissimilarity(f["dissimilarity"], dataset="other")
        # a File/Group object with the default dataset name
        src = open_dissimilarity(f)
        assert src.dataset == "/dissimilarity" and src.filename == str(tmp_path / "D.h5")
    # the source outlives the user's file object
    np.testing.assert_array_equal(src.read_rows(0, 3), D[:3])


def test_hdf5_incomplete_store_json_attribute(tmp_path):
    _, _, D = reference(0, "float32")
    p = tmp_path / "inc.h5"
    _write_h5(p, "dissimilarity", D, {ATTR: json.dumps(_meta(False))})
    with pytest.raises(IncompleteStoreError, match="3 of 5"):
        open_dissimilarity(p)
    src = open_dissimilarity(p, allow_incomplete=True)
    assert src.meta["n_stripes"] == 5
    p2 = tmp_path / "done.h5"
    _write_h5(p2, "dissimilarity", D, {ATTR: json.dumps(_meta(True, done=range(5)))})
    assert open_dissimilarity(p2).meta["complete"] is True
    p3 = tmp_path / "root_attr.h5"  # metadata on the file (root group) instead of the dataset
    _write_h5(p3, "dissimilarity", D)
    with h5py.File(p3, "a") as f:
        f.attrs[ATTR] = json.dumps(_meta(False))
    with pytest.raises(IncompleteStoreError, match="root_attr.h5"):
        open_dissimilarity(p3)


def test_hdf5_contiguous_and_big_endian(tmp_path):
    _, _, D = reference(0, "float64")
    p = tmp_path / "c.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dissimilarity", data=D.astype(">f8"))  # contiguous, big-endian
    src = open_dissimilarity(p)
    assert src.dtype == np.dtype("float64") and src.block_rows == N
    np.testing.assert_array_equal(src.read_rows(2, 9), D[2:9])
    np.testing.assert_array_equal(src.take_rows([5, 0, 5]), D[[5, 0, 5]])


# -- dask specifics ------------------------------------------------------------------------


def test_dask_errors_and_synchronous_reads():
    _, _, D = reference(0, "float32")
    with pytest.raises(InvalidParameterError, match="square"):
        open_dissimilarity(da.from_array(D[:3]))
    with pytest.raises(UnsupportedDtypeError, match="float16"):
        open_dissimilarity(da.from_array(D.astype(np.float16)))
    x = da.from_array(D, chunks=(CHUNK, N))
    unknown = x[x[:, 0] >= 0]  # unknown chunk sizes
    with pytest.raises(InvalidParameterError, match="compute_chunk_sizes"):
        open_dissimilarity(unknown)
    # a lazily transformed array: only the requested slice is computed
    src = open_dissimilarity((x + x.T) / 2)
    np.testing.assert_array_equal(src.read_rows(10, 12), D[10:12])


def test_dask_reads_use_the_synchronous_scheduler():
    """Reads run inside engine threads: they must not start (or use) another pool."""
    import dask

    _, _, D = reference(0, "float64")
    src = open_dissimilarity(da.from_array(D, chunks=(CHUNK, N)) * 1.0)

    def forbidden(*args, **kwargs):
        raise AssertionError("the global/threaded scheduler was used")

    with dask.config.set(scheduler=forbidden):
        np.testing.assert_array_equal(src.read_rows(3, 30), D[3:30])
        np.testing.assert_array_equal(src.take_rows([30, 2, 2]), D[[30, 2, 2]])
        np.testing.assert_array_equal(
            from_features(da.from_array(D[:, :4], chunks=(5, 4)), dtype="float64").read_rows(0, 3),
            from_features(D[:, :4], dtype="float64").read_rows(0, 3))
