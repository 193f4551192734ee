"""PAM, FastPAM1 and FastPAM2: best-swap-per-iteration methods (``docs/architecture.rst`` §4).

Every iteration is one block-parallel pass over D (one Dask graph): each row stripe
evaluates its rows as swap candidates against the broadcast caches and returns a small
result; the driver reduces the results in block order (earliest candidate wins ties), so
results are independent of the block size, the number of threads and the scheduler.  The
swap itself needs the chosen candidate's row (read once) and updates the caches with it.
"""

from __future__ import annotations

import logging
import numbers
import time

import numpy as np

from .._errors import InvalidParameterError, InvalidTypeError
from .._kernels.fused_passes import fastpam1_records_fused, fastpam2_block_fused, pam_records_fused
from .._kernels.swap import (
    accept_swap,
    apply_swap,
    eval_candidate,
    fastpam1_records,
    fastpam2_block,
    pam_records,
    select_best,
    tie_margin,
)
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
from ._common import SwapCaches, check_run, driver_scope, init_or_saved, make_result
from ._fused import fused_ok, fused_pass, thresholds
from ._registry import register_method

logger = logging.getLogger(__name__)

#: default iteration bound of PAM / FastPAM1 / FastPAM2 (one iteration = one pass over D).
DEFAULT_MAX_ITER = 100


# -- block functions ------------------------------------------------------------------------
def _pam_block(block, start, stop, st):
    return pam_records(block, start, st["is_medoid"], st["dn"], st["ds"], st["nn"], st["k"],
                     st["w"], st["weighted"])


def _fastpam1_block(block, start, stop, st):
    return fastpam1_records(block, start, st["is_medoid"], st["dn"], st["ds"], st["nn"], st["R"],
                          st["w"], st["weighted"])


def _fastpam2_block(block, start, stop, st):
    k = st["k"]
    bd = np.empty(k, dtype=np.float64)
    bc = np.empty(k, dtype=np.int64)
    fastpam2_block(block, start, st["is_medoid"], st["dn"], st["ds"], st["nn"], st["R"],
                   st["w"], st["weighted"], bd, bc)
    return bd, bc


# fused twins (features source: rows computed in the kernel, algorithms/_fused.py)
def _pam_fused(F, S, start, stop, st):
    return pam_records_fused(F, S, start, stop, st["is_medoid"], st["dn"], st["ds"], st["nn"], st["k"],
                             st["w"], st["weighted"])


def _fastpam1_fused(F, S, start, stop, st):
    return fastpam1_records_fused(F, S, st["H"], start, stop, st["is_medoid"], st["dn"], st["ds"], st["nn"],
                                  st["R"], st["w"], st["weighted"])


def _fastpam2_fused(F, S, start, stop, st):
    k = st["k"]
    bd = np.empty(k, dtype=np.float64)
    bc = np.empty(k, dtype=np.int64)
    fastpam2_block_fused(F, S, st["H"], start, stop, st["is_medoid"], st["dn"], st["ds"], st["nn"], st["R"],
                         st["w"], st["weighted"], bd, bc)
    return bd, bc


def check_tau(tau) -> float:
    if isinstance(tau, bool) or not isinstance(tau, numbers.Real):
        raise InvalidTypeError(f"tau must be a number in (0, 1], got {type(tau).__name__} {tau!r}")
    tau = float(tau)
    if not (0.0 < tau <= 1.0):
        raise InvalidParameterError(f"tau must lie in (0, 1] (1 = run every still-improving swap), got {tau!r}")
    return tau


# -- the shared driver ------------------------------------------------------------------------
_BLOCK_FUNCS = {"pam": _pam_block, "fastpam1": _fastpam1_block, "fastpam2": _fastpam2_block}
_FUSED_FUNCS = {"pam": _pam_fused, "fastpam1": _fastpam1_fused, "fastpam2": _fastpam2_fused}


