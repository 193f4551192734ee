"""FasterPAM: eager swaps in a fixed candidate order (Schubert & Rousseeuw 2021).

Definition (the result is a function of D, k, the init, ``order``, ``tol`` and
``max_iter`` only -- never of the block size, the number of threads or the scheduler):

* Candidates are visited in a fixed cyclic order of the n points (``order="natural"``:
  0, 1, ..., n-1; ``"shuffle"``: see :func:`candidate_order`).  Medoids are skipped.
* Candidate j is evaluated against all k slots with the FastPAM1 kernel; it is swapped in
  (best slot, lowest slot on ties) as soon as ``ΔTD < -tol·TD``.  The caches, the removal
  loss and TD (recomputed as Σ w·dn) are updated with j's row, already in hand: a swap
  costs no extra read.
* The run stops after a full cycle of n positions without a swap (counting the position
  of the last swap), or after ``max_iter`` passes.  One pass = one read of D.

Parallelism without changing the result.  With a ``distributed`` cluster (``client=``) the
walk runs on the workers: each holds its share of the candidate rows and a replica of the
caches, evaluates its candidates of every batch and reports its earliest accepted one; the
earliest over all workers is swapped in everywhere (:mod:`chunked_medoids._dist_eager`,
docs/architecture.rst §14).  On local threads the next row block is read in a background
thread while the current one is processed; with ``num_workers > 1`` candidates are
evaluated *speculatively*: a batch of upcoming candidates is split across threads
(interleaved, see :class:`_Speculator`), each evaluating its share against
the same (unchanged) caches with the same nogil kernel and stopping at its first improving
candidate (or once another thread has found an earlier one); the earliest improving one in
order is swapped
and the walk continues right after it.  Candidates after it are re-evaluated against the
new caches, so the outcome is bitwise that of the sequential definition.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._errors import DissimilarityError, InvalidTypeError
from .._kernels.convert import f16_thresholds
from .._kernels.fused import FusedEval
from .._kernels.handoff import OVERSUBSCRIBED_SPINS, SPINS, STOP, all_done, post
from .._kernels.swap import (
    apply_swap,
    apply_swap_f16,
    fasterpam_block,
    fasterpam_block_f16,
    first_improving,
    first_improving_f16,
    first_improving_strided,
    first_improving_strided_f16,
    strided_helper,
    strided_helper_f16,
)
from .._quant import _kernel_factors
from .._result import SwapResult
from .._state import SwapState
from .._typing import (
    ClientLike,
    DissimilarityLike,
    InitLike,
    MemoryLimit,
    PathLike,
    RandomStateLike,
    ResidentLike,
    WeightsLike,
)
from .._util import check_choice, check_k
from ..engine import Engine, _default_threads, check_resident
from ..sources.base import stored_rows
from ._common import SwapCaches, check_run, driver_scope, init_or_saved, make_result
from ._eager import BLOCKS_IN_FLIGHT, GRANULE, eager_passes, log_pass
from ._registry import register_method

logger = logging.getLogger(__name__)

#: default bound on passes over D.
DEFAULT_MAX_ITER = 100
#: candidate orders.
ORDERS = ("natural", "shuffle")
__all__ = ["BLOCKS_IN_FLIGHT", "GRANULE", "ORDERS", "candidate_order", "fasterpam"]
#: whether ``speculative=None`` speculates when the engine has several threads.  Measured
#: on 2 cores (benchmarks/bench_scaling.py): 1.56x faster in memory (n = 20000, k = 10, from
#: a random init; 1.9x on a pass without swaps) and 1.3x on a zarr store, with identical
#: results.  Batches grow geometrically while no swap is found, so thread hand-off costs
#: stay small.
AUTO_SPECULATIVE = True


def candidate_order(n, order, rng):
    """The fixed candidate order: None for natural (0..n-1), else an int64 permutation.

    ``"shuffle"``: the rows are cut into granules of :data:`GRANULE` consecutive rows; the
    granules are visited in a random permutation and the rows inside each granule in a
    random permutation (drawn from ``rng``: first the granule permutation, then one
    permutation per granule in visiting order).  Reads stay sequential within a granule and
    the order does not depend on the block size.
    """
    if order == "natural":
        return None
    n_gran = (n + GRANULE - 1) // GRANULE
    perm = rng.permutation(n_gran)
    parts = []
    for g in perm:
        a = int(g) * GRANULE
        b = min(a + GRANULE, n)
        parts.append(a + rng.permutation(b - a))
    return np.concatenate(parts).astype(np.int64)


class _F16Rows:
    """What the float16 kernels need beside the caches: the store's conversion factors, the
    int16 thresholds of ``ds`` (kept in step with every swap) and a float32 scratch row per
    thread (``_kernels/swap.py``, the float16 section)."""

    def __init__(self, view, st, threads):
        self.view = view
        self.mul1, self.mul2 = _kernel_factors(view.scale)
        self.t = np.empty(st.n, dtype=np.int16)
        f16_thresholds(st.ds, self.mul1, self.mul2, self.t)
        self.row32 = [np.empty(st.n, dtype=np.float32) for _ in range(max(1, threads))]

    def block(self, block, visit, cand, st, tol, P, counters, td_box):
        return fasterpam_block_f16(block, visit, cand, self.mul1, self.mul2, self.t, self.row32[0], st.M,
                                   st.medoids, st.is_medoid, st.dn, st.ds, st.nn, st.sn, st.R, st.w, st.weighted,
                                   tol, P, counters, td_box)

    def first(self, t, block, visit, cand, lo, hi, st, td, tol, P, out):
        return first_improving_f16(block, visit, cand, lo, hi, self.mul1, self.mul2, self.t, self.row32[t],
                                   st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w, st.weighted, td, tol, P, out)

    def strided(self, t, block, visit, cand, lo, hi, step, st, td, tol, P, out, hits):
        return first_improving_strided_f16(block, visit, cand, lo, hi, step, self.mul1, self.mul2, self.t,
                                           self.row32[t], st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w,
                                           st.weighted, td, tol, P, out, hits, t)

    def helper(self, t, ctl, done, me, spins, tdbox, block, visit, cand, step, st, tol, P, out, hits):
        return strided_helper_f16(ctl, done, me, spins, tdbox, block, visit, cand, step, self.mul1, self.mul2,
                                  self.t, self.row32[t], st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w,
                                  st.weighted, tol, P, out, hits)

    def apply(self, row, slot, j, st):
        return apply_swap_f16(row, self.mul1, self.mul2, self.t, self.row32[0], slot, j, st.M, st.medoids,
                              st.is_medoid, st.dn, st.ds, st.nn, st.sn, st.R, st.w, st.weighted)


class _Speculator:
    """Speculative batch evaluation over ``threads`` threads (see module notes).

    Stored rows (float32 / float16 blocks) and fused (features) sources: a batch is
    *interleaved* -- thread ``t`` takes
    the positions ``i + t, i + t + T, ...`` -- and the threads share one small array where
    each publishes its first improving position (:func:`first_improving_strided`); a
    thread stops as soon as its next position lies beyond a published one.  So at most
    about one evaluation per thread is wasted per swap whatever the batch size, and a
    batch can run to the end of the block (or of the cycle): one hand-off per swap or
    block instead of one per small batch.  The helper threads do not wait on a future per
    batch: for the whole of a :meth:`run` call each sits in its serve loop
    (:func:`~.._kernels.swap.strided_helper` and its float16 / fused twins), and batches are
    handed over by spinning on a shared control array (:mod:`.._kernels.handoff`: a few
    microseconds instead of about 100 µs of thread wake-ups per batch; at k = 100 there are
    hundreds of batches per pass).  An exception (or KeyboardInterrupt) in the calling
    thread stops the helpers' batch through the shared array and then stops their loops
    before it propagates; a helper that fails is noticed by the caller's bounded wait.  A fused row with a non-finite entry
    stops the batch too (published like a hit); the caller then reports it.  With
    :attr:`interleave` False, batches are contiguous sub-ranges with geometrically growing
    sizes (:meth:`_run_ranges`, the scheme before interleaving).
    """

    #: interleaved batches with early stop (False: contiguous sub-ranges).
    interleave = True

    def __init__(self, pool, threads, k, n, fused=None, f16=None):
        self.pool = pool
        self.fused = fused  # FusedEval: rows computed from features (block/visit are None)
        self.f16 = f16  # _F16Rows: blocks are float16 bits (int16)
        self.threads = threads
        self.P = [np.empty(k, dtype=np.float64) for _ in range(threads)]
        self.out = [np.empty(2, dtype=np.float64) for _ in range(threads)]
        self.buf = [np.empty(n, dtype=np.int32) for _ in range(threads)]
        self.gap = 8.0  # running estimate of positions between swaps
        self.min_chunk = 8
        self.max_chunk = 2048
        self.hits = np.empty(threads, dtype=np.int64)  # published first improving positions
        self.ctl = np.zeros(3, dtype=np.int64)  # the posted batch: generation, lo, hi (.handoff)
        self.done = np.zeros(threads, dtype=np.int64)  # the last generation each helper finished
        self.tdbox = np.zeros(1, dtype=np.float64)  # the posted batch's loss
        self.gen = 0
        # more threads than usable cores: spinning would take the cores the others need, so
        # every wait gives up after a few checks (the helpers nap, the caller yields)
        self.spins = SPINS if threads <= _default_threads() else OVERSUBSCRIBED_SPINS

    def _sequential(self, block, visit, cand, i, hi, st, counters, td_box, tol, P_seq):
        """The sequential kernel on positions ``[i, hi)``; returns the positions consumed."""
        before = int(counters[1])
        if self.fused is not None:
            consumed = self.fused.block(cand[i:hi], st, tol, P_seq, counters, td_box)
        elif self.f16 is not None:
            consumed = self.f16.block(block, visit[i:hi], cand[i:hi], st, tol, P_seq, counters, td_box)
        else:
            consumed = fasterpam_block(block, visit[i:hi], cand[i:hi], st.M, st.medoids, st.is_medoid, st.dn,
                                       st.ds, st.nn, st.sn, st.R, st.w, st.weighted, tol, P_seq, self.buf[0],
                                       counters, td_box)
        got = int(counters[1]) - before
        self.gap = 0.8 * self.gap + 0.2 * ((hi - i) / got if got else 4.0 * (hi - i))
        return consumed

    def _no_swap(self, i, hi, counters):
        """A batch ``[i, hi)`` without an accepted swap: count it; returns ``hi``."""
        counters[0] += hi - i
        # grow geometrically (an additive running mean settles at tiny batches where thread
        # hand-off costs more than it saves)
        self.gap = min(2.0 * self.gap + (hi - i), 1e9)
        return hi

    def _swap_at(self, block, visit, cand, i, p, slot, st, counters, td_box):
        """Swap in the candidate at position ``p`` (the batch started at ``i``) into
        ``slot``, with the row in hand; returns the next position, ``p + 1``."""
        counters[0] += p - i
        j = int(cand[p])
        if self.fused is not None:
            td_box[0] = self.fused.apply(slot, j, st)
        elif self.f16 is not None:
            td_box[0] = self.f16.apply(block[visit[p]], slot, j, st)
        else:
            td_box[0] = apply_swap(block[visit[p]], slot, j, st.M, st.medoids, st.is_medoid, st.dn,
                                   st.ds, st.nn, st.sn, st.R, st.w, st.weighted)
        counters[1] += 1
        counters[0] = 1
        self.gap = 0.5 * self.gap + 0.5 * (p - i + 1)
        return p + 1

    def _strided(self, t, block, visit, cand, lo, hi, st, td, tol):
        T = self.threads
        if self.fused is not None:
            return self.fused.strided(t, cand, lo, hi, T, st, td, tol, self.P[t], self.out[t], self.hits)
        if self.f16 is not None:
            return self.f16.strided(t, block, visit, cand, lo, hi, T, st, td, tol, self.P[t], self.out[t], self.hits)
        return first_improving_strided(block, visit, cand, lo, hi, T, st.is_medoid, st.dn, st.ds, st.nn, st.R,
                                       st.w, st.weighted, td, tol, self.P[t], self.buf[t], self.out[t],
                                       self.hits, t)

    #: seconds an idle helper sleeps between its spinning waits (module notes).
    NAP = 2e-4

    def _serve(self, t, block, visit, cand, st, tol):
        """Helper thread ``t``'s side of one :meth:`run` call: its serve loop until told to
        stop, napping between the loop's bounded waits."""
        T = self.threads
        args = (self.ctl, self.done, t, self.spins, self.tdbox)
        while True:
            if self.fused is not None:
                r = self.fused.helper(t, *args, cand, T, st, tol, self.P[t], self.out[t], self.hits)
            elif self.f16 is not None:
                r = self.f16.helper(t, *args, block, visit, cand, T, st, tol, self.P[t], self.out[t], self.hits)
            else:
                r = strided_helper(*args, block, visit, cand, T, st.is_medoid, st.dn, st.ds, st.nn, st.R, st.w,
                                   st.weighted, tol, self.P[t], self.buf[t], self.out[t], self.hits)
            if r:
                return
            time.sleep(self.NAP)

    def _start(self, block, visit, cand, st, tol):
        """Start the helpers' serve loops on the pool; returns their futures."""
        self.ctl[:] = 0
        self.done[:] = 0
        self.gen = 0
        return [self.pool.submit(self._serve, t, block, visit, cand, st, tol) for t in range(1, self.threads)]

    def _batch(self, block, visit, cand, i, hi, st, td, tol, helpers):
        """Post batch ``[i, hi)`` to the helpers, run thread 0's share, wait for theirs."""
        self.hits[:] = hi
        self.tdbox[0] = td
        self.gen += 1
        post(self.ctl, i, hi, self.gen)
        self._strided(0, block, visit, cand, i, hi, st, td, tol)
        while not all_done(self.done, self.gen, self.spins):
            for f in helpers:
                if f.done():  # a helper left its loop before STOP: it failed
                    f.result()
                    raise RuntimeError("a speculative FasterPAM helper thread stopped unexpectedly")
            time.sleep(0)  # a bounded wait ran out: let a napping helper have the GIL

    def _stop(self, helpers, failing):
        """Stop the helpers' loops and collect them (their first error propagates unless
        the caller is already raising)."""
        if failing:
            self.hits[:] = -1  # end the helpers' current batch at their next position
        post(self.ctl, 0, 0, STOP)
        for f in helpers:
            try:
                f.result()
            except BaseException:  # noqa: BLE001 - the caller's own error takes precedence
                if not failing:
                    raise

    def run(self, block, visit, cand, st, counters, td_box, tol, P_seq):
        """Consume the positions of ``cand`` like the sequential kernel (same counters,
        caches and TD); returns the positions consumed."""
        if not self.interleave:
            return self._run_ranges(block, visit, cand, st, counters, td_box, tol, P_seq)
        fe = self.fused
        n = st.n
        L = cand.shape[0]
        T = self.threads
        i = 0
        helpers = self._start(block, visit, cand, st, tol)
        failing = True
        try:
            while i < L:
                remaining = n - int(counters[0])
                if self.gap < 2.0 * T:
                    # swaps are frequent: speculation would mostly be wasted; go sequential
                    hi = min(L, i + 16)
                    consumed = self._sequential(block, visit, cand, i, hi, st, counters, td_box, tol, P_seq)
                    if fe is not None and fe.bad():
                        break
                    i += consumed
                    if counters[0] >= n:
                        break
                    continue
                hi = min(L, i + remaining)
                self._batch(block, visit, cand, i, hi, st, float(td_box[0]), tol, helpers)
                if fe is not None and fe.bad():
                    break  # a row with a non-finite entry: the caller reports it
                p = int(self.hits.min())
                if p >= hi:
                    i = self._no_swap(i, hi, counters)
                else:
                    i = self._swap_at(block, visit, cand, i, p, int(self.out[int(np.argmin(self.hits))][0]), st,
                                      counters, td_box)
                if counters[0] >= n:
                    break
            failing = False
        finally:
            self._stop(helpers, failing)
        return i

    def _run_ranges(self, block, visit, cand, st, counters, td_box, tol, P_seq):
        """:meth:`run` by contiguous sub-ranges per thread (fused sources)."""
        n = st.n
        L = cand.shape[0]
        i = 0
        T = self.threads
        while i < L:
            since = int(counters[0])
            remaining = n - since
            if self.gap < 2.0 * T:
                # swaps are frequent: speculation would mostly be wasted; go sequential
                hi = min(L, i + 16)
                consumed = self._sequential(block, visit, cand, i, hi, st, counters, td_box, tol, P_seq)
                if self.fused is not None and self.fused.bad():
                    return i
                i += consumed
                if counters[0] >= n:
                    return i
                continue
            chunk = int(min(self.max_chunk, max(self.min_chunk, self.gap / (2 * T))))
            hi = min(L, i + chunk * T, i + remaining)
            td_now = float(td_box[0])
            bounds = np.linspace(i, hi, T + 1).astype(np.int64)
            futures = []
            fe = self.fused
            h = self.f16
            for t in range(1, T):
                lo_t, hi_t = int(bounds[t]), int(bounds[t + 1])
                if hi_t > lo_t and fe is not None:
                    futures.append(self.pool.submit(fe.first, t, cand, lo_t, hi_t, st, td_now, tol,
                                                    self.P[t], self.out[t]))
                elif hi_t > lo_t and h is not None:
                    futures.append(self.pool.submit(h.first, t, block, visit, cand, lo_t, hi_t, st, td_now, tol,
                                                    self.P[t], self.out[t]))
                elif hi_t > lo_t:
                    futures.append(self.pool.submit(
                        first_improving, block, visit, cand, lo_t, hi_t, st.is_medoid, st.dn, st.ds,
                        st.nn, st.R, st.w, st.weighted, td_now, tol, self.P[t], self.buf[t], self.out[t]))
                else:
                    futures.append(None)
            if fe is not None:
                first = fe.first(0, cand, int(bounds[0]), int(bounds[1]), st, td_now, tol, self.P[0], self.out[0])
            elif h is not None:
                first = h.first(0, block, visit, cand, int(bounds[0]), int(bounds[1]), st, td_now, tol,
                                self.P[0], self.out[0])
            else:
                first = first_improving(block, visit, cand, int(bounds[0]), int(bounds[1]), st.is_medoid,
                                        st.dn, st.ds, st.nn, st.R, st.w, st.weighted, td_now, tol,
                                        self.P[0], self.buf[0], self.out[0])
            hits = [(first, 0)]
            for t, f in enumerate(futures, start=1):
                hits.append((-1 if f is None else f.result(), t))
            if fe is not None and fe.bad():
                return i
            found = next(((p, t) for p, t in hits if p >= 0), None)
            if found is None:
                i = self._no_swap(i, hi, counters)
            else:
                p, t = found
                i = self._swap_at(block, visit, cand, i, p, int(self.out[t][0]), st, counters, td_box)
            if counters[0] >= n:
                return i
        return i


