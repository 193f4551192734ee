"""CLARANS and FastCLARANS: randomised local search over swap neighbours (``docs/architecture.rst`` §4).

A *local search* starts from k medoids and examines random neighbours (a swap of one
medoid slot for a non-medoid candidate).  An improving neighbour (ΔTD < 0) is taken at
once and the failure counter resets; the search ends after ``maxneighbor`` consecutive
non-improving neighbours.  ``numlocal`` independent local searches run (in parallel, as
Dask tasks) and the one with the lowest loss wins (ties: the earliest).

* CLARANS (Ng & Han): a neighbour is a random (slot, candidate) pair, its ΔTD computed from
  the candidate's row of D in O(n).  ``maxneighbor`` is a fraction of k·(n − k).
* FastCLARANS (Schubert & Rousseeuw): a neighbour is a random candidate scored against
  all k slots at once with the FastPAM1 kernel (best slot = argmin of P[s] + acc, lowest
  slot on ties), also O(n).  ``maxneighbor`` is a fraction of n − k.

State per local search: the n×k medoid table and O(n) caches.  Candidate rows are read with
``take_rows`` in memory-bounded batches.  The random neighbours are drawn in fixed chunks of
:data:`DRAW_CHUNK` from a per-search Generator seeded by the driver, so results for a seed
do not depend on the scheduler, the number of workers or the memory limit.
"""

from __future__ import annotations

import logging
import math
import numbers
import time

import numpy as np

from .. import _budget
from .._errors import InvalidParameterError, InvalidTypeError
from .._kernels.clara import clarans_run
from .._result import ClaransResult
from .._state import INIT_STATES, ClaransState
from .._typing import (
    ClientLike,
    DissimilarityLike,
    InitLike,
    MemoryLimit,
    PathLike,
    RandomStateLike,
    WeightsLike,
)
from .._util import check_int, check_k, check_random_state, check_weights
from ..engine import Engine
from ._common import (
    SwapCaches,
    check_tol,
    driver_scope,
    make_result,
    medoid_table,
    resolve_init,
    seed_param,
    weights_hash,
)
from ._registry import get_init, register_method

logger = logging.getLogger(__name__)

#: default relative swap tolerance: a neighbour is taken iff it improves the loss by more
#: than tol·TD (0 = strictly; rounding noise on exact ties, e.g. a medoid swapped for a
#: duplicate point, is refused by :func:`~chunked_medoids._kernels.swap.accept_swap`).
DEFAULT_TOL = 0.0
#: neighbours drawn per random-number call (a constant: results never depend on batching).
DRAW_CHUNK = 256


def resolve_maxneighbor(maxneighbor, per: int, name: str = "maxneighbor") -> int:
    """Number of consecutive failures that ends a local search.

    ``0 < maxneighbor <= 1``: a fraction of ``per`` (k·(n − k) for CLARANS, n − k for
    FastCLARANS), rounded up, at least 1.  ``maxneighbor > 1``: an absolute count (an
    integer).
    """
    if isinstance(maxneighbor, bool) or not isinstance(maxneighbor, numbers.Real):
        raise InvalidTypeError(f"{name} must be a positive number, got {type(maxneighbor).__name__} {maxneighbor!r}")
    m = float(maxneighbor)
    if not math.isfinite(m) or m <= 0:
        raise InvalidParameterError(
            f"{name} must be > 0 (a fraction in (0, 1] or a count > 1), got {maxneighbor!r}"
        )
    if m <= 1.0:
        return max(1, int(math.ceil(m * per)))
    if m != int(m):
        raise InvalidParameterError(
            f"{name} > 1 is an absolute number of neighbours and must be an integer, got {maxneighbor!r}; "
            "use a value in (0, 1] for a fraction"
        )
    return int(m)


def _local_search(i, st):
    """Local search number ``i`` (a task of ``Engine.map_tasks``); the ``_single`` loop of
    this family.  Returns (medoids, loss, n_eval, n_swap, init_loss)."""
    i = int(i)
    source, k, n = st["source"], st["k"], st["source"].n
    rng = np.random.default_rng(int(st["seeds"][i]))
    init = st["init"]
    medoids = rng.choice(n, size=k, replace=False).astype(np.int64) if init is None else init.copy()
    state = SwapCaches(source, medoids, st["weights"])
    init_loss = state.td
    stv = np.zeros(4, dtype=np.int64)  # counter, n_eval, n_swap, done
    td_box = np.array([state.td], dtype=np.float64)
    P = np.empty(k, dtype=np.float64)
    fetch = st["fetch"]
    fast = st["fast"]
    maxneighbor = st["maxneighbor"]
    if n > k:
        while not stv[3]:
            slots = rng.integers(0, k, size=DRAW_CHUNK, dtype=np.int64)
            cands = rng.integers(0, n, size=DRAW_CHUNK, dtype=np.int64)
            for a in range(0, DRAW_CHUNK, fetch):
                b = min(a + fetch, DRAW_CHUNK)
                # every drawn candidate's row (those that are medoids when examined are
                # skipped; reading them anyway keeps the batch independent of the state)
                rows = source.take_rows(cands[a:b])
                clarans_run(rows, np.arange(b - a, dtype=np.int64), slots[a:b], cands[a:b], fast,
                            maxneighbor, st["tol"], state.M, state.medoids, state.is_medoid, state.dn, state.ds,
                            state.nn, state.sn, state.R, state.w, state.weighted, P, stv, td_box)
                if stv[3]:
                    break
    state.td = float(td_box[0])
    return state.medoids.copy(), state.td, int(stv[1]), int(stv[2]), float(init_loss)


