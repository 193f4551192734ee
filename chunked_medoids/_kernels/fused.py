"""Fused swap kernels: candidate rows computed from features and consumed in the same loop.

Pure numba, numpy in / numpy out.  A *feature bundle* replaces the candidate's row of D:
``code`` (metric code of :mod:`.metrics`), ``T`` (d, n) / ``aux`` (2, n) the prepared,
transposed features (:func:`~.metrics.prepare_columns`) and the metric parameters ``p``,
``categorical``, ``ranges``.  ``D[j, o]`` is :func:`~.metrics.dist_tile`'s float64 value
rounded to the source dtype (float32 or float64) -- bit for bit the value
``FeatureSource.read_rows`` returns, and the diagonal is 0.  The bundle's last two entries
``qs, qinv`` (float32) quantise for a float16 source: ``qs`` its power-of-two scale and
``qinv = 1 / qs``, and each float32 value becomes ``float16(x * qs) * qinv``
(:func:`~.half.dequantised`, the rounding the store's encoder uses), bitwise what the
float16 store of the same features holds; ``qs = 0`` means no quantisation.  A scaled value
above float16's maximum counts as not finite (the source raises
``QuantisationOverflowError`` naming it).

The kernels walk the candidate's row in tiles of ``tw`` points (tile buffers of a few KiB,
no row or block is materialised) and give bitwise the results of the stored kernels of
:mod:`.swap` on the materialised row: the same points contribute the same terms, summed in
increasing point order.

*Monotone* metrics (euclidean, sqeuclidean, manhattan, chebyshev) are compared before their
finishing step: with ``s`` the accumulated float64 sum (maximum for chebyshev) and
``f(s) = dtype(finish(s))`` (``finish`` = sqrt for euclidean, identity otherwise), ``f`` is
non-decreasing, so ``f(s) < ds[o]`` iff ``s < thr[o]`` where ``thr[o]`` is the smallest
float64 ``s`` with ``f(s) >= ds[o]`` (:func:`threshold`, exact).  Only the few points that
pass are finished (one sqrt each).  The finiteness of every entry is checked in the same
sweep (``s < thr(inf)``; other metrics: the rounded value ``< inf``).  With quantisation
``f`` includes it (still non-decreasing), the thresholds are those of the dequantised
values (:func:`qthreshold`) and the finiteness bound is that of the float16 overflow.
"""

from __future__ import annotations

import math

import numpy as np
from numba import literally, njit, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from .half import HALF_MAX, bits_f32, dequantised, half_bits, round_half
from .handoff import finish, next_batch
from .metrics import (
    M_CHEBYSHEV,
    M_EUCLIDEAN,
    M_MANHATTAN,
    M_SQEUCLIDEAN,
    TERM_ABSDIFF,
    TERM_SQDIFF,
    _acc_absdiff,
    _acc_sqdiff,
    _acc_terms4,
    cheb_step,
    dist_tile,
    dist_tile4,
)
from .msc import msc_terms
from .simd import lt_mask64, store_relaxed
from .swap import (
    GROUP,
    NOISE,
    _beaten,
    _own_positions,
    apply_swap,
    best_slot,
    eval_candidate,
    pass_terms,
    rounding_margin,
    swapped_loss,
)

#: finishing kinds of the monotone path: 0 = none (not monotone), 1 = identity, 2 = sqrt.
FIN_NONE = 0
FIN_ID = 1
FIN_SQRT = 2


@njit(nogil=True, cache=True)
def finish_kind(code):
    """How ``code`` is finished on the monotone path (:data:`FIN_NONE` if it is not)."""
    if code == M_EUCLIDEAN:
        return FIN_SQRT
    if code == M_SQEUCLIDEAN or code == M_MANHATTAN or code == M_CHEBYSHEV:
        return FIN_ID
    return FIN_NONE


@njit(nogil=True, cache=True)
def _raw_tile(code, T, ia, b0, w, acc):
    """``acc[o]`` = the unfinished float64 sum (max) of the monotone metric ``code``."""
    if code == M_EUCLIDEAN or code == M_SQEUCLIDEAN:
        _acc_sqdiff(T, ia, T, b0, w, acc)
    elif code == M_MANHATTAN:
        _acc_absdiff(T, ia, T, b0, w, acc)
    else:  # chebyshev
        d = T.shape[0]
        for o in range(w):
            acc[o] = 0.0
        for t in range(d):
            x = T[t, ia]
            bt = T[t, b0:b0 + w]
            for o in range(w):
                acc[o] = cheb_step(acc[o], x, bt[o])


