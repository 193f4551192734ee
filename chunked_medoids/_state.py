"""Typed run state of every driver: the checkpoint format.

Each driver family keeps its resumable progress in one dataclass of this module; a
checkpoint file (see :mod:`chunked_medoids.checkpoint`) is exactly ``state.to_state()``
plus a header naming the state ``kind`` and :data:`STATE_FORMAT`.  Reading a checkpoint
is ``RunState.from_state(kind, state)``; nothing else reads checkpoint keys by hand.

``to_state()`` returns a nested dict of JSON values and numpy arrays (arrays are stored
natively in the ``.npz``, bit for bit); ``from_state()`` rebuilds the dataclass with the
right dtypes.  A state must hold everything the driver needs to continue *bitwise* as an
uninterrupted run would (caches, generator states, positions).

Versioning: :data:`STATE_FORMAT` changes whenever a field is added, removed or changes
meaning.  A checkpoint of another format is refused with
:class:`~chunked_medoids.CheckpointFormatError` (never silently reinterpreted).

========================  ===============================================  ========================
state                     drivers                                          saved
========================  ===============================================  ========================
:class:`SwapState`        pam, fastpam1, fastpam2, fasterpam, alternating  block / iteration
:class:`MSCState`         fastermsc                                        block / pass
:class:`DynMSCState`      dynmsc                                           block / pass / k
:class:`ClaransState`     clarans, fastclarans                             wave of searches
:class:`ClaraState`       clara, fastclara, fasterclara                    sample
:class:`LargeClaraState`  largeclara                                       stage / polish iteration
:class:`BuildState`       the BUILD init of any of the above               medoid
:class:`LabState`         the LAB init of any of the above                 medoid
========================  ===============================================  ========================
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np

#: version of the checkpoint layout (header + the states below).  1: the untyped dicts of
#: chunked_medoids <= 0.1; 2: the typed states of this module.
STATE_FORMAT = 2

#: state kind -> class (filled by :func:`_register`).
STATE_KINDS: dict[str, type[RunState]] = {}


def _register(cls):
    STATE_KINDS[cls.kind] = cls
    return cls


class StateFieldError(ValueError):
    """A field of a state read back from a file is malformed (internal: the checkpoint
    loader turns it into :class:`~chunked_medoids.CheckpointCorruptError` naming the file)."""

    def __init__(self, field: str, problem: str):
        super().__init__(f"field {field!r}: {problem}")
        self.field = field
        self.problem = problem


def _i64(a, name: str = "array") -> np.ndarray:
    arr = np.asarray(a)
    if arr.size and arr.dtype.kind not in "iu":
        raise StateFieldError(name, f"must hold integers, got dtype {arr.dtype}")
    if arr.dtype.kind == "u" and arr.size and int(arr.max()) > np.iinfo(np.int64).max:
        raise StateFieldError(name, "holds integers beyond the int64 range")
    return arr.astype(np.int64)


def _floats(xs) -> list[float]:
    return [float(x) for x in xs]


@dataclass
class RunState:
    """Base of every checkpointed state.

    Subclasses set ``kind`` and may override :meth:`to_state` / :meth:`from_state` when a
    field needs conversion; the defaults map dataclass fields to dict keys one to one.
    """

    kind: ClassVar[str] = ""

    def to_state(self) -> dict:
        """The state as a dict of JSON values and numpy arrays (copies: safe to keep)."""
        out = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, RunState):
                value = value.to_state()
            elif isinstance(value, np.ndarray):
                value = value.copy()
            elif isinstance(value, list):
                value = list(value)
            out[f.name] = value
        return out

    @classmethod
    def from_state(cls, state: dict) -> RunState:
        """Rebuild the dataclass from :meth:`to_state` output read back from a file."""
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})


def state_from_file(kind: str, state: dict) -> RunState:
    """The typed state of ``kind`` (``KeyError`` for an unknown kind)."""
    return STATE_KINDS[kind].from_state(state)


# -- the swap family and its eager walk -----------------------------------------------------
@dataclass
class EagerProgress:
    """Position of an eager walk (FasterPAM, FasterMSC) over the candidate order.

    Attributes
    ----------
    n_iter : int
        Passes started (the current one included).
    n_swap : int
        Swaps done.
    pos : int
        Next position in the candidate order within the current pass (0 between passes).
    since : int
        Positions visited since the last swap (the run ends when it reaches n).
    done : bool
        Converged (a full cycle without a swap).
    """

    n_iter: int = 0
    n_swap: int = 0
    pos: int = 0
    since: int = 0
    done: bool = False

    def to_state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> EagerProgress:
        return cls(n_iter=int(state["n_iter"]), n_swap=int(state["n_swap"]), pos=int(state["pos"]),
                   since=int(state["since"]), done=bool(state["done"]))


@_register
@dataclass
class SwapState(RunState):
    """PAM, FastPAM1/2, FasterPAM and alternating: medoids, counters and caches.

    Attributes
    ----------
    medoids : (k,) int64
    n_iter, n_swap : int
        Iterations (passes) run and swaps (replacements) done.
    loss_history : list of float
        Loss after the init and after each iteration.
    done : bool
        Converged or finished.
    caches : dict of arrays or None
        ``dn, ds, nn, sn`` of the swap state, bitwise those of the interrupted run (None
        for alternating, which recomputes them from the medoids).
    pos, since : int
        FasterPAM only: position in the candidate order and positions since the last swap.
    rng_state : dict or None
        FasterPAM with ``order="shuffle"``: the generator state the order is drawn from.
    """

    kind: ClassVar[str] = "swap"

    medoids: np.ndarray
    n_iter: int = 0
    n_swap: int = 0
    loss_history: list = field(default_factory=list)
    done: bool = False
    caches: dict | None = None
    pos: int = 0
    since: int = 0
    rng_state: dict | None = None

    def to_state(self) -> dict:
        out = super().to_state()
        out["caches"] = None if self.caches is None else {k: np.array(v) for k, v in self.caches.items()}
        return out

    @classmethod
    def from_state(cls, state: dict) -> SwapState:
        caches = state.get("caches")
        return cls(medoids=_i64(state["medoids"], "medoids"), n_iter=int(state["n_iter"]), n_swap=int(state["n_swap"]),
                   loss_history=_floats(state["loss_history"]), done=bool(state["done"]),
                   caches=None if caches is None else dict(caches), pos=int(state["pos"]),
                   since=int(state["since"]), rng_state=state.get("rng_state"))

    @property
    def progress(self) -> EagerProgress:
        """The eager-walk view of these counters (FasterPAM)."""
        return EagerProgress(n_iter=self.n_iter, n_swap=self.n_swap, pos=self.pos, since=self.since,
                             done=self.done)


# -- FasterMSC / DynMSC ---------------------------------------------------------------------
@dataclass
class MSCPass:
    """Progress of one FasterMSC optimisation: the eager walk plus the per-pass values."""

    walk: EagerProgress = field(default_factory=EagerProgress)
    td_hist: list = field(default_factory=list)
    score_hist: list = field(default_factory=list)

    def to_state(self) -> dict:
        return {"walk": self.walk.to_state(), "td_hist": list(self.td_hist),
                "score_hist": list(self.score_hist)}

    @classmethod
    def from_state(cls, state: dict) -> MSCPass:
        return cls(walk=EagerProgress.from_state(state["walk"]), td_hist=_floats(state["td_hist"]),
                   score_hist=_floats(state["score_hist"]))


@_register
@dataclass
class MSCState(RunState):
    """FasterMSC: the medoids, the walk and the initial TD / medoid silhouette."""

    kind: ClassVar[str] = "fastermsc"

    medoids: np.ndarray
    run: MSCPass
    td0: float
    s0: float

    def to_state(self) -> dict:
        return {"medoids": self.medoids.copy(), "run": self.run.to_state(), "td0": float(self.td0),
                "s0": float(self.s0)}

    @classmethod
    def from_state(cls, state: dict) -> MSCState:
        return cls(medoids=_i64(state["medoids"], "medoids"), run=MSCPass.from_state(state["run"]),
                   td0=float(state["td0"]), s0=float(state["s0"]))


@dataclass
class DynMSCRecords:
    """What DynMSC recorded for the k already finished (k decreasing)."""

    scores: list = field(default_factory=list)      # [[k, score], ...]
    medoids: list = field(default_factory=list)     # [[k, [medoids]], ...]
    losses: list = field(default_factory=list)      # [[k, total deviation], ...]
    total_iter: int = 0
    total_swap: int = 0
    best: dict | None = None                        # {"score", "k", "history"}
    td0: float | None = None                        # TD at the start of the current k
    finished: bool = False

    def to_state(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_state(cls, state: dict) -> DynMSCRecords:
        return cls(**{f.name: state[f.name] for f in dataclasses.fields(cls)})


@_register
@dataclass
class DynMSCState(RunState):
    """DynMSC: the current medoids, the walk of the current k and the finished k's records."""

    kind: ClassVar[str] = "dynmsc"

    medoids: np.ndarray
    run: MSCPass
    rec: DynMSCRecords

    def to_state(self) -> dict:
        return {"medoids": self.medoids.copy(), "run": self.run.to_state(), "rec": self.rec.to_state()}

    @classmethod
    def from_state(cls, state: dict) -> DynMSCState:
        return cls(medoids=_i64(state["medoids"], "medoids"), run=MSCPass.from_state(state["run"]),
                   rec=DynMSCRecords.from_state(state["rec"]))


