"""numba distance kernels: ``kernel(XA, XB, out, *args)`` fills ``out[i, j] = d(XA[i], XB[j])``.

Pure numba, numpy in / numpy out; nothing from the rest of the package, dask, zarr or h5py.

Exactness rules every kernel follows (the rest of the system relies on them):

* **bitwise symmetry** -- ``d(x, y)`` and ``d(y, x)`` are computed by the same sequence of
  floating-point operations: every per-coordinate term is symmetric in ``(x_i, y_i)``
  (``(x-y)**2``, ``|x-y|``, ``x*y``, ``|x|+|y|``, ...) and is accumulated in index order;
  per-row quantities (norms, means) are computed by one function for both sides.  No
  ``|x|^2 + |y|^2 - 2 x.y`` tricks and no fastmath (which would allow reassociation).
* **exact zero self-distance** for identical rows.
* **chunk independence** -- each ``out[i, j]`` depends only on rows ``XA[i]`` and ``XB[j]``.
* **never NaN** for finite input (0/0 conventions are documented per kernel).

Every function is ``@njit(nogil=True, cache=True)``: nothing is compiled at import; a kernel
is compiled (or loaded from numba's on-disk cache) on its first call.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

# ---------------------------------------------------------------------------------------
# per-pair functions (x, y: 1-D float64 rows of equal length d >= 1)
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def sqeuclidean_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        t = x[i] - y[i]
        s += t * t
    return s


@njit(nogil=True, cache=True)
def euclidean_pair(x, y):
    return math.sqrt(sqeuclidean_pair(x, y))


@njit(nogil=True, cache=True)
def manhattan_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += abs(x[i] - y[i])
    return s


@njit(nogil=True, cache=True)
def chebyshev_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        t = abs(x[i] - y[i])
        if t > s:
            s = t
    return s


@njit(nogil=True, cache=True)
def minkowski_pair(x, y, p):
    # the kernel dispatches p == 1, 2 to the exact special cases; general p here
    s = 0.0
    for i in range(x.shape[0]):
        t = abs(x[i] - y[i])
        if t != 0.0:
            s += t**p
    return s ** (1.0 / p)


@njit(nogil=True, cache=True)
def canberra_pair(x, y):
    # terms with |x_i| + |y_i| == 0 contribute 0 (scipy's convention)
    s = 0.0
    for i in range(x.shape[0]):
        den = abs(x[i]) + abs(y[i])
        if den > 0.0:
            s += abs(x[i] - y[i]) / den
    return s


@njit(nogil=True, cache=True)
def braycurtis_pair(x, y):
    # sum|x-y| / sum|x+y|; 0 when both sums are 0 (two all-zero rows).  The denominator can
    # only be 0 with a positive numerator for data with negative entries (Bray-Curtis is
    # meant for non-negative data); the result is then +inf, never NaN.
    num = 0.0
    den = 0.0
    for i in range(x.shape[0]):
        num += abs(x[i] - y[i])
        den += abs(x[i] + y[i])
    if not (math.isfinite(num) and math.isfinite(den)):
        # overflow with huge entries: the same sums of halved terms (ratio unchanged)
        num = 0.0
        den = 0.0
        for i in range(x.shape[0]):
            num += abs(0.5 * x[i] - 0.5 * y[i])
            den += abs(0.5 * x[i] + 0.5 * y[i])
    if num == 0.0:
        return 0.0
    if den == 0.0:
        return np.inf
    return num / den


@njit(nogil=True, cache=True)
def hamming_pair(x, y):
    c = 0
    for i in range(x.shape[0]):
        if x[i] != y[i]:
            c += 1
    return c / x.shape[0]


@njit(nogil=True, cache=True)
def jaccard_pair(x, y):
    # boolean: nonzero (including NaN) is True.  0 when neither row has a True entry.
    num = 0
    den = 0
    for i in range(x.shape[0]):
        a = x[i] != 0.0
        b = y[i] != 0.0
        if a or b:
            den += 1
            if a != b:
                num += 1
    if den == 0:
        return 0.0
    return num / den


@njit(nogil=True, cache=True)
def gower_pair(x, y, categorical, ranges):
    # mean over all d columns of: categorical -> (x_i != y_i); numeric -> |x_i - y_i| / range_i,
    # where columns with range 0 contribute 0.
    s = 0.0
    d = x.shape[0]
    for i in range(d):
        if categorical[i]:
            if x[i] != y[i]:
                s += 1.0
        else:
            r = ranges[i]
            if r > 0.0:
                s += abs(x[i] - y[i]) / r
    return s / d


@njit(nogil=True, cache=True)
def _cos_from_parts(dot, nx, ny):
    # shared tail of cosine / correlation: symmetric in (nx, ny).
    # Convention: both vectors zero -> 0; exactly one zero -> 1 (scipy gives NaN).
    if dot == nx and nx == ny:
        return 0.0  # identical rows (or rows indistinguishable in this arithmetic)
    if nx == 0.0 or ny == 0.0:
        return 1.0
    r = 1.0 - dot / (math.sqrt(nx) * math.sqrt(ny))
    if r < 0.0:
        return 0.0
    if r > 2.0:
        return 2.0
    return r


@njit(nogil=True, cache=True)
def _row_sqnorms(X):
    a = X.shape[0]
    out = np.empty(a, dtype=np.float64)
    for i in range(a):
        s = 0.0
        for t in range(X.shape[1]):
            v = X[i, t]
            s += v * v
        out[i] = s
    return out


@njit(nogil=True, cache=True)
def _row_means(X):
    a = X.shape[0]
    d = X.shape[1]
    out = np.empty(a, dtype=np.float64)
    for i in range(a):
        s = 0.0
        for t in range(d):
            s += X[i, t]
        out[i] = s / d
    return out


# ---------------------------------------------------------------------------------------
# block kernels: kernel(XA (a, d), XB (b, d), out (a, b), *args) -> None
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def euclidean_block(XA, XB, out):
    # squared sums first, then one vectorisable sqrt sweep per row (sqrt is correctly
    # rounded, so the values equal euclidean_pair bit for bit)
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = sqeuclidean_pair(x, XB[j])
        for j in range(XB.shape[0]):
            out[i, j] = math.sqrt(out[i, j])


@njit(nogil=True, cache=True)
def sqeuclidean_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = sqeuclidean_pair(x, XB[j])


@njit(nogil=True, cache=True)
def manhattan_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = manhattan_pair(x, XB[j])


@njit(nogil=True, cache=True)
def chebyshev_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = chebyshev_pair(x, XB[j])


@njit(nogil=True, cache=True)
def minkowski_block(XA, XB, out, p):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            if p == 1.0:
                out[i, j] = manhattan_pair(x, XB[j])
            elif p == 2.0:
                out[i, j] = euclidean_pair(x, XB[j])
            else:
                out[i, j] = minkowski_pair(x, XB[j], p)


@njit(nogil=True, cache=True)
def _pow2_scaled(X):
    # each row multiplied by the power of two 2**-e with max|x_i| in [0.5, 1): exact (up to
    # components that become subnormal, negligible against the largest), removes overflow /
    # underflow of the squared sums and leaves cosine / correlation unchanged.
    C = np.empty_like(X)
    for i in range(X.shape[0]):
        amax = 0.0
        for t in range(X.shape[1]):
            v = abs(X[i, t])
            if v > amax:
                amax = v
        if amax > 0.0 and math.isfinite(amax):
            e = math.frexp(amax)[1]
            for t in range(X.shape[1]):
                C[i, t] = math.ldexp(X[i, t], -e)
        else:
            for t in range(X.shape[1]):
                C[i, t] = X[i, t]
    return C


@njit(nogil=True, cache=True)
def _cosine_block_scaled(CA, CB, out):
    na = _row_sqnorms(CA)
    nb = _row_sqnorms(CB)
    d = CA.shape[1]
    for i in range(CA.shape[0]):
        for j in range(CB.shape[0]):
            dot = 0.0
            for t in range(d):
                dot += CA[i, t] * CB[j, t]
            out[i, j] = _cos_from_parts(dot, na[i], nb[j])


@njit(nogil=True, cache=True)
def cosine_block(XA, XB, out):
    # rows are rescaled by powers of two first (per row, independent of the block), so the
    # norms and dot products neither overflow nor underflow.
    _cosine_block_scaled(_pow2_scaled(XA), _pow2_scaled(XB), out)


@njit(nogil=True, cache=True)
def _centered(X):
    # each row (power-of-two scaled, see _pow2_scaled) minus its mean (sum in index order / d)
    S = _pow2_scaled(X)
    means = _row_means(S)
    for i in range(S.shape[0]):
        m = means[i]
        for t in range(S.shape[1]):
            S[i, t] = S[i, t] - m
    return S


@njit(nogil=True, cache=True)
def correlation_block(XA, XB, out):
    # cosine distance of the mean-centred rows; the centring of a row does not depend on
    # the block it sits in, so symmetry and chunk independence carry over from cosine.
    _cosine_block_scaled(_pow2_scaled(_centered(XA)), _pow2_scaled(_centered(XB)), out)


@njit(nogil=True, cache=True)
def canberra_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = canberra_pair(x, XB[j])


@njit(nogil=True, cache=True)
def braycurtis_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = braycurtis_pair(x, XB[j])


@njit(nogil=True, cache=True)
def hamming_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = hamming_pair(x, XB[j])


@njit(nogil=True, cache=True)
def jaccard_block(XA, XB, out):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = jaccard_pair(x, XB[j])


@njit(nogil=True, cache=True)
def gower_block(XA, XB, out, categorical, ranges):
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = gower_pair(x, XB[j], categorical, ranges)


@njit(nogil=True, cache=True)
def custom_block(func, XA, XB, out):
    """Generic block kernel for a user ``@njit`` function ``func(x, y) -> float``."""
    for i in range(XA.shape[0]):
        x = XA[i]
        for j in range(XB.shape[0]):
            out[i, j] = func(x, XB[j])


# ---------------------------------------------------------------------------------------
# fitting helpers
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def update_minmax(X, lo, hi):
    """Fold the column minima / maxima of block ``X`` into ``lo`` / ``hi`` (in place).

    Returns False if ``X`` holds a non-finite value (the fold is then incomplete).
    """
    for i in range(X.shape[0]):
        for t in range(X.shape[1]):
            v = X[i, t]
            if not math.isfinite(v):
                return False
            if v < lo[t]:
                lo[t] = v
            if v > hi[t]:
                hi[t] = v
    return True
