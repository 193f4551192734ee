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