# -- sampling methods -----------------------------------------------------------------------
@_register
@dataclass
class ClaransState(RunState):
    """CLARANS / FastCLARANS: every search's seed, the shared start and the finished searches.

    ``results`` holds ``(medoids, loss, n_eval, n_swap, init_loss)`` per finished search,
    in search order.
    """

    kind: ClassVar[str] = "clarans"

    seeds: np.ndarray
    init: np.ndarray | None = None
    results: list = field(default_factory=list)

    def to_state(self) -> dict:
        k = self.results[0][0].shape[0] if self.results else 0
        return {"seeds": self.seeds.copy(), "has_init": self.init is not None,
                "init": self.init.copy() if self.init is not None else np.zeros(0, dtype=np.int64),
                "medoids": (np.stack([r[0] for r in self.results]) if self.results
                            else np.zeros((0, k), dtype=np.int64)),
                "losses": [float(r[1]) for r in self.results], "n_eval": [int(r[2]) for r in self.results],
                "n_swap": [int(r[3]) for r in self.results],
                "init_losses": [float(r[4]) for r in self.results]}

    @classmethod
    def from_state(cls, state: dict) -> ClaransState:
        med = _i64(state["medoids"], "medoids")
        results = [(med[i].copy(), float(state["losses"][i]), int(state["n_eval"][i]),
                    int(state["n_swap"][i]), float(state["init_losses"][i])) for i in range(med.shape[0])]
        return cls(seeds=_i64(state["seeds"], "seeds"), init=_i64(state["init"], "init") if state["has_init"] else None,
                   results=results)


