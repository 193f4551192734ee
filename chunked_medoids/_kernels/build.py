"""numba kernels of BUILD / LAB initialisation and of the alternating (Voronoi) method.

Pure numba, numpy in / numpy out.  Each kernel reduces full rows of D (a row of a
candidate is also its column, D being symmetric) in index order, accumulating in float64,
so results do not depend on block boundaries.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def row_sums(block, w, weighted, out):
    """``out[i] = Σ_o w_o·block[i, o]`` (float64)."""
    m = block.shape[0]
    n = block.shape[1]
    for i in range(m):
        acc = 0.0
        if weighted:
            for o in range(n):
                acc += w[o] * np.float64(block[i, o])
        else:
            for o in range(n):
                acc += np.float64(block[i, o])
        out[i] = acc


@njit(nogil=True, cache=True)
def build_gains(block, dn, w, weighted, out):
    """BUILD gain of each row's candidate: ``out[i] = Σ_o w_o·max(dn[o] − block[i, o], 0)``."""
    m = block.shape[0]
    n = block.shape[1]
    for i in range(m):
        acc = 0.0
        # branch-free: the terms with d >= dn add an exact 0.0
        if weighted:
            for o in range(n):
                acc += w[o] * max(np.float64(dn[o]) - np.float64(block[i, o]), 0.0)
        else:
            for o in range(n):
                acc += max(np.float64(dn[o]) - np.float64(block[i, o]), 0.0)
        out[i] = acc


@njit(nogil=True, cache=True)
def update_nearest(row, dn):
    """``dn = minimum(dn, row)`` in place (compared in the stored dtype)."""
    for o in range(row.shape[0]):
        if row[o] < dn[o]:
            dn[o] = row[o]


@njit(nogil=True, cache=True)
def within_cluster_sums(block, start, labels, w, weighted, out):
    """Alternating step: for row i (point j = start + i, cluster c = labels[j]),
    ``out[i] = Σ_{o: labels[o] = c} w_o·D[j, o]`` (float64)."""
    m = block.shape[0]
    n = block.shape[1]
    for i in range(m):
        c = labels[start + i]
        acc = 0.0
        # branch-free: members of other clusters add an exact 0.0 (finite distances)
        if weighted:
            for o in range(n):
                acc += (labels[o] == c) * (w[o] * np.float64(block[i, o]))
        else:
            for o in range(n):
                acc += (labels[o] == c) * np.float64(block[i, o])
        out[i] = acc


@njit(nogil=True, cache=True)
def argmin_per_cluster(sums, start, labels, k, best_val, best_idx):
    """Per cluster, the smallest ``sums[i]`` (point ``start + i``), earliest index on ties.

    ``best_val`` (k,) float64 and ``best_idx`` (k,) int64 are updated in place (initialise
    with inf / -1); call blocks in increasing order so that earlier points win ties.
    """
    for i in range(sums.shape[0]):
        c = labels[start + i]
        if sums[i] < best_val[c]:
            best_val[c] = sums[i]
            best_idx[c] = start + i
