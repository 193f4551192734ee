"""numba kernels of FasterMSC / DynMSC (medoid silhouette clustering, Lenssen & Schubert).

Pure numba, numpy in / numpy out (no package, dask, zarr or h5py imports).

The objective minimised is the *medoid silhouette loss*
``L = Σ_o w_o · r(d1[o], d2[o])`` with ``r(a, b) = a / b`` (0 when ``b = 0`` or ``b = inf``),
so the average medoid silhouette is ``1 − L / Σ w``.

Caches (float64 distances, int32 slots; ``inf`` / ``-1`` when there are fewer medoids):
``d1 <= d2 <= d3`` the distances to the three nearest medoids, ``n1, n2, n3`` their slots.

Swapping slot ``i`` for candidate ``j`` (``d = D[o, j]``): the two nearest medoids of o
afterwards are ``d`` merged into ``(d2, d3)`` if ``i = n1``, into ``(d1, d3)`` if
``i = n2``, and into ``(d1, d2)`` otherwise.  Hence, with the *removal loss*
``R[i] = Σ_{n1=i} w (r(d2, d3) − r(d1, d2)) + Σ_{n2=i} w (r(d1, d3) − r(d1, d2))``, the
change of L for all k slots at once is ``ΔL(i) = P[i] + acc`` where ``P = R`` corrected,
and ``acc`` accumulated, only at the points with ``d < d3`` (for the others the three cases
reduce exactly to the removal terms).  O(n + k) per candidate.

Ties: lowest slot between slots, earliest candidate between candidates; a swap is taken
iff ``ΔL < −(tol·L + eps_abs)`` (``eps_abs`` guards against swapping on rounding noise).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True, inline="always")
def _ratio(a, b):
    if b == 0.0 or b == np.inf:
        return 0.0
    return a / b


@njit(nogil=True, cache=True, inline="always")
def _merged_ratio(d, a, b):
    """``r`` of the two smallest of ``{d, a, b}`` given ``a <= b``."""
    if d < a:
        return _ratio(d, a)
    if d < b:
        return _ratio(a, d)
    return _ratio(a, b)


@njit(nogil=True, cache=True)
def top3_point(M, o, d1, d2, d3, n1, n2, n3):
    """Three nearest medoids of point ``o`` from row o of the medoid table (lowest slot
    first on ties)."""
    k = M.shape[1]
    b1 = np.inf
    b2 = np.inf
    b3 = np.inf
    i1 = -1
    i2 = -1
    i3 = -1
    for s in range(k):
        d = np.float64(M[o, s])
        if i1 < 0 or d < b1:
            b3 = b2
            i3 = i2
            b2 = b1
            i2 = i1
            b1 = d
            i1 = s
        elif i2 < 0 or d < b2:
            b3 = b2
            i3 = i2
            b2 = d
            i2 = s
        elif i3 < 0 or d < b3:
            b3 = d
            i3 = s
    d1[o] = b1
    d2[o] = b2
    d3[o] = b3
    n1[o] = i1
    n2[o] = i2
    n3[o] = i3


@njit(nogil=True, cache=True)
def top3_all(M, d1, d2, d3, n1, n2, n3):
    """Fill the three-nearest caches of every point from ``M`` (n, k).  O(n·k)."""
    for o in range(M.shape[0]):
        top3_point(M, o, d1, d2, d3, n1, n2, n3)


@njit(nogil=True, cache=True)
def msc_loss(d1, d2, w, weighted):
    """``L = Σ_o w_o · r(d1[o], d2[o])`` in float64, index order."""
    acc = 0.0
    n = d1.shape[0]
    for o in range(n):
        v = _ratio(d1[o], d2[o])
        if weighted:
            acc += w[o] * v
        else:
            acc += v
    return acc


@njit(nogil=True, cache=True)
def msc_removal(d1, d2, d3, n1, n2, w, weighted, R):
    """Removal loss ``R[i]``: change of L when slot i is removed (R zeroed first)."""
    for s in range(R.shape[0]):
        R[s] = 0.0
    n = d1.shape[0]
    for o in range(n):
        base = _ratio(d1[o], d2[o])
        r1 = _ratio(d2[o], d3[o]) - base
        r2 = _ratio(d1[o], d3[o]) - base
        if weighted:
            r1 *= w[o]
            r2 *= w[o]
        R[n1[o]] += r1
        R[n2[o]] += r2


@njit(nogil=True, cache=True)
def eval_msc_candidate(row, d1, d2, d3, n1, n2, R, w, weighted, P):
    """Fill ``P`` (k,) and return ``acc`` so that ``ΔL(swap slot i for j) = P[i] + acc``.

    ``row[o] = D[o, j]``.  O(n + k), no allocation.
    """
    k = R.shape[0]
    for s in range(k):
        P[s] = R[s]
    acc = 0.0
    n = row.shape[0]
    for o in range(n):
        d = np.float64(row[o])
        if not d < d3[o]:
            continue
        acc = msc_terms(d, o, d1, d2, d3, n1, n2, w, weighted, P, acc)
    return acc


@njit(nogil=True, cache=True, inline="always")
def msc_terms(d, o, d1, d2, d3, n1, n2, w, weighted, P, acc):
    """The terms of :func:`eval_msc_candidate` of one point ``o`` with ``d = D[o, j] < d3[o]``
    (float64): adds to ``P[n1[o]]`` and ``P[n2[o]]``, returns the new ``acc``."""
    e1 = d1[o]
    e2 = d2[o]
    e3 = d3[o]
    base = _ratio(e1, e2)
    g0 = _merged_ratio(d, e1, e2) - base
    g1 = _merged_ratio(d, e2, e3) - base
    g2 = _merged_ratio(d, e1, e3) - base
    c1 = g1 - g0 - (_ratio(e2, e3) - base)
    c2 = g2 - g0 - (_ratio(e1, e3) - base)
    if weighted:
        wo = w[o]
        acc += wo * g0
        P[n1[o]] += wo * c1
        P[n2[o]] += wo * c2
    else:
        acc += g0
        P[n1[o]] += c1
        P[n2[o]] += c2
    return acc


@njit(nogil=True, cache=True)
def msc_swap_update(row, b, j, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3):
    """Swap slot ``b`` for point ``j`` (row of D ``row``): update M, medoids and caches.

    Points that had slot b among their three nearest are rescanned from M (O(k)); for the
    others ``d = row[o]`` is inserted into their top three (strict ``<``: on equal
    distances the existing slot stays ahead).  O(n) plus O(k) per rescan.
    """
    n = M.shape[0]
    old = medoids[b]
    is_medoid[old] = False
    is_medoid[j] = True
    medoids[b] = j
    for o in range(n):
        M[o, b] = row[o]
    for o in range(n):
        if n1[o] == b or n2[o] == b or n3[o] == b:
            top3_point(M, o, d1, d2, d3, n1, n2, n3)
            continue
        d = np.float64(row[o])
        if d < d1[o]:
            d3[o] = d2[o]
            n3[o] = n2[o]
            d2[o] = d1[o]
            n2[o] = n1[o]
            d1[o] = d
            n1[o] = b
        elif d < d2[o]:
            d3[o] = d2[o]
            n3[o] = n2[o]
            d2[o] = d
            n2[o] = b
        elif d < d3[o]:
            d3[o] = d
            n3[o] = b


@njit(nogil=True, cache=True)
def fastermsc_block(block, start, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3, R, w, weighted,
                    tol, eps_abs, P, counters, loss_box):
    """Eager FasterMSC over the candidates ``start .. start + m − 1`` (rows of ``block``).

    For each non-medoid candidate j (in order) the best slot (lowest on ties) is found with
    :func:`eval_msc_candidate`; if ``ΔL < −(tol·L + eps_abs)`` the swap is done at once
    (caches, R and ``L = loss_box[0]`` recomputed).  ``counters[0]`` counts positions since
    the last swap (a swap sets it to 1) and ``counters[1]`` the swaps; the walk stops as
    soon as ``counters[0] >= n`` (a full cycle without a swap).

    Returns the number of rows consumed (``m`` unless it stopped early).
    """
    m = block.shape[0]
    n = M.shape[0]
    k = M.shape[1]
    for r in range(m):
        j = start + r
        if is_medoid[j]:
            counters[0] += 1
            if counters[0] >= n:
                return r + 1
            continue
        row = block[r]
        acc = eval_msc_candidate(row, d1, d2, d3, n1, n2, R, w, weighted, P)
        best = 0
        bv = P[0]
        for s in range(1, k):
            if P[s] < bv:
                bv = P[s]
                best = s
        delta = bv + acc
        if delta < -(tol * loss_box[0] + eps_abs):
            msc_swap_update(row, best, j, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3)
            msc_removal(d1, d2, d3, n1, n2, w, weighted, R)
            loss_box[0] = msc_loss(d1, d2, w, weighted)
            counters[1] += 1
            counters[0] = 1
        else:
            counters[0] += 1
        if counters[0] >= n:
            return r + 1
    return m


@njit(nogil=True, cache=True)
def msc_first_improving(block, visit, cand, lo, hi, is_medoid, d1, d2, d3, n1, n2, R, w, weighted,
                        L, tol, eps_abs, P, out):
    """First position in ``[lo, hi)`` whose candidate's best swap is taken by FasterMSC
    against the current (unchanged) caches, or -1.

    Position ``i`` visits candidate ``cand[i]`` whose row is ``block[visit[i]]``.  The same
    per-candidate arithmetic as :func:`fastermsc_block` (:func:`eval_msc_candidate`, the
    lowest slot on ties, ``ΔL < −(tol·L + eps_abs)``), so an eager walk made of these calls
    and :func:`msc_apply` is bitwise that kernel's.  ``out[0]`` = slot, ``out[1]`` = ΔL.
    """
    k = R.shape[0]
    for i in range(lo, hi):
        j = cand[i]
        if is_medoid[j]:
            continue
        acc = eval_msc_candidate(block[visit[i]], d1, d2, d3, n1, n2, R, w, weighted, P)
        best = 0
        bv = P[0]
        for s in range(1, k):
            if P[s] < bv:
                bv = P[s]
                best = s
        delta = bv + acc
        if delta < -(tol * L + eps_abs):
            out[0] = best
            out[1] = delta
            return i
    return -1


@njit(nogil=True, cache=True)
def msc_apply(row, b, j, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3, R, w, weighted):
    """Swap slot ``b`` for ``j`` (row in hand) as :func:`fastermsc_block` does; returns the new L."""
    msc_swap_update(row, b, j, M, medoids, is_medoid, d1, d2, d3, n1, n2, n3)
    msc_removal(d1, d2, d3, n1, n2, w, weighted, R)
    return msc_loss(d1, d2, w, weighted)
