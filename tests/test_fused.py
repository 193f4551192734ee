"""Fused on-the-fly distance kernels (issue 16): values, symmetry and results unchanged.

The fixture hashes in ``tests/data/fused_fixture_hashes.json`` were computed with the code
before the fused kernels existed (``tests/data/make_fused_fixture.py``); the rows that
``from_features(...).read_rows`` returns and the stores ``build_dissimilarity`` writes must
still hash to them bit for bit.
"""

import hashlib
import json
import os

import numpy as np
import pytest

from chunked_medoids import build_dissimilarity, from_features

DATA = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(DATA, "fused_fixture_hashes.json")) as _f:
    CASES = json.load(_f)
with np.load(os.path.join(DATA, "fused_fixture.npz")) as _z:
    XS = {name: _z[name] for name in _z.files}


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _case_id(c):
    return f"{c['X']}-{c['metric']}{c['params'] or ''}-{c['dtype']}{c.get('store', '')}"


@pytest.mark.parametrize("case", [c for c in CASES if "store" not in c], ids=_case_id)
def test_rows_match_pre_change_hash(case):
    X = XS[case["X"]]
    src = from_features(X, case["metric"], dtype=case["dtype"], **case["params"])
    assert _sha(src.read_rows(0, src.n)) == case["sha256"]


@pytest.mark.parametrize("case", [c for c in CASES if "store" in c], ids=_case_id)
def test_builder_output_matches_pre_change_hash(tmp_path, case):
    X = XS[case["X"]]
    src = build_dissimilarity(X, tmp_path / f"s{case['store']}", case["metric"], dtype=case["dtype"],
                              block_rows=case["block_rows"], **case["params"])
    assert _sha(src.read_rows(0, src.n)) == case["sha256"]


# ---------------------------------------------------------------------------------------
# fused rows: every source kind / block split / path gives the same bits
# ---------------------------------------------------------------------------------------

METRICS = [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}),
           ("minkowski", {"p": 3}), ("minkowski", {"p": 1}), ("minkowski", {"p": 2}), ("cosine", {}),
           ("correlation", {}), ("canberra", {}), ("braycurtis", {}), ("hamming", {}), ("jaccard", {}),
           ("gower", {"categorical": [1]})]


def _generic_rows(src, start, stop):
    return src._read_rows_generic(start, stop)