@_register
@dataclass
class ClaraState(RunState):
    """The CLARA family: every draw and seed, the samples scored so far, the best medoids,
    and the inner results of the current wave's samples that finished but are not scored.

    Attributes
    ----------
    draws : (n_samples, s) int64
    seeds : (n_samples,) int64
    samples_done : int
        Samples run *and* scored on the full data (a multiple of the wave size, or all).
    best_medoids : (k,) int64 or None
    best_loss : float
    best_sample : int
    best_X : (k, d) float64 or None
        Feature rows of the best medoids (feature mode).
    sample_losses, loss_history : list of float
    sample_swaps : list of int
    pending : dict
        Sample index -> ``(global medoids, n_iter, n_swap, sample loss)`` of the samples of
        the current wave whose inner run finished (saved per sample, so an interruption
        loses at most the samples still running).
    """

    kind: ClassVar[str] = "clara"

    draws: np.ndarray
    seeds: np.ndarray
    samples_done: int = 0
    best_medoids: np.ndarray | None = None
    best_loss: float = float("inf")
    best_sample: int = -1
    best_X: np.ndarray | None = None
    sample_losses: list = field(default_factory=list)
    loss_history: list = field(default_factory=list)
    sample_swaps: list = field(default_factory=list)
    pending: dict = field(default_factory=dict)

    def to_state(self) -> dict:
        idx = sorted(self.pending)
        k = self.pending[idx[0]][0].shape[0] if idx else 0
        return {"draws": self.draws.copy(), "seeds": self.seeds.copy(), "samples_done": int(self.samples_done),
                "has_best": self.best_medoids is not None,
                "best_medoids": (self.best_medoids.copy() if self.best_medoids is not None
                                 else np.zeros(0, dtype=np.int64)),
                "best_loss": float(self.best_loss), "best_sample": int(self.best_sample),
                "has_best_X": self.best_X is not None,
                "best_X": self.best_X.copy() if self.best_X is not None else np.zeros((0, 1)),
                "sample_losses": list(self.sample_losses), "loss_history": list(self.loss_history),
                "sample_swaps": list(self.sample_swaps),
                "pending_index": np.asarray(idx, dtype=np.int64),
                "pending_medoids": (np.stack([self.pending[i][0] for i in idx]) if idx
                                    else np.zeros((0, k), dtype=np.int64)),
                "pending_n_iter": [int(self.pending[i][1]) for i in idx],
                "pending_n_swap": [int(self.pending[i][2]) for i in idx],
                "pending_loss": [float(self.pending[i][3]) for i in idx]}

    @classmethod
    def from_state(cls, state: dict) -> ClaraState:
        pidx = _i64(state["pending_index"], "pending_index")
        pmed = _i64(state["pending_medoids"], "pending_medoids")
        pending = {int(i): (pmed[q].copy(), int(state["pending_n_iter"][q]), int(state["pending_n_swap"][q]),
                            float(state["pending_loss"][q])) for q, i in enumerate(pidx)}
        return cls(draws=_i64(state["draws"], "draws"), seeds=_i64(state["seeds"], "seeds"),
                   samples_done=int(state["samples_done"]),
                   best_medoids=_i64(state["best_medoids"], "best_medoids") if state["has_best"] else None,
                   best_loss=float(state["best_loss"]), best_sample=int(state["best_sample"]),
                   best_X=np.asarray(state["best_X"]) if state["has_best_X"] else None,
                   sample_losses=_floats(state["sample_losses"]), loss_history=_floats(state["loss_history"]),
                   sample_swaps=[int(x) for x in state["sample_swaps"]], pending=pending)


