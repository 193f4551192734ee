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

:func:`min_lt` ``(a, b)`` / :func:`max_gt` ``(a, b)`` are the float64 selects ``a if a < b
else b`` / ``a if a > b else b`` (ties, signed zeros and NaN give ``b``, as written), one
``minsd`` / ``maxsd`` on x86-64 (whose definition is exactly this select).  numba's
``min`` / ``max`` compile to a compare, a mask move and a blend each; in the scalar work of
the swap kernels (a few points per 64) the difference is measurable.  Other targets take
the select.

:func:`load_relaxed` ``(a, i)`` / :func:`store_relaxed` ``(a, i, v)`` read / write one int64
element as an atomic (monotonic) access: the speculative swap threads publish their first
improving position through them, and a relaxed atomic load is never hoisted out of a loop
or merged with another (plain loads may be, since the compiler assumes no other writer).
:func:`load_acquire` / :func:`store_release` are the same accesses with acquire / release
ordering: every write a thread made before its release store is visible to a thread whose
acquire load reads that store's value (plain moves on x86-64, where only the compiler is
constrained).  :func:`spin_pause` is the spin-wait hint (``pause`` on x86-64, nothing
elsewhere).  The threads of one speculative batch hand off through them (:mod:`.handoff`).

:func:`prefetch_read` ``(a, i)`` hints that ``a[i]`` (a C-contiguous 1-D array) is about to be
read: LLVM's ``llvm.prefetch`` (read, locality 3, data), one ``prefetcht0`` on x86-64.  A
hint only: it never faults and changes no value; other arrays take a no-op.  The swap
kernels stream their candidate rows ahead with it (the hardware prefetchers lose each of
four interleaved row streams at every 4 KiB page boundary).

