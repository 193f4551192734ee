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
from numba import literally, njit

# ---------------------------------------------------------------------------------------
# per-coordinate terms: the ONE definition of each metric's arithmetic.  The per-pair
# functions below and the fused row tiles (:func:`dist_tile`) both accumulate these terms
# in coordinate order starting from 0.0, so they give the same float64 bits.
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True, error_model="numpy")
def sqdiff_term(a, b):
    t = a - b
    return t * t


@njit(nogil=True, cache=True, error_model="numpy")
def absdiff_term(a, b):
    return abs(a - b)


@njit(nogil=True, cache=True, error_model="numpy")
def dot_term(a, b):
    return a * b


@njit(nogil=True, cache=True, error_model="numpy")
def cheb_step(s, a, b):
    # running maximum of |a - b| (first argument the running value)
    t = abs(a - b)
    return t if t > s else s


@njit(nogil=True, cache=True, error_model="numpy")
def minkowski_term(a, b, p):
    t = abs(a - b)
    return t**p if t != 0.0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def canberra_term(a, b):
    # terms with |a| + |b| == 0 contribute 0 (scipy's convention)
    den = abs(a) + abs(b)
    return abs(a - b) / den if den > 0.0 else 0.0


@njit(nogil=True, cache=True, error_model="numpy")
def gower_term(a, b, categorical, r):
    # categorical -> (a != b); numeric -> |a - b| / range, columns with range 0 count 0
    if categorical:
        return 1.0 if a != b else 0.0
    return abs(a - b) / r if r > 0.0 else 0.0


# ---------------------------------------------------------------------------------------
# per-pair functions (x, y: 1-D float64 rows of equal length d >= 1)
# ---------------------------------------------------------------------------------------


@njit(nogil=True, cache=True)
def sqeuclidean_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += sqdiff_term(x[i], y[i])
    return s


@njit(nogil=True, cache=True)
def euclidean_pair(x, y):
    return math.sqrt(sqeuclidean_pair(x, y))


@njit(nogil=True, cache=True)
def manhattan_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += absdiff_term(x[i], y[i])
    return s


@njit(nogil=True, cache=True)
def chebyshev_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s = cheb_step(s, x[i], y[i])
    return s


@njit(nogil=True, cache=True)
def minkowski_pair(x, y, p):
    # the kernel dispatches p == 1, 2 to the exact special cases; general p here
    s = 0.0
    for i in range(x.shape[0]):
        s += minkowski_term(x[i], y[i], p)
    return s ** (1.0 / p)


