"""Fuzzing: hypothesis-generated dissimilarity matrices thrown at every public function.

Matrices are valid (symmetric, zero diagonal, non-negative) but nasty: many ties, duplicate
points (identical rows), all-zero matrices, huge (1e30 / large integers) and tiny (1e-30)
values and mixtures of both, in float32, float64, int32 and int64, with n from 1 to 25 and
every k from 1 to n.  Invariants checked for every registered method (METHODS), the BUILD /
LAB inits, the silhouettes, DynMSC and KMedoids(metric="precomputed"):

* the reported loss equals Σ_o w_o·D[o, medoids[labels[o]]] recomputed here (float64,
  relative tolerance 1e-12; exactly for unweighted integer matrices);
* labels are the argmin over the medoid columns (lowest slot on ties; a medoid in its own
  slot), medoids are k distinct indices in range;
* the loss history of the exact swap methods never increases;
* the only exceptions are documented typed errors (e.g. the medoid silhouette with k = 1).
"""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
from chunked_medoids import ChunkedMedoidsError
from tests._registries import TD_SWAP_METHODS

# hypothesis fuzzing of every public function: minutes, not seconds
pytestmark = pytest.mark.slow

DTYPES = (np.float32, np.float64, np.int32, np.int64)
STYLES = ("random", "ties", "duplicates", "zeros", "huge", "tiny", "mixed")
#: exact swap methods whose loss history must never increase (fastermsc optimises the
#: medoid silhouette instead, the sampling methods keep no swap history of the full loss).
MONOTONE = tuple(TD_SWAP_METHODS)  # pam, fastpam1, fastpam2, fasterpam, alternating (registry)
#: integer magnitudes kept within the range where float64 loss sums are exact (n <= 25).
HUGE_INT = {np.dtype(np.int32): 2**31 - 1, np.dtype(np.int64): 2**45}
RTOL = 1e-12

