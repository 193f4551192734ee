"""Initialisations: random, BUILD and LAB (registered in :data:`INITS`).

Each registered init has the signature ``func(source, k, *, rng, engine, weights) ->
medoids`` (int64, k distinct indices).  :func:`build` and :func:`lab` are the public
wrappers taking anything :func:`~chunked_medoids.open_dissimilarity` accepts.
"""

from __future__ import annotations

import logging
import math
import time

import numpy as np

from .._kernels.build import build_gains, row_sums, update_nearest
from .._util import check_random_state, check_weights
from ._common import kernel_weights, prepare
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


def build_init(source, k, *, rng=None, engine, weights=None):
    """BUILD (Kaufman & Rousseeuw) on the full data: k block-parallel passes over D.

    The first medoid minimises the (weighted) row sum; each next one maximises
    ``Σ_o w_o·max(dn[o] − D[o, j], 0)`` over non-medoids.  Ties go to the earliest index.
    When no candidate has a positive gain (duplicates, fewer than k distinct points) the
    non-medoid with the largest gain (0) and earliest index is taken anyway, so k distinct
    indices are always returned.  ``rng`` is unused (BUILD is deterministic).
    """
    w, weighted = kernel_weights(weights)
    n = source.n
    taken = np.zeros(n, dtype=bool)
    medoids = np.empty(k, dtype=np.int64)
    t0 = time.perf_counter()
    sums = np.concatenate(engine.map_blocks(source, _rowsum_block, {"w": w, "weighted": weighted},
                                            desc="BUILD 1"))
    m = _pick(sums, taken, largest=False)
    medoids[0] = m
    taken[m] = True
    dn = source.take_rows([m])[0].copy()
    for s in range(1, k):
        state = {"dn": dn, "w": w, "weighted": weighted}
        gains = np.concatenate(engine.map_blocks(source, _gain_block, state, desc=f"BUILD {s + 1}"))
        m = _pick(gains, taken, largest=True)
        if gains[m] <= 0:
            logger.info("BUILD: no candidate improves the loss at medoid %d; taking index %d", s + 1, m)
        medoids[s] = m
        taken[m] = True
        update_nearest(source.take_rows([m])[0], dn)
    logger.info("BUILD: k=%d in %.2fs", k, time.perf_counter() - t0)
    return medoids


def lab_init(source, k, *, rng, engine=None, weights=None):
    """LAB (Linear Approximative BUILD, Schubert & Rousseeuw 2021).

    For each medoid, a fresh random subsample S of size ``min(n, 10 + ceil(sqrt(n)))`` of
    the non-medoids is drawn with ``rng``; BUILD's choice is made on S only: the first
    medoid minimises ``Σ_{o∈S} w_o D[o, j]`` over ``j ∈ S``, each next one maximises
    ``Σ_{o∈S} w_o max(dn_S[o] − D[o, j], 0)`` where ``dn_S`` is the distance to the medoids
    chosen so far.  Ties go to the earliest sample position.  Reads only the rows of S
    (in pieces that fit the engine's budget, keeping the S and medoid columns):
    O(k·(10 + √n)) rows in total, memory O(|S|² + |S|·k).
    """
    n = source.n
    m = min(n, 10 + int(math.ceil(math.sqrt(n))))
    medoids = []
    taken = np.zeros(n, dtype=bool)
    piece = max(1, engine.block_rows_for(source) if engine is not None else m)
    for s in range(k):
        pool = np.flatnonzero(~taken)
        size = min(m, pool.shape[0])
        sample = np.sort(rng.choice(pool, size=size, replace=False))
        # sample rows restricted to the sample columns and the medoid columns
        cols = np.concatenate([sample, np.asarray(medoids, dtype=np.int64)])
        sub = np.empty((size, cols.shape[0]), dtype=source.dtype)
        for a in range(0, size, piece):
            rows = source.take_rows(sample[a:a + piece])
            sub[a:a + rows.shape[0]] = rows[:, cols]
        ws = None if weights is None else np.ascontiguousarray(weights[sample], dtype=np.float64)
        w, weighted = kernel_weights(ws)
        DS = np.ascontiguousarray(sub[:, :size])
        if s == 0:
            vals = np.empty(size, dtype=np.float64)
            row_sums(DS, w, weighted, vals)
            pick = int(np.argmin(vals))
        else:
            dn = np.ascontiguousarray(sub[:, size:].min(axis=1))
            vals = np.empty(size, dtype=np.float64)
            build_gains(DS, dn, w, weighted, vals)  # D symmetric: row j of DS is column j
            pick = int(np.argmax(vals))
        j = int(sample[pick])
        medoids.append(j)
        taken[j] = True
    return np.asarray(medoids, dtype=np.int64)


register_init("random", random_init, description="k distinct points drawn uniformly at random")
register_init("build", build_init, description="BUILD: greedy, k full passes over D (deterministic)")
register_init("lab", lab_init, description="LAB: BUILD on fresh subsamples of size 10+sqrt(n) (O(n·k) reads)")


# -- public wrappers ------------------------------------------------------------------------
def build(D, k, *, weights=None, memory_limit="1GiB", client=None, progress=False,
          num_workers=None, block_rows=None, engine=None):
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

    Returns
    -------
    medoids : (k,) int64

    Notes
    -----
    I/O: k full passes over D (block-parallel) plus k single rows; memory O(n) plus the
    row blocks in flight.
    """
    source, eng, owns = prepare(D, k, memory_limit=memory_limit, client=client, progress=progress,
                                num_workers=num_workers, block_rows=block_rows, engine=engine)
    try:
        w = check_weights(weights, source.n)
        return build_init(source, int(k), engine=eng, weights=w)
    finally:
        if owns:
            eng.close()


def lab(D, k, *, random_state=None, weights=None, memory_limit="1GiB", client=None, progress=False,
        num_workers=None, block_rows=None, engine=None):
    """LAB initial medoids (BUILD on random subsamples; see :func:`lab_init`).

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
    k : int
    random_state : None, int, SeedSequence or Generator
    weights : (n,) array, optional
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (the block budget bounds the sample rows read at once).

    Returns
    -------
    medoids : (k,) int64
    """
    source, eng, owns = prepare(D, k, memory_limit=memory_limit, client=client, progress=progress,
                                num_workers=num_workers, block_rows=block_rows, engine=engine)
    try:
        rng = check_random_state(random_state)
        w = check_weights(weights, source.n)
        return lab_init(source, int(k), rng=rng, engine=eng, weights=w)
    finally:
        if owns:
            eng.close()
