"""numba kernel of the 2-byte storage type: float16 blocks to float32, scale applied.

Pure numba.  numba has no float16 type, so the kernel reads the float16 bits as uint16:
``sign | exponent+mantissa << 13`` is the float32 bit pattern of the value times 2**-112
(exact, subnormal halves included), and one multiplication by ``2**112 / scale`` (or two,
when that does not fit a float32) gives ``float32(q) / scale`` exactly -- bitwise what
numpy's conversion followed by the exact power-of-two multiplication gives
(``tests/test_float16.py`` checks all 65536 bit patterns).  Infinities and NaNs (e.g. the
NaN fill of a missing chunk) stay infinities and NaNs.  About 4 GB/s of float32 output on
one core, against 0.5 GB/s for ``numpy.ndarray.astype``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic


@njit(nogil=True, cache=True)
def f16_to_f32(src, mul1, mul2, out):
    """``out = float32(src) * mul1 * mul2`` for ``src`` the uint16 view of a float16 array.

    ``mul1 * mul2 = 2**112 / scale`` with both powers of two (``mul2 = 1`` when the product
    is a float32).  ``src`` and ``out`` are C-contiguous arrays of the same size.
    """
    a = src.reshape(-1)
    o = out.reshape(-1)
    ob = o.view(np.uint32)
    two = mul2 != np.float32(1.0)
    for i in range(a.shape[0]):
        h = np.uint32(a[i])
        em = h & np.uint32(0x7FFF)
        s = (h & np.uint32(0x8000)) << np.uint32(16)
        if em >= np.uint32(0x7C00):  # inf / NaN
            ob[i] = s | np.uint32(0x7F800000) | ((em & np.uint32(0x3FF)) << np.uint32(13))
        else:
            ob[i] = s | (em << np.uint32(13))
            if two:
                o[i] = (o[i] * mul1) * mul2
            else:
                o[i] = o[i] * mul1


@intrinsic
def _f32_from_bits(typingctx, bits):
    """The float32 whose IEEE bit pattern is the uint32 ``bits`` (a register bitcast)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(nogil=True, cache=True, inline="always")
def f16_value(h, mul1, mul2):
    """The float32 value of one float16 bit pattern ``h`` (any integer holding the 16 bits,
    e.g. an int16 or uint16 element): bitwise what :func:`f16_to_f32` writes for it.

    Branch-free for finite values (``x * mul1 * mul2`` with ``mul2 = 1`` is ``x * mul1``
    exactly), so the swap kernels convert in registers the elements they look at.
    """
    u = np.uint32(np.uint16(h))
    em = u & np.uint32(0x7FFF)
    s = (u & np.uint32(0x8000)) << np.uint32(16)
    if em >= np.uint32(0x7C00):  # inf / NaN
        return _f32_from_bits(s | np.uint32(0x7F800000) | ((em & np.uint32(0x3FF)) << np.uint32(13)))
    return (_f32_from_bits(s | (em << np.uint32(13))) * mul1) * mul2


@njit(nogil=True, cache=True, inline="always")
def f16_finite(h, mul1, mul2):
    """:func:`f16_value` of a pattern known to be finite (exponent bits not all ones): the
    same value without the infinity / NaN test."""
    u = np.uint32(np.uint16(h))
    return (_f32_from_bits(((u & np.uint32(0x8000)) << np.uint32(16)) | ((u & np.uint32(0x7FFF)) << np.uint32(13)))
            * mul1) * mul2


@njit(nogil=True, cache=True)
def f16_row(src, mul1, mul2, out):
    """``out[i] = f16_value(src[i])`` for a 1-D float16 bit array (one row, e.g. the row of a
    candidate about to be swapped in): bitwise :func:`f16_to_f32`."""
    for i in range(src.shape[0]):
        out[i] = f16_value(src[i], mul1, mul2)


#: largest float16 bit pattern that is not a NaN (+inf).
F16_INF_BITS = 0x7C00


@njit(nogil=True, cache=True)
def f16_threshold(x, mul1, mul2):
    """The int16 ``t`` with ``int16(h) < t  <=>  f16_value(h) < x`` for every float16 bit
    pattern ``h`` of a non-negative value (sign bit clear: +0 .. +inf and the NaNs).

    Non-negative patterns order like their values (and ``f16_value`` is strictly
    increasing on them: a power-of-two multiplication that never under- or overflows), so
    ``t`` is the smallest pattern in ``[0, 0x7C00]`` whose value is ``>= x``: 0 for
    ``x <= 0``, 0x7C00 for ``x`` above the largest finite value (every finite value is
    below, +inf is not), and -32768 for NaN ``x`` (nothing is below NaN).  The NaN patterns
    (above 0x7C00) never compare below.  Patterns with the sign bit set are negative as
    int16, so they always compare below ``t >= 0``: a superset, which the kernels re-check
    with the exact float comparison.  Found from an estimate (the float32 bits of ``x``
    over the multiplier) and corrected step by step against ``f16_value`` itself, so it is
    exact whatever the estimate.
    """
    if x != x:
        return np.int16(-32768)
    if not (x > 0):
        return np.int16(0)
    top = np.int32(F16_INF_BITS)
    if x == np.inf:
        return np.int16(top)
    y = np.float32(np.float64(x) / (np.float64(mul1) * np.float64(mul2)))
    h = np.int32(_f32_bits(y) >> np.uint32(13))
    if h > top:
        h = top
    while h > 0 and f16_value(h - 1, mul1, mul2) >= x:
        h -= 1
    while h < top and f16_value(h, mul1, mul2) < x:
        h += 1
    return np.int16(h)


@intrinsic
def _f32_bits(typingctx, x):
    """The IEEE bit pattern (uint32) of the float32 ``x``."""
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@njit(nogil=True, cache=True)
def f16_thresholds(ds, mul1, mul2, t):
    """``t[o] = f16_threshold(ds[o])`` for every point (the int16 image of the second-nearest
    distances the swap kernels compare float16 rows against)."""
    for o in range(ds.shape[0]):
        t[o] = f16_threshold(ds[o], mul1, mul2)