def fasterpam(D: DissimilarityLike, k: int, *, init: InitLike = "random", max_iter: int = DEFAULT_MAX_ITER,
              random_state: RandomStateLike = None, weights: WeightsLike = None, tol: float = 0.0,
              order: str = "natural", memory_limit: MemoryLimit = "1GiB", client: ClientLike = None,
              progress: bool = False, num_workers: int | None = None, block_rows: int | None = None,
              checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0, engine: Engine | None = None,
              speculative: bool | None = None, validate: bool = True,
              resident: ResidentLike = "auto") -> SwapResult:
    """FasterPAM: eager k-medoids swaps in a fixed candidate order, streaming D.

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).
    k : int
        Number of medoids, 1 <= k <= n.
    init : {"random", "build", "lab"} or array of k distinct ints, default "random"
    max_iter : int, default 100
        Maximum number of passes over D.
    random_state : None, int, SeedSequence or Generator
        Used by the random/LAB inits and the shuffled order.
    weights : (n,) array, optional
        Non-negative point weights; the loss is Σ_o w_o·d(o, medoid(o)).
    tol : float, default 0.0
        Swap iff ΔTD < -tol·TD (0: any strict improvement).
    order : {"natural", "shuffle"}, default "natural"
        Candidate order.  "natural" (0..n-1) is the paper's reference order and reads D
        sequentially; "shuffle" visits granules of 256 rows in random order, rows within a
        granule in random order (see :func:`candidate_order`).
    memory_limit : int or str, default "1GiB"
        Budget for the row blocks in flight (current block + read-ahead).
    client : distributed.Client, optional
        Run the eager walk on the cluster's workers (and the BUILD init's passes): every
        worker holds its share of the candidate rows and a replica of the caches; the
        client only coordinates (one round trip per batch of candidates).  The result is
        bitwise the sequential one for any number of workers.
    progress : bool, default False
    num_workers : int, optional
        Threads used for speculative candidate evaluation; 1 = purely sequential.
    block_rows : int, optional
        Force the row-block height (results do not depend on it).
    checkpoint : path, optional
        Saved at block boundaries (every ``checkpoint_interval`` seconds) and at pass ends;
        rerunning with the same path and parameters resumes to the identical result.
    checkpoint_interval : float, default 60.0
    engine : Engine, optional
    speculative : bool or None, default None
        Evaluate upcoming candidates speculatively on the engine's ``num_workers`` threads
        (exact: identical result for any thread count).  None: :data:`AUTO_SPECULATIVE`.
        Ignored (sequential) when ``num_workers == 1``.
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        With a cluster: whether each worker reads its candidate rows from storage once and
        holds them for the whole run (True), or re-reads them every pass (False).
        ``"auto"`` holds them when a worker's share fits in half of the smallest worker
        memory limit, and logs which it chose.  A features source with fused kernels
        computes the rows instead.  On local threads: the engine's resident stripes (see
        :class:`~chunked_medoids.Engine`; the stripes of the first pass are held when the
        matrix fits the budget).  Never changes the result.

    Returns
    -------
    SwapResult
        ``n_iter`` = passes (the last one possibly partial), ``loss_history`` = loss after
        the init and after each pass; ``distributed`` (with a cluster): workers, rows
        resident / streamed / computed, ``round_trips`` (total) and ``pass_round_trips``
        (per pass run in this process), ``recoveries`` (actors recreated after a worker
        loss).

    Notes
    -----
    Memory: n×k medoid table (source dtype) + O(n) caches (+ the order, 8n bytes, when
    shuffled) + up to 3 row blocks.  I/O: one read of D per pass plus the k initial medoid
    rows.
    """
    order_name = check_choice(order, "order", ORDERS)
    if speculative is None:
        speculative = AUTO_SPECULATIVE
    if not isinstance(speculative, (bool, np.bool_)):
        raise InvalidTypeError(f"speculative must be True, False or None, got {speculative!r}")
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    resident = check_resident(resident)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        source, eng = run.source, run.engine
        k = int(k)
        max_iter, tol, w, rng, params = check_run(source, k, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state,
                                                  order=order_name)
        ckpt = run.open_checkpoint(checkpoint, algorithm="fasterpam", params=params,
                                   interval=checkpoint_interval)
        state, medoids = init_or_saved(ckpt.load(), init, source, k, rng, eng, w, ckpt, SwapState)
        if state is None:
            rng_state = rng.bit_generator.state if order_name == "shuffle" else None
            state = SwapState(medoids=medoids, rng_state=rng_state)
        elif state.rng_state is not None:
            rng.bit_generator.state = state.rng_state
        cand_order = candidate_order(source.n, order_name, rng)
        st = SwapCaches(source, state.medoids, w, caches=state.caches)
        if not state.loss_history:
            state.loss_history.append(st.td)
        threads = eng.num_workers if (eng.client is None and speculative) else 1
        fused = fused_eval(source, threads, st)
        # a float16 source on local threads: the pass reads its 2-byte rows as stored and the
        # float16 kernels convert in registers (no float32 copy of any block)
        view = stored_rows(source) if (fused is None and eng.client is None) else None
        f16 = None if view is None else _F16Rows(view, st, threads)
        spec = _Speculator(eng.thread_pool(), threads, k, source.n, fused, f16) if threads > 1 else None
        walker = None
        if not state.done and (state.pos > 0 or state.n_iter < max_iter):
            walker = eng.eager_walker(source, method="fasterpam", order=cand_order, state=lambda: _replica(st),
                                      params={"tol": tol, "w": st.w, "weighted": st.weighted,
                                              "fused": fused is not None},
                                      resident=resident, n_swap=state.n_swap)
        try:
            pass_rt = _fasterpam_single(source, eng, st, state, cand_order, spec, max_iter=max_iter, tol=tol,
                                        ckpt=ckpt, fused=fused, walker=walker, f16=f16)
        finally:
            if walker is not None:
                walker.close()
        result = make_result(st.M, st.medoids, w, n_iter=state.n_iter, n_swap=state.n_swap,
                             loss_history=state.loss_history, algorithm="fasterpam",
                             converged=bool(state.done), order=order_name,
                             distributed=None if walker is None else dict(walker.summary(),
                                                                          pass_round_trips=pass_rt))
        state.done = True
        ckpt.complete(_snapshot(state, st))
        return result