@_register
@dataclass
class LargeClaraState(RunState):
    """LargeCLARA's checkpoint state (saved at stage boundaries).

    ``stage`` 0: nothing run; 1: the samples ran (``medoid_sets`` and their passes/swaps);
    2: scored (``sample_losses``, ``best_sample``) and ``polish_done`` polish iterations
    accepted, with the current ``medoids`` / ``loss`` / ``history`` / ``polish_losses``.
    """

    kind: ClassVar[str] = "largeclara"

    draws: np.ndarray
    seeds: np.ndarray
    extra_pool: np.ndarray
    stage: int = 0
    medoid_sets: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    sample_passes: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sample_swaps: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    sample_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    best_sample: int = -1
    medoids: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    loss: float = float("inf")
    history: np.ndarray = field(default_factory=lambda: np.zeros(0))
    polish_losses: np.ndarray = field(default_factory=lambda: np.zeros(0))
    polish_done: int = 0
    polish_changed: int = 0

    @classmethod
    def from_state(cls, state: dict) -> LargeClaraState:
        ints = ("draws", "seeds", "extra_pool", "medoid_sets", "sample_passes", "sample_swaps", "medoids")
        floats = ("sample_losses", "history", "polish_losses")
        kw = {}
        for f in dataclasses.fields(cls):
            v = state[f.name]
            if f.name in ints:
                v = np.asarray(v, dtype=np.int64)
            elif f.name in floats:
                v = np.asarray(v, dtype=np.float64)
            elif f.name == "loss":
                v = float(v)
            else:
                v = int(v)
            kw[f.name] = v
        return cls(**kw)


# -- initialisations ------------------------------------------------------------------------
@_register
@dataclass
class BuildState(RunState):
    """BUILD after ``len(medoids)`` medoids: the medoids and the distance to the nearest one.

    ``dn`` is None before the first medoid.  Everything BUILD needs to continue.
    """

    kind: ClassVar[str] = "init-build"

    medoids: np.ndarray
    dn: np.ndarray | None = None

    def to_state(self) -> dict:
        return {"medoids": self.medoids.copy(), "has_dn": self.dn is not None,
                "dn": self.dn.copy() if self.dn is not None else np.zeros(0)}

    @classmethod
    def from_state(cls, state: dict) -> BuildState:
        return cls(medoids=_i64(state["medoids"], "medoids"), dn=np.array(state["dn"]) if state["has_dn"] else None)


