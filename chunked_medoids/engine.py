"""The only module that talks to Dask.

An :class:`Engine` maps a *block function* over the row stripes of a
:class:`~chunked_medoids.sources.DissimilaritySource` and returns the small per-block
results **in block order**, so every reduction done by a driver is a fixed-order reduction
whose result never depends on scheduling, worker count or block size.

The mapped object is normally a source; any "row reader" with ``n``, ``dtype``,
``block_rows`` (storage chunk height, for memory accounting) and ``read_rows(start, stop)``
works too.  Work that is not a row block of D (CLARA's samples and feature passes,
CLARANS' local searches) goes through :meth:`Engine.map_tasks` instead.

Block functions have the signature ``func(block, start, stop, state) -> result`` where
``block`` is the (stop - start, n) row stripe of D, ``state`` a dict of small broadcast
arrays (O(n) caches, the n×k medoid table...).  They must be module-level functions (so a
distributed worker can unpickle them) and should call nogil numba kernels.

Schedulers
----------
* default: Dask's local threaded scheduler with ``num_workers`` threads (default: the
  number of cores).
* ``client=``: a ``distributed.Client``; ``scheduler_address=`` / ``scheduler_file=``
  connect a new client to an existing cluster (dask-jobqueue, dask-mpi).  Broadcast state is
  scattered once per pass to one worker (the others fetch it from there; never
  ``broadcast=True``, whose replication waits forever for a worker that died but is still
  listed) and released after it; a stored source pickles as a path and travels inside the
  tasks, so workers open zarr/HDF5 stores themselves.

Faults (distributed)
--------------------
* A worker process that dies mid-pass: its blocks are recomputed elsewhere (the scheduler
  reschedules them; every block task also has ``retries=2``), and since results are
  reduced in block order the pass result is identical.
* The scheduler going away: the client cancels the pass's futures; the pass then raises
  :class:`SchedulerLostError` (a ``ConnectionError``) naming the scheduler address, at once
  rather than after the client's reconnect timeout, and so does any later pass while the
  client is not connected.  Drivers run with ``checkpoint=`` resume from their last
  checkpoint when rerun.

Resident stripes
----------------
``Engine(resident="auto")`` (the default; every driver's ``resident=``) reads each row
stripe of a stored matrix from storage **once per run** when the matrix fits the budget
(:func:`chunked_medoids._budget.resident_plan`): locally the stripes read by the first pass
are kept in one n×n array and later passes (and :meth:`Engine.iter_blocks`) use it.  On a
cluster ("auto" against half of the workers' summed memory limits) each stripe is read by a
task whose result stays in one worker's memory, and every later pass's block task runs on the
worker that holds its stripe (the scheduler's data locality).  A worker that dies loses its
stripes: Dask recomputes the read tasks elsewhere from their lineage (the stored source
travels inside them), and the results are identical.  If it also took the pass's scattered
state along, the pass runs again from the start (at most ``_LOST_DATA_ATTEMPTS`` times).  In-memory arrays and features sources
hold nothing (their rows cost no read); on a cluster the scattered source itself (a
features source carries X) is kept for the run.  ``resident=False`` streams every pass from
storage; ``True`` holds whenever the matrix fits the whole budget (locally: refused with a
clear error when it does not).  The log says which happened and why.

Memory
------
The block height is chosen from ``memory_limit`` by :func:`chunked_medoids._budget.block_rows`
(every size factor is explained in :mod:`chunked_medoids._budget`): for :meth:`Engine.map_blocks`
every worker thread may be decoding a block at once, each costing
:data:`~chunked_medoids._budget.DECODE_FACTOR` (= 5) times the block's ``n * itemsize``
bytes per row; for :meth:`Engine.iter_blocks` one block is being decoded (5x) and
``blocks_in_flight - 1`` more are held decoded (1x each: the one processed, the one read
ahead).  Blocks are whole multiples of the storage chunk height when one fits.  State
arrays (n×k medoid table, O(n) caches) come on top and are not counted against it.
"""

from __future__ import annotations

import logging
import os
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import CancelledError, ThreadPoolExecutor
from typing import Any

from . import _budget
from ._budget import DECODE_FACTOR  # noqa: F401  (re-exported: engine.DECODE_FACTOR)
from ._errors import (
    ChunkedMedoidsError,
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    SchedulerLostError,
)
from ._typing import ClientLike, MemoryLimit, PathLike, ResidentLike, SourceLike
from ._util import check_int, format_bytes, parse_memory_limit

logger = logging.getLogger(__name__)


class PassStopped(ChunkedMedoidsError):
    """A pass ended early because the run's stop request was set (see ``should_stop=``).

    The driver catches it, saves its checkpoint and raises ``CheckpointInterrupt``.
    """


def _scheduler_address(client) -> str:
    try:
        return str(client.scheduler.address)
    except Exception:  # pragma: no cover - client torn down
        return "<unknown address>"


def _scheduler_lost(client, desc, cause=None) -> SchedulerLostError:
    status = getattr(client, "status", "?")
    because = f" ({type(cause).__name__}: {cause})" if cause is not None and str(cause) else (
        f" ({type(cause).__name__})" if cause is not None else "")
    return SchedulerLostError(
        f"lost the Dask scheduler at {_scheduler_address(client)} (client status {status!r}) "
        f"during pass {desc!r}{because}; the pass's results are lost. Restart the cluster (or "
        "run on local threads) and rerun: a fit given checkpoint= resumes from its last "
        "checkpoint when rerun with the same checkpoint path (without one it starts over); a "
        "build_dissimilarity resumes from the stripes already written"
    )


def _client_alive(client) -> bool:
    return getattr(client, "status", "running") == "running"


