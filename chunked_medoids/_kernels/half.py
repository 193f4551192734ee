"""The float16 rounding of the 2-byte storage type, in numba: the ONE definition.

Pure numba (plus llvmlite for the bit casts), numpy in / numpy out.  A float16 store holds
``q = float16(x * scale)`` for each float32 distance ``x`` (``scale`` a power of two, so
``x * scale`` is exact in float32) and readers see ``float32(q) / scale``
(:mod:`chunked_medoids._quant`).  numba has no float16 type, so the rounding works on the
float32 bits:

* :func:`round_half` ``(y)``: the float32 holding ``float16(y)`` (round to nearest, ties to
  even) for ``0 <= y <= 65504``.  In float16's normal range (``y >= 2**-14``) the 13 low
  mantissa bits are rounded away with the usual carry trick (``+ 0xFFF + lsb``, a carry into
  the exponent is the correct rounding up); below it float16's subnormals are the multiples
  of ``2**-24``, which is the spacing of float32 in ``[0.5, 1)``, so ``(y + 0.5) - 0.5`` in
  float32 rounds to them (ties to even) exactly.
* :func:`half_bits` ``(r)``: the float16 bit pattern of such an ``r`` (exact:
  ``r * 2**-112`` has the float16 bits shifted left by 13, subnormal halves included -- the
  inverse of :func:`chunked_medoids._kernels.convert.f16_to_f32`).
* :func:`dequantised` ``(x, scale, inv)``: ``float32(float16(x * scale)) / scale`` for a
  float32 distance ``x`` (``inv = 1 / scale``): the value a float16 store returns, used by
  the fused kernels.  Exact apart from the one rounding, since the scale factors are powers
  of two within ``2**±100`` (:data:`chunked_medoids._quant.SCALE_EXP`).
* :func:`quantise_f32` ``(src, scale, out)``: the store's encoder (:func:`chunked_medoids.
  _quant.quantise` of float32 values), bitwise ``(src * float32(scale)).astype(float16)``
  (``tests/test_float16.py`` checks the neighbourhood of every float16 rounding boundary).

A scaled value above :data:`HALF_MAX` is refused by the callers
(:class:`~chunked_medoids.QuantisationOverflowError`); :func:`round_half` is not defined
there.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

#: largest finite float16 (a scaled distance above it is refused).
HALF_MAX = 65504.0


@intrinsic
def f32_bits(typingctx, x):
    """The uint32 bit pattern of a float32."""
    if x != types.float32:
        return None
    sig = types.uint32(types.float32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.IntType(32))

    return sig, codegen


@intrinsic
def bits_f32(typingctx, u):
    """The float32 of a bit pattern (an unsigned integer; its low 32 bits)."""
    if not isinstance(u, types.Integer) or u.signed:
        return None
    sig = types.float32(u)

    def codegen(context, builder, signature, args):
        v = args[0]
        if u.bitwidth > 32:
            v = builder.trunc(v, ir.IntType(32))
        return builder.bitcast(v, ir.FloatType())

    return sig, codegen


@njit(nogil=True, cache=True, inline="always")
def round_half(y):
    """float32 ``y`` (``0 <= y <= 65504``, or -0.0) rounded to float16 precision, as float32."""
    u = f32_bits(y)
    rn = (u + np.uint32(0xFFF) + ((u >> np.uint32(13)) & np.uint32(1))) & np.uint32(0xFFFFE000)
    rs = f32_bits((y + np.float32(0.5)) - np.float32(0.5)) | (u & np.uint32(0x80000000))  # keeps -0.0
    return bits_f32(rn if (u & np.uint32(0x7FFFFFFF)) >= np.uint32(0x38800000) else rs)


@njit(nogil=True, cache=True, inline="always")
def half_bits(r):
    """The float16 bits (uint16) of a float32 ``r`` that is a float16 value (:func:`round_half`)."""
    b = f32_bits(r * np.float32(2.0 ** -112))
    return np.uint16(((b >> np.uint32(16)) & np.uint32(0x8000)) | ((b & np.uint32(0x7FFFFFFF)) >> np.uint32(13)))


@njit(nogil=True, cache=True, inline="always")
def dequantised(x, scale, inv):
    """``float32(float16(x * scale)) * inv`` for float32 ``x``, ``scale`` / ``inv = 1 / scale``
    float32 powers of two: the value a float16 store holds for the distance ``x``.  The caller
    refuses ``x * scale > HALF_MAX`` (then the result is meaningless)."""
    return round_half(x * scale) * inv


@njit(nogil=True, cache=True)
def quantise_f32(src, scale, out):
    """``out = float16(src * scale)`` as uint16 bits (``src`` float32, ``out`` uint16, both
    1-D of the same length, ``scale`` a float32 power of two).

    Returns the number of scaled values outside ``[0, HALF_MAX]`` (NaN included); their
    ``out`` entries are unspecified and the caller must not use ``out`` then.
    """
    bad = 0
    hm = np.float32(HALF_MAX)
    for i in range(src.shape[0]):
        y = src[i] * scale
        ok = (y >= np.float32(0.0)) & (y <= hm)
        bad += not ok
        out[i] = half_bits(round_half(y if ok else np.float32(0.0)))
    return bad


__all__ = ["HALF_MAX", "bits_f32", "dequantised", "f32_bits", "half_bits", "quantise_f32", "round_half"]