@njit(nogil=True, cache=True)
def _raw_tile4(code, T, js, b0, w, A):
    """:func:`_raw_tile` of the four points ``js`` into the rows of ``A`` (bitwise)."""
    if code == M_EUCLIDEAN or code == M_SQEUCLIDEAN:
        _acc_terms4(TERM_SQDIFF, T, js, T, b0, w, A)
    elif code == M_MANHATTAN:
        _acc_terms4(TERM_ABSDIFF, T, js, T, b0, w, A)
    else:  # chebyshev: one at a time
        for g in range(4):
            _raw_tile(code, T, js[g], b0, w, A[g])


@njit(nogil=True, cache=True)
def _finish(fin, s):
    if fin == FIN_SQRT:
        return math.sqrt(s)
    return s


@njit(nogil=True, cache=True)
def threshold(fin, v, f32):
    """Smallest float64 ``s >= 0`` with ``f(s) >= v`` (``f`` as in the module notes), for a
    value ``v >= 0`` of the output dtype (``f32``: float32, else float64).  ``inf`` when
    only ``s = inf`` reaches ``v`` (float64 output, ``v = inf``)."""
    v = np.float64(v)
    if not (v > 0.0):
        return 0.0
    if f32:
        # RN32(q) >= v  iff  q >= m (tie at the midpoint m goes to the even neighbour)
        lo = np.float64(np.nextafter(np.float32(v), np.float32(0.0)))
        if v == np.inf:  # the midpoint above the largest float32 (half its ulp above it)
            m = lo + 0.5 * (lo - np.float64(np.nextafter(np.float32(lo), np.float32(0.0))))
        else:
            m = 0.5 * (lo + v)  # exact in float64
        if np.float32(m) != np.float32(v):
            m = np.nextafter(m, np.inf)
    else:
        m = v
    if fin == FIN_ID:
        return m
    # smallest s with sqrt(s) >= m (sqrt correctly rounded, monotone)
    if m == np.inf:
        return np.inf
    s = m * m
    while s > 0.0 and math.sqrt(np.nextafter(s, 0.0)) >= m:
        s = np.nextafter(s, 0.0)
    while math.sqrt(s) < m:
        s = np.nextafter(s, np.inf)
    return s


@njit(nogil=True, cache=True)
def _half_step(r, delta):
    # the float16 value next to the float16 value r (float32, >= 0) above (delta 1) / below (-1)
    h = np.int64(half_bits(r)) + delta
    return bits_f32(np.uint32(h) << np.uint32(13)) * np.float32(2.0 ** 112)


@njit(nogil=True, cache=True)
def half_up(v, qs, qinv):
    """Smallest float32 ``x >= 0`` with ``dequantised(x, qs, qinv) >= v``, for ``v > 0``
    (above the float16 range: the smallest ``x`` whose scaled value overflows)."""
    q = np.float64(v) * np.float64(qs)
    if q > HALF_MAX:
        return np.nextafter(np.float32(HALF_MAX) * qinv, np.float32(np.inf))
    r = round_half(np.float32(q))  # the ceiling of q on float16's grid, or the value below it
    if np.float64(r) < q:
        r = _half_step(r, 1)
    m = (_half_step(r, -1) + r) * np.float32(0.5)  # the midpoint below r (exact in float32)
    if not (round_half(m) >= r):  # the tie goes down (r odd)
        m = np.nextafter(m, np.float32(np.inf))
    return m * qinv


@njit(nogil=True, cache=True)
def qthreshold(fin, v, f32, qs, qinv):
    """:func:`threshold` of the values of a quantising bundle (``qs > 0``): the smallest
    float64 ``s`` whose finished, float32-rounded and quantised value is ``>= v``."""
    if qs == np.float32(0.0):
        return threshold(fin, v, f32)
    if not (v > 0.0):
        return 0.0
    return threshold(fin, half_up(v, qs, qinv), True)


@njit(nogil=True, cache=True)
def bad_threshold(fin, f32, qs, qinv):
    """Smallest float64 ``s`` whose value is not finite in the output (float16: the scaled
    float32 value exceeds ``HALF_MAX``)."""
    if qs == np.float32(0.0):
        return threshold(fin, np.inf, f32)
    return threshold(fin, np.nextafter(np.float32(HALF_MAX) * qinv, np.float32(np.inf)), True)


@njit(nogil=True, cache=True)
def update_thresholds(fin, ds, thr, thr_v, f32, everything, qs, qinv):
    """Recompute ``thr[o] = qthreshold(ds[o])`` where ``ds[o]`` changed since ``thr_v[o]``
    (all points when ``everything``)."""
    for o in range(ds.shape[0]):
        if everything or ds[o] != thr_v[o]:
            thr[o] = qthreshold(fin, ds[o], f32, qs, qinv)
            thr_v[o] = ds[o]


@njit(nogil=True, cache=True, error_model="numpy")
def out_value(x, f32, qs, qinv):
    """float64 of the value the source returns for the finished float64 distance ``x``."""
    if qs != np.float32(0.0):
        return np.float64(dequantised(np.float32(x), qs, qinv))
    if f32:
        return np.float64(np.float32(x))
    return x


