"""Fused full-pass kernels (issue 16): bitwise the stored kernels on the materialised rows.

Each fused kernel of ``chunked_medoids._kernels.fused_passes`` is compared with its stored
twin run on ``from_features(...).read_rows`` blocks, over metrics, dtypes, weights and
block splits; then the drivers (PAM, FastPAM1, FastPAM2, BUILD, alternating, silhouette)
on a features source against the same drivers on the in-memory matrix.
"""

import numpy as np
import pytest

from chunked_medoids import from_features

METRICS = [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}),
           ("minkowski", {"p": 3}), ("cosine", {}), ("correlation", {}), ("canberra", {}),
           ("braycurtis", {}), ("hamming", {}), ("jaccard", {}), ("gower", {"categorical": [1]})]


def _data(rng, n=333, d=3):
    X = np.round(np.abs(rng.normal(size=(n, d))), 1)  # ties and duplicates on purpose
    X[7] = X[3]
    X[20] = X[21]
    return X


def _setup(rng, metric, params, dtype, k, weighted, n=333, d=3):
    from chunked_medoids._kernels import fused as kf
    from chunked_medoids.algorithms._common import SwapCaches

    src = from_features(_data(rng, n, d), metric, dtype=dtype, **params)
    F = src.fused_bundle()
    assert F is not None
    D = src.read_rows(0, src.n)
    init = rng.choice(src.n, k, replace=False)
    w = rng.uniform(0.5, 2.0, size=src.n) if weighted else None
    st = SwapCaches(src, init, w)
    return src, F, D, st, kf.make_scratch(src.n, src.dtype, F[6])


SPLITS = [(0, 333), (0, 100), (100, 101), (101, 333)]


def _eq_records(a, b):
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x, y)
        assert x.dtype == y.dtype