def _default_threads() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - non-Linux
        return max(1, os.cpu_count() or 1)


def connect_client(client=None, scheduler_address=None, scheduler_file=None):
    """Return ``(client, owned)`` for the given cluster options (``(None, False)`` for threads).

    At most one of the three may be given.  ``owned`` is True when this call created the
    client (the caller closes it).
    """
    given = [x is not None for x in (client, scheduler_address, scheduler_file)]
    if sum(given) > 1:
        raise InvalidParameterError(
            "give at most one of client=, scheduler_address=, scheduler_file= "
            f"(got client={client!r}, scheduler_address={scheduler_address!r}, scheduler_file={scheduler_file!r})"
        )
    if client is not None:
        from distributed import Client

        if not isinstance(client, Client):
            raise InvalidTypeError(f"client must be a distributed.Client, got {type(client).__name__}")
        return client, False
    if scheduler_address is not None or scheduler_file is not None:
        from distributed import Client

        if scheduler_file is not None and not os.path.exists(os.fspath(scheduler_file)):
            raise MissingFileError(f"scheduler_file {os.fspath(scheduler_file)!r} does not exist")
        try:
            if scheduler_file is not None:
                c = Client(scheduler_file=os.fspath(scheduler_file), timeout="30s")
            else:
                c = Client(scheduler_address, timeout="30s")
        except OSError as exc:
            raise OSError(
                f"could not connect to the Dask scheduler "
                f"({scheduler_address or scheduler_file!r}): {exc}"
            ) from exc
        return c, True
    return None, False


def start_local_cluster(n_workers: int, threads_per_worker: int = 1, **cluster_options):
    """Start a ``distributed.LocalCluster`` of ``n_workers`` processes and return its Client.

    The caller closes both (``client.close(); client.cluster.close()``).  The dashboard
    binds a free port so several runs can share a machine.
    """
    from distributed import Client, LocalCluster

    n_workers = check_int(n_workers, "n_workers", minimum=1)
    threads_per_worker = check_int(threads_per_worker, "threads_per_worker", minimum=1)
    options = {"processes": True, "dashboard_address": ":0", "silence_logs": logging.ERROR}
    options.update(cluster_options)
    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=threads_per_worker, **options)
    try:
        return Client(cluster)
    except BaseException:
        cluster.close()
        raise


def scheduler_workers(client) -> dict:
    """The scheduler's per-worker information (address -> dict), fetched afresh.

    Not ``Client.scheduler_info()``: that refreshes the client's cached identity and then
    returns the cache, which the client's periodic update can overwrite in between with a
    summary that has no per-worker entries, so a cluster with workers can read as having
    none (seen once in CI).  An asynchronous client only has that cache.
    """
    if getattr(client, "asynchronous", False):
        return dict(client.scheduler_info().get("workers", {}))
    return dict(client.sync(client.scheduler.identity, n_workers=-1).get("workers", {}))


