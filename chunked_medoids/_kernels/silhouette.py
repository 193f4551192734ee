"""numba kernels of the silhouette (Rousseeuw 1987) and the medoid silhouette.

Pure numba, numpy in / numpy out (no package, dask, zarr or h5py imports).

* :func:`silhouette_block` -- classic silhouette of the rows of one row block of D, from
  per-cluster distance sums of each row (O(n + c) per row, scratch O(c)).
* :func:`cluster_sums` -- the (rows, c) per-cluster distance sums themselves.
* :func:`medoid_silhouette_values` -- ``s(o) = 1 − d1/d2`` from the (n, k) medoid table.

Sums are accumulated in float64 in index order, so a value never depends on how rows are
grouped into blocks.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(nogil=True, cache=True)
def cluster_sums(block, labels, n_clusters, out):
    """``out[i, c] = Σ_{o: labels[o] = c} block[i, o]`` in float64.

    Parameters
    ----------
    block : (m, n) array -- rows of D.
    labels : (n,) int32 -- cluster of every point, in [0, n_clusters).
    n_clusters : int
    out : (m, n_clusters) float64 (output, overwritten).
    """
    m = block.shape[0]
    n = block.shape[1]
    for i in range(m):
        for c in range(n_clusters):
            out[i, c] = 0.0
        for o in range(n):
            out[i, labels[o]] += np.float64(block[i, o])


@njit(nogil=True, cache=True)
def silhouette_block(block, start, labels, counts, out):
    """Silhouette of the points ``start .. start + m − 1`` whose rows of D are ``block``.

    ``a(o)`` = mean distance to the other members of o's cluster (the zero self-distance is
    in the sum, so the sum is divided by ``count − 1``), ``b(o)`` = smallest mean distance
    to another non-empty cluster, ``s(o) = (b − a) / max(a, b)``; ``s = 0`` for a point in
    a singleton cluster and when ``a = b = 0`` (scikit-learn's conventions).

    Parameters
    ----------
    block : (m, n) array
    start : int -- global index of the first row.
    labels : (n,) int32 in [0, c).
    counts : (c,) int64 -- cluster sizes.
    out : (m,) float64 (output).
    """
    m = block.shape[0]
    n = block.shape[1]
    c = counts.shape[0]
    sums = np.empty(c, dtype=np.float64)
    for i in range(m):
        for t in range(c):
            sums[t] = 0.0
        for o in range(n):
            sums[labels[o]] += np.float64(block[i, o])
        out[i] = silhouette_value(sums, labels[start + i], counts)


@njit(nogil=True, cache=True)
def silhouette_value(sums, own, counts):
    """``s`` of a point of cluster ``own`` from its per-cluster distance sums ``sums`` (c,)
    (conventions of :func:`silhouette_block`)."""
    c = counts.shape[0]
    if counts[own] <= 1:
        return 0.0
    a = sums[own] / (counts[own] - 1)
    b = np.inf
    for t in range(c):
        if t == own or counts[t] == 0:
            continue
        v = sums[t] / counts[t]
        if v < b:
            b = v
    den = max(a, b)
    if den > 0.0 and den < np.inf:
        return (b - a) / den
    return 0.0


@njit(nogil=True, cache=True)
def medoid_silhouette_values(M, out):
    """Medoid silhouette of every point from the medoid table ``M`` (n, k), k >= 2.

    ``d1 <= d2`` are the two smallest entries of row o; ``s(o) = 1 − d1/d2``, and
    ``s(o) = 1`` when ``d2 = 0`` (then also ``d1 = 0``: o coincides with two medoids).
    ``out`` (n,) float64 is filled.  Returns ``L = Σ_o d1/d2`` (0 where ``d2 = 0``),
    accumulated in float64 in index order; the average medoid silhouette is ``1 − L/n``.
    """
    n = M.shape[0]
    k = M.shape[1]
    acc = 0.0
    for o in range(n):
        d1 = np.inf
        d2 = np.inf
        for s in range(k):
            d = np.float64(M[o, s])
            if d < d1:
                d2 = d1
                d1 = d
            elif d < d2:
                d2 = d
        if d2 == 0.0 or d2 == np.inf:
            out[o] = 1.0
        else:
            r = d1 / d2
            acc += r
            out[o] = 1.0 - r
    return acc