@pytest.mark.parametrize("metric,params", METRICS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("weighted", [False, True])
def test_swap_pass_kernels_equal_stored(rng, metric, params, dtype, weighted):
    from chunked_medoids._kernels import fused_passes as fp
    from chunked_medoids._kernels.fused import make_thresholds
    from chunked_medoids._kernels.swap import fastpam1_records, fastpam2_block, pam_records

    for k in (1, 5):
        src, F, D, st, S = _setup(rng, metric, params, dtype, k, weighted)
        H = make_thresholds(F, st.ds)
        for a, b in SPLITS:
            args = (st.is_medoid, st.dn, st.ds, st.nn)
            _eq_records(fastpam1_records(D[a:b], a, *args, st.R, st.w, st.weighted),
                        fp.fastpam1_records_fused(F, S, H, a, b, *args, st.R, st.w, st.weighted))
            _eq_records(pam_records(D[a:b], a, *args, st.k, st.w, st.weighted),
                        fp.pam_records_fused(F, S, a, b, *args, st.k, st.w, st.weighted))
            out1 = (np.empty(k), np.empty(k, np.int64))
            out2 = (np.empty(k), np.empty(k, np.int64))
            fastpam2_block(D[a:b], a, *args, st.R, st.w, st.weighted, *out1)
            fp.fastpam2_block_fused(F, S, H, a, b, *args, st.R, st.w, st.weighted, *out2)
            _eq_records(out1, out2)
        assert S[5][0] == 0


@pytest.mark.parametrize("metric,params", METRICS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("weighted", [False, True])
def test_build_silhouette_alternating_kernels_equal_stored(rng, metric, params, dtype, weighted):
    from chunked_medoids._kernels import fused_passes as fp
    from chunked_medoids._kernels.build import build_gains, row_sums, within_cluster_sums
    from chunked_medoids._kernels.fused import make_thresholds
    from chunked_medoids._kernels.silhouette import silhouette_block

    src, F, D, st, S = _setup(rng, metric, params, dtype, 4, weighted)
    labels = st.nn.copy()
    counts = np.bincount(labels, minlength=4).astype(np.int64)
    dn = st.dn.copy()
    H = make_thresholds(F, dn)
    for a, b in SPLITS:
        m = b - a
        for stored, fused in (
            (lambda o: row_sums(D[a:b], st.w, st.weighted, o),
             lambda o: fp.row_sums_fused(F, S, a, b, st.w, st.weighted, o)),
            (lambda o: build_gains(D[a:b], dn, st.w, st.weighted, o),
             lambda o: fp.build_gains_fused(F, S, H, a, b, dn, st.w, st.weighted, o)),
            (lambda o: within_cluster_sums(D[a:b], a, labels, st.w, st.weighted, o),
             lambda o: fp.within_cluster_sums_fused(F, S, a, b, labels, st.w, st.weighted, o)),
            (lambda o: silhouette_block(D[a:b], a, labels, counts, o),
             lambda o: fp.silhouette_fused(F, S, a, b, labels, counts, o)),
        ):
            x, y = np.empty(m), np.empty(m)
            stored(x)
            fused(y)
            np.testing.assert_array_equal(x, y)
    assert S[5][0] == 0


@pytest.mark.parametrize("metric", ["euclidean", "cosine", "chebyshev"])
def test_kernels_over_several_tiles(rng, metric):
    # d = 40: tiles of 384 columns, so n = 900 spans three tiles with a partial last one
    from chunked_medoids._kernels import fused_passes as fp
    from chunked_medoids._kernels.build import build_gains
    from chunked_medoids._kernels.fused import make_thresholds
    from chunked_medoids._kernels.swap import fastpam1_records

    src, F, D, st, S = _setup(rng, metric, {}, "float32", 6, False, n=900, d=40)
    assert F[6] < 900
    H = make_thresholds(F, st.ds)
    _eq_records(fastpam1_records(D[10:90], 10, st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w, st.weighted),
                fp.fastpam1_records_fused(F, S, H, 10, 90, st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w,
                                          st.weighted))
    x, y = np.empty(80), np.empty(80)
    build_gains(D[10:90], st.dn, st.w, st.weighted, x)
    fp.build_gains_fused(F, S, make_thresholds(F, st.dn), 10, 90, st.dn, st.w, st.weighted, y)
    np.testing.assert_array_equal(x, y)


def test_gains_only_visit_points_closer_than_dn(rng):
    # the skipped terms of the stored kernel are exact zeros: a gain computed from scratch
    # over the points with D < dn equals it (and is not trivially 0)
    from chunked_medoids._kernels import fused_passes as fp
    from chunked_medoids._kernels.fused import make_thresholds

    src, F, D, st, S = _setup(rng, "euclidean", {}, "float32", 3, False)
    out = np.empty(src.n)
    fp.build_gains_fused(F, S, make_thresholds(F, st.dn), 0, src.n, st.dn, st.w, False, out)
    j = int(np.argmax(out))
    assert out[j] > 0
    ref = 0.0
    for o in range(src.n):
        if D[j, o] < st.dn[o]:
            ref += np.float64(st.dn[o]) - np.float64(D[j, o])
    assert out[j] == ref


# ---------------------------------------------------------------------------------------
# drivers: a features source gives the in-memory matrix's results, through the fused path
# ---------------------------------------------------------------------------------------


def _spy(monkeypatch):
    from chunked_medoids.algorithms import _fused

    calls = []
    orig = _fused.fused_pass

    def spy(*a, **kw):
        calls.append(kw.get("desc"))
        return orig(*a, **kw)

    for mod in ("pam", "init", "silhouette", "alternating"):
        monkeypatch.setattr(f"chunked_medoids.algorithms.{mod}.fused_pass", spy)
    return calls


@pytest.mark.parametrize("method", ["pam", "fastpam1", "fastpam2", "alternating"])
@pytest.mark.parametrize("metric,dtype", [("euclidean", "float32"), ("cosine", "float64"),
                                          ("manhattan", "float32")])
def test_drivers_on_features_equal_in_memory_matrix(rng, monkeypatch, method, metric, dtype):
    import chunked_medoids as cm

    X = np.round(rng.normal(size=(160, 3)), 1)
    src = from_features(X, metric, dtype=dtype)
    D = src.read_rows(0, src.n)
    w = rng.uniform(0.5, 2.0, size=src.n)
    fn = getattr(cm, method)
    calls = _spy(monkeypatch)
    for weights in (None, w):
        kw = dict(init="build", weights=weights, max_iter=5)
        a = fn(D, 4, **kw)
        n0 = len(calls)
        b = fn(src, 4, num_workers=2, **kw)
        c = fn(src, 4, block_rows=23, num_workers=1, **kw)
        assert len(calls) > n0  # the fused passes ran
        for r in (b, c):
            assert r.medoids.tolist() == a.medoids.tolist() and r.loss == a.loss
            assert r.n_iter == a.n_iter and r.n_swap == a.n_swap and r.loss_history == a.loss_history
            np.testing.assert_array_equal(r.labels, a.labels)


@pytest.mark.parametrize("metric", ["euclidean", "braycurtis"])
def test_build_and_silhouette_on_features_equal_in_memory_matrix(rng, monkeypatch, metric):
    import chunked_medoids as cm

    X = np.round(np.abs(rng.normal(size=(150, 4))), 1)
    X[5] = X[6]
    src = from_features(X, metric)
    D = src.read_rows(0, src.n)
    calls = _spy(monkeypatch)
    w = rng.uniform(0.5, 2.0, size=src.n)
    for weights in (None, w):
        assert cm.build(src, 7, weights=weights, block_rows=31).tolist() == cm.build(D, 7, weights=weights).tolist()
    assert any(c == "BUILD 1" for c in calls) and any(c == "BUILD 7" for c in calls)
    labels = cm.fasterpam(D, 5, random_state=0).labels
    calls.clear()
    s1 = cm.silhouette(D, labels, samples=True)
    s2 = cm.silhouette(src, labels, samples=True, block_rows=17)
    assert calls == ["silhouette"]
    np.testing.assert_array_equal(s1, s2)
    assert cm.silhouette(src, labels) == cm.silhouette(D, labels)


def test_custom_njit_metric_keeps_the_generic_path(rng, monkeypatch):
    from numba import njit

    import chunked_medoids as cm

    @njit
    def l1(x, y):
        return np.abs(x - y).sum()

    X = np.round(rng.normal(size=(90, 3)), 1)
    src = from_features(X, l1)
    ref = from_features(X, "manhattan")
    assert src.fused_bundle() is None
    calls = _spy(monkeypatch)
    D = ref.read_rows(0, ref.n)
    np.testing.assert_array_equal(src.read_rows(0, src.n), D)
    for method in ("pam", "fastpam1", "fastpam2", "alternating", "fasterpam"):
        a = getattr(cm, method)(src, 3, init="build", max_iter=4)
        b = getattr(cm, method)(D, 3, init="build", max_iter=4)
        assert a.medoids.tolist() == b.medoids.tolist() and a.loss == b.loss
    assert cm.silhouette(src, a.labels) == cm.silhouette(D, a.labels)
    assert calls == []  # the stored path: rows through metric.pairwise


def test_fused_pass_reports_a_non_finite_distance():
    import chunked_medoids as cm

    X = np.zeros((40, 2))
    X[:, 0] = np.arange(40)
    X[33] = [2e38, 3e38]  # float32 overflow in row 33 and column 33
    src = from_features(X, "euclidean", dtype="float32")
    with pytest.raises(cm.DissimilarityError, match="inf"):
        cm.build(src, 3)
    with pytest.raises(cm.DissimilarityError, match="inf"):
        cm.silhouette(src, np.arange(40) % 3)
    with pytest.raises(cm.DissimilarityError, match="inf"):
        cm.fastpam1(src, 3, init=[0, 1, 2])


@pytest.mark.parametrize("metric,params", METRICS, ids=lambda v: str(v))
@pytest.mark.parametrize("dtype", ["float32", "float64", "float16"])
@pytest.mark.parametrize("weighted", [False, True])
def test_fastermsc_kernel_equals_stored(rng, metric, params, dtype, weighted):
    from chunked_medoids._kernels import fused as kf
    from chunked_medoids._kernels import fused_passes as fp
    from chunked_medoids._kernels.msc import fastermsc_block
    from chunked_medoids.algorithms.msc import _MSCState

    src = from_features(_data(rng), metric, dtype=dtype, **params)
    F = src.fused_bundle()
    D = src.read_rows(0, src.n)
    n = src.n
    w = rng.uniform(0.5, 2.0, size=n) if weighted else None
    for k in (2, 5):
        init = rng.choice(n, k, replace=False)
        runs = []
        for fused in (False, True):
            st = _MSCState(src, init, w)
            S = kf.make_scratch(n, src.dtype, F[6])
            H = fp.msc_thresholds(F, st.d3, src.dtype)
            counters = np.zeros(2, np.int64)
            L = np.array([st.L])
            P = np.empty(k)
            for _ in range(4):
                for a in range(0, n, 100):  # blocks of 100 candidates
                    b = min(a + 100, n)
                    args = (st.M, st.medoids, st.is_medoid, st.d1, st.d2, st.d3, st.n1, st.n2, st.n3, st.R,
                            st.w, st.weighted, 0.0, 1e-12 * n, P, counters, L)
                    if fused:
                        used = fp.fastermsc_fused(F, S, H, a, b, *args)
                    else:
                        used = fastermsc_block(D[a:b], a, *args)
                    if counters[0] >= n:
                        break
                    assert used == b - a
                if counters[0] >= n:
                    break
            assert S[5][0] == 0
            runs.append((st.medoids.tolist(), float(L[0]), counters.tolist(), st.d1.copy(), st.d3.copy()))
        a_, b_ = runs
        assert a_[:3] == b_[:3]
        np.testing.assert_array_equal(a_[3], b_[3])
        np.testing.assert_array_equal(a_[4], b_[4])
        assert a_[2][1] > 0  # swaps happened


@pytest.mark.parametrize("metric,dtype", [("euclidean", "float32"), ("canberra", "float64")])
def test_fastermsc_and_dynmsc_on_features_equal_in_memory_matrix(rng, monkeypatch, metric, dtype):
    import chunked_medoids as cm
    from chunked_medoids.algorithms import _fused

    X = np.round(np.abs(rng.normal(size=(180, 3))), 1)
    src = from_features(X, metric, dtype=dtype)
    D = src.read_rows(0, src.n)
    used = []
    orig = _fused.msc_evaluator

    def spy(*a, **kw):
        ev = orig(*a, **kw)
        used.append(ev is not None)
        return ev

    monkeypatch.setattr("chunked_medoids.algorithms.msc.msc_evaluator", spy)
    w = rng.uniform(0.5, 2.0, size=src.n)
    for weights in (None, w):
        a = cm.fastermsc(D, 5, random_state=1, weights=weights)
        b = cm.fastermsc(src, 5, random_state=1, weights=weights, block_rows=29)
        assert used[-1] is True and used[-2] is False
        assert a.medoids.tolist() == b.medoids.tolist() and a.loss == b.loss and a.n_swap == b.n_swap
        assert a.loss_history == b.loss_history and a.score_history == b.score_history
    a = cm.dynmsc(D, 6, kmin=3, random_state=2)
    b = cm.dynmsc(src, 6, kmin=3, random_state=2)
    assert a.medoids.tolist() == b.medoids.tolist() and a.scores == b.scores and a.losses == b.losses


def test_fused_build_pass_stops_inside_and_resumes(tmp_path, monkeypatch, rng):
    """A stop during a fused BUILD pass ends it at the next task; the rerun resumes bitwise."""
    import signal

    import chunked_medoids as cm
    from chunked_medoids import checkpoint as ck
    from chunked_medoids.algorithms import init as init_mod

    src = from_features(rng.normal(size=(200, 3)))
    kw = dict(init="build", random_state=0, block_rows=10, checkpoint_interval=0.0, num_workers=1)
    full = cm.fasterpam(src, 5, **kw)
    assert full.medoids.tolist() == cm.fasterpam(src.read_rows(0, 200), 5, **kw).medoids.tolist()
    real = init_mod._gain_fused
    seen = {"n": 0}
    ck_obj = {}

    def gain_fused(F, S, start, stop, state):
        seen["n"] += 1
        if seen["n"] == 25:  # inside the pass for the third medoid (20 tasks per pass)
            ck_obj["c"].stop.request(signal.SIGUSR1)
        return real(F, S, start, stop, state)

    orig_init = ck.Checkpoint.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        ck_obj["c"] = self

    monkeypatch.setattr(ck.Checkpoint, "__init__", init)
    monkeypatch.setattr(init_mod, "_gain_fused", gain_fused)
    with pytest.raises(ck.CheckpointInterrupt) as info:
        cm.fasterpam(src, 5, checkpoint=tmp_path / "b.ckpt", **kw)
    assert info.value.signum == signal.SIGUSR1
    assert 25 <= seen["n"] < 40  # the pass did not run to its end
    monkeypatch.setattr(init_mod, "_gain_fused", real)
    res = cm.fasterpam(src, 5, checkpoint=tmp_path / "b.ckpt", **kw)
    assert res.medoids.tolist() == full.medoids.tolist() and res.loss == full.loss
    assert res.loss_history == full.loss_history


def test_fused_passes_run_on_a_cluster(rng, monkeypatch, local_cluster):
    import chunked_medoids as cm

    X = np.round(rng.normal(size=(120, 3)), 1)
    src = from_features(X, "euclidean")
    D = src.read_rows(0, src.n)
    calls = _spy(monkeypatch)
    for method in ("fastpam1", "fastpam2", "pam", "alternating"):
        a = getattr(cm, method)(D, 4, init="build", max_iter=4)
        b = getattr(cm, method)(src, 4, init="build", max_iter=4, client=local_cluster, block_rows=25)
        assert a.medoids.tolist() == b.medoids.tolist() and a.loss == b.loss
        assert a.loss_history == b.loss_history
    s = cm.silhouette(src, a.labels, client=local_cluster, samples=True)
    np.testing.assert_array_equal(s, cm.silhouette(D, a.labels, samples=True))
    assert "BUILD 4" in calls and "silhouette" in calls and "fastpam1 1" in calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int32, np.int64])
