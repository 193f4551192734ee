"""FasterMSC and DynMSC: direct optimisation of the medoid silhouette, and choice of k.

Lenssen & Schubert, "Medoid silhouette clustering with automatic cluster number
selection" (Information Systems, 2024).

Objective.  The *average medoid silhouette* of medoids m is
``S = 1 − L / W`` with ``L = Σ_o w_o · d1(o) / d2(o)`` (``d1 <= d2`` the distances of o
to its nearest and second-nearest medoid; a term is 0 when ``d2 = 0``) and ``W = Σ_o w_o``
(n when unweighted).  FasterMSC maximises S (minimises L); it does **not** minimise the
total deviation TD = Σ w·d1 that the other methods of :data:`~chunked_medoids.METHODS`
minimise.

FasterMSC (eager, like FasterPAM).  Candidates are visited in the fixed order 0..n−1
(medoids skipped); the change of L for swapping candidate j into each of the k slots is
computed at once in O(n + k) from j's row and caches of the three nearest medoids
(see :mod:`chunked_medoids._kernels.msc`); j is swapped into the best slot (lowest on ties)
as soon as ``ΔL < −(tol·L + EPS·W)``.  The run stops after a full cycle of n positions
without a swap, or after ``max_iter`` passes.  The pass over candidates is the pass over
the row blocks (read ahead in a background thread), so one pass = one read of D; a swap
uses the row already in hand.

DynMSC.  Start with ``kmax`` medoids, optimise with FasterMSC and record S; then remove the
medoid whose removal increases L the least (computed exactly from the caches: for a point
whose nearest medoid goes, the new pair is (d2, d3); for one whose second goes, (d1, d3)),
re-optimise, record -- down to ``kmin``.  The k with the highest S is returned (smallest k
on exact ties).  Removing a medoid drops a column of the n×k medoid table: no extra read.
"""

from __future__ import annotations

import logging

import numpy as np

from .._errors import InvalidParameterError
from .._kernels.msc import fastermsc_block, msc_apply, msc_loss, msc_removal, top3_all
from .._result import DynMSCResult, MSCResult
from .._state import DynMSCRecords, DynMSCState, MSCPass, MSCState
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
from .._util import check_int, check_weight_bound
from ..engine import Engine, check_resident
from ._common import check_run, driver_scope, init_or_saved, make_result, medoid_table
from ._eager import eager_passes, log_pass
from ._fused import msc_evaluator
from ._registry import register_method

logger = logging.getLogger(__name__)

#: default bound on passes over D (per k for DynMSC).
DEFAULT_MAX_ITER = 100
#: absolute swap guard per unit of weight: improvements of the average medoid silhouette
#: below 1e-12 are treated as floating-point noise (prevents swapping back and forth on
#: rounding differences between mathematically equal configurations).
EPS = 1e-12


class _MSCState:
    """O(n·k) state: medoid table, three-nearest caches, removal loss R, loss L."""

    def __init__(self, source, medoids, weights=None, M=None):
        self.n = source.n
        self.medoids = np.array(medoids, dtype=np.int64)
        self.M = medoid_table(source, self.medoids) if M is None else np.ascontiguousarray(M)
        check_weight_bound(weights, self.M)  # the loss terms are entries of M
        self.is_medoid = np.zeros(self.n, dtype=np.bool_)
        self.is_medoid[self.medoids] = True
        if weights is None:
            self.w, self.weighted, self.wsum = np.empty(0, dtype=np.float64), False, float(self.n)
        else:
            self.w, self.weighted = np.ascontiguousarray(weights, dtype=np.float64), True
            self.wsum = float(np.sum(self.w))
        n = self.n
        self.d1 = np.empty(n, dtype=np.float64)
        self.d2 = np.empty(n, dtype=np.float64)
        self.d3 = np.empty(n, dtype=np.float64)
        self.n1 = np.empty(n, dtype=np.int32)
        self.n2 = np.empty(n, dtype=np.int32)
        self.n3 = np.empty(n, dtype=np.int32)
        self.refresh()

    @property
    def k(self) -> int:
        return int(self.medoids.shape[0])

    def refresh(self):
        """Recompute caches, R and L from M (O(n·k))."""
        top3_all(self.M, self.d1, self.d2, self.d3, self.n1, self.n2, self.n3)
        self.R = np.zeros(self.k, dtype=np.float64)
        msc_removal(self.d1, self.d2, self.d3, self.n1, self.n2, self.w, self.weighted, self.R)
        self.L = float(msc_loss(self.d1, self.d2, self.w, self.weighted))

    def score(self) -> float:
        return 1.0 - self.L / self.wsum

    def td(self) -> float:
        d = self.d1
        return float(np.dot(self.w, d)) if self.weighted else float(np.sum(d))

    def remove(self, slot: int):
        """Drop medoid slot ``slot`` (later slots shift down by one)."""
        self.is_medoid[self.medoids[slot]] = False
        self.medoids = np.delete(self.medoids, slot)
        self.M = np.ascontiguousarray(np.delete(self.M, slot, axis=1))
        self.refresh()