@_register
@dataclass
class LabState(RunState):
    """LAB after ``len(medoids)`` medoids: the medoids and the generator state to continue."""

    kind: ClassVar[str] = "init-lab"

    medoids: np.ndarray
    rng_state: dict[str, Any] | None = None

    def to_state(self) -> dict:
        return {"medoids": self.medoids.copy(), "rng_state": self.rng_state}

    @classmethod
    def from_state(cls, state: dict) -> LabState:
        return cls(medoids=_i64(state["medoids"], "medoids"), rng_state=state["rng_state"])


#: states written while an initialisation runs (before the driver's own state exists).
INIT_STATES = (BuildState, LabState)


# -- validation of a state read back from a file --------------------------------------------
# A checkpoint is input like any other: its arrays reach numba kernels that index with them
# unchecked, so every field is checked against the run (n, k, the parameters) before any
# kernel sees it.  Costs O(size of the state) plus a few rows of D for the cache samples.

#: points whose caches are compared with D (rows of D read through the source).
CACHE_SAMPLES = 4


@dataclass
class StateContext:
    """What a loaded state is checked against.

    Attributes
    ----------
    n : int or None
        Number of points of the run's input (None: unknown, range checks skipped).
    params : dict
        The run's checkpoint parameters (``k``, ``kmin``/``kmax``, ``n_samples``, ...).
    source : optional
        The run's source; when it has ``take_rows`` and ``dtype``, cache dtypes are checked
        against it and a few cached distances compared with D.
    """

    n: int | None
    params: dict
    source: Any = None

    @property
    def k(self) -> int | None:
        k = self.params.get("k", self.params.get("kmax"))
        return int(k) if isinstance(k, (int, np.integer)) and not isinstance(k, bool) else None

    @property
    def dtype(self):
        dt = getattr(self.source, "dtype", None)
        return np.dtype(dt) if dt is not None and hasattr(self.source, "take_rows") else None


def _fail(name, problem):
    raise StateFieldError(name, problem)


def _count(value, name, lo=0, hi=None):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        _fail(name, f"must be an integer, got {type(value).__name__} {value!r}")
    if value < lo or (hi is not None and value > hi):
        _fail(name, f"must be in [{lo}, {hi if hi is not None else 'inf'}], got {value}")


def _finite_list(values, name, allow_inf=False):
    arr = np.asarray(values, dtype=np.float64)
    ok = ~np.isnan(arr) if allow_inf else np.isfinite(arr)
    if not ok.all():
        i = int(np.flatnonzero(~ok)[0])
        _fail(name, f"must hold finite numbers, got {arr[i]!r} at position {i}")


def _check_medoids(med, name, ctx, k=None, max_k=None):
    med = np.asarray(med)
    if med.ndim != 1:
        _fail(name, f"must be 1-D, got shape {med.shape}")
    if med.size and med.dtype.kind not in "iu":
        _fail(name, f"must hold integer point indices, got dtype {med.dtype}")
    if k is not None and med.shape[0] != k:
        _fail(name, f"must hold exactly k = {k} medoids, got {med.shape[0]}")
    if max_k is not None and med.shape[0] > max_k:
        _fail(name, f"must hold at most k = {max_k} medoids, got {med.shape[0]}")
    if med.size and ctx.n is not None and (int(med.min()) < 0 or int(med.max()) >= ctx.n):
        bad = med[(med < 0) | (med >= ctx.n)]
        _fail(name, f"holds point indices outside [0, {ctx.n}): {bad[:5].tolist()}")
    if np.unique(med).shape[0] != med.shape[0]:
        _fail(name, "holds duplicate medoids")


def _check_array(arr, name, *, shape=None, dtype=None, kinds=None):
    if not isinstance(arr, np.ndarray):
        _fail(name, f"must be an array, got {type(arr).__name__}")
    if shape is not None and arr.shape != tuple(shape):
        _fail(name, f"must have shape {tuple(shape)}, got {arr.shape}")
    if dtype is not None and arr.dtype != dtype:
        _fail(name, f"must have dtype {np.dtype(dtype)} (that of the run), got {arr.dtype}")
    if kinds is not None and arr.size and arr.dtype.kind not in kinds:
        _fail(name, f"has unsupported dtype {arr.dtype}")


