"""from_features: values against scipy, exact symmetry, containers, chunking, errors."""

import pickle

import dask.array as da
import h5py
import numba
import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist

from chunked_medoids import (
    DissimilarityError,
    InvalidParameterError,
    InvalidTypeError,
    UnknownNameError,
    UnsupportedDtypeError,
    _budget,
    open_dissimilarity,
)
from chunked_medoids.sources import features as features_mod
from chunked_medoids.sources.features import FeatureSource, from_features


@pytest.fixture
def X(rng):
    return rng.normal(size=(45, 6))


def full(src):
    return src.read_rows(0, src.n)


SCIPY_METRICS = [
    ("euclidean", {}, "euclidean", {}),
    ("sqeuclidean", {}, "sqeuclidean", {}),
    ("manhattan", {}, "cityblock", {}),
    ("chebyshev", {}, "chebyshev", {}),
    ("minkowski", {"p": 3}, "minkowski", {"p": 3}),
    ("cosine", {}, "cosine", {}),
    ("correlation", {}, "correlation", {}),
    ("canberra", {}, "canberra", {}),
    ("braycurtis", {}, "braycurtis", {}),
]


@pytest.mark.parametrize("metric,params,scipy_name,scipy_params", SCIPY_METRICS)
def test_matches_scipy_cdist(X, metric, params, scipy_name, scipy_params):
    Xp = np.abs(X) if metric == "braycurtis" else X
    src = from_features(Xp, metric, dtype="float64", block_rows=7, feature_block_rows=11, **params)
    D = full(src)
    ref = cdist(Xp, Xp, scipy_name, **scipy_params)
    np.fill_diagonal(ref, 0)
    np.testing.assert_allclose(D, ref, rtol=1e-12, atol=1e-12)
    assert (D == D.T).all()
    assert (np.diag(D) == 0).all()


@pytest.mark.parametrize("metric", ["hamming", "jaccard"])
def test_boolean_metrics_match_scipy(rng, metric):
    B = rng.random((30, 9)) < 0.4
    D = full(from_features(B, metric, dtype="float64", block_rows=4, feature_block_rows=5))
    np.testing.assert_allclose(D, cdist(B, B, metric), rtol=1e-12, atol=1e-15)


def test_float32_output_is_the_cast_of_float64(X):
    D64 = full(from_features(X, dtype="float64"))
    D32 = full(from_features(X))
    assert D32.dtype == np.float32
    np.testing.assert_array_equal(D32, D64.astype(np.float32))


@pytest.mark.parametrize("block_rows,fbr", [(1, 1), (2, 3), (7, 45), (45, 4), (16, 16), (45, 45), (13, 100)])
def test_chunking_does_not_change_values(X, block_rows, fbr):
    ref = full(from_features(X, "correlation", dtype="float64"))
    src = from_features(X, "correlation", dtype="float64", block_rows=block_rows, feature_block_rows=fbr)
    assert src.block_rows == block_rows
    assert src.feature_block_rows == min(fbr, 45)
    stitched = np.vstack([src.read_rows(a, b) for a, b in src.row_blocks()])
    np.testing.assert_array_equal(stitched, ref)
    np.testing.assert_array_equal(src.take_rows([44, 0, 13, 13]), ref[[44, 0, 13, 13]])


@settings(deadline=None, max_examples=40)
@given(n=st.integers(1, 25), d=st.integers(1, 4), block=st.integers(1, 30), fbr=st.integers(1, 30),
       metric=st.sampled_from(["euclidean", "cosine", "canberra", "minkowski"]),
       seed=st.integers(0, 2**16), start=st.integers(0, 25), length=st.integers(0, 25),
       idx=st.lists(st.integers(0, 24), max_size=12))
def test_property_exact_symmetry_zero_diagonal_any_split(n, d, block, fbr, metric, seed, start, length, idx):
    Xh = np.random.default_rng(seed).normal(size=(n, d)) * 10.0 ** np.random.default_rng(seed).integers(-3, 4)
    src = from_features(Xh, metric, dtype="float64", block_rows=block, feature_block_rows=fbr)
    D = full(src)
    assert (D == D.T).all()  # bitwise
    assert (np.diag(D) == 0).all()
    assert (D >= 0).all() and np.isfinite(D).all()
    a = min(start, n)
    b = min(a + length, n)
    np.testing.assert_array_equal(src.read_rows(a, b), D[a:b])
    idx = np.array([i % n for i in idx], dtype=np.int64)
    np.testing.assert_array_equal(src.take_rows(idx), D[idx])  # scattered rows, one pass


