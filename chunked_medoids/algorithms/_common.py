"""Helpers shared by every clustering driver (exact PAM family, CLARA, silhouettes...).

Typical driver skeleton (the scope opens the source, owns a new engine, installs the
checkpoint signal handlers, and closes / restores all of it on exit)::

    with driver_scope(D, k, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate) as run:
        max_iter, tol, w, rng, params = check_run(run.source, k, init=init, ...)
        ckpt = run.open_checkpoint(checkpoint, algorithm="...", params=params,
                                   interval=checkpoint_interval)
        saved = ckpt.load()
        state = ... (from ``saved``, or a fresh start via :func:`resolve_init`)
        _xxx_single(run, state, ...)       # the algorithm's loop
        result = make_result(...)
        ckpt.complete(state)
        return result

Memory: the medoid table ``M`` is n×k in the source dtype; the caches are O(n).  Nothing
here reads more than the k medoid rows of D.
"""

from __future__ import annotations

import contextlib
import hashlib
import logging
import numbers
import os
from dataclasses import dataclass

import numpy as np

from .._errors import InvalidParameterError, InvalidTypeError
from .._kernels.assign import assign_all, loss_sum, removal_loss
from .._result import SwapResult
from .._state import INIT_STATES
from .._util import check_int, check_k, check_medoids, check_random_state, check_weight_bound, check_weights
from ..checkpoint import StopRequest, open_checkpoint, signal_scope
from ..engine import make_engine
from ..sources import open_dissimilarity

logger = logging.getLogger(__name__)

#: whether :func:`driver_scope` hands ``validate`` on to ``open_dissimilarity``: True since
#: validation is fused into the first pass (issue 12; sources/validate.py), so it costs no
#: extra pass over D.
VALIDATE_IN_SCOPE = True


@dataclass
class DriverScope:
    """What one driver run holds: its source, engine, stop request and checkpoint.

    Created by :func:`driver_scope`; drivers never build it themselves.

    Attributes
    ----------
    source : DissimilaritySource
        The opened input (``None`` when the driver opened its input itself).
    engine : Engine
        The engine of the run (created by the scope unless one was passed).
    stop : StopRequest
        This run's stop request (set by the signal handlers of a checkpointed run).
    checkpoint : Checkpoint or NullCheckpoint
        Set by :meth:`open_checkpoint` (a :class:`~chunked_medoids.checkpoint.NullCheckpoint`
        until then).
    """

    source: object
    engine: object
    stop: StopRequest
    checkpoint: object
    _stack: contextlib.ExitStack

    def open_checkpoint(self, path, *, algorithm: str, params: dict, interval: float = 60.0,
                        source=None):
        """Open the run's checkpoint (None: no checkpoint) bound to this run's stop request.

        With a checkpoint file, the opted-in signals (see
        :func:`~chunked_medoids.checkpoint.install_signal_handlers`) request this run to
        stop until the scope ends; the previous handlers are restored then.

        Parameters
        ----------
        path : str, os.PathLike or None
        algorithm : str
            Name recorded in (and checked against) the file.
        params : dict
            Every result-affecting parameter (see :func:`check_run`).
        interval : float, default 60.0
            Seconds between saves inside a pass.
        source : optional
            What identifies the data (``.fingerprint()``); default: the scope's source.

        Returns
        -------
        Checkpoint or NullCheckpoint
        """
        ckpt = open_checkpoint(path, algorithm=algorithm, source=self.source if source is None else source,
                               params=params, interval=interval, stop=self.stop)
        self._stack.enter_context(signal_scope(self.stop, enabled=ckpt.enabled))
        self.checkpoint = ckpt
        return ckpt


