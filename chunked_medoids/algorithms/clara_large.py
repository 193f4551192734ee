"""LargeCLARA: CLARA with samples of tens of thousands of points, and an exact polish.

CLARA (Kaufman & Rousseeuw) clusters samples and keeps the medoids whose loss on the
full data is lowest.  With a sample matrix of s² entries the sample size is bounded by
memory (a few thousand points), and the medoids then overfit their sample: with k = 100
each cluster is represented by a few dozen points.  FasterPAM (Schubert & Rousseeuw 2021)
on a *features* source needs no sample matrix: the rows of the sample's dissimilarity are
computed on the fly (:func:`~chunked_medoids.from_features`), so a sample can hold
10 000 points or more in a few MB of memory.  LargeCLARA is

1. **samples** -- ``n_samples`` independent uniform samples of ``sample_size`` points
   (independent engine tasks).  Each is solved in two levels: FasterPAM from a random
   init on an in-memory matrix of its first ``init_size`` points, then FasterPAM on the
   whole sample's on-the-fly distances from those medoids (at most ``max_passes``
   passes; candidates and loss are the sample's points);
2. **exact scoring** -- one streaming pass over all n points scores every sample's medoids
   exactly (correctly rounded Σ w·d, :mod:`chunked_medoids._kernels.clara`); the best
   wins (earliest sample on ties);
3. **exact polish** -- a Voronoi iteration (Park & Jun 2009's alternating step) on the full
   data with a restricted candidate set: for every cluster of the full-data assignment the
   ``polish_candidates`` points nearest to its medoid among the gathered points (the
   samples and ``polish_pool`` further uniform draws) are scored exactly on the whole
   cluster (n·L distances per iteration, exact sums), each cluster takes its best
   candidate, and all points are reassigned.  The full-data loss can only decrease; an
   iteration that does not decrease it stops the polish (its medoids are dropped);
4. **exact refinement on the distinct rows** -- when the (unweighted) data has at most
   ``refine_distinct`` distinct feature rows (8-bit images: tens of thousands of colours in
   millions of pixels), one streaming pass deduplicates the rows exactly (byte-identical
   rows; counts, and each row's lowest index as its representative) and FasterPAM runs on
   the distinct rows weighted by their counts from the polished medoids (at most
   ``refine_passes`` passes).  Σ_o min_m d(x_o, x_m) = Σ_j count_j·min_m d(u_j, x_m), so this
   is exact local search on the full data at m² instead of n² distances per pass; the
   result is rescored exactly on all n points and kept only if its loss is lower.  Skipped
   without a pass when the gathered rows alone have more distinct rows than the bound.

Steps 1 and 2 are CLARA with large samples (the first idea of issue 13, measured against
OneBatchPAM, Mathelin et al. 2025, in ``benchmarks/bench_clara.py``); step 3 is the
alternating step of Park & Jun restricted to nearby candidates, with gains computed exactly
on every point rather than estimated.

Determinism: all draws (samples, init subsets, inner seeds) are made by the driver in a
fixed order; each sample task is single-threaded; every full-data sum is exact.  Results
for a seed are therefore identical for any scheduler (threads, distributed), number of
workers, ``memory_limit``-derived block size or chunking of the feature array.

Step 4 is exact data reduction (identical rows merged into integer weights) followed by
weighted FasterPAM (Schubert & Rousseeuw 2021); it changes nothing when the data has more
distinct rows than the bound.

The default rule (4 samples of 10 000 points, ``init_size`` 3 000, 2 passes, up to 10
polish iterations with 64 candidates per cluster drawn from the samples and 100 000 further
uniform points, then the exact refinement when there are at most 50 000 distinct rows, at
most 2 passes) and the measurements behind it are in the README ("CLARA for large n").
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _budget
from .._errors import InvalidParameterError
from .._kernels.clara import PARTIALS, symmetrize_upper
from .._kernels.clara_large import add_cell_sums, group_by_label
from .._result import ClaraResult, LargeClaraResult
from .._state import LargeClaraState
from .._typing import (
    ClientLike,
    DissimilarityLike,
    FeaturesLike,
    MemoryLimit,
    MetricLike,
    PathLike,
    RandomStateLike,
    WeightsLike,
)
from .._util import check_int, check_k, check_random_state, check_weights, parse_memory_limit
from ..checkpoint import open_checkpoint
from ..engine import Engine, make_engine
from ._common import seed_param, weights_hash
from ._registry import register_method
from .clara import _Run, draw_samples, sample_weights

logger = logging.getLogger(__name__)

#: ``clara()`` uses LargeCLARA by default for feature inputs with at least this many points.
LARGE_N = 100_000
#: default points per sample (capped at n).
DEFAULT_SAMPLE_SIZE = 10_000
#: default points of the in-memory first level (its float64 matrix: 72 MB).
DEFAULT_INIT_SIZE = 3_000
#: default number of independent samples (a constant: never derived from the workers).
DEFAULT_N_SAMPLES = 4
#: default bound on FasterPAM passes over a sample's on-the-fly distances.
DEFAULT_MAX_PASSES = 2
#: default polish iterations and candidates per cluster.
DEFAULT_POLISH_ITER = 10
DEFAULT_POLISH_CANDIDATES = 64
#: default number of uniformly drawn points (besides the samples) the polish takes its
#: candidates from ...
DEFAULT_POLISH_POOL = 100_000
#: ... capped at this many feature values (128 MB of float64 rows; a constant, so that the
#: result never depends on memory_limit).
POOL_VALUES = 1 << 24
#: default bound on the distinct feature rows of the exact refinement (step 4): it runs only
#: when the data has at most this many distinct rows (a FasterPAM pass costs m² distances).
DEFAULT_REFINE_DISTINCT = 50_000
#: default bound on the refinement's FasterPAM passes over the weighted distinct rows.
DEFAULT_REFINE_PASSES = 2


# ---------------------------------------------------------------------------------------
# task functions (module level: picklable; run by Engine.map_tasks)
# ---------------------------------------------------------------------------------------
def _sample_task(task, st):
    """Solve one sample: FasterPAM on the in-memory init subset, then on the whole sample's
    on-the-fly distances.  Returns ``(global medoids, passes, swaps, sample loss)``."""
    from ..sources.features import from_features
    from .fasterpam import fasterpam

    k, metric, ml = st["k"], st["metric"], st["task_memory"]
    Xs, sample, init_pos, seed, ws = task["X"], task["sample"], task["init"], task["seed"], task["weights"]
    X0 = np.ascontiguousarray(Xs[init_pos])
    S0 = np.empty((X0.shape[0], X0.shape[0]), dtype=np.float64)
    metric.pairwise(X0, X0, S0)
    symmetrize_upper(S0)
    w0 = sample_weights(ws, init_pos)
    r0 = fasterpam(S0, k, init="random", random_state=seed, weights=w0, num_workers=1, memory_limit=ml)
    del S0
    medoids = init_pos[r0.medoids]
    passes, swaps, loss = int(r0.n_iter), int(r0.n_swap), float(r0.loss)
    if Xs.shape[0] > X0.shape[0] and st["max_passes"] > 0:
        # row blocks of the on-the-fly sample matrix: a few in flight within the task budget
        rows = _budget.largeclara_sample_rows(Xs.shape[0], ml)
        src = from_features(Xs, metric, dtype="float64", block_rows=rows)
        r = fasterpam(src, k, init=medoids, weights=ws, num_workers=1, memory_limit=ml,
                      max_iter=st["max_passes"])
        medoids = r.medoids
        passes, swaps, loss = int(r.n_iter), swaps + int(r.n_swap), float(r.loss)
    return sample[np.asarray(medoids, dtype=np.int64)], passes, swaps, loss


def _cell_task(rows, st):
    """Rows ``(start, stop)`` of X: the polish's exact cell sums Σ w·d(o, CC[c, l]) over the
    block's points o of every cluster c (``{"cells": (partials, counts)}``)."""
    start, stop = rows
    block = st["features"].read(start, stop)
    metric = st["metric"]
    CC = st["CC"]  # (k, L, d) candidate features per cluster
    k, L = CC.shape[0], CC.shape[1]
    lab = st["assign"][start:stop]
    order = np.empty(lab.shape[0], dtype=np.int64)
    starts = np.empty(k + 1, dtype=np.int64)
    group_by_label(lab, k, order, starts)
    partials = np.zeros((k, L, PARTIALS), dtype=np.float64)
    counts = np.zeros((k, L), dtype=np.int64)
    for c in range(k):
        a, b = starts[c], starts[c + 1]
        if a == b:
            continue
        rows = order[a:b]
        dist = np.empty((b - a, L), dtype=np.float64)
        metric.pairwise(np.ascontiguousarray(block[rows]), CC[c], dist)
        add_cell_sums(dist, rows + start, st["w"], st["weighted"], partials[c], counts[c])
    return {"cells": (partials, counts)}


