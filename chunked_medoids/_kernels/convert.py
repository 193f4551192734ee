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
from numba import njit


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