def _run(name, D, k, *, numlocal, maxneighbor, random_state, weights, init, tol, memory_limit, client,
         progress, num_workers, block_rows, engine, checkpoint, checkpoint_interval, validate=True):
    fast = name == "fastclarans"
    check_k(k, None)  # k=None is an error here (driver_scope skips a None k)
    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate) as scope:
        source, eng = scope.source, scope.engine
        t0 = time.perf_counter()
        k = int(k)
        n = source.n
        numlocal = check_int(numlocal, "numlocal", minimum=1)
        per = (n - k) if fast else k * (n - k)
        mn = resolve_maxneighbor(maxneighbor, max(per, 1))
        w = check_weights(weights, n)
        tol = check_tol(tol)
        rng = check_random_state(random_state)
        init_arr = None
        if isinstance(init, str):
            if init != "random":
                get_init(init)  # an unknown name fails before any work
            init_p = init
        else:
            init_arr = resolve_init(init, source, k, rng, eng, w)  # validation only (no rng use)
            init_p = init_arr.tolist()
        params = {"k": k, "numlocal": numlocal, "maxneighbor": int(mn), "tol": tol, "init": init_p,
                  "seed": seed_param(random_state), "weights": weights_hash(w), "fast": fast}
        ckpt = scope.open_checkpoint(checkpoint, algorithm=name, params=params,
                                     interval=checkpoint_interval)
        saved = ckpt.load()
        if isinstance(saved, ClaransState):
            state = saved
        else:
            if isinstance(init, str) and init != "random":
                resume = saved if isinstance(saved, INIT_STATES) else None
                init_arr = resolve_init(init, source, k, rng, eng, w, checkpoint=ckpt, resume=resume)
            # every local search's seed, drawn up front: a resumed run redoes only the
            # unfinished searches, with the seeds an uninterrupted run would use
            state = ClaransState(seeds=rng.integers(0, 2**63 - 1, size=numlocal, dtype=np.int64),
                                 init=init_arr)
        seeds, init_arr, results = state.seeds, state.init, state.results

        conc = max(1, min(numlocal, eng.parallelism))
        fetch = _budget.clarans_fetch_rows(eng.memory_limit, conc, n, source.dtype.itemsize, DRAW_CHUNK)
        st = {"source": source, "k": k, "seeds": seeds, "init": init_arr, "weights": w,
              "fetch": fetch, "fast": fast, "maxneighbor": mn, "tol": tol}
        # with a checkpoint the searches run in waves of `conc` (saved after each wave);
        # each search depends only on its seed, so the grouping never changes the result
        wave = conc if ckpt.enabled else numlocal
        while len(results) < numlocal:
            done = len(results)
            stop = min(done + wave, numlocal)
            results.extend(eng.map_tasks(_local_search, range(done, stop), st, max_concurrency=conc,
                                         desc=name))
            ckpt.step(lambda: state, force=True)
        best = 0
        for i, r in enumerate(results):
            if r[1] < results[best][1]:
                best = i
        medoids, loss, n_eval, n_swap, init_loss = results[best]
        M = medoid_table(source, medoids)
        res = make_result(M, medoids, w, n_iter=n_eval, n_swap=n_swap,
                          loss_history=[init_loss, loss], algorithm=name, cls=ClaransResult,
                          restart_losses=[float(r[1]) for r in results],
                          restart_n_eval=[int(r[2]) for r in results],
                          restart_n_swap=[int(r[3]) for r in results],
                          restart_init_losses=[float(r[4]) for r in results],
                          best_restart=int(best), numlocal=numlocal, maxneighbor=int(mn))
        ckpt.complete(state)
        logger.info("%s: n=%d k=%d numlocal=%d maxneighbor=%d loss=%.10g (%.2fs)", name, n, k,
                    numlocal, mn, res.loss, time.perf_counter() - t0)
        return res