def _row_keys(rows):
    """One opaque key per row: its float64 bytes (identical keys <=> byte-identical rows, so
    any metric gives them identical distances; -0.0 and 0.0 stay apart)."""
    rows = np.ascontiguousarray(rows, dtype=np.float64)
    return rows.view(np.dtype((np.void, 8 * rows.shape[1]))).ravel()


def _distinct_task(rows, st):
    """Rows ``(start, stop)`` of X: their distinct rows as ``(keys, first index, counts)``
    (keys sorted), or None when the block alone has more than ``cap`` distinct rows."""
    start, stop = rows
    keys, first, counts = np.unique(_row_keys(st["features"].read(start, stop)), return_index=True,
                                    return_counts=True)
    if keys.shape[0] > st["cap"]:
        return None
    return keys, first.astype(np.int64) + start, counts.astype(np.int64)


def _merge_distinct(parts):
    """Merge ``(keys, first, counts)`` parts: sorted unique keys, the lowest index of each
    and the summed counts (independent of how the rows were split into parts)."""
    keys = np.concatenate([p[0] for p in parts])
    first = np.concatenate([p[1] for p in parts])
    counts = np.concatenate([p[2] for p in parts])
    u, inv = np.unique(keys, return_inverse=True)
    inv = inv.ravel()
    f = np.full(u.shape[0], np.iinfo(np.int64).max, dtype=np.int64)
    np.minimum.at(f, inv, first)
    c = np.zeros(u.shape[0], dtype=np.int64)
    np.add.at(c, inv, counts)
    return u, f, c


# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------
def _snapshot(state):
    """The driver's state dict as a :class:`LargeClaraState` (fields not yet set: defaults)."""
    names = {f.name for f in dataclasses.fields(LargeClaraState)}
    return LargeClaraState(**{key: v for key, v in state.items() if key in names})


class _SourceFeatures:
    """The feature side of a :func:`~chunked_medoids.from_features` source, as
    :func:`run_largeclara` takes it."""

    def __init__(self, fsrc):
        self._src = fsrc
        self.features = fsrc.features
        self.n = fsrc.n

    def fingerprint(self):
        return self._src.fingerprint()

    def dissimilarity(self):
        return self._src


class _Passes:
    """Full-data streaming passes over the feature rows (memory-bounded blocks): CLARA's
    feature passes (gather, exact scoring) plus the polish's cell sums."""

    def __init__(self, src, metric, k, w, eng, ml):
        self.clara = _Run("features", src, metric, k, w, eng, ml, "largeclara")
        self.src, self.metric, self.eng = src, metric, eng
        self.n = src.n

    def gather(self, idx):
        rows, _, _ = self.clara.feature_pass(gather=idx, desc="largeclara gather")
        return rows

    def score(self, medoid_sets, C, labels=False, desc="largeclara score"):
        """Exact full-data losses of the (W, k) medoid sets (+ labels of set 0)."""
        _, losses, lab = self.clara.feature_pass(medoid_sets=medoid_sets, C=C, labels=labels, desc=desc)
        return losses, lab

    def distinct(self, cap):
        """The distinct rows of X as ``(keys, first index, counts)`` (sorted keys; see
        :func:`_row_keys`), or None as soon as there are more than ``cap``.  Memory: at most
        ``cap`` keys per block plus ``4·cap`` while merging."""
        st = {"features": self.src.features, "cap": cap}
        res = self.eng.map_tasks(_distinct_task, self.clara.feature_blocks(0), st, desc="largeclara distinct")
        acc, size = [], 0
        for r in res:
            if r is None:
                return None
            acc.append(r)
            size += r[0].shape[0]
            if size > 4 * cap:
                acc = [_merge_distinct(acc)]
                size = acc[0][0].shape[0]
                if size > cap:
                    return None
        merged = _merge_distinct(acc)
        return None if merged[0].shape[0] > cap else merged

    def cell_costs(self, assign, CC):
        """Exact Σ_{o in cluster c} w·d(o, CC[c, l]) for every (c, l): (k, L) float64."""
        k, L = CC.shape[0], CC.shape[1]
        st = {"features": self.src.features, "metric": self.metric, "w": self.clara.kw,
              "weighted": self.clara.weighted, "CC": np.ascontiguousarray(CC, dtype=np.float64), "assign": assign}
        res = self.eng.map_tasks(_cell_task, self.clara.feature_blocks(L), st, desc="largeclara polish")
        cost = np.empty((k, L), dtype=np.float64)
        for c in range(k):
            for col in range(L):
                parts = []
                bad = False
                for r in res:
                    p, cnt = r["cells"]
                    if cnt[c, col] < 0:
                        bad = True
                        break
                    parts.append(p[c, col, :cnt[c, col]])
                cost[c, col] = math.inf if bad else math.fsum(np.concatenate(parts).tolist())
        return cost


def _choose(cost, cand):
    """Per cluster the lowest-cost candidate (column 0, the medoid, wins ties); a point
    chosen by an earlier cluster is skipped."""
    k = cand.shape[0]
    new = np.empty(k, dtype=np.int64)
    taken = set()
    for c in range(k):
        order = np.argsort(cost[c], kind="stable")
        for j in order:
            p = int(cand[c, j])
            if p not in taken:
                break
        else:  # pragma: no cover - column 0 (the medoid) is never taken by another cluster
            p = int(cand[c, 0])
        new[c] = p
        taken.add(p)
    return new