class Engine:
    """Maps block functions over row stripes of a source with Dask.

    Parameters
    ----------
    memory_limit : int or str, default "1GiB"
        Budget for row blocks held at once (see module notes).
    client : distributed.Client, optional
        Run block tasks on this cluster.
    scheduler_address, scheduler_file : str, optional
        Connect to an existing cluster (the engine owns and closes that client).
    num_workers : int, optional
        Threads of the local scheduler (default: number of cores).  Ignored with a client.
    progress : bool, default False
        Show a tqdm bar over the blocks of each pass.
    block_rows : int, optional
        Force a block height (rows); by default it is derived from ``memory_limit``.
    resident : {"auto", True, False}, default "auto"
        Hold row stripes read from storage for the rest of the run (module notes,
        "Resident stripes").
    """

    def __init__(self, *, memory_limit: MemoryLimit = "1GiB", client: ClientLike = None,
                 scheduler_address: str | None = None, scheduler_file: PathLike | None = None,
                 num_workers: int | None = None, progress: bool = False, block_rows: int | None = None,
                 resident: ResidentLike = "auto") -> None:
        self.memory_limit = parse_memory_limit(memory_limit)
        self.client, self._owns_client = connect_client(client, scheduler_address, scheduler_file)
        if num_workers is not None:
            num_workers = check_int(num_workers, "num_workers", minimum=1)
        self.num_workers = num_workers or _default_threads()
        self.progress = bool(progress)
        self.forced_block_rows = None if block_rows is None else check_int(block_rows, "block_rows", minimum=1)
        self._pool = None
        self.last_state_key = None
        self.bytes_read = 0
        #: where the time of sequential streams went (see :meth:`iter_blocks`).
        self.read_stats = {"wait_s": 0.0, "read_s": 0.0, "blocks": 0}
        self._lock = threading.Lock()
        self.resident = check_resident(resident)
        self._res = None  # the _Resident of the source last mapped

    # -- sizing -------------------------------------------------------------------------
    @property
    def parallelism(self) -> int:
        if self.client is not None:
            try:
                return max(1, sum(self.client.nthreads().values()))
            except Exception:  # pragma: no cover - scheduler gone
                return 1
        return self.num_workers

    def block_rows_for(self, source: SourceLike, blocks_in_flight: int | None = None) -> int:
        """Rows per block so that the blocks in flight fit in the budget.

        ``blocks_in_flight=None`` sizes blocks for :meth:`map_blocks`: every worker thread
        may be reading (decoding, :data:`~chunked_medoids._budget.DECODE_FACTOR` × the
        block) at once.  An integer sizes them for sequential streaming
        (:meth:`iter_blocks`): one block being read and ``blocks_in_flight - 1`` held
        decoded (the one processed, the one read ahead).  See
        :func:`chunked_medoids._budget.block_rows`.
        """
        if self.forced_block_rows is not None:
            return min(self.forced_block_rows, source.n)
        if blocks_in_flight is None:
            readers, held = (self.num_workers if self.client is None else 1), 0
        else:
            readers, held = 1, max(0, int(blocks_in_flight) - 1)
        n, itemsize = source.n, source.dtype.itemsize
        stored = getattr(source, "storage_itemsize", itemsize)  # float16 stores: 2
        budget = self._stream_budget(source)
        rows = _budget.block_rows(n, itemsize, budget, source.block_rows,
                                  readers=readers, held=held, storage_itemsize=stored)
        natural = max(1, int(source.block_rows))
        decode = _budget.chunk_decode_bytes(natural, n, itemsize, stored)
        # only stored chunks are decoded whole (not in-memory, contiguous or computed rows)
        if rows < natural and decode > self.memory_limit and getattr(source, "chunks", None):
            logger.warning(
                "storage chunks of %d rows (%s decoded) exceed memory_limit=%s; "
                "rebuild the store with a smaller memory_limit to stay within budget",
                natural, format_bytes(decode), format_bytes(self.memory_limit),
            )
        return rows

    def _stream_budget(self, source) -> int:
        """The budget of the blocks in flight: ``memory_limit``, less the rows held resident."""
        res = self._res
        if res is not None and res.source is source:
            held, nbytes = res.held, res.nbytes
        else:
            held, nbytes = self._decide_residency(source)[:2]
        if held and self.client is None:
            return _budget.stream_budget(self.memory_limit, nbytes)
        return self.memory_limit

    def stream_plan(self, source: SourceLike, blocks_in_flight: int = 3) -> tuple[int, int, int]:
        """``(rows per block, reader threads, blocks read ahead)`` for :meth:`iter_blocks`.

        Sources whose reads run in parallel (``parallel_reads``: zarr stores) on local
        threads get :data:`~chunked_medoids._budget.STREAM_READERS` concurrent readers and
        as deep a read-ahead as the budget allows (:func:`chunked_medoids._budget.stream_plan`);
        everything else (a forced ``block_rows``, a cluster, HDF5 behind h5py's global lock,
        in-memory arrays) reads one block ahead in one thread with :meth:`block_rows_for`.
        Only memory use and overlap change, never a result (§8).
        """
        if (self.forced_block_rows is not None or self.client is not None
                or not getattr(source, "parallel_reads", False)):
            return self.block_rows_for(source, blocks_in_flight), 1, 1
        itemsize = source.dtype.itemsize
        return _budget.stream_plan(source.n, itemsize, self._stream_budget(source), source.block_rows,
                                   held=max(1, int(blocks_in_flight) - 1),
                                   storage_itemsize=getattr(source, "storage_itemsize", itemsize))

    def blocks(self, source: SourceLike, block_rows: int | None = None) -> list[tuple[int, int]]:
        b = block_rows or self.block_rows_for(source)
        return [(s, min(s + b, source.n)) for s in range(0, source.n, b)]

    # -- parallel map -------------------------------------------------------------------
    def map_blocks(self, source: SourceLike, func: Callable[..., Any], state: dict | None = None, *,
                   blocks: list[tuple[int, int]] | None = None, desc: str | None = None,
                   should_stop: Callable[[], bool] | None = None) -> list:
        """Apply ``func(block, start, stop, state)`` to every row block; results in block order.

        One Dask graph (one task per row stripe) and one compute per call.

        Parameters
        ----------
        source : DissimilaritySource or row reader
        func : callable
            Module-level ``func(block, start, stop, state) -> result``.
        state : dict, optional
            Small broadcast state (passed by reference to threads, scattered once to a cluster).
        blocks : list of (start, stop), optional
            Default: :meth:`blocks`.
        desc : str, optional
            Name of the pass (logs, progress bar).
        should_stop : callable, optional
            Polled before each block is read (local threads) or while waiting (cluster); once
            it returns True no further block starts, the running ones finish, and
            :class:`PassStopped` is raised (the pass's results are discarded).

        Returns
        -------
        list
            ``func``'s results in block order.
        """
        state = {} if state is None else state
        blocks = self.blocks(source) if blocks is None else blocks
        t0 = time.perf_counter()
        read0 = self.bytes_read
        if self.client is None:
            results = self._map_threads(source, func, state, blocks, desc, should_stop)
        else:
            results = self._map_distributed(source, func, state, blocks, desc, should_stop)
        if self.client is not None and hasattr(source, "mark_rows_read"):
            source.mark_rows_read(blocks)  # the workers validated them (sources/validate.py)
        logger.debug("%s: %d blocks, %s read in %.3fs", desc or func.__name__, len(blocks),
                     format_bytes(self.bytes_read - read0), time.perf_counter() - t0)
        return results

    # -- resident stripes -----------------------------------------------------------------
    def residency(self, source: SourceLike) -> _Resident:
        """The resident-stripe record of ``source`` for this run (decided on first use).

        Only the passes (:meth:`map_blocks`, :meth:`iter_blocks`) create the record; a sizing
        query (:meth:`block_rows_for`, :meth:`stream_plan`) asks :meth:`_decide_residency`,
        which holds, allocates, logs and releases nothing.
        """
        res = self._res
        if res is not None and res.source is source:
            return res
        self._release_resident()
        res = _Resident(source)
        res.held, res.nbytes, res.keep_source, res.reason = self._decide_residency(source)
        if res.held and self.client is None:
            import numpy as np

            res.array = np.empty((source.n, source.n), dtype=source.dtype)
            res.filled = np.zeros(source.n, dtype=bool)
        nbytes = getattr(source, "nbytes", None)
        walked = self.client is not None and getattr(self, "_walked", None) is source
        if walked:  # FasterPAM/FasterMSC's actors read and hold the rows themselves (_dist_eager)
            res.held = False
        what = ("not held by the engine: the eager walk's actors on the workers read (and hold or stream) its rows"
                if walked else "read once and held for the run" if res.held else
                "not held" if nbytes is None or getattr(source, "rows_in_memory", False) else
                "streamed from storage each pass")
        logger.info("row stripes of the %s source: %s (%s)", getattr(source, "kind", "row"), what, res.reason)
        self._res = res
        return res

    def _decide_residency(self, source) -> tuple[bool, int, bool, str]:
        """``(held, nbytes, keep_source, reason)`` for ``source``: the decision alone, no side effect."""
        nbytes = getattr(source, "nbytes", None)
        if self.resident is False:
            return False, 0, False, "resident=False"
        if nbytes is None or getattr(source, "rows_in_memory", False):
            return (False, 0, self.client is not None,
                    "nothing to hold: its rows are in memory or computed from features")
        if self.client is None:
            budget, where = self.memory_limit, f"memory_limit={format_bytes(self.memory_limit)}"
        else:
            budget, where = self._cluster_memory(), "the workers' memory limits"
        held, share = _budget.resident_plan(nbytes, budget, self.resident)
        part = "the budget" if self.resident is True else "half the budget"
        why = (f"the {format_bytes(nbytes)} matrix {'fits' if held else 'exceeds'} {part}, "
               f"{format_bytes(share)}")
        if self.resident is True and not held and self.client is None:
            raise InvalidParameterError(
                f"resident=True needs the {format_bytes(nbytes)} matrix to fit in "
                f"memory_limit={format_bytes(self.memory_limit)}; raise memory_limit or use "
                "resident='auto' (hold only what fits) or resident=False (stream every pass)"
            )
        if self.resident is True and not held:
            held, why = True, f"resident=True ({why}; the workers may spill to disk)"
        return held, int(nbytes), self.client is not None, f"{why}, budget from {where}"

    def _cluster_memory(self) -> int:
        """Summed memory limits of the cluster's workers (the local budget per worker when a
        worker reports none)."""
        try:
            workers = scheduler_workers(self.client)
        except Exception:  # pragma: no cover - scheduler gone: decided at the next pass
            return self.memory_limit
        return sum(int(w.get("memory_limit") or 0) or self.memory_limit for w in workers.values()) \
            or self.memory_limit

    def _read_local(self, source, res, a, b):
        """Rows a:b from the held array when resident and already read, else from storage."""
        local = res.array is not None  # held in this process (a cluster holds on its workers)
        if local and res.filled[a:b].all():
            return res.array[a:b]
        block = source.read_rows(a, b)
        with self._lock:
            self.bytes_read += block.nbytes
        if local:
            res.array[a:b] = block
            res.filled[a:b] = True
            return res.array[a:b]
        return block

    def _release_resident(self):
        res, self._res = self._res, None
        if res is None:
            return
        res.array = res.filled = None
        client = self.client
        futures = list(res.futures.values())
        if res.source_future is not None:
            futures.append(res.source_future)
        res.futures.clear()
        res.source_future = None
        if futures and client is not None and _client_alive(client):
            import contextlib

            with contextlib.suppress(Exception):
                client.cancel(futures)

    def read_concurrency(self, source: SourceLike, blocks: list[tuple[int, int]]) -> int:
        """Threads that may read at once without exceeding the budget.

        A read decodes whole storage chunks even for a partial stripe, so a block shorter
        than the store's chunk rows costs a full chunk.  When the chunks of a store are large
        for the budget (it was built with a larger memory_limit), fewer blocks are read
        concurrently; results do not change, only the overlap.
        """
        if not blocks:
            return 1
        height = max(b - a for a, b in blocks)
        return _budget.read_concurrency(height, source.n, source.dtype.itemsize, source.block_rows,
                                        self.memory_limit, self.num_workers,
                                        getattr(source, "storage_itemsize", None))

    def _map_threads(self, source, func, state, blocks, desc, should_stop=None):
        import dask

        bar = self._bar(len(blocks), desc)
        skipped = []
        held = self.residency(source)

        # a failed pass returns only once no task runs any more (Dask raises at the first
        # failure while the others go on, e.g. still writing a stripe the caller then misses)
        running, failed = [0], threading.Event()
        idle = threading.Condition()

        # Threads share memory: the state dict is passed by reference, never copied.
        def task(a, b):
            if should_stop is not None and should_stop():
                skipped.append(a)  # nothing read: the remaining blocks drain at once
                return None
            with idle:
                if failed.is_set():
                    return None
                running[0] += 1
            try:
                res = func(self._read_local(source, held, a, b), a, b, state)
            finally:
                with idle:
                    running[0] -= 1
                    idle.notify_all()
            if bar is not None:
                bar.update(1)
            return res

        tasks = [dask.delayed(task, pure=False)(a, b) for a, b in blocks]
        try:
            results = dask.compute(*tasks, scheduler="threads",
                                   num_workers=self.read_concurrency(source, blocks))
        except BaseException:
            failed.set()
            with idle:
                idle.wait_for(lambda: running[0] == 0)
            raise
        finally:
            if bar is not None:
                bar.close()
        if skipped:
            raise PassStopped(f"pass {desc or func.__name__!r} stopped on request")
        return list(results)

    def _map_distributed(self, source, func, state, blocks, desc, should_stop=None):
        client = self.client
        desc = desc or func.__name__
        if not _client_alive(client):  # fail now, not after the client's reconnect timeout
            raise _scheduler_lost(client, desc)
        try:
            for attempt in range(1, _LOST_DATA_ATTEMPTS + 1):
                try:
                    return self._map_distributed_run(client, source, func, state, blocks, desc, should_stop)
                except CancelledError as exc:
                    if attempt == _LOST_DATA_ATTEMPTS or not _lost_data(client, exc):
                        raise
                    # a worker died holding scattered data the pass needed (its state or
                    # source): nothing was reduced yet, so the pass runs again from the start
                    logger.warning("%s: a worker was lost with data the pass needed (%s); running "
                                   "the pass again (attempt %d of %d)", desc, exc, attempt + 1,
                                   _LOST_DATA_ATTEMPTS)
                    self._forget_lost(client)
        except (ChunkedMedoidsError, MemoryError):
            raise
        except Exception as exc:
            # a dead scheduler shows up as cancelled futures (the client drops them when the
            # connection breaks) or as a comm / timeout error; tell it apart from a failing task
            if _client_alive(client) and isinstance(exc, (CancelledError, OSError, TimeoutError)):
                time.sleep(0.2)  # the status flips on the client's event loop; let it settle
            if not _client_alive(client):
                raise _scheduler_lost(client, desc, exc) from exc
            raise

    def _forget_lost(self, client):
        """Drop the held stripes and the kept source whose data a lost worker took along."""
        res = self._res
        if res is None:
            return
        for key, fut in list(res.futures.items()):
            if fut.status in ("cancelled", "error", "lost"):
                del res.futures[key]
        if res.source_future is not None and res.source_future.status != "finished":
            res.source_future = None

    def _map_distributed_run(self, client, source, func, state, blocks, desc, should_stop=None):
        # Scatter the state dict as ONE object (a dict passed to scatter would use its keys
        # as cluster-wide data keys and collide across passes), to one worker: the others
        # fetch it from there.  Not ``broadcast=True``: replicating to every worker waits
        # forever for one that died but is still listed (seen with a worker killed
        # mid-run); a lost copy is handled by running the pass again (_map_distributed).
        state_future = _scatter(client, state) if state else None
        self.last_state_key = None if state_future is None else state_future.key
        # A stored source pickles as a path: it goes inside the tasks, so the stripe read
        # tasks keep their whole lineage.  An in-memory or on-the-fly features source
        # (it carries its array) is scattered, once per pass or once per run when kept.
        res = self.residency(source)
        if _embeddable(source):
            source_future = source
        elif res.keep_source:
            if res.source_future is None:
                res.source_future = _scatter(client, source)
            source_future = res.source_future
        else:
            source_future = _scatter(client, source)
        stamp = f"{id(state)}-{time.monotonic_ns()}"
        if res.held:
            # each stripe read once by a task whose result stays on its worker; the block
            # tasks of every pass run where their stripe is (data locality)
            rows = []
            for a, b in blocks:
                fut = res.futures.get((a, b))
                if fut is None:
                    fut = client.submit(_read_block, source_future, a, b, pure=False, retries=2,
                                        key=f"cm-rows-{res.token}-{a}-{b}")
                    res.futures[(a, b)] = fut
                    with self._lock:
                        self.bytes_read += (b - a) * source.n * source.dtype.itemsize
                rows.append(fut)
            futures = [client.submit(_run_held, func, rf, a, b, state_future, pure=False, retries=2,
                                     key=f"cm-{func.__name__}-{a}-{b}-{stamp}")
                       for rf, (a, b) in zip(rows, blocks)]
        else:
            futures = [client.submit(_run_block, source_future, func, a, b, state_future, pure=False,
                                     retries=2, key=f"cm-{func.__name__}-{a}-{b}-{stamp}")
                       for a, b in blocks]
            with self._lock:
                self.bytes_read += sum((b - a) * source.n * source.dtype.itemsize for a, b in blocks)
        try:
            if self.progress:
                from distributed import progress as dprogress

                dprogress(futures, notebook=False)
            if should_stop is not None:
                _wait_or_stop(futures, should_stop, desc)
            results = client.gather(futures)
        finally:
            del futures
            if _client_alive(client):
                if not res.keep_source and source_future is not source:
                    client.cancel(source_future)
                if state_future is not None:
                    client.cancel(state_future)
        return list(results)

    # -- independent tasks ----------------------------------------------------------------
    def map_tasks(self, func: Callable[..., Any], items: Sequence[Any], state: dict | None = None, *,
                  max_concurrency: int | None = None, desc: str | None = None,
                  on_result: Callable[..., Any] | None = None,
                  should_stop: Callable[[], bool] | None = None) -> list:
        """Apply ``func(item, state)`` to every item; results in item order.

        For work that is not a row block of D (CLARA's samples and feature passes, CLARANS'
        local searches).  Same guarantees as :meth:`map_blocks`: results come back in item
        order whatever finishes first, so a driver's reduction over them is fixed-order.

        Parameters
        ----------
        func : callable
            Module-level ``func(item, state) -> result`` (picklable for a cluster).
        items : sequence
            Small picklable task descriptions (the big shared data goes in ``state``).
        state : dict, optional
            Broadcast state: passed by reference to local threads; scattered once to a
            cluster (sources in it pickle as paths).
        max_concurrency : int, optional
            At most this many tasks run at once (memory bound of the caller); default: the
            engine's parallelism.  Tasks start in item order as earlier ones finish.
        desc : str, optional
            Name of the map (logs, progress bar).
        on_result : callable, optional
            ``on_result(index, result)``, called in the calling thread as each task
            finishes (completion order), e.g. to checkpoint per task.
        should_stop : callable, optional
            Polled before each task starts; once it returns True no further task starts,
            the running ones finish (``on_result`` is called for them) and
            :class:`PassStopped` is raised.

        Returns
        -------
        list
            ``func``'s results in item order.
        """
        items = list(items)
        state = {} if state is None else state
        desc = desc or getattr(func, "__name__", "tasks")
        conc = self.parallelism if max_concurrency is None else int(max_concurrency)
        conc = max(1, min(conc, self.parallelism, max(1, len(items))))
        t0 = time.perf_counter()
        if self.client is None:
            results = self._tasks_threads(func, items, state, conc, desc, on_result, should_stop)
        else:
            client = self.client
            if not _client_alive(client):
                raise _scheduler_lost(client, desc)
            try:
                results = self._tasks_distributed(client, func, items, state, conc, desc, on_result,
                                                  should_stop)
            except (ChunkedMedoidsError, MemoryError):
                raise
            except Exception as exc:
                if _client_alive(client) and isinstance(exc, (CancelledError, OSError, TimeoutError)):
                    time.sleep(0.2)
                if not _client_alive(client):
                    raise _scheduler_lost(client, desc, exc) from exc
                raise
        logger.debug("%s: %d tasks in %.3fs", desc, len(items), time.perf_counter() - t0)
        return results

    def _tasks_threads(self, func, items, state, conc, desc, on_result, should_stop):
        from concurrent.futures import FIRST_COMPLETED, wait

        results = [None] * len(items)
        bar = self._bar(len(items), desc)
        stopped = False
        pool = ThreadPoolExecutor(max_workers=conc, thread_name_prefix="cm-task")
        try:
            running = {}
            nxt = 0
            while nxt < len(items) or running:
                while not stopped and nxt < len(items) and len(running) < conc:
                    if should_stop is not None and should_stop():
                        stopped = True
                        break
                    running[pool.submit(func, items[nxt], state)] = nxt
                    nxt += 1
                if not running:
                    break
                finished, _ = wait(list(running), timeout=0.2 if should_stop is not None else None,
                                   return_when=FIRST_COMPLETED)
                for fut in sorted(finished, key=running.get):
                    i = running.pop(fut)
                    results[i] = fut.result()
                    if bar is not None:
                        bar.update(1)
                    if on_result is not None:
                        on_result(i, results[i])
                if should_stop is not None and should_stop():
                    stopped = True
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
            if bar is not None:
                bar.close()
        if stopped:
            raise PassStopped(f"{desc!r} stopped on request")
        return results

    def _tasks_distributed(self, client, func, items, state, conc, desc, on_result, should_stop):
        from distributed import as_completed

        results = [None] * len(items)
        state_future = _scatter(client, state) if state else None
        self.last_state_key = None if state_future is None else state_future.key
        stamp = time.monotonic_ns()

        def submit(i):
            return client.submit(_run_task, func, items[i], state_future, pure=False, retries=2,
                                 key=f"cm-{getattr(func, '__name__', 'task')}-{i}-{stamp}")

        stopped = False
        index = {}
        try:
            nxt = min(conc, len(items))
            for i in range(nxt):
                index[submit(i)] = i
            pending = as_completed(list(index))
            for fut in pending:
                i = index.pop(fut)
                results[i] = fut.result()
                if on_result is not None:
                    on_result(i, results[i])
                if should_stop is not None and should_stop():
                    stopped = True
                if not stopped and nxt < len(items):
                    new = submit(nxt)
                    index[new] = nxt
                    pending.add(new)
                    nxt += 1
        finally:
            if _client_alive(client):
                if index:
                    client.cancel(list(index))
                if state_future is not None:
                    client.cancel(state_future)
        if stopped:
            raise PassStopped(f"{desc!r} stopped on request")
        return results

    # -- sequential streaming with read-ahead ------------------------------------------
    def iter_blocks(self, source: SourceLike, blocks: list[tuple[int, int]] | None = None, prefetch: int = 1,
                    desc: str | None = None, readers: int = 1) -> Iterator[tuple[int, int, Any]]:
        """Yield ``(start, stop, block)`` in the given order, reading ``prefetch`` blocks ahead.

        Reads run in ``readers`` background threads (numpy/zarr/h5py release the GIL while
        decoding; float16 blocks are converted there too), so I/O and decoding overlap the
        caller's compute, and several reads keep the disk busy.  Blocks are still yielded
        in order.  ``self.read_stats`` accumulates ``wait_s`` (the caller blocked waiting for
        a block), ``read_s`` (time inside the reads, summed over threads) and ``blocks``.
        """
        blocks = self.blocks(source) if blocks is None else list(blocks)
        pool = self._get_pool(max(1, int(readers)))
        held = self.residency(source)
        pending = deque()
        bar = self._bar(len(blocks), desc)
        stats = self.read_stats
        lock = self._lock

        def read(a, b):
            t = time.perf_counter()
            out = self._read_local(source, held, a, b)
            with lock:
                stats["read_s"] += time.perf_counter() - t
            return out

        it = iter(blocks)
        try:
            for _ in range(max(1, prefetch + 1)):
                nxt = next(it, None)
                if nxt is None:
                    break
                pending.append((nxt, pool.submit(read, *nxt)))
            while pending:
                (a, b), fut = pending.popleft()
                t = time.perf_counter()
                block = fut.result()
                with self._lock:
                    stats["wait_s"] += time.perf_counter() - t
                    stats["blocks"] += 1
                nxt = next(it, None)
                if nxt is not None:
                    pending.append((nxt, pool.submit(read, *nxt)))
                yield a, b, block
                del block
                if bar is not None:
                    bar.update(1)
        finally:
            for _, fut in pending:
                fut.cancel()
            if bar is not None:
                bar.close()
            from .sources.base import release_block_buffers

            release_block_buffers()  # idle block buffers of the stream (sources/base.py)

    def _get_pool(self, readers: int = 1):
        pools = self.__dict__.setdefault("_pools", {})
        if readers == 1:
            if self._pool is None:
                self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="cm-read")
            return self._pool
        if readers not in pools:
            pools[readers] = ThreadPoolExecutor(max_workers=readers, thread_name_prefix="cm-read")
        return pools[readers]

    # -- the eager walk on the workers ------------------------------------------------------
    def eager_walker(self, source: SourceLike, *, method: str, order: Any, state: Callable[[], dict],
                     params: dict, resident: ResidentLike = "auto", n_swap: int = 0) -> Any:
        """A :class:`~chunked_medoids._dist_eager.DistributedEagerWalk` running the eager
        walk of ``method`` on this engine's cluster, or None on local threads.

        The drivers call it once per run and, when it is not None, evaluate every batch of
        candidates through it (see :mod:`chunked_medoids._dist_eager`); the result is
        bitwise the local walk's.  The caller closes it.
        """
        if self.client is None:
            return None
        if not _client_alive(self.client):
            raise _scheduler_lost(self.client, f"{method} (distributed eager walk)")
        from ._dist_eager import DistributedEagerWalk

        # e.g. BUILD's held stripes: handed to the walk's actors, which load their rows from
        # them instead of from storage; released once the actors hold the rows
        held = self.held_stripes(source)
        self._walked = source
        try:
            return DistributedEagerWalk(self, source, method=method, order=order, state=state, params=params,
                                        resident=resident, n_swap=n_swap, held=held)
        finally:
            del held
            if self._res is not None and self._res.source is source:
                self._release_resident()

    def held_stripes(self, source: SourceLike) -> list[tuple[int, int, Any, str]]:
        """The row stripes of ``source`` this engine holds on the cluster's workers (resident
        stripes read by an earlier pass of the run, e.g. BUILD's), as ``(start, stop, future,
        worker address)`` in row order; empty on local threads or when none is held.

        The futures stay valid while the engine holds the stripes (until the next source is
        mapped, or :meth:`eager_walker` has handed them to the walk); a caller that keeps a
        future keeps its stripe alive.
        """
        res = self._res
        if self.client is None or res is None or res.source is not source or not res.futures:
            return []
        done = {key: f for key, f in res.futures.items() if f.status == "finished"}
        if not done or not _client_alive(self.client):
            return []
        try:
            who = self.client.who_has(list(done.values()))
        except Exception:  # noqa: BLE001 - scheduler gone: nothing to hand over
            return []
        out = []
        for (a, b), fut in sorted(done.items()):
            where = sorted(who.get(fut.key) or ())
            if where:
                out.append((int(a), int(b), fut, where[0]))
        return out

    def thread_pool(self) -> ThreadPoolExecutor:
        """A pool of ``num_workers`` compute threads for drivers (e.g. speculative FasterPAM)."""
        if getattr(self, "_cpool", None) is None:
            self._cpool = ThreadPoolExecutor(max_workers=self.num_workers, thread_name_prefix="cm-compute")
        return self._cpool

    def _bar(self, total, desc):
        if not self.progress or getattr(self, "_phases", 0):
            return None  # inside a phase its one bar shows the progress (see phase())
        from tqdm.auto import tqdm

        return tqdm(total=total, desc=desc or "blocks", unit="block", leave=False)

    def close(self) -> None:
        self._release_resident()
        if self._pool is not None:
            self._pool.shutdown(wait=True)
            self._pool = None
        for pool in self.__dict__.pop("_pools", {}).values():
            pool.shutdown(wait=True)
        if getattr(self, "_cpool", None) is not None:
            self._cpool.shutdown(wait=True)
            self._cpool = None
        if self._owns_client and self.client is not None:
            self.client.close()
            self.client = None

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class PhaseProgress:
    """One progress bar (with ETA) and ``-v`` log lines for a phase of a run counted in its
    own unit (BUILD/LAB: medoids added, CLARA: samples scored).  Made by :func:`phase`;
    while it is open the engine's per-pass block bars are not shown, so the phase's bar
    does not restart at every pass."""

    def __init__(self, engine, desc, total, unit, initial):
        self.engine, self.desc, self.total, self.unit = engine, desc, int(total), unit
        self.done = int(initial)
        self._t0 = time.perf_counter()
        self._bar = None
        if engine is not None and engine.progress:
            from tqdm.auto import tqdm

            self._bar = tqdm(total=self.total, initial=self.done, desc=desc, unit=unit, leave=False)
        logger.info("%s: %d %ss to go (of %d)", desc, self.total - self.done, unit, self.total)

    def update(self, n: int = 1) -> None:
        self.done += n
        if self._bar is not None:
            self._bar.update(n)
        logger.info("%s: %d/%d %ss (%.2fs)", self.desc, self.done, self.total, self.unit,
                    time.perf_counter() - self._t0)

    def __enter__(self):
        if self.engine is not None:
            self.engine._phases = getattr(self.engine, "_phases", 0) + 1
        return self

    def __exit__(self, *exc):
        if self.engine is not None:
            self.engine._phases -= 1
        if self._bar is not None:
            self._bar.close()