FUZZ = settings(deadline=None, max_examples=100, derandomize=True,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _upper_values(rng, size, dtype, style):
    """``size`` off-diagonal values (float64 holding exactly representable numbers)."""
    is_int = np.issubdtype(dtype, np.integer)
    if style == "ties":
        return rng.integers(0, 3, size).astype(np.float64)
    if style == "zeros":
        return np.zeros(size)
    if style == "huge":
        if is_int:
            top = HUGE_INT[np.dtype(dtype)]
            return rng.integers(top - 3, top + 1, size).astype(np.float64)  # huge and tied
        return rng.choice([1e29, 5e29, 1e30], size)
    if style == "tiny":
        if is_int:
            return rng.integers(0, 2, size).astype(np.float64)
        return rng.choice([1e-30, 2e-30, 3e-30], size) * rng.integers(1, 4, size)
    if style == "mixed":
        if is_int:
            return rng.choice([0.0, 1.0, 2.0, float(HUGE_INT[np.dtype(dtype)])], size)
        return rng.choice([0.0, 1e-30, 1.0, 1e30], size)
    if is_int:  # random
        return rng.integers(0, 100, size).astype(np.float64)
    return rng.random(size) * 100.0


@st.composite
def matrices(draw, min_n=1, max_n=25):
    """A valid n×n dissimilarity (numpy array) with ties, duplicates, huge/tiny values..."""
    n = draw(st.integers(min_n, max_n))
    dtype = np.dtype(draw(st.sampled_from(DTYPES)))
    style = draw(st.sampled_from(STYLES))
    dup = draw(st.booleans()) or style == "duplicates"
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    m = int(rng.integers(1, n + 1)) if dup else n  # number of distinct points
    B = np.zeros((m, m))
    iu = np.triu_indices(m, 1)
    B[iu] = _upper_values(rng, iu[0].shape[0], dtype, "random" if style == "duplicates" else style)
    B = B + B.T
    base = np.concatenate([np.arange(m), rng.integers(0, m, n - m)]) if dup else np.arange(n)
    base = rng.permutation(base)
    D = B[np.ix_(base, base)]  # duplicates: identical rows, zero distance between copies
    D = D.astype(dtype)
    assert (D == D.T).all() and (np.diag(D) == 0).all() and (D >= 0).all()
    return D


@st.composite
def problems(draw, min_n=1, min_k=1, weighted=True):
    D = draw(matrices(min_n=max(min_n, min_k)))
    n = D.shape[0]
    k = draw(st.integers(min_k, n))
    w = None
    if weighted and draw(st.booleans()):
        kind = draw(st.sampled_from(["int", "float"]))
        rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
        w = rng.integers(0, 4, n).astype(np.float64) if kind == "int" else rng.random(n) * 10
        w[rng.integers(0, n)] = 1.0  # at least one positive weight
    seed = draw(st.integers(0, 2**31 - 1))
    return D, k, w, seed


# ---------------------------------------------------------------------------------------
# reference computations
# ---------------------------------------------------------------------------------------
def expected_labels(D, medoids):
    """argmin over the medoid columns, lowest slot on ties, a medoid in its own slot."""
    lab = np.argmin(D[:, medoids], axis=1).astype(np.int64)
    lab[medoids] = np.arange(len(medoids))
    return lab


def reference_loss(D, medoids, labels, w):
    d = D[np.arange(D.shape[0]), np.asarray(medoids)[labels]]
    if w is None and np.issubdtype(D.dtype, np.integer):
        return int(np.sum(d.astype(np.int64)))
    vals = d.astype(np.float64) if w is None else w * d.astype(np.float64)
    return math.fsum(vals.tolist())


def close(a, b, rtol=RTOL):
    return abs(a - b) <= rtol * max(abs(a), abs(b)) or a == b


def check_result(res, D, k, w, *, method=""):
    n = D.shape[0]
    med = np.asarray(res.medoids)
    assert med.dtype == np.int64 and med.shape == (k,), (method, med)
    assert ((med >= 0) & (med < n)).all(), (method, med)
    assert np.unique(med).shape[0] == k, (method, med)
    lab = np.asarray(res.labels)
    assert lab.dtype == np.int32 and lab.shape == (n,), method
    np.testing.assert_array_equal(lab, expected_labels(D, med), err_msg=method)
    ref = reference_loss(D, med, lab, w)
    if isinstance(ref, int):
        assert res.loss == float(ref), (method, res.loss, ref)
    else:
        assert close(res.loss, ref), (method, res.loss, ref)
    assert isinstance(res.loss, float)


def check_monotone(history, method):
    h = [float(x) for x in history]
    assert h, method
    for a, b in zip(h, h[1:]):
        assert b <= a + RTOL * max(abs(a), abs(b)), (method, h)


def call_typed(fn):
    """Run ``fn``; an exception must be one of our typed errors (re-raised for the test)."""
    try:
        return fn()
    except Exception as exc:
        assert isinstance(exc, ChunkedMedoidsError) and isinstance(
            exc, (ValueError, TypeError, LookupError, OSError)), f"untyped {type(exc).__name__}: {exc}"
        raise


# ---------------------------------------------------------------------------------------
# every registered method
# ---------------------------------------------------------------------------------------
def _method_names():
    cm.METHODS  # noqa: B018 - loads the registry
    return sorted(cm.METHODS)


#: small parameters for the sampling methods (keep the fuzz fast).
SMALL = {
    "clara": {"n_samples": 2},
    "fastclara": {"n_samples": 2},
    "fasterclara": {"n_samples": 2},
    "clarans": {"numlocal": 2},
    "fastclarans": {"numlocal": 2},
}


def _takes(func, name):
    params = inspect.signature(func).parameters
    if name in params:
        return True
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):
        return name in inspect.signature(cm.clara).parameters
    return False


@pytest.mark.parametrize("method", _method_names())
@FUZZ
@given(prob=problems())
def test_every_method(method, prob):
    D, k, w, seed = prob
    spec = cm.METHODS[method]
    func = spec.func
    kwargs = dict(SMALL.get(method, {}))
    if _takes(func, "random_state"):
        kwargs["random_state"] = seed
    if w is not None and _takes(func, "weights"):
        kwargs["weights"] = w
    else:
        w = None
    source = cm.open_dissimilarity(D)  # a source: a matrix for every method (CLARA included)
    if method == "fastermsc" and k < 2:
        with pytest.raises(cm.InvalidParameterError, match=r"k must be >= 2"):
            call_typed(lambda: func(source, k, **kwargs))
        return
    res = call_typed(lambda: func(source, k, **kwargs))
    check_result(res, D, k, w, method=method)
    if method in MONOTONE:
        check_monotone(res.loss_history, method)
        assert close(float(res.loss_history[-1]), res.loss, 1e-9) or res.loss_history[-1] == res.loss
    if method == "fastermsc":
        check_monotone([-s for s in res.score_history], "fastermsc score")
        s = naive_medoid_silhouette(D, res.medoids)
        ref = float(np.mean(s)) if w is None else float(np.dot(w, s) / np.sum(w))  # weighted objective
        assert math.isclose(res.score, ref, rel_tol=1e-9, abs_tol=1e-12), (res.score, ref)


@FUZZ
@given(prob=problems(), init=st.sampled_from(["build", "lab", "random", "array"]),
       method=st.sampled_from(MONOTONE))