@njit(nogil=True, cache=True, error_model="numpy")
def store_tile(acc, vals, wt, qs, qinv):
    """``vals[o]`` = the source's value of the float64 distance ``acc[o]`` (``o < wt``, in
    ``vals``' dtype, quantised when ``qs > 0``); returns how many are not finite there."""
    bad = 0
    if qs != np.float32(0.0):
        hm = np.float32(HALF_MAX)
        for o in range(wt):
            vals[o] = dequantised(np.float32(acc[o]), qs, qinv)
        for o in range(wt):
            bad += not (np.float32(acc[o]) * qs <= hm)
    else:
        for o in range(wt):
            vals[o] = acc[o]
        for o in range(wt):
            bad += not (vals[o] < np.inf)
    return bad


@njit(nogil=True, cache=True)
def fused_row(code, T, aux, j, p, categorical, ranges, row, acc, acc2, tw, qs, qinv):
    """``row[o] = D[j, o]`` in ``row``'s dtype for all o (diagonal 0; quantised when
    ``qs > 0``).  Returns the number of entries that are not finite in that dtype."""
    n = T.shape[1]
    bad = 0
    for c0 in range(0, n, tw):
        w = min(tw, n - c0)
        dist_tile(code, T, j, aux, T, c0, w, aux, p, categorical, ranges, acc, acc2)
        if c0 <= j < c0 + w:
            acc[j - c0] = 0.0
        bad += store_tile(acc, row[c0:c0 + w], w, qs, qinv)
    return bad


# ---------------------------------------------------------------------------------------
# The one walk over a candidate's row: the points closer than a limit, in increasing order.
# ``walk_below(use, ...)`` computes the row tile by tile and hands each point o with
# ``D[j, o] < lim[o]`` (monotone metrics: raw sum below its threshold, then finished and
# rounded) to the consumer ``use`` (a compile-time constant: one specialisation per consumer,
# the call resolved and inlined when compiling).  Consumers ``(v, o, ctx, tot) -> tot``:
# ``ctx`` a tuple of the consumer's arrays, ``v`` the source's value of ``D[j, o]`` as float64.
# The passes over every point of a row share :func:`rounded_tile` instead.
# ---------------------------------------------------------------------------------------

#: consumers of :func:`walk_below`: FasterPAM's candidate terms, BUILD's gains, FasterMSC's terms.
USE_SWAP, USE_GAIN, USE_MSC = 0, 1, 2


@njit(nogil=True, cache=True, error_model="numpy")
def _use_swap(v, o, ctx, tot):
    dn, ds, nn, w, weighted, P = ctx
    return pass_terms(v, np.float64(dn[o]), np.float64(ds[o]), nn[o], w[o] if weighted else 1.0,
                      weighted, P, tot)


@njit(nogil=True, cache=True, error_model="numpy")
def _use_gain(v, o, ctx, tot):
    dn, w, weighted = ctx
    g = max(np.float64(dn[o]) - v, 0.0)
    if weighted:
        return tot + w[o] * g
    return tot + g


@njit(nogil=True, cache=True, error_model="numpy")
def _use_msc(v, o, ctx, tot):
    d1, d2, d3, n1, n2, w, weighted, P = ctx
    return msc_terms(v, o, d1, d2, d3, n1, n2, w, weighted, P, tot)


_USES = {USE_SWAP: _use_swap, USE_GAIN: _use_gain, USE_MSC: _use_msc}


def use_point(use, v, o, ctx, tot):  # pragma: no cover - replaced by the overload in numba
    """``tot`` after consumer ``use`` (a literal ``USE_*``) took the value ``v`` of point ``o``."""
    return _USES[use](v, o, ctx, tot)


@overload(use_point, prefer_literal=True)
def _ov_use_point(use, v, o, ctx, tot):
    if not isinstance(use, types.IntegerLiteral):
        return None
    fn = _USES[use.literal_value]

    def impl(use, v, o, ctx, tot):
        return fn(v, o, ctx, tot)

    return impl


@njit(nogil=True, cache=True, error_model="numpy")
def _below_raw(use, fin, acc, lim, c0, wt, f32, qs, qinv, ctx, tot):
    # monotone path: the points with raw acc[t] < lim[t] (i.e. D < the limit) are finished,
    # rounded and consumed.  Full groups of 64: one vector compare each (simd.lt_mask64).
    literally(use)
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(acc, g0, lim, g0)
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            tot = use_point(use, out_value(_finish(fin, acc[t]), f32, qs, qinv), c0 + t, ctx, tot)
    for t in range(nfull, wt):
        if acc[t] < lim[t]:
            tot = use_point(use, out_value(_finish(fin, acc[t]), f32, qs, qinv), c0 + t, ctx, tot)
    return tot