def largeclara(X: FeaturesLike | DissimilarityLike, k: int, *, n_samples: int | None = None,
               sample_size: int | None = None, init_size: int | None = None, max_passes: int | None = None,
               polish_iter: int | None = None, polish_candidates: int | None = None, polish_pool: int | None = None,
               refine_distinct: int | None = None, refine_passes: int | None = None,
               metric: MetricLike = "euclidean", metric_params: Mapping[str, Any] | None = None,
               random_state: RandomStateLike = None, weights: WeightsLike = None, client: ClientLike = None,
               memory_limit: MemoryLimit = "1GiB", progress: bool = False, num_workers: int | None = None,
               checkpoint: PathLike | None = None, precomputed: bool | None = None, engine: Engine | None = None,
               validate: bool = True) -> LargeClaraResult | ClaraResult:
    """LargeCLARA: FasterPAM on large on-the-fly samples, exact scoring, exact polish.

    Parameters
    ----------
    X : array of shape (n, d), path, or dissimilarity
        Feature rows (numpy, memmap, dask, zarr, h5py, or a ``.npy`` / ``.zarr`` / ``.h5``
        path), read in row blocks, or a :func:`~chunked_medoids.from_features` source (its
        features and metric are used).  A dissimilarity matrix (store, ``precomputed=True``)
        has no feature rows to compute sample distances from: largeclara then runs
        ``clara(..., variant="fasterclara")`` with the same options (the LargeCLARA-only
        options are refused).
    k : int
        Number of medoids, 1 <= k <= n.
    n_samples : int, optional
        Independent samples (run as parallel tasks); default 4.
    sample_size : int, optional
        Points per sample, k <= sample_size <= n; default min(n, 10000).
    init_size : int, optional
        Points of the in-memory first level of each sample, k <= init_size <= sample_size;
        default min(sample_size, max(3000, 80 + 4k)).
    max_passes : int, optional
        FasterPAM passes over the whole sample (0: first level only); default 2.
    polish_iter : int, optional
        Exact full-data polish iterations (0: none); default 10 (it stops earlier once an
        iteration no longer lowers the loss).
    polish_candidates : int, optional
        Candidates per cluster in the polish; default 64.
    polish_pool : int, optional
        Uniformly drawn points, besides the samples, among which the polish looks for
        candidates; default 100000, capped at 2**24 / d (their float64 rows: 128 MB).
    refine_distinct : int, optional
        Exact refinement (step 4) bound: when X has at most this many distinct rows (and no
        ``weights``), FasterPAM runs on the distinct rows weighted by their counts -- the
        same loss as on all n points -- from the polished medoids.  0 turns the step off
        (the previous behaviour).  Default 50000.
    refine_passes : int, optional
        FasterPAM passes of the exact refinement (>= 1); default 2.
    metric : str or numba function, default "euclidean"
    metric_params : dict, optional
    random_state : None, int, SeedSequence or Generator
    weights : (n,) array, optional
        Non-negative point weights (loss Σ w·d); samples are drawn uniformly and clustered
        with their points' weights.
    client : distributed.Client, optional
    memory_limit : int or str, default "1GiB"
        Budget of the feature blocks of the full-data passes and of the running samples.
    progress : bool, default False
    num_workers : int, optional
        Threads of the local scheduler.
    checkpoint : path, optional
        State saved at stage boundaries (after the samples, after the scoring and after
        each polish iteration); a rerun resumes from the last one.
    precomputed : bool, optional
        Only ``None`` / ``False`` (features) are accepted.
    engine : Engine, optional
    validate : bool, default True
        For a dissimilarity matrix X (run through fasterclara): check it while it streams
        (see :func:`~chunked_medoids.open_dissimilarity`); feature rows are checked anyway.

    Returns
    -------
    LargeClaraResult
        Full-data ``labels`` and exact ``loss``; ``n_iter`` = samples, ``n_swap`` = swaps of
        the winning sample + medoids changed by the polish + swaps of the kept refinement;
        ``loss_history`` = best sample loss, then the loss after each accepted polish
        iteration and after a kept refinement.  The typed attributes
        (mirrored in ``extra``): ``sample_losses``, ``sample_passes``, ``sample_swaps``,
        ``best_sample``, ``sample_medoids``, ``sample_size``, ``init_size``, ``n_samples``,
        ``max_passes``, ``polish_iter``, ``polish_candidates``, ``polish_losses``,
        ``polish_changed``, ``polish_pool``, ``distinct_rows``, ``refine_passes``,
        ``refine_swaps``, ``variant`` ("largeclara"), ``mode``.  For a
        dissimilarity matrix X, the :class:`~chunked_medoids.ClaraResult` of fasterclara.

    Raises
    ------
    InvalidParameterError
        Bad sizes, or LargeCLARA-only options with a dissimilarity matrix.

    Notes
    -----
    Memory: per running sample s·d features, an s×k medoid table, O(s) caches, the
    ``init_size``² float64 first-level matrix and FasterPAM's row blocks (sized from
    ``memory_limit`` / concurrent samples); the driver holds the sampled rows
    (n_samples·s·d floats) and the n labels.  I/O: one pass to validate X, one to gather
    the samples, one to score, two per polish iteration.  The refinement: one pass
    counting distinct rows (at most ``refine_distinct`` keys per block are kept; skipped when
    the gathered rows already have more), the m distinct rows in the driver, FasterPAM's
    row blocks of m float64 columns, and one pass to rescore.
    """
    from ..sources.features import FeatureSource
    from .clara import _resolve_input, clara

    ml = parse_memory_limit(memory_limit)
    if isinstance(X, FeatureSource) and precomputed is None:
        # a from_features source: its feature rows and metric (distances in float64)
        if metric_params or not (metric is None or metric == "euclidean"):
            raise InvalidParameterError("metric= / metric_params= do not apply to a from_features source "
                                        "(it carries its metric); drop them")
        src, metric_b = _SourceFeatures(X), X.metric
    else:
        mode, src, metric_b = _resolve_input(X, metric, metric_params, precomputed, ml, validate)
        if mode != "features":
            own = {"init_size": init_size, "max_passes": max_passes, "polish_iter": polish_iter,
                   "polish_candidates": polish_candidates, "polish_pool": polish_pool,
                   "refine_distinct": refine_distinct, "refine_passes": refine_passes}
            given = sorted(key for key, v in own.items() if v is not None)
            if given:
                raise InvalidParameterError(
                    f"X is a dissimilarity matrix ({src!r}): largeclara then runs fasterclara (its samples "
                    f"need sample matrices there), which does not take {given}; drop them or pass features")
            return clara(src, k, variant="fasterclara", n_samples=n_samples, sample_size=sample_size,
                         random_state=random_state, weights=weights, client=client, memory_limit=ml,
                         progress=progress, num_workers=num_workers, checkpoint=checkpoint, engine=engine,
                         validate=validate)
    return run_largeclara(src, metric_b, k, ml, n_samples=n_samples, sample_size=sample_size,
                          init_size=init_size, max_passes=max_passes, polish_iter=polish_iter,
                          polish_candidates=polish_candidates, polish_pool=polish_pool,
                          refine_distinct=refine_distinct, refine_passes=refine_passes,
                          random_state=random_state, weights=weights,
                          client=client, progress=progress, num_workers=num_workers, checkpoint=checkpoint,
                          engine=engine)


