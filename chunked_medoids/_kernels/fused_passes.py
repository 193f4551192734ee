"""Fused full-pass kernels: the block-parallel passes over D with rows computed from features.

Pure numba, numpy in / numpy out.  Each kernel here is the fused twin of a stored kernel
that reduces the rows ``D[start:stop]`` of a block (:mod:`.swap`, :mod:`.build`,
:mod:`.silhouette`): instead of the block it takes the candidates' range ``start, stop``,
the feature bundle ``F`` and the per-thread scratch ``S`` of :mod:`.fused` (module notes
there), computes each candidate's row tile by tile and consumes the tile at once.  The
results are bitwise those of the stored kernel on the materialised rows (what
``FeatureSource.read_rows`` returns): the same terms in the same (increasing point) order;
terms a stored kernel adds as exact zeros are skipped where they are exact zeros.

* :func:`fastpam1_records_fused`, :func:`pam_records_fused`, :func:`fastpam2_block_fused`:
  the candidate evaluations of FastPAM1 / PAM / FastPAM2 (the PAM and FastPAM1 ones return
  the block's running-minimum records, as :func:`~.swap.fastpam1_records` does).
* :func:`row_sums_fused`, :func:`build_gains_fused`: BUILD's first and later passes.  The
  gains use the monotone-metric thresholds of :mod:`.fused` built from ``dn`` (only the
  points with ``D < dn`` contribute, and only they are finished).
* :func:`silhouette_fused`: the classic silhouette of the candidates.
* :func:`within_cluster_sums_fused`: the alternating method's within-cluster sums.
* :func:`fastermsc_fused`: FasterMSC's eager walk (thresholds of ``d3``,
  :func:`msc_thresholds`).

Every kernel adds the number of non-finite entries it met to ``S[5][0]`` (``bad_box``);
the caller reports them (the source raises its own error naming the entry).
"""

from __future__ import annotations

import numpy as np
from numba import njit
from numba.cpython.unsafe.numbers import trailing_zeros

from .fused import (
    FIN_NONE,
    _finish,
    _raw_tile,
    bad_threshold,
    finish_kind,
    fused_eval,
    fused_full_row,
    out_value,
    store_tile,
    update_thresholds,
)
from .metrics import dist_tile
from .msc import msc_loss, msc_removal, msc_swap_update, msc_terms
from .silhouette import silhouette_value
from .simd import lt_mask64
from .swap import _push_record, pam_delta


@njit(nogil=True, cache=True)
def rounded_tile(F, j, c0, wt, vals, acc, acc2):
    """``vals[o] = D[j, c0 + o]`` in ``vals``' dtype for ``o < wt`` (the diagonal 0), as
    ``read_rows`` rounds them (quantised for a float16 source); returns how many are not finite."""
    code, T, aux, p, categorical, ranges, tw, qs, qinv = F
    dist_tile(code, T, j, aux, T, c0, wt, aux, p, categorical, ranges, acc, acc2)
    if c0 <= j < c0 + wt:
        acc[j - c0] = 0.0
    return store_tile(acc, vals, wt, qs, qinv)


# -- swap phase ---------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def fastpam1_records_fused(F, S, H, start, stop, is_medoid, dn, ds, nn, R, w, weighted):
    """:func:`~.swap.fastpam1_records` of the candidates ``start..stop-1`` (rows computed
    here; ``H`` the thresholds of ``ds``, :func:`~.fused.make_thresholds`)."""
    k = R.shape[0]
    P = np.empty(k, dtype=np.float64)
    rd = np.empty(16, dtype=np.float64)
    rj = np.empty(16, dtype=np.int64)
    rs = np.empty(16, dtype=np.int64)
    nrec = 0
    bd = np.inf
    for j in range(start, stop):
        if is_medoid[j]:
            continue
        acc = fused_eval(j, F, dn, ds, H, nn, R, w, weighted, P, S)
        for s in range(k):
            v = P[s] + acc
            if v < bd:
                bd = v
                rd, rj, rs, nrec = _push_record(rd, rj, rs, nrec, v, j, s)
    return rd[:nrec].copy(), rj[:nrec].copy(), rs[:nrec].copy()