@contextlib.contextmanager
def driver_scope(D, k=None, *, memory_limit="1GiB", client=None, progress=False, num_workers=None,
                 block_rows=None, engine=None, validate: bool = True, open_source: bool = True,
                 resident="auto"):
    """The context every driver runs in: source, engine and checkpoint, closed on exit.

    Opens ``D`` as a source (``open_source=False``: the driver resolves its input itself,
    as CLARA does), validates ``k`` against it, creates an engine unless one is given, and
    on exit closes what it created (the engine, a source opened from a path) and restores
    the signal handlers a checkpointed run installed (:meth:`DriverScope.open_checkpoint`).

    Parameters
    ----------
    D : anything :func:`~chunked_medoids.open_dissimilarity` accepts
    k : int, optional
        Number of medoids, validated as ``1 <= k <= n`` (``None`` skips the check).
    memory_limit, client, progress, num_workers, block_rows
        Options of a new :class:`~chunked_medoids.Engine` (used only when ``engine`` is None).
    engine : Engine, optional
        An existing engine to reuse (its own settings apply; it is not closed).  Passing
        ``client``, ``num_workers`` or ``block_rows`` together with ``engine`` is an error.
    validate : bool, default True
        Check the matrix (finite, non-negative, zero diagonal, symmetric), handed to
        :func:`~chunked_medoids.open_dissimilarity`: in-memory arrays up front, other
        sources while the first pass streams them (no extra pass).  False skips it.
    open_source : bool, default True
        Open ``D`` here (False: ``scope.source`` is None).
    resident : {"auto", True, False}, default "auto"
        Option of a new engine (:class:`~chunked_medoids.Engine`): hold the row stripes read
        from storage for the run.  With ``engine`` given, a value other than "auto" is an
        error (the engine's own setting applies).

    Yields
    ------
    DriverScope
    """
    if engine is not None:
        extra = {name: v for name, v in (("client", client), ("num_workers", num_workers),
                                         ("block_rows", block_rows)) if v is not None}
        if not (isinstance(resident, str) and resident == "auto"):
            extra["resident"] = resident
        if extra:
            raise InvalidParameterError(
                f"engine= was given together with {sorted(extra)}; configure the engine "
                "itself (Engine(...)) or omit engine="
            )
    with contextlib.ExitStack() as stack:
        source = None
        if open_source:
            source = open_dissimilarity(D, validate=validate if VALIDATE_IN_SCOPE else False)
            if isinstance(D, (str, os.PathLike)):
                stack.callback(source.close)  # opened here from a path: ours to close
            if k is not None:
                check_k(k, source.n)
                check_fits_machine(source, k)
        if engine is None:
            engine = make_engine(None, memory_limit=memory_limit, client=client, progress=progress,
                                 num_workers=num_workers, block_rows=block_rows, resident=resident)
            stack.callback(engine.close)
        stop = StopRequest()
        scope = DriverScope(source=source, engine=engine, stop=stop, checkpoint=open_checkpoint(
            None, algorithm="", stop=stop), _stack=stack)
        yield scope


def machine_memory() -> int | None:
    """Bytes of physical memory this process may use (the cgroup limit when lower), or None."""
    total = None
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        pass
    for path in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            with open(path) as f:
                text = f.read().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text)) if total else int(text)
    return total


def check_fits_machine(source, k: int) -> None:
    """Refuse a run whose O(n·k) state plus one decoded storage stripe exceeds the machine.

    ``n`` of a stored matrix comes from its file: a damaged or hostile header (a shape of
    2e8) would otherwise end in an out-of-memory kill instead of an error.  See
    :func:`chunked_medoids._budget.run_floor_bytes`.

    Raises
    ------
    InvalidParameterError
        Naming n, k, the bytes needed and the machine's memory.
    """
    from .. import _budget
    from .._util import format_bytes

    chunks = getattr(source, "shards", None) or getattr(source, "chunks", None)
    rows = int(chunks[0]) if chunks else 1
    state, read = _budget.run_floor_bytes(source.n, k, source.dtype.itemsize, rows)
    avail = machine_memory()
    if avail is None or state + read <= avail:
        return
    raise InvalidParameterError(
        f"the n={source.n} matrix needs at least {format_bytes(state + read)} for k={k} medoids "
        f"(the n·k medoid table and caches {format_bytes(state)}, decoding one stored stripe of "
        f"{rows} rows {format_bytes(read)}), more than the {format_bytes(avail)} of memory this "
        f"machine gives the process; n comes from {source!r}: if that size is wrong the file's "
        "metadata is damaged, else run on a machine with more memory"
    )


def medoid_table(source, medoids) -> np.ndarray:
    """The (n, k) medoid table ``M[o, s] = D[o, medoids[s]]``, C-contiguous, source dtype.

    Reads the k medoid rows of D (``take_rows``; a row is a column by symmetry).
    Memory: n·k·itemsize bytes (plus the same for the transposition).
    """
    medoids = np.asarray(medoids, dtype=np.int64)
    rows = source.take_rows(medoids)
    return np.ascontiguousarray(rows.T)


def assign_table(M, medoids):
    """Nearest / second-nearest medoid of every point from the medoid table.

    Parameters
    ----------
    M : (n, k) array
    medoids : (k,) int64

    Returns
    -------
    labels : (n,) int32
        Slot of the nearest medoid: lowest slot on ties; a medoid is always in its own slot.
    dn, ds : (n,) arrays of M's dtype
        Distance to the nearest / second-nearest medoid (``ds`` = inf, or the integer
        maximum, when k = 1).
    nn, sn : (n,) int32
        Their slots (``sn = -1`` when k = 1).  ``nn`` equals ``labels`` (separate array).
    """
    M = np.ascontiguousarray(M)
    medoids = np.asarray(medoids, dtype=np.int64)
    n = M.shape[0]
    dn = np.empty(n, dtype=M.dtype)
    ds = np.empty(n, dtype=M.dtype)
    nn = np.empty(n, dtype=np.int32)
    sn = np.empty(n, dtype=np.int32)
    assign_all(M, medoids, dn, ds, nn, sn)
    return nn.copy(), dn, ds, nn, sn