@njit(nogil=True, cache=True)
def canberra_pair(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += canberra_term(x[i], y[i])
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
    # mean over all d columns of gower_term
    s = 0.0
    d = x.shape[0]
    for i in range(d):
        s += gower_term(x[i], y[i], categorical[i], ranges[i])
    return s / d


@njit(nogil=True, cache=True, error_model="numpy")
def cos_from_roots(dot, nx, ny, rx, ry):
    # shared tail of cosine / correlation (rx = sqrt(nx), ry = sqrt(ny)): symmetric in
    # (nx, ny).  Convention: both vectors zero -> 0; exactly one zero -> 1 (scipy: NaN).
    # Branch-free (selects), so it vectorises; error_model="numpy": the division is
    # evaluated, then discarded, when a norm is 0.
    r = 1.0 - dot / (rx * ry)
    r = 0.0 if r < 0.0 else r
    r = 2.0 if r > 2.0 else r
    r = 1.0 if (nx == 0.0 or ny == 0.0) else r
    # identical rows (or rows indistinguishable in this arithmetic)
    r = 0.0 if (dot == nx and nx == ny) else r
    return r


@njit(nogil=True, cache=True, error_model="numpy")
def _cos_from_parts(dot, nx, ny):
    return cos_from_roots(dot, nx, ny, math.sqrt(nx), math.sqrt(ny))


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
                dot += dot_term(CA[i, t], CB[j, t])
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


# ---------------------------------------------------------------------------------------
# fused row tiles: distances of one row against a run of columns, computed coordinate-outer
# (SIMD across the columns) into a small float64 tile that the caller consumes at once.
# Features are held *prepared and transposed*: ``T`` is (d, m) C-contiguous float64 with
# column ``o`` the row of point ``o`` after the metric's per-row preparation (the power-of-
# two scaling / centring of cosine and correlation, else the row itself), ``aux`` (m,) its
# squared norm (cosine / correlation; zeros otherwise).  Every built-in metric is bitwise
# symmetric (all terms are symmetric in (x_i, y_i), summed in coordinate order), so
# ``dist_tile`` gives ``pair(X[a], X[b])`` exactly, for either orientation.
# ---------------------------------------------------------------------------------------

M_EUCLIDEAN = 1
M_SQEUCLIDEAN = 2
M_MANHATTAN = 3
M_CHEBYSHEV = 4
M_MINKOWSKI = 5
M_COSINE = 6
M_CORRELATION = 7
M_CANBERRA = 8
M_BRAYCURTIS = 9
M_HAMMING = 10
M_JACCARD = 11
M_GOWER = 12

#: block kernel name -> fused metric code (minkowski with p = 1 / 2 maps to manhattan /
#: euclidean, exactly as :func:`minkowski_block` dispatches).
FUSED_CODES = {"euclidean_block": M_EUCLIDEAN, "sqeuclidean_block": M_SQEUCLIDEAN,
               "manhattan_block": M_MANHATTAN, "chebyshev_block": M_CHEBYSHEV,
               "minkowski_block": M_MINKOWSKI, "cosine_block": M_COSINE,
               "correlation_block": M_CORRELATION, "canberra_block": M_CANBERRA,
               "braycurtis_block": M_BRAYCURTIS, "hamming_block": M_HAMMING,
               "jaccard_block": M_JACCARD, "gower_block": M_GOWER}


@njit(nogil=True, cache=True)
def prepare_columns(code, X):
    """``(T, aux)`` of the float64 rows ``X`` (m, d): prepared rows transposed to (d, m);
    ``aux`` (2, m): squared norms and their square roots (cosine / correlation; else 0)."""
    if code == M_COSINE:
        C = _pow2_scaled(X)
    elif code == M_CORRELATION:
        C = _pow2_scaled(_centered(X))
    else:
        C = X
    m = C.shape[0]
    d = C.shape[1]
    aux = np.zeros((2, m), dtype=np.float64)
    if code == M_COSINE or code == M_CORRELATION:
        sq = _row_sqnorms(C)
        for i in range(m):
            aux[0, i] = sq[i]
            aux[1, i] = math.sqrt(sq[i])
    T = np.empty((d, m), dtype=np.float64)
    for i in range(m):
        for t in range(d):
            T[t, i] = C[i, t]
    return T, aux


def tile_width(d):
    """Columns per tile, a multiple of 64: the (d, width) slice of T stays within ~128 KiB
    (L2) when d <= 256."""
    w = (16384 // max(1, d)) // 64 * 64
    return max(64, min(1024, w))


#: the coordinate terms :func:`_acc_terms` sums (compile-time constants).
TERM_SQDIFF, TERM_ABSDIFF, TERM_DOT = 0, 1, 2


@njit(nogil=True, cache=True, error_model="numpy")
def _coord_term(kind, a, b):
    if kind == TERM_SQDIFF:
        return sqdiff_term(a, b)
    if kind == TERM_ABSDIFF:
        return absdiff_term(a, b)
    return dot_term(a, b)


@njit(nogil=True, cache=True)
def _acc_terms(kind, AT, ia, BT, b0, w, acc):
    # acc[o] = sum_t term(AT[t, ia], BT[t, b0 + o]) from 0.0 in coordinate order, four
    # coordinates per sweep over the tile (the additions stay in order: bitwise the pair sum).
    # ``kind`` (TERM_*) is compiled as a constant (literally): one specialisation per term,
    # with the branch of _coord_term folded away -- the machine code of a hand-written copy.
    literally(kind)
    d = AT.shape[0]
    for o in range(w):
        acc[o] = 0.0
    t = 0
    while t + 4 <= d:
        x0 = AT[t, ia]
        x1 = AT[t + 1, ia]
        x2 = AT[t + 2, ia]
        x3 = AT[t + 3, ia]
        r0 = BT[t, b0:b0 + w]
        r1 = BT[t + 1, b0:b0 + w]
        r2 = BT[t + 2, b0:b0 + w]
        r3 = BT[t + 3, b0:b0 + w]
        for o in range(w):
            v = acc[o]
            v += _coord_term(kind, x0, r0[o])
            v += _coord_term(kind, x1, r1[o])
            v += _coord_term(kind, x2, r2[o])
            v += _coord_term(kind, x3, r3[o])
            acc[o] = v
        t += 4
    rem = d - t
    if rem == 3:
        x0 = AT[t, ia]
        x1 = AT[t + 1, ia]
        x2 = AT[t + 2, ia]
        r0 = BT[t, b0:b0 + w]
        r1 = BT[t + 1, b0:b0 + w]
        r2 = BT[t + 2, b0:b0 + w]
        for o in range(w):
            v = acc[o]
            v += _coord_term(kind, x0, r0[o])
            v += _coord_term(kind, x1, r1[o])
            v += _coord_term(kind, x2, r2[o])
            acc[o] = v
    elif rem == 2:
        x0 = AT[t, ia]
        x1 = AT[t + 1, ia]
        r0 = BT[t, b0:b0 + w]
        r1 = BT[t + 1, b0:b0 + w]
        for o in range(w):
            v = acc[o]
            v += _coord_term(kind, x0, r0[o])
            v += _coord_term(kind, x1, r1[o])
            acc[o] = v
    elif rem == 1:
        x0 = AT[t, ia]
        r0 = BT[t, b0:b0 + w]
        for o in range(w):
            acc[o] += _coord_term(kind, x0, r0[o])


@njit(nogil=True, cache=True, inline="always")
def _x4(AT, t, js):
    return AT[t, js[0]], AT[t, js[1]], AT[t, js[2]], AT[t, js[3]]


@njit(nogil=True, cache=True)
def _acc_terms4(kind, AT, js, BT, b0, w, A):
    """:func:`_acc_terms` of the four points ``js`` of A at once: ``A[g, o]`` is bitwise
    ``_acc_terms(kind, AT, js[g], BT, b0, w, ...)[o]`` (for every point the same terms added
    in coordinate order from 0.0); each loaded coordinate of B serves the four sums.
    Three coordinates per sweep over the tile (then two or one)."""
    literally(kind)
    d = AT.shape[0]
    A0, A1, A2, A3 = A[0], A[1], A[2], A[3]
    for o in range(w):
        A0[o] = 0.0
        A1[o] = 0.0
        A2[o] = 0.0
        A3[o] = 0.0
    t = 0
    while t < d:
        nt = min(3, d - t)
        x00, x01, x02, x03 = _x4(AT, t, js)
        r0 = BT[t, b0:b0 + w]
        if nt == 3:
            x10, x11, x12, x13 = _x4(AT, t + 1, js)
            x20, x21, x22, x23 = _x4(AT, t + 2, js)
            r1 = BT[t + 1, b0:b0 + w]
            r2 = BT[t + 2, b0:b0 + w]
            for o in range(w):
                b0v, b1v, b2v = r0[o], r1[o], r2[o]
                A0[o] = ((A0[o] + _coord_term(kind, x00, b0v)) + _coord_term(kind, x10, b1v)) + _coord_term(kind, x20, b2v)
                A1[o] = ((A1[o] + _coord_term(kind, x01, b0v)) + _coord_term(kind, x11, b1v)) + _coord_term(kind, x21, b2v)
                A2[o] = ((A2[o] + _coord_term(kind, x02, b0v)) + _coord_term(kind, x12, b1v)) + _coord_term(kind, x22, b2v)
                A3[o] = ((A3[o] + _coord_term(kind, x03, b0v)) + _coord_term(kind, x13, b1v)) + _coord_term(kind, x23, b2v)
        elif nt == 2:
            x10, x11, x12, x13 = _x4(AT, t + 1, js)
            r1 = BT[t + 1, b0:b0 + w]
            for o in range(w):
                b0v, b1v = r0[o], r1[o]
                A0[o] = (A0[o] + _coord_term(kind, x00, b0v)) + _coord_term(kind, x10, b1v)
                A1[o] = (A1[o] + _coord_term(kind, x01, b0v)) + _coord_term(kind, x11, b1v)
                A2[o] = (A2[o] + _coord_term(kind, x02, b0v)) + _coord_term(kind, x12, b1v)
                A3[o] = (A3[o] + _coord_term(kind, x03, b0v)) + _coord_term(kind, x13, b1v)
        else:
            for o in range(w):
                b0v = r0[o]
                A0[o] += _coord_term(kind, x00, b0v)
                A1[o] += _coord_term(kind, x01, b0v)
                A2[o] += _coord_term(kind, x02, b0v)
                A3[o] += _coord_term(kind, x03, b0v)
        t += nt


@njit(nogil=True, cache=True)
def _acc_sqdiff(AT, ia, BT, b0, w, acc):
    _acc_terms(TERM_SQDIFF, AT, ia, BT, b0, w, acc)


@njit(nogil=True, cache=True)
def _acc_absdiff(AT, ia, BT, b0, w, acc):
    _acc_terms(TERM_ABSDIFF, AT, ia, BT, b0, w, acc)


@njit(nogil=True, cache=True)
def _acc_dot(AT, ia, BT, b0, w, acc):
    _acc_terms(TERM_DOT, AT, ia, BT, b0, w, acc)


@njit(nogil=True, cache=True, error_model="numpy")
def dist_tile(code, AT, ia, aux_a, BT, b0, w, aux_b, p, categorical, ranges, acc, acc2):
    """``acc[o] = d(point ia of A, point b0 + o of B)`` for ``o < w`` (finished float64).

    ``aux_a`` / ``aux_b`` are the (2, m) auxiliaries of A / B (:func:`prepare_columns`).
    """
    d = AT.shape[0]
    nb = aux_b[0, b0:b0 + w]
    rb = aux_b[1, b0:b0 + w]
    if code == M_EUCLIDEAN or code == M_SQEUCLIDEAN:
        _acc_sqdiff(AT, ia, BT, b0, w, acc)
        if code == M_EUCLIDEAN:
            for o in range(w):
                acc[o] = math.sqrt(acc[o])
        return
    if code == M_MANHATTAN:
        _acc_absdiff(AT, ia, BT, b0, w, acc)
        return
    if code == M_COSINE or code == M_CORRELATION:
        _acc_dot(AT, ia, BT, b0, w, acc)
        na = aux_a[0, ia]
        ra = aux_a[1, ia]
        for o in range(w):
            acc[o] = cos_from_roots(acc[o], na, nb[o], ra, rb[o])
        return
    for o in range(w):
        acc[o] = 0.0
    if code == M_CHEBYSHEV:
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                acc[o] = cheb_step(acc[o], x, bt[o])
    elif code == M_MINKOWSKI:
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                acc[o] += minkowski_term(x, bt[o], p)
        q = 1.0 / p
        for o in range(w):
            acc[o] = acc[o] ** q
    elif code == M_CANBERRA:
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                acc[o] += canberra_term(x, bt[o])
    elif code == M_BRAYCURTIS:
        for o in range(w):
            acc2[o] = 0.0
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                y = bt[o]
                acc[o] += abs(x - y)
                acc2[o] += abs(x + y)
        for o in range(w):
            num = acc[o]
            den = acc2[o]
            if not (math.isfinite(num) and math.isfinite(den)):
                acc[o] = braycurtis_pair(AT[:, ia], BT[:, b0 + o])  # overflow: the exact path
            elif num == 0.0:
                acc[o] = 0.0
            elif den == 0.0:
                acc[o] = np.inf
            else:
                acc[o] = num / den
    elif code == M_HAMMING:
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                acc[o] += 1.0 if x != bt[o] else 0.0
        for o in range(w):
            acc[o] = acc[o] / d
    elif code == M_JACCARD:
        for o in range(w):
            acc2[o] = 0.0
        for t in range(d):
            a = AT[t, ia] != 0.0
            bt = BT[t, b0:b0 + w]
            for o in range(w):
                b = bt[o] != 0.0
                acc2[o] += 1.0 if (a or b) else 0.0
                acc[o] += 1.0 if a != b else 0.0
        for o in range(w):
            acc[o] = acc[o] / acc2[o] if acc2[o] != 0.0 else 0.0
    elif code == M_GOWER:
        for t in range(d):
            x = AT[t, ia]
            bt = BT[t, b0:b0 + w]
            c = categorical[t]
            r = ranges[t]
            for o in range(w):
                acc[o] += gower_term(x, bt[o], c, r)
        for o in range(w):
            acc[o] = acc[o] / d


@njit(nogil=True, cache=True, error_model="numpy")
def dist_tile4(code, AT, js, aux_a, BT, b0, w, aux_b, p, categorical, ranges, A, acc2):
    """:func:`dist_tile` of the four points ``js`` of A into the rows of ``A`` (bitwise).

    The sum metrics (euclidean, sqeuclidean, manhattan, cosine, correlation) take one sweep
    for the four (:func:`_acc_terms4`) and then :func:`dist_tile`'s own finishing step; the
    others call :func:`dist_tile` per point.
    """
    if code == M_EUCLIDEAN or code == M_SQEUCLIDEAN:
        _acc_terms4(TERM_SQDIFF, AT, js, BT, b0, w, A)
        if code == M_EUCLIDEAN:
            for g in range(4):
                Ag = A[g]
                for o in range(w):
                    Ag[o] = math.sqrt(Ag[o])
        return
    if code == M_MANHATTAN:
        _acc_terms4(TERM_ABSDIFF, AT, js, BT, b0, w, A)
        return
    if code == M_COSINE or code == M_CORRELATION:
        _acc_terms4(TERM_DOT, AT, js, BT, b0, w, A)
        nb = aux_b[0, b0:b0 + w]
        rb = aux_b[1, b0:b0 + w]
        for g in range(4):
            na = aux_a[0, js[g]]
            ra = aux_a[1, js[g]]
            Ag = A[g]
            for o in range(w):
                Ag[o] = cos_from_roots(Ag[o], na, nb[o], ra, rb[o])
        return
    for g in range(4):
        dist_tile(code, AT, js[g], aux_a, BT, b0, w, aux_b, p, categorical, ranges, A[g], acc2)


@njit(nogil=True, cache=True)
def dist_rows(code, AT, aux_a, a_off, ids, BT, aux_b, gB, out, oc, p, categorical, ranges, is_int,
              imax, tw):
    """``out[r, oc + o] = D[ids[r], gB + o]`` for every row r and every column o of ``BT``.

    Column ``a_off + r`` of ``AT`` (and ``aux_a``) holds the prepared row of point ``ids[r]``;
    ``BT``/``aux_b`` those of the
    points ``gB .. gB + BT.shape[1]``.  The diagonal (``ids[r] == gB + o``) is exactly 0.
    Float output: the float64 distance is rounded to ``out``'s dtype; integer output: first
    to the nearest integer (``np.rint``).  Returns the number of entries that are not
    finite in the output dtype (integers: above ``imax``), so the caller can report them.
    Tiles of ``tw`` columns; all rows are run against a tile before the next (cache blocking).
    """
    m = ids.shape[0]
    nb = BT.shape[1]
    acc = np.empty(tw, dtype=np.float64)
    acc2 = np.empty(tw, dtype=np.float64)
    bad = 0
    for c0 in range(0, nb, tw):
        w = min(tw, nb - c0)
        for r in range(m):
            dist_tile(code, AT, a_off + r, aux_a, BT, c0, w, aux_b, p, categorical, ranges, acc, acc2)
            g = ids[r] - gB - c0
            if 0 <= g < w:
                acc[g] = 0.0
            row = out[r, oc + c0:oc + c0 + w]
            if is_int:
                for o in range(w):
                    v = np.rint(acc[o])
                    if not (v <= imax):
                        bad += 1
                        v = 0.0
                    row[o] = v
            else:
                for o in range(w):
                    row[o] = acc[o]
                for o in range(w):
                    bad += not (row[o] < np.inf)
    return bad