@pytest.mark.parametrize("metric,params", METRICS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_fused_rows_equal_generic_path_and_are_symmetric(rng, metric, params, dtype):
    X = np.round(rng.normal(size=(150, 6)), 1)
    X[7] = X[3]
    src = from_features(X, metric, dtype=dtype, **params)
    D = src.read_rows(0, 150)
    np.testing.assert_array_equal(D, _generic_rows(src, 0, 150))
    np.testing.assert_array_equal(D, D.T)
    assert np.all(np.diag(D) == 0)
    np.testing.assert_array_equal(src.read_rows(40, 77), D[40:77])
    idx = np.array([149, 3, 88, 3, 0, 120])
    np.testing.assert_array_equal(src.take_rows(idx), D[idx])


@pytest.mark.parametrize("metric,params", [("euclidean", {}), ("cosine", {}), ("gower", {"categorical": [0]})])
def test_fused_rows_from_a_zarr_x_use_column_chunks(tmp_path, rng, metric, params):
    import zarr

    X = rng.normal(size=(90, 5))
    z = zarr.create_array(store=str(tmp_path / "X.zarr"), shape=X.shape, chunks=(7, 5), dtype=X.dtype)
    z[:] = X
    on_disk = from_features(tmp_path / "X.zarr", metric, feature_block_rows=14, **params)
    assert on_disk.prepared_features() is None and on_disk.fused_bundle() is None
    mem = from_features(X, metric, **params)
    assert mem.prepared_features() is not None
    D = mem.read_rows(0, 90)
    np.testing.assert_array_equal(on_disk.read_rows(0, 90), D)
    np.testing.assert_array_equal(on_disk.read_rows(13, 29), D[13:29])
    np.testing.assert_array_equal(on_disk.take_rows([80, 2, 45]), D[[80, 2, 45]])


def test_prepared_copy_above_budget_falls_back_to_chunks(monkeypatch, rng):
    from chunked_medoids import _budget

    X = rng.normal(size=(70, 4))
    ref = from_features(X).read_rows(0, 70)
    monkeypatch.setattr(_budget, "FEATURE_PREP_BYTES", 100)
    src = from_features(X, feature_block_rows=9)
    assert src.prepared_features() is None
    np.testing.assert_array_equal(src.read_rows(0, 70), ref)


def test_integer_dtype_rows_and_overflow_error(rng):
    from chunked_medoids import DissimilarityError

    X = rng.integers(0, 9, size=(40, 5)).astype(float)
    src = from_features(X, "manhattan", dtype="int32")
    D = src.read_rows(0, 40)
    np.testing.assert_array_equal(D, _generic_rows(src, 0, 40))
    big = from_features(X * 1e9, "manhattan", dtype="int32")
    with pytest.raises(DissimilarityError, match="overflows dtype int32"):
        big.read_rows(0, 5)


def test_float32_overflow_is_reported_by_the_fused_rows():
    from chunked_medoids import DissimilarityError

    X = np.array([[0.0, 0.0], [2e38, 3e38], [2.0, 1.0]])
    src = from_features(X, "euclidean", dtype="float32")
    with pytest.raises(DissimilarityError, match=r"inf.*D\[0, 1\]"):
        src.read_rows(0, 3)


def test_custom_metric_goes_through_the_generic_path(rng):
    from numba import njit

    @njit
    def l1(x, y):
        return np.abs(x - y).sum()

    X = rng.normal(size=(30, 3))
    src = from_features(X, l1)
    assert src.fused_bundle() is None and src.prepared_features() is None
    np.testing.assert_array_equal(src.read_rows(0, 30).astype(np.float64),
                                  from_features(X, "manhattan").read_rows(0, 30).astype(np.float64))


def test_source_pickles_without_its_prepared_copy(rng):
    import pickle

    X = rng.normal(size=(50, 3))
    src = from_features(X)
    D = src.read_rows(0, 50)
    assert src.prepared_features() is not None
    blob = pickle.dumps(src)
    assert len(blob) < 50 * 3 * 8 + 4000  # X itself, not X plus its prepared copy
    back = pickle.loads(blob)
    np.testing.assert_array_equal(back.read_rows(0, 50), D)


# ---------------------------------------------------------------------------------------
# fused FasterPAM kernels == stored kernels on the materialised rows
# ---------------------------------------------------------------------------------------


def _run_kernel(src, D, init, fused, weights=None, passes=6):
    from chunked_medoids._kernels import fused as kf
    from chunked_medoids._kernels.swap import fasterpam_block
    from chunked_medoids.algorithms._common import SwapCaches

    n, k = src.n, len(init)
    st = SwapCaches(src, init, weights)
    counters = np.zeros(2, np.int64)
    td = np.array([st.td])
    P = np.empty(k)
    cand = np.arange(n, dtype=np.int64)
    F = src.fused_bundle()
    S = kf.make_scratch(n, src.dtype, F[6])
    H = kf.make_thresholds(F, st.ds)
    for _ in range(passes):
        if fused:
            kf.fasterpam_fused(F, S, H, cand, st.M, st.medoids, st.is_medoid, st.dn, st.ds, st.nn, st.sn,
                               st.R, st.w, st.weighted, 0.0, P, counters, td)
            assert S[5][0] == 0
        else:
            fasterpam_block(D, cand, cand, st.M, st.medoids, st.is_medoid, st.dn, st.ds, st.nn, st.sn,
                            st.R, st.w, st.weighted, 0.0, P, np.empty(n, np.int32), counters, td)
        if counters[0] >= n:
            break
    return st.medoids.copy(), float(td[0]), counters.tolist(), st.dn.copy(), st.ds.copy()


@pytest.mark.parametrize("metric,dtype,k", [("euclidean", "float32", 5), ("euclidean", "float64", 4),
                                            ("euclidean", "float32", 1), ("sqeuclidean", "float32", 6),
                                            ("manhattan", "float64", 3), ("chebyshev", "float32", 7),
                                            ("cosine", "float32", 4), ("correlation", "float64", 3),
                                            ("canberra", "float32", 5), ("braycurtis", "float32", 2),
                                            ("minkowski", "float32", 4), ("euclidean", "float16", 5),
                                            ("euclidean", "float16", 1), ("manhattan", "float16", 3),
                                            ("chebyshev", "float16", 4), ("cosine", "float16", 4),
                                            ("canberra", "float16", 3)])
@pytest.mark.parametrize("weighted", [False, True])
def test_fused_fasterpam_kernel_equals_stored_kernel(rng, metric, dtype, k, weighted):
    X = np.round(np.abs(rng.normal(size=(333, 3))), 1)  # ties and duplicates on purpose
    params = {"p": 3} if metric == "minkowski" else {}
    src = from_features(X, metric, dtype=dtype, **params)
    D = src.read_rows(0, src.n)
    init = rng.choice(src.n, k, replace=False)
    w = rng.uniform(0.5, 2.0, size=src.n) if weighted else None
    a = _run_kernel(src, D, init, False, w)
    b = _run_kernel(src, D, init, True, w)
    assert a[0].tolist() == b[0].tolist() and a[1] == b[1] and a[2] == b[2]
    np.testing.assert_array_equal(a[3], b[3])
    np.testing.assert_array_equal(a[4], b[4])


@pytest.mark.parametrize("fin", [1, 2])
@pytest.mark.parametrize("f32", [True, False])
def test_thresholds_are_exact(rng, fin, f32):
    from chunked_medoids._kernels.fused import threshold

    dt = np.float32 if f32 else np.float64
    vals = np.concatenate([rng.uniform(0, 500, 300), rng.uniform(0, 1e-3, 50), [1.0, 2.0, 4.0, 0.5, 3.0, 1e30]])
    vals = vals.astype(dt)
    for v in vals:
        s = threshold(fin, v, f32)
        f = (lambda x: dt(np.sqrt(x))) if fin == 2 else (lambda x: dt(x))  # noqa: E731
        assert f(s) >= v
        assert f(np.nextafter(s, 0.0)) < v or s == 0.0
    assert threshold(fin, dt(0.0), f32) == 0.0
    s = threshold(fin, dt(np.inf), f32)  # the finiteness bound
    f = (lambda x: dt(np.sqrt(x))) if fin == 2 else (lambda x: dt(x))  # noqa: E731
    with np.errstate(over="ignore"):
        assert f(s) == np.inf
        assert f(np.nextafter(s, 0.0)) < np.inf


# ---------------------------------------------------------------------------------------
# the driver's fused path
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("metric,dtype", [("euclidean", "float32"), ("manhattan", "float64"),
                                          ("cosine", "float32"), ("chebyshev", "float32")])
@pytest.mark.parametrize("workers,order", [(1, "natural"), (2, "natural"), (2, "shuffle")])
def test_fasterpam_from_features_equals_in_memory_matrix(rng, metric, dtype, workers, order):
    from chunked_medoids import fasterpam

    X = np.round(rng.normal(size=(700, 3)), 1)
    src = from_features(X, metric, dtype=dtype)
    assert src.fused_bundle() is not None
    D = src.read_rows(0, src.n)
    w = rng.uniform(0.5, 2.0, size=src.n)
    for weights in (None, w):
        kw = dict(init="random", random_state=3, order=order, num_workers=workers, weights=weights)
        a = fasterpam(D, 6, **kw)
        b = fasterpam(src, 6, **kw)
        c = fasterpam(src, 6, block_rows=37, speculative=False, **{**kw, "num_workers": 1})
        for r in (b, c):
            assert r.medoids.tolist() == a.medoids.tolist() and r.loss == a.loss
            assert r.n_iter == a.n_iter and r.n_swap == a.n_swap and r.loss_history == a.loss_history
            np.testing.assert_array_equal(r.labels, a.labels)


def test_wide_features_stream_rows_instead_of_fused_kernels(rng, monkeypatch):
    """FeatureSource.prefer_fused: the passes use the fused kernels up to FUSED_MAX_D
    dimensions and row blocks above it, with the same result either way."""
    from chunked_medoids import build, fasterpam
    from chunked_medoids.algorithms import fasterpam as fp
    from chunked_medoids.sources import features as feat

    used = []
    real = fp.FusedEval

    class Spy(real):
        def __init__(self, *a, **kw):
            used.append(True)
            super().__init__(*a, **kw)

    monkeypatch.setattr(fp, "FusedEval", Spy)
    X = np.round(rng.normal(size=(300, 6)), 1)
    src = from_features(X, "euclidean")
    D = src.read_rows(0, src.n)
    want = fasterpam(D, 5, init="build", num_workers=2)
    results = []
    for max_d, fused in ((6, True), (5, False)):
        monkeypatch.setattr(feat, "FUSED_MAX_D", max_d)
        monkeypatch.setattr(feat, "FUSED_WALK_MAX_D", max_d)  # FasterPAM's walk has its own bound
        used.clear()
        assert src.prefer_fused() is fused and src.prefer_fused(walk=True) is fused
        assert src.fused_bundle() is not None
        r = fasterpam(src, 5, init="build", num_workers=2)
        assert bool(used) is fused
        results.append(r)
        assert build(src, 5).tolist() == build(D, 5).tolist()
    for r in results:
        assert r.medoids.tolist() == want.medoids.tolist() and r.loss == want.loss
        assert r.loss_history == want.loss_history


@pytest.mark.parametrize("dtype", ["float32", "float16"])
def test_fasterpam_walk_stays_fused_for_wide_features(rng, monkeypatch, dtype):
    """FasterPAM's eager walk asks ``prefer_fused(walk=True)``, which has no bound on d: wide
    features (d = 40 > FUSED_MAX_D) still walk through the fused kernels, while the
    block-parallel passes (BUILD here) stream rows; bitwise the result of the rows path."""
    from chunked_medoids import fasterpam
    from chunked_medoids.algorithms import fasterpam as fp
    from chunked_medoids.sources import features as feat

    used = []
    real = fp.FusedEval

    class Spy(real):
        def __init__(self, *a, **kw):
            used.append(True)
            super().__init__(*a, **kw)

    monkeypatch.setattr(fp, "FusedEval", Spy)
    X = np.round(rng.normal(size=(260, 40)), 1)
    src = from_features(X, "manhattan", dtype=dtype)
    assert src.features.d > feat.FUSED_MAX_D and feat.FUSED_WALK_MAX_D is None
    assert src.prefer_fused(walk=True) and not src.prefer_fused()
    with monkeypatch.context() as m:  # a walk bound below d: the walk streams rows too
        m.setattr(feat, "FUSED_WALK_MAX_D", 39)
        assert not src.prefer_fused(walk=True)
    got = fasterpam(src, 6, init="build", num_workers=2)
    assert used
    used.clear()
    monkeypatch.setattr(type(src), "prefer_fused", lambda self, walk=False: False)
    want = fasterpam(src, 6, init="build", num_workers=2)
    assert not used
    assert got.medoids.tolist() == want.medoids.tolist() and got.loss == want.loss
    assert got.loss_history == want.loss_history and got.n_swap == want.n_swap
    np.testing.assert_array_equal(got.labels, want.labels)


def test_fused_kernels_flag_a_float32_overflow_and_the_driver_reports_it():
    from chunked_medoids import DissimilarityError
    from chunked_medoids._kernels import fused as kf
    from chunked_medoids.algorithms.fasterpam import report_bad_rows

    X = np.zeros((40, 2))
    X[:, 0] = np.arange(40)
    X[33] = [2e38, 3e38]
    src = from_features(X, "euclidean", dtype="float32")
    F = src.fused_bundle()
    n, k = 40, 3
    ds = np.full(n, 5.0, np.float32)
    H = kf.make_thresholds(F, ds)
    for j, expect in ((5, 1), (33, 39)):
        S = kf.make_scratch(n, np.float32, F[6])
        kf.fused_eval(j, F, np.full(n, 1.0, np.float32), ds, H, np.zeros(n, np.int32), np.zeros(k),
                      np.empty(0), False, np.empty(k), S)
        assert S[5][0] == expect  # non-finite entries of row j
    with pytest.raises(DissimilarityError, match="inf"):
        report_bad_rows(src, np.array([4, 5]))


# ---------------------------------------------------------------------------------------
# float16 features: the fused kernels quantise as the float16 store does
# ---------------------------------------------------------------------------------------


def test_half_rounding_equals_numpy_around_every_float16_boundary():
    """_kernels/half.quantise_f32 (the store's encoder and the fused kernels' rounding) is
    numpy's float32 -> float16 conversion at every rounding boundary (midpoints between
    consecutive float16 values, +-3 float32 ulps) and at the float16 values themselves."""
    from chunked_medoids._kernels.half import quantise_f32

    h = np.arange(0, 0x7C00, dtype=np.uint16).view(np.float16).astype(np.float32)
    mid = ((h[:-1].astype(np.float64) + h[1:]) / 2).astype(np.float32)
    parts = [h, mid, np.float32([-0.0, 65504.0])]
    up = down = mid
    for _ in range(3):
        up = np.nextafter(up, np.float32(np.inf))
        down = np.nextafter(down, np.float32(0.0))
        parts += [up, down]
    x = np.concatenate(parts)
    x = x[(x <= 65504) | np.signbit(x)]
    for scale in (1.0, 2.0 ** -3, 2.0 ** 5):
        xs = (x / np.float32(scale)).astype(np.float32)  # exact: so xs * scale == x
        out = np.empty(x.size, np.uint16)
        assert quantise_f32(xs, np.float32(scale), out) == 0
        np.testing.assert_array_equal(out, (xs * np.float32(scale)).astype(np.float16).view(np.uint16))
    bad = np.float32([1.0, 65505.0, np.inf, np.nan, -1.0])
    assert quantise_f32(bad, np.float32(1.0), np.empty(5, np.uint16)) == 4


@pytest.mark.parametrize("fin", [1, 2])
@pytest.mark.parametrize("scale", [2.0 ** -4, 1.0, 2.0 ** 11])
def test_quantised_thresholds_are_exact(rng, fin, scale):
    """qthreshold: the smallest float64 s whose finished, float32-rounded, float16-quantised
    value reaches v, for dequantised values v and others; bad_threshold: float16 overflow."""
    from chunked_medoids._kernels.fused import bad_threshold, qthreshold

    qs, qinv = np.float32(scale), np.float32(1.0 / scale)

    def f(s):
        x = np.float32(np.sqrt(s)) if fin == 2 else np.float32(s)
        with np.errstate(over="ignore"):
            return np.float32(np.float16(x * qs)) * qinv

    raw = np.concatenate([rng.uniform(0, 30000, 200), rng.uniform(0, 1e-3, 50), 2.0 ** -rng.uniform(14, 26, 50),
                          [1.0, 2.0, 0.5, 3.0, 65504.0, 2.0 ** -24, 2.0 ** -25]]) / scale
    deq = (np.float32(raw * scale).astype(np.float16).astype(np.float32) * qinv).astype(np.float32)
    for v in np.concatenate([deq, raw.astype(np.float32)]):
        if not v > 0 or v * scale > 65504:
            continue
        s = qthreshold(fin, v, True, qs, qinv)
        assert f(s) >= v
        assert s == 0.0 or f(np.nextafter(s, 0.0)) < v
    assert qthreshold(fin, np.float32(0.0), True, qs, qinv) == 0.0
    s = bad_threshold(fin, True, qs, qinv)
    x = (lambda t: np.float32(np.sqrt(t))) if fin == 2 else np.float32  # noqa: E731
    assert float(x(s)) * scale > 65504 and float(x(np.nextafter(s, 0.0))) * scale <= 65504


FUSED_METRICS = [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}),
                 ("minkowski", {"p": 3}), ("cosine", {}), ("correlation", {}), ("canberra", {}),
                 ("braycurtis", {}), ("hamming", {}), ("jaccard", {}), ("gower", {"categorical": [1]})]


