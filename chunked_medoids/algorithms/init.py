"""Initialisations: random, BUILD and LAB (registered in :data:`INITS`).

Each registered init has the signature ``func(source, k, *, rng, engine, weights) ->
medoids`` (int64, k distinct indices).  :func:`build` and :func:`lab` are the public
wrappers taking anything :func:`~chunked_medoids.open_dissimilarity` accepts.

BUILD and LAB are *resumable*: inside a checkpointed run they also take
``checkpoint=`` and ``resume=``, save a :class:`~chunked_medoids._state.BuildState` /
:class:`~chunked_medoids._state.LabState` after every added medoid (so a SIGKILL loses at
most one medoid's work), stop within a block when the run's stop request is set (saving
the state after the last complete medoid), and continue from ``resume`` to the result an
uninterrupted run gives.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from .._kernels.build import build_gains, row_sums, update_nearest
from .._kernels.fused_passes import build_gains_fused, row_sums_fused
from .._state import BuildState, LabState
from .._typing import ClientLike, DissimilarityLike, MemoryLimit, RandomStateLike, ResidentLike, WeightsLike
from .._util import check_k, check_random_state, check_weights
from ..checkpoint import NullCheckpoint
from ..engine import Engine, PassStopped, phase
from ._common import driver_scope, kernel_weights
from ._fused import fused_ok, fused_pass, thresholds
from ._registry import register_init

logger = logging.getLogger(__name__)


# -- block functions (module level: picklable for distributed workers) ------------------
def _rowsum_block(block, start, stop, state):
    out = np.empty(block.shape[0], dtype=np.float64)
    row_sums(block, state["w"], state["weighted"], out)
    return out


def _gain_block(block, start, stop, state):
    out = np.empty(block.shape[0], dtype=np.float64)
    build_gains(block, state["dn"], state["w"], state["weighted"], out)
    return out


def _lab_rows_task(rows, state):
    """LAB: the rows ``rows`` (sorted, within one engine block) restricted to the columns U."""
    return np.ascontiguousarray(state["source"].take_rows(rows)[:, state["U"]])


def _lab_submatrix(source, U, engine):
    """``D[U][:, U]`` for sorted U: one task per engine row block holding rows of U (run
    concurrently by the engine, results in block order), so every storage chunk holding a
    row of U is decoded once, and only the U columns of each row are kept."""
    if engine is None:
        return np.ascontiguousarray(source.take_rows(U)[:, U])
    blocks = engine.blocks(source)
    cuts = np.searchsorted(U, [a for a, _ in blocks] + [source.n])
    items = [U[cuts[i]:cuts[i + 1]] for i in range(len(blocks)) if cuts[i + 1] > cuts[i]]
    conc = engine.read_concurrency(source, blocks)
    parts = engine.map_tasks(_lab_rows_task, items, {"source": source, "U": U},
                             max_concurrency=conc, desc="LAB rows")
    return np.concatenate(parts, axis=0) if parts else np.empty((0, U.shape[0]), dtype=source.dtype)


def _rowsum_fused(F, S, start, stop, state):
    out = np.empty(stop - start, dtype=np.float64)
    row_sums_fused(F, S, start, stop, state["w"], state["weighted"], out)
    return out


def _gain_fused(F, S, start, stop, state):
    out = np.empty(stop - start, dtype=np.float64)
    build_gains_fused(F, S, state["H"], start, stop, state["dn"], state["w"], state["weighted"], out)
    return out


def _pick(values, taken, largest):
    """Index of the best value among points not yet taken; earliest index on ties."""
    v = values.copy()
    if largest:
        v[taken] = -np.inf
        return int(np.argmax(v))  # argmax returns the first maximum
    v[taken] = np.inf
    return int(np.argmin(v))


# -- registered inits ---------------------------------------------------------------------
def random_init(source, k, *, rng, engine=None, weights=None):
    """k distinct indices drawn uniformly: ``rng.choice(n, k, replace=False)`` (no I/O)."""
    return np.asarray(rng.choice(source.n, size=k, replace=False), dtype=np.int64)


def build_init(source, k, *, rng=None, engine, weights=None, checkpoint=None, resume=None):
    """BUILD (Kaufman & Rousseeuw) on the full data: k block-parallel passes over D.

    The first medoid minimises the (weighted) row sum; each next one maximises
    ``Σ_o w_o·max(dn[o] − D[o, j], 0)`` over non-medoids.  Ties go to the earliest index.
    When no candidate has a positive gain (duplicates, fewer than k distinct points) the
    non-medoid with the largest gain (0) and earliest index is taken anyway, so k distinct
    indices are always returned.  ``rng`` is unused (BUILD is deterministic).

    ``checkpoint`` (a Checkpoint) receives a :class:`~chunked_medoids._state.BuildState`
    after every medoid; a pass stops at the next block once its stop request is set.
    ``resume`` (a BuildState) continues an interrupted BUILD.
    """
    ckpt = NullCheckpoint() if checkpoint is None else checkpoint
    should_stop = ckpt.stop.is_set if ckpt.enabled else None
    w, weighted = kernel_weights(weights)
    n = source.n
    taken = np.zeros(n, dtype=bool)
    medoids = [] if resume is None else [int(m) for m in resume.medoids]
    taken[medoids] = True
    dn = None if resume is None or resume.dn is None else np.array(resume.dn, dtype=source.dtype)
    t0 = time.perf_counter()
    fused = fused_ok(source, engine)

    def snapshot():
        return BuildState(medoids=np.asarray(medoids, dtype=np.int64), dn=None if dn is None else dn.copy())

    with phase(engine, "BUILD", k, "medoid", initial=len(medoids)) as ph:
        while len(medoids) < k:
            s = len(medoids)
            try:
                if fused and s == 0:  # features in memory: rows computed inside the kernels
                    values = fused_pass(engine, source, _rowsum_fused, {"w": w, "weighted": weighted},
                                        desc="BUILD 1", should_stop=should_stop)
                elif fused:
                    values = fused_pass(engine, source, _gain_fused, {"dn": dn, "w": w, "weighted": weighted,
                                                                      "H": thresholds(source, dn)},
                                        desc=f"BUILD {s + 1}", should_stop=should_stop)
                elif s == 0:
                    values = engine.map_blocks(source, _rowsum_block, {"w": w, "weighted": weighted},
                                               desc="BUILD 1", should_stop=should_stop)
                else:
                    values = engine.map_blocks(source, _gain_block, {"dn": dn, "w": w, "weighted": weighted},
                                               desc=f"BUILD {s + 1}", should_stop=should_stop)
            except PassStopped:
                ckpt.milestone(snapshot)  # the state after the last complete medoid; raises
                raise
            values = np.concatenate(values)
            m = _pick(values, taken, largest=(s > 0))
            if s > 0 and values[m] <= 0:
                logger.info("BUILD: no candidate improves the loss at medoid %d; taking index %d", s + 1, m)
            medoids.append(m)
            taken[m] = True
            row = source.take_rows([m])[0]
            if s == 0:
                dn = row.copy()
            else:
                update_nearest(row, dn)
            if ckpt.enabled:
                ckpt.milestone(snapshot)
            ph.update()
    logger.info("BUILD: k=%d in %.2fs", k, time.perf_counter() - t0)
    return np.asarray(medoids, dtype=np.int64)


def _lab_groups(samples, itemsize, budget):
    """Consecutive medoid steps whose union of sample rows fits ``budget`` bytes as a
    ``|U| x |U|`` matrix: ``[(first step, stop step, sorted union U), ...]``."""
    groups, first, union = [], 0, np.empty(0, dtype=np.int64)
    for s, S in enumerate(samples):
        grown = np.union1d(union, S)
        if s > first and grown.shape[0] ** 2 * itemsize > budget:
            groups.append((first, s, union))
            first, grown = s, S
        union = grown
    if samples:
        groups.append((first, len(samples), union))
    return groups


def lab_init(source, k, *, rng, engine=None, weights=None, checkpoint=None, resume=None):
    """LAB (Linear Approximative BUILD, Schubert & Rousseeuw 2021), reading D once.

    For each medoid a random subsample S of size ``min(n, 10 + ceil(sqrt(n)))`` is drawn
    with ``rng``; BUILD's choice is made on S only: the first medoid minimises
    ``Σ_{o∈S} w_o D[o, j]`` over ``j ∈ S``, each next one maximises
    ``Σ_{o∈S} w_o max(dn_S[o] − D[o, j], 0)`` over the non-medoids ``j ∈ S``, where ``dn_S``
    is the distance to the medoids chosen so far.  Ties go to the earliest index.

    The k subsamples are drawn **up front** (each from all n points; a medoid in a later
    subsample counts with ``dn = 0`` and is no candidate), so their rows are read in one
    sorted pass (``take_rows`` in pieces of the engine's block height, keeping only the
    columns of the union ``U`` of the subsamples): a |U|×|U| matrix, |U| <= k·(10 + √n),
    holds every distance LAB needs.  On a chunked store this is one read of the chunks
    holding U instead of one per medoid (one engine task per row block, read concurrently).  When |U|² values exceed half of
    ``memory_limit``, consecutive medoid steps are grouped so that each group's union fits,
    one pass per group, and the rows of the medoids of earlier groups are read once each
    (one row per added medoid) to carry ``dn`` across groups.

    ``checkpoint`` receives a :class:`~chunked_medoids._state.LabState` (medoids and the
    generator state at the start of LAB) after every medoid; ``resume`` continues from one:
    the subsamples are drawn again from that state, so a resumed LAB returns the medoids
    and leaves ``rng`` in the state an uninterrupted one does.
    """
    ckpt = NullCheckpoint() if checkpoint is None else checkpoint
    n = source.n
    m = min(n, 10 + int(math.ceil(math.sqrt(n))))
    medoids = []
    if resume is not None:
        medoids = [int(x) for x in resume.medoids]
        if resume.rng_state is not None:
            rng.bit_generator.state = resume.rng_state
    start_state = rng.bit_generator.state
    samples = [np.sort(rng.choice(n, size=m, replace=False)).astype(np.int64) for _ in range(k)]
    taken = np.zeros(n, dtype=bool)
    taken[medoids] = True
    itemsize = source.dtype.itemsize
    budget = engine.memory_limit // 2 if engine is not None else np.inf
    piece = max(1, engine.block_rows_for(source) if engine is not None else n)
    dn_full = None  # distance to the nearest medoid of earlier groups (n,), read row by row
    carried = 0  # medoids whose rows are in dn_full

    def state():
        return LabState(medoids=np.asarray(medoids, dtype=np.int64), rng_state=start_state)

    with phase(engine, "LAB", k, "medoid", initial=len(medoids)) as ph:
        for first, stop, U in _lab_groups(samples, itemsize, budget):
            if stop <= len(medoids):
                continue  # every step of this group was done before the resume
            # the distances to the medoids chosen before this group: one row per medoid
            before = min(first, len(medoids))
            if carried < before:
                for a in range(carried, before, piece):
                    rows = source.take_rows(np.asarray(medoids[a:before][:piece], dtype=np.int64))
                    low = rows.min(axis=0)
                    dn_full = low if dn_full is None else np.minimum(dn_full, low)
                carried = before
            sub = _lab_submatrix(source, U, engine)  # one pass over the chunks holding U
            dn_U = None if dn_full is None else np.ascontiguousarray(dn_full[U])
            for s in range(first, stop):
                S = samples[s]
                pos = np.searchsorted(U, S)
                if s < len(medoids):  # done before the resume: only its dn contribution
                    j = medoids[s]
                else:
                    DS = np.ascontiguousarray(sub[np.ix_(pos, pos)])
                    ws = None if weights is None else np.ascontiguousarray(weights[S], dtype=np.float64)
                    w, weighted = kernel_weights(ws)
                    vals = np.empty(S.shape[0], dtype=np.float64)
                    if dn_U is None:
                        row_sums(DS, w, weighted, vals)
                        vals[taken[S]] = np.inf
                        pick = int(np.argmin(vals))
                    else:
                        build_gains(DS, np.ascontiguousarray(dn_U[pos]), w, weighted, vals)
                        vals[taken[S]] = -np.inf
                        pick = int(np.argmax(vals))
                    if taken[S[pick]]:  # every sampled point is a medoid already (k close to n)
                        j = int(np.flatnonzero(~taken)[0])
                        logger.info("LAB: subsample %d holds only medoids; taking index %d", s + 1, j)
                    else:
                        j = int(S[pick])
                    medoids.append(j)
                    taken[j] = True
                    if ckpt.enabled:
                        ckpt.milestone(state)
                    ph.update()
                if s + 1 < stop:  # the next steps of this group see the new medoid
                    jp = int(np.searchsorted(U, j))
                    if jp < U.shape[0] and U[jp] == j:
                        col = sub[jp]  # D symmetric: row j restricted to U
                    else:  # the fallback pick outside U
                        col = source.take_rows([j])[0][U]
                    dn_U = col.copy() if dn_U is None else np.minimum(dn_U, col)
    return np.asarray(medoids, dtype=np.int64)


register_init("random", random_init, description="k distinct points drawn uniformly at random")
register_init("build", build_init, description="BUILD: greedy, k full passes over D (deterministic)",
              resumable=True)
register_init("lab", lab_init, description="LAB: BUILD on k subsamples of size 10+sqrt(n), their rows "
              "read in one pass (O(k·sqrt(n)) rows: the init to use on a stored matrix)", resumable=True)


# -- public wrappers ------------------------------------------------------------------------
def build(D: DissimilarityLike, k: int, *, weights: WeightsLike = None, memory_limit: MemoryLimit = "1GiB",
          client: ClientLike = None, progress: bool = False, num_workers: int | None = None,
          block_rows: int | None = None, engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> np.ndarray:
    """BUILD initial medoids (deterministic greedy; see :func:`build_init`).

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).
    k : int
        Number of medoids, 1 <= k <= n.
    weights : (n,) array, optional
        Non-negative point weights.
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (see :class:`~chunked_medoids.Engine`).
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        Hold the row stripes read from storage for the rest of the run, so a store is read
        once rather than once per pass (see :class:`~chunked_medoids.Engine`): "auto" when
        the matrix fits half of ``memory_limit`` (on a cluster: half of the workers' summed
        memory limits), True whenever it fits, False never.

    Returns
    -------
    medoids : (k,) int64

    Notes
    -----
    I/O: k full passes over D (block-parallel) plus k single rows; memory O(n) plus the
    row blocks in flight.
    """
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        w = check_weights(weights, run.source.n)
        return build_init(run.source, int(k), engine=run.engine, weights=w)


def lab(D: DissimilarityLike, k: int, *, random_state: RandomStateLike = None, weights: WeightsLike = None,
        memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
        num_workers: int | None = None, block_rows: int | None = None, engine: Engine | None = None,
        validate: bool = True, resident: ResidentLike = "auto") -> np.ndarray:
    """LAB initial medoids (BUILD on random subsamples; see :func:`lab_init`).

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
    k : int
    random_state : None, int, SeedSequence or Generator
    weights : (n,) array, optional
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (the block budget bounds the sample rows read at once).
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        Hold the row stripes read from storage for the rest of the run, so a store is read
        once rather than once per pass (see :class:`~chunked_medoids.Engine`): "auto" when
        the matrix fits half of ``memory_limit`` (on a cluster: half of the workers' summed
        memory limits), True whenever it fits, False never.

    Returns
    -------
    medoids : (k,) int64
    """
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        rng = check_random_state(random_state)
        w = check_weights(weights, run.source.n)
        return lab_init(run.source, int(k), rng=rng, engine=run.engine, weights=w)
