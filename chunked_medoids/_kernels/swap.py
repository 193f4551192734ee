"""numba kernels of the swap phase: PAM, FastPAM1/2 and FasterPAM (docs/architecture.rst §4).

Pure numba, numpy in / numpy out.  A *candidate* ``j`` is evaluated from its row of D
(``row[o] = D[o, j]``, D symmetric), against the caches ``dn, ds, nn`` and the removal
loss ``R`` (see :mod:`.assign`).  Every per-candidate reduction runs over one full row in
index order, so results never depend on how rows are grouped into blocks.

Arithmetic: distances are compared in the stored dtype; differences are formed in float64
(``float64(a) - float64(b)``, exact for float32 and for integers below 2**53) and
accumulated in float64 in index order.  Weighted and unweighted loops are written out
separately so the unweighted hot loop carries no multiplication.

Ties: lowest slot between slots (strict ``<`` scanning slots upwards); earliest candidate
between candidates (strict ``<`` scanning candidates in order).  PAM and FastPAM1 choose the
earliest (candidate, slot) pair whose ΔTD is within the rounding margin of the best
(:func:`select_best`), so exact ties computed along their different paths agree.
A swap is taken iff it
strictly improves the loss beyond ``tol·TD`` (:func:`accept_swap`): ``ΔTD < -tol·TD``,
where a ΔTD within :data:`NOISE`·TD of that bound is confirmed by recomputing the loss
after the swap exactly as TD itself is computed (an ordered Σ w·dn).  Without this guard
the float64 sums ``R[s] + Σ(dn − ds)`` leave a rounding residue of either sign when a
candidate is an exact duplicate of a medoid (ΔTD = 0 mathematically), and the eager loop
would swap duplicates back and forth forever.
"""

from __future__ import annotations

import numpy as np
from numba import njit, types
from numba.cpython.unsafe.numbers import trailing_zeros
from numba.extending import overload

from .assign import swap_update_losses
from .convert import f16_finite, f16_row, f16_thresholds, f16_value
from .handoff import finish, next_batch
from .simd import compress64, load_relaxed, lt_mask64, max_gt, min_lt, prefetch_read, store_relaxed


@njit(nogil=True, cache=True, error_model="numpy")
def pass_terms(d, a, b, nno, wo, weighted, P, acc):
    """The FastPAM1 terms of one point with ``d < ds[o]`` (float64 ``d``, ``a = dn[o]``,
    ``b = ds[o]``, ``nno = nn[o]``): ``acc += min(d, a) − a``, ``P[nno] += max(d, a) − b``
    (each times ``wo`` when weighted).  Returns the new ``acc``.

    ``min`` / ``max`` are :func:`~.simd.min_lt` / :func:`~.simd.max_gt` (one instruction
    each on x86-64; with ``d < b`` and finite caches they equal the built-ins, up to the sign
    of a zero that only ever meets ``- a`` or ``- b``), and ``P`` is indexed unsigned (no
    negative-index wrap code): the scalar work per passing point is about 18 instructions.
    """
    s = np.uint32(nno)
    if weighted:
        acc += wo * (min_lt(d, a) - a)
        P[s] += wo * (max_gt(d, a) - b)
    else:
        acc += min_lt(d, a) - a
        P[s] += max_gt(d, a) - b
    return acc


#: points per comparison mask of :func:`eval_candidate` (bits of a uint64).
MASK_BITS = 64
#: from this k on, :func:`eval_candidate` first compacts the passing indices of the whole row
#: (:func:`~.simd.compress64`) and then visits them in one loop.  About 2/k of the points pass
#: ``d < ds`` (a candidate falls inside the second-nearest radius of that share), and the
#: loop over each mask's bits ends with a mispredicted branch per 64 points: at k >= 12
#: (n = 20000 hubble pixels: 11 % pass) the list is 6-20 % faster per candidate, at k = 10
#: (18-21 % pass) 5 % slower, where the bits of each mask are visited while the 64 values
#: are still in L1 (``benchmarks/bench_features.py --part swap``).  Same points, same order,
#: same terms: the result is bitwise the same either way.
LIST_MIN_K = 12


#: how far ahead (bytes) the candidate kernels hint the lines of each row they stream
#: (:func:`~.simd.prefetch_read`, one hint per cache line of each 64-point window).  The
#: hardware stream prefetchers restart at each 4 KiB page boundary, and the scalar work on
#: the passing points leaves the four row streams of :func:`eval_quad` behind.  Measured on
#: the n = 20000 pixels (in-memory float32, four rows per sweep, one thread): 1, 2 and 4 KiB
#: ahead all cut the time per element 10-13 % at k = 10 (0.48 -> 0.42 ns) and about 15 % at
#: k = 100 (0.31 -> 0.26 ns), 8 KiB less; prefetching into L2 only (``prefetcht1/t2``) gained
#: less.  ``benchmarks/bench_ab.py`` compares the kernels and the walk with a previous
#: commit.  A hint only: no value is read or changed through it.
PREFETCH_BYTES = 2048


def _prefetch_window(row, base):  # pragma: no cover - replaced by the overload in numba
    """Hint the cache lines of ``row[base + ahead : base + ahead + 64]``, ahead =
    :data:`PREFETCH_BYTES` worth of elements, clamped to the row (``len(row) >= 64``)."""