@njit(nogil=True, cache=True, error_model="numpy")
def _below_vals(use, vals, lim, c0, wt, ctx, tot):
    # other metrics: the rounded values vals[t] = D[j, c0 + t] compared with the limit directly
    # (a float32 value against a float64 limit: the exact comparison, in the loop)
    literally(use)
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(vals, g0, lim, c0 + g0)
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            tot = use_point(use, np.float64(vals[t]), c0 + t, ctx, tot)
    for t in range(nfull, wt):
        if vals[t] < lim[c0 + t]:
            tot = use_point(use, np.float64(vals[t]), c0 + t, ctx, tot)
    return tot


@njit(nogil=True, cache=True)
def walk_below(use, j, F, S, H, lim, ctx, tot):
    """``tot`` after consumer ``use`` took every point o with ``D[j, o] < lim[o]``, in
    increasing o (row j computed here, tile by tile; the diagonal is 0).

    ``H`` = the thresholds of ``lim`` (:func:`make_thresholds`; used by the monotone
    metrics, which finish only the passing points).  The number of entries of the row that
    are not finite in the source's dtype is added to ``S[5][0]``.  The tile width must be
    a multiple of 64.  Bitwise the stored kernels' sums: the same passing points, the same
    terms, the same order.
    """
    literally(use)
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    vals, acc, acc2 = S[1], S[2], S[3]
    n = T.shape[1]
    fin = finish_kind(code)
    f32 = vals.itemsize == 4
    thr = H[0]
    tinf = H[2][0]
    bad = 0
    for c0 in range(0, n, tw):
        wt = min(tw, n - c0)
        if fin != FIN_NONE:
            _raw_tile(code, T, j, c0, wt, acc)
            if c0 <= j < c0 + wt:
                acc[j - c0] = 0.0
            for o in range(wt):
                bad += not (acc[o] < tinf)
            tot = _below_raw(use, fin, acc, thr[c0:c0 + wt], c0, wt, f32, qs, qinv, ctx, tot)
        else:
            dist_tile(code, T, j, aux, T, c0, wt, aux, p, categorical, ranges, acc, acc2)
            if c0 <= j < c0 + wt:
                acc[j - c0] = 0.0
            bad += store_tile(acc, vals, wt, qs, qinv)  # rounded to the source dtype
            tot = _below_vals(use, vals, lim, c0, wt, ctx, tot)
    S[5][0] += bad
    return tot


@njit(nogil=True, cache=True)
def rounded_tile(F, j, c0, wt, vals, acc, acc2):
    """``vals[o] = D[j, c0 + o]`` in ``vals``' dtype for ``o < wt`` (the diagonal 0), as
    ``read_rows`` rounds them (quantised for a float16 source); returns how many are not finite."""
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    dist_tile(code, T, j, aux, T, c0, wt, aux, p, categorical, ranges, acc, acc2)
    if c0 <= j < c0 + wt:
        acc[j - c0] = 0.0
    return store_tile(acc, vals, wt, qs, qinv)


@njit(nogil=True, cache=True)
def eval_candidate_fused(j, F, S, H, dn, ds, nn, R, w, weighted, P):
    """:func:`~.swap.eval_candidate` of candidate ``j`` with its row computed on the fly.

    Fills ``P`` and returns the sum bitwise as the stored kernel does on ``D[j]`` (same
    passing points, same :func:`~.swap.pass_terms`, increasing o: :func:`walk_below` of
    ``ds``); adds the number of non-finite entries of the row to ``S[5][0]``.  Requires
    k >= 2 (k = 1: see :func:`fused_eval`).
    """
    for s in range(R.shape[0]):
        P[s] = R[s]
    return walk_below(USE_SWAP, j, F, S, H, ds, (dn, ds, nn, w, weighted, P), 0.0)


# ---------------------------------------------------------------------------------------
# Four candidates per sweep (the fused counterpart of swap.eval_quad).  The four rows are
# computed tile by tile into the group scratch (S[6]: raw float64 sums, S[7]: rounded values),
# the 64-point masks are built against the same limits, and each row's passing points are
# consumed in increasing o with its own P and acc -- the four chains interleaved while all
# have bits, as in swap.eval_quad.  Per row: the same points, terms and order as
# walk_below(USE_SWAP), so every P and acc is bitwise the one-candidate kernel's.
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _q_point(X, t, o, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P, tot):
    """The terms of tile entry ``t`` of ``X`` (point ``o``), which passed; ``raw``: ``X``
    holds unfinished sums (monotone path, finished and rounded here), else the source's
    values."""
    if raw:
        v = out_value(_finish(fin, X[t]), f32, qs, qinv)
    else:
        v = np.float64(X[t])
    return pass_terms(v, np.float64(dn[o]), np.float64(ds[o]), nn[o], w[o] if weighted else 1.0, weighted, P, tot)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _q_bit(ub, m, X, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P, tot):
    """The terms of the lowest set bit of ``m`` (tile entry ``ub | bit``, point
    ``c0 + entry``).  Returns (rest of m, tot)."""
    t = ub | np.uint64(trailing_zeros(m))
    tot = _q_point(X, t, np.uint64(c0) + t, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P, tot)
    return m & (m - np.uint64(1)), tot


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _q_pair(ub, m1, m2, X1, X2, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P1, P2, a1, a2):
    while m1 != 0 and m2 != 0:
        m1, a1 = _q_bit(ub, m1, X1, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P1, a1)
        m2, a2 = _q_bit(ub, m2, X2, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P2, a2)
    while m1 != 0:
        m1, a1 = _q_bit(ub, m1, X1, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P1, a1)
    while m2 != 0:
        m2, a2 = _q_bit(ub, m2, X2, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P2, a2)
    return a1, a2


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _q_tail(X, L, lb, t, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P, tot):
    if X[t] < L[lb + t]:
        tot = _q_point(X, t, c0 + t, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P, tot)
    return tot


