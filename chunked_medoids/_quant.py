"""The 2-byte storage type: float16 distances with a power-of-two scale.

A float16 store holds ``q = float16(d * scale)`` for each distance ``d`` (computed in
float32 by the metric kernels, so ``q`` is the float32 distance rounded once to float16
after scaling).  Readers see ``float32(q) / scale``: the *dequantised* values, which every
kernel consumes as an ordinary float32 matrix.  ``scale`` is a power of two, so both the
scaling and the dequantisation are exact in float32: the only rounding is the one to
float16 (relative error at most 2**-11, about 0.05 %, for values in float16's normal range;
values below ``2**-14 / scale`` lose relative precision gradually and may round to 0).

The scale only has to keep the largest distance below float16's maximum (65504) and away
from its subnormal range; :func:`choose_scale` maps an upper bound of the distances into
``(2**14, 2**15]``.  Results are exact with respect to the dequantised values: running any
method on a float16 store gives bitwise the result of running it on the float32 matrix of
the dequantised values (``tests/test_float16.py``).

Pure numpy; imported by the sources and the builder.
"""

from __future__ import annotations

import math

import numpy as np

from ._errors import InvalidParameterError, InvalidTypeError, QuantisationOverflowError

#: the stored element type of a 2-byte store.
FLOAT16 = np.dtype(np.float16)
#: what readers of a float16 store see.
VALUES_DTYPE = np.dtype(np.float32)
#: largest finite float16.
FLOAT16_MAX = 65504.0
#: :func:`choose_scale` maps the bound of the distances to at most this (leaves 2x headroom).
TARGET_MAX = 2.0 ** 15
#: the scale stays within [2**-SCALE_EXP, 2**SCALE_EXP] (float32 can invert it exactly).
SCALE_EXP = 100


def is_quantised(dtype) -> bool:
    """Whether ``dtype`` is the 2-byte storage type."""
    try:
        return np.dtype(dtype) == FLOAT16
    except TypeError:
        return False


def check_scale(scale, what: str = "scale") -> float:
    """A user-given scale: a positive power of two, else a typed error naming the fix."""
    if isinstance(scale, (bool, np.bool_)) or not isinstance(scale, (int, float, np.integer, np.floating)):
        raise InvalidTypeError(f"{what} must be a positive power of two (e.g. 2**-4) or None, got "
                               f"{type(scale).__name__} {scale!r}")
    s = float(scale)
    if not math.isfinite(s) or s <= 0:
        raise InvalidParameterError(f"{what} must be a positive power of two (e.g. 2**-4) or None, got {scale!r}")
    mant, exp = math.frexp(s)
    if mant != 0.5:
        lower = math.ldexp(1.0, exp - 1)
        raise InvalidParameterError(
            f"{what} must be a power of two so that scaling is exact in float32, got {scale!r}; "
            f"use {lower!r} (the next power of two below) or None to choose it from the data"
        )
    if abs(exp - 1) > SCALE_EXP:
        raise InvalidParameterError(f"{what} must lie in [2**-{SCALE_EXP}, 2**{SCALE_EXP}], got {scale!r}")
    return s


def choose_scale(bound: float) -> float:
    """The power of two ``s`` with ``bound * s`` in ``(TARGET_MAX / 2, TARGET_MAX]`` (1 for 0)."""
    b = float(bound)
    if not math.isfinite(b) or b < 0:
        raise InvalidParameterError(f"cannot choose a float16 scale for a distance bound of {bound!r}")
    if b == 0:
        return 1.0
    exp = math.floor(math.log2(TARGET_MAX / b))
    s = math.ldexp(1.0, exp)
    while b * s > TARGET_MAX:  # log2 rounding
        s /= 2
    while b * s * 2 <= TARGET_MAX:
        s *= 2
    return math.ldexp(1.0, max(-SCALE_EXP, min(SCALE_EXP, math.frexp(s)[1] - 1)))