@njit(nogil=True, cache=True)
def pam_records_fused(F, S, start, stop, is_medoid, dn, ds, nn, k, w, weighted):
    """:func:`~.swap.pam_records` of the candidates ``start..stop-1``: each candidate's row
    is computed once into the scratch row and evaluated against every slot."""
    rd = np.empty(16, dtype=np.float64)
    rj = np.empty(16, dtype=np.int64)
    rs = np.empty(16, dtype=np.int64)
    nrec = 0
    bd = np.inf
    for j in range(start, stop):
        if is_medoid[j]:
            continue
        row = fused_full_row(j, F, S)
        for s in range(k):
            dlt = pam_delta(row, s, dn, ds, nn, w, weighted)
            if dlt < bd:
                bd = dlt
                rd, rj, rs, nrec = _push_record(rd, rj, rs, nrec, dlt, j, s)
    return rd[:nrec].copy(), rj[:nrec].copy(), rs[:nrec].copy()


@njit(nogil=True, cache=True)
def fastpam2_block_fused(F, S, H, start, stop, is_medoid, dn, ds, nn, R, w, weighted, best_delta, best_cand):
    """:func:`~.swap.fastpam2_block` of the candidates ``start..stop-1``."""
    k = R.shape[0]
    P = np.empty(k, dtype=np.float64)
    for s in range(k):
        best_delta[s] = np.inf
        best_cand[s] = -1
    for j in range(start, stop):
        if is_medoid[j]:
            continue
        acc = fused_eval(j, F, dn, ds, H, nn, R, w, weighted, P, S)
        for s in range(k):
            v = P[s] + acc
            if v < best_delta[s]:
                best_delta[s] = v
                best_cand[s] = j


# -- BUILD --------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def row_sums_fused(F, S, start, stop, w, weighted, out):
    """:func:`~.build.row_sums` of the rows ``start..stop-1``: ``out[j - start] = Σ_o w_o·D[j, o]``."""
    vals, acc, acc2, bad_box = S[1], S[2], S[3], S[5]
    n = F[1].shape[1]
    tw = F[6]
    bad = 0
    for j in range(start, stop):
        tot = 0.0
        for c0 in range(0, n, tw):
            wt = min(tw, n - c0)
            bad += rounded_tile(F, j, c0, wt, vals, acc, acc2)
            if weighted:
                for o in range(wt):
                    tot += w[c0 + o] * np.float64(vals[o])
            else:
                for o in range(wt):
                    tot += np.float64(vals[o])
        out[j - start] = tot
    bad_box[0] += bad


@njit(nogil=True, cache=True, error_model="numpy")
def _gain_term(v, o, dn, w, weighted, tot):
    g = max(np.float64(dn[o]) - v, 0.0)
    if weighted:
        return tot + w[o] * g
    return tot + g


@njit(nogil=True, cache=True, error_model="numpy")
def _gains_raw(fin, acc, lim, c0, wt, dn, w, weighted, tot, f32, qs, qinv):
    # monotone path: the points with raw acc[t] < lim[t] (D < dn) are finished and added
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(acc, g0, lim, g0)
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            v = out_value(_finish(fin, acc[t]), f32, qs, qinv)
            tot = _gain_term(v, c0 + t, dn, w, weighted, tot)
    for t in range(nfull, wt):
        if acc[t] < lim[t]:
            v = out_value(_finish(fin, acc[t]), f32, qs, qinv)
            tot = _gain_term(v, c0 + t, dn, w, weighted, tot)
    return tot


@njit(nogil=True, cache=True, error_model="numpy")
def _gains_vals(vals, c0, wt, dn, w, weighted, tot):
    # other metrics: the rounded values compared with dn directly
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(vals, g0, dn, c0 + g0)
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            tot = _gain_term(np.float64(vals[t]), c0 + t, dn, w, weighted, tot)
    for t in range(nfull, wt):
        if vals[t] < dn[c0 + t]:
            tot = _gain_term(np.float64(vals[t]), c0 + t, dn, w, weighted, tot)
    return tot