def _check_slots(arr, name, k, allow_minus_one):
    lo = -1 if allow_minus_one else 0
    if arr.size and (int(arr.min()) < lo or int(arr.max()) >= k):
        bad = arr[(arr < lo) | (arr >= k)]
        _fail(name, f"holds medoid slots outside [{lo}, {k}): {bad[:5].tolist()}")


def _check_dist_cache(arr, name):
    if arr.size and arr.dtype.kind == "f":
        if np.isnan(arr).any():
            _fail(name, "holds NaN distances")
    if arr.size and arr.dtype.kind in "if" and (arr < 0).any():
        _fail(name, "holds negative distances")


def _sample_points(n):
    return np.unique(np.linspace(0, n - 1, num=min(n, CACHE_SAMPLES)).astype(np.int64))


def _check_rng_state(rs, name):
    if rs is None:
        return
    if not isinstance(rs, dict) or rs.get("bit_generator") not in ("PCG64", "PCG64DXSM", "MT19937", "Philox",
                                                                  "SFC64"):
        _fail(name, "is not a numpy bit-generator state")
    try:
        getattr(np.random, rs["bit_generator"])().state = rs
    except Exception as exc:  # noqa: BLE001 - numpy raises several types for bad states
        _fail(name, f"is not a valid {rs['bit_generator']} state ({exc})")


def _check_walk(walk: EagerProgress, name, ctx):
    for f in ("n_iter", "n_swap"):
        _count(getattr(walk, f), f"{name}{f}")
    for f in ("pos", "since"):
        _count(getattr(walk, f), f"{name}{f}", 0, ctx.n)


def _validate_swap(st: SwapState, ctx: StateContext):
    k, n = ctx.k, ctx.n
    _check_medoids(st.medoids, "medoids", ctx, k=k)
    k = st.medoids.shape[0]
    _count(st.n_iter, "n_iter")
    _count(st.n_swap, "n_swap")
    _count(st.pos, "pos", 0, n)
    _count(st.since, "since", 0, n)
    _finite_list(st.loss_history, "loss_history")
    _check_rng_state(st.rng_state, "rng_state")
    if st.caches is None:
        return
    if not isinstance(st.caches, dict) or set(st.caches) != {"dn", "ds", "nn", "sn"}:
        _fail("caches", "must hold exactly the arrays dn, ds, nn, sn")
    c = st.caches
    for key in ("dn", "ds"):
        _check_array(c[key], f"caches/{key}", shape=None if n is None else (n,), dtype=ctx.dtype, kinds="iuf")
        _check_dist_cache(c[key], f"caches/{key}")
    for key in ("nn", "sn"):
        _check_array(c[key], f"caches/{key}", shape=None if n is None else (n,), dtype=np.int32)
    _check_slots(c["nn"], "caches/nn", k, allow_minus_one=False)
    _check_slots(c["sn"], "caches/sn", k, allow_minus_one=(k == 1))
    if k == 1 and (c["sn"] != -1).any():
        _fail("caches/sn", "must be -1 everywhere when k = 1")
    if k > 1 and (c["nn"] == c["sn"]).any():
        _fail("caches/sn", "equals caches/nn for some points (nearest and second nearest must differ)")
    if ctx.dtype is not None and n:
        # M[o, s] = D[medoids[s], o]: read the (few) medoid rows the sampled points use
        pts = _sample_points(n)
        slots = np.unique(np.concatenate([c["nn"][pts], c["sn"][pts][c["sn"][pts] >= 0]]))
        rows = np.asarray(ctx.source.take_rows(st.medoids[slots]))
        at = {int(sl): q for q, sl in enumerate(slots)}
        for o in pts:
            d = rows[at[int(c["nn"][o])], o]
            if d != c["dn"][o]:
                _fail("caches/dn", f"disagrees with the data at point {int(o)} (cached {c['dn'][o]!r}, "
                      f"D = {d!r})")
            if k > 1 and rows[at[int(c["sn"][o])], o] != c["ds"][o]:
                _fail("caches/ds", f"disagrees with the data at point {int(o)}")


