"""numba kernels of the value checks (``sources/validate.py``): numpy in, bool out.

:func:`all_nonneg_finite` decides "every entry is finite and >= 0" for a float block in one
pass over memory, instead of two reductions (``min`` and ``max``).  It reads the IEEE bit
patterns as unsigned integers: a non-negative finite float has the sign bit clear and an
exponent below the all-ones one, i.e. its pattern is below that of ``+inf``; NaN, ``±inf``
and every negative value (sign bit set) are at or above it.  An integer max reduction has no
NaN semantics to respect, so LLVM vectorises it.  ``-0.0`` (sign bit set, but ``>= 0``) reads
as "not all": the caller then decides with float comparisons, so the answer is exact.
"""

from __future__ import annotations

import numpy as np
from numba import njit

#: bit pattern of +inf: non-negative finite floats lie strictly below it.
F32_INF_BITS = np.uint32(0x7F800000)
F64_INF_BITS = np.uint64(0x7FF0000000000000)


@njit(nogil=True, cache=True)
def _umax(u):
    m = u.dtype.type(0)
    for i in range(u.shape[0]):
        x = u[i]
        m = x if x > m else m
    return m


def all_nonneg_finite(block: np.ndarray) -> bool:
    """True if every entry of the float32/float64 ``block`` is finite and ``>= 0`` with its
    sign bit clear.  False may also mean "contains -0.0": check with float comparisons then.
    ``block`` must be C-contiguous."""
    flat = block.reshape(-1)
    if block.dtype == np.float32:
        return bool(_umax(flat.view(np.uint32)) < F32_INF_BITS)
    if block.dtype == np.float64:
        return bool(_umax(flat.view(np.uint64)) < F64_INF_BITS)
    raise TypeError(f"all_nonneg_finite takes float32/float64 blocks, not {block.dtype}")


# -- the up-front check of an in-memory square matrix: one pass over tile pairs -----------
#
# ``check_array`` (``sources/validate.py``) decides "valid or not" with the kernels below and
# falls back to its numpy definition (which finds and names the first offender) only when
# they say "not".  A call walks a list of tile pairs ``(I, J)``, ``J >= I``, of edge ``t``:
# both tiles ``A[I, J]`` and ``A[J, I]`` are scanned row by row for their values (which
# brings them into cache), then compared with each other from cache, so the matrix is read
# from memory once.  Every loop runs over a 1-d slice from index 0, so numba's negative-index
# handling folds away and LLVM vectorises the row side (the column side is a strided load).


@njit(nogil=True, cache=True, inline="always")
def _bits_rect(U, r0, r1, c0, c1, m1, m2, mag):
    """Running ``max(bits)`` and ``max(bits & mag)`` of ``U[r0:r1, c0:c1]``."""
    for r in range(r0, r1):
        row = U[r, c0:c1]
        for k in range(row.shape[0]):
            x = row[k]
            m1 = x if x > m1 else m1
            y = x & mag
            m2 = y if y > m2 else m2
    return m1, m2


@njit(nogil=True, cache=True, inline="always")
def _count_neq(row, col):
    c = 0
    for k in range(row.shape[0]):
        c += row[k] != col[k]
    return c