def largest_scale_for(value: float) -> float:
    """The largest power of two ``s`` with ``value * s <= FLOAT16_MAX``."""
    s = math.ldexp(1.0, math.floor(math.log2(FLOAT16_MAX / float(value))))
    while value * s > FLOAT16_MAX:
        s /= 2
    return s


def quantise(values: np.ndarray, scale: float, where=None) -> np.ndarray:
    """``float16(values * scale)`` (values float32 or float64, finite, >= 0).

    float32 values are scaled and rounded by :func:`chunked_medoids._kernels.half.quantise_f32`
    (the rounding the fused kernels use too; bitwise numpy's conversion).

    Raises
    ------
    QuantisationOverflowError
        A scaled value exceeds 65504; the message names the value, its position (via
        ``where(flat index)`` when given) and the largest scale that fits.
    """
    if values.dtype == np.float32 and values.size:
        # the one rounding definition (_kernels/half.py), bitwise numpy's float32 -> float16
        from ._kernels.half import quantise_f32

        out = np.empty(values.shape, dtype=FLOAT16)
        src = np.ascontiguousarray(values).reshape(-1)
        if quantise_f32(src, np.float32(scale), out.reshape(-1).view(np.uint16)) == 0:
            return out
        # a value out of range: the reference path below raises (or converts NaN / negatives)
    vmax = float(values.max()) if values.size else 0.0
    if vmax * scale > FLOAT16_MAX:
        pos = ""
        if where is not None:
            pos = f" at {where(int(np.argmax(values)))}"
        raise QuantisationOverflowError(
            f"distance {vmax!r}{pos} times the float16 scale {scale!r} is {vmax * scale!r}, above "
            f"float16's maximum {FLOAT16_MAX}; pass scale={largest_scale_for(vmax)!r} or smaller "
            "(or scale=None to choose it from the data), or store dtype='float32'"
        )
    if values.dtype == np.float32 and scale != 1.0:
        tmp = np.multiply(values, np.float32(scale))  # exact: scale is a power of two
        return tmp.astype(FLOAT16)
    if scale != 1.0:
        return (values * scale).astype(FLOAT16)
    return values.astype(FLOAT16)


#: blocks of at least this many elements are converted by the numba kernel
#: (:func:`chunked_medoids._kernels.convert.f16_to_f32`, ~8x numpy's speed), smaller ones by numpy.
KERNEL_MIN_SIZE = 4096


def dequantise(block: np.ndarray, scale: float, out: np.ndarray | None = None) -> np.ndarray:
    """``float32(block) / scale`` as a C-contiguous float32 array (exact: power of two).

    Large blocks go through the numba kernel of :mod:`chunked_medoids._kernels.convert`
    (bitwise the same as numpy's conversion; releases the GIL, so a reader thread converts
    while the kernels run); ``out`` (same shape, float32, C-contiguous) is filled if given.
    """
    if out is None:
        out = np.empty(block.shape, dtype=VALUES_DTYPE)
    if block.size >= KERNEL_MIN_SIZE:
        from ._kernels.convert import f16_to_f32

        src = np.ascontiguousarray(block).view(np.uint16)
        mul1, mul2 = _kernel_factors(scale)
        f16_to_f32(src, mul1, mul2, out)
    elif scale == 1.0:
        np.copyto(out, block, casting="safe")
    else:
        np.multiply(block, np.float32(1.0 / scale), out=out, dtype=VALUES_DTYPE)
    return out


def _kernel_factors(scale: float) -> tuple[np.float32, np.float32]:
    """``(mul1, mul2)``, powers of two with ``mul1 * mul2 = 2**112 / scale`` (mul2 = 1 when
    that is a float32)."""
    e = 112 - (math.frexp(scale)[1] - 1)
    if e <= 127:
        return np.float32(math.ldexp(1.0, e)), np.float32(1.0)
    return np.float32(2.0 ** 112), np.float32(math.ldexp(1.0, e - 112))


__all__ = ["FLOAT16", "FLOAT16_MAX", "TARGET_MAX", "VALUES_DTYPE", "check_scale", "choose_scale",
           "dequantise", "is_quantised", "largest_scale_for", "quantise"]