@njit(nogil=True, cache=True)
def build_gains_fused(F, S, H, start, stop, dn, w, weighted, out):
    """:func:`~.build.build_gains` of the rows ``start..stop-1``:
    ``out[j - start] = Σ_o w_o·max(dn[o] − D[j, o], 0)``.

    Only points with ``D[j, o] < dn[o]`` add a non-zero term (the others add exact zeros in
    the stored kernel, which leave the sum's bits unchanged), so only they are visited.
    ``H`` = :func:`~.fused.make_thresholds` of ``dn`` (used by the monotone metrics)."""
    code, T = F[0], F[1]
    tw = F[6]
    vals, acc, acc2, bad_box = S[1], S[2], S[3], S[5]
    n = T.shape[1]
    fin = finish_kind(code)
    thr = H[0]
    tinf = H[2][0]
    f32 = vals.itemsize == 4
    bad = 0
    for j in range(start, stop):
        tot = 0.0
        for c0 in range(0, n, tw):
            wt = min(tw, n - c0)
            if fin != FIN_NONE:
                _raw_tile(code, T, j, c0, wt, acc)
                if c0 <= j < c0 + wt:
                    acc[j - c0] = 0.0
                for o in range(wt):
                    bad += not (acc[o] < tinf)
                tot = _gains_raw(fin, acc, thr[c0:c0 + wt], c0, wt, dn, w, weighted, tot, f32, F[7], F[8])
            else:
                bad += rounded_tile(F, j, c0, wt, vals, acc, acc2)
                tot = _gains_vals(vals, c0, wt, dn, w, weighted, tot)
        out[j - start] = tot
    bad_box[0] += bad


# -- silhouette and the alternating method ----------------------------------------------------


@njit(nogil=True, cache=True)
def silhouette_fused(F, S, start, stop, labels, counts, out):
    """:func:`~.silhouette.silhouette_block` of the points ``start..stop-1``."""
    vals, acc, acc2, bad_box = S[1], S[2], S[3], S[5]
    n = F[1].shape[1]
    tw = F[6]
    sums = np.empty(counts.shape[0], dtype=np.float64)
    bad = 0
    for j in range(start, stop):
        for t in range(sums.shape[0]):
            sums[t] = 0.0
        for c0 in range(0, n, tw):
            wt = min(tw, n - c0)
            bad += rounded_tile(F, j, c0, wt, vals, acc, acc2)
            lab = labels[c0:c0 + wt]
            for o in range(wt):
                sums[lab[o]] += np.float64(vals[o])
        out[j - start] = silhouette_value(sums, labels[j], counts)
    bad_box[0] += bad


@njit(nogil=True, cache=True)
def within_cluster_sums_fused(F, S, start, stop, labels, w, weighted, out):
    """:func:`~.build.within_cluster_sums` of the rows ``start..stop-1`` (same expression
    per point, so the same bits)."""
    vals, acc, acc2, bad_box = S[1], S[2], S[3], S[5]
    n = F[1].shape[1]
    tw = F[6]
    bad = 0
    for j in range(start, stop):
        c = labels[j]
        tot = 0.0
        for c0 in range(0, n, tw):
            wt = min(tw, n - c0)
            bad += rounded_tile(F, j, c0, wt, vals, acc, acc2)
            lab = labels[c0:c0 + wt]
            if weighted:
                ww = w[c0:c0 + wt]
                for o in range(wt):
                    tot += (lab[o] == c) * (ww[o] * np.float64(vals[o]))
            else:
                for o in range(wt):
                    tot += (lab[o] == c) * np.float64(vals[o])
        out[j - start] = tot
    bad_box[0] += bad


# -- FasterMSC (the medoid silhouette's eager walk) ---------------------------------------------


@njit(nogil=True, cache=True, error_model="numpy")
def _msc_raw(fin, acc, lim, c0, wt, d1, d2, d3, n1, n2, w, weighted, P, tot, f32, qs, qinv):
    # monotone path: the points with raw acc[t] < lim[t] (D < d3) are finished and added
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(acc, g0, lim, g0)
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            v = out_value(_finish(fin, acc[t]), f32, qs, qinv)
            tot = msc_terms(v, c0 + t, d1, d2, d3, n1, n2, w, weighted, P, tot)
    for t in range(nfull, wt):
        if acc[t] < lim[t]:
            v = out_value(_finish(fin, acc[t]), f32, qs, qinv)
            tot = msc_terms(v, c0 + t, d1, d2, d3, n1, n2, w, weighted, P, tot)
    return tot