def _replica(st):
    """What a worker's replica of the caches is made of (the client's current state)."""
    return {"M": st.M, "medoids": st.medoids, "is_medoid": st.is_medoid, "dn": st.dn, "ds": st.ds,
            "nn": st.nn, "sn": st.sn, "R": st.R, "td": float(st.td)}


def _snapshot(state, st):
    """``state`` with the current medoids and caches of ``st`` (for a checkpoint)."""
    state.medoids = st.medoids.copy()
    state.caches = st.caches()
    return state


def fused_eval(source, threads, st):
    """The fused kernels for ``source`` when it computes rows from features (its
    ``fused_bundle()``) and prefers them for the walk (``prefer_fused(walk=True)``), else
    None (the pass streams ``read_rows`` blocks)."""
    prefer = getattr(source, "prefer_fused", None)
    if prefer is None or not prefer(walk=True):
        return None
    return FusedEval(source.fused_bundle(), threads, st.ds)


def report_bad_rows(source, cand):
    """A fused kernel met a non-finite distance among the rows of ``cand``: let the source
    raise its own error naming the entry (the rows are recomputed one by one)."""
    for j in cand:
        source.read_rows(int(j), int(j) + 1)
    raise DissimilarityError(f"a distance computed on the fly is not finite (rows {cand[0]}..{cand[-1]})")


