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

Parallelism without changing the result: the next row block is read in a background
thread while the current one is processed; with ``num_workers > 1`` candidates are
evaluated *speculatively*: a batch of upcoming candidates is split across threads, each
evaluating its sub-range against the same (unchanged) caches with the same nogil kernel and
stopping at its first improving candidate; the earliest improving one in order is swapped
and the walk continues right after it.  Candidates after it are re-evaluated against the
new caches, so the outcome is bitwise that of the sequential definition.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._kernels.swap import apply_swap, fasterpam_block, first_improving
from .._util import check_choice, format_bytes
from ..checkpoint import open_checkpoint
from ._common import SwapState, check_run, make_result, prepare, start_or_resume
from ._registry import register_method

logger = logging.getLogger(__name__)

#: default bound on passes over D.
DEFAULT_MAX_ITER = 100
#: rows per granule of the "shuffle" order (independent of memory_limit / block size).
GRANULE = 256
#: candidate orders.
ORDERS = ("natural", "shuffle")
#: row blocks held at once by a FasterPAM pass (current + read-ahead).
BLOCKS_IN_FLIGHT = 3
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


def _units(n, order, pos, block_rows):
    """Read units from order position ``pos``: list of (pos_start, pos_stop, read) where
    read is a (start, stop) row range or an index array (take_rows)."""
    units = []
    if order is None:
        for a in range(pos, n, block_rows):
            b = min(a + block_rows, n)
            units.append((a, b, (a, b)))
        return units
    if block_rows >= GRANULE:
        # granule boundaries along the order
        p = 0
        starts = []
        while p < n:
            g0 = (int(order[p]) // GRANULE) * GRANULE
            size = min(GRANULE, n - g0)
            starts.append((p, p + size, g0))
            p += size
        for ps, pe, g0 in starts:
            if pe <= pos:
                continue
            units.append((max(ps, pos), pe, (g0, g0 + (pe - ps))))
        return units
    for a in range(pos, n, block_rows):
        b = min(a + block_rows, n)
        units.append((a, b, order[a:b]))
    return units


def _read_iter(source, eng, units, desc):
    """Yield (unit, block) with read-ahead for range reads (engine.iter_blocks)."""
    if all(isinstance(u[2], tuple) for u in units):
        ranges = [u[2] for u in units]
        for u, (_, _, block) in zip(units, eng.iter_blocks(source, blocks=ranges, prefetch=1, desc=desc)):
            yield u, block
    else:
        for u in units:
            block = source.take_rows(u[2])
            eng.bytes_read += block.nbytes
            yield u, block


class _Speculator:
    """Speculative batch evaluation over ``threads`` threads (see module notes)."""

    def __init__(self, pool, threads, k, n):
        self.pool = pool
        self.threads = threads
        self.P = [np.empty(k, dtype=np.float64) for _ in range(threads)]
        self.out = [np.empty(2, dtype=np.float64) for _ in range(threads)]
        self.buf = [np.empty(n, dtype=np.int32) for _ in range(threads)]
        self.gap = 8.0  # running estimate of positions between swaps
        self.min_chunk = 8
        self.max_chunk = 2048

    def run(self, block, visit, cand, st, counters, td_box, tol, P_seq):
        n = st.n
        L = visit.shape[0]
        i = 0
        T = self.threads
        while i < L:
            since = int(counters[0])
            remaining = n - since
            if self.gap < 2.0 * T:
                # swaps are frequent: speculation would mostly be wasted; go sequential
                hi = min(L, i + 16)
                before = int(counters[1])
                consumed = fasterpam_block(block, visit[i:hi], cand[i:hi], st.M, st.medoids,
                                           st.is_medoid, st.dn, st.ds, st.nn, st.sn, st.R, st.w,
                                           st.weighted, tol, P_seq, self.buf[0], counters, td_box)
                got = int(counters[1]) - before
                self.gap = 0.8 * self.gap + 0.2 * ((hi - i) / got if got else 4.0 * (hi - i))
                i += consumed
                if counters[0] >= n:
                    return i
                continue
            chunk = int(min(self.max_chunk, max(self.min_chunk, self.gap / (2 * T))))
            hi = min(L, i + chunk * T, i + remaining)
            td_now = float(td_box[0])
            bounds = np.linspace(i, hi, T + 1).astype(np.int64)
            futures = []
            for t in range(1, T):
                lo_t, hi_t = int(bounds[t]), int(bounds[t + 1])
                if hi_t > lo_t:
                    futures.append(self.pool.submit(
                        first_improving, block, visit, cand, lo_t, hi_t, st.is_medoid, st.dn, st.ds,
                        st.nn, st.R, st.w, st.weighted, td_now, tol, self.P[t], self.buf[t], self.out[t]))
                else:
                    futures.append(None)
            hits = [(first_improving(block, visit, cand, int(bounds[0]), int(bounds[1]), st.is_medoid,
                                     st.dn, st.ds, st.nn, st.R, st.w, st.weighted, td_now, tol,
                                     self.P[0], self.buf[0], self.out[0]), 0)]
            for t, f in enumerate(futures, start=1):
                hits.append((-1 if f is None else f.result(), t))
            found = next(((p, t) for p, t in hits if p >= 0), None)
            if found is None:
                counters[0] += hi - i
                # no swap in the whole batch: grow geometrically (an additive running mean
                # settles at tiny batches where thread hand-off costs more than it saves)
                self.gap = min(2.0 * self.gap + (hi - i), 1e9)
                i = hi
                if counters[0] >= n:
                    return i
                continue
            p, t = found
            counters[0] += p - i
            slot = int(self.out[t][0])
            j = int(cand[p])
            td_box[0] = apply_swap(block[visit[p]], slot, j, st.M, st.medoids, st.is_medoid, st.dn,
                                   st.ds, st.nn, st.sn, st.R, st.w, st.weighted)
            counters[1] += 1
            counters[0] = 1
            self.gap = 0.5 * self.gap + 0.5 * (p - i + 1)
            i = p + 1
            if counters[0] >= n:
                return i
        return i


def fasterpam(D, k, *, init="random", max_iter=DEFAULT_MAX_ITER, random_state=None, weights=None,
              tol=0.0, order="natural", memory_limit="1GiB", client=None, progress=False,
              num_workers=None, block_rows=None, checkpoint=None, checkpoint_interval=60.0,
              engine=None, speculative=None):
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
        Used by the block-parallel BUILD init; the eager pass itself is sequential by
        definition and reads the blocks in this process (with read-ahead).
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

    Returns
    -------
    MedoidsResult
        ``n_iter`` = passes (the last one possibly partial), ``loss_history`` = loss after
        the init and after each pass.

    Notes
    -----
    Memory: n×k medoid table (source dtype) + O(n) caches (+ the order, 8n bytes, when
    shuffled) + up to 3 row blocks.  I/O: one read of D per pass plus the k initial medoid
    rows.
    """
    order_name = check_choice(order, "order", ORDERS)
    source, eng, owns = prepare(D, k, memory_limit=memory_limit, client=client, progress=progress,
                                num_workers=num_workers, block_rows=block_rows, engine=engine)
    try:
        k = int(k)
        n = source.n
        max_iter, tol, w, rng, params = check_run(source, k, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state,
                                                  order=order_name)
        ckpt = open_checkpoint(checkpoint, algorithm="fasterpam", source=source, params=params,
                               interval=checkpoint_interval)
        saved = ckpt.load()
        medoids, n_iter, n_swap, history, done = start_or_resume(saved, init, source, k, rng, eng, w)
        if saved is not None:
            pos, since, caches = int(saved["pos"]), int(saved["since"]), saved["caches"]
            rng_state = saved.get("rng_state")
            if rng_state is not None:
                rng.bit_generator.state = rng_state
        else:
            pos, since, caches = 0, 0, None
            rng_state = rng.bit_generator.state if order_name == "shuffle" else None
        cand_order = candidate_order(n, order_name, rng)
        st = SwapState(source, medoids, w, caches=caches)
        if not history:
            history.append(st.td)
        counters = np.array([since, n_swap], dtype=np.int64)
        td_box = np.array([st.td], dtype=np.float64)
        P = np.empty(k, dtype=np.float64)
        buf = np.empty(n, dtype=np.int32)
        if speculative is None:
            speculative = AUTO_SPECULATIVE
        if not isinstance(speculative, (bool, np.bool_)):
            from .._errors import InvalidTypeError

            raise InvalidTypeError(f"speculative must be True, False or None, got {speculative!r}")
        threads = eng.num_workers if (eng.client is None and speculative) else 1
        spec = _Speculator(eng.thread_pool(), threads, k, n) if threads > 1 else None
        brows = eng.block_rows_for(source, blocks_in_flight=BLOCKS_IN_FLIGHT)
        state_pos = [pos]

        def snapshot(done_flag=False):
            return {"medoids": st.medoids.copy(), "n_iter": n_iter, "n_swap": int(counters[1]),
                    "pos": state_pos[0], "since": int(counters[0]), "loss_history": list(history),
                    "done": done_flag, "rng_state": rng_state, "caches": st.caches()}

        while not done and (pos > 0 or n_iter < max_iter):
            t0 = time.perf_counter()
            read0 = eng.bytes_read
            swaps0 = int(counters[1])
            if pos == 0:
                n_iter += 1
            units = _units(n, cand_order, pos, brows)
            for (ps, pe, read), block in _read_iter(source, eng, units, f"fasterpam pass {n_iter}"):
                if isinstance(read, tuple):
                    base = read[0]
                    cand = np.arange(ps, pe, dtype=np.int64) if cand_order is None else cand_order[ps:pe]
                    visit = cand - base
                else:
                    cand = np.asarray(read, dtype=np.int64)
                    visit = np.arange(cand.shape[0], dtype=np.int64)
                if spec is None:
                    consumed = fasterpam_block(block, visit, cand, st.M, st.medoids, st.is_medoid,
                                               st.dn, st.ds, st.nn, st.sn, st.R, st.w, st.weighted,
                                               tol, P, buf, counters, td_box)
                else:
                    consumed = spec.run(block, visit, cand, st, counters, td_box, tol, P)
                st.td = float(td_box[0])
                pos = ps + consumed
                state_pos[0] = pos
                if counters[0] >= n:
                    done = True
                    break
                ckpt.step(snapshot)
            pos = 0
            state_pos[0] = 0
            history.append(st.td)
            logger.info("fasterpam pass %d: loss=%.10g swaps=%d %.2fs read %s", n_iter, st.td,
                        int(counters[1]) - swaps0, time.perf_counter() - t0,
                        format_bytes(eng.bytes_read - read0))
            ckpt.step(lambda: snapshot(done), force=True)  # noqa: B023 - called here
        n_swap = int(counters[1])
        result = make_result(st.M, st.medoids, w, n_iter=n_iter, n_swap=n_swap, loss_history=history,
                             algorithm="fasterpam",
                             extra={"converged": bool(done), "order": order_name})
        ckpt.complete(snapshot(True))
        return result
    finally:
        if owns:
            eng.close()


register_method("fasterpam", fasterpam, family="swap",
                description="FasterPAM: eager swaps, one read of D per pass (recommended)")