@pytest.mark.parametrize("metric,params", FUSED_METRICS, ids=lambda v: str(v))
def test_float16_features_equal_the_float16_store(tmp_path, rng, metric, params):
    """from_features(X, dtype="float16") runs fused (bundle with the store's scale), its rows
    and the fused kernels' rows are bitwise the rows of the float16 store built from X, and
    FasterPAM from the features equals FasterPAM on the store."""
    from chunked_medoids import fasterpam
    from chunked_medoids._kernels import fused as kf

    X = np.round(np.abs(rng.normal(size=(300, 3))), 1)
    src = from_features(X, metric, dtype="float16", **params)
    store = build_dissimilarity(X, tmp_path / "s.zarr", metric, dtype="float16", **params)
    assert store.scale == src.scale and src.prefer_fused()
    D = store.read_rows(0, store.n)
    assert D.dtype == np.float32
    np.testing.assert_array_equal(src.read_rows(0, src.n).view(np.uint32), D.view(np.uint32))
    F = src.fused_bundle()
    assert F[7] == np.float32(src.scale) and F[8] * F[7] == 1
    S = kf.make_scratch(src.n, src.dtype, F[6])
    rows = np.stack([kf.fused_full_row(j, F, S).copy() for j in range(src.n)])
    assert S[5][0] == 0
    np.testing.assert_array_equal(rows.view(np.uint32), D.view(np.uint32))
    a = fasterpam(store, 5, init="random", random_state=2)
    b = fasterpam(src, 5, init="random", random_state=2)
    assert a.medoids.tolist() == b.medoids.tolist() and a.loss == b.loss and a.n_swap == b.n_swap
    assert a.loss_history == b.loss_history