@njit(nogil=True, cache=True, error_model="numpy")
def _quad_tile(X, L, lb, c0, wt, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, PG, accs):
    """Consume tile ``c0`` (``wt`` points) of the four rows ``X[g]``: entry t passes when
    ``X[g, t] < L[lb + t]``.  ``accs`` (4 float64) is updated in place.  Compiled once per
    value of ``weighted`` (a constant in each inlined copy of the body)."""
    if weighted:
        _quad_tile_body(X, L, lb, c0, wt, raw, fin, f32, qs, qinv, dn, ds, nn, w, True, PG, accs)
    else:
        _quad_tile_body(X, L, lb, c0, wt, raw, fin, f32, qs, qinv, dn, ds, nn, w, False, PG, accs)


@njit(nogil=True, cache=True, inline="always", error_model="numpy")
def _quad_tile_body(X, L, lb, c0, wt, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, PG, accs):
    X0, X1, X2, X3 = X[0], X[1], X[2], X[3]
    P0, P1, P2, P3 = PG[0], PG[1], PG[2], PG[3]
    a0, a1, a2, a3 = accs[0], accs[1], accs[2], accs[3]
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m0 = lt_mask64(X0, g0, L, lb + g0)
        m1 = lt_mask64(X1, g0, L, lb + g0)
        m2 = lt_mask64(X2, g0, L, lb + g0)
        m3 = lt_mask64(X3, g0, L, lb + g0)
        ub = np.uint64(g0)
        while m0 != 0 and m1 != 0 and m2 != 0 and m3 != 0:
            m0, a0 = _q_bit(ub, m0, X0, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P0, a0)
            m1, a1 = _q_bit(ub, m1, X1, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P1, a1)
            m2, a2 = _q_bit(ub, m2, X2, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P2, a2)
            m3, a3 = _q_bit(ub, m3, X3, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P3, a3)
        a0, a1 = _q_pair(ub, m0, m1, X0, X1, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P0, P1, a0, a1)
        a2, a3 = _q_pair(ub, m2, m3, X2, X3, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P2, P3, a2, a3)
    for t in range(nfull, wt):
        a0 = _q_tail(X0, L, lb, t, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P0, a0)
        a1 = _q_tail(X1, L, lb, t, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P1, a1)
        a2 = _q_tail(X2, L, lb, t, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P2, a2)
        a3 = _q_tail(X3, L, lb, t, c0, raw, fin, f32, qs, qinv, dn, ds, nn, w, weighted, P3, a3)
    accs[0] = a0
    accs[1] = a1
    accs[2] = a2
    accs[3] = a3


@njit(nogil=True, cache=True)
def eval_quad_fused(js, F, S, H, dn, ds, nn, R, w, weighted, PG, accs, bads):
    """:func:`eval_candidate_fused` of the four candidates ``js`` in one sweep (k >= 2).

    ``PG[g]`` and ``accs[g]`` are bitwise what ``eval_candidate_fused(js[g], ...)`` gives,
    and ``bads[g]`` is the number of entries of row ``js[g]`` that are not finite in the
    source's dtype (``S[5]`` is not touched: the caller adds a row's count when it reaches
    that candidate).  Tiles of ``tw`` points as :func:`walk_below`; the group scratch is
    ``S[6]`` (4, tw) float64 and ``S[7]`` (4, tw) in the source's dtype.
    """
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    acc2, QA, QV = S[3], S[6], S[7]
    n = T.shape[1]
    fin = finish_kind(code)
    f32 = QV.itemsize == 4
    thr = H[0]
    tinf = H[2][0]
    k = R.shape[0]
    for g in range(GROUP):
        for s in range(k):
            PG[g, s] = R[s]
        accs[g] = 0.0
        bads[g] = 0
    for c0 in range(0, n, tw):
        wt = min(tw, n - c0)
        if fin != FIN_NONE:
            _raw_tile4(code, T, js, c0, wt, QA)
        else:
            dist_tile4(code, T, js, aux, T, c0, wt, aux, p, categorical, ranges, QA, acc2)
        for g in range(GROUP):
            j = js[g]
            a = QA[g]
            if c0 <= j < c0 + wt:
                a[j - c0] = 0.0
            if fin != FIN_NONE:
                b = 0
                for o in range(wt):
                    b += not (a[o] < tinf)
                bads[g] += b
            else:
                bads[g] += store_tile(a, QV[g], wt, qs, qinv)
        if fin != FIN_NONE:
            _quad_tile(QA, thr, c0, c0, wt, True, fin, f32, qs, qinv, dn, ds, nn, w, weighted, PG, accs)
        else:
            _quad_tile(QV, ds, c0, c0, wt, False, fin, f32, qs, qinv, dn, ds, nn, w, weighted, PG, accs)