def test_lt_mask64_equals_the_loop(dtype):
    from numba import njit

    from chunked_medoids._kernels.simd import lt_mask64, lt_mask64_loop

    @njit
    def vec(a, ia, b, ib):
        return lt_mask64(a, ia, b, ib)

    r = np.random.default_rng(0)
    a = r.integers(-3, 3, 300).astype(dtype)
    b = r.integers(-3, 3, 300).astype(dtype)
    if np.issubdtype(dtype, np.floating):
        a[5], b[6], a[7], b[7], a[8], b[9], a[10], b[10] = np.nan, np.nan, -0.0, 0.0, np.inf, -np.inf, 1.0, np.inf
    for ia, ib in ((0, 0), (3, 70), (200, 1), (236, 236)):
        want = lt_mask64_loop(a, ia, b, ib)
        assert vec(a, ia, b, ib) == want
        assert want == sum(1 << t for t in range(64) if a[ia + t] < b[ib + t])
    # other layouts and mixed dtypes take the loop, with the same answer
    assert vec(a[::2], 3, b[::2], 5) == lt_mask64_loop(a[::2], 3, b[::2], 5)
    c = b.astype(np.float64)
    assert vec(a, 11, c, 13) == lt_mask64_loop(a, 11, c, 13)


def test_min_lt_max_gt_are_the_selects():
    """simd.min_lt / max_gt (minsd / maxsd on x86-64) are exactly ``a if a < b else b`` /
    ``a if a > b else b``, bit for bit, ties of signed zeros and NaN included."""
    from chunked_medoids._kernels.simd import minmax_select

    vals = [0.0, -0.0, 1.0, -1.0, 1.5, np.inf, -np.inf, np.nan, 5e-324, 3.4028234663852886e38]
    for a in vals:
        for b in vals:
            lo, hi = minmax_select(a, b)
            want_lo = a if a < b else b
            want_hi = a if a > b else b
            assert np.float64(lo).tobytes() == np.float64(want_lo).tobytes(), (a, b)
            assert np.float64(hi).tobytes() == np.float64(want_hi).tobytes(), (a, b)
    assert minmax_select(np.float32(2.5), np.float32(1.0)) == (1.0, 2.5)