def _check_k_msc(k, n, name="k"):
    k = check_int(k, name, minimum=2)
    if k > n:
        raise InvalidParameterError(f"{name} (number of medoids) must be <= n = {n}, got {k}")
    return k


def _msc_replica(st):
    """What a worker's replica of the FasterMSC state is made of (the client's current one)."""
    return {"M": st.M, "medoids": st.medoids, "is_medoid": st.is_medoid, "d1": st.d1, "d2": st.d2,
            "d3": st.d3, "n1": st.n1, "n2": st.n2, "n3": st.n3, "R": st.R, "L": float(st.L)}


def _fastermsc_single(source, eng, st, run, *, max_iter, tol, desc, ckpt, snapshot, walker=None):
    """Run FasterMSC passes on ``st`` in place, continuing the progress ``run`` (MSCPass).

    With a ``walker`` (:meth:`~chunked_medoids.Engine.eager_walker`) the candidates are
    evaluated on the cluster's workers in batches (bitwise the same walk); returns the
    round trips of each pass then (else an empty list).

    ``run.td_hist`` / ``run.score_hist`` get the values after each pass.  The walk (the
    shared :func:`~chunked_medoids.algorithms._eager.eager_passes`) can stop and resume at
    any block boundary: the state after a position is a function of the medoids alone
    (the caches are rebuilt from M, equal up to the slot order of exactly tied distances,
    which no computation depends on).
    """
    loss_box = np.array([st.L], dtype=np.float64)
    P = np.empty(st.k, dtype=np.float64)
    eps_abs = EPS * st.wsum
    pass_rt = []
    interval = getattr(ckpt, "interval", None) if ckpt.enabled else None

    def apply(slot, j, row):  # a swap found by the workers, applied to this replica
        loss_box[0] = msc_apply(row, slot, j, st.M, st.medoids, st.is_medoid, st.d1, st.d2, st.d3, st.n1,
                                st.n2, st.n3, st.R, st.w, st.weighted)
        st.L = float(loss_box[0])

    def evaluate(block, start, visit, cand, counters):
        if walker is not None:
            consumed = walker.run(start, start + cand.shape[0], counters, apply, pause=ckpt.stop.is_set,
                                  interval=interval)
            st.L = float(loss_box[0])
            return consumed
        consumed = fastermsc_block(block, start, st.M, st.medoids, st.is_medoid, st.d1, st.d2, st.d3,
                                   st.n1, st.n2, st.n3, st.R, st.w, st.weighted, tol, eps_abs, P,
                                   counters, loss_box)
        st.L = float(loss_box[0])
        return consumed

    def on_pass_end(walk, seconds, nbytes, swaps):
        run.td_hist.append(st.td())
        run.score_hist.append(st.score())
        log_pass(desc, "medoid silhouette", st.score(), walk, seconds, nbytes, swaps)
        if walker is not None:
            pass_rt.append(walker.log_pass(walk.n_iter, seconds, swaps))

    # features: rows in the kernel (local threads); with a walker the workers evaluate
    fused = None if walker is not None else msc_evaluator(source, eng, st, tol, eps_abs, P, loss_box)
    eager_passes(source, eng, run.walk, evaluate if fused is None else fused, max_iter=max_iter, ckpt=ckpt,
                 snapshot=snapshot, on_pass_end=on_pass_end, desc=desc, rows=fused is None and walker is None,
                 unit_rows=None if walker is None else source.n)
    # exact values from fresh caches (the incremental ones agree up to rounding)
    st.refresh()
    return pass_rt


