"""Vector helpers for the kernels: a 64-lane comparison mask in one vector instruction sequence.

Pure numba (plus llvmlite for the one intrinsic), numpy in / numpy out.

:func:`lt_mask64` ``(a, ia, b, ib)`` returns the uint64 whose bit ``t`` is ``a[ia + t] <
b[ib + t]`` for ``t < 64`` -- exactly the mask the loop
``m |= uint64(a[ia + t] < b[ib + t]) << t`` builds (ordered comparison: NaN compares
false; -0.0 == 0.0), so kernels using it give bitwise the same results.  For two
C-contiguous arrays of the same dtype it is one ``<64 x T>`` load pair, one vector compare
and a bitcast of the ``<64 x i1>`` result (a movemask / mask-register move on x86); other
arguments take the loop.  The caller guarantees ``ia + 64 <= len(a)`` and
``ib + 64 <= len(b)``.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic, overload


@intrinsic
def _lt_mask64_vec(typingctx, a, ia, b, ib):
    sig = types.uint64(a, ia, b, ib)

    def codegen(context, builder, signature, args):
        aty, _, bty, _ = signature.args
        A = context.make_array(aty)(context, builder, args[0])
        B = context.make_array(bty)(context, builder, args[2])
        vty = ir.VectorType(context.get_value_type(aty.dtype), 64)
        align = aty.dtype.bitwidth // 8
        ia_ = context.cast(builder, args[1], signature.args[1], types.intp)
        ib_ = context.cast(builder, args[3], signature.args[3], types.intp)
        va = builder.load(builder.bitcast(builder.gep(A.data, [ia_]), vty.as_pointer()), align=align)
        vb = builder.load(builder.bitcast(builder.gep(B.data, [ib_]), vty.as_pointer()), align=align)
        if isinstance(aty.dtype, types.Float):
            c = builder.fcmp_ordered("<", va, vb)
        elif aty.dtype.signed:
            c = builder.icmp_signed("<", va, vb)
        else:
            c = builder.icmp_unsigned("<", va, vb)
        return builder.bitcast(c, ir.IntType(64))

    return sig, codegen


def lt_mask64(a, ia, b, ib):  # pragma: no cover - replaced by the overload in numba
    """Bit t = ``a[ia + t] < b[ib + t]`` for t < 64 (module notes)."""
    m = 0
    for t in range(64):
        m |= int(a[ia + t] < b[ib + t]) << t
    return np.uint64(m)


@overload(lt_mask64, jit_options={"nogil": True, "cache": True})
def _ov_lt_mask64(a, ia, b, ib):
    if (isinstance(a, types.Array) and isinstance(b, types.Array) and a.ndim == 1 and b.ndim == 1
            and a.layout == "C" and b.layout == "C" and a.dtype == b.dtype
            and isinstance(a.dtype, (types.Float, types.Integer))):
        return lambda a, ia, b, ib: _lt_mask64_vec(a, ia, b, ib)

    def impl(a, ia, b, ib):
        m = np.uint64(0)
        for t in range(64):
            m |= np.uint64(a[ia + t] < b[ib + t]) << np.uint64(t)
        return m

    return impl


@njit(nogil=True, cache=True)
def lt_mask64_loop(a, ia, b, ib):
    """The reference loop of :func:`lt_mask64` (tests compare the two)."""
    m = np.uint64(0)
    for t in range(64):
        m |= np.uint64(a[ia + t] < b[ib + t]) << np.uint64(t)
    return m