def test_exact_symmetry_with_an_asymmetric_custom_kernel(rng):
    """Even a user kernel that rounds differently in each order gives a symmetric matrix."""

    @numba.njit
    def lopsided(x, y):
        s = 0.0
        for i in range(x.shape[0]):
            s += (x[i] - y[i]) ** 2
        return np.sqrt(s) + 1e-9 * (x[0] > y[0])

    Xc = rng.normal(size=(20, 3))
    D = full(from_features(Xc, lopsided, dtype="float64", block_rows=3, feature_block_rows=4))
    assert (D == D.T).all() and (np.diag(D) == 0).all()
    # every entry is the kernel evaluated in index order: d(X[min], X[max])
    i, j = 4, 17
    assert D[j, i] == lopsided(Xc[i], Xc[j])
    src = from_features(Xc, lopsided, dtype="float64", feature_block_rows=5)
    np.testing.assert_array_equal(src.take_rows([17, 4, 9, 4, 0, 19]), D[[17, 4, 9, 4, 0, 19]])


def _containers(tmp_path, Xc):
    """The same feature values in every supported container (name -> X argument, options)."""
    np.save(tmp_path / "X.npy", Xc)
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=Xc.shape, chunks=(8, Xc.shape[1]),
                          dtype=Xc.dtype)
    z[:] = Xc
    g = zarr.open_group(str(tmp_path / "G.zarr"), mode="w")
    g.create_array("feat", shape=Xc.shape, chunks=(5, Xc.shape[1]), dtype=Xc.dtype)[:] = Xc
    g.create_array("other", shape=(2, 2), dtype="f8")
    with h5py.File(tmp_path / "X.h5", "w") as f:
        f.create_dataset("features", data=Xc, chunks=(6, Xc.shape[1]))
        f.create_dataset("labels", data=np.arange(Xc.shape[0]))
    with h5py.File(tmp_path / "one.hdf5", "w") as f:
        f.create_dataset("grp/X", data=Xc)
    mm = np.memmap(tmp_path / "X.dat", dtype=Xc.dtype, mode="w+", shape=Xc.shape)
    mm[:] = Xc
    mm.flush()
    h5 = h5py.File(tmp_path / "X.h5", "r")
    out = {
        "numpy": (Xc, {}),
        "list": (Xc.tolist(), {}),
        "float32": (Xc.astype(np.float32).astype(np.float64), {}),
        "npy_path": (str(tmp_path / "X.npy"), {}),
        "memmap": (np.memmap(tmp_path / "X.dat", dtype=Xc.dtype, mode="r", shape=Xc.shape), {}),
        "dask": (da.from_array(Xc, chunks=(9, Xc.shape[1])), {}),
        "zarr_path": (tmp_path / "X.zarr", {}),
        "zarr_array": (zarr.open_array(str(tmp_path / "X.zarr"), mode="r"), {}),
        "zarr_group": (str(tmp_path / "G.zarr"), {"dataset": "feat"}),
        "h5_path": (tmp_path / "X.h5", {"dataset": "features"}),
        "h5_single_dataset": (tmp_path / "one.hdf5", {}),
        "h5py_dataset": (h5["features"], {}),
    }
    return out, h5


def test_feature_containers_give_identical_matrices(tmp_path, X):
    ref_src = from_features(X, "euclidean", dtype="float64", feature_block_rows=7)
    ref = full(ref_src)
    conts, h5 = _containers(tmp_path, X)
    try:
        for name, (arg, opts) in conts.items():
            if name == "float32":
                continue
            src = from_features(arg, "euclidean", dtype="float64", feature_block_rows=7, **opts)
            np.testing.assert_array_equal(full(src), ref, err_msg=name)
            np.testing.assert_array_equal(src.take_rows([3, 40, 3]), ref[[3, 40, 3]], err_msg=name)
            # the fingerprint depends on the values, not on where they live
            assert src.fingerprint() == ref_src.fingerprint(), name
            data = pickle.dumps(src)
            if name not in ("numpy", "list", "dask"):
                assert len(data) < 3000, f"{name}: {len(data)} bytes pickled"
            clone = pickle.loads(data)
            np.testing.assert_array_equal(clone.read_rows(10, 30), ref[10:30], err_msg=name)
            # open_dissimilarity(kind="features") is the same thing
            via = open_dissimilarity(arg, kind="features", dtype="float64", **opts)
            np.testing.assert_array_equal(via.read_rows(0, 5), ref[:5], err_msg=name)
    finally:
        h5.close()