def run_largeclara(src, metric, k, memory_limit, *, n_samples=None, sample_size=None, init_size=None,
                   max_passes=None, polish_iter=None, polish_candidates=None, polish_pool=None,
                   refine_distinct=None, refine_passes=None, random_state=None, weights=None, client=None, progress=False, num_workers=None, checkpoint=None,
                   engine=None, full_polish=False):
    """LargeCLARA on an already resolved feature input (``clara()``'s large-n default).

    ``src`` / ``metric`` are what :func:`~chunked_medoids.algorithms.clara._resolve_input`
    returns for features; ``full_polish`` runs FasterPAM on the full data afterwards
    (``clara(polish=True)``).  Other parameters as in :func:`largeclara`.
    """
    ml = parse_memory_limit(memory_limit)
    n = src.n
    k = check_k(k, n)
    s = min(n, DEFAULT_SAMPLE_SIZE) if sample_size is None else check_int(sample_size, "sample_size")
    if s < k or s > n:
        raise InvalidParameterError(f"sample_size must satisfy k <= sample_size <= n (k = {k}, n = {n}), "
                                    f"got {s}; e.g. sample_size={min(n, DEFAULT_SAMPLE_SIZE)}")
    s0 = min(s, max(DEFAULT_INIT_SIZE, 80 + 4 * k)) if init_size is None else check_int(init_size, "init_size")
    if s0 < k or s0 > s:
        raise InvalidParameterError(f"init_size must satisfy k <= init_size <= sample_size (k = {k}, "
                                    f"sample_size = {s}), got {s0}")
    n_samples = DEFAULT_N_SAMPLES if n_samples is None else check_int(n_samples, "n_samples", minimum=1)
    max_passes = DEFAULT_MAX_PASSES if max_passes is None else check_int(max_passes, "max_passes", minimum=0)
    polish_iter = DEFAULT_POLISH_ITER if polish_iter is None else check_int(polish_iter, "polish_iter", minimum=0)
    L = DEFAULT_POLISH_CANDIDATES if polish_candidates is None else \
        check_int(polish_candidates, "polish_candidates", minimum=1)
    polish_pool = DEFAULT_POLISH_POOL if polish_pool is None else check_int(polish_pool, "polish_pool", minimum=0)
    refine = DEFAULT_REFINE_DISTINCT if refine_distinct is None else \
        check_int(refine_distinct, "refine_distinct", minimum=0)
    refine_passes = DEFAULT_REFINE_PASSES if refine_passes is None else \
        check_int(refine_passes, "refine_passes", minimum=1)
    w = check_weights(weights, n)
    rng = check_random_state(random_state)
    if engine is not None and (client is not None or num_workers is not None):
        raise InvalidParameterError("engine= was given together with client=/num_workers=; configure the engine itself")
    eng = make_engine(engine, memory_limit=ml, client=client, progress=progress, num_workers=num_workers) \
        if engine is None else engine
    owns = engine is None
    try:
        result = _largeclara(src, metric, k, s, s0, n_samples, max_passes, polish_iter, L, polish_pool,
                             (refine, refine_passes), w, rng, eng, ml, checkpoint, random_state)
        if full_polish:
            result = _full_polish(src, k, w, eng, result)
        return result
    finally:
        if owns:
            eng.close()