def test_float16_overflow_is_refused_on_the_fused_path(rng):
    """A distance that overflows float16 under the given scale: the fused kernels count it
    as not finite and the driver lets the source raise QuantisationOverflowError."""
    import chunked_medoids as cm
    from chunked_medoids._kernels import fused as kf

    X = np.zeros((60, 2))
    X[:, 0] = np.arange(60) * 0.01
    X[41] = [300.0, 0.0]  # D[0, 41] = 300 fits 2**7 (38400); D[41, j] is about 300 too
    X[50] = [-300.0, 0.0]  # D[41, 50] = 600: 76800 > 65504 under scale 2**7
    src = from_features(X, "euclidean", dtype="float16", scale=2.0 ** 7)
    assert src.prefer_fused()
    F = src.fused_bundle()
    S = kf.make_scratch(src.n, src.dtype, F[6])
    kf.fused_full_row(41, F, S)
    assert S[5][0] == 1
    n, k = 60, 3
    ds = np.full(n, 5.0, np.float32)
    H = kf.make_thresholds(F, ds)
    S = kf.make_scratch(n, np.float32, F[6])
    kf.fused_eval(50, F, np.full(n, 1.0, np.float32), ds, H, np.zeros(n, np.int32), np.zeros(k),
                  np.empty(0), False, np.empty(k), S)
    assert S[5][0] == 1
    for call in (lambda: cm.fasterpam(src, 3, init=[0, 41, 50]), lambda: cm.build(src, 3),
                 lambda: cm.fastpam1(src, 3, init=[0, 1, 2])):
        with pytest.raises(cm.QuantisationOverflowError, match="scale"):
            call()
