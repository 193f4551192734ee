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

=====================  ====================================================  ==============
state                  drivers                                               saved
=====================  ====================================================  ==============
:class:`SwapState`     pam, fastpam1, fastpam2, fasterpam, alternating       block / iteration
:class:`MSCState`      fastermsc                                             block / pass
:class:`DynMSCState`   dynmsc                                                block / pass / k
:class:`ClaransState`  clarans, fastclarans                                  wave of searches
:class:`ClaraState`    clara, fastclara, fasterclara                         sample
:class:`BuildState`    the BUILD init of any of the above                    medoid
:class:`LabState`      the LAB init of any of the above                      medoid
=====================  ====================================================  ==============
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


def _i64(a) -> np.ndarray:
    return np.asarray(a, dtype=np.int64)


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
        return cls(medoids=_i64(state["medoids"]), n_iter=int(state["n_iter"]), n_swap=int(state["n_swap"]),
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
        return cls(medoids=_i64(state["medoids"]), run=MSCPass.from_state(state["run"]),
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
        return cls(medoids=_i64(state["medoids"]), run=MSCPass.from_state(state["run"]),
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
        med = _i64(state["medoids"])
        results = [(med[i].copy(), float(state["losses"][i]), int(state["n_eval"][i]),
                    int(state["n_swap"][i]), float(state["init_losses"][i])) for i in range(med.shape[0])]
        return cls(seeds=_i64(state["seeds"]), init=_i64(state["init"]) if state["has_init"] else None,
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
        pidx = _i64(state["pending_index"])
        pmed = _i64(state["pending_medoids"])
        pending = {int(i): (pmed[q].copy(), int(state["pending_n_iter"][q]), int(state["pending_n_swap"][q]),
                            float(state["pending_loss"][q])) for q, i in enumerate(pidx)}
        return cls(draws=_i64(state["draws"]), seeds=_i64(state["seeds"]),
                   samples_done=int(state["samples_done"]),
                   best_medoids=_i64(state["best_medoids"]) if state["has_best"] else None,
                   best_loss=float(state["best_loss"]), best_sample=int(state["best_sample"]),
                   best_X=np.asarray(state["best_X"]) if state["has_best_X"] else None,
                   sample_losses=_floats(state["sample_losses"]), loss_history=_floats(state["loss_history"]),
                   sample_swaps=[int(x) for x in state["sample_swaps"]], pending=pending)


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
        return cls(medoids=_i64(state["medoids"]), dn=np.array(state["dn"]) if state["has_dn"] else None)


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
        return cls(medoids=_i64(state["medoids"]), rng_state=state["rng_state"])


#: states written while an initialisation runs (before the driver's own state exists).
INIT_STATES = (BuildState, LabState)