def _fasterpam_single(source, eng, st, state, cand_order, spec, *, max_iter, tol, ckpt, fused=None,
                      walker=None, f16=None):
    """FasterPAM passes on ``st`` until convergence or ``max_iter``, continuing ``state``.

    The eager walk itself is :func:`~chunked_medoids.algorithms._eager.eager_passes`; this
    supplies the evaluation of a block of candidates (sequential kernel, speculative over
    several threads, or batches on the workers of ``walker``) and the per-pass history.  With
    ``f16`` (:class:`_F16Rows`) the blocks are read from its float16 view and evaluated by
    the float16 kernels.
    Returns the round trips of each pass with a ``walker`` (else an empty list).
    """
    walk = state.progress
    td_box = np.array([st.td], dtype=np.float64)
    P = np.empty(st.k, dtype=np.float64)
    buf = np.empty(st.n, dtype=np.int32)

    pass_rt = []

    def apply(slot, j, row):  # a swap found by the workers, applied to this replica
        if fused is not None:
            td_box[0] = fused.apply(slot, j, st)
        else:
            td_box[0] = apply_swap(row, slot, j, st.M, st.medoids, st.is_medoid, st.dn, st.ds, st.nn,
                                   st.sn, st.R, st.w, st.weighted)
        st.td = float(td_box[0])

    def bad_rows(a, b):
        report_bad_rows(source, np.arange(a, b, dtype=np.int64) if cand_order is None else cand_order[a:b])

    interval = getattr(ckpt, "interval", None) if ckpt.enabled else None

    def evaluate(block, start, visit, cand, counters):
        if walker is not None:
            consumed = walker.run(start, start + cand.shape[0], counters, apply, on_bad=bad_rows,
                                  pause=ckpt.stop.is_set, interval=interval)
            st.td = float(td_box[0])
            return consumed
        if f16 is not None:
            block = block.view(np.int16)  # the float16 bits (the kernels convert them)
        if spec is not None:
            consumed = spec.run(block, visit, cand, st, counters, td_box, tol, P)
        elif f16 is not None:
            consumed = f16.block(block, visit, cand, st, tol, P, counters, td_box)
        elif fused is not None:
            consumed = fused.block(cand, st, tol, P, counters, td_box)
        else:
            consumed = fasterpam_block(block, visit, cand, st.M, st.medoids, st.is_medoid, st.dn, st.ds,
                                       st.nn, st.sn, st.R, st.w, st.weighted, tol, P, buf, counters, td_box)
        if fused is not None and fused.bad():
            report_bad_rows(source, cand)
        st.td = float(td_box[0])
        return consumed

    def snapshot():
        state.n_iter, state.n_swap, state.pos, state.since, state.done = (
            walk.n_iter, walk.n_swap, walk.pos, walk.since, walk.done)
        return _snapshot(state, st)

    def on_pass_end(walk, seconds, nbytes, swaps):
        state.loss_history.append(st.td)
        log_pass("fasterpam", "loss", st.td, walk, seconds, nbytes, swaps)
        if walker is not None:
            pass_rt.append(walker.log_pass(walk.n_iter, seconds, swaps))

    eager_passes(source if f16 is None else f16.view, eng, walk, evaluate, max_iter=max_iter, order=cand_order,
                 ckpt=ckpt,
                 snapshot=snapshot, on_pass_end=on_pass_end, desc="fasterpam",
                 rows=fused is None and walker is None, unit_rows=None if walker is None else source.n)
    snapshot()
    return pass_rt


register_method("fasterpam", fasterpam, family="swap",
                description="FasterPAM: eager swaps, one read of D per pass (recommended)")
