"""Four candidates per sweep on the fused path (``eval_quad_fused`` / ``fused_group``, issue 16):
each candidate's ``P``, ``acc`` and count of non-finite entries are bitwise those of the
one-candidate fused kernel, the four-point distance sums are bitwise ``_acc_terms``, and the
eager loops that evaluate ahead take exactly the swaps (and stop at exactly the bad row) of a
one-candidate-at-a-time reference walk written here."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunked_medoids import from_features
from chunked_medoids._kernels import fused as kf
from chunked_medoids._kernels.metrics import TERM_ABSDIFF, TERM_DOT, TERM_SQDIFF, _acc_terms, _acc_terms4
from chunked_medoids._kernels.swap import GROUP, best_slot
from chunked_medoids.algorithms._common import SwapCaches

METRICS = [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}), ("cosine", {}),
           ("minkowski", {"p": 3}), ("canberra", {})]


def _bits(x):
    return np.asarray(x, np.float64).view(np.uint64)


@settings(max_examples=150, deadline=None)
@given(st.sampled_from([TERM_SQDIFF, TERM_ABSDIFF, TERM_DOT]), st.integers(1, 10), st.integers(1, 150),
       st.integers(0, 2 ** 31), st.booleans())
def test_four_point_sums_are_bitwise_the_one_point_sums(kind, d, w, seed, repeat):
    rng = np.random.default_rng(seed)
    m = 200
    AT = np.ascontiguousarray(rng.normal(size=(d, m)) * rng.choice([1e-3, 1.0, 1e5], size=(d, 1)))
    js = rng.choice(m, GROUP, replace=repeat).astype(np.int64)
    b0 = int(rng.integers(0, m - w + 1)) if w <= m else 0
    A = np.full((GROUP, w + 3), np.nan)
    _acc_terms4(kind, AT, js, AT, b0, w, A)
    one = np.empty(w)
    for g in range(GROUP):
        _acc_terms(kind, AT, js[g], AT, b0, w, one)
        np.testing.assert_array_equal(_bits(A[g, :w]), _bits(one))
    assert np.isnan(A[:, w:]).all()  # nothing written past the tile


def _sources(rng, n, metric, params, dtype, ties, overflow):
    """(source, clean source): with ``overflow`` point 0 lies at 3e38 and points 1, 2 at
    -1e38 on the first axis, so in float32 some rows hold non-finite distances (those of
    0, 1, 2 for euclidean; every row for sqeuclidean); the clean source (same points
    without them) gives the caches."""
    X = np.round(np.abs(rng.normal(size=(n, 3))), 1) if ties else np.abs(rng.normal(size=(n, 3))) * 10
    clean = from_features(X.copy(), metric, dtype=dtype, **params)
    if overflow:
        X[0] = [3e38, 0.0, 0.0]
        X[1:3] = [-1e38, 0.0, 0.0]
    return from_features(X, metric, dtype=dtype, **params), clean


def _small_tiles(F):
    """The bundle with 64-point tiles: several tiles and a partial one at these sizes."""
    return F[:6] + (64,) + F[7:]


def _caches(src, k, rng, weighted):
    init = rng.choice(src.n, k, replace=False)
    w = rng.uniform(0.5, 2.0, size=src.n) if weighted else None
    return SwapCaches(src, init, w)


@settings(max_examples=120, deadline=None)
@given(st.integers(2, 300), st.integers(2, 12), st.integers(0, 2 ** 31), st.sampled_from(range(len(METRICS))),
       st.sampled_from(["float32", "float64", "float16"]), st.booleans(), st.booleans(), st.booleans(),
       st.integers(1, GROUP))
def test_group_terms_are_bitwise_the_one_candidate_kernel(n, k, seed, mi, dtype, weighted, ties, overflow, ng):
    rng = np.random.default_rng(seed)
    k = min(k, n - 1) if n > 2 else 1
    metric, params = METRICS[mi]
    if dtype == "float16" and overflow:
        overflow = False  # a float16 source refuses such features up front
    src, clean = _sources(rng, n, metric, params, dtype, ties, overflow)
    F = _small_tiles(src.fused_bundle())
    st_ = _caches(clean, k, rng, weighted)
    ng = min(ng, n)
    S = kf.make_scratch(n, src.dtype, F[6])
    H = kf.make_thresholds(F, st_.ds)
    cand = rng.permutation(n).astype(np.int64)
    gpos = np.sort(rng.choice(n, ng, replace=False)).astype(np.int64)
    PG, accs, bads = np.full((GROUP, k), np.nan), np.full(GROUP, np.nan), np.full(GROUP, -1, np.int64)
    kf.fused_group(F, S, H, cand, gpos, ng, st_.dn, st_.ds, st_.nn, st_.R, st_.w, st_.weighted, PG, accs, bads)
    assert S[5][0] == 0  # the group kernel leaves the row counts to the caller
    for g in range(ng):
        S1 = kf.make_scratch(n, src.dtype, F[6])
        P = np.empty(k)
        acc = kf.fused_eval(cand[gpos[g]], F, st_.dn, st_.ds, H, st_.nn, st_.R, st_.w, st_.weighted, P, S1)
        assert _bits(accs[g]) == _bits(acc)
        np.testing.assert_array_equal(_bits(PG[g]), _bits(P))
        assert bads[g] == S1[5][0]
        S2 = kf.make_scratch(n, src.dtype, F[6])
        row = kf.fused_full_row(cand[gpos[g]], F, S2)  # the materialised row's count
        assert bads[g] == S2[5][0] == np.count_nonzero(~np.isfinite(row))


def _reference(F, src, st_, cand, tol, lo, hi):
    """The eager walk one candidate at a time (the fused kernels' definition): returns
    (since, swaps, consumed, bad count) like ``fasterpam_fused``."""
    n = src.n
    S = kf.make_scratch(n, src.dtype, F[6])
    H = kf.make_thresholds(F, st_.ds)
    P = np.empty(st_.R.shape[0])
    td = st_.td
    since, nsw, consumed = 0, 0, hi - lo
    for i in range(lo, hi):
        j = cand[i]
        if not st_.is_medoid[j]:
            acc = kf.fused_eval(j, F, st_.dn, st_.ds, H, st_.nn, st_.R, st_.w, st_.weighted, P, S)
            if S[5][0] > 0:
                consumed = i - lo
                break
            s, dlt = best_slot(P, acc)
            if kf._accept_fused(j, F, S, s, st_.dn, st_.ds, st_.nn, st_.w, st_.weighted, td, tol, dlt):
                td = kf.fused_apply_swap(F, S, H, s, j, st_.M, st_.medoids, st_.is_medoid, st_.dn, st_.ds,
                                         st_.nn, st_.sn, st_.R, st_.w, st_.weighted)
                nsw += 1
                since = 0
        since += 1
        if since >= n:
            consumed = i + 1 - lo
            break
    return since, nsw, consumed, int(S[5][0]), td


def _state(st_):
    return [a.copy() for a in (st_.M, st_.medoids, st_.is_medoid, st_.dn, st_.ds, st_.nn, st_.sn)] + [
        _bits(st_.R).copy()]


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 200), st.integers(1, 10), st.integers(0, 2 ** 31), st.sampled_from(range(len(METRICS))),
       st.sampled_from(["float32", "float64"]), st.booleans(), st.booleans(), st.booleans(),
       st.sampled_from([0.0, 1e-3]))
def test_fused_block_takes_the_swaps_of_the_one_at_a_time_walk(n, k, seed, mi, dtype, weighted, ties,
                                                                overflow, tol):
    rng = np.random.default_rng(seed)
    k = min(k, n - 1)
    metric, params = METRICS[mi]
    src, clean = _sources(rng, n, metric, params, dtype, ties, overflow)
    F = _small_tiles(src.fused_bundle())
    ref = _caches(clean, k, np.random.default_rng(seed + 1), weighted)
    got = _caches(clean, k, np.random.default_rng(seed + 1), weighted)
    cand = np.concatenate([rng.permutation(n) for _ in range(3)]).astype(np.int64)
    since, nsw, consumed, bad, td = _reference(F, src, ref, cand, tol, 0, cand.shape[0])
    S = kf.make_scratch(n, src.dtype, F[6])
    H = kf.make_thresholds(F, got.ds)
    counters = np.zeros(2, np.int64)
    td_box = np.array([got.td])
    used = kf.fasterpam_fused(F, S, H, cand, got.M, got.medoids, got.is_medoid, got.dn, got.ds, got.nn, got.sn,
                              got.R, got.w, got.weighted, tol, np.empty(k), counters, td_box)
    assert (used, int(S[5][0])) == (consumed, bad)
    assert (int(counters[0]), int(counters[1])) == (since, nsw)
    assert _bits(td_box[0]) == _bits(td)
    for a, b in zip(_state(ref), _state(got)):
        np.testing.assert_array_equal(a, b)
    # the thresholds follow the caches
    np.testing.assert_array_equal(H[0], kf.make_thresholds(F, got.ds)[0])


def _share_case(n, k, seed, mi, ties, overflow):
    rng = np.random.default_rng(seed)
    k = min(k, n - 1)
    metric, params = METRICS[mi]
    src, clean = _sources(rng, n, metric, params, "float32", ties, overflow)
    F = _small_tiles(src.fused_bundle())
    c = _caches(clean, k, rng, False)
    cand = rng.permutation(n).astype(np.int64)
    return rng, k, src, F, c, cand, kf.make_thresholds(F, c.ds)


def _first_by_definition(F, src, c, cand, H, positions):
    """One candidate at a time over ``positions``: ``((position, slot, ΔTD) or -1, the
    position of the first bad row met or -1, its count)``."""
    S = kf.make_scratch(src.n, src.dtype, F[6])
    P = np.empty(c.R.shape[0])
    for i in positions:
        j = cand[i]
        if c.is_medoid[j]:
            continue
        acc = kf.fused_eval(j, F, c.dn, c.ds, H, c.nn, c.R, c.w, False, P, S)
        if S[5][0] > 0:
            return -1, i, int(S[5][0])
        s, dlt = best_slot(P, acc)
        if kf._accept_fused(j, F, S, s, c.dn, c.ds, c.nn, c.w, False, c.td, 0.0, dlt):
            return (i, s, dlt), -1, 0
    return -1, -1, 0


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 200), st.integers(2, 10), st.integers(0, 2 ** 31), st.sampled_from(range(len(METRICS))),
       st.booleans(), st.booleans(), st.data())
def test_first_improving_fused_finds_the_first_accepted_position(n, k, seed, mi, ties, overflow, data):
    rng, k, src, F, c, cand, H = _share_case(n, k, seed, mi, ties, overflow)
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo, n))
    want, _, want_bad = _first_by_definition(F, src, c, cand, H, range(lo, hi))
    S2 = kf.make_scratch(n, src.dtype, F[6])
    out = np.empty(2)
    p = kf.first_improving_fused(F, S2, H, cand, lo, hi, c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w, False, c.td,
                                 0.0, np.empty(k), out)
    assert int(S2[5][0]) == want_bad
    if want == -1:
        assert p == -1
    else:
        assert (p, int(out[0]), _bits(out[1])) == (want[0], want[1], _bits(want[2]))


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 200), st.integers(2, 10), st.integers(0, 2 ** 31), st.sampled_from(range(len(METRICS))),
       st.booleans(), st.booleans(), st.integers(1, 3), st.integers(0, 2))
def test_strided_fused_share_finds_the_first_own_position(n, k, seed, mi, ties, overflow, step, me):
    """Thread ``me``'s share ``me, me + step, ...``: the first own position accepted, or the
    first own bad row (published, -1 returned), as the one-at-a-time definition says."""
    rng, k, src, F, c, cand, H = _share_case(n, k, seed, mi, ties, overflow)
    me = min(me, step - 1)
    want, want_bad, _ = _first_by_definition(F, src, c, cand, H, range(me, n, step))
    hits = np.full(step, n, np.int64)
    out = np.empty(2)
    S2 = kf.make_scratch(n, src.dtype, F[6])
    p = kf.first_improving_fused_strided(F, S2, H, cand, me, n, step, c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w,
                                         False, c.td, 0.0, np.empty(k), out, hits, me)
    if want_bad >= 0:
        assert p == -1 and S2[5][0] > 0 and hits[me] == want_bad
    elif want == -1:
        assert p == -1 and hits[me] == n and S2[5][0] == 0
    else:
        assert (p, int(out[0]), _bits(out[1])) == (want[0], want[1], _bits(want[2]))
        assert hits[me] == p
    # another thread's earlier hit stops the share before any position past it
    hits2 = np.full(step, n, np.int64)
    hits2[(me + 1) % step] = -1 if step > 1 else n
    p2 = kf.first_improving_fused_strided(F, kf.make_scratch(n, src.dtype, F[6]), H, cand, me, n, step,
                                          c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w, False, c.td, 0.0, np.empty(k),
                                          out, hits2, me)
    if step > 1:
        assert p2 == -1


def test_overflowing_rows_are_counted_per_candidate_and_the_walk_stops_at_the_first():
    """Rows 0, 1, 2 overflow float32 (euclidean); a group holding them counts each row's own
    non-finite entries, and the eager walk stops exactly at position 3 (candidate 1)
    even though the sweep there also evaluated clean rows ahead."""
    rng = np.random.default_rng(5)
    n = 150
    src, clean = _sources(rng, n, "euclidean", {}, "float32", False, True)
    F = _small_tiles(src.fused_bundle())
    c = SwapCaches(clean, np.array([50, 60, 70]), None)
    cand = np.array([10, 11, 12, 1, 13, 14, 15] + list(range(16, n)), np.int64)
    S = kf.make_scratch(n, src.dtype, F[6])
    H = kf.make_thresholds(F, c.ds)
    PG, accs, bads = np.empty((GROUP, 3)), np.empty(GROUP), np.empty(GROUP, np.int64)
    kf.fused_group(F, S, H, np.array([0, 1, 2, 20], np.int64), np.arange(4), 4, c.dn, c.ds, c.nn, c.R, c.w,
                   False, PG, accs, bads)
    assert bads.tolist() == [2, 1, 1, 0]  # 0 meets 1 and 2; 1 and 2 meet 0
    counters = np.zeros(2, np.int64)
    used = kf.fasterpam_fused(F, S, H, cand, c.M, c.medoids, c.is_medoid, c.dn, c.ds, c.nn, c.sn, c.R, c.w,
                              False, 0.0, np.empty(3), counters, np.array([c.td]))
    assert used == 3 and S[5][0] == 1


@pytest.mark.parametrize("workers,interleave", [(1, True), (2, True), (2, False)])
def test_fasterpam_reports_an_overflowing_row_met_in_a_batch(monkeypatch, workers, interleave):
    from chunked_medoids import DissimilarityError, fasterpam
    from chunked_medoids.algorithms import fasterpam as fp

    monkeypatch.setattr(fp._Speculator, "interleave", interleave)
    rng = np.random.default_rng(3)
    src, _ = _sources(rng, 400, "euclidean", {}, "float32", False, True)
    assert src.prefer_fused()
    with pytest.raises(DissimilarityError, match="inf"):
        fasterpam(src, 4, init=np.array([100, 200, 300, 350]), num_workers=workers)


ALL_METRICS = [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}),
               ("minkowski", {"p": 3}), ("cosine", {}), ("correlation", {}), ("canberra", {}), ("braycurtis", {}),
               ("hamming", {}), ("jaccard", {}), ("gower", {"categorical": [1]})]


@pytest.mark.parametrize("metric,params", ALL_METRICS, ids=[m for m, _ in ALL_METRICS])
@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2 ** 31), st.integers(1, 9), st.integers(1, 130), st.booleans())
def test_four_point_tiles_are_bitwise_the_one_point_tiles(metric, params, seed, d, w, ties):
    from chunked_medoids._kernels.metrics import dist_tile, dist_tile4

    rng = np.random.default_rng(seed)
    if metric == "gower" and d < 2:
        d = 2
    n = 140
    X = np.round(rng.normal(size=(n, d)), 0 if ties else 3)
    if metric in ("hamming", "jaccard"):
        X = (X > 0).astype(np.float64)
    F = from_features(X, metric, **params).fused_bundle()
    assert F is not None
    code, T, aux, p, cat, ranges = F[:6]
    js = rng.choice(n, GROUP).astype(np.int64)
    b0 = int(rng.integers(0, n - w + 1))
    A = np.full((GROUP, w + 2), np.nan)
    dist_tile4(code, T, js, aux, T, b0, w, aux, p, cat, ranges, A, np.empty(w))
    one = np.empty(w)
    for g in range(GROUP):
        dist_tile(code, T, js[g], aux, T, b0, w, aux, p, cat, ranges, one, np.empty(w))
        np.testing.assert_array_equal(_bits(A[g, :w]), _bits(one))
    assert np.isnan(A[:, w:]).all()