def _validate_msc(st: MSCState, ctx: StateContext):
    _check_medoids(st.medoids, "medoids", ctx, k=ctx.k)
    _check_walk(st.run.walk, "run/walk/", ctx)
    _finite_list(st.run.td_hist, "run/td_hist")
    _finite_list(st.run.score_hist, "run/score_hist")
    _finite_list([st.td0, st.s0], "td0/s0")


def _validate_dynmsc(st: DynMSCState, ctx: StateContext):
    kmin, kmax = ctx.params.get("kmin"), ctx.params.get("kmax")
    _check_medoids(st.medoids, "medoids", ctx, max_k=kmax)
    kk = st.medoids.shape[0]
    if isinstance(kmin, int) and kk < kmin:
        _fail("medoids", f"holds {kk} medoids, fewer than kmin = {kmin}")
    _check_walk(st.run.walk, "run/walk/", ctx)
    _finite_list(st.run.td_hist, "run/td_hist")
    _finite_list(st.run.score_hist, "run/score_hist")
    rec = st.rec
    _count(rec.total_iter, "rec/total_iter")
    _count(rec.total_swap, "rec/total_swap")
    if rec.td0 is not None:
        _finite_list([rec.td0], "rec/td0")
    try:
        for kv, name in ((rec.scores, "rec/scores"), (rec.losses, "rec/losses")):
            for kr, v in kv:
                _count(kr, name, 1, kmax)
                _finite_list([v], name)
        for kr, m in rec.medoids:
            _count(kr, "rec/medoids", 1, kmax)
            _check_medoids(np.asarray(m, dtype=np.int64) if len(m) else np.zeros(0, np.int64), "rec/medoids",
                           ctx, k=kr)
        if rec.best is not None:
            _count(rec.best["k"], "rec/best", 1, kmax)
            _finite_list([rec.best["score"]], "rec/best")
            _finite_list(rec.best["history"], "rec/best")
            if rec.finished and int(rec.best["k"]) not in {int(kr) for kr, _ in rec.medoids}:
                _fail("rec/best", f"names k = {rec.best['k']}, for which no medoids were recorded")
    except (TypeError, ValueError, KeyError) as exc:
        if isinstance(exc, StateFieldError):
            raise
        _fail("rec", f"is malformed ({exc})")


def _validate_clarans(st: ClaransState, ctx: StateContext):
    numlocal = ctx.params.get("numlocal")
    _check_array(st.seeds, "seeds", shape=(numlocal,) if isinstance(numlocal, int) else None)
    if st.seeds.ndim != 1:
        _fail("seeds", f"must be 1-D, got shape {st.seeds.shape}")
    if st.init is not None:
        _check_medoids(st.init, "init", ctx, k=ctx.k)
    if len(st.results) > st.seeds.shape[0]:
        _fail("medoids", f"holds {len(st.results)} finished searches, more than numlocal = {st.seeds.shape[0]}")
    for i, (med, loss, n_eval, n_swap, init_loss) in enumerate(st.results):
        _check_medoids(med, f"medoids[{i}]", ctx, k=ctx.k)
        _finite_list([loss, init_loss], f"losses[{i}]")
        _count(n_eval, f"n_eval[{i}]")
        _count(n_swap, f"n_swap[{i}]")