def _largeclara(src, metric, k, s, s0, n_samples, max_passes, polish_iter, L, polish_pool, refine, w, rng, eng,
                ml, checkpoint, random_state):
    n = src.n
    t0 = time.perf_counter()
    passes = _Passes(src, metric, k, w, eng, ml)
    d = src.features.d
    pool = 0 if polish_iter == 0 else int(min(polish_pool, POOL_VALUES // d))
    params = {"k": k, "sample_size": s, "init_size": s0, "n_samples": n_samples, "max_passes": max_passes,
              "polish_iter": polish_iter, "polish_candidates": L, "polish_pool": pool,
              "refine_distinct": refine[0], "refine_passes": refine[1], "metric": metric.describe(),
              "seed": seed_param(random_state), "weights": weights_hash(w)}
    ckpt = open_checkpoint(checkpoint, algorithm="largeclara", source=src, params=params)
    saved = ckpt.load()
    if saved is not None:
        saved = saved.to_state()
        draws = np.asarray(saved["draws"], dtype=np.int64)
        seeds = np.asarray(saved["seeds"], dtype=np.int64)
    else:
        # every draw of the run, up front, in a fixed order
        draws, seeds = draw_samples(rng, n, n_samples, s)
        extra_pool = rng.choice(n, size=min(n, pool), replace=False) if pool else np.zeros(0, np.int64)
    if saved is not None:
        extra_pool = np.asarray(saved["extra_pool"], dtype=np.int64)
    samples = np.sort(draws, axis=1)
    pool_idx = np.unique(np.concatenate([samples.ravel(), extra_pool]))
    pool_X = passes.gather(pool_idx)
    state = {"draws": draws, "seeds": seeds, "extra_pool": extra_pool, "stage": 0}
    if saved is not None:
        state.update(saved)
    # -- stage 1: the samples ------------------------------------------------------------
    if int(state["stage"]) < 1:
        tasks = []
        for i in range(n_samples):
            sample = samples[i]
            ws = sample_weights(w, sample)
            init = np.sort(np.searchsorted(sample, draws[i, :s0]))
            tasks.append({"X": pool_X[np.searchsorted(pool_idx, sample)], "sample": sample, "init": init,
                          "seed": int(seeds[i]), "weights": ws})
        conc, task_memory = _budget.largeclara_sample_batch(s, s0, k, src.features.d, n_samples, ml,
                                                            eng.parallelism)
        ts = time.perf_counter()
        res = eng.map_tasks(_sample_task, tasks, {"k": k, "metric": metric, "max_passes": max_passes,
                                                  "task_memory": task_memory},
                            max_concurrency=conc, desc="largeclara samples")
        state["medoid_sets"] = np.stack([r[0] for r in res]).astype(np.int64)
        state["sample_passes"] = np.array([r[1] for r in res], dtype=np.int64)
        state["sample_swaps"] = np.array([r[2] for r in res], dtype=np.int64)
        state["stage"] = 1
        logger.info("largeclara: %d samples of %d in %.2fs (passes %s)", n_samples, s,
                    time.perf_counter() - ts, state["sample_passes"].tolist())
        ckpt.step(lambda: _snapshot(state), force=True)
    medoid_sets = np.asarray(state["medoid_sets"], dtype=np.int64)
    # -- stage 2: exact full-data scoring ------------------------------------------------
    if int(state["stage"]) < 2:
        C = np.concatenate([pool_X[np.searchsorted(pool_idx, m)] for m in medoid_sets])
        losses, _ = passes.score(medoid_sets, C)
        best_sample = 0
        for q in range(1, len(losses)):
            if losses[q] < losses[best_sample]:
                best_sample = q
        state.update(sample_losses=np.array(losses, dtype=np.float64), best_sample=best_sample,
                     medoids=medoid_sets[best_sample].copy(), loss=float(losses[best_sample]),
                     history=np.array([losses[best_sample]], dtype=np.float64),
                     polish_losses=np.zeros(0), polish_done=0, polish_changed=0, stage=2)
        ckpt.step(lambda: _snapshot(state), force=True)
    # -- stage 3: exact polish -----------------------------------------------------------
    medoids = np.asarray(state["medoids"], dtype=np.int64)
    loss = float(state["loss"])
    history = [float(x) for x in state["history"]]
    polish_losses = [float(x) for x in state["polish_losses"]]
    changed_total = int(state["polish_changed"])

    def on_iter(it, medoids, loss, history, polish_losses, changed_total):
        state.update(medoids=medoids.copy(), loss=loss, history=np.array(history),
                     polish_losses=np.array(polish_losses), polish_done=it, polish_changed=changed_total)
        ckpt.step(lambda: _snapshot(state), force=True)

    medoids, loss, labels, changed_total = _polish(passes, metric, medoids, loss, None, pool_idx, pool_X, L,
                                                   int(state["polish_done"]), polish_iter, history,
                                                   polish_losses, changed_total, on_iter)
    if labels is None:
        Xm = pool_X[np.searchsorted(pool_idx, medoids)]
        (loss2,), labels = passes.score(medoids[None, :], Xm, labels=True, desc="largeclara labels")
        loss = float(loss2)
    state.update(polish_done=polish_iter, polish_losses=np.array(polish_losses))
    # -- stage 4: exact refinement on the weighted distinct rows (recomputed on a resume:
    # deterministic, and cheaper to redo than to store) -----------------------------------
    m_distinct, r_passes, r_swaps = 0, 0, 0
    if refine[0] > 0 and w is None:
        ref = _refine_distinct(passes, metric, k, medoids, pool_X, pool_idx, refine, eng, ml)
        if ref is not None:
            m_distinct, new, r_passes, r_swaps, Xn = ref
            if r_swaps:
                (new_loss,), new_labels = passes.score(new[None, :], Xn, labels=True, desc="largeclara labels")
                if new_loss < loss:
                    medoids, loss, labels = new, float(new_loss), new_labels
                    history.append(loss)
                else:
                    r_swaps = 0
    best_sample = int(state["best_sample"])
    sample_swaps = np.asarray(state["sample_swaps"], dtype=np.int64)
    result = LargeClaraResult(
        medoids=medoids.copy(), labels=labels, loss=float(loss), n_iter=int(n_samples),
        n_swap=int(sample_swaps[best_sample]) + changed_total + r_swaps, loss_history=history, algorithm="largeclara",
        sample_losses=[float(x) for x in state["sample_losses"]],
        sample_passes=[int(x) for x in state["sample_passes"]], sample_swaps=[int(x) for x in sample_swaps],
        best_sample=best_sample, sample_medoids=np.asarray(state["medoid_sets"], dtype=np.int64).copy(),
        sample_size=int(s), init_size=int(s0), n_samples=int(n_samples), max_passes=int(max_passes),
        polish_iter=int(polish_iter), polish_candidates=int(L), polish_losses=polish_losses,
        polish_changed=changed_total, polish_pool=int(pool_idx.shape[0]), distinct_rows=int(m_distinct),
        refine_passes=int(r_passes), refine_swaps=int(r_swaps), variant="largeclara", mode="features")
    ckpt.complete(_snapshot(state))
    logger.info("largeclara: k=%d n=%d s=%d samples=%d loss=%.10g in %.2fs", k, n, s, n_samples, loss,
                time.perf_counter() - t0)
    return result


def _polish(passes, metric, medoids, loss, labels, pool_idx, pool_X, L, it, polish_iter, history,
            polish_losses, changed_total, on_iter=None):
    """Polish iterations ``it..polish_iter - 1`` (see the module notes, step 3).

    Appends to ``history`` (accepted losses) and ``polish_losses`` (every iteration's
    loss); ``on_iter(it, medoids, loss, history, polish_losses, changed)`` after each
    accepted iteration.  Returns ``(medoids, loss, labels or None, changed)``.
    """
    while it < polish_iter:
        Xm = pool_X[np.searchsorted(pool_idx, medoids)]
        if labels is None:
            _, labels = passes.score(medoids[None, :], Xm, labels=True, desc="largeclara assign")
        cand = _candidates(medoids, Xm, pool_idx, pool_X, metric, L)
        CC = pool_X[np.searchsorted(pool_idx, cand.ravel())].reshape(cand.shape[0], cand.shape[1], -1)
        cost = passes.cell_costs(labels, CC)
        new = _choose(cost, cand)
        it += 1
        if np.array_equal(new, medoids):
            polish_losses.append(loss)
            break
        Xn = pool_X[np.searchsorted(pool_idx, new)]
        (new_loss,), new_labels = passes.score(new[None, :], Xn, labels=True, desc="largeclara assign")
        polish_losses.append(float(new_loss))
        if not new_loss < loss:
            break
        changed_total += int((new != medoids).sum())
        medoids, loss, labels = new, float(new_loss), new_labels
        history.append(loss)
        if on_iter is not None:
            on_iter(it, medoids, loss, history, polish_losses, changed_total)
    return medoids, loss, labels, changed_total


def _refine_distinct(passes, metric, k, medoids, pool_X, pool_idx, refine, eng, ml):
    """Step 4: FasterPAM on the distinct rows of X weighted by their counts, from ``medoids``.

    Σ_o min_m d(x_o, x_m) = Σ_j count_j · min_m d(u_j, x_m) over the distinct rows u_j, so
    this is exact full-data local search at m² (not n²) distances per pass.  Skipped
    (None) when the gathered rows alone, or X, have more than ``refine[0]`` distinct rows, or
    at most k.  Returns ``(m, medoids, passes, swaps, medoid rows)``; a distinct row's
    medoid index is its lowest index in X.
    """
    from ..sources.features import from_features
    from .fasterpam import fasterpam

    cap, max_passes = refine
    if np.unique(_row_keys(pool_X)).shape[0] > cap:  # a subset already has too many: no pass
        return None
    found = passes.distinct(cap)
    if found is None or found[0].shape[0] <= k:
        return None
    keys, first, counts = found
    m = keys.shape[0]
    U = np.ascontiguousarray(keys).view(np.float64).reshape(m, -1)
    where = {key.tobytes(): j for j, key in enumerate(keys)}
    init, seen = [], set()
    for key in _row_keys(pool_X[np.searchsorted(pool_idx, medoids)]):
        j = where[key.tobytes()]
        if j not in seen:  # two medoids on identical rows: one start row, filled below
            init.append(j)
            seen.add(j)
    fill = (j for j in range(m) if j not in seen)
    while len(init) < k:
        init.append(next(fill))
    r = fasterpam(from_features(U, metric, dtype="float64"), k, init=np.array(init, dtype=np.int64),
                  weights=counts.astype(np.float64), engine=eng, memory_limit=ml, max_iter=max_passes)
    pos = np.asarray(r.medoids, dtype=np.int64)
    return m, first[pos], int(r.n_iter), int(r.n_swap), U[pos]


def _candidates(medoids, Xm, pool_idx, pool_X, metric, L):
    """(k, L' + 1) polish candidates: column 0 the medoid, then the L' = min(L, pool) nearest
    gathered points that are not medoids (ties: lower point index)."""
    keep = ~np.isin(pool_idx, medoids)
    pidx = pool_idx[keep]
    k = medoids.shape[0]
    L = int(min(L, pidx.shape[0]))
    cand = np.empty((k, L + 1), dtype=np.int64)
    cand[:, 0] = medoids
    if L == 0:
        return cand
    pX = np.ascontiguousarray(pool_X[keep])
    Xm = np.ascontiguousarray(Xm)
    per = _budget.largeclara_candidate_rows(pidx.shape[0])  # medoids per distance chunk
    D = None
    for c in range(k):
        if c % per == 0:
            D = np.empty((min(per, k - c), pidx.shape[0]), dtype=np.float64)
            metric.pairwise(Xm[c:c + D.shape[0]], pX, D)
        row = D[c % per]
        if L < row.shape[0]:
            t = np.partition(row, L - 1)[L - 1]  # the L-th smallest distance
            below = np.flatnonzero(row < t)
            at = np.flatnonzero(row == t)[: L - below.shape[0]]
            part = np.concatenate([below, at])
        else:
            part = np.arange(row.shape[0])
        part = part[np.lexsort((part, row[part]))]  # by distance, then point index
        cand[c, 1:] = pidx[part]
    return cand


def _full_polish(src, k, w, eng, result):
    """FasterPAM on the full data (computed on the fly, float64) from the LargeCLARA medoids."""
    from .fasterpam import fasterpam

    pol = fasterpam(src.dissimilarity(), k, init=result.medoids, weights=w, engine=eng)
    return dataclasses.replace(
        result, medoids=pol.medoids, labels=pol.labels, loss=float(pol.loss), n_swap=result.n_swap + int(pol.n_swap),
        loss_history=list(result.loss_history) + [float(pol.loss)], polished=True, polish_n_iter=int(pol.n_iter),
        clara_loss=result.loss, extra={})


register_method("largeclara", largeclara, family="sampling", default_init=None,
                description="LargeCLARA: FasterPAM on large on-the-fly samples, exact full-data "
                            "scoring and polish (clara()'s default for n >= 100000 features)")