def kernel_weights(weights):
    """``(w, weighted)`` as the kernels take them: a float64 array (empty when unweighted)."""
    if weights is None:
        return np.empty(0, dtype=np.float64), False
    return np.ascontiguousarray(weights, dtype=np.float64), True


def total_loss(dn, weights=None) -> float:
    """Σ_o w_o·dn[o].  Integer distances without weights are summed exactly in int64;
    otherwise the sum is accumulated in float64 in index order."""
    dn = np.asarray(dn)
    if weights is None and np.issubdtype(dn.dtype, np.integer):
        return float(np.sum(dn, dtype=np.int64))
    check_weight_bound(weights, dn)
    w, weighted = kernel_weights(weights)
    return float(loss_sum(dn, w, weighted))


def resolve_init(init, source, k, rng, engine, weights=None, *, checkpoint=None, resume=None) -> np.ndarray:
    """Initial medoids: a registered init name (``"random"``, ``"build"``, ``"lab"``) or an
    explicit array of k distinct indices in [0, n).  Returns int64 (k,).

    A resumable init (BUILD, LAB) saves its state in ``checkpoint`` after each medoid and
    continues from ``resume`` (a :class:`~chunked_medoids._state.BuildState` /
    ``LabState`` read back from it); other inits ignore both.
    """
    from ._registry import get_init

    if isinstance(init, str):
        spec = get_init(init)
        opts = {}
        if spec.resumable and checkpoint is not None:
            opts = {"checkpoint": checkpoint, "resume": resume}
        medoids = spec.func(source, k, rng=rng, engine=engine, weights=weights, **opts)
        return check_medoids(medoids, source.n, k, name=f"init {init!r} result")
    if init is None:
        raise InvalidParameterError("init must be a registered name or an array of k distinct indices, got None")
    if isinstance(init, (numbers.Number, bytes)):
        raise InvalidTypeError(
            f"init must be a registered name or an array of k distinct point indices, got {init!r}"
        )
    return check_medoids(init, source.n, k, name="init")


def check_init(init, n, k):
    """Validate ``init`` early (before any I/O): a registered name or k distinct indices."""
    from ._registry import get_init

    if isinstance(init, str):
        get_init(init)
        return
    if init is None or isinstance(init, (numbers.Number, bytes)):
        raise InvalidTypeError(
            f"init must be a registered name or an array of k distinct point indices, got {init!r}"
        )
    check_medoids(init, n, k, name="init")


def check_run(source, k, *, init, max_iter, tol, weights, random_state, init_k=None, **more_params):
    """Validate the options every iterative driver shares, before any I/O.

    Returns ``(max_iter, tol, w, rng, params)``: the validated bound and tolerance, the
    float64 weights (or None), the Generator, and the checkpoint parameters (``k`` unless
    it is None, init, tol, max_iter, int seed, weights digest, plus ``more_params``).
    ``init`` is checked against ``init_k`` medoids (default ``k``).
    """
    max_iter = check_max_iter(max_iter)
    tol = check_tol(tol)
    w = check_weights(weights, source.n)
    check_init(init, source.n, k if init_k is None else init_k)
    rng = check_random_state(random_state)
    params = {"init": init_param(init), "tol": tol, "max_iter": max_iter,
              "seed": seed_param(random_state), "weights": weights_hash(w), **more_params}
    if k is not None:
        params["k"] = int(k)
    return max_iter, tol, w, rng, params


def init_or_saved(saved, init, source, k, rng, engine, weights, ckpt, state_type):
    """The driver's saved state, or None after resolving ``init`` afresh.

    Returns ``(state, medoids)``: ``state`` is ``saved`` when it is a ``state_type`` (then
    ``medoids`` is None); otherwise the init runs -- continuing from ``saved`` when that is
    an init state (BUILD / LAB interrupted) -- and ``state`` is None.
    """
    if isinstance(saved, state_type):
        return saved, None
    resume = saved if isinstance(saved, INIT_STATES) else None
    return None, resolve_init(init, source, k, rng, engine, weights, checkpoint=ckpt, resume=resume)


