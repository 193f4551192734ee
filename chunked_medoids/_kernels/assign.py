"""numba kernels for the nearest / second-nearest medoid caches.

Pure numba, numpy in / numpy out (no package, dask, zarr or h5py imports).

Notation (docs/architecture.rst §4): ``M`` is the (n, k) medoid table, ``M[o, s] = D[o, medoids[s]]``,
in the dtype of the dissimilarity.  The caches are

* ``dn[o]``, ``ds[o]`` -- distance to the nearest / second-nearest medoid (source dtype),
* ``nn[o]``, ``sn[o]`` -- their slots (int32; ``sn = -1`` and ``ds = big`` when k = 1),

Ties: on equal distances the lowest slot is the nearest (strict ``<`` while scanning slots
in increasing order); a medoid is always assigned to its own slot, even when another
medoid is a duplicate of it.  Distances are compared in the stored dtype; sums are
accumulated in float64.

Every function is ``@njit(nogil=True, cache=True)`` and allocation-free unless it says
otherwise.

After a swap, :func:`swap_update_losses` (the body of ``swap.apply_swap``) does the work of
:func:`swap_update`, :func:`removal_loss` and :func:`loss_sum` in one pass over the points,
bitwise the same; the three stay the definitions (and are used on their own elsewhere).
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.extending import intrinsic, overload


def _big_of(x):  # pragma: no cover - python fallback, replaced by the overload in numba
    """The "no second medoid" distance for the dtype of ``x``: inf, or the integer max."""
    if isinstance(x, (np.floating, float)):
        return np.inf
    return np.iinfo(type(x)).max


@overload(_big_of, jit_options={"nogil": True, "cache": True})
def _ov_big_of(x):
    from numba import types

    if isinstance(x, types.Float):
        if x.bitwidth == 32:
            def impl32(x):
                return np.float32(np.inf)
            return impl32

        def impl64(x):
            return np.float64(np.inf)
        return impl64
    if isinstance(x, types.Integer):
        if x.bitwidth == 32:
            mx32 = np.iinfo(np.int32).max

            def impli32(x):
                return np.int32(mx32)
            return impli32
        mx64 = np.iinfo(np.int64).max

        def impli64(x):
            return np.int64(mx64)
        return impli64
    return None


@njit(nogil=True, cache=True)
def rescan_point(M, o, medoid_slot, dn, ds, nn, sn):
    """Recompute nearest / second-nearest of point ``o`` from row ``o`` of ``M``.

    ``medoid_slot`` is the slot of which ``o`` is the medoid (-1 if ``o`` is no medoid);
    such a point is forced into its own slot.
    """
    k = M.shape[1]
    big = _big_of(M[o, 0])
    bn = big
    bs = big
    ibn = -1
    ibs = -1
    if medoid_slot >= 0:
        bn = M[o, medoid_slot]
        ibn = medoid_slot
        for s in range(k):
            if s == medoid_slot:
                continue
            d = M[o, s]
            if d < bs or ibs < 0:
                bs = d
                ibs = s
    else:
        for s in range(k):
            d = M[o, s]
            if d < bn or ibn < 0:
                bs = bn
                ibs = ibn
                bn = d
                ibn = s
            elif d < bs or ibs < 0:
                bs = d
                ibs = s
    dn[o] = bn
    nn[o] = ibn
    if ibs < 0:
        ds[o] = big
        sn[o] = -1
    else:
        ds[o] = bs
        sn[o] = ibs


@njit(nogil=True, cache=True)
def assign_all(M, medoids, dn, ds, nn, sn):
    """Fill the caches of every point from the medoid table (O(n·k)).

    Parameters
    ----------
    M : (n, k) array, C-contiguous, source dtype
    medoids : (k,) int64
    dn, ds : (n,) source dtype (output)
    nn, sn : (n,) int32 (output)
    """
    n = M.shape[0]
    k = M.shape[1]
    for o in range(n):
        rescan_point(M, o, -1, dn, ds, nn, sn)
    for s in range(k):
        rescan_point(M, medoids[s], s, dn, ds, nn, sn)


@njit(nogil=True, cache=True)
def _second_excluding(M, o, exclude, ds, sn):
    """Rescan the second nearest of ``o`` over every slot but ``exclude`` (= nn[o])."""
    k = M.shape[1]
    best = _big_of(M[o, 0])
    ib = -1
    for s in range(k):
        if s == exclude:
            continue
        d = M[o, s]
        if ib < 0 or d < best:
            best = d
            ib = s
    ds[o] = best
    sn[o] = ib


@njit(nogil=True, cache=True)
def swap_update(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn):
    """Swap slot ``b`` for point ``j`` whose row of D is ``row``, updating every cache.

    The rules of docs/architecture.rst §4, with ``d = row[o] = D[o, j]``:

    * ``nn[o] == b``: the nearest becomes ``j`` if ``d < ds[o]`` (staying in slot b), else
      the old second; the second is then rescanned from M (excluding the new nearest).
    * else ``d < dn[o]``: j (slot b) becomes nearest, the old nearest becomes second.
    * else ``d < ds[o]``: j becomes second.
    * else ``sn[o] == b``: the second is rescanned from M.

    Finally point ``j`` is forced into its own slot.  ``M[:, b]``, ``medoids[b]`` and
    ``is_medoid`` are updated in place.  O(n) plus O(k) per rescan; no allocation.
    """
    n = M.shape[0]
    k = M.shape[1]
    old = medoids[b]
    is_medoid[old] = False
    is_medoid[j] = True
    medoids[b] = j
    for o in range(n):
        M[o, b] = row[o]
    if k == 1:
        for o in range(n):
            dn[o] = row[o]
        return
    for o in range(n):
        d = row[o]
        if nn[o] == b:
            if d < ds[o]:
                dn[o] = d
                _second_excluding(M, o, b, ds, sn)
            else:
                dn[o] = ds[o]
                nn[o] = sn[o]
                _second_excluding(M, o, sn[o], ds, sn)
        elif d < dn[o]:
            ds[o] = dn[o]
            sn[o] = nn[o]
            dn[o] = d
            nn[o] = b
        elif d < ds[o]:
            ds[o] = d
            sn[o] = b
        elif sn[o] == b:
            _second_excluding(M, o, nn[o], ds, sn)
    if nn[j] != b:
        rescan_point(M, j, b, dn, ds, nn, sn)


@njit(nogil=True, cache=True)
def removal_loss(dn, ds, nn, w, weighted, R):
    """``R[s] = Σ_{o: nn[o]=s} w_o·(ds[o] − dn[o])`` in float64 (R is zeroed first).

    With k = 1 there is no second medoid and R stays 0 (the swap kernels handle k = 1
    separately).
    """
    k = R.shape[0]
    for s in range(k):
        R[s] = 0.0
    if k == 1:
        return
    n = dn.shape[0]
    for o in range(n):
        diff = np.float64(ds[o]) - np.float64(dn[o])
        if weighted:
            R[nn[o]] += w[o] * diff
        else:
            R[nn[o]] += diff


@njit(nogil=True, cache=True)
def loss_sum(dn, w, weighted):
    """``Σ_o w_o·dn[o]`` accumulated in float64, in index order."""
    acc = 0.0
    n = dn.shape[0]
    if weighted:
        for o in range(n):
            acc += w[o] * np.float64(dn[o])
    else:
        for o in range(n):
            acc += np.float64(dn[o])
    return acc


# --- the fused swap + losses pass (apply_swap) ---------------------------------------------


@intrinsic
def _prefetch_write(typingctx, M, o, s):
    """Hint that ``M[o, s]`` (2-D array, in bounds) is about to be written: LLVM's
    ``llvm.prefetch`` (rw = 1, locality 3, data), ``prefetchw`` on x86-64, no-op elsewhere.
    A hint only: it never faults and changes no value."""
    sig = types.void(M, o, s)

    def codegen(context, builder, signature, args):
        aty = signature.args[0]
        A = context.make_array(aty)(context, builder, args[0])
        idx = [context.cast(builder, args[i], signature.args[i], types.intp) for i in (1, 2)]
        ptr = cgutils.get_item_pointer2(context, builder, A.data, cgutils.unpack_tuple(builder, A.shape, 2),
                                        cgutils.unpack_tuple(builder, A.strides, 2), aty.layout, idx,
                                        wraparound=False, boundscheck=False)
        i8p = ir.IntType(8).as_pointer()
        i32 = ir.IntType(32)
        # unmangled name: the IR parser upgrades it to the overload of this LLVM's pointers
        fn = cgutils.get_or_insert_function(builder.module, ir.FunctionType(ir.VoidType(), [i8p, i32, i32, i32]),
                                            "llvm.prefetch")
        builder.call(fn, [builder.bitcast(ptr, i8p), ir.Constant(i32, 1), ir.Constant(i32, 3), ir.Constant(i32, 1)])
        return context.get_dummy_value()

    return sig, codegen


#: how many rows ahead the fused pass prefetches its store into column b of M (the
#: column write misses once per row; the hardware prefetchers lose a stride of k·itemsize
#: at every page boundary).
PREFETCH_ROWS = 16


@njit(nogil=True, cache=True, fastmath={"nnan", "nsz"})
def _min_range(M, o, lo, hi, best):
    """``min(best, M[o, lo:hi])`` as a value (``v if v < best else best``), for
    :func:`_second_fast`.  The fast-math flags (no NaN, signed zeros interchangeable) let
    LLVM vectorise the float reduction; they can only change which of ``-0.0`` / ``+0.0``
    is returned, and the caller only compares the result with ``==``."""
    for s in range(lo, hi):
        v = M[o, s]
        best = v if v < best else best
    return best


@njit(nogil=True, cache=True)
def _second_fast(M, o, exclude, ds, sn):
    """:func:`_second_excluding`, branch-light: the minimum over every slot but ``exclude``
    (one vectorisable reduction), then the first such slot whose value equals it.

    Bitwise the same (``ds[o]`` is read back from ``M[o, sn[o]]``): the old scan keeps the
    first slot of the minimal value under ``<``, i.e. the first slot ``== min`` (``-0.0``
    and ``+0.0`` are equal, so whichever zero the reduction returns finds the same slot).
    A row whose other slots all hold the "no second" value ``big`` (inf / integer max)
    gives the first other slot, as before.  Should no slot equal the minimum (only
    possible with NaN, which validated data cannot hold) the old scan runs.
    """
    k = M.shape[1]
    big = _big_of(M[o, 0])
    best = _min_range(M, o, 0, exclude, big)
    best = _min_range(M, o, exclude + 1, k, best)
    for s in range(k):
        if M[o, s] == best and s != exclude:
            ds[o] = M[o, s]
            sn[o] = s
            return
    _second_excluding(M, o, exclude, ds, sn)  # pragma: no cover - NaN in M only


@njit(nogil=True, cache=True)
def swap_update_three_passes(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    """The definition :func:`swap_update_losses` fuses: :func:`swap_update`, then
    :func:`removal_loss` into ``R``, then :func:`loss_sum` (returned).  Three passes over the
    points; the tests and ``benchmarks/bench_apply.py`` compare the two."""
    swap_update(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn)
    removal_loss(dn, ds, nn, w, weighted, R)
    return loss_sum(dn, w, weighted)


#: up to this many slots the plain scan of :func:`_second_excluding` is the faster rescan
#: (measured by benchmarks/bench_apply.py); above it, :func:`_second_fast`.
SMALL_K = 16


@njit(nogil=True, cache=True)
def swap_update_losses(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    """:func:`swap_update`, then :func:`removal_loss` into ``R``, then return
    :func:`loss_sum` -- in one pass over the points, bitwise the same in every output.

    Point ``o`` is finished (``M[o, b]`` written, its caches updated by the rules of
    :func:`swap_update`) before its terms are added, so ``R[nn[o]] += w_o·(ds[o] − dn[o])``
    and ``TD += w_o·dn[o]`` see the final values and run in index order: the same float64
    terms in the same order as the two separate sums (R zeroed first; with k = 1 R stays
    0).  Point ``j``'s forced rescan depends only on row ``j`` of M, which is final once
    ``M[j, b]`` is written, so it runs at ``o == j``.  Second-nearest rescans use
    :func:`_second_excluding` up to :data:`SMALL_K` slots, the vectorised
    :func:`_second_fast` above.
    Replaces three passes over the points (and a fourth over column b of M) by one, the
    store into column b prefetched :data:`PREFETCH_ROWS` rows ahead; the update rules are
    written inline (a helper call per point costs reference counting).  Measured by
    benchmarks/bench_apply.py on the swaps of real walks (n = 20000): about 1.6x faster
    per swap at k = 100; at k = 10 within the noise to about 1.2x.
    """
    n = M.shape[0]
    k = M.shape[1]
    old = medoids[b]
    is_medoid[old] = False
    is_medoid[j] = True
    medoids[b] = j
    for s in range(k):
        R[s] = 0.0
    td = 0.0
    if k == 1:  # swap_update: M and dn take the row; no second medoid, R stays 0
        for o in range(n):
            d = row[o]
            M[o, 0] = d
            dn[o] = d
            td += (w[o] if weighted else 1.0) * np.float64(d)
        return td
    if k <= SMALL_K:
        return _pass(row, b, j, M, dn, ds, nn, sn, R, w, weighted, _SCAN)
    return _pass(row, b, j, M, dn, ds, nn, sn, R, w, weighted, _FAST)


# The rescan of the k >= 2 pass, chosen at compile time by the *type* of ``how``
# (:data:`_SCAN` / :data:`_FAST`), so the pass is one body compiled twice: a runtime choice
# inside the loop slows the small-k loop by ~25 %, and passing the function as an argument
# defeats numba's cache.
_SCAN = np.int8(0)
_FAST = np.int16(0)


def _rescan_second(M, o, exclude, ds, sn, how):  # pragma: no cover - replaced by the overload in numba
    """:func:`_second_excluding` for ``how`` = :data:`_SCAN`, :func:`_second_fast` for :data:`_FAST`."""
    raise NotImplementedError


@overload(_rescan_second, jit_options={"nogil": True, "cache": True})
def _ov_rescan_second(M, o, exclude, ds, sn, how):
    if how == types.int8:
        return lambda M, o, exclude, ds, sn, how: _second_excluding(M, o, exclude, ds, sn)
    return lambda M, o, exclude, ds, sn, how: _second_fast(M, o, exclude, ds, sn)


@njit(nogil=True, cache=True)
def _pass(row, b, j, M, dn, ds, nn, sn, R, w, weighted, how):
    """The k >= 2 pass of :func:`swap_update_losses` (R already zeroed); the rescan by ``how``."""
    n = M.shape[0]
    td = 0.0
    for o in range(n):
        op = o + PREFETCH_ROWS
        _prefetch_write(M, op if op < n else n - 1, b)
        d = row[o]
        M[o, b] = d
        p = nn[o]
        if p == b:
            if d < ds[o]:
                dn[o] = d
                _rescan_second(M, o, b, ds, sn, how)
            else:
                q = sn[o]
                dn[o] = ds[o]
                nn[o] = q
                _rescan_second(M, o, q, ds, sn, how)
        elif d < dn[o]:
            ds[o] = dn[o]
            sn[o] = p
            dn[o] = d
            nn[o] = b
        elif d < ds[o]:
            ds[o] = d
            sn[o] = b
        elif sn[o] == b:
            _rescan_second(M, o, p, ds, sn, how)
        if o == j:
            if nn[o] != b:
                rescan_point(M, j, b, dn, ds, nn, sn)
        x = np.float64(dn[o])
        wo = w[o] if weighted else 1.0  # x * 1.0 == x bitwise: the unweighted sums are unchanged
        R[nn[o]] += wo * (np.float64(ds[o]) - x)
        td += wo * x
    return td