def test_swap_methods_from_every_init(prob, init, method):
    """The exact swap methods from every init (and an explicit array) never increase the loss."""
    D, k, w, seed = prob
    if init == "array":
        init = np.random.default_rng(seed).permutation(D.shape[0])[:k]
    res = call_typed(lambda: cm.METHODS[method].func(D, k, init=init, random_state=seed, weights=w))
    check_result(res, D, k, w, method=method)
    check_monotone(res.loss_history, method)


@FUZZ
@given(prob=problems())
def test_build_and_lab(prob):
    D, k, w, seed = prob
    n = D.shape[0]
    for med in (call_typed(lambda: cm.build(D, k, weights=w)),
                call_typed(lambda: cm.lab(D, k, random_state=seed, weights=w))):
        med = np.asarray(med)
        assert med.dtype == np.int64 and med.shape == (k,)
        assert ((med >= 0) & (med < n)).all() and np.unique(med).shape[0] == k
    med = np.asarray(cm.build(D, k, weights=w))
    if np.issubdtype(D.dtype, np.integer) and w is None:
        # exact arithmetic: the first medoid minimises the row sum (earliest on ties)
        assert med[0] == int(np.argmin(D.astype(np.int64).sum(axis=1)))
    # pam starts from BUILD: its initial loss is BUILD's loss
    res = cm.pam(D, k, weights=w, max_iter=0)
    np.testing.assert_array_equal(res.medoids, med)
    check_result(res, D, k, w, method="pam max_iter=0")


# ---------------------------------------------------------------------------------------
# silhouettes and DynMSC
# ---------------------------------------------------------------------------------------
def naive_silhouette(D, labels):
    D = D.astype(np.float64)
    n = D.shape[0]
    uniq, lab = np.unique(labels, return_inverse=True)
    s = np.zeros(n)
    for o in range(n):
        own = lab == lab[o]
        if own.sum() == 1:
            continue
        a = D[o, own].sum() / (own.sum() - 1)
        b = min(D[o, lab == c].mean() for c in range(uniq.shape[0]) if c != lab[o])
        m = max(a, b)
        s[o] = 0.0 if m == 0 else (b - a) / m
    return s


def naive_medoid_silhouette(D, medoids):
    M = np.sort(D[:, medoids].astype(np.float64), axis=1)
    d1, d2 = M[:, 0], M[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(d2 == 0, 1.0, 1.0 - d1 / d2)


@FUZZ
@given(D=matrices(), data=st.data())
def test_silhouette(D, data):
    n = D.shape[0]
    c = data.draw(st.integers(1, n))
    labels = np.asarray(data.draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n)))
    n_distinct = np.unique(labels).shape[0]
    if not 2 <= n_distinct <= n - 1:
        with pytest.raises(cm.InvalidParameterError, match="distinct labels"):
            call_typed(lambda: cm.silhouette(D, labels))
        return
    s = call_typed(lambda: cm.silhouette(D, labels, samples=True))
    ref = naive_silhouette(D, labels)
    np.testing.assert_allclose(s, ref, rtol=1e-9, atol=1e-9)
    assert ((s >= -1 - 1e-12) & (s <= 1 + 1e-12)).all()
    assert math.isclose(cm.silhouette(D, labels), float(np.mean(s)), rel_tol=1e-12, abs_tol=1e-15)


@FUZZ
@given(prob=problems(weighted=False))
def test_medoid_silhouette(prob):
    D, k, _, seed = prob
    med = np.random.default_rng(seed).permutation(D.shape[0])[:k]
    if k < 2:
        with pytest.raises(cm.InvalidParameterError, match="at least 2 medoids"):
            call_typed(lambda: cm.medoid_silhouette(D, med))
        return
    s = call_typed(lambda: cm.medoid_silhouette(D, med, samples=True))
    np.testing.assert_allclose(s, naive_medoid_silhouette(D, med), rtol=1e-12, atol=1e-15)
    assert ((s >= 0) & (s <= 1)).all()
    assert s[med].tolist() == [1.0] * k
    avg = cm.medoid_silhouette(D, med)
    assert math.isclose(avg, float(np.mean(s)), rel_tol=1e-9, abs_tol=1e-12)