def fastermsc(D: DissimilarityLike, k: int, *, init: InitLike = "random", max_iter: int = DEFAULT_MAX_ITER,
              random_state: RandomStateLike = None, weights: WeightsLike = None, tol: float = 0.0,
              memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
              num_workers: int | None = None, block_rows: int | None = None,
              checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0,
              engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> MSCResult:
    """FasterMSC: k-medoids maximising the average medoid silhouette, streaming D.

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).
    k : int
        Number of medoids, ``2 <= k <= n`` (the medoid silhouette needs a second medoid).
    init : {"random", "build", "lab"} or array of k distinct ints, default "random"
        Initial medoids (BUILD and LAB minimise the total deviation, a good start).
    max_iter : int, default 100
        Maximum number of passes over D.
    random_state : None, int, SeedSequence or Generator
        Used by the random and LAB inits.
    weights : (n,) array, optional
        Non-negative point weights: the weighted average ``1 − Σ w·d1/d2 / Σ w`` is
        maximised.
    tol : float, default 0.0
        Swap iff ``ΔL < −(tol·L + 1e-12·W)`` (L = Σ w·d1/d2, W = Σ w); 0 = any strict
        improvement beyond floating-point noise.
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options.  The pass is sequential by definition (eager swaps); locally blocks
        are read ahead in a background thread.  With a distributed ``client`` the walk runs
        on the workers (each holds its share of the candidate rows and a replica of the
        caches; bitwise the same result, see :func:`~chunked_medoids.fasterpam`).
    checkpoint : path, optional
        Saved at block boundaries (every ``checkpoint_interval`` seconds) and at pass ends;
        rerunning with the same path and parameters resumes to the identical result.
    checkpoint_interval : float, default 60.0
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        With a cluster: workers hold their candidate rows for the run, or re-read them
        each pass; on local threads the engine's resident stripes (as
        :func:`~chunked_medoids.fasterpam`).  Never changes the result.

    Returns
    -------
    MSCResult
        ``algorithm="fastermsc"``.  ``loss`` is the total deviation Σ w·d1 of the final
        medoids (recomputed; as for every method), ``loss_history`` the total deviation
        after the init and after each pass (it need not decrease: TD is not the objective).
        ``extra``: ``score`` (average medoid silhouette, the objective), ``score_history``
        (after the init and each pass, non-decreasing), ``converged``; ``distributed``
        with a cluster (as :attr:`~chunked_medoids.SwapResult.distributed`).

    Notes
    -----
    Memory: n×k medoid table (source dtype) + six O(n) caches (three float64 distances,
    three int32 slots) + up to 3 row blocks.  I/O: one read of D per pass plus the k
    initial medoid rows.
    """
    resident = check_resident(resident)
    with driver_scope(D, None, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as scope:
        source, eng = scope.source, scope.engine
        k = _check_k_msc(k, source.n)
        max_iter, tol, w, rng, params = check_run(source, k, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state)
        ckpt = scope.open_checkpoint(checkpoint, algorithm="fastermsc", params=params,
                                     interval=checkpoint_interval)
        state, medoids = init_or_saved(ckpt.load(), init, source, k, rng, eng, w, ckpt, MSCState)
        st = _MSCState(source, medoids if state is None else state.medoids, w)
        if state is None:
            state = MSCState(medoids=st.medoids.copy(), run=MSCPass(), td0=st.td(), s0=st.score())

        def snapshot():
            state.medoids = st.medoids.copy()
            return state

        walk = state.run.walk
        walker = None
        if not walk.done and (walk.pos > 0 or walk.n_iter < max_iter):
            walker = eng.eager_walker(source, method="fastermsc", order=None, state=lambda: _msc_replica(st),
                                      params={"tol": tol, "eps_abs": EPS * st.wsum, "w": st.w,
                                              "weighted": st.weighted, "fused": False},
                                      resident=resident, n_swap=walk.n_swap)
        try:
            pass_rt = _fastermsc_single(source, eng, st, state.run, max_iter=max_iter, tol=tol,
                                        desc="fastermsc", ckpt=ckpt, snapshot=snapshot, walker=walker)
        finally:
            if walker is not None:
                walker.close()
        run = state.run
        result = make_result(st.M, st.medoids, w, n_iter=run.walk.n_iter, n_swap=run.walk.n_swap,
                             loss_history=[state.td0] + list(run.td_hist), algorithm="fastermsc",
                             cls=MSCResult, score=st.score(), score_history=[state.s0] + list(run.score_hist),
                             converged=bool(run.walk.done),
                             distributed=None if walker is None else dict(walker.summary(),
                                                                          pass_round_trips=pass_rt))
        ckpt.complete(snapshot())
        return result


def dynmsc(D: DissimilarityLike, kmax: int, *, kmin: int = 2, init: InitLike = "build",
           max_iter: int = DEFAULT_MAX_ITER, random_state: RandomStateLike = None,
           weights: WeightsLike = None, tol: float = 0.0, memory_limit: MemoryLimit = "1GiB",
           client: ClientLike = None, progress: bool = False, num_workers: int | None = None,
           block_rows: int | None = None, checkpoint: PathLike | None = None,
           checkpoint_interval: float = 60.0, engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> DynMSCResult:
    """DynMSC: choose k by the average medoid silhouette, from ``kmax`` down to ``kmin``.

    Starts from ``kmax`` medoids (``init``), optimises them with FasterMSC and records the
    average medoid silhouette; then repeatedly removes the medoid whose removal lowers the
    medoid silhouette least (exact, from the caches), re-optimises with FasterMSC and
    records, until ``kmin`` medoids remain.  Returns the best k (highest score; the
    smallest k on exact ties).

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
    kmax : int
        Largest number of medoids tried, ``kmin <= kmax <= n``.
    kmin : int, default 2
        Smallest number of medoids tried (>= 2).
    init : {"build", "random", "lab"} or array of kmax distinct ints, default "build"
        Initial kmax medoids.
    max_iter : int, default 100
        Maximum FasterMSC passes per k.
    random_state, weights, tol
        As in :func:`fastermsc`.
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (see :func:`fastermsc`).
    checkpoint : path, optional
        Saved at block boundaries (every ``checkpoint_interval`` seconds), at pass ends and
        after each k; rerunning with the same path and parameters resumes to the identical
        result.
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
    DynMSCResult
        ``algorithm="dynmsc"``; ``medoids``/``labels``/``loss`` (total deviation) of the best
        k, so ``result.k`` is the chosen number of clusters; ``loss_history`` the total
        deviation after the start and each pass of the best k's optimisation.
        ``n_iter``/``n_swap`` are totals over all k.  ``extra``: ``score`` (best average
        medoid silhouette), ``scores`` (dict k -> score, k increasing), ``medoids_by_k``
        (dict k -> medoids), ``losses`` (dict k -> total deviation), ``kmin``, ``kmax``.

    Notes
    -----
    Memory: as :func:`fastermsc` with k = kmax.  I/O: the kmax initial medoid rows, then
    one read of D per FasterMSC pass (at least one pass per k), and the best k's medoid
    rows again at the end.
    """
    with driver_scope(D, None, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as scope:
        source, eng = scope.source, scope.engine
        n = source.n
        kmin = check_int(kmin, "kmin", minimum=2)
        kmax = _check_k_msc(kmax, n, "kmax")
        if kmin > kmax:
            raise InvalidParameterError(f"kmin must be <= kmax, got kmin={kmin} and kmax={kmax}")
        max_iter, tol, w, rng, params = check_run(source, None, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state,
                                                  init_k=kmax, kmin=kmin, kmax=kmax)
        ckpt = scope.open_checkpoint(checkpoint, algorithm="dynmsc", params=params,
                                     interval=checkpoint_interval)
        state, medoids = init_or_saved(ckpt.load(), init, source, kmax, rng, eng, w, ckpt, DynMSCState)
        st = _MSCState(source, medoids if state is None else state.medoids, w)
        if state is None:
            state = DynMSCState(medoids=st.medoids.copy(), run=MSCPass(), rec=DynMSCRecords())
        rec = state.rec
        if rec.td0 is None:
            rec.td0 = st.td()

        def snapshot():
            state.medoids = st.medoids.copy()
            return state

        walker = None
        if not rec.finished:  # with a cluster the k-steps' walks run on its workers
            walker = eng.eager_walker(source, method="fastermsc", order=None, state=lambda: _msc_replica(st),
                                      params={"tol": tol, "eps_abs": EPS * st.wsum, "w": st.w,
                                              "weighted": st.weighted, "fused": False},
                                      resident=resident, n_swap=rec.total_swap + state.run.walk.n_swap)
        try:
            pass_rt = _dynmsc_single(source, eng, st, state, kmin=kmin, max_iter=max_iter, tol=tol, ckpt=ckpt,
                                     snapshot=snapshot, walker=walker)
        finally:
            if walker is not None:
                walker.close()
        best = rec.best
        medoids_by_k = {int(kk): np.asarray(m, dtype=np.int64) for kk, m in sorted(rec.medoids)}
        med = medoids_by_k[int(best["k"])]
        M = st.M if int(best["k"]) == st.k else medoid_table(source, med)
        result = make_result(M, med, w, n_iter=rec.total_iter, n_swap=rec.total_swap,
                             loss_history=best["history"], algorithm="dynmsc", cls=DynMSCResult,
                             score=float(best["score"]),
                             scores={int(kk): float(v) for kk, v in sorted(rec.scores)},
                             medoids_by_k=medoids_by_k,
                             losses={int(kk): float(v) for kk, v in sorted(rec.losses)},
                             kmin=kmin, kmax=kmax,
                             distributed=None if walker is None else dict(walker.summary(),
                                                                          pass_round_trips=pass_rt))
        ckpt.complete(snapshot())
        return result


def _dynmsc_single(source, eng, st, state, *, kmin, max_iter, tol, ckpt, snapshot, walker=None):
    """DynMSC's k-steps from the current k down to ``kmin``, continuing ``state``.

    Each step optimises the current medoids with FasterMSC, records k's score, then drops
    the medoid whose removal costs least; the state is saved after every step (and at the
    block boundaries of the passes).  With a ``walker`` (a cluster) every step's walk runs
    on the workers, which keep their rows from step to step and get the new (k − 1)-medoid
    state before each step (:meth:`~chunked_medoids._dist_eager.DistributedEagerWalk.reset`).
    Returns the round trips of each pass with a walker (else an empty list).
    """
    rec = state.rec
    pass_rt = []
    fresh = True  # the walker was made from the current state
    while not rec.finished:
        k = st.k
        run = state.run
        if walker is not None and not fresh:
            walker.reset()  # the caches were refreshed and a medoid removed since
        fresh = False
        pass_rt += _fastermsc_single(source, eng, st, run, max_iter=max_iter, tol=tol, desc=f"dynmsc k={k}",
                                     ckpt=ckpt, snapshot=snapshot, walker=walker)
        sc = st.score()
        rec.total_iter += run.walk.n_iter
        rec.total_swap += run.walk.n_swap
        rec.scores.append([k, sc])
        rec.medoids.append([k, st.medoids.tolist()])
        rec.losses.append([k, st.td()])
        logger.info("dynmsc k=%d: average medoid silhouette %.10g (%d swaps)", k, sc, run.walk.n_swap)
        if rec.best is None or sc >= rec.best["score"]:  # >=: smaller k wins exact ties
            rec.best = {"score": sc, "k": k, "history": [rec.td0] + list(run.td_hist)}
        if k == kmin:
            rec.finished = True
            break
        st.remove(int(np.argmin(st.R)))  # first minimum: lowest slot on ties
        state.run = MSCPass()
        rec.td0 = st.td()
        ckpt.step(snapshot, force=True)
    return pass_rt


register_method("fastermsc", fastermsc, family="swap",
                description="FasterMSC: eager swaps maximising the average medoid silhouette "
                            "(objective: medoid silhouette, not total deviation; k >= 2)")
