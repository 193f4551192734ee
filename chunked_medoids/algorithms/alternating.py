"""Alternating (Voronoi iteration, "k-means style") k-medoids.

Each iteration: assign every point to its nearest medoid (lowest slot on ties, a medoid in
its own slot); then each cluster's medoid becomes the member with the smallest (weighted)
sum of distances to the other members.  One block-parallel pass over D per iteration:
every row j computes its within-cluster sum for its own cluster; the per-cluster argmin is
reduced in block order (lowest index on ties).  The current medoid is kept unless a member
is strictly better (so the method cannot cycle between equally good medoids).  Stops when
no medoid changes or after ``max_iter`` iterations.
"""

from __future__ import annotations

import logging
import time

import numpy as np

from .._kernels.build import argmin_per_cluster, within_cluster_sums
from .._kernels.fused_passes import within_cluster_sums_fused
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
from .._util import check_k, format_bytes
from ..engine import Engine
from ._common import (
    assign_table,
    check_run,
    driver_scope,
    init_or_saved,
    kernel_weights,
    make_result,
    medoid_table,
    total_loss,
)
from ._fused import fused_ok, fused_pass
from ._registry import register_method

logger = logging.getLogger(__name__)

#: default iteration bound (one iteration = one pass over D).
DEFAULT_MAX_ITER = 100


def _within_block(block, start, stop, st):
    out = np.empty(block.shape[0], dtype=np.float64)
    within_cluster_sums(block, start, st["labels"], st["w"], st["weighted"], out)
    return out


def _within_fused(F, S, start, stop, st):
    out = np.empty(stop - start, dtype=np.float64)
    within_cluster_sums_fused(F, S, start, stop, st["labels"], st["w"], st["weighted"], out)
    return out


def alternating(D: DissimilarityLike, k: int, *, init: InitLike = "random",
                max_iter: int = DEFAULT_MAX_ITER, random_state: RandomStateLike = None,
                weights: WeightsLike = None, tol: float = 0.0, memory_limit: MemoryLimit = "1GiB",
                client: ClientLike = None, progress: bool = False, num_workers: int | None = None,
                block_rows: int | None = None, checkpoint: PathLike | None = None,
                checkpoint_interval: float = 60.0, engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> SwapResult:
    """Alternating k-medoids (Voronoi iteration), streaming D once per iteration.

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).
    k : int
        Number of medoids, 1 <= k <= n.
    init : {"random", "build", "lab"} or array of k distinct ints, default "random"
    max_iter : int, default 100
        Maximum number of iterations.
    random_state : None, int, SeedSequence or Generator
    weights : (n,) array, optional
        Non-negative point weights (the within-cluster sums and the loss are weighted).
    tol : float, default 0.0
        A medoid is replaced only if the member's within-cluster sum is below
        ``(1 - tol)`` times the current medoid's (0: any strict improvement).
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (see :class:`~chunked_medoids.Engine`); results do not depend on them.
    checkpoint : path, optional
        State saved after every iteration; a rerun resumes to the identical result.
    checkpoint_interval : float, default 60.0
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        Hold the row stripes read from storage for the rest of the run, so a store is read
        once rather than once per pass (see :class:`~chunked_medoids.Engine`): "auto" when
        the matrix fits half of ``memory_limit`` (on a cluster: half of the workers' summed
        memory limits), True whenever it fits, False never.

    Returns
    -------
    SwapResult
        ``n_swap`` counts medoid replacements.

    Notes
    -----
    Memory: n×k medoid table + O(n) labels/caches + row blocks in flight.  I/O per
    iteration: one read of D plus the rows of the new medoids.  Usually converges to a
    worse local optimum than the swap methods (it is mainly a baseline).
    """
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        source, eng = run.source, run.engine
        k = int(k)
        max_iter, tol, w, rng, params = check_run(source, k, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state)
        ckpt = run.open_checkpoint(checkpoint, algorithm="alternating", params=params,
                                   interval=checkpoint_interval)
        state, medoids = init_or_saved(ckpt.load(), init, source, k, rng, eng, w, ckpt, SwapState)
        if state is None:
            state = SwapState(medoids=medoids)
        M = _alternating_single(source, eng, state, w, k, max_iter=max_iter, tol=tol, ckpt=ckpt)
        result = make_result(M, state.medoids, w, n_iter=state.n_iter, n_swap=state.n_swap,
                             loss_history=state.loss_history, algorithm="alternating",
                             converged=bool(state.done))
        state.done = True
        ckpt.complete(state)
        return result


def _alternating_single(source, eng, state, w, k, *, max_iter, tol, ckpt):
    """Voronoi iterations continuing ``state`` (updated in place); returns the medoid table."""
    kw, weighted = kernel_weights(w)
    medoids = state.medoids
    M = medoid_table(source, medoids)
    labels, dn, _, _, _ = assign_table(M, medoids)
    if not state.loss_history:
        state.loss_history.append(total_loss(dn, w))
    fused = fused_ok(source, eng)
    while not state.done and state.n_iter < max_iter:
        t0 = time.perf_counter()
        read0 = eng.bytes_read
        state.n_iter += 1
        blocks = eng.blocks(source)
        bstate = {"labels": labels, "w": kw, "weighted": weighted}
        if fused:  # features in memory: rows computed inside the kernel
            sums = fused_pass(eng, source, _within_fused, bstate, blocks=blocks, desc=f"alternating {state.n_iter}")
        else:
            sums = eng.map_blocks(source, _within_block, bstate, blocks=blocks, desc=f"alternating {state.n_iter}")
        best_val = np.full(k, np.inf)
        best_idx = np.full(k, -1, dtype=np.int64)
        current = np.empty(k, dtype=np.float64)
        for (a, _), s in zip(blocks, sums):
            argmin_per_cluster(s, a, labels, k, best_val, best_idx)
            sel = (medoids >= a) & (medoids < a + s.shape[0])
            current[sel] = s[medoids[sel] - a]
        new = medoids.copy()
        better = (best_idx >= 0) & (best_val < (1.0 - tol) * current) & (best_idx != medoids)
        new[better] = best_idx[better]
        changed = np.flatnonzero(new != medoids)
        if changed.size:
            rows = source.take_rows(new[changed])
            M[:, changed] = rows.T
            medoids = new
            labels, dn, _, _, _ = assign_table(M, medoids)
            state.n_swap += int(changed.size)
        else:
            state.done = True
        state.medoids = medoids.copy()
        state.loss_history.append(total_loss(dn, w))
        logger.info("alternating iteration %d: loss=%.10g changed=%d %.2fs read %s", state.n_iter,
                    state.loss_history[-1], changed.size, time.perf_counter() - t0,
                    format_bytes(eng.bytes_read - read0))
        ckpt.step(lambda: state, force=True)  # noqa: B023 - called here
    return M


register_method("alternating", alternating, family="swap",
                description="alternating (Voronoi iteration) k-medoids; fast but weaker optimum")
