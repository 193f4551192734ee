"""The eager walk of FasterPAM and FasterMSC on a Dask cluster (part of the engine layer).

Only the engine (:meth:`chunked_medoids.Engine.eager_walker`) creates a
:class:`DistributedEagerWalk`; like ``engine.py`` this module talks to ``distributed``
(``tests/test_layers.py`` lists both).  The drivers never see a worker: they hand the walk
an ``evaluate`` callback of :func:`~chunked_medoids.algorithms._eager.eager_passes` that
calls :meth:`DistributedEagerWalk.run`.  See ``docs/architecture.rst`` §14.

Design
------
* **Who holds what.**  The candidate rows are cut into *ownership granules* of ``G``
  consecutive rows (:func:`ownership_granule`: about 384 rows, a multiple of a store's
  chunk height so each chunk is decoded by one worker) and granule ``g`` belongs to actor
  ``g mod W``: interleaved, so that both the natural order (consecutive rows) and the
  shuffled one (random 256-row granules) spread a long batch over all workers.  One
  :class:`EagerActor` (a ``distributed`` Actor) per worker holds its granules' rows --
  read once from storage by the worker itself, or for a raw zarr store mapped from the
  page cache without a copy (*resident*), or re-read per pass through a bounded cache
  (*streaming*) -- or, for a features source with fused kernels, the
  prepared features (rows are computed).  Every actor also holds a replica of the O(n·k)
  state: the medoid table, the caches, the removal loss and the loss.  With computed rows
  any actor can walk any position: the granules are then blocks of :data:`FINE`
  positions and sequential runs are not cut at granule ends.
* **Parallel batches** (swaps are rare).  The client walks the fixed candidate order in
  batches of positions ``[lo, hi)``.  Each actor evaluates *its* candidates of the batch
  in order against its (identical) replica with the same numba kernels as the local path
  (``first_improving`` / ``first_improving_fused`` / ``msc_first_improving``) and returns
  its earliest accepted one, or how far it got; the front (the least of those) is where
  the walk continues, and a hit at the front is the sequential walk's next swap, because
  every earlier candidate was evaluated against the same state and refused.  The first
  hit is relayed by the client to the actors still busy (:meth:`EagerActor.stop_at`), which
  stop once past it.
* **Sequential runs** (swaps are dense, e.g. the first pass from a random init).  A batch
  would end at nearly every swap, so the client instead sends the run of consecutive
  positions held by one actor (up to a granule) to that actor alone, which walks it
  exactly as the sequential kernel does, applying every accepted swap on the spot, and
  returns them all.  The client picks the cheaper kind from its running estimates of the
  round-trip latency, the per-candidate cost and the positions between swaps
  (:meth:`DistributedEagerWalk._sequential`); with one worker every round trip is a run.
* **Swaps.**  The client applies each swap to its own replica (it keeps one for
  checkpoints and the result) and appends it to a log (slot, candidate, the candidate's
  row unless the workers compute rows themselves); every actor receives the swaps it has
  not seen with its next call, in order, and applies them exactly as the local code does.
  So the result is bitwise the sequential definition's for any worker count, thread
  count, block size or granule size, and the round trips of a pass are about
  ``swaps + n / (8192·W)``, not growing with n otherwise.
* **Faults.**  A worker that dies takes its actor with it.  The batch's call to it fails;
  a new actor is created on a live worker (preferring one without an actor, e.g. the one
  the nanny restarted), it re-reads its granules and receives the client's replica (equal
  bit for bit to the survivors'), and only its part of the batch is asked again.  Swaps
  carry a sequence number, so an actor never applies one twice.  The result is identical.
* **Checkpoints.**  The client holds the walk position, the counters and the replica, so
  the driver's checkpoint is the same :class:`~chunked_medoids._state.RunState` the local
  walk writes; :meth:`DistributedEagerWalk.run` returns between batches when a stop was
  requested or a save is due, and ``eager_passes`` saves there.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ._errors import ChunkedMedoidsError, InvalidParameterError
from ._kernels.fused import FusedEval
from ._kernels.msc import msc_apply, msc_first_improving
from ._kernels.swap import apply_swap, first_improving
from ._util import format_bytes
from .engine import check_resident, scheduler_workers
from .sources._mapped import map_chunk_rows

logger = logging.getLogger(__name__)

#: eager methods that can walk on the workers.
METHODS = ("fasterpam", "fastermsc")
#: rows per granule of the shuffled candidate order (``algorithms/_eager.py:GRANULE``; a
#: test checks they agree).  Ownership granules of sources without storage chunks are
#: multiples of it, so that in both orders runs of consecutive positions belong to one
#: worker.
ORDER_GRANULE = 256
#: the largest ownership granule (rows) unless a storage chunk is taller.  A trade-off: a
#: sequential run (dense swaps) ends at its granule's end, one round trip per granule; a
#: parallel batch's span per swap is about gap / W + granule / 2 (the owner of the swap
#: reaches it while the others finish or stop).  Measured at n = 24000, 2 workers
#: (``benchmarks/bench_distributed.py``): 870-row granules gave a span of 59328 candidates
#: in 46 round trips, 348-row ones 52594 in 62 -- the better one below ~6 ms per round trip.
GRANULE_CAP = 384
#: granule (positions) of a walk whose rows are computed from features (any actor can walk
#: any position): parallel batches interleave such small blocks, so an actor that accepts
#: a candidate leaves the others little to wait for or to have evaluated in vain.
FINE = 64
#: source kinds whose ``block_rows`` is a storage chunk height.
CHUNKED_KINDS = ("zarr", "hdf5", "dask")
#: set by tests to force another ownership granule (the result must not depend on it).
_granule_override = None
#: whether the actors of workers on one host share the rows of a raw zarr store (each maps
#: every chunk from the shared page cache and checks its own share; any actor then walks any
#: position): None decides (one host, resident rows, a raw store), False never (each actor
#: holds only its granules, as across hosts; tests and the benchmark's side-by-side run).
SHARE_ROWS = None
#: fraction of a worker's memory limit its resident rows may take under ``resident="auto"``.
RESIDENT_FRACTION = 0.5
#: batch bounds, in positions per worker.
MIN_PER_WORKER = 16
MAX_PER_WORKER = 8192
#: the longest sequential run when any actor can walk any position (rows computed).
MAX_RUN = 8192
#: rows an actor computes ahead per step of its prefetch thread (between looks at the
#: cancel flag, about a millisecond).
PREFETCH_STEP = 32
#: recoveries of one batch before giving up (every attempt lost another worker).
MAX_RECOVERIES = 8
#: seconds the scheduler has to answer before a failed actor call counts as its loss.
SCHEDULER_PROBE_SECONDS = 10
#: candidates an actor evaluates in a parallel batch between looks at the stop flag
#: (:meth:`EagerActor.stop_at`): about a millisecond of work.
CHECK = 96
#: what every actor counts (:meth:`EagerActor.stats_now`, reported by
#: :meth:`DistributedEagerWalk.summary` under ``"actors"``): seconds in steps (``busy_s``,
#: of which ``apply_s`` applying the swaps found elsewhere -- the replicated work --,
#: ``apply_own_s`` applying its own swaps of sequential runs, ``scan_s`` the kernels),
#: ``cpu_s`` the actor thread's CPU time in steps, ``idle_s`` wall time between steps
#: (waiting for the client and the other actors), ``load_s``/``load_cpu_s`` reading the
#: resident rows (``mapped_bytes`` of them mapped from the page cache rather than read,
#: ``held_bytes_in`` copied from stripes the engine held), calls, parallel batches and
#: sequential runs served, parallel batches cut short by a stop, candidates evaluated, swaps received and the bytes of swapped rows
#: received and sent; ``prefetch_s`` / ``prefetched_rows`` the rows computed ahead while
#: idle (:meth:`EagerActor.prefetch`) and ``evaluated_prefetched`` the candidates evaluated
#: from them.
STAT_KEYS = ("busy_s", "apply_s", "apply_own_s", "scan_s", "cpu_s", "idle_s", "load_s", "load_cpu_s", "mapped_bytes",
             "held_bytes_in",
             "calls",
             "parallel", "runs", "stopped", "evaluated", "swaps_in", "rows_in_bytes", "rows_out_bytes",
             "prefetch_s", "prefetched_rows", "evaluated_prefetched")


def ownership_granule(source, workers: int) -> int:
    """Rows per ownership granule, as large as :data:`GRANULE_CAP` while every worker still
    gets at least four granules: a multiple of a store's chunk height (each chunk decoded by
    exactly one worker; a chunk taller than that budget is one granule), else a multiple
    of :data:`ORDER_GRANULE`.

    Granule ``g`` belongs to actor ``g mod W``.  The sequential runs of dense swaps are as
    long as a granule (in the shuffled order: as long as the stretch of a 256-row shuffle
    granule that lies in one ownership granule).  Never changes the result.
    """
    if _granule_override is not None:
        return int(_granule_override)
    per = min(GRANULE_CAP, source.n // (4 * max(1, workers)))
    c = int(getattr(source, "block_rows", 0) or 0) if getattr(source, "kind", "") in CHUNKED_KINDS else 0
    if c >= 1:
        return c * max(1, per // c)
    return ORDER_GRANULE * max(1, per // ORDER_GRANULE)


class _Replica:
    """An actor's copy of the O(n·k) state (the attributes the kernels take)."""

    def __init__(self, method, state, w, weighted):
        self.__dict__.update({k: (np.array(v) if isinstance(v, np.ndarray) else v) for k, v in state.items()})
        self.w, self.weighted = w, weighted
        self.n = int(self.M.shape[0])
        self.k = int(self.M.shape[1])