@FUZZ
@given(D=matrices(min_n=2), data=st.data())
def test_dynmsc(D, data):
    n = D.shape[0]
    kmax = data.draw(st.integers(2, min(n, 8)))
    kmin = data.draw(st.integers(2, kmax))
    init = data.draw(st.sampled_from(["build", "random", "lab"]))
    res = call_typed(lambda: cm.dynmsc(D, kmax, kmin=kmin, init=init, random_state=0))
    assert kmin <= res.k <= kmax
    check_result(res, D, res.k, None, method="dynmsc")
    scores = res.scores
    assert sorted(scores) == list(range(kmin, kmax + 1))
    best = max(scores.values())
    assert res.score == best
    assert res.k == min(kk for kk, v in scores.items() if v == best)  # smallest k on ties
    assert math.isclose(res.score, cm.medoid_silhouette(D, res.medoids), rel_tol=1e-9, abs_tol=1e-12)
    for kk, med in res.medoids_by_k.items():
        assert len(med) == kk and np.unique(med).shape[0] == kk


# ---------------------------------------------------------------------------------------
# estimator
# ---------------------------------------------------------------------------------------
@FUZZ
@given(prob=problems(weighted=True), method=st.sampled_from(["fasterpam", "pam", "alternating"]))
def test_kmedoids_precomputed(prob, method):
    D, k, w, seed = prob
    est = cm.KMedoids(k, metric="precomputed", method=method, random_state=seed)
    call_typed(lambda: est.fit(D, sample_weight=w))
    check_result(est.result_, D, k, w, method=f"KMedoids({method})")
    np.testing.assert_array_equal(est.labels_, est.result_.labels)
    assert est.inertia_ == est.result_.loss
    # predict on new rows: the plain argmin over the medoid columns (lowest index on ties)
    np.testing.assert_array_equal(est.predict(D), np.argmin(D[:, est.medoid_indices_].astype(np.float64), axis=1))
    np.testing.assert_allclose(est.transform(D), D[:, est.medoid_indices_].astype(np.float64))


# ---------------------------------------------------------------------------------------
# a fixed grid: every (method, dtype, style) combination at least once
# ---------------------------------------------------------------------------------------
def _grid_matrix(n, dtype, style, seed):
    rng = np.random.default_rng(seed)
    if style == "duplicates":  # three distinct points, each repeated
        base = np.arange(n) % 3
        B = np.zeros((3, 3))
        B[np.triu_indices(3, 1)] = _upper_values(rng, 3, np.dtype(dtype), "random")
        return (B + B.T)[np.ix_(base, base)].astype(dtype)
    iu = np.triu_indices(n, 1)
    D = np.zeros((n, n))
    D[iu] = _upper_values(rng, iu[0].shape[0], np.dtype(dtype), style)
    return (D + D.T).astype(dtype)


@pytest.mark.parametrize("method", _method_names())
def test_every_method_grid(method):
    func = cm.METHODS[method].func
    kwargs = dict(SMALL.get(method, {}))
    if _takes(func, "random_state"):
        kwargs["random_state"] = 0
    for dtype in DTYPES:
        for style in STYLES:
            for n, k in ((1, 1), (2, 2), (9, 3)):
                if method == "fastermsc" and k < 2:
                    continue
                D = _grid_matrix(n, dtype, style, seed=n)
                res = call_typed(lambda: func(cm.open_dissimilarity(D), k, **kwargs))
                check_result(res, D, k, None, method=f"{method} {np.dtype(dtype)} {style} n={n}")
                if method in MONOTONE:
                    check_monotone(res.loss_history, method)


@pytest.mark.parametrize("layout", ["big-endian", "fortran", "strided-view", "read-only"])
def test_memory_layouts_give_identical_results(layout):
    """Odd numpy layouts reach the numba kernels only after normalisation (no typing errors)."""
    rng = np.random.default_rng(5)
    D = _grid_matrix(11, np.float64, "random", seed=5)
    A = {"big-endian": lambda: D.astype(">f8"),
         "fortran": lambda: np.asfortranarray(D),
         "strided-view": lambda: np.pad(D, ((0, 0), (0, 4)))[:, :11],
         "read-only": lambda: D.copy()}[layout]()
    if layout == "read-only":
        A.flags.writeable = False
    labels = rng.integers(0, 3, 11)
    labels[:3] = [0, 1, 2]
    for method in _method_names():
        func = cm.METHODS[method].func
        kw = {"random_state": 0} if _takes(func, "random_state") else {}
        ref = func(cm.open_dissimilarity(D), 3, **kw)
        res = call_typed(lambda: func(cm.open_dissimilarity(A), 3, **kw))
        np.testing.assert_array_equal(res.medoids, ref.medoids, err_msg=f"{method} {layout}")
        assert res.loss == ref.loss
    assert cm.silhouette(A, labels) == cm.silhouette(D, labels)
    assert cm.medoid_silhouette(A, [0, 4]) == cm.medoid_silhouette(D, [0, 4])
