"""numba kernels of the sampling methods (CLARA family, CLARANS).

Pure numba, numpy in / numpy out (no package, dask, zarr or h5py imports beyond sibling
kernels).

Full-data losses of CLARA are summed *exactly*: every block accumulates its terms
``w_o·dn[o]`` (each rounded once, as a float64 product) into a Shewchuk expansion
("partials", a short array of non-overlapping float64 values whose exact sum is the exact
sum of the terms); the driver concatenates the partials of all blocks and rounds once with
``math.fsum``.  The loss is therefore the correctly rounded float64 value of
Σ_o w_o·dn[o], independent of block boundaries, block order and scheduling.

Ties: lowest slot is nearest on equal distances (strict ``<`` scanning slots upwards); a
medoid is always in its own slot.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .swap import accept_swap, apply_swap, best_slot, eval_candidate, pam_delta

#: capacity of one Shewchuk expansion (float64 needs at most ~40 non-overlapping parts).
PARTIALS = 64


@njit(nogil=True, cache=True)
def msum_add(p, cnt, x):
    """Add ``x`` to the expansion ``p[:cnt]`` (Shewchuk's grow-expansion); new count."""
    i = 0
    for j in range(cnt):
        y = p[j]
        if abs(x) < abs(y):
            t = x
            x = y
            y = t
        hi = x + y
        lo = y - (hi - x)
        if lo != 0.0:
            p[i] = lo
            i += 1
        x = hi
    p[i] = x
    return i + 1


@njit(nogil=True, cache=True)
def symmetrize_upper(S):
    """Mirror the upper triangle of the square ``S`` into the lower one, zero the diagonal."""
    n = S.shape[0]
    for i in range(n):
        S[i, i] = 0.0
        for j in range(i + 1, n):
            S[j, i] = S[i, j]


@njit(nogil=True, cache=True)
def score_dist_block(dist, k, start, medoids, w, weighted, partials, counts, labels, want_labels):
    """Nearest medoid and exact loss partials of a block of points for W medoid sets.

    Parameters
    ----------
    dist : (b, W*k) float64
        ``dist[i, q*k + s]`` = distance of point ``start + i`` to medoid ``s`` of set ``q``.
    medoids : (W, k) int64
        Global indices (a medoid in this block is forced into its own slot).
    w, weighted : kernel weights (global, length n, or empty).
    partials : (W, PARTIALS) float64, counts : (W,) int64 (output)
        Shewchuk expansion of Σ w·dn over the block for each set (``counts[q] = -1`` when a
        term is not finite).
    labels : (b,) int32
        Filled with the slots of set 0 when ``want_labels``.
    """
    b = dist.shape[0]
    W = medoids.shape[0]
    dn = np.empty(b, dtype=np.float64)
    nn = np.empty(b, dtype=np.int32)
    for q in range(W):
        off = q * k
        for i in range(b):
            best = dist[i, off]
            ib = 0
            for s in range(1, k):
                d = dist[i, off + s]
                if d < best:
                    best = d
                    ib = s
            dn[i] = best
            nn[i] = ib
        for s in range(k):
            m = medoids[q, s] - start
            if 0 <= m < b:
                dn[m] = dist[m, off + s]
                nn[m] = s
        cnt = 0
        bad = False
        for i in range(b):
            x = dn[i]
            if weighted:
                x = w[start + i] * x
            if not np.isfinite(x):
                bad = True
                break
            if x != 0.0:
                cnt = msum_add(partials[q], cnt, x)
        counts[q] = -1 if bad else cnt
        if want_labels and q == 0:
            for i in range(b):
                labels[i] = nn[i]


@njit(nogil=True, cache=True)
def score_rows(rows, sel, medoids, w, weighted, partials, labels, want_labels):
    """Nearest medoid of every point from the medoid rows of D, with exact loss partials.

    ``rows`` is (K, n) in the source dtype; medoid ``s`` has row ``rows[sel[s]]`` (its
    distances to all points).  Distances are compared in the stored dtype.  Returns the
    partial count (-1 when a term is not finite); fills ``labels`` (n,) when asked.
    """
    k = sel.shape[0]
    n = rows.shape[1]
    dn = rows[sel[0]].copy()
    nn = np.zeros(n, dtype=np.int32)
    for s in range(1, k):
        r = rows[sel[s]]
        for o in range(n):
            if r[o] < dn[o]:
                dn[o] = r[o]
                nn[o] = s
    for s in range(k):
        m = medoids[s]
        dn[m] = rows[sel[s], m]
        nn[m] = s
    cnt = 0
    for o in range(n):
        x = np.float64(dn[o])
        if weighted:
            x = w[o] * x
        if not np.isfinite(x):
            return -1
        if x != 0.0:
            cnt = msum_add(partials, cnt, x)
    if want_labels:
        for o in range(n):
            labels[o] = nn[o]
    return cnt


@njit(nogil=True, cache=True)
def clarans_run(rows, row_of, slots, cands, fast, maxneighbor, tol, M, medoids, is_medoid, dn, ds,
                nn, sn, R, w, weighted, P, st, td_box):
    """Examine the drawn neighbours ``(slots[i], cands[i])`` in order (CLARANS local search).

    A neighbour whose candidate is currently a medoid is skipped (not counted: rejection
    sampling of a uniform non-medoid).  Classic (``fast == False``): ΔTD of swapping slot
    ``slots[i]`` for the candidate (PAM's O(n) evaluation).  FastCLARANS: the candidate is
    scored against all k slots with the FastPAM1 kernel and the best slot (lowest on ties)
    is taken; ``slots`` is ignored.  A neighbour with ΔTD < 0 is swapped in (caches, R and
    TD updated with its row ``rows[row_of[i]]``) and the failure counter resets; otherwise
    the counter grows and the search ends when it reaches ``maxneighbor``.

    ``st`` (int64): ``[counter, n_eval, n_swap, done]``.  ``td_box[0]`` holds TD.  Returns
    the number of neighbours consumed.
    """
    counter = st[0]
    n_eval = st[1]
    n_swap = st[2]
    td = td_box[0]
    m = cands.shape[0]
    consumed = m
    buf = np.empty(dn.shape[0], dtype=np.int32)  # scratch of the FastPAM1 kernel
    for i in range(m):
        j = cands[i]
        if is_medoid[j]:
            continue
        row = rows[row_of[i]]
        if fast:
            acc = eval_candidate(row, dn, ds, nn, R, w, weighted, P, buf)
            s, dlt = best_slot(P, acc)
        else:
            s = slots[i]
            dlt = pam_delta(row, s, dn, ds, nn, w, weighted)
        n_eval += 1
        if accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, dlt):
            td = apply_swap(row, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
            n_swap += 1
            counter = 0
        else:
            counter += 1
            if counter >= maxneighbor:
                st[3] = 1
                consumed = i + 1
                break
    st[0] = counter
    st[1] = n_eval
    st[2] = n_swap
    td_box[0] = td
    return consumed