def phase(engine, desc: str, total: int, unit: str, initial: int = 0) -> PhaseProgress:
    """``with phase(engine, "BUILD", k, "medoid") as ph: ... ph.update()`` (engine may be None)."""
    return PhaseProgress(engine, desc, total, unit, initial)


def _run_block(source, func, start, stop, state):
    return func(source.read_rows(start, stop), start, stop, {} if state is None else state)


def _read_block(source, start, stop):
    return source.read_rows(start, stop)


def _run_held(func, block, start, stop, state):
    return func(block, start, stop, {} if state is None else state)


class _Resident:
    """What an engine holds of one source for the run (:meth:`Engine.residency`)."""

    __slots__ = ("source", "held", "reason", "nbytes", "keep_source", "array", "filled", "futures",
                 "source_future", "token")

    def __init__(self, source):
        import uuid

        self.source = source
        # names this record's stripe keys on a cluster: never reused by a later record (an
        # ``id()`` is, once the old record is freed, and a new stripe task submitted under
        # the key of one whose cancel is still in flight arrives cancelled)
        self.token = uuid.uuid4().hex
        self.held = False
        self.reason = ""
        self.nbytes = 0
        self.keep_source = False
        self.array = None
        self.filled = None
        self.futures = {}
        self.source_future = None