:func:`compress64` ``(m, base, out, pos)`` appends the indices ``base + t`` of the set bits
``t`` of the uint64 ``m`` to ``out[pos:]`` in increasing order and returns the new length,
exactly what the loop ``while m: out[pos] = base + tz(m); pos += 1; m &= m - 1`` does, but
without a branch per bit: four 16-lane ``llvm.experimental.vector.compress`` of the lane
indices (one ``vpcompressd`` each with AVX-512; LLVM >= 19 lowers it on every target), each
stored whole (16 lanes) at the current end.  So ``out`` must have room for 16 entries past
the last index appended by each quarter: the caller guarantees ``pos <= base`` and
``base + 64 <= len(out)`` (true when it appends the masks of ``out``'s own index range in
increasing order from ``pos = 0``).  Entries past the returned length are unspecified.  An
int32 C-contiguous ``out`` takes the vector path (older LLVM and other index types take the
loop).
"""

from __future__ import annotations

import platform

import numpy as np
from llvmlite import binding as _llvm
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import intrinsic, overload

#: whether the float64 selects use the x86 ``minsd`` / ``maxsd`` intrinsics.
X86 = platform.machine().lower() in ("x86_64", "amd64")


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


def _sd_intrinsic(name):
    @intrinsic
    def sd(typingctx, a, b):
        sig = types.float64(types.float64, types.float64)

        def codegen(context, builder, signature, args):
            v2 = ir.VectorType(ir.DoubleType(), 2)
            fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(v2, [v2, v2]), name)
            zero = ir.Constant(ir.IntType(32), 0)
            undef = ir.Constant(v2, ir.Undefined)
            va = builder.insert_element(undef, args[0], zero)
            vb = builder.insert_element(undef, args[1], zero)
            return builder.extract_element(builder.call(fn, [va, vb]), zero)

        return sig, codegen

    return sd


_minsd = _sd_intrinsic("llvm.x86.sse2.min.sd")
_maxsd = _sd_intrinsic("llvm.x86.sse2.max.sd")


def min_lt(a, b):  # pragma: no cover - replaced by the overload in numba
    """``a if a < b else b`` in float64 (module notes)."""
    a, b = float(a), float(b)
    return a if a < b else b


def max_gt(a, b):  # pragma: no cover - replaced by the overload in numba
    """``a if a > b else b`` in float64 (module notes)."""
    a, b = float(a), float(b)
    return a if a > b else b


@overload(min_lt, jit_options={"nogil": True, "cache": True})
def _ov_min_lt(a, b):
    if X86:
        return lambda a, b: _minsd(np.float64(a), np.float64(b))

    def impl(a, b):
        x, y = np.float64(a), np.float64(b)
        return x if x < y else y

    return impl


@overload(max_gt, jit_options={"nogil": True, "cache": True})
def _ov_max_gt(a, b):
    if X86:
        return lambda a, b: _maxsd(np.float64(a), np.float64(b))

    def impl(a, b):
        x, y = np.float64(a), np.float64(b)
        return x if x > y else y

    return impl


@njit(nogil=True, cache=True)
def minmax_select(a, b):
    """``(min_lt(a, b), max_gt(a, b))`` compiled (tests compare them with the selects)."""
    return min_lt(a, b), max_gt(a, b)


def _atomic_load(ordering):
    @intrinsic
    def load(typingctx, a, i):
        sig = types.int64(a, i)

        def codegen(context, builder, signature, args):
            A = context.make_array(signature.args[0])(context, builder, args[0])
            i_ = context.cast(builder, args[1], signature.args[1], types.intp)
            return builder.load_atomic(builder.gep(A.data, [i_]), ordering=ordering, align=8)

        return sig, codegen

    return load


def _atomic_store(ordering):
    @intrinsic
    def store(typingctx, a, i, v):
        sig = types.void(a, i, v)

        def codegen(context, builder, signature, args):
            A = context.make_array(signature.args[0])(context, builder, args[0])
            i_ = context.cast(builder, args[1], signature.args[1], types.intp)
            v_ = context.cast(builder, args[2], signature.args[2], types.int64)
            builder.store_atomic(v_, builder.gep(A.data, [i_]), ordering=ordering, align=8)
            return context.get_dummy_value()

        return sig, codegen

    return store


_load_relaxed, _load_acquire = _atomic_load("monotonic"), _atomic_load("acquire")
_store_relaxed, _store_release = _atomic_store("monotonic"), _atomic_store("release")


def load_relaxed(a, i):  # pragma: no cover - replaced by the overload in numba
    """``a[i]`` of an int64 array as an atomic relaxed load (module notes)."""
    return int(a[i])


def store_relaxed(a, i, v):  # pragma: no cover - replaced by the overload in numba
    """``a[i] = v`` of an int64 array as an atomic relaxed store (module notes)."""
    a[i] = v


def load_acquire(a, i):  # pragma: no cover - replaced by the overload in numba
    """``a[i]`` of an int64 array as an atomic acquire load (module notes)."""
    return int(a[i])


def store_release(a, i, v):  # pragma: no cover - replaced by the overload in numba
    """``a[i] = v`` of an int64 array as an atomic release store (module notes)."""
    a[i] = v


def _is_int64_vector(a):
    return isinstance(a, types.Array) and a.dtype == types.int64 and a.layout == "C" and a.ndim == 1


@overload(load_relaxed, jit_options={"nogil": True, "cache": True})
def _ov_load_relaxed(a, i):
    if _is_int64_vector(a):
        return lambda a, i: _load_relaxed(a, i)


@overload(store_relaxed, jit_options={"nogil": True, "cache": True})
def _ov_store_relaxed(a, i, v):
    if _is_int64_vector(a):
        return lambda a, i, v: _store_relaxed(a, i, v)


@overload(load_acquire, jit_options={"nogil": True, "cache": True})
def _ov_load_acquire(a, i):
    if _is_int64_vector(a):
        return lambda a, i: _load_acquire(a, i)


@overload(store_release, jit_options={"nogil": True, "cache": True})
def _ov_store_release(a, i, v):
    if _is_int64_vector(a):
        return lambda a, i, v: _store_release(a, i, v)


@intrinsic
def _pause(typingctx):
    sig = types.void()

    def codegen(context, builder, signature, args):
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), []),
                                            "llvm.x86.sse2.pause")
        builder.call(fn, [])
        return context.get_dummy_value()

    return sig, codegen


def spin_pause():  # pragma: no cover - replaced by the overload in numba
    """One spin-wait hint (module notes)."""


@overload(spin_pause, jit_options={"nogil": True, "cache": True})
def _ov_spin_pause():
    if X86:
        return lambda: _pause()
    return lambda: None


@njit(nogil=True, cache=True)
def relaxed_roundtrip(a, i, v):
    """Store ``v`` at ``a[i]`` and load it back through the relaxed accessors (tests)."""
    store_relaxed(a, i, v)
    return load_relaxed(a, i)


@intrinsic
def _prefetch_read(typingctx, a, i):
    sig = types.void(a, i)

    def codegen(context, builder, signature, args):
        A = context.make_array(signature.args[0])(context, builder, args[0])
        i_ = context.cast(builder, args[1], signature.args[1], types.intp)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # unmangled name: the IR parser upgrades it to the overload of this LLVM's pointers
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch")
        ptr = builder.bitcast(builder.gep(A.data, [i_]), i8p)
        builder.call(fn, [ptr, ir.Constant(i32, 0), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


def prefetch_read(a, i):  # pragma: no cover - replaced by the overload in numba
    """Hint that ``a[i]`` is about to be read (module notes); no effect on any value."""


@overload(prefetch_read, jit_options={"nogil": True, "cache": True})
def _ov_prefetch_read(a, i):
    if isinstance(a, types.Array) and a.ndim == 1 and a.layout == "C":
        return lambda a, i: _prefetch_read(a, i)
    return lambda a, i: None


@njit(nogil=True, cache=True)
def prefetch_sum(a, ahead):
    """``a.sum()`` in index order with :func:`prefetch_read` of ``a[i + ahead]`` (clamped to the
    array) before each element (tests: the hint compiles, and changes no value)."""
    acc = 0.0
    n = a.shape[0]
    for i in range(n):
        prefetch_read(a, min(i + ahead, n - 1))
        acc += a[i]
    return acc


#: whether LLVM has the target-independent ``llvm.experimental.vector.compress`` (LLVM 19+).
HAVE_COMPRESS = tuple(_llvm.llvm_version_info) >= (19,)


@intrinsic
def _compress64_vec(typingctx, m, base, out, pos):
    sig = types.int64(m, base, out, pos)

    def codegen(context, builder, signature, args):
        i1, i16, i32, i64 = (ir.IntType(b) for b in (1, 16, 32, 64))
        v16 = ir.VectorType(i32, 16)
        b16 = ir.VectorType(i1, 16)
        mv = context.cast(builder, args[0], signature.args[0], types.uint64)
        base_ = builder.trunc(context.cast(builder, args[1], signature.args[1], types.int64), i32)
        pos_ = context.cast(builder, args[3], signature.args[3], types.int64)
        data = context.make_array(signature.args[2])(context, builder, args[2]).data
        compress = cgutils.get_or_insert_function(
            builder.module, ir.FunctionType(v16, [v16, b16, v16]), "llvm.experimental.vector.compress.v16i32")
        ctpop = cgutils.get_or_insert_function(builder.module, ir.FunctionType(i16, [i16]), "llvm.ctpop.i16")
        undef = ir.Constant(v16, ir.Undefined)
        splat = ir.Constant(v16, [0] * 16)
        iota = ir.Constant(v16, list(range(16)))
        for q in range(4):
            lane0 = builder.add(base_, ir.Constant(i32, 16 * q))
            idx = builder.add(builder.shuffle_vector(builder.insert_element(undef, lane0, ir.Constant(i32, 0)),
                                                     undef, splat), iota)
            m16 = builder.trunc(builder.lshr(mv, ir.Constant(i64, 16 * q)), i16)
            packed = builder.call(compress, [idx, builder.bitcast(m16, b16), undef])
            builder.store(packed, builder.bitcast(builder.gep(data, [pos_]), v16.as_pointer()), align=4)
            pos_ = builder.add(pos_, builder.zext(builder.call(ctpop, [m16]), i64))
        return pos_

    return sig, codegen


def compress64(m, base, out, pos):  # pragma: no cover - replaced by the overload in numba
    """Append ``base + t`` for the set bits ``t`` of ``m`` to ``out[pos:]``; new length (module notes)."""
    m = int(m)
    while m:
        out[pos] = base + ((m & -m).bit_length() - 1)
        pos += 1
        m &= m - 1
    return pos


@overload(compress64, jit_options={"nogil": True, "cache": True})
def _ov_compress64(m, base, out, pos):
    if (HAVE_COMPRESS and isinstance(out, types.Array) and out.ndim == 1 and out.layout == "C"
            and out.dtype == types.int32):
        return lambda m, base, out, pos: _compress64_vec(m, base, out, pos)
    return lambda m, base, out, pos: compress64_loop(m, base, out, pos)


@njit(nogil=True, cache=True)
def compress64_loop(m, base, out, pos):
    """The reference loop of :func:`compress64` (tests compare the two)."""
    mm = np.uint64(m)
    p = pos
    while mm != 0:
        out[p] = base + trailing_zeros(mm)
        p += 1
        mm &= mm - np.uint64(1)
    return p


@njit(nogil=True, cache=True)
def compress64_call(m, base, out, pos):
    """:func:`compress64` compiled (tests)."""
    return compress64(m, base, out, pos)
