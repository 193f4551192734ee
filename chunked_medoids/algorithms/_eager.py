"""The eager streaming pass shared by FasterPAM and FasterMSC.

Both methods walk the candidates in a fixed order, one pass = one read of D in row blocks
(read ahead in a background thread), and act on a candidate as soon as it improves the
objective.  :func:`eager_passes` is the one place where that walk happens: it reads the
blocks, hands each block of candidate rows to the method's ``evaluate`` callback, keeps the
:class:`~chunked_medoids._state.EagerProgress` (pass, position, positions since the last
swap) and checkpoints at block boundaries and pass ends.

``evaluate(block, start, visit, cand, counters) -> consumed`` evaluates the candidates
``cand`` (global indices; their rows are ``block[visit]``) in order, swapping as it goes,
updates ``counters = [since, n_swap]`` in place and returns how many candidates it
consumed (fewer than given only when the walk converged inside the block).
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._budget import direct_stream_plan
from .._state import EagerProgress
from .._util import format_bytes

logger = logging.getLogger(__name__)

#: rows per granule of the "shuffle" order (independent of memory_limit / block size).
GRANULE = 256
#: row blocks held at once by an eager pass (current + read-ahead).
BLOCKS_IN_FLIGHT = 3


def read_units(n, order, pos, block_rows):
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


def iter_units(source, eng, units, desc, readers=1, ahead=1):
    """Yield (unit, block) with read-ahead for range reads (engine.iter_blocks)."""
    if all(isinstance(u[2], tuple) for u in units):
        ranges = [u[2] for u in units]
        for u, (_, _, block) in zip(units, eng.iter_blocks(source, blocks=ranges, prefetch=ahead, desc=desc,
                                                           readers=readers)):
            yield u, block
    else:
        for u in units:
            block = source.take_rows(u[2])
            eng.bytes_read += block.nbytes
            yield u, block


def position_units(walk, n, unit):
    """Units of ``unit`` positions from the walk's *current* position (rows=False passes).

    Each unit starts where the previous evaluation stopped (``walk.pos``), so an evaluator
    may consume part of a unit and return (a distributed walk pauses between batches for a
    due checkpoint or a stop request); the next unit continues right there.
    """
    while walk.pos < n:
        a = walk.pos
        yield (a, min(a + unit, n), None), None


def eager_passes(source, eng, walk: EagerProgress, evaluate, *, max_iter, order=None, ckpt, snapshot,
                 on_pass_end=None, desc="eager", rows=True, unit_rows=None):
    """Run eager passes over ``source`` until convergence or ``max_iter`` passes.

    Parameters
    ----------
    source : DissimilaritySource
    eng : Engine
        Reads the blocks (sized for :data:`BLOCKS_IN_FLIGHT` blocks in flight).
    walk : EagerProgress
        Updated in place; a walk restored from a checkpoint continues where it stopped.
    evaluate : callable
        ``evaluate(block, start, visit, cand, counters) -> consumed`` (module notes).
    max_iter : int
        Bound on passes.
    order : ndarray of int64 or None
        The candidate order (None: 0..n-1).
    ckpt : Checkpoint or NullCheckpoint
        ``ckpt.step(snapshot)`` at block boundaries, forced at pass ends.
    snapshot : callable
        Returns the driver's current :class:`~chunked_medoids._state.RunState`.
    on_pass_end : callable, optional
        ``on_pass_end(walk, seconds, bytes_read, swaps)`` after each pass (history, log),
        before the pass-end checkpoint.
    desc : str
        Name used in progress bars and logs.
    rows : bool, default True
        False when ``evaluate`` computes the candidates' rows itself (fused kernels on a
        features source): nothing is read, ``evaluate(None, start, None, cand, counters)``
        gets the candidates in units of the same size.
    unit_rows : int, optional
        With ``rows=False``: positions per unit (default: the block height).  A distributed
        walk (``chunked_medoids._dist_eager``) takes whole passes and pauses itself.

    Returns
    -------
    EagerProgress
        ``walk``.
    """
    n = source.n
    if order is None and rows:  # natural order: concurrent readers, deep read-ahead (Engine.stream_plan)
        hint = getattr(source, "direct_unit_rows", None)  # O_DIRECT chunks read straight (ZarrSource)
        brows, readers, ahead = direct_stream_plan(eng.stream_plan(source, blocks_in_flight=BLOCKS_IN_FLIGHT),
                                                   None if hint is None else hint())
    else:  # shuffle order reads 256-row granules: keep the blocks tall
        brows, readers, ahead = eng.block_rows_for(source, blocks_in_flight=BLOCKS_IN_FLIGHT), 1, 1
    unit = brows if unit_rows is None else max(1, int(unit_rows))
    counters = np.array([walk.since, walk.n_swap], dtype=np.int64)
    while not walk.done and (walk.pos > 0 or walk.n_iter < max_iter):
        t0 = time.perf_counter()
        read0 = eng.bytes_read
        swaps0 = walk.n_swap
        if walk.pos == 0:
            walk.n_iter += 1
        if rows:
            stream = iter_units(source, eng, read_units(n, order, walk.pos, brows), f"{desc} pass {walk.n_iter}",
                                readers, ahead)
        else:
            stream = position_units(walk, n, unit)
        for (ps, pe, read), block in stream:
            if read is None:
                cand = np.arange(ps, pe, dtype=np.int64) if order is None else order[ps:pe]
                visit = None
            elif isinstance(read, tuple):
                cand = np.arange(ps, pe, dtype=np.int64) if order is None else order[ps:pe]
                visit = cand - read[0]
            else:
                cand = np.asarray(read, dtype=np.int64)
                visit = np.arange(cand.shape[0], dtype=np.int64)
            consumed = evaluate(block, ps, visit, cand, counters)
            walk.pos = ps + int(consumed)
            walk.since, walk.n_swap = int(counters[0]), int(counters[1])
            if counters[0] >= n:
                walk.done = True
                break
            ckpt.step(snapshot)
        walk.pos = 0
        if on_pass_end is not None:
            on_pass_end(walk, time.perf_counter() - t0, eng.bytes_read - read0, walk.n_swap - swaps0)
        ckpt.step(snapshot, force=True)
    return walk


def log_pass(desc, what, value, walk, seconds, nbytes, swaps):
    """The one log line of an eager pass."""
    logger.info("%s pass %d: %s=%.10g swaps=%d %.2fs read %s", desc, walk.n_iter, what, value, swaps,
                seconds, format_bytes(nbytes))