def test_file_backed_x_is_never_loaded_whole(tmp_path, X, monkeypatch):
    monkeypatch.setattr(_budget, "FEATURE_WORK_BYTES", 10 * 8 * X.shape[1])  # 10-row scan blocks
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(5, X.shape[1]), dtype=X.dtype)
    z[:] = X
    reads = []
    orig = features_mod.FeatureArray.read

    def spy(self, start, stop):
        reads.append(stop - start)
        return orig(self, start, stop)

    monkeypatch.setattr(features_mod.FeatureArray, "read", spy)
    src = from_features(tmp_path / "X.zarr", block_rows=6, feature_block_rows=5)
    assert max(reads) <= 10
    reads.clear()
    src.read_rows(12, 18)
    assert max(reads) <= 6
    reads.clear()
    src.take_rows([40, 1, 30, 7, 1])
    assert sum(reads) == 45 + 4  # one pass over X plus the 4 distinct selected rows
    src2 = from_features(tmp_path / "X.zarr", block_rows=6)
    assert src2.feature_block_rows % 5 == 0  # whole storage chunks of X per read


def test_gower_fitted_once_at_creation(tmp_path, rng):
    Xg = np.column_stack([rng.normal(size=40) * 5, rng.integers(0, 3, size=40), rng.random(40)])
    src = from_features(Xg, "gower", dtype="float64", categorical=[1], block_rows=6, feature_block_rows=7)
    assert not src.metric.needs_fit
    ranges = np.ptp(Xg, axis=0)
    np.testing.assert_allclose(src.metric.params["ranges"][0], ranges[0])
    np.testing.assert_allclose(src.metric.params["ranges"][2], ranges[2])
    num = np.abs(Xg[:, None, [0, 2]] - Xg[None, :, [0, 2]]) / ranges[[0, 2]]
    cat = (Xg[:, None, 1] != Xg[None, :, 1]).astype(float)
    ref = (num.sum(axis=2) + cat) / 3
    D = full(src)
    np.testing.assert_allclose(D, ref, rtol=1e-12, atol=1e-15)
    assert (D == D.T).all()
    # fitting streams chunked X and reaches the same ranges
    z = zarr.create_array(store=str(tmp_path / "G.zarr"), shape=Xg.shape, chunks=(7, 3), dtype=Xg.dtype)
    z[:] = Xg
    src_z = from_features(tmp_path / "G.zarr", "gower", dtype="float64", categorical=[1])
    assert src_z.metric.describe() == src.metric.describe()
    np.testing.assert_array_equal(full(src_z), D)
    clone = pickle.loads(pickle.dumps(src_z))
    assert clone.metric.describe() == src.metric.describe()


def test_integer_output_dtypes(rng):
    Xi = rng.integers(0, 20, size=(25, 3))
    for dt in ("int32", "int64"):
        D = full(from_features(Xi, "manhattan", dtype=dt, block_rows=4, feature_block_rows=6))
        assert D.dtype == np.dtype(dt)
        np.testing.assert_array_equal(D, cdist(Xi, Xi, "cityblock").astype(dt))
    # non-integral distances round to nearest
    D = full(from_features(Xi, "euclidean", dtype="int64"))
    np.testing.assert_array_equal(D, np.rint(cdist(Xi, Xi)).astype(np.int64))
    big = np.array([[0.0], [3e9]])
    with pytest.raises(DissimilarityError, match="overflows dtype int32"):
        full(from_features(big, "manhattan", dtype="int32"))