def check_resident(resident):
    """``resident`` as one of ``"auto"``, True, False (numpy booleans accepted)."""
    if isinstance(resident, str):
        if resident == "auto":
            return "auto"
    else:
        import numpy as np

        if isinstance(resident, (bool, np.bool_)):  # np.bool_ is named "bool" in numpy 2
            return bool(resident)
    raise InvalidParameterError(
        f"resident must be 'auto', True or False, got {resident!r}: 'auto' holds the row stripes "
        "read from storage when the matrix fits the budget, True always, False never"
    )


#: passes run at most this often when workers die holding data they need (see
#: :meth:`Engine._map_distributed`); a crash-looping cluster then fails rather than spins
_LOST_DATA_ATTEMPTS = 3


def _scatter(client, obj):
    """One future for ``obj`` on one worker (never ``broadcast=True``, see its caller)."""
    return client.scatter([obj], hash=False)[0]


def _embeddable(source) -> bool:
    """Whether ``source`` travels inside the tasks: a stored matrix, pickled as a path."""
    if (getattr(source, "kind", None) not in ("zarr", "hdf5", "numpy")  # numpy: a memmap here
            or getattr(source, "rows_in_memory", True) or getattr(source, "nbytes", None) is None):
        return False
    import pickle

    try:
        return len(pickle.dumps(source, protocol=pickle.HIGHEST_PROTOCOL)) <= (1 << 20)
    except Exception:  # pragma: no cover - unpicklable: let scatter report it
        return False