_DOC = """
    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).  For features use ``from_features(X, metric)``.
    k : int
        Number of medoids, 1 <= k <= n.
    numlocal : int, default 2
        Independent local searches (run in parallel); the best loss wins (ties: earliest).
    maxneighbor : float, default %(mn)s
        Consecutive non-improving neighbours that end a local search: a fraction of
        %(per)s when in (0, 1] (rounded up, at least 1), an absolute count when > 1.
    random_state : None, int, SeedSequence or Generator
        Seeds every local search (starting medoids and neighbour draws).
    weights : (n,) array, optional
        Non-negative point weights; the loss is Σ_o w_o·d(o, medoid(o)).
    init : "random", "build", "lab" or array of k distinct ints, default "random"
        Starting medoids: "random" draws fresh ones for every local search; anything else
        is resolved once and every local search starts from it.
    tol : float, default 0.0
        A neighbour is taken iff ΔTD < -tol·TD (TD the current loss; 0 = any strict
        improvement).  A ΔTD within float rounding noise of the bound is confirmed by
        recomputing the loss exactly, so exact ties (duplicate points) never count as
        improvements.
    memory_limit : int or str, default "1GiB"
        Budget for the candidate rows fetched at once (the n×k tables come on top).
    client, progress, num_workers, block_rows, engine
        Engine options (see :class:`~chunked_medoids.Engine`).
    checkpoint : path, optional
        Saved after each finished wave of local searches (as many as run in parallel) with
        the results so far and every search's seed; a rerun with the same file resumes
        (redoing only unfinished searches, so the result equals an uninterrupted run) and a
        finished file returns its result at once.  A file written for other data or other
        result-affecting parameters raises ``CheckpointMismatchError``.
    checkpoint_interval : float, default 60.0
        Seconds between saves (waves always end with a save).
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).

    Returns
    -------
    ClaransResult
        ``n_iter`` = neighbours evaluated in the winning search, ``n_swap`` its swaps,
        ``loss_history`` = [its starting loss, its final loss]; ``extra``:
        ``restart_losses``, ``restart_n_eval``, ``restart_n_swap``,
        ``restart_init_losses``, ``best_restart``, ``numlocal``, ``maxneighbor`` (count).

    Notes
    -----
    Memory per local search: the n×k medoid table + O(n) caches + a batch of candidate
    rows.  I/O: the k starting rows plus one row of D per evaluated neighbour (random
    access: on chunked stores each row decodes its chunk).
"""


def clarans(D: DissimilarityLike, k: int, *, numlocal: int = 2, maxneighbor: float = 0.0125,
            random_state: RandomStateLike = None, weights: WeightsLike = None, init: InitLike = "random",
            tol: float = DEFAULT_TOL, memory_limit: MemoryLimit = "1GiB", client: ClientLike = None,
            progress: bool = False, num_workers: int | None = None, block_rows: int | None = None,
            engine: Engine | None = None, checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0,
            validate: bool = True) -> ClaransResult:
    return _run("clarans", D, k, numlocal=numlocal, maxneighbor=maxneighbor, random_state=random_state,
                weights=weights, init=init, tol=tol, memory_limit=memory_limit, client=client, progress=progress,
                num_workers=num_workers, block_rows=block_rows, engine=engine, checkpoint=checkpoint,
                checkpoint_interval=checkpoint_interval, validate=validate)


clarans.__doc__ = """CLARANS (Ng & Han): random (slot, candidate) swap neighbours, each ΔTD
    computed with the candidate's row in O(n).
""" + _DOC % {"mn": "0.0125", "per": "k·(n − k)"}


def fastclarans(D: DissimilarityLike, k: int, *, numlocal: int = 2, maxneighbor: float = 0.025,
                random_state: RandomStateLike = None, weights: WeightsLike = None, init: InitLike = "random",
                tol: float = DEFAULT_TOL, memory_limit: MemoryLimit = "1GiB", client: ClientLike = None,
                progress: bool = False, num_workers: int | None = None, block_rows: int | None = None,
                engine: Engine | None = None, checkpoint: PathLike | None = None, checkpoint_interval: float = 60.0,
                validate: bool = True) -> ClaransResult:
    return _run("fastclarans", D, k, numlocal=numlocal, maxneighbor=maxneighbor,
                random_state=random_state, weights=weights, init=init, tol=tol, memory_limit=memory_limit,
                client=client, progress=progress, num_workers=num_workers, block_rows=block_rows,
                engine=engine, checkpoint=checkpoint, checkpoint_interval=checkpoint_interval,
                validate=validate)


fastclarans.__doc__ = """FastCLARANS (Schubert & Rousseeuw): a random candidate scored against
    all k slots with the FastPAM1 kernel (best slot = argmin P[s] + acc, lowest slot on ties).
""" + _DOC % {"mn": "0.025", "per": "n − k"}

register_method("clarans", clarans, family="sampling", default_init="random",
                description="CLARANS: randomised search over (slot, candidate) swap neighbours")
register_method("fastclarans", fastclarans, family="sampling", default_init="random",
                description="FastCLARANS: random candidates scored against all k slots (FastPAM1 kernel)")