def test_fingerprint_identity(X):
    fp = from_features(X).fingerprint()
    assert from_features(X.copy(), block_rows=3, feature_block_rows=2).fingerprint() == fp
    assert from_features(X, "manhattan").fingerprint() != fp
    assert from_features(X, dtype="float64").fingerprint() != fp
    assert from_features(X, "minkowski", p=3).fingerprint() != from_features(X, "minkowski", p=4).fingerprint()
    X2 = X.copy()
    X2[20, 3] += 1e-12
    assert from_features(X2).fingerprint() != fp  # any changed value


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_features_rejected(tmp_path, X, bad):
    X = X.copy()
    X[33, 4] = bad
    with pytest.raises(InvalidParameterError, match=r"X\[33, 4\].*must be finite"):
        from_features(X)
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(4, 6), dtype=X.dtype)
    z[:] = X
    with pytest.raises(InvalidParameterError, match=r"X\.zarr.*X\[33, 4\]"):
        from_features(tmp_path / "X.zarr", feature_block_rows=3)


def test_shape_and_type_errors(tmp_path):
    with pytest.raises(InvalidParameterError, match="2-D"):
        from_features(np.arange(5.0))
    with pytest.raises(InvalidParameterError, match="2-D"):
        from_features(np.zeros((2, 2, 2)))
    with pytest.raises(InvalidParameterError, match="empty"):
        from_features(np.zeros((0, 3)))
    with pytest.raises(InvalidParameterError, match="no features"):
        from_features(np.zeros((3, 0)))
    with pytest.raises(UnsupportedDtypeError, match="complex128"):
        from_features(np.zeros((3, 2), complex))
    with pytest.raises(UnsupportedDtypeError, match="U1|<U1"):
        from_features(np.array([["a", "b"], ["c", "d"]]))
    with pytest.raises(UnsupportedDtypeError, match="object"):
        from_features([[1, "x"], [2, None]])
    with pytest.raises(UnsupportedDtypeError, match="int16"):
        from_features(np.zeros((3, 2)), dtype="int16")
    with pytest.raises(InvalidTypeError, match="dissimilarity source"):
        from_features(open_dissimilarity(np.zeros((2, 2))))
    with pytest.raises(UnknownNameError):
        from_features(np.zeros((3, 2)), "nonsense")
    with pytest.raises(InvalidParameterError):
        from_features(np.zeros((3, 2)), "euclidean", p=3)
    with pytest.raises(InvalidParameterError, match="block_rows"):
        from_features(np.zeros((3, 2)), block_rows=0)
    with pytest.raises(InvalidTypeError, match="feature_block_rows"):
        from_features(np.zeros((3, 2)), feature_block_rows=2.5)
    with pytest.raises(FileNotFoundError):
        from_features(tmp_path / "none.npy")
    (tmp_path / "x.csv").write_text("1,2")
    with pytest.raises(InvalidParameterError, match=r"\.npy, \.zarr, \.h5"):
        from_features(tmp_path / "x.csv")
    with pytest.raises(InvalidParameterError, match="dataset="):
        from_features(np.zeros((3, 2)), dataset="x")


def test_dataset_selection_errors(tmp_path, X):
    with h5py.File(tmp_path / "two.h5", "w") as f:
        f.create_dataset("a", data=X)
        f.create_dataset("b", data=X[:, :2])
    with pytest.raises(InvalidParameterError, match=r"2 datasets.*a \(45, 6\).*dataset='name'"):
        from_features(tmp_path / "two.h5")
    with pytest.raises(UnknownNameError, match="'c'.*does not exist.*b \\(45, 2\\)"):
        from_features(tmp_path / "two.h5", dataset="c")
    assert from_features(tmp_path / "two.h5", dataset="b").features.d == 2
    g = zarr.open_group(str(tmp_path / "g.zarr"), mode="w")
    g.create_array("a", shape=(3, 2), dtype="f8")[:] = 1.0
    g.create_array("b", shape=(3, 2), dtype="f8")[:] = 1.0
    with pytest.raises(InvalidParameterError, match="2 arrays"):
        from_features(tmp_path / "g.zarr")
    assert from_features(tmp_path / "g.zarr", dataset="a").n == 3


def test_features_kind_rejects_unknown_options(X):
    # extra options are metric parameters: the metric refuses the ones it does not take
    with pytest.raises(InvalidParameterError, match="colour"):
        open_dissimilarity(X, kind="features", colour="red")
    assert isinstance(open_dissimilarity(X, kind="features", metric="cosine"), FeatureSource)