@njit(nogil=True, cache=True)
def sym_pass_float(A, U, pairs, t, neg0, mag, inf_bits, mbits, mval, tol, rtol, rtol64, known):
    """One pass over the tile pairs ``pairs`` (``(I, J)`` rows) of the float square matrix ``A``.

    ``U`` is ``A`` viewed as unsigned integers of the same width, ``neg0`` / ``mag`` /
    ``inf_bits`` the bit patterns of ``-0.0``, the magnitude mask and ``+inf``.  Decides:

    * every entry finite and ``>= 0``: ``max(bits) <= bits(-0.0)`` (nothing with the sign bit
      set except ``-0.0``) and ``max(bits & mag) < bits(+inf)`` (no inf, no NaN); the latter
      max is also the bit pattern of the largest entry;
    * the diagonal is 0;
    * ``A[i, j]`` equals ``A[j, i]``, or differs by at most ``tol[0] + rtol * max(|A[i, j]|,
      |A[j, i]|)``, evaluated in the dtype of ``A`` (``tol`` is a one-element array of that
      dtype, ``rtol`` a scalar of it: numpy's arithmetic for Python scalars and an array).

    With ``known`` False the absolute tolerance is not known yet (it is ``rtol64`` times the
    largest entry of the whole matrix): a pair that differs is then compared with the one of
    the largest entry seen so far, which is not larger, and when it fails there the pass
    asks for a second pass with the final tolerance (``recheck``).  ``mbits`` / ``mval``: a
    one-element unsigned array and its float view (scratch, to read a bit pattern as a float).

    Returns ``(bits of the largest entry, bad, recheck)``; ``bad``: not valid (the caller then
    searches for the first offender with numpy).
    """
    n = A.shape[0]
    m1 = U.dtype.type(0)
    m2 = U.dtype.type(0)
    recheck = False
    for p in range(pairs.shape[0]):
        i0 = pairs[p, 0] * t
        j0 = pairs[p, 1] * t
        i1 = min(i0 + t, n)
        j1 = min(j0 + t, n)
        diag = i0 == j0
        m1, m2 = _bits_rect(U, i0, i1, j0, j1, m1, m2, mag)
        if not diag:
            m1, m2 = _bits_rect(U, j0, j1, i0, i1, m1, m2, mag)
        if m1 > neg0 or m2 >= inf_bits:
            return m2, True, recheck
        if diag:
            for i in range(i0, i1):
                if A[i, i] != 0:
                    return m2, True, recheck
        if not known:
            mbits[0] = m2
            tol[0] = rtol64 * np.float64(mval[0])
        atol = tol[0]
        for i in range(i0, i1):
            js = i + 1 if diag else j0
            row = A[i, js:j1]
            col = A[js:j1, i]
            if _count_neq(row, col) == 0:
                continue
            for k in range(row.shape[0]):
                a = row[k]
                b = col[k]
                if a != b and abs(a - b) > atol + rtol * max(abs(a), abs(b)):
                    if known:
                        return m2, True, recheck
                    recheck = True
    return m2, False, recheck


@njit(nogil=True, cache=True, inline="always")
def _min_rect(A, r0, r1, c0, c1, lo):
    for r in range(r0, r1):
        row = A[r, c0:c1]
        for k in range(row.shape[0]):
            x = row[k]
            lo = x if x < lo else lo
    return lo


@njit(nogil=True, cache=True)
def sym_pass_int(A, pairs, t, atol, rtol):
    """:func:`sym_pass_float` for an integer matrix: entries ``>= 0``, zero diagonal, and a
    pair that differs compared in float64, ``|a - b| > atol + rtol * max(|a|, |b|)`` (the
    numpy definition's arithmetic; 0 and 0 by default: exact).  Returns ``bad``."""
    n = A.shape[0]
    lo = A.dtype.type(0)
    for p in range(pairs.shape[0]):
        i0 = pairs[p, 0] * t
        j0 = pairs[p, 1] * t
        i1 = min(i0 + t, n)
        j1 = min(j0 + t, n)
        diag = i0 == j0
        lo = _min_rect(A, i0, i1, j0, j1, lo)
        if not diag:
            lo = _min_rect(A, j0, j1, i0, i1, lo)
        if lo < 0:
            return True
        if diag:
            for i in range(i0, i1):
                if A[i, i] != 0:
                    return True
        for i in range(i0, i1):
            js = i + 1 if diag else j0
            row = A[i, js:j1]
            col = A[js:j1, i]
            if _count_neq(row, col) == 0:
                continue
            for k in range(row.shape[0]):
                a = np.float64(row[k])
                b = np.float64(col[k])
                if abs(a - b) > atol + rtol * max(abs(a), abs(b)):
                    return True
    return False