def _validate_clara(st: ClaraState, ctx: StateContext):
    k, n = ctx.k, ctx.n
    ns, s = ctx.params.get("n_samples"), ctx.params.get("sample_size")
    ns = ns if isinstance(ns, int) else st.draws.shape[0]
    _check_array(st.draws, "draws", shape=(ns, s) if isinstance(s, int) else None)
    if st.draws.ndim != 2:
        _fail("draws", f"must be 2-D, got shape {st.draws.shape}")
    if st.draws.size and n is not None and (int(st.draws.min()) < 0 or int(st.draws.max()) >= n):
        _fail("draws", f"holds point indices outside [0, {n})")
    srt = np.sort(st.draws, axis=1)
    if st.draws.shape[1] > 1 and (srt[:, 1:] == srt[:, :-1]).any():
        _fail("draws", "holds a sample with a repeated point")
    _check_array(st.seeds, "seeds", shape=(ns,))
    _count(st.samples_done, "samples_done", 0, ns)
    for name in ("sample_losses", "sample_swaps", "loss_history"):
        if len(getattr(st, name)) > ns:
            _fail(name, f"has {len(getattr(st, name))} entries, more than n_samples = {ns}")
    if len(st.sample_swaps) != len(st.sample_losses):
        _fail("sample_swaps", "must have one entry per entry of sample_losses")
    _finite_list(st.sample_losses, "sample_losses")
    _finite_list(st.loss_history, "loss_history")
    for i, x in enumerate(st.sample_swaps):
        _count(x, f"sample_swaps[{i}]")
    if st.best_medoids is not None:
        _check_medoids(st.best_medoids, "best_medoids", ctx, k=k)
        _count(st.best_sample, "best_sample", 0, len(st.sample_losses) - 1)
        _finite_list([st.best_loss], "best_loss")
    elif st.best_sample != -1:
        _fail("best_sample", f"must be -1 while there is no best sample, got {st.best_sample}")
    if st.best_X is not None:
        d = getattr(ctx.source, "d", None)
        kk = 0 if st.best_medoids is None else st.best_medoids.shape[0]
        _check_array(st.best_X, "best_X", shape=(kk, d) if isinstance(d, int) else None, kinds="f")
        _finite_list(st.best_X.ravel(), "best_X")
    for i, (med, n_iter, n_swap, loss) in st.pending.items():
        _count(i, "pending_index", 0, ns - 1)
        _check_medoids(med, "pending_medoids", ctx, k=k)
        _count(n_iter, "pending_n_iter")
        _count(n_swap, "pending_n_swap")
        _finite_list([loss], "pending_loss")


def _validate_largeclara(st: LargeClaraState, ctx: StateContext):
    n = ctx.n
    for name in ("draws", "extra_pool", "medoid_sets", "medoids"):
        a = np.asarray(getattr(st, name))
        if a.size and n is not None and (a.min() < 0 or a.max() >= n):
            _fail(name, f"holds point indices outside 0..{n - 1}")
    if st.stage not in (0, 1, 2):
        _fail("stage", f"must be 0, 1 or 2, got {st.stage!r}")


def _validate_build(st: BuildState, ctx: StateContext):
    _check_medoids(st.medoids, "medoids", ctx, max_k=ctx.k)
    if st.dn is None:
        if st.medoids.shape[0]:
            _fail("dn", "is missing although medoids were chosen")
        return
    n = ctx.n
    _check_array(st.dn, "dn", shape=None if n is None else (n,), dtype=ctx.dtype, kinds="iuf")
    _check_dist_cache(st.dn, "dn")
    med = st.medoids
    if med.shape[0] and (st.dn[med] != 0).any():
        _fail("dn", "is not 0 at the chosen medoids")
    if ctx.dtype is not None and n and med.shape[0]:
        # dn[o] = min_j D[m_j, o]: read the rows of (up to) the last CACHE_SAMPLES medoids
        pts = _sample_points(n)
        some = med[-CACHE_SAMPLES:]
        rows = np.asarray(ctx.source.take_rows(some))[:, pts]
        low = rows.min(axis=0)
        if (st.dn[pts] > low).any() or (some.shape[0] == med.shape[0] and (st.dn[pts] != low).any()):
            o = int(pts[np.flatnonzero(st.dn[pts] != low)[0]])
            _fail("dn", f"disagrees with the data at point {o}")


def _validate_lab(st: LabState, ctx: StateContext):
    _check_medoids(st.medoids, "medoids", ctx, max_k=ctx.k)
    _check_rng_state(st.rng_state, "rng_state")


_VALIDATORS = {SwapState: _validate_swap, MSCState: _validate_msc, DynMSCState: _validate_dynmsc,
               ClaransState: _validate_clarans, ClaraState: _validate_clara,
               LargeClaraState: _validate_largeclara, BuildState: _validate_build, LabState: _validate_lab}


def validate_state(state: RunState, ctx: StateContext) -> None:
    """Check every field of a state read back from a file against the run.

    Raises
    ------
    StateFieldError
        Naming the first bad field (the checkpoint loader adds the file name).
    """
    try:
        _VALIDATORS[type(state)](state, ctx)
    except StateFieldError:
        raise
    except (TypeError, ValueError, KeyError, IndexError, AttributeError) as exc:
        raise StateFieldError(state.kind, f"is malformed ({type(exc).__name__}: {exc})") from exc