def _run(variant, D, k, *, init, max_iter, random_state, weights, tol, tau, memory_limit, client,
         progress, num_workers, block_rows, checkpoint, checkpoint_interval, engine, validate=True, resident="auto"):
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        source, eng = run.source, run.engine
        k = int(k)
        extra = {"tau": tau} if variant == "fastpam2" else {}
        max_iter, tol, w, rng, params = check_run(source, k, init=init, max_iter=max_iter, tol=tol,
                                                  weights=weights, random_state=random_state, **extra)
        ckpt = run.open_checkpoint(checkpoint, algorithm=variant, params=params,
                                   interval=checkpoint_interval)
        state, medoids = init_or_saved(ckpt.load(), init, source, k, rng, eng, w, ckpt, SwapState)
        if state is None:
            state = SwapState(medoids=medoids)
        st = SwapCaches(source, state.medoids, w, caches=state.caches)
        if not state.loss_history:
            state.loss_history.append(st.td)
        _pam_single(variant, source, eng, st, state, max_iter=max_iter, tol=tol, tau=tau, ckpt=ckpt)
        result = make_result(st.M, st.medoids, w, n_iter=state.n_iter, n_swap=state.n_swap,
                             loss_history=state.loss_history, algorithm=variant, converged=bool(state.done))
        state.done = True
        ckpt.complete(_snapshot(state, st))
        return result


def _snapshot(state, st):
    state.medoids = st.medoids.copy()
    state.caches = st.caches()
    return state


def _pam_single(variant, source, eng, st, state, *, max_iter, tol, tau, ckpt):
    """Best-swap iterations of ``variant`` on ``st`` until no swap improves or ``max_iter``.

    One iteration = one block-parallel pass (reduced in block order) + the swap(s); the
    state is saved after every iteration.
    """
    block_fn = _BLOCK_FUNCS[variant]
    fused = fused_ok(source, eng)  # features in memory: rows computed inside the kernels
    while not state.done and state.n_iter < max_iter:
        t0 = time.perf_counter()
        read0 = eng.bytes_read
        state.n_iter += 1
        threshold = -tol * st.td
        if fused:
            bstate = st.block_state()
            if variant != "pam":
                bstate["H"] = thresholds(source, st.ds)
            results = fused_pass(eng, source, _FUSED_FUNCS[variant], bstate, desc=f"{variant} {state.n_iter}")
        else:
            results = eng.map_blocks(source, block_fn, st.block_state(), desc=f"{variant} {state.n_iter}")
        swaps = 0
        if variant in ("pam", "fastpam1"):
            # blocks' running-minimum records, in block order; the earliest pair within the
            # rounding margin of the best wins (exact ties agree between PAM and FastPAM1)
            tie = tie_margin(source.dtype, source.n, st.weighted, st.td)
            bd, bj, bs = select_best(results, tie)
            if bj >= 0 and bd < threshold:
                row = source.take_rows([bj])[0]
                if accept_swap(row, bs, st.dn, st.ds, st.nn, st.w, st.weighted, st.td, tol, bd):
                    st.td = float(apply_swap(row, bs, bj, st.M, st.medoids, st.is_medoid, st.dn, st.ds,
                                             st.nn, st.sn, st.R, st.w, st.weighted))
                    swaps = 1
        else:
            swaps = _fastpam2_execute(results, st, source, threshold, tol, tau)
        state.n_swap += swaps
        state.loss_history.append(st.td)
        if swaps == 0:
            state.done = True
        logger.info("%s iteration %d: loss=%.10g swaps=%d %.2fs read %s", variant, state.n_iter,
                    st.td, swaps, time.perf_counter() - t0, format_bytes(eng.bytes_read - read0))
        ckpt.step(lambda: _snapshot(state, st), force=True)  # noqa: B023 - called here