class EagerActor:
    """One worker's share of a distributed eager walk (a ``distributed`` Actor).

    Created by :class:`DistributedEagerWalk` only.  Holds the rows of its ownership
    granules (or the prepared features), the candidate order, and a replica of the state.

    Parameters
    ----------
    payload : dict
        ``method``, ``source``, ``order`` (None: natural), ``granule``, ``granules`` (the
        owned granule ids), ``state`` (the replica's arrays and scalars), ``params``
        (``tol``, ``eps_abs``, ``w``, ``weighted``, ``fused``, ``applied``), ``resident``,
        ``budget`` (bytes of the streaming cache), ``threads``.
    """

    def __init__(self, payload):
        p = payload
        self.method = p["method"]
        self.source = p["source"]
        n = self.n = int(self.source.n)
        self.G = int(p["granule"])
        self.granules = np.asarray(p["granules"], dtype=np.int64)
        order = p["order"]
        cand_all = np.arange(n, dtype=np.int64) if order is None else np.asarray(order, dtype=np.int64)
        par = p["params"]
        # rows computed from the features, or every row mapped on every actor (``shared``:
        # workers on one host): any actor can walk any position, so sequential runs go
        # anywhere; with computed rows the granules are blocks of positions (not of rows),
        # shared rows keep the ownership granules for parallel batches (rows this actor
        # checked, so already in its page tables)
        computed = self.method == "fasterpam" and bool(par["fused"])
        self.shared = bool(p.get("shared")) and not computed
        self.anywhere = computed or self.shared
        # the row ranges this actor checks when it maps every row (shared): its granules of
        # the chunk-aligned ownership
        self.verify = p.get("verify")
        self.cand_all, self.natural = cand_all, order is None
        n_gran = -(-n // self.G)
        owned = np.zeros(n_gran, dtype=np.bool_)
        owned[self.granules] = True
        key = np.arange(n, dtype=np.int64) if computed else cand_all
        self.own_pos = np.flatnonzero(owned[key // self.G]).astype(np.int64)
        self.own_cand = np.ascontiguousarray(cand_all[self.own_pos])
        self.tol, self.eps_abs = float(par["tol"]), float(par.get("eps_abs", 0.0))
        self.st = _Replica(self.method, p["state"], par["w"], bool(par["weighted"]))
        self.applied = int(par["applied"])
        self.threads = max(1, int(p.get("threads", 1)))
        self.k = self.st.k
        self.P = [np.empty(self.k, dtype=np.float64) for _ in range(self.threads)]
        self.out = [np.empty(2, dtype=np.float64) for _ in range(self.threads)]
        self.buf = [np.empty(n, dtype=np.int32) for _ in range(self.threads)]
        self.pool = ThreadPoolExecutor(self.threads - 1, thread_name_prefix="cm-actor") if self.threads > 1 else None
        self.fused = None
        if self.method == "fasterpam" and par["fused"]:
            self.fused = FusedEval(self.source.fused_bundle(), self.threads, self.st.ds)
        self.resident = bool(p["resident"]) and self.fused is None
        self.bytes_read = 0
        self.peers = int(p.get("workers", 1)) > 1  # parallel batches can be cut short by a stop
        self._stop = (-1, 0)  # (batch, position): set by stop_at() from the worker's event loop
        self.stats = dict.fromkeys(STAT_KEYS, 0)
        self._t_end = None  # end of the last step (idle time between steps)
        self._proc0 = time.process_time()
        self.rows = None
        self.vrow = None  # resident rows: vrow[r] is the row of self.rows holding row r (load())
        # rows computed ahead while another actor walks a run (computed rows only): the
        # buffer of rows for the positions [pre_lo, pre_lo + pre_done) of the order
        self.pre_rows, self.pre_lo, self.pre_done, self._pre_thread, self._pre_cancel = None, 0, 0, None, False
        itemsize = np.dtype(self.source.dtype).itemsize
        self.pre_cap = (min(MAX_RUN, int(p.get("budget", 0)) // max(1, n * itemsize))
                        if computed and self.peers else 0)
        if self.pre_cap < PREFETCH_STEP:
            self.pre_cap = 0
        if self.fused is None:
            itemsize = np.dtype(self.source.dtype).itemsize
            gbytes = self.G * n * itemsize
            owned_count = len(self.granules)  # 0 when there are more workers than granules
            self.cap = owned_count if self.resident else min(owned_count, max(1, int(p["budget"]) // max(1, gbytes)))
            # resident rows are mapped or read by load(); a streaming cache is filled as needed
            self.rows = None if self.resident else _row_buffer((self.cap * self.G, n), self.source.dtype)
            self.slot_of = np.full(n_gran, -1, dtype=np.int64)
            self.slot_gran = np.full(self.cap, -1, dtype=np.int64)
            self.slot_clock = np.zeros(self.cap, dtype=np.int64)
            self.clock = 0

    # -- rows --------------------------------------------------------------------------
    def _read_granule(self, g, slot):
        a = int(g) * self.G
        b = min(a + self.G, self.n)
        old = self.slot_gran[slot]
        if old >= 0:
            self.slot_of[old] = -1
        self.rows[slot * self.G: slot * self.G + (b - a)] = self.source.read_rows(a, b)
        self.bytes_read += (b - a) * self.n * self.rows.itemsize
        self.slot_gran[slot] = g
        self.slot_of[g] = slot

    def _spans(self):
        """``(start, stop)`` rows of the owned granules, in slot order."""
        return [(int(g) * self.G, min((int(g) + 1) * self.G, self.n)) for g in self.granules]

    def _buffer(self):
        """The buffer of read resident rows (made once): ``rows``, the row index of its
        slots ``_slot_row`` and the rows present ``_have``."""
        if self.rows is None:
            self.rows = _row_buffer((self.cap * self.G, self.n), self.source.dtype)
            idx = np.full(self.n, -1, dtype=np.int64)
            for slot, (a, b) in enumerate(self._spans()):
                idx[a:b] = np.arange(slot * self.G, slot * self.G + (b - a), dtype=np.int64)
            self._slot_row, self._have = idx, np.zeros(self.n, dtype=np.bool_)

    def take_rows(self, block, start, stop):
        """Copy the rows of ``block`` (rows ``start:stop`` of D: a stripe the engine held from
        an earlier pass, e.g. BUILD's) that this actor holds resident into its buffer, before
        :meth:`load` reads the rest from storage; returns the bytes taken.  Runs in a task
        on this actor's worker (:func:`_give_rows`), never while the actor walks."""
        if not self.resident or self.fused is not None or self.vrow is not None or self.shared:
            return 0
        self._buffer()
        taken = 0
        for slot, (a, b) in enumerate(self._spans()):
            lo, hi = max(a, int(start)), min(b, int(stop))
            if lo >= hi:
                continue
            self.rows[slot * self.G + (lo - a): slot * self.G + (hi - a)] = block[lo - start: hi - start]
            self._have[lo:hi] = True
            taken += (hi - lo) * self.n * self.rows.itemsize
        self.stats["held_bytes_in"] += taken
        return taken

    def load(self):
        """Hold the resident granules (once); returns ``(bytes read, seconds, ok)``.

        Sharing the rows (``shared``: the actors of one host), every chunk is mapped and
        this actor's share checked; ``ok`` is False when they cannot be mapped (the client
        then makes the actors again, each holding its own granules).

        A raw zarr store's chunks are mapped from the page cache
        (:func:`~chunked_medoids.sources._mapped.map_chunk_rows`: no copy, no fresh memory,
        checksums and fill checks as a read makes them); any other source's granules are
        read into one buffer, except the rows :meth:`take_rows` was given.  ``vrow[r]`` is
        then the row of ``rows`` holding row ``r``.
        """
        t0, c0 = time.perf_counter(), time.thread_time()
        if self.shared and self.vrow is None:
            # every row mapped from the page cache the workers of this host share; only this
            # actor's share checked (the others check theirs before the walk starts)
            mapped = map_chunk_rows(self.source, [(0, self.n)], verify=self.verify)
            if mapped is None:
                return 0, time.perf_counter() - t0, False  # the client falls back to owned rows
            self.rows, self.vrow = mapped.rows, mapped.index
            self.stats["mapped_bytes"] += mapped.nbytes
            self.bytes_read += sum(b - a for a, b in self.verify) * self.n * self.rows.itemsize
        elif self.resident and self.fused is None and self.vrow is None:
            spans = self._spans()
            mapped = None if self.rows is not None else map_chunk_rows(self.source, spans)
            if mapped is not None:
                self.rows, self.vrow = mapped.rows, mapped.index
                self.bytes_read += mapped.nbytes
                self.stats["mapped_bytes"] += mapped.nbytes
            else:
                self._buffer()
                for slot, (a, b) in enumerate(spans):
                    # the runs of rows not handed over (take_rows): all of them, usually
                    missing = np.flatnonzero(~self._have[a:b])
                    if missing.shape[0] == 0:
                        continue
                    cuts = np.flatnonzero(np.diff(missing) != 1) + 1
                    for run in np.split(missing, cuts):
                        lo, hi = a + int(run[0]), a + int(run[-1]) + 1
                        self.rows[slot * self.G + (lo - a): slot * self.G + (hi - a)] = self.source.read_rows(lo, hi)
                        self.bytes_read += (hi - lo) * self.n * self.rows.itemsize
                self.vrow, self._have = self._slot_row, None
        elif self.fused is not None:
            self.fused.refresh(self.st.ds)
        secs = time.perf_counter() - t0
        self.stats["load_s"] += secs
        self.stats["load_cpu_s"] += time.thread_time() - c0
        self._t_end = time.perf_counter()
        return self.bytes_read, secs, True

    async def stop_at(self, batch, pos):
        """Tell the running parallel batch ``batch`` that a candidate at position ``pos``
        was accepted elsewhere: positions from ``pos`` on need not be evaluated.  Runs on
        the worker's event loop (an async actor method), while :meth:`step` runs in the
        actor thread and looks at the flag between sub-batches of :data:`CHECK` candidates."""
        cur = self._stop
        if batch > cur[0] or (batch == cur[0] and pos < cur[1]):
            self._stop = (int(batch), int(pos))

    def _stopped(self, batch, pos):
        b, p = self._stop
        return b == batch and pos >= p

    def prefetch(self, lo, hi):
        """Compute the rows of positions ``[lo, hi)`` of the order ahead, in a background
        thread, while this actor is idle (another one walks a sequential run); the next
        :meth:`step` stops it and evaluates the positions computed so far from those rows
        with the stored kernel -- bitwise the fused kernel's result on them
        (``_kernels/fused.py``) at about half the cost.  Rows depend on no state, so they
        stay valid for the rest of the walk.  A hint: errors just end it."""
        self._cancel_prefetch()
        hi = min(int(hi), int(lo) + self.pre_cap, self.n)
        if self.pre_cap == 0 or hi <= lo:
            return
        if self.pre_rows is None:
            self.pre_rows = np.empty((self.pre_cap, self.n), dtype=self.source.dtype)
        self.pre_lo, self.pre_done, self._pre_cancel = int(lo), 0, False
        self._pre_thread = threading.Thread(target=self._prefetch_loop, args=(int(lo), hi), daemon=True,
                                            name="cm-prefetch")
        self._pre_thread.start()

    def _prefetch_loop(self, lo, hi):
        t0 = time.perf_counter()
        try:
            a = lo
            while a < hi and not self._pre_cancel:
                b = min(hi, a + PREFETCH_STEP)
                cand = self.cand_all[a:b]
                contiguous = self.natural
                block = self.source.read_rows(int(cand[0]), int(cand[-1]) + 1) if contiguous else \
                    self.source.take_rows(cand)
                self.pre_rows[a - lo:b - lo] = block
                self.pre_done = b - lo
                a = b
        except Exception:  # noqa: BLE001 - a hint: the walk computes these rows itself
            pass
        self.stats["prefetch_s"] += time.perf_counter() - t0
        self.stats["prefetched_rows"] += self.pre_done

    def _cancel_prefetch(self):
        t = self._pre_thread
        if t is not None:
            self._pre_cancel = True
            t.join()
            self._pre_thread = None

    def _ensure(self, gran):
        """Make the granules ``gran`` (in order of use) present; returns how many of the
        leading positions are covered (the streaming cache may hold fewer than needed)."""
        if self.resident:
            return gran.shape[0]
        self.clock += 1
        pinned = 0
        seen = {}
        for i in range(gran.shape[0]):
            g = int(gran[i])
            if g in seen:
                continue
            if pinned >= self.cap:
                return i
            seen[g] = True
            pinned += 1
            slot = self.slot_of[g]
            if slot < 0:
                free = np.flatnonzero(self.slot_clock < self.clock)
                slot = int(free[np.argmin(self.slot_clock[free])])
                self._read_granule(g, slot)
            self.slot_clock[slot] = self.clock
        return gran.shape[0]

    # -- the kernels -------------------------------------------------------------------
    def _scan(self, t, visit, cand, lo, hi, rows=None):
        st = self.st
        if self.fused is not None and rows is None:
            return self.fused.first(t, cand, lo, hi, st, st.td, self.tol, self.P[t], self.out[t])
        if self.method == "fasterpam":
            return first_improving(self.rows if rows is None else rows, visit, cand, lo, hi, st.is_medoid,
                                   st.dn, st.ds, st.nn, st.R, st.w, st.weighted, st.td, self.tol, self.P[t],
                                   self.buf[t], self.out[t])
        return msc_first_improving(self.rows, visit, cand, lo, hi, st.is_medoid, st.d1, st.d2, st.d3, st.n1,
                                   st.n2, st.R, st.w, st.weighted, st.L, self.tol, self.eps_abs, self.P[t],
                                   self.out[t])

    def _first(self, visit, cand, rows=None):
        """Earliest accepted index of ``cand`` (or -1) and its thread (for ``out``)."""
        m = cand.shape[0]
        T = self.threads
        if T == 1 or m < 4 * T:
            return self._scan(0, visit, cand, 0, m, rows), 0
        bounds = np.linspace(0, m, T + 1).astype(np.int64)
        futs = [self.pool.submit(self._scan, t, visit, cand, int(bounds[t]), int(bounds[t + 1]), rows)
                for t in range(1, T)]
        hits = [(self._scan(0, visit, cand, int(bounds[0]), int(bounds[1]), rows), 0)]
        hits += [(f.result(), t) for t, f in enumerate(futs, start=1)]
        return next(((h, t) for h, t in hits if h >= 0), (-1, 0))

    def _apply_local(self, slot, j, row):
        st = self.st
        if self.fused is not None:
            st.td = self.fused.apply(slot, j, st)
        elif self.method == "fasterpam":
            st.td = apply_swap(row, slot, j, st.M, st.medoids, st.is_medoid, st.dn, st.ds, st.nn, st.sn,
                               st.R, st.w, st.weighted)
        else:
            st.L = msc_apply(row, slot, j, st.M, st.medoids, st.is_medoid, st.d1, st.d2, st.d3, st.n1,
                             st.n2, st.n3, st.R, st.w, st.weighted)

    def _apply(self, swap):
        seq, slot, j, row = swap
        if seq <= self.applied:
            return  # already applied (a batch asked again after a recovery, or our own swap)
        if seq != self.applied + 1:
            raise ChunkedMedoidsError(f"swap {seq} arrived after swap {self.applied} (lost message)")
        if row is None and self.shared:
            row = self.rows[self.vrow[j]]  # every row is mapped here: the swap needs no row sent
        self._apply_local(slot, j, row)
        self.applied = seq

    def step(self, swaps, lo, hi, since=None, batch=-1, quiet=0):
        """Apply the ``swaps`` not applied yet, then walk this actor's candidates at
        positions ``[lo, hi)``.

        ``since=None`` (a *parallel* batch, number ``batch``): stop at the first accepted
        candidate and do not apply it; also stop early once :meth:`stop_at` said a
        candidate at an earlier position was accepted elsewhere.  ``since`` an int (a
        *sequential* run: every position of ``[lo, hi)`` is this actor's): apply each
        accepted candidate at once and go on right after it, as the sequential kernel does,
        counting ``since`` (positions since the last swap) and stopping when it reaches n,
        or (``quiet`` > 0) once ``quiet`` positions of the run passed without a swap: swaps
        became sparse, the client's next round trip may be a parallel batch.

        Returns ``(hits, end, since, bad, seconds, evaluated, bytes_read, cpu_seconds)``: ``hits`` a list
        of ``(pos, slot, j, row)`` (``row`` None when rows are computed); ``end`` the
        position the walk reached (a sequential run), or for a parallel batch the hit's
        position, else the first of this actor's positions left unevaluated (``hi`` when
        all were): every candidate of this actor before ``end`` was evaluated and refused;
        ``bad`` whether a computed row held a non-finite entry.
        """
        self._cancel_prefetch()
        t0, c0 = time.perf_counter(), time.thread_time()
        S = self.stats
        if self._t_end is not None:
            S["idle_s"] += t0 - self._t_end
        read0 = self.bytes_read
        for sw in swaps:
            self._apply(sw)
        t1 = time.perf_counter()
        S["apply_s"] += t1 - t0
        run = since is not None
        if run and self.anywhere:
            pos = np.arange(lo, hi, dtype=np.int64)
            cand = self.cand_all[lo:hi]
        else:
            a = int(np.searchsorted(self.own_pos, lo))
            b = int(np.searchsorted(self.own_pos, hi))
            pos, cand = self.own_pos[a:b], self.own_cand[a:b]
        m = cand.shape[0]
        if run and m != hi - lo:
            raise ChunkedMedoidsError(f"positions {lo}..{hi} are not all held by this actor")
        n = self.n
        limit = min(m, n - int(since)) if run else m
        if run and quiet > 0:
            limit = min(limit, int(quiet))
        cut = self.peers and not run  # a parallel batch another actor's hit may cut short
        hits, bad, evaluated, i, stopped = [], False, 0, 0, False
        while i < limit and not stopped:
            rows = None
            if self.fused is not None:
                e, visit_all = limit, None
                if run and self.pre_done:  # rows computed ahead cover part of the run
                    p0, p1, here = self.pre_lo, self.pre_lo + self.pre_done, lo + i
                    if p0 <= here < p1:
                        e = min(limit, p1 - lo)
                        visit_all, rows = np.arange(here - p0, lo + e - p0, dtype=np.int64), self.pre_rows
                    elif here < p0 < lo + limit:
                        e = p0 - lo
            else:
                if self.vrow is not None:  # resident: every owned row is held
                    e, visit_all = limit, self.vrow[cand[i:limit]]
                else:
                    gran = cand[i:limit] // self.G
                    e = i + self._ensure(gran)
                    visit_all = self.slot_of[gran[:e - i]] * self.G + cand[i:e] % self.G
            base = i
            hit = False
            while i < e:
                if cut and self._stopped(batch, int(pos[i])):
                    stopped = True
                    break
                f = min(e, i + CHECK) if cut else e
                sub = cand[i:f]
                visit = None if visit_all is None else visit_all[i - base:f - base]
                h, t = self._first(visit, sub, rows)
                if rows is not None:
                    S["evaluated_prefetched"] += (f - i) if h < 0 else h + 1
                if self.fused is not None and rows is None and self.fused.bad():
                    bad = stopped = True
                    break
                if h < 0:
                    evaluated += f - i
                    if run:
                        since += f - i
                    i = f
                    continue
                evaluated += h + 1
                slot, j = int(self.out[t][0]), int(sub[h])
                row = None if self.fused is not None else self.rows[int(visit[h])].copy()
                hits.append((int(pos[i + h]), slot, j, row))
                i += h + 1
                hit = True
                break
            if not hit:
                continue
            if not run:
                break
            ta = time.perf_counter()
            self._apply_local(slot, j, row)
            S["apply_own_s"] += time.perf_counter() - ta
            self.applied += 1
            since = 1
            limit = min(m, i + n - 1)
            if quiet > 0:
                limit = min(limit, i + int(quiet))
        if run:
            end = lo + i
        elif hits:
            end = hits[0][0]
        else:
            end = int(pos[i]) if i < m else hi
        t2 = time.perf_counter()
        S["calls"] += 1
        S["parallel" if not run else "runs"] += 1
        S["stopped"] += int(stopped and not bad)
        S["scan_s"] += t2 - t1
        S["busy_s"] += t2 - t0
        S["evaluated"] += evaluated
        S["swaps_in"] += len(swaps)
        S["rows_in_bytes"] += sum(0 if sw[3] is None else sw[3].nbytes for sw in swaps)
        S["rows_out_bytes"] += sum(0 if h[3] is None else h[3].nbytes for h in hits)
        cpu = time.thread_time() - c0
        S["cpu_s"] += cpu
        self._t_end = t2
        return (hits, end, since, bad, t2 - t0, int(evaluated), self.bytes_read - read0, cpu)

    def stats_now(self):
        """The counters of :data:`STAT_KEYS` (seconds of this actor's thread; ``proc_cpu_s``
        the worker process's CPU time since the actor was made, every thread)."""
        return dict(self.stats, proc_cpu_s=time.process_time() - self._proc0)

    def reset(self, state, applied):
        """Replace the replica by ``state`` (the client's, e.g. DynMSC's next k: one medoid
        fewer), swap ``applied`` being the last one it includes; the rows stay."""
        self.st = _Replica(self.method, state, self.st.w, self.st.weighted)
        self.k = self.st.k
        self.P = [np.empty(self.k, dtype=np.float64) for _ in range(self.threads)]
        self.applied = int(applied)
        if self.fused is not None:
            self.fused.refresh(self.st.ds)

    def state(self):
        """The replica's arrays (tests: every replica equals the client's)."""
        return {k: v for k, v in self.st.__dict__.items() if isinstance(v, np.ndarray)}

    def info(self):
        """``(resident, rows held, granules, bytes read)``."""
        held = 0 if self.rows is None else int(self.stats["mapped_bytes"] or self.rows.nbytes)
        return bool(self.resident), held, int(self.granules.shape[0]), int(self.bytes_read)


def _give_rows(actor_key, block, start, stop):
    """A task on an actor's worker: hand it the rows ``block`` (rows ``start:stop``, a
    stripe the engine held) before it loads (:meth:`EagerActor.take_rows`)."""
    from distributed import get_worker

    return get_worker().state.actors[actor_key].take_rows(block, start, stop)


def _row_buffer(shape, dtype):
    """An uninitialised array for an actor's rows, on transparent huge pages where the OS
    offers them (``madvise(MADV_HUGEPAGE)``, Linux): first touching gigabytes of 4 KiB pages
    costs more CPU than reading the rows (measured: 2.3 s against 0.4 s per GiB on the
    benchmark machine); elsewhere plain ``np.empty``."""
    import mmap

    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    advice = getattr(mmap, "MADV_HUGEPAGE", None)
    if advice is None or nbytes < (64 << 20):
        return np.empty(shape, dtype=dtype)
    try:
        buf = mmap.mmap(-1, nbytes, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
        buf.madvise(advice)
    except (OSError, ValueError):  # pragma: no cover - no anonymous maps / advice refused
        return np.empty(shape, dtype=dtype)
    return np.frombuffer(buf, dtype=dtype).reshape(shape)  # the array keeps the map alive


#: no value (the client's ``direct_to_workers`` was not changed)
_UNSET = object()


class _NotShared(Exception):
    """An actor could not map every row of the store (sharing them): make them again, each
    holding its own granules."""


def _is_lost(exc) -> bool:
    """Whether ``exc`` (raised by an actor call) means its worker went away."""
    from distributed.comm.core import CommClosedError

    if isinstance(exc, ChunkedMedoidsError):  # e.g. a StoreCorruptionError (an OSError) raised by the actor
        return False
    if isinstance(exc, (CommClosedError, OSError, TimeoutError)):
        return True
    return isinstance(exc, RuntimeError) and "was lost" in str(exc)


class DistributedEagerWalk:
    """Client side of a distributed eager walk (see the module notes).

    Parameters
    ----------
    engine : Engine
        An engine with a ``distributed`` client.
    source : DissimilaritySource
    method : {"fasterpam", "fastermsc"}
    order : ndarray of int64 or None
        The candidate order (None: 0..n-1).
    state : callable
        ``state()`` -> the client's current replica (dict of arrays and scalars: the
        medoid table, medoids, is_medoid, the caches, R and the loss).
    params : dict
        ``tol``, ``w``, ``weighted``, ``fused``, and ``eps_abs`` for FasterMSC.
    resident : {"auto", True, False}
    n_swap : int
        Swaps done before this walk (a resumed run), the first sequence number.
    held : list of (start, stop, future, worker address)
        Row stripes the engine holds on the workers (:meth:`Engine.held_stripes`), kept
        alive by the caller until this constructor returns: the actors copy their rows from
        them instead of reading them from storage (unless the rows are mapped anyway).
    """

    def __init__(self, engine, source, *, method, order, state, params, resident="auto", n_swap=0, held=()):
        if method not in METHODS:
            raise InvalidParameterError(f"method must be one of {METHODS}, got {method!r}")
        self.engine, self.client, self.source = engine, engine.client, source
        self.method, self.order, self.state_fn, self.params = method, order, state, dict(params)
        self.n = int(source.n)
        self.seq = int(n_swap)
        self.log = []  # swaps (seq, slot, j, row) not yet delivered to every actor
        self.round_trips = 0
        self.runs = self.batches = 0  # sequential runs on one actor / parallel batches on all
        self.run_positions = 0  # positions walked in sequential runs
        self.recoveries = 0
        self.held_bytes = 0  # rows the actors took from stripes the engine held (_hand_over)
        self.worker_seconds = 0.0
        self.evaluated = 0
        self.gap = 8.0
        self.batch_id = 0  # parallel batches sent (the stop flags name it)
        self.run_actor = 0  # the actor of the next sequential run when any actor can walk any position
        self.stops_sent = 0
        self.rt_seconds = 0.0  # wall time of the round trips
        self.critical_cpu = 0.0  # Σ over round trips of the slowest actor's CPU seconds
        # Σ over round trips of the most candidates one actor had to evaluate (before the
        # batch's front; a run's whole length): the walk's critical path in candidates,
        # a property of the walk alone (not of the machine's load)
        self.span = 0
        self.actor_stats = None  # the actors' counters, fetched by close()
        self._pass_marks = (0, 0.0, 0)
        self.futures, self.actors, self.addresses = [], [], []
        self._direct_restore = _UNSET  # the client's direct_to_workers to restore (_go_direct)
        self.direct = bool(self.client.direct_to_workers)
        workers = self._workers()
        if not workers:
            raise ChunkedMedoidsError("the Dask cluster has no workers; start some and rerun")
        W = len(workers)
        self.W = W
        self.fused = bool(self.params.get("fused"))
        # the chunk-aligned ownership of the rows (each actor holds, or checks, its granules)
        self.G_own = ownership_granule(source, W)
        n_own = -(-self.n // self.G_own)
        self.assign_own = [np.arange(a, n_own, W, dtype=np.int64) for a in range(W)]
        self.sent = [self.seq] * W  # last swap each actor has
        self.latency, self.t_cand = 2e-3, 1e-9 * self.n  # running estimates (seconds)
        share = 0 if method == "fasterpam" and self.fused else (
            max(min(self.G_own * len(g), self.n) for g in self.assign_own) * self.n * source.dtype.itemsize)
        self.resident, why = self._decide(check_resident(resident), share, workers)
        self.share = share
        self.budget = engine.memory_limit
        self.shared = self._share(workers)
        self._layout()
        logger.info("%s on %d workers: %s (%s); granules of %d rows", method, W,
                    "rows computed from the features" if self.fused else
                    ("resident rows" if self.resident else "rows streamed from storage"), why, self.G)
        if self.shared:
            logger.info("%s: the %d workers share one host: each maps every row of the store from the "
                        "page cache and checks its own %d-row granules; any worker walks any position",
                        method, W, self.G_own)
        t0 = time.perf_counter()
        for _attempt in range(2):
            try:
                for a, addr in enumerate(sorted(workers)):
                    self._create(a, addr, workers[addr][0])
                self._go_direct()
                self.create_seconds = time.perf_counter() - t0
                self._hand_over(held)
                self._load(list(range(W)))
                self.load_seconds = time.perf_counter() - t0 - self.create_seconds
                break
            except _NotShared:
                # some worker could not map the store: each actor holds its own granules
                logger.info("%s: a worker could not map the store's rows; each holds its own granules",
                            method)
                self.close()
                self.actor_stats, self.shared = None, False
                self._layout()
            except BaseException:
                self.close()
                raise
        self.setup_seconds = time.perf_counter() - t0
        self._t_walk, self._c_walk = time.perf_counter(), time.process_time()
        self.walk_seconds = self.client_cpu = 0.0
        logger.info("%s: %d actors ready in %.2fs", method, W, self.setup_seconds)

    # -- cluster -----------------------------------------------------------------------
    def _workers(self):
        info = scheduler_workers(self.client)
        return {addr: (int(w.get("nthreads", 1) or 1), int(w.get("memory_limit", 0) or 0), str(w.get("host", "")))
                for addr, w in info.items()}

    def _share(self, workers) -> bool:
        """Whether the actors share the rows (:data:`SHARE_ROWS`): several workers, all on
        one host (one page cache), holding the resident rows of a raw zarr store (which
        they map rather than read: sharing costs no memory and no reads)."""
        if SHARE_ROWS is False or self.W < 2 or self.fused or not self.resident:
            return False
        plan = getattr(self.source, "raw_chunk_files", None)
        if plan is None or plan() is None:
            return False
        hosts = {host for _, _, host in workers.values()}
        return len(hosts) == 1 and "" not in hosts

    def _layout(self):
        """The granules of the walk: blocks of :data:`FINE` positions when rows are computed
        (any actor walks any position), else the ownership granules of rows (also when the
        rows are shared: any actor walks any run, parallel batches go by owner)."""
        W = self.W
        computed = self.method == "fasterpam" and self.fused
        self.anywhere = computed or self.shared
        if computed:
            self.G = int(_granule_override) if _granule_override is not None else FINE
        else:
            self.G = self.G_own
        n_gran = -(-self.n // self.G)
        self.assign = [np.arange(a, n_gran, W, dtype=np.int64) for a in range(W)]
        cand_all = np.arange(self.n, dtype=np.int64) if self.order is None else np.asarray(self.order, dtype=np.int64)
        owner = ((np.arange(self.n, dtype=np.int64) if computed else cand_all) // self.G) % W
        self.owner = owner.astype(np.int32)
        self.breaks = (np.flatnonzero(np.diff(owner)) + 1).astype(np.int64)  # where the owner changes
        self.run_actor = 0

    def _decide(self, resident, share, workers):
        if self.fused:
            return False, "a features source: each worker computes its candidates' rows"
        if resident is True:
            return True, f"resident=True: {format_bytes(share)} per worker"
        if resident is False:
            return False, "resident=False"
        limits = [m for _, m, _ in workers.values() if m > 0]
        cap = RESIDENT_FRACTION * min(limits) if limits else float(self.engine.memory_limit)
        basis = (f"{RESIDENT_FRACTION:g} of the smallest worker memory limit" if limits
                 else "memory_limit (the workers have no memory limit)")
        if share <= cap:
            return True, f"resident='auto': {format_bytes(share)} per worker fits in {basis} ({format_bytes(cap)})"
        return False, f"resident='auto': {format_bytes(share)} per worker exceeds {basis} ({format_bytes(cap)})"

    def _payload(self, a, threads):
        par = dict(self.params, applied=self.seq)
        verify = [(int(g) * self.G_own, min((int(g) + 1) * self.G_own, self.n)) for g in self.assign_own[a]]
        return {"method": self.method, "source": self.source, "order": self.order, "granule": self.G,
                "granules": self.assign[a], "state": self.state_fn(), "params": par,
                "resident": self.resident, "budget": self.budget, "threads": threads, "workers": self.W,
                "shared": self.shared, "verify": verify}

    def _hand_over(self, held):
        """Give the actors the rows of the stripes ``held`` on the workers before they read
        theirs: one task per (stripe, actor holding some of its rows), on the actor's worker
        (``distributed`` moves a stripe held elsewhere there), copying the rows into the
        actor (:func:`_give_rows`).  Skipped when the actors map their rows from the page
        cache (a raw zarr store: cheaper than any copy).  A failed hand-over only means that
        the actor reads those rows itself."""
        self.held_bytes = 0
        plan = getattr(self.source, "raw_chunk_files", None)
        if not held or not self.resident or self.fused or (plan is not None and plan() is not None):
            return
        from distributed import wait

        futs = []
        for s, e, fut, _addr in held:
            for a in np.unique((np.arange(s, e, dtype=np.int64) // self.G) % self.W):
                futs.append(self.client.submit(_give_rows, self.futures[int(a)].key, fut, s, e, pure=False,
                                               workers=[self.addresses[int(a)]], allow_other_workers=False,
                                               key=f"cm-give-{self.method}-{int(a)}-{s}-{time.monotonic_ns()}"))
        try:
            wait(futs, timeout=300)
        except Exception:  # noqa: BLE001 - the actors read what they did not get
            pass
        for f in futs:
            if f.status == "finished":
                self.held_bytes += int(f.result())
        logger.info("%s: the actors took %s of rows from %d stripes held on the workers", self.method,
                    format_bytes(self.held_bytes), len(held))
        self.client.cancel(futs)

    def _go_direct(self):
        """Send the actor calls straight to the workers, not through the scheduler.

        ``distributed`` routes an actor call through the scheduler (two more hops each way)
        unless the client has ``direct_to_workers`` set, which is off by default; the walk
        sets it for its own duration (restored by :meth:`close`) once every actor answers
        a direct call, and keeps the scheduler's route when one does not (workers the
        client cannot reach)."""
        client = self.client
        if client.direct_to_workers:
            return
        self._direct_restore = client.direct_to_workers
        client.direct_to_workers = True
        try:
            for fut in [act.info() for act in self.actors]:
                fut.result(timeout=SCHEDULER_PROBE_SECONDS)
        except Exception as exc:  # noqa: BLE001 - not reachable directly: the scheduler's route
            client.direct_to_workers, self._direct_restore = self._direct_restore, _UNSET
            logger.info("%s: actor calls go through the scheduler (a direct call failed: %s: %s)",
                        self.method, type(exc).__name__, exc)
            return
        self.direct = True

    def _create(self, a, addr, threads):
        client = self.client
        # the payload goes straight to its worker (not through the scheduler); it is released
        # with the actor (cancelling it would cancel the actor, its dependent)
        data = client.scatter([self._payload(a, threads)], workers=[addr], hash=False)[0]
        fut = client.submit(EagerActor, data, actor=True, workers=[addr], allow_other_workers=False,
                            pure=False, key=f"cm-eager-{self.method}-{a}-{time.monotonic_ns()}")
        actor = fut.result()
        del data
        if a < len(self.actors):
            self.futures[a], self.actors[a], self.addresses[a] = fut, actor, addr
        else:
            self.futures.append(fut)
            self.actors.append(actor)
            self.addresses.append(addr)

    def _ask(self, which, method, *args, per_actor=None, relay=None):
        """Call ``method(*per_actor(a), *args)`` on the actors ``which`` at once; returns
        ``(results, lost, first loss)`` where ``lost`` lists the actors whose worker went
        away.

        ``relay`` (a parallel batch's number): as soon as one actor reports a hit at
        position p, the others still running are told ``stop_at(relay, p)`` (they need not
        look past p); the results are awaited on the client's event loop for that.
        """
        futs, lost, first = [], [], None
        for a in which:
            try:  # an actor whose worker is known to be gone raises already here
                extra = () if per_actor is None else per_actor(a)
                futs.append((a, getattr(self.actors[a], method)(*extra, *args)))
            except Exception as exc:
                if not _is_lost(exc):
                    raise
                lost.append(a)
                first = first or exc
        results = {}
        if relay is not None and len(futs) > 1:
            outcomes = self.client.sync(self._relay_stops, futs, relay)
        else:
            outcomes = []
            for a, f in futs:
                try:
                    outcomes.append((a, f.result(), None))
                except Exception as exc:
                    outcomes.append((a, None, exc))
        for a, res, exc in outcomes:
            if exc is None:
                results[a] = res
                continue
            if not _is_lost(exc):
                raise exc
            lost.append(a)
            first = first or exc
        return results, lost, first

    async def _relay_stops(self, futs, batch):
        """Await the parallel batch ``batch``'s actor futures ``futs`` (on the client's event
        loop), telling the actors still busy where the earliest hit so far is."""
        import asyncio

        async def one(a, f):
            try:
                return a, await f, None
            except Exception as exc:  # examined by _ask
                return a, None, exc

        pending = {asyncio.ensure_future(one(a, f)): a for a, f in futs}
        out, best = [], None
        while pending:
            done, _ = await asyncio.wait(list(pending), return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                pending.pop(task)
                a, res, exc = task.result()
                out.append((a, res, exc))
                if exc is None and res[0] and (best is None or res[0][0][0] < best):
                    best = res[0][0][0]
                    for b in pending.values():
                        try:
                            self.actors[b].stop_at(batch, best)  # not awaited: a hint
                            self.stops_sent += 1
                        except Exception:  # noqa: BLE001 - its worker is gone: the batch's call says so
                            pass
        return out

    def _load(self, which):
        """Read the resident rows of the actors ``which``; returns the actors lost meanwhile."""
        results, lost, first = self._ask(which, "load")
        total = 0
        for a, (nbytes, secs, ok) in sorted(results.items()):
            if not ok:
                raise _NotShared(a)
            total += nbytes
            logger.debug("actor %d on %s: read %s in %.2fs", a, self.addresses[a], format_bytes(nbytes), secs)
        self._add_bytes(total)
        if self.resident and hasattr(self.source, "mark_rows_read"):
            # the workers' copies of the source validated what they read (sources/validate.py)
            self.source.mark_rows_read([(int(g) * self.G_own, min((int(g) + 1) * self.G_own, self.n))
                                        for a in results for g in self.assign_own[a]])
        if lost:
            self._recover(lost, first)

    def _add_bytes(self, nbytes):
        with self.engine._lock:
            self.engine.bytes_read += int(nbytes)

    def _scheduler_up(self) -> bool:
        """Whether the scheduler still answers (an actor call failing the way a lost worker
        makes it fail can also mean the scheduler went away: the calls may pass through it)."""
        from .engine import _client_alive

        if not _client_alive(self.client):
            return False
        try:
            self.client.sync(self.client.scheduler.identity, callback_timeout=SCHEDULER_PROBE_SECONDS)
        except Exception:  # noqa: BLE001 - any failure to answer: gone
            return False
        return _client_alive(self.client)

    def _recover(self, dead, exc):
        from .engine import _client_alive, _scheduler_lost

        def lost_scheduler(cause):
            return _scheduler_lost(self.client, f"{self.method} (distributed eager walk)", cause)

        if not self._scheduler_up():
            raise lost_scheduler(exc) from exc
        gone = {self.addresses[a] for a in dead}
        for a in dead:
            for _attempt in range(MAX_RECOVERIES):
                try:
                    workers = self._workers()
                    live = {addr: v for addr, v in workers.items() if addr not in gone}
                    if not live:
                        self.client.wait_for_workers(1, timeout=60)
                        continue
                except Exception as err:
                    if not self._scheduler_up():
                        raise lost_scheduler(err) from err
                    raise
                held = collections.Counter(self.addresses[b] for b in range(self.W) if b not in dead)
                addr = min(sorted(live), key=lambda x: held.get(x, 0))
                logger.warning("%s: the worker holding actor %d (%s) was lost (%s: %s); recreating it on %s",
                               self.method, a, self.addresses[a], type(exc).__name__, exc, addr)
                try:
                    self._create(a, addr, live[addr][0])
                    results, lost, again = self._ask([a], "load")
                except Exception as err:  # that worker went too: try another one
                    if not self._scheduler_up():
                        raise lost_scheduler(err) from err
                    if not _is_lost(err) and _client_alive(self.client):
                        raise
                    lost, again = [a], err
                if not lost and not results[a][2]:
                    raise ChunkedMedoidsError(f"the worker {addr} replacing a lost one cannot map the store's rows")
                if not lost:
                    self._add_bytes(results[a][0])
                    self.recoveries += 1
                    break
                gone.add(addr)
                exc = again
            else:
                raise ChunkedMedoidsError(f"could not recreate the eager actor {a} after {MAX_RECOVERIES} "
                                          f"attempts (the workers keep dying: {exc})") from exc

    def reset(self):
        """Send the client's current state (``state()``) to every actor, replacing their
        replicas -- after a change no swap describes: DynMSC's removal of a medoid and its
        refresh of the caches between two k-steps.  One round trip; the rows stay."""
        state = self.state_fn()
        _, lost, first = self._ask(range(self.W), "reset", state, self.seq)
        self.round_trips += 1
        if lost:
            self._recover(lost, first)  # recreated from state() too
        self.log = []
        self.sent = [self.seq] * self.W

    def _hint(self, a, method, *args):
        """Call ``method`` on actor ``a`` without waiting for (or needing) its answer."""
        try:
            getattr(self.actors[a], method)(*args)
        except Exception:  # noqa: BLE001 - its worker is gone: the next real call says so
            pass

    def _undelivered(self, a):
        return ([sw for sw in self.log if sw[0] > self.sent[a]],)

    def _call(self, which, lo, hi, since=None, quiet=0):
        """One round trip: ``step`` on the actors ``which`` (each gets the swaps it lacks);
        actors lost meanwhile are recreated and asked again."""
        from .engine import _client_alive, _scheduler_lost

        if not _client_alive(self.client):
            # direct actor calls would not notice a lost scheduler: stop here as they would
            # through it (the driver's last checkpoint resumes the walk)
            raise _scheduler_lost(self.client, f"{self.method} (distributed eager walk)")
        which = list(which)
        results = {}
        todo = which
        t0 = time.perf_counter()
        relay = None
        if since is None and self.W > 1:
            self.batch_id += 1
            relay = self.batch_id
        for _ in range(MAX_RECOVERIES + 1):
            got, dead, first_exc = self._ask(todo, "step", lo, hi, since, -1 if relay is None else relay, quiet,
                                             per_actor=self._undelivered, relay=relay)
            results.update(got)
            if not dead:
                break
            self._recover(dead, first_exc)
            todo = dead
        else:
            raise ChunkedMedoidsError(f"{self.method}: gave up after {MAX_RECOVERIES} worker losses in one batch")
        wall = time.perf_counter() - t0
        self.round_trips += 1
        self.rt_seconds += wall
        for a in which:
            self.sent[a] = self.seq
        low = min(self.sent)
        self.log = [sw for sw in self.log if sw[0] > low]
        secs = [r[4] for r in results.values()]
        ev = sum(r[5] for r in results.values())
        self.worker_seconds += sum(secs)
        self.critical_cpu += max(r[7] for r in results.values())  # the round trip's slowest actor
        self.evaluated += ev
        self._add_bytes(sum(r[6] for r in results.values()))
        self.latency = 0.8 * self.latency + 0.2 * max(0.0, wall - max(secs))
        if ev:
            self.t_cand = 0.8 * self.t_cand + 0.2 * (sum(secs) / ev)
        return [results[a] for a in which]

    def _sequential(self):
        """Whether the next round trip should be a sequential run on one actor (swaps are
        dense) rather than a parallel batch over all actors, from the running estimates of
        the round-trip latency ``lam``, the cost ``t`` of one candidate and the positions
        ``gap`` between swaps.  Per swap, a run of a granule costs ``lam·gap/G + t·gap``
        (one round trip per G positions, one worker busy); a parallel batch costs
        ``lam + t·gap/W`` plus about half a granule of one worker's candidates (the
        batch's owner of the swap finishes its granule while the others wait, or the others
        evaluated that far past it in vain) -- and no less than the ``t·min(gap, G)`` its
        owner spends reaching the swap."""
        if self.W == 1:
            return True
        lam, t, gap, G = self.latency, self.t_cand, self.gap, self.G
        long = MAX_RUN if self.anywhere else G  # how far one run goes
        run = lam * gap / long + t * gap
        par = lam + t * max(gap / self.W + 0.5 * G, min(gap, G))
        return run < par

    def _quiet(self) -> int:
        """How many positions without a swap end a sequential run when rows are shared (0:
        no such end): about where a parallel batch becomes the cheaper round trip, the gap
        ``g*`` with ``t·g = λ + t·(g/W + G/2)`` (see :meth:`_sequential`), at least a
        granule.  Runs of shared rows are long (up to :data:`MAX_RUN`), so without it a run
        started while swaps were dense would walk their sparse tail alone."""
        if not self.shared or self.W < 2:
            return 0
        g = (self.latency / max(self.t_cand, 1e-12) + 0.5 * self.G) / (1.0 - 1.0 / self.W)
        return int(max(self.G, min(g, MAX_RUN)))

    def _swap(self, hit, counters, apply):
        pos, slot, j, row = hit
        apply(slot, j, row)
        self.seq += 1
        self.log.append((self.seq, slot, j, None if self.fused or self.shared else row))
        counters[1] += 1
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("%s swap %d: slot %d <- point %d (position %d, round trip %d)", self.method,
                         self.seq, slot, j, pos, self.round_trips)

    # -- the walk ----------------------------------------------------------------------
    def run(self, lo, hi, counters, apply, *, on_bad=None, pause=None, interval=None):
        """Walk positions ``[lo, hi)`` of the order like the sequential kernel would.

        ``counters = [since, n_swap]`` is updated in place (module notes of
        :mod:`chunked_medoids.algorithms._eager`); ``apply(slot, j, row)`` applies a swap
        to the caller's replica (``row`` is None when the workers compute rows).  Returns
        the positions consumed: ``hi - lo``, fewer when the walk converged, or when it
        paused between round trips because ``pause()`` became true or ``interval``
        seconds passed (the caller checkpoints and calls again from there).
        """
        n, W = self.n, self.W
        i = lo
        t_start = time.monotonic()
        while i < hi:
            if self._sequential():
                # a run of consecutive positions held by one actor, walked there with every
                # swap applied on the spot (the others get the swaps with their next call)
                if self.anywhere:
                    a, stop = self.run_actor, n
                else:
                    a = int(self.owner[i])
                    b = int(np.searchsorted(self.breaks, i, side="right"))
                    stop = int(self.breaks[b]) if b < self.breaks.shape[0] else n
                top = min(hi, stop, i + (MAX_RUN if self.anywhere else MAX_PER_WORKER))
                if self.fused and self.anywhere and W > 1 and top < n:
                    # the next actor computes the next run's rows meanwhile, and walks it
                    self.run_actor = (a + 1) % W
                    self._hint(self.run_actor, "prefetch", top, min(n, top + MAX_RUN))
                quiet = self._quiet()
                hits, end, since, bad, *_ = self._call([a], i, top, int(counters[0]), quiet)[0]
                self.runs += 1
                self.span += end - i
                if bad:
                    self._bad(on_bad, i, top)
                for hit in hits:
                    self._swap(hit, counters, apply)
                self.sent[a] = self.seq  # it applied its own swaps
                counters[0] = since
                span = end - i
                self.run_positions += span
                self.gap = (0.5 * self.gap + 0.5 * span / len(hits)) if hits else min(self.gap + span, 1e12)
                if quiet and end < top and since >= quiet:  # cut: the last `quiet` positions had no swap
                    self.gap = max(self.gap, float(quiet))
                i = end
                if counters[0] >= n:
                    return i - lo
            else:
                remaining = n - int(counters[0])
                # the batch is cut short at its first hit (stop_at), so it may be long: as
                # long as the running gap between swaps suggests, at least a granule each
                size = int(min(MAX_PER_WORKER * W, max(self.G * W, MIN_PER_WORKER * W, 2.0 * self.gap)))
                top = min(hi, i + size, i + remaining)
                res = self._call(range(W), i, top)
                self.batches += 1
                found = []
                front = top  # every candidate before it was evaluated (and refused but a hit there)
                for hits, end, _, bad, *_ in res:
                    if bad:
                        self._bad(on_bad, i, top)
                    found.extend(hits)
                    front = min(front, end)
                hit = min(found, key=lambda h: h[0]) if found else None
                # the batch's span: the most candidates one actor had to evaluate before the front
                share = np.bincount(self.owner[i:front], minlength=W) if front > i else np.zeros(1)
                self.span += int(share.max()) + int(hit is not None and hit[0] == front)
                if hit is None or hit[0] != front:  # no hit, or only later ones: go on from front
                    counters[0] += front - i
                    self.gap = min(2.0 * self.gap + (front - i), 1e12) if hit is None else self.gap
                    i = front
                    if counters[0] >= n:
                        return i - lo
                else:
                    p = hit[0]
                    counters[0] += p - i
                    self._swap(hit, counters, apply)
                    counters[0] = 1
                    self.gap = 0.5 * self.gap + 0.5 * (p - i + 1)
                    i = p + 1
                    if counters[0] >= n:
                        return i - lo
            if i < hi and ((pause is not None and pause())
                           or (interval is not None and time.monotonic() - t_start >= interval)):
                return i - lo
        return i - lo

    @staticmethod
    def _bad(on_bad, lo, hi):
        if on_bad is not None:
            on_bad(lo, hi)
        raise ChunkedMedoidsError("a worker computed a row with a non-finite entry")

    def pass_stats(self):
        """``(round trips, worker seconds, candidates evaluated)`` since the last call."""
        rt, ws, ev = self._pass_marks
        out = (self.round_trips - rt, self.worker_seconds - ws, self.evaluated - ev)
        self._pass_marks = (self.round_trips, self.worker_seconds, self.evaluated)
        return out

    def log_pass(self, n_iter, seconds, swaps) -> int:
        """Log a finished pass's round trips; returns them."""
        rt, ws, ev = self.pass_stats()
        logger.info("%s pass %d on %d workers: %d round trips (%.3g ms each), %d swaps, %d candidates "
                    "evaluated, %.2fs of worker compute in %.2fs", self.method, n_iter, self.W, rt,
                    1e3 * seconds / max(1, rt), swaps, ev, ws, seconds)
        return rt

    def replica_states(self):
        """Every actor's replica arrays (for tests)."""
        return [f.result() for f in [act.state() for act in self.actors]]

    def summary(self) -> dict:
        """What the result reports: workers, granule, residency, round trips, recoveries."""
        return {"workers": self.W, "granule": self.G, "resident": bool(self.resident), "direct_calls": self.direct,
                "shared_rows": bool(self.shared),
                "rows": "computed" if self.fused else ("resident" if self.resident else "streamed"),
                "share_bytes": int(self.share), "round_trips": int(self.round_trips),
                "sequential_runs": int(self.runs), "parallel_batches": int(self.batches),
                "run_positions": int(self.run_positions),
                "recoveries": int(self.recoveries), "setup_seconds": float(self.setup_seconds),
                "round_trip_seconds": float(self.rt_seconds), "stops_sent": int(self.stops_sent),
                "critical_cpu_seconds": float(self.critical_cpu), "span_candidates": int(self.span),
                "evaluated": int(self.evaluated),
                "create_seconds": float(self.create_seconds), "load_seconds": float(self.load_seconds),
                "held_bytes": int(self.held_bytes),
                "walk_seconds": float(self.walk_seconds), "client_cpu_seconds": float(self.client_cpu),
                "actors": self.actor_stats}

    def close(self):
        """Release the actors (their workers drop the rows), after fetching their counters
        (:data:`STAT_KEYS`) for :meth:`summary`."""
        from .engine import _client_alive

        if self.futures and _client_alive(self.client):
            if self.actor_stats is None:
                try:
                    self.actor_stats = [dict(f.result(), address=addr) for f, addr in
                                        zip([act.stats_now() for act in self.actors], self.addresses)]
                except Exception:  # noqa: BLE001 - a worker gone at the end: no counters
                    self.actor_stats = None
            if hasattr(self, "_t_walk"):  # (not when the set-up failed)
                self.walk_seconds = time.perf_counter() - self._t_walk
                self.client_cpu = time.process_time() - self._c_walk
            try:
                self.client.cancel(self.futures)
            except Exception:  # pragma: no cover - cluster going down
                pass
        if self._direct_restore is not _UNSET:
            self.client.direct_to_workers, self._direct_restore = self._direct_restore, _UNSET
        self.futures, self.actors = [], []