@overload(_prefetch_window, inline="always", jit_options={"nogil": True, "cache": True})
def _ov_prefetch_window(row, base):
    size = max(1, getattr(row.dtype, "bitwidth", 8) // 8)  # compile-time constants of the row type
    ahead = PREFETCH_BYTES // size
    step = max(1, 64 // size)

    def impl(row, base):
        p = min(base + ahead, row.shape[0] - MASK_BITS)
        for q in range(0, MASK_BITS, step):
            prefetch_read(row, p + q)

    return impl


@njit(nogil=True, cache=True)
def eval_candidate(row, dn, ds, nn, R, w, weighted, P, buf):
    """FastPAM1 kernel: fill ``P`` (k,) and return ``acc`` so that ΔTD(s) = P[s] + acc.

    ``P = R.copy(); acc = 0``; for each point o with ``d = row[o]``: if ``d < dn[o]``:
    ``acc += d − dn[o]; P[nn[o]] += dn[o] − ds[o]``; elif ``d < ds[o]``:
    ``P[nn[o]] += d − ds[o]`` (each term times ``w[o]`` when weighted).  With k = 1
    (no second medoid) ``P[0] = 0`` and ``acc = Σ w_o (d − dn[o])``.  O(n + k).

    Implementation (vector compare, scalar work only where it is needed): the points are
    compared with ``ds`` 64 at a time into a bit mask (:func:`~.simd.lt_mask64`: one vector
    compare and a mask move); only the
    set bits -- the few points with ``d < ds[o]``, the only ones that contribute -- are
    visited, in increasing o, adding ``min(d, dn) − dn`` to acc and ``max(d, dn) − ds`` to
    ``P[nn]`` (:func:`pass_terms`).  These are exactly the terms above (the extra terms are
    exact zeros), summed in the same order, so the result is bitwise that of the textbook
    loop.  From k = :data:`LIST_MIN_K` on (few points pass) the passing indices of the whole
    row are first compacted into ``buf`` (int32 scratch of at least ``n - n % 64`` entries;
    a shorter ``buf`` takes the mask loop) and then visited in one loop: the same points in
    the same order.  The body is compiled once per value of ``weighted`` (a constant in each
    inlined copy: no weight loads or selects in the unweighted loop).
    """
    if weighted:
        return _candidate_body(row, dn, ds, nn, R, w, True, P, buf)
    return _candidate_body(row, dn, ds, nn, R, w, False, P, buf)


@njit(nogil=True, cache=True, inline="always")
def _candidate_body(row, dn, ds, nn, R, w, weighted, P, buf):
    k = R.shape[0]
    n = row.shape[0]
    acc = 0.0
    if k == 1:
        P[0] = 0.0
        if weighted:
            for o in range(n):
                acc += w[o] * (np.float64(row[o]) - np.float64(dn[o]))
        else:
            for o in range(n):
                acc += np.float64(row[o]) - np.float64(dn[o])
        return acc
    for s in range(k):
        P[s] = R[s]
    nfull = n - n % MASK_BITS
    lst = _list_buf(buf)
    if k >= LIST_MIN_K and lst.shape[0] >= nfull:
        # sparse rows: the passing indices first (no branch per bit), then one loop over them
        c = 0
        for base in range(0, nfull, MASK_BITS):
            _prefetch_window(row, base)
            c = compress64(lt_mask64(row, base, ds, base), base, lst, c)
        for t in range(c):
            o = np.uint32(lst[t])
            acc = pass_terms(np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                             w[o] if weighted else 1.0, weighted, P, acc)
    else:
        for base in range(0, nfull, MASK_BITS):
            _prefetch_window(row, base)
            m = lt_mask64(row, base, ds, base)
            ub = np.uint64(base)
            while m != 0:
                o = ub | np.uint64(trailing_zeros(m))  # unsigned: no wrap code on the loads
                m &= m - np.uint64(1)
                acc = pass_terms(np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                                 w[o] if weighted else 1.0, weighted, P, acc)
    for o in range(nfull, n):
        if row[o] < ds[o]:
            acc = pass_terms(np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                             w[o] if weighted else 1.0, weighted, P, acc)
    return acc


#: relative band (of TD) below which a computed ΔTD may be float64 rounding residue of the
#: O(n) sums; swaps whose ΔTD falls in it are confirmed by an exact loss recomputation.
#: (Widened to ``4·γ`` of :func:`rounding_margin` for n above about 2 million points.)
NOISE = 1e-9
#: unit roundoff of float64 (half the machine epsilon): |fl(x) − x| <= U·|x|.
U = 2.0 ** -53


def _list_buf(buf):
    """``buf``, or an empty int32 array for None (then :func:`eval_candidate` takes the mask loop)."""
    return np.empty(0, dtype=np.int32) if buf is None else buf


@overload(_list_buf)
def _list_buf_nb(buf):  # None is decided at compile time
    if buf is None or isinstance(buf, types.NoneType):
        return lambda buf: np.empty(0, dtype=np.int32)
    return lambda buf: buf


def _exact_sums(row):
    """Whether sums of ``row``'s values are exact in float64 (integer dtype)."""
    return np.issubdtype(np.asarray(row).dtype, np.integer)


@overload(_exact_sums)
def _exact_sums_nb(row):  # decided at compile time from the dtype
    if isinstance(row.dtype, types.Integer):
        return lambda row: True
    return lambda row: False


@njit(nogil=True, cache=True)
def rounding_margin(row, weighted, td):
    """Bound on the rounding error of comparing two losses computed as ordered float64 sums.

    A loss ``TD = Σ_o t_o`` of n non-negative terms (``t_o = w_o·dn[o]``; one rounding per
    product when weighted), summed left to right in float64, satisfies
    ``|fl(TD) − TD| <= γ·TD`` with ``γ = m·U / (1 − m·U)``, ``m = n + 1`` (n − 1 additions,
    the product, one spare for ``fl(TD)`` standing in for ``TD`` on the right; recursive
    summation bound, Higham, *Accuracy and Stability of Numerical Algorithms*, §4.2).  So when
    the computed new loss is below the computed TD by more than ``2·γ·TD`` the true new loss
    is certainly below the true TD; a smaller computed gain may be rounding alone and is
    refused ("not larger than the rounding error of the sums", the rule of R's ``pam``).
    Integer matrices without weights sum exactly (below 2**53): margin 0, so "strict
    improvement" stays exact there.
    """
    return _margin(row.shape[0], _exact_sums(row), weighted, td)


@njit(nogil=True, cache=True)
def _margin(n, exact, weighted, td):
    if exact and not weighted and td < 9.0e15:
        return 0.0
    m = n + 1.0
    g = m * U / (1.0 - m * U)
    return 2.0 * g * td


def tie_margin(dtype, n, weighted, td):
    """Tolerance of :func:`select_best`: twice :func:`rounding_margin` for a matrix of
    ``dtype`` with ``n`` points and loss ``td`` (0 for unweighted integer matrices)."""
    exact = bool(np.issubdtype(np.dtype(dtype), np.integer))
    return 2.0 * float(_margin(int(n), exact, bool(weighted), float(td)))


@njit(nogil=True, cache=True)
def swapped_loss(row, s, dn, ds, nn, w, weighted):
    """The loss Σ_o w_o·new_o after swapping slot ``s`` for the candidate whose row is ``row``.

    ``new_o = min(d, ds[o])`` if ``nn[o] == s`` else ``min(d, dn[o])`` -- exactly the new
    nearest distance the cache update would store, summed in index order in float64 like
    :func:`~chunked_medoids._kernels.assign.loss_sum`, so it equals the TD that
    :func:`apply_swap` would return.  With k = 1 the new loss is Σ w·d.
    """
    n = row.shape[0]
    acc = 0.0
    for o in range(n):
        d = row[o]
        if nn[o] == s:
            b = ds[o]  # "no second medoid" (k = 1) is inf / the integer max: new = d
            new = d if d < b else b
        else:
            a = dn[o]
            new = d if d < a else a
        if weighted:
            acc += w[o] * np.float64(new)
        else:
            acc += np.float64(new)
    return acc


@njit(nogil=True, cache=True)
def accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, delta):
    """Whether the swap (slot ``s`` ← candidate ``row``) with computed ``delta`` is taken.

    Taken iff it improves the loss by more than ``tol·TD``: ``delta < -tol·TD`` and, when
    ``delta`` lies within ``NOISE·TD`` of that bound (where float64 rounding of the O(n)
    sums could fake an improvement), the loss recomputed after the swap exactly as TD is
    computed satisfies ``new < TD − tol·TD − margin``, ``margin`` being the rounding error
    bound of comparing two such sums (:func:`rounding_margin`; 0 for integer matrices
    without weights).  So a swap whose only gain is rounding (e.g. 164.70000000000002 →
    164.7 between two medoid sets of equal true loss) is refused.  With TD = 0 no swap can
    improve.
    """
    bound = -tol * td
    if not (delta < bound) or td <= 0.0:
        return False
    margin = rounding_margin(row, weighted, td)
    if delta < bound - max(NOISE * td, 2.0 * margin):
        return True
    return swapped_loss(row, s, dn, ds, nn, w, weighted) < td + bound - margin


@njit(nogil=True, cache=True)
def best_slot(P, acc):
    """``(slot, ΔTD)`` minimising ``P[s] + acc``; lowest slot on ties."""
    k = P.shape[0]
    bs = 0
    bd = P[0] + acc
    for s in range(1, k):
        v = P[s] + acc
        if v < bd:
            bd = v
            bs = s
    return bs, bd


@njit(nogil=True, cache=True)
def _push_record(rd, rj, rs, nrec, d, j, s):
    """Append (d, j, s) to the record arrays, doubling their capacity when full."""
    if nrec == rd.shape[0]:
        rd2 = np.empty(2 * nrec, dtype=np.float64)
        rj2 = np.empty(2 * nrec, dtype=np.int64)
        rs2 = np.empty(2 * nrec, dtype=np.int64)
        rd2[:nrec] = rd
        rj2[:nrec] = rj
        rs2[:nrec] = rs
        rd, rj, rs = rd2, rj2, rs2
    rd[nrec] = d
    rj[nrec] = j
    rs[nrec] = s
    return rd, rj, rs, nrec + 1


@njit(nogil=True, cache=True)
def fastpam1_records(block, start, is_medoid, dn, ds, nn, R, w, weighted):
    """Running-minimum records of ΔTD over the (candidate, slot) pairs of ``block``.

    The pairs are scanned in order (candidates start..start+m, medoids skipped; slots
    0..k-1 within a candidate) and every pair whose ΔTD is strictly below all earlier ones
    is recorded.  Returns ``(rd, rj, rs)``: the records' ΔTD (strictly decreasing),
    candidate and slot.  The last record is the block's best pair (earliest on exact ties);
    the records are what :func:`select_best` needs to pick the earliest pair *within the
    rounding margin* of the best over all blocks (``docs/architecture.rst`` §5).
    """
    k = R.shape[0]
    P = np.empty(k, dtype=np.float64)
    buf = np.empty(dn.shape[0], dtype=np.int32)
    rd = np.empty(16, dtype=np.float64)
    rj = np.empty(16, dtype=np.int64)
    rs = np.empty(16, dtype=np.int64)
    nrec = 0
    bd = np.inf
    for i in range(block.shape[0]):
        j = start + i
        if is_medoid[j]:
            continue
        acc = eval_candidate(block[i], dn, ds, nn, R, w, weighted, P, buf)
        for s in range(k):
            v = P[s] + acc
            if v < bd:
                bd = v
                rd, rj, rs, nrec = _push_record(rd, rj, rs, nrec, v, j, s)
    return rd[:nrec].copy(), rj[:nrec].copy(), rs[:nrec].copy()


def _last_record(rec):
    rd, rj, rs = rec
    if rd.shape[0] == 0:
        return np.inf, -1, -1
    return float(rd[-1]), int(rj[-1]), int(rs[-1])


def fastpam1_block(block, start, is_medoid, dn, ds, nn, R, w, weighted):
    """Best (ΔTD, candidate, slot) over the rows of ``block`` (candidates start..start+m).

    Medoids are skipped.  Earliest candidate wins exact ties, then the lowest slot.  Returns
    ``(inf, -1, -1)`` when the block holds only medoids.  (The last of
    :func:`fastpam1_records`.)
    """
    return _last_record(fastpam1_records(block, start, is_medoid, dn, ds, nn, R, w, weighted))


@njit(nogil=True, cache=True)
def fastpam2_block(block, start, is_medoid, dn, ds, nn, R, w, weighted, best_delta, best_cand):
    """Per slot, the best candidate of this block: fills ``best_delta`` (k,) float64 and
    ``best_cand`` (k,) int64 (``inf`` / ``-1`` when none).  Earliest candidate wins ties."""
    k = R.shape[0]
    P = np.empty(k, dtype=np.float64)
    buf = np.empty(dn.shape[0], dtype=np.int32)
    for s in range(k):
        best_delta[s] = np.inf
        best_cand[s] = -1
    for i in range(block.shape[0]):
        j = start + i
        if is_medoid[j]:
            continue
        acc = eval_candidate(block[i], dn, ds, nn, R, w, weighted, P, buf)
        for s in range(k):
            v = P[s] + acc
            if v < best_delta[s]:
                best_delta[s] = v
                best_cand[s] = j


@njit(nogil=True, cache=True)
def pam_delta(row, s, dn, ds, nn, w, weighted):
    """Classic PAM: ΔTD of swapping slot ``s`` for the candidate whose row is ``row``.

    ``Σ_o w_o·(new_o − dn[o])`` with ``new_o = min(d, ds[o])`` if ``nn[o] == s`` else
    ``min(d, dn[o])``.  O(n) per (slot, candidate) pair, so O(k·n) per candidate.
    """
    n = row.shape[0]
    acc = 0.0
    for o in range(n):
        d = row[o]
        a = dn[o]
        if nn[o] == s:
            b = ds[o]
            new = d if d < b else b
        else:
            new = d if d < a else a
        diff = np.float64(new) - np.float64(a)
        if weighted:
            acc += w[o] * diff
        else:
            acc += diff
    return acc


@njit(nogil=True, cache=True)
def pam_records(block, start, is_medoid, dn, ds, nn, k, w, weighted):
    """:func:`fastpam1_records` by the original O(k·n²)-per-iteration PAM evaluation (every
    (slot, candidate) pair separately): same scan order, same records."""
    rd = np.empty(16, dtype=np.float64)
    rj = np.empty(16, dtype=np.int64)
    rs = np.empty(16, dtype=np.int64)
    nrec = 0
    bd = np.inf
    for i in range(block.shape[0]):
        j = start + i
        if is_medoid[j]:
            continue
        for s in range(k):
            dlt = pam_delta(block[i], s, dn, ds, nn, w, weighted)
            if dlt < bd:
                bd = dlt
                rd, rj, rs, nrec = _push_record(rd, rj, rs, nrec, dlt, j, s)
    return rd[:nrec].copy(), rj[:nrec].copy(), rs[:nrec].copy()


def pam_block(block, start, is_medoid, dn, ds, nn, k, w, weighted):
    """Best (ΔTD, candidate, slot) of this block by the original PAM evaluation.  Same tie
    rules as :func:`fastpam1_block` (the last of :func:`pam_records`)."""
    return _last_record(pam_records(block, start, is_medoid, dn, ds, nn, k, w, weighted))


def select_best(records, tie):
    """The swap PAM / FastPAM1 take from the blocks' records (in block order).

    ``best`` is the smallest ΔTD over all records; the pair chosen is the *earliest* (in
    candidate, then slot order) whose ΔTD is within ``tie`` of ``best``.  ``tie`` is twice
    the rounding margin of the sums (:func:`rounding_margin`; 0 for integer matrices), so
    pairs whose gains are equal up to rounding -- exact ties computed along different
    paths, as PAM and FastPAM1 do -- resolve to the same pair, and with ``tie = 0`` this is
    the plain rule "smallest ΔTD, earliest on ties".  The earliest such pair is always a
    running-minimum record of its block, so the records suffice.  Returns ``(ΔTD, j, s)``
    or ``(inf, -1, -1)``.
    """
    best = np.inf
    for rd, _, _ in records:
        if rd.shape[0] and rd[-1] < best:
            best = float(rd[-1])
    if not np.isfinite(best):
        return np.inf, -1, -1
    for rd, rj, rs in records:
        hit = np.flatnonzero(rd <= best + tie)
        if hit.size:
            i = int(hit[0])
            return float(rd[i]), int(rj[i]), int(rs[i])
    return np.inf, -1, -1  # pragma: no cover - the best record always qualifies


#: candidates the eager FasterPAM loops evaluate together in one sweep over the caches
#: (:func:`eval_group`).  Each candidate's terms form their own float64 chains (``acc`` and
#: ``P[nn[o]]`` through memory, a store-to-load forwarding chain wherever consecutive passing
#: points share their nearest medoid); four independent chains interleaved hide each other's
#: latency, and the 64 values of ``ds`` are compared once for the four rows.  Measured on the
#: n = 20000 pixels (one thread, one sweep per candidate): 25-30 % less time per candidate
#: at k = 10, 20 and 100 than one candidate at a time.
GROUP = 4


@njit(nogil=True, cache=True, inline="always")
def _one_bit(ub, m, row, dn, ds, nn, w, weighted, P, acc):
    """The terms of the lowest set bit of ``m`` (point ``ub | bit``); returns (rest of m, acc)."""
    o = ub | np.uint64(trailing_zeros(m))
    acc = pass_terms(np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                     w[o] if weighted else 1.0, weighted, P, acc)
    return m & (m - np.uint64(1)), acc


@njit(nogil=True, cache=True, inline="always")
def _two_masks(ub, m1, m2, r1, r2, dn, ds, nn, w, weighted, P1, P2, a1, a2):
    """All bits of ``m1`` (row ``r1``) and ``m2`` (row ``r2``), in increasing order within each,
    the two chains interleaved while both have bits."""
    while m1 != 0 and m2 != 0:
        m1, a1 = _one_bit(ub, m1, r1, dn, ds, nn, w, weighted, P1, a1)
        m2, a2 = _one_bit(ub, m2, r2, dn, ds, nn, w, weighted, P2, a2)
    while m1 != 0:
        m1, a1 = _one_bit(ub, m1, r1, dn, ds, nn, w, weighted, P1, a1)
    while m2 != 0:
        m2, a2 = _one_bit(ub, m2, r2, dn, ds, nn, w, weighted, P2, a2)
    return a1, a2


@njit(nogil=True, cache=True, inline="always")
def _tail(row, o, dn, ds, nn, w, weighted, P, acc):
    if row[o] < ds[o]:
        return pass_terms(np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                          w[o] if weighted else 1.0, weighted, P, acc)
    return acc


@njit(nogil=True, cache=True)
def eval_quad(r0, r1, r2, r3, dn, ds, nn, R, w, weighted, PG):
    """:func:`eval_candidate` of four rows in one sweep: ``PG[g]`` and the returned
    ``acc_g`` are bitwise what ``eval_candidate(r_g, ...)`` gives (k >= 2).

    Per 64 points, the four masks are built against the same ``ds``; their bits are
    visited in increasing o within each row -- the same points, order and terms as the
    one-row kernel -- with the four rows' chains interleaved while all have bits (then two
    by two, then one by one).  Only the interleaving across rows differs, and the rows'
    sums are independent.  The body is compiled once per value of ``weighted`` (a constant
    in each inlined copy), so the unweighted loop carries no weight loads or selects.
    """
    if weighted:
        return _quad_body(r0, r1, r2, r3, dn, ds, nn, R, w, True, PG)
    return _quad_body(r0, r1, r2, r3, dn, ds, nn, R, w, False, PG)


@njit(nogil=True, cache=True, inline="always")
def _quad_body(r0, r1, r2, r3, dn, ds, nn, R, w, weighted, PG):
    k = R.shape[0]
    n = r0.shape[0]
    P0, P1, P2, P3 = PG[0], PG[1], PG[2], PG[3]
    for s in range(k):
        P0[s] = R[s]
        P1[s] = R[s]
        P2[s] = R[s]
        P3[s] = R[s]
    a0 = a1 = a2 = a3 = 0.0
    nfull = n - n % MASK_BITS
    for base in range(0, nfull, MASK_BITS):
        _prefetch_window(r0, base)
        _prefetch_window(r1, base)
        _prefetch_window(r2, base)
        _prefetch_window(r3, base)
        m0 = lt_mask64(r0, base, ds, base)
        m1 = lt_mask64(r1, base, ds, base)
        m2 = lt_mask64(r2, base, ds, base)
        m3 = lt_mask64(r3, base, ds, base)
        ub = np.uint64(base)
        while m0 != 0 and m1 != 0 and m2 != 0 and m3 != 0:
            m0, a0 = _one_bit(ub, m0, r0, dn, ds, nn, w, weighted, P0, a0)
            m1, a1 = _one_bit(ub, m1, r1, dn, ds, nn, w, weighted, P1, a1)
            m2, a2 = _one_bit(ub, m2, r2, dn, ds, nn, w, weighted, P2, a2)
            m3, a3 = _one_bit(ub, m3, r3, dn, ds, nn, w, weighted, P3, a3)
        a0, a1 = _two_masks(ub, m0, m1, r0, r1, dn, ds, nn, w, weighted, P0, P1, a0, a1)
        a2, a3 = _two_masks(ub, m2, m3, r2, r3, dn, ds, nn, w, weighted, P2, P3, a2, a3)
    for o in range(nfull, n):
        a0 = _tail(r0, o, dn, ds, nn, w, weighted, P0, a0)
        a1 = _tail(r1, o, dn, ds, nn, w, weighted, P1, a1)
        a2 = _tail(r2, o, dn, ds, nn, w, weighted, P2, a2)
        a3 = _tail(r3, o, dn, ds, nn, w, weighted, P3, a3)
    return a0, a1, a2, a3


@njit(nogil=True, cache=True)
def _own_positions(cand, is_medoid, i, hi, step, gpos):
    """The positions ``i, i + step, ... < hi`` whose candidates are no medoids, up to
    :data:`GROUP` of them, into ``gpos``; returns how many."""
    g = 0
    while i < hi and g < GROUP:
        if not is_medoid[cand[i]]:
            gpos[g] = i
            g += 1
        i += step
    return g


@njit(nogil=True, cache=True)
def eval_group(block, visit, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, buf):
    """``PG[g]``, ``accs[g]`` of the candidates at positions ``gpos[:ng]`` (rows
    ``block[visit[p]]``): bitwise :func:`eval_candidate` of each (module notes).  Four (or
    two or three, the last row repeated) in one sweep (:func:`eval_quad`); one alone, or
    k = 1, by :func:`eval_candidate`."""
    if ng == 1 or R.shape[0] == 1:
        for g in range(ng):
            accs[g] = eval_candidate(block[visit[gpos[g]]], dn, ds, nn, R, w, weighted, PG[g], buf)
        return
    r0 = block[visit[gpos[0]]]
    r1 = block[visit[gpos[min(1, ng - 1)]]]
    r2 = block[visit[gpos[min(2, ng - 1)]]]
    r3 = block[visit[gpos[min(3, ng - 1)]]]
    a0, a1, a2, a3 = eval_quad(r0, r1, r2, r3, dn, ds, nn, R, w, weighted, PG)
    accs[0] = a0
    accs[1] = a1
    if ng > 2:
        accs[2] = a2
    if ng > 3:
        accs[3] = a3


@njit(nogil=True, cache=True)
def apply_swap(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    """Swap slot ``b`` for ``j`` (row in hand), recompute R, return the new TD = Σ w·dn.

    Bitwise ``swap_update`` then ``removal_loss`` then ``loss_sum``, run as one pass over
    the points (:func:`~.assign.swap_update_losses`)."""
    return swap_update_losses(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)


@njit(nogil=True, cache=True)
def fasterpam_block(block, visit, cand, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted,
                    tol, P, buf, counters, td_box):
    """Sequential eager FasterPAM over the candidates of one block.

    Position ``i`` visits candidate ``cand[i]`` whose row is ``block[visit[i]]``.  Medoids
    are skipped.  A candidate is swapped in (best slot by the FastPAM1 kernel, lowest slot
    on ties) as soon as ``ΔTD < -tol·TD``; the caches, R and TD (recomputed as Σ w·dn) are
    updated with the row in hand.

    ``counters`` (int64): ``[since, n_swap]`` where ``since`` counts positions visited since
    the last swap (the swap position counts as 1).  The pass stops as soon as
    ``since >= n`` (a full cycle without a swap).  ``td_box[0]`` holds TD.  Returns the
    number of positions consumed (``len(visit)`` unless converged earlier).
    """
    n = M.shape[0]
    m = visit.shape[0]
    k = R.shape[0]
    since = counters[0]
    nsw = counters[1]
    td = td_box[0]
    consumed = m
    PG = np.empty((GROUP, k), dtype=np.float64)
    accs = np.empty(GROUP, dtype=np.float64)
    gpos = np.empty(GROUP, dtype=np.int64)
    ng = 0  # positions gpos[g:ng] evaluated ahead against the current caches
    g = 0
    for i in range(m):
        j = cand[i]
        if not is_medoid[j]:
            row = block[visit[i]]
            if g >= ng or gpos[g] != i:
                ng = _own_positions(cand, is_medoid, i, m, 1, gpos)
                eval_group(block, visit, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, buf)
                g = 0
            s, dlt = best_slot(PG[g], accs[g])
            g += 1
            if accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, dlt):
                td = apply_swap(row, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
                nsw += 1
                since = 0
                ng = 0  # the caches changed: the positions evaluated ahead are evaluated again
        since += 1
        if since >= n:
            consumed = i + 1
            break
    counters[0] = since
    counters[1] = nsw
    td_box[0] = td
    return consumed


@njit(nogil=True, cache=True)
def first_improving(block, visit, cand, lo, hi, is_medoid, dn, ds, nn, R, w, weighted,
                    td, tol, P, buf, out):
    """Speculative FasterPAM helper: first position in ``[lo, hi)`` whose candidate's best
    swap is accepted (:func:`accept_swap` with loss ``td``) against the current (unchanged)
    caches.

    Same per-candidate arithmetic as :func:`fasterpam_block` (same functions), so the
    result is bitwise identical.  Returns the position or -1; ``out[0]`` = slot,
    ``out[1]`` = ΔTD.
    """
    return first_improving_strided(block, visit, cand, lo, hi, 1, is_medoid, dn, ds, nn, R, w, weighted,
                                   td, tol, P, buf, out, np.empty(0, dtype=np.int64), 0)



@njit(nogil=True, cache=True, inline="always")
def _beaten(hits, i):
    """Whether another thread already published an improving position before ``i``."""
    for t in range(hits.shape[0]):
        if load_relaxed(hits, t) < i:
            return True
    return False


@njit(nogil=True, cache=True)
def first_improving_strided(block, visit, cand, lo, hi, step, is_medoid, dn, ds, nn, R, w, weighted,
                            td, tol, P, buf, out, hits, me):
    """:func:`first_improving` over the positions ``lo, lo + step, ... < hi`` (one thread's
    share of an interleaved batch), stopping early once any thread has published an
    improving position below the next one.

    ``hits`` (int64, one entry per thread, all ``>= hi`` on entry) is shared: thread ``me``
    publishes its first improving position in ``hits[me]`` (relaxed atomic store) and reads
    the others' entries (relaxed atomic loads) before each candidate.  A thread skips only
    positions above a published improving one, so every position below the earliest
    improving one is evaluated by its owner: ``min(hits)`` after all threads return is the
    sequential walk's next swap position (same arithmetic as :func:`fasterpam_block`), or
    unchanged when there is none.  Returns the position or -1; ``out`` = (slot, ΔTD).
    With an empty ``hits`` and ``step = 1`` it is :func:`first_improving` (nothing shared).
    """
    k = R.shape[0]
    PG = np.empty((GROUP, k), dtype=np.float64)
    accs = np.empty(GROUP, dtype=np.float64)
    gpos = np.empty(GROUP, dtype=np.int64)
    ng = 0  # this thread's positions gpos[g:ng] evaluated ahead (the caches do not change here)
    g = 0
    for i in range(lo, hi, step):
        if _beaten(hits, i):
            return -1
        j = cand[i]
        if is_medoid[j]:
            continue
        if g >= ng or gpos[g] != i:
            ng = _own_positions(cand, is_medoid, i, hi, step, gpos)
            eval_group(block, visit, gpos, ng, dn, ds, nn, R, w, weighted, PG, accs, buf)
            g = 0
        row = block[visit[i]]
        s, dlt = best_slot(PG[g], accs[g])
        g += 1
        if accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, dlt):
            out[0] = s
            out[1] = dlt
            if hits.shape[0] > 0:
                store_relaxed(hits, me, i)
            return i
    return -1

@njit(nogil=True, cache=True)
def strided_helper(ctl, done, me, spins, tdbox, block, visit, cand, step, is_medoid, dn, ds, nn, R, w, weighted,
                   tol, P, buf, out, hits):
    """Helper thread ``me``'s serve loop (:mod:`.handoff`): for each batch ``[lo, hi)`` the
    caller posts in ``ctl``, :func:`first_improving_strided` over this thread's positions
    ``lo + me, lo + me + step, ... < hi`` with the batch's loss ``tdbox[0]``, then the
    batch is marked done.  Returns 1 when told to stop, 0 after ``spins`` idle checks."""
    gen = done[me]  # only this thread writes its entry
    while True:
        g = next_batch(ctl, gen, spins)
        if g == gen:
            return 0
        if g < 0:
            return 1
        lo = ctl[1] + me
        if lo < ctl[2]:
            first_improving_strided(block, visit, cand, lo, ctl[2], step, is_medoid, dn, ds, nn, R, w, weighted,
                                    tdbox[0], tol, P, buf, out, hits, me)
        gen = g
        finish(done, me, g)


# -- the 2-byte storage type: candidate rows as float16 bits ------------------------------------
# A float16 store's rows reach these kernels as stored (int16 views of the float16 bits); the
# values are ``f16_value(h, mul1, mul2)`` (:mod:`.convert`), converted in registers where they
# are used, so every sum and comparison sees bitwise the float32 values the float32 kernels
# get from ``f16_to_f32``.  The 64-point comparison with ``ds`` runs on the bits against
# ``t = f16_thresholds(ds)`` (half the bytes of the float32 compare): exact for patterns
# with the sign bit clear, a superset for the others, which are re-checked with the float
# comparison, so the visited points, their order and their terms are those of
# :func:`eval_candidate`.  ``t`` must be recomputed whenever ``ds``
# changes (after each swap: :func:`apply_swap_f16`).


@njit(nogil=True, cache=True, inline="always")
def _f16_point(row, o, mul1, mul2, dn, ds, nn, w, weighted, P, acc):
    """The terms of point ``o`` whose float16 bits passed the threshold compare."""
    h = row[o]
    if h >= 0:  # below its threshold: a finite value below ds[o] (no re-check needed)
        d = f16_finite(h, mul1, mul2)
    else:  # sign bit set (-0.0, or a negative value of an unvalidated source): re-check
        d = f16_value(h, mul1, mul2)
        if not (d < ds[o]):
            return acc
    return pass_terms(np.float64(d), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                      w[o] if weighted else 1.0, weighted, P, acc)


@njit(nogil=True, cache=True)
def eval_candidate_f16(row, t, mul1, mul2, dn, ds, nn, R, w, weighted, P, buf):
    """:func:`eval_candidate` for a row of float16 bits (int16, C-contiguous): bitwise the
    same ``P`` and ``acc`` as :func:`eval_candidate` on the row's float32 values (``buf``:
    int32 scratch as there).  Compiled once per value of ``weighted``, as there."""
    if weighted:
        return _candidate_f16_body(row, t, mul1, mul2, dn, ds, nn, R, w, True, P, buf)
    return _candidate_f16_body(row, t, mul1, mul2, dn, ds, nn, R, w, False, P, buf)


@njit(nogil=True, cache=True, inline="always")
def _candidate_f16_body(row, t, mul1, mul2, dn, ds, nn, R, w, weighted, P, buf):
    k = R.shape[0]
    n = row.shape[0]
    acc = 0.0
    if k == 1:
        P[0] = 0.0
        if weighted:
            for o in range(n):
                acc += w[o] * (np.float64(f16_value(row[o], mul1, mul2)) - np.float64(dn[o]))
        else:
            for o in range(n):
                acc += np.float64(f16_value(row[o], mul1, mul2)) - np.float64(dn[o])
        return acc
    for s in range(k):
        P[s] = R[s]
    nfull = n - n % MASK_BITS
    lst = _list_buf(buf)
    if k >= LIST_MIN_K and lst.shape[0] >= nfull:
        c = 0
        for base in range(0, nfull, MASK_BITS):
            _prefetch_window(row, base)
            c = compress64(lt_mask64(row, base, t, base), base, lst, c)
        for i in range(c):
            acc = _f16_point(row, np.uint32(lst[i]), mul1, mul2, dn, ds, nn, w, weighted, P, acc)
    else:
        for base in range(0, nfull, MASK_BITS):
            _prefetch_window(row, base)
            m = lt_mask64(row, base, t, base)
            ub = np.uint64(base)
            while m != 0:
                o = ub | np.uint64(trailing_zeros(m))
                m &= m - np.uint64(1)
                acc = _f16_point(row, o, mul1, mul2, dn, ds, nn, w, weighted, P, acc)
    for o in range(nfull, n):
        d = f16_value(row[o], mul1, mul2)
        if d < ds[o]:
            acc = pass_terms(np.float64(d), np.float64(dn[o]), np.float64(ds[o]), nn[o],
                             w[o] if weighted else 1.0, weighted, P, acc)
    return acc


@njit(nogil=True, cache=True)
def apply_swap_f16(row, mul1, mul2, t, row32, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    """:func:`apply_swap` with the candidate's row as float16 bits: converted into ``row32``
    (its float32 values), swapped in, and the thresholds ``t`` recomputed from the new ``ds``."""
    f16_row(row, mul1, mul2, row32)
    td = apply_swap(row32, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
    f16_thresholds(ds, mul1, mul2, t)
    return td


@njit(nogil=True, cache=True)
def _accept_f16(row, mul1, mul2, row32, s, dn, ds, nn, w, weighted, td, tol, dlt):
    """:func:`accept_swap` for a float16 row: the first test of accept_swap on ``dlt`` alone
    (all that almost every candidate needs), the row converted only when it could pass."""
    if not (dlt < -tol * td) or td <= 0.0:
        return False
    f16_row(row, mul1, mul2, row32)
    return accept_swap(row32, s, dn, ds, nn, w, weighted, td, tol, dlt)


@njit(nogil=True, cache=True)
def fasterpam_block_f16(block, visit, cand, mul1, mul2, t, row32, M, medoids, is_medoid, dn, ds, nn, sn, R,
                        w, weighted, tol, P, counters, td_box):
    """:func:`fasterpam_block` on a block of float16 bits (int16, ``block[visit[i]]`` the row
    of ``cand[i]``): bitwise the same swaps, caches and TD as on the block's float32 values.

    ``t`` = ``f16_thresholds(ds)`` on entry, kept so; ``row32`` (n float32) is scratch.
    """
    n = M.shape[0]
    m = visit.shape[0]
    since = counters[0]
    nsw = counters[1]
    td = td_box[0]
    consumed = m
    for i in range(m):
        j = cand[i]
        if not is_medoid[j]:
            row = block[visit[i]]
            acc = eval_candidate_f16(row, t, mul1, mul2, dn, ds, nn, R, w, weighted, P, row32.view(np.int32))
            s, dlt = best_slot(P, acc)
            if _accept_f16(row, mul1, mul2, row32, s, dn, ds, nn, w, weighted, td, tol, dlt):
                td = apply_swap(row32, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
                f16_thresholds(ds, mul1, mul2, t)
                nsw += 1
                since = 0
        since += 1
        if since >= n:
            consumed = i + 1
            break
    counters[0] = since
    counters[1] = nsw
    td_box[0] = td
    return consumed


@njit(nogil=True, cache=True)
def first_improving_f16(block, visit, cand, lo, hi, mul1, mul2, t, row32, is_medoid, dn, ds, nn, R, w,
                        weighted, td, tol, P, out):
    """:func:`first_improving` on a block of float16 bits (same arithmetic as
    :func:`fasterpam_block_f16`; ``row32`` is this thread's scratch row)."""
    return first_improving_strided_f16(block, visit, cand, lo, hi, 1, mul1, mul2, t, row32, is_medoid, dn, ds,
                                       nn, R, w, weighted, td, tol, P, out, np.empty(0, dtype=np.int64), 0)



@njit(nogil=True, cache=True)
def first_improving_strided_f16(block, visit, cand, lo, hi, step, mul1, mul2, t, row32, is_medoid, dn, ds, nn,
                                R, w, weighted, td, tol, P, out, hits, me):
    """:func:`first_improving_strided` on a block of float16 bits (the arithmetic of
    :func:`first_improving_f16`)."""
    for i in range(lo, hi, step):
        if _beaten(hits, i):
            return -1
        j = cand[i]
        if is_medoid[j]:
            continue
        row = block[visit[i]]
        acc = eval_candidate_f16(row, t, mul1, mul2, dn, ds, nn, R, w, weighted, P, row32.view(np.int32))
        s, dlt = best_slot(P, acc)
        if _accept_f16(row, mul1, mul2, row32, s, dn, ds, nn, w, weighted, td, tol, dlt):
            out[0] = s
            out[1] = dlt
            if hits.shape[0] > 0:
                store_relaxed(hits, me, i)
            return i
    return -1


@njit(nogil=True, cache=True)
def strided_helper_f16(ctl, done, me, spins, tdbox, block, visit, cand, step, mul1, mul2, t, row32, is_medoid,
                       dn, ds, nn, R, w, weighted, tol, P, out, hits):
    """:func:`strided_helper` on a block of float16 bits (:func:`first_improving_strided_f16`)."""
    gen = done[me]
    while True:
        g = next_batch(ctl, gen, spins)
        if g == gen:
            return 0
        if g < 0:
            return 1
        lo = ctl[1] + me
        if lo < ctl[2]:
            first_improving_strided_f16(block, visit, cand, lo, ctl[2], step, mul1, mul2, t, row32, is_medoid,
                                        dn, ds, nn, R, w, weighted, tdbox[0], tol, P, out, hits, me)
        gen = g
        finish(done, me, g)