@njit(nogil=True, cache=True)
def fused_group(F, S, H, cand, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, bads):
    """``PG[g]``, ``accs[g]``, ``bads[g]`` of the candidates at positions ``gpos[:ng]``:
    bitwise :func:`fused_eval` of each.  Two to four in one sweep (:func:`eval_quad_fused`,
    the last candidate repeated); one alone, or k = 1, by :func:`fused_eval`."""
    if ng == 1 or R.shape[0] == 1:
        box = S[5]
        for g in range(ng):
            before = box[0]
            accs[g] = fused_eval(cand[gpos[g]], F, dn, ds, H, nn, R, w, weighted, PG[g], S)
            bads[g] = box[0] - before
            box[0] = before
        return
    js = np.empty(GROUP, dtype=np.int64)
    for g in range(GROUP):
        js[g] = cand[gpos[min(g, ng - 1)]]
    eval_quad_fused(js, F, S, H, dn, ds, nn, R, w, weighted, PG, accs, bads)


# ---------------------------------------------------------------------------------------
# FasterPAM on a feature bundle.  ``F = (code, T, aux, p, categorical, ranges, tw, qs, qinv)``;
# scratch ``S = (idx, vals, acc, acc2, row, bad_box, QA, QV)`` (one per thread); thresholds
# ``H = (thr, thr_v, tinf_box)`` shared (read-only while candidates are evaluated).
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def fused_eval(j, F, dn, ds, H, nn, R, w, weighted, P, S):
    """``acc`` with ΔTD(s) = P[s] + acc for candidate ``j`` (any k; see :func:`eval_candidate_fused`)."""
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    idx, acc, acc2, row, bad_box = S[0], S[2], S[3], S[4], S[5]
    if R.shape[0] == 1:
        bad_box[0] += fused_row(code, T, aux, j, p, categorical, ranges, row, acc, acc2, tw, qs, qinv)
        return eval_candidate(row, dn, ds, nn, R, w, weighted, P, idx)
    return eval_candidate_fused(j, F, S, H, dn, ds, nn, R, w, weighted, P)


@njit(nogil=True, cache=True)
def fused_full_row(j, F, S):
    """``S.row`` = D[j] (diagonal 0); returns it.  Non-finite entries counted in ``bad_box``."""
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    acc, acc2, row, bad_box = S[2], S[3], S[4], S[5]
    bad_box[0] += fused_row(code, T, aux, j, p, categorical, ranges, row, acc, acc2, tw, qs, qinv)
    return row


@njit(nogil=True, cache=True)
def _accept_fused(j, F, S, s, dn, ds, nn, w, weighted, td, tol, delta):
    # accept_swap of swap.py with the row computed only for the rare noise-band check
    bound = -tol * td
    if not (delta < bound) or td <= 0.0:
        return False
    margin = rounding_margin(S[4], weighted, td)  # dtype and n of the row scratch only
    if delta < bound - max(NOISE * td, 2.0 * margin):
        return True
    row = fused_full_row(j, F, S)
    return swapped_loss(row, s, dn, ds, nn, w, weighted) < td + bound - margin


