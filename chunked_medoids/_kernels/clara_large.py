"""numba kernels of LargeCLARA's exact full-data polish (:mod:`..algorithms.clara_large`).

Pure numba, numpy in / numpy out.  Sums are Shewchuk expansions (see
:func:`.clara.msum_add`): a cell's exact sum does not depend on how points are grouped into
blocks or in which order blocks are processed, so the polish picks the same medoids for any
block size or scheduler.
"""

from __future__ import annotations

import numpy as np
from numba import njit

from .clara import msum_add


@njit(nogil=True, cache=True)
def add_cell_sums(dist, rows, w, weighted, partials, counts):
    """Add column sums of ``dist`` (r, L) into the expansions of L cells.

    ``partials`` (L, P) float64 and ``counts`` (L,) int64 hold one expansion per column;
    the term of row ``i`` and column ``l`` is ``w[rows[i]]·dist[i, l]`` (``dist[i, l]``
    when unweighted).  A non-finite term marks the cell (``counts[l] = -1``) and is
    otherwise ignored.
    """
    r = dist.shape[0]
    L = dist.shape[1]
    for i in range(r):
        for col in range(L):
            c = counts[col]
            if c < 0:
                continue
            x = np.float64(dist[i, col])
            if weighted:
                x = w[rows[i]] * x
            if not np.isfinite(x):
                counts[col] = -1
            elif x != 0.0:
                counts[col] = msum_add(partials[col], c, x)


@njit(nogil=True, cache=True)
def group_by_label(labels, k, order, starts):
    """Counting sort of a block's rows by label (stable): ``order`` (b,) int64 lists the rows
    of label 0, then label 1, ...; ``starts`` (k + 1,) int64 are the group offsets."""
    b = labels.shape[0]
    for s in range(k + 1):
        starts[s] = 0
    for i in range(b):
        starts[labels[i] + 1] += 1
    for s in range(k):
        starts[s + 1] += starts[s]
    fill = starts[:k].copy()
    for i in range(b):
        lab = labels[i]
        order[fill[lab]] = i
        fill[lab] += 1