def _fastpam2_execute(results, state, source, threshold, tol, tau):
    """Execute FastPAM2's swaps for one iteration; returns how many ran.

    Per slot s the pass recorded the best candidate c_s and its ΔTD_s (block-order
    reduction, earliest candidate on ties).  Slots with ΔTD_s below the threshold are
    processed by increasing recorded ΔTD (lowest slot on ties).  The first one is the best
    swap of the iteration and runs if accepted (:func:`~chunked_medoids._kernels.swap.accept_swap`:
    strictly improving beyond ``tol·TD``, confirmed exactly when within rounding noise).
    Each later one is skipped if c_s became a medoid, else its ΔTD is recomputed exactly
    under the updated caches (fresh ΔTD of swapping slot s for c_s) and it runs iff
    ``fresh <= (1 − τ)·ΔTD_s`` and the swap is accepted.  With τ = 1 (default) every
    still-improving swap runs; with
    τ → 0 only swaps whose gain did not shrink (independent swaps) run.  The k candidate
    rows are read once (k rows: within the O(n·k) memory budget).
    """
    k = state.k
    best_d = np.full(k, np.inf)
    best_c = np.full(k, -1, dtype=np.int64)
    for bd, bc in results:
        better = (bc >= 0) & (bd < best_d)
        best_d[better] = bd[better]
        best_c[better] = bc[better]
    slots = [s for s in np.argsort(best_d, kind="stable") if best_c[s] >= 0 and best_d[s] < threshold]
    if not slots:
        return 0
    cands = np.unique(best_c[slots])
    rows = source.take_rows(cands)
    row_of = {int(c): i for i, c in enumerate(cands)}
    P = np.empty(k, dtype=np.float64)
    buf = np.empty(state.n, dtype=np.int32)
    swaps = 0
    for idx, s in enumerate(slots):
        j = int(best_c[s])
        if state.is_medoid[j]:
            continue
        row = rows[row_of[j]]
        if idx > 0:
            acc = eval_candidate(row, state.dn, state.ds, state.nn, state.R, state.w, state.weighted, P, buf)
            fresh = P[s] + acc
            if not fresh <= (1.0 - tau) * best_d[s]:
                continue
        else:
            fresh = best_d[s]
        if not accept_swap(row, int(s), state.dn, state.ds, state.nn, state.w, state.weighted,
                           state.td, tol, fresh):
            continue
        state.td = float(apply_swap(row, int(s), j, state.M, state.medoids, state.is_medoid,
                                    state.dn, state.ds, state.nn, state.sn, state.R,
                                    state.w, state.weighted))
        swaps += 1
    return swaps


_PARAMS_DOC = """
    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts: numpy/memmap, zarr, HDF5, dask array, features source...).
    k : int
        Number of medoids, 1 <= k <= n.
    init : {"random", "build", "lab"} or array of k distinct ints, default %(init)r
    max_iter : int, default 100
        Maximum number of iterations (one iteration = one pass over D + at most %(per)s).
    random_state : None, int, SeedSequence or Generator
        Used by the random and LAB inits.
    weights : (n,) array, optional
        Non-negative point weights; the loss is Σ_o w_o·d(o, medoid(o)).
    tol : float, default 0.0
        A swap runs iff ΔTD < -tol·TD (0 = any strict improvement).%(extra)s
    memory_limit : int or str, default "1GiB"
        Budget for the row blocks in flight (the n×k medoid table and O(n) caches come on top).
    client : distributed.Client, optional
        Run the block tasks on this cluster.
    progress : bool, default False
    num_workers : int, optional
        Threads of the local scheduler (default: number of cores).
    block_rows : int, optional
        Force the row-block height (results do not depend on it).
    checkpoint : path, optional
        Save the state after every iteration; rerunning with the same path and parameters
        resumes (and returns the identical result).
    checkpoint_interval : float, default 60.0
    engine : Engine, optional
        Reuse an existing engine instead of the options above.
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

    Notes
    -----
    Memory: the n×k medoid table in the source dtype + O(n) caches + the row blocks in flight.
    I/O per iteration: one full read of D plus the rows of the swapped-in candidates.
"""