@njit(nogil=True, cache=True)
def fused_apply_swap(F, S, H, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    """:func:`~.swap.apply_swap` with j's row computed here; thresholds refreshed."""
    row = fused_full_row(j, F, S)
    td = apply_swap(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
    refresh_thresholds(F, H, ds, False)  # reads ds only: after or before loss_sum alike
    return td


@njit(nogil=True, cache=True)
def refresh_thresholds(F, H, ds, everything):
    """Thresholds of the monotone path for the current ``ds`` (no-op for other metrics)."""
    fin = finish_kind(F[0])
    if fin == FIN_NONE:
        return
    thr, thr_v, tinf_box = H
    f32 = ds.itemsize == 4
    qs, qinv = F[7], F[8]
    if everything:
        tinf_box[0] = bad_threshold(fin, f32, qs, qinv)
    update_thresholds(fin, ds, thr, thr_v, f32, everything, qs, qinv)


@njit(nogil=True, cache=True)
def fasterpam_fused(F, S, H, cand, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted, tol, P,
                    counters, td_box):
    """:func:`~.swap.fasterpam_block` over the candidates ``cand`` (rows computed on the fly).

    Returns the number of positions consumed; stops early (like the stored kernel) after a
    full cycle without a swap, or when a row holds a non-finite entry (``bad_box[0] > 0``).
    The next four own candidates are evaluated in one sweep (:func:`fused_group`); after a
    swap the ones evaluated ahead are evaluated again against the new caches.
    """
    n = M.shape[0]
    m = cand.shape[0]
    k = R.shape[0]
    since = counters[0]
    nsw = counters[1]
    td = td_box[0]
    consumed = m
    bad_box = S[5]
    PG = np.empty((GROUP, k), dtype=np.float64)
    accs = np.empty(GROUP, dtype=np.float64)
    bads = np.zeros(GROUP, dtype=np.int64)
    gpos = np.empty(GROUP, dtype=np.int64)
    ng = 0  # positions gpos[g:ng] evaluated ahead against the current caches
    g = 0
    for i in range(m):
        j = cand[i]
        if not is_medoid[j]:
            if g >= ng or gpos[g] != i:
                ng = _own_positions(cand, is_medoid, i, m, 1, gpos)
                fused_group(F, S, H, cand, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, bads)
                g = 0
            bad_box[0] += bads[g]
            if bad_box[0] > 0:
                consumed = i
                break
            s, dlt = best_slot(PG[g], accs[g])
            g += 1
            if _accept_fused(j, F, S, s, dn, ds, nn, w, weighted, td, tol, dlt):
                td = fused_apply_swap(F, S, H, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
                nsw += 1
                since = 0
                ng = 0  # the caches changed: the positions evaluated ahead are evaluated again
        since += 1
        if since >= n:
            consumed = i + 1
            break
    counters[0] = since
    counters[1] = nsw
    td_box[0] = td
    return consumed


@njit(nogil=True, cache=True)
def first_improving_fused(F, S, H, cand, lo, hi, is_medoid, dn, ds, nn, R, w, weighted, td, tol, P, out):
    """:func:`~.swap.first_improving` with rows computed on the fly (same arithmetic).

    Returns the first accepted position in ``[lo, hi)`` or -1 (also -1 with
    ``bad_box[0] > 0`` when a row holds a non-finite entry).  Four own candidates per
    sweep (:func:`fused_group`; the caches do not change here)."""
    return first_improving_fused_strided(F, S, H, cand, lo, hi, 1, is_medoid, dn, ds, nn, R, w, weighted, td,
                                         tol, P, out, np.empty(0, dtype=np.int64), 0)


@njit(nogil=True, cache=True)
def first_improving_fused_strided(F, S, H, cand, lo, hi, step, is_medoid, dn, ds, nn, R, w, weighted, td, tol,
                                  P, out, hits, me):
    """:func:`~.swap.first_improving_strided` with rows computed on the fly: thread ``me``'s
    share ``lo, lo + step, ... < hi`` of an interleaved batch, stopping once another thread
    published an earlier position in ``hits``.

    A row with a non-finite entry also stops the share: ``bad_box[0] > 0``, its position
    is published (the other threads stop past it) and -1 returned; the driver then reports
    the bad row instead of swapping.  With an empty ``hits`` and ``step = 1`` it is
    :func:`first_improving_fused`.
    """
    bad_box = S[5]
    k = R.shape[0]
    PG = np.empty((GROUP, k), dtype=np.float64)
    accs = np.empty(GROUP, dtype=np.float64)
    bads = np.zeros(GROUP, dtype=np.int64)
    gpos = np.empty(GROUP, dtype=np.int64)
    ng = 0  # this thread's positions gpos[g:ng] evaluated ahead
    g = 0
    for i in range(lo, hi, step):
        if _beaten(hits, i):
            return -1
        j = cand[i]
        if is_medoid[j]:
            continue
        if g >= ng or gpos[g] != i:
            ng = _own_positions(cand, is_medoid, i, hi, step, gpos)
            fused_group(F, S, H, cand, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, bads)
            g = 0
        bad_box[0] += bads[g]
        if bad_box[0] > 0:
            if hits.shape[0] > 0:
                store_relaxed(hits, me, i)
            return -1
        s, dlt = best_slot(PG[g], accs[g])
        g += 1
        if _accept_fused(j, F, S, s, dn, ds, nn, w, weighted, td, tol, dlt):
            out[0] = s
            out[1] = dlt
            if hits.shape[0] > 0:
                store_relaxed(hits, me, i)
            return i
    return -1


@njit(nogil=True, cache=True)
def strided_helper_fused(ctl, done, me, spins, tdbox, F, S, H, cand, step, is_medoid, dn, ds, nn, R, w, weighted,
                         tol, P, out, hits):
    """:func:`~.swap.strided_helper` with rows computed on the fly
    (:func:`first_improving_fused_strided` with this thread's scratch ``S``)."""
    gen = done[me]
    while True:
        g = next_batch(ctl, gen, spins)
        if g == gen:
            return 0
        if g < 0:
            return 1
        lo = ctl[1] + me
        if lo < ctl[2]:
            first_improving_fused_strided(F, S, H, cand, lo, ctl[2], step, is_medoid, dn, ds, nn, R, w, weighted,
                                          tdbox[0], tol, P, out, hits, me)
        gen = g
        finish(done, me, g)


def make_scratch(n, dtype, tw):
    """Per-thread scratch ``S`` of the fused FasterPAM kernels (plain numpy): ``(idx, vals,
    acc, acc2, row, bad_box, QA, QV)``, the last two the group tiles of :func:`eval_quad_fused`."""
    return (np.empty(n, dtype=np.int32), np.empty(tw, dtype=dtype), np.empty(tw, dtype=np.float64),
            np.empty(tw, dtype=np.float64), np.empty(n, dtype=dtype), np.zeros(1, dtype=np.int64),
            np.empty((GROUP, tw), dtype=np.float64), np.empty((GROUP, tw), dtype=dtype))


def make_thresholds(F, ds):
    """Thresholds ``H`` for the caches' current ``ds`` (plain numpy + one kernel call)."""
    n = ds.shape[0]
    H = (np.zeros(n, dtype=np.float64), np.full(n, np.nan, dtype=ds.dtype), np.zeros(1, dtype=np.float64))
    refresh_thresholds(F, H, ds, True)
    return H


class FusedEval:
    """The fused FasterPAM kernels bound to one feature bundle (plain Python handle).

    Holds the bundle ``F``, one scratch ``S`` per thread and the thresholds ``H`` of the
    caches' ``ds`` (refreshed by :meth:`apply` and :meth:`refresh`).  Drivers call it where
    they would call the stored kernels with a block of rows.

    Parameters
    ----------
    F : tuple
        Feature bundle (module notes).
    threads : int
        Scratch sets to allocate (one per concurrently evaluating thread).
    ds : ndarray
        The second-nearest distances of the caches (source dtype).
    """

    def __init__(self, F, threads, ds):
        n = ds.shape[0]
        self.F = F
        self.S = [make_scratch(n, ds.dtype, F[6]) for _ in range(max(1, int(threads)))]
        self.H = make_thresholds(F, ds)

    def refresh(self, ds):
        """Recompute every threshold (after the caches changed outside these kernels)."""
        refresh_thresholds(self.F, self.H, ds, True)

    def bad(self):
        """Whether a computed row held a non-finite entry (the caller reports it)."""
        return any(int(S[5][0]) for S in self.S)

    def block(self, cand, st, tol, P, counters, td_box):
        """:func:`fasterpam_fused` over ``cand`` on the caches ``st`` (thread 0's scratch)."""
        return fasterpam_fused(self.F, self.S[0], self.H, cand, st.M, st.medoids, st.is_medoid, st.dn,
                               st.ds, st.nn, st.sn, st.R, st.w, st.weighted, tol, P, counters, td_box)

    def first(self, t, cand, lo, hi, st, td, tol, P, out):
        """:func:`first_improving_fused` with thread ``t``'s scratch."""
        return first_improving_fused(self.F, self.S[t], self.H, cand, lo, hi, st.is_medoid, st.dn, st.ds,
                                     st.nn, st.R, st.w, st.weighted, td, tol, P, out)

    def strided(self, t, cand, lo, hi, step, st, td, tol, P, out, hits):
        """:func:`first_improving_fused_strided`: thread ``t``'s share of an interleaved batch."""
        return first_improving_fused_strided(self.F, self.S[t], self.H, cand, lo, hi, step, st.is_medoid, st.dn,
                                             st.ds, st.nn, st.R, st.w, st.weighted, td, tol, P, out, hits, t)

    def helper(self, t, ctl, done, me, spins, tdbox, cand, step, st, tol, P, out, hits):
        """:func:`strided_helper_fused`: helper thread ``t``'s serve loop (its scratch)."""
        return strided_helper_fused(ctl, done, me, spins, tdbox, self.F, self.S[t], self.H, cand, step, st.is_medoid,
                                    st.dn, st.ds, st.nn, st.R, st.w, st.weighted, tol, P, out, hits)

    def apply(self, slot, j, st):
        """:func:`fused_apply_swap`: swap slot ``slot`` for ``j``; returns the new TD."""
        return fused_apply_swap(self.F, self.S[0], self.H, slot, j, st.M, st.medoids, st.is_medoid, st.dn,
                                st.ds, st.nn, st.sn, st.R, st.w, st.weighted)