def _lost_data(client, exc) -> bool:
    """Whether a pass's cancelled future means a worker died with data the pass needed.

    The client reports such a future as cancelled ("lost dependencies", "already forgotten"
    or "unknown", depending on when it learnt of it); with the scheduler alive nothing else
    cancels a pass's futures (a stop raises :class:`PassStopped`, not a cancellation).
    """
    if _client_alive(client):
        time.sleep(0.2)  # a lost scheduler flips the status on the client's event loop
    return _client_alive(client)


def _run_task(func, item, state):
    return func(item, {} if state is None else state)


def _wait_or_stop(futures, should_stop, desc):
    """Wait for ``futures``, polling ``should_stop``; on a stop cancel them and raise."""
    from distributed import wait

    while True:
        try:
            wait(futures, timeout=0.2)
            return
        except TimeoutError:
            pass
        if should_stop():
            import contextlib

            with contextlib.suppress(Exception):
                futures[0].client.cancel(futures)
            raise PassStopped(f"pass {desc!r} stopped on request")


def make_engine(engine=None, **options) -> Engine:
    """Return ``engine`` if given, else a new :class:`Engine` built from ``options``."""
    if engine is not None:
        return engine
    return Engine(**options)


# ---------------------------------------------------------------------------------------
# rechunking (``chunked-medoids rechunk``): dask.array.rechunk over a source's row reads
# ---------------------------------------------------------------------------------------
class _RowReader:
    """An array-like view of a source for ``dask.array.from_array``: every selection is read
    through ``source.read_rows`` (its fault checks and validation included), so a column
    stripe is read as the row stripe it is transposed and a band of tiles in one read."""

    def __init__(self, source):
        import numpy as np

        self.source = source
        self.shape = (int(source.n), int(source.n))
        self.dtype = np.dtype(source.dtype)
        self.ndim = 2

    def __getitem__(self, key):
        rows, cols = key if isinstance(key, tuple) else (key, slice(None))
        a, b, step = rows.indices(self.shape[0])
        block = self.source.read_rows(a, b)
        if step != 1:  # pragma: no cover - dask asks for unit-step slices
            block = block[::step]
        return block if cols == slice(None) or cols == slice(0, self.shape[1]) else block[:, cols]