def check_max_iter(max_iter, name: str = "max_iter") -> int:
    """A non-negative integer iteration bound."""
    return check_int(max_iter, name, minimum=0)


def check_tol(tol, name: str = "tol") -> float:
    """A finite non-negative relative tolerance."""
    if isinstance(tol, bool) or not isinstance(tol, numbers.Real):
        raise InvalidTypeError(f"{name} must be a non-negative number, got {type(tol).__name__} {tol!r}")
    tol = float(tol)
    if not np.isfinite(tol) or tol < 0:
        raise InvalidParameterError(f"{name} must be a finite number >= 0 (0 = strict improvement), got {tol!r}")
    return tol


def weights_hash(weights) -> str | None:
    """Short digest of the weights (for checkpoint parameters); None when unweighted."""
    if weights is None:
        return None
    return hashlib.sha256(np.ascontiguousarray(weights, dtype=np.float64).tobytes()).hexdigest()[:24]


def init_param(init):
    """``init`` as a checkpoint parameter (a name, or the list of indices)."""
    if isinstance(init, str):
        return init
    return np.asarray(init).astype(np.int64).tolist()


def seed_param(random_state):
    """An int seed as a checkpoint parameter (other random states: None)."""
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        return int(random_state)
    return None


class SwapCaches:
    """The O(n·k) working state of the swap methods (medoid table and caches).

    Attributes
    ----------
    M : (n, k) source dtype -- medoid table.
    medoids : (k,) int64.     is_medoid : (n,) bool.
    dn, ds : (n,) source dtype.   nn, sn : (n,) int32.
    R : (k,) float64 -- removal loss.
    w, weighted : kernel weights (see :func:`kernel_weights`).
    td : float -- current loss Σ w·dn (float64 accumulation).
    """

    def __init__(self, source, medoids, weights=None, M=None, caches=None):
        self.n = source.n
        self.medoids = np.array(medoids, dtype=np.int64)
        self.k = self.medoids.shape[0]
        self.M = medoid_table(source, self.medoids) if M is None else np.ascontiguousarray(M)
        check_weight_bound(weights, self.M)  # the loss terms are entries of M
        self.is_medoid = np.zeros(self.n, dtype=np.bool_)
        self.is_medoid[self.medoids] = True
        if caches is None:
            _, self.dn, self.ds, self.nn, self.sn = assign_table(self.M, self.medoids)
        else:  # restored from a checkpoint: bitwise the caches of the interrupted run
            self.dn = np.ascontiguousarray(caches["dn"], dtype=self.M.dtype)
            self.ds = np.ascontiguousarray(caches["ds"], dtype=self.M.dtype)
            self.nn = np.ascontiguousarray(caches["nn"], dtype=np.int32)
            self.sn = np.ascontiguousarray(caches["sn"], dtype=np.int32)
        self.w, self.weighted = kernel_weights(weights)
        self.R = np.zeros(self.k, dtype=np.float64)
        removal_loss(self.dn, self.ds, self.nn, self.w, self.weighted, self.R)
        self.td = float(loss_sum(self.dn, self.w, self.weighted))

    def caches(self) -> dict:
        """Copies of the caches (for checkpoints)."""
        return {"dn": self.dn.copy(), "ds": self.ds.copy(), "nn": self.nn.copy(), "sn": self.sn.copy()}

    def block_state(self) -> dict:
        """The small broadcast dict handed to block functions."""
        return {"is_medoid": self.is_medoid, "dn": self.dn, "ds": self.ds, "nn": self.nn,
                "R": self.R, "w": self.w, "weighted": self.weighted, "k": self.k}

    def refresh(self):
        """Recompute R and TD after the caches changed."""
        removal_loss(self.dn, self.ds, self.nn, self.w, self.weighted, self.R)
        self.td = float(loss_sum(self.dn, self.w, self.weighted))


def make_result(M, medoids, weights, *, n_iter, n_swap, loss_history, algorithm, cls=SwapResult, **details):
    """Final result (``cls``, a :class:`~chunked_medoids.MedoidsResult` subclass) from the
    medoid table; ``details`` are the subclass's typed fields.

    Labels are recomputed from ``M`` with the tie rules (lowest slot; a medoid in its own
    slot) and the loss recomputed from them with :func:`total_loss`.
    """
    medoids = np.asarray(medoids, dtype=np.int64).copy()
    labels, dn, _, _, _ = assign_table(M, medoids)
    loss = total_loss(dn, weights)
    return cls(
        medoids=medoids,
        labels=labels.astype(np.int32, copy=False),
        loss=loss,
        n_iter=int(n_iter),
        n_swap=int(n_swap),
        loss_history=[float(x) for x in loss_history],
        algorithm=algorithm,
        **details,
    )