def pam(D: DissimilarityLike, k: int, *, init: InitLike = "build", max_iter: int = DEFAULT_MAX_ITER,
        random_state: RandomStateLike = None, weights: WeightsLike = None, tol: float = 0.0,
        memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
        num_workers: int | None = None, block_rows: int | None = None, checkpoint: PathLike | None = None,
        checkpoint_interval: float = 60.0, engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> SwapResult:
    return _run("pam", D, k, init=init, max_iter=max_iter, random_state=random_state, weights=weights,
                tol=tol, tau=None, memory_limit=memory_limit, client=client, progress=progress,
                num_workers=num_workers, block_rows=block_rows, checkpoint=checkpoint,
                checkpoint_interval=checkpoint_interval, engine=engine,
                validate=validate, resident=resident)


pam.__doc__ = """Original PAM SWAP (Kaufman & Rousseeuw): per iteration the single best
    (slot, candidate) swap, every pair evaluated separately in O(n), so O(k·n²) per
    iteration.  Provided for reference; FastPAM1 finds the same swaps O(k) times faster.
""" + _PARAMS_DOC % {"init": "build", "per": "one row", "extra": ""}


def fastpam1(D: DissimilarityLike, k: int, *, init: InitLike = "random", max_iter: int = DEFAULT_MAX_ITER,
             random_state: RandomStateLike = None, weights: WeightsLike = None, tol: float = 0.0,
             memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
             num_workers: int | None = None, block_rows: int | None = None,
             checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0,
             engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> SwapResult:
    return _run("fastpam1", D, k, init=init, max_iter=max_iter, random_state=random_state,
                weights=weights, tol=tol, tau=None, memory_limit=memory_limit, client=client,
                progress=progress, num_workers=num_workers, block_rows=block_rows,
                checkpoint=checkpoint, checkpoint_interval=checkpoint_interval, engine=engine,
                validate=validate, resident=resident)


fastpam1.__doc__ = """FastPAM1: the same swap as PAM each iteration (identical results in exact
    arithmetic), each candidate evaluated against all k slots at once in O(n + k), so
    O(n²) per iteration.
""" + _PARAMS_DOC % {"init": "random", "per": "one row", "extra": ""}


def fastpam2(D: DissimilarityLike, k: int, *, init: InitLike = "random", max_iter: int = DEFAULT_MAX_ITER,
             random_state: RandomStateLike = None, weights: WeightsLike = None, tol: float = 0.0,
             tau: float = 1.0, memory_limit: MemoryLimit = "1GiB", client: ClientLike = None,
             progress: bool = False, num_workers: int | None = None, block_rows: int | None = None,
             checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0,
             engine: Engine | None = None, validate: bool = True, resident: ResidentLike = "auto") -> SwapResult:
    tau = check_tau(tau)
    return _run("fastpam2", D, k, init=init, max_iter=max_iter, random_state=random_state,
                weights=weights, tol=tol, tau=tau, memory_limit=memory_limit, client=client,
                progress=progress, num_workers=num_workers, block_rows=block_rows,
                checkpoint=checkpoint, checkpoint_interval=checkpoint_interval, engine=engine,
                validate=validate, resident=resident)


fastpam2.__doc__ = """FastPAM2: one pass records the best candidate per slot, then several swaps
    run per iteration (see :func:`_fastpam2_execute` for the exact acceptance rule).
""" + _PARAMS_DOC % {
    "init": "random", "per": "k rows",
    "extra": "\n    tau : float in (0, 1], default 1.0\n        After the best swap, a recorded swap "
             "(slot s, candidate c, gain ΔTD_s) runs iff its\n        fresh ΔTD < -tol·TD and "
             "fresh ΔTD <= (1 - tau)·ΔTD_s; tau = 1 runs every still-improving\n        swap.",
}

#: FastPAM (Schubert & Rousseeuw) usually means FastPAM2.
fastpam = fastpam2

register_method("pam", pam, family="swap", default_init="build",
                description="original PAM SWAP, O(k·n²) per iteration (reference)")
register_method("fastpam1", fastpam1, family="swap",
                description="FastPAM1: PAM's swaps in O(n²) per iteration")
register_method("fastpam2", fastpam2, family="swap", aliases=("fastpam",),
                description="FastPAM2: several swaps per iteration (tau controls how many)")