@njit(nogil=True, cache=True, error_model="numpy")
def _msc_vals(vals, c0, wt, d1, d2, d3, n1, n2, w, weighted, P, tot):
    nfull = wt - wt % 64
    for g0 in range(0, nfull, 64):
        m = lt_mask64(vals, g0, d3, c0 + g0)  # float32 vals against float64 d3: the exact loop
        while m != 0:
            t = g0 + trailing_zeros(m)
            m &= m - np.uint64(1)
            tot = msc_terms(np.float64(vals[t]), c0 + t, d1, d2, d3, n1, n2, w, weighted, P, tot)
    for t in range(nfull, wt):
        if np.float64(vals[t]) < d3[c0 + t]:
            tot = msc_terms(np.float64(vals[t]), c0 + t, d1, d2, d3, n1, n2, w, weighted, P, tot)
    return tot


@njit(nogil=True, cache=True)
def eval_msc_fused(j, F, S, H, d1, d2, d3, n1, n2, R, w, weighted, P):
    """:func:`~.msc.eval_msc_candidate` of candidate ``j`` with its row computed here (``H``:
    the thresholds of ``d3``, :func:`msc_thresholds`)."""
    code, T = F[0], F[1]
    tw = F[6]
    vals, acc, acc2, bad_box = S[1], S[2], S[3], S[5]
    n = T.shape[1]
    k = R.shape[0]
    fin = finish_kind(code)
    thr = H[0]
    tinf = H[2][0]
    f32 = vals.itemsize == 4
    for s in range(k):
        P[s] = R[s]
    tot = 0.0
    bad = 0
    for c0 in range(0, n, tw):
        wt = min(tw, n - c0)
        if fin != FIN_NONE:
            _raw_tile(code, T, j, c0, wt, acc)
            if c0 <= j < c0 + wt:
                acc[j - c0] = 0.0
            for o in range(wt):
                bad += not (acc[o] < tinf)
            tot = _msc_raw(fin, acc, thr[c0:c0 + wt], c0, wt, d1, d2, d3, n1, n2, w, weighted, P, tot, f32,
                           F[7], F[8])
        else:
            bad += rounded_tile(F, j, c0, wt, vals, acc, acc2)
            tot = _msc_vals(vals, c0, wt, d1, d2, d3, n1, n2, w, weighted, P, tot)
    bad_box[0] += bad
    return tot


@njit(nogil=True, cache=True)
def fastermsc_fused(F, S, H, start, stop, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3, R, w, weighted,
                    tol, eps_abs, P, counters, loss_box):
    """:func:`~.msc.fastermsc_block` over the candidates ``start..stop-1`` (rows computed
    here; the thresholds ``H`` of ``d3`` are refreshed after each swap).  Returns the
    positions consumed; stops early, like the stored kernel, after a full cycle without a
    swap, and when a row holds a non-finite entry (``S[5][0] > 0``)."""
    n = M.shape[0]
    k = M.shape[1]
    fin = finish_kind(F[0])
    f32 = S[1].itemsize == 4
    bad_box = S[5]
    for j in range(start, stop):
        r = j - start
        if is_medoid[j]:
            counters[0] += 1
            if counters[0] >= n:
                return r + 1
            continue
        acc = eval_msc_fused(j, F, S, H, d1, d2, d3, n1, n2, R, w, weighted, P)
        if bad_box[0] > 0:
            return r
        best = 0
        bv = P[0]
        for s in range(1, k):
            if P[s] < bv:
                bv = P[s]
                best = s
        delta = bv + acc
        if delta < -(tol * loss_box[0] + eps_abs):
            row = fused_full_row(j, F, S)
            msc_swap_update(row, best, j, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3)
            msc_removal(d1, d2, d3, n1, n2, w, weighted, R)
            loss_box[0] = msc_loss(d1, d2, w, weighted)
            if fin != FIN_NONE:
                update_thresholds(fin, d3, H[0], H[1], f32, False, F[7], F[8])
            counters[1] += 1
            counters[0] = 1
        else:
            counters[0] += 1
        if counters[0] >= n:
            return r + 1
    return stop - start


def msc_thresholds(F, d3, dtype):
    """Thresholds ``H`` of the float64 ``d3`` for a source of ``dtype`` (plain numpy + one kernel)."""
    n = d3.shape[0]
    H = (np.zeros(n, dtype=np.float64), np.full(n, np.nan, dtype=np.float64), np.zeros(1, dtype=np.float64))
    fin = finish_kind(F[0])
    if fin != FIN_NONE:
        f32 = np.dtype(dtype).itemsize == 4
        H[2][0] = bad_threshold(fin, f32, F[7], F[8])
        update_thresholds(fin, d3, H[0], H[1], f32, True, F[7], F[8])
    return H