def rechunk_rows(source: SourceLike, stripe_rows: int, input_rows: int, block_size_limit: int):
    """A source whose blocks are ``source`` regrouped into row stripes of ``stripe_rows`` rows
    by ``dask.array.rechunk`` (``method="tasks"``, intermediate chunks of at most
    ``block_size_limit`` bytes).

    The input array has one chunk per ``input_rows`` rows, each read by ``source.read_rows``;
    reading rows ``i*stripe_rows:(i+1)*stripe_rows`` of the result computes exactly one output
    chunk (with Dask's synchronous scheduler, inside the task that reads it), so the memory
    of a stripe in flight is its input chunks plus the stripe.  Rows are copied bit for bit.
    """
    import uuid

    import dask.array as da

    from .sources.dask_array import DaskArraySource

    n = int(source.n)
    name = f"cm-rechunk-input-{uuid.uuid4().hex}"  # no tokenising of the source
    arr = da.from_array(_RowReader(source), chunks=(int(input_rows), n), name=name, asarray=False,
                        fancy=False, lock=False, inline_array=True)
    out = arr.rechunk((int(stripe_rows), n), block_size_limit=int(block_size_limit), method="tasks")
    stripes = DaskArraySource(out)
    # what a stripe's read decodes is the input's: the engine sizes its read concurrency by the
    # input's read unit (read_concurrency), as for a pass over the input
    stripes.block_rows = int(source.block_rows)
    return stripes
