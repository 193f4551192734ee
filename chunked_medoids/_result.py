"""Result classes of the clustering drivers.

:class:`MedoidsResult` holds what every method returns; each method family returns a
subclass whose algorithm-specific details are typed attributes (``res.score`` of
:class:`DynMSCResult`, ``res.sample_losses`` of :class:`ClaraResult`, ...).  ``extra``
mirrors those attributes as a plain dict (for JSON summaries and comparisons).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np


@dataclass(repr=False)
class MedoidsResult:
    """Outcome of a k-medoids run.

    Attributes
    ----------
    medoids : ndarray of int64, shape (k,)
        Point indices of the medoids; slot ``s`` is ``medoids[s]``.
    labels : ndarray of int32, shape (n,)
        Slot (0..k-1) of the nearest medoid of every point (lowest slot on ties; a medoid is
        always in its own slot).
    loss : float
        Total (weighted) deviation Σ_o w_o · d(o, medoid(o)), recomputed exactly from the
        final assignment (accumulated in float64).
    n_iter : int
        Passes (FasterPAM) or iterations (PAM, FastPAM1/2, alternating) run.
    n_swap : int
        Swaps performed.
    loss_history : list of float
        Loss after initialisation, then after each pass/iteration.
    algorithm : str
        Registered name of the algorithm that produced it.
    extra : dict
        Algorithm-specific details: the typed attributes of the subclass (filled in
        automatically), plus anything a third-party method passes.
    """

    medoids: np.ndarray
    labels: np.ndarray
    loss: float
    n_iter: int = 0
    n_swap: int = 0
    loss_history: list = field(default_factory=list)
    algorithm: str = ""
    extra: dict = field(default_factory=dict)

    #: the subclass fields mirrored into ``extra`` (None values are left out).
    _extra_fields: ClassVar[tuple[str, ...]] = ()

    def __post_init__(self):
        base = {f.name for f in dataclasses.fields(MedoidsResult)}
        typed = {}
        for f in dataclasses.fields(self):
            if f.name not in base:
                value = getattr(self, f.name)
                if value is not None:
                    typed[f.name] = value
        self.extra = {**typed, **dict(self.extra)}

    @property
    def k(self) -> int:
        """Number of medoids."""
        return int(self.medoids.shape[0])

    @property
    def n(self) -> int:
        """Number of points."""
        return int(self.labels.shape[0])

    def __repr__(self) -> str:
        med = np.array2string(self.medoids[:10], separator=", ")
        if self.k > 10:
            med = med[:-1] + ", ...]"
        return (
            f"{type(self).__name__}(algorithm={self.algorithm!r}, n={self.n}, k={self.k}, "
            f"loss={self.loss:.6g}, n_iter={self.n_iter}, n_swap={self.n_swap}, medoids={med})"
        )


@dataclass(repr=False)
class SwapResult(MedoidsResult):
    """Result of PAM, FastPAM1/2, FasterPAM and alternating.

    Attributes
    ----------
    converged : bool
        The run stopped because no swap improved (not because of ``max_iter``).
    order : str or None
        FasterPAM's candidate order ("natural" / "shuffle"); None for the others.
    distributed : dict or None
        FasterPAM on a cluster: how the walk ran on the workers (``workers``, ``rows``:
        resident / streamed / computed, ``round_trips``, ``pass_round_trips``,
        ``recoveries``...); None when it ran in this process.
    """

    converged: bool = False
    order: str | None = None
    distributed: dict | None = None


@dataclass(repr=False)
class MSCResult(MedoidsResult):
    """Result of FasterMSC (``loss`` is the total deviation; the objective is ``score``).

    Attributes
    ----------
    score : float
        Average medoid silhouette of the medoids.
    score_history : list of float
        After the init and after each pass (non-decreasing).
    converged : bool
    distributed : dict or None
        FasterMSC on a cluster: how the walk ran on the workers (as
        :attr:`SwapResult.distributed`); None when it ran in this process.
    """

    score: float = float("nan")
    score_history: list = field(default_factory=list)
    converged: bool = False
    distributed: dict | None = None


@dataclass(repr=False)
class DynMSCResult(MedoidsResult):
    """Result of DynMSC: the best k's clustering plus what every k scored.

    Attributes
    ----------
    score : float
        Best average medoid silhouette (that of ``medoids``).
    scores : dict of int to float
        k -> average medoid silhouette, k increasing.
    medoids_by_k : dict of int to ndarray
        k -> medoids.
    losses : dict of int to float
        k -> total deviation.
    kmin, kmax : int
        The range of k tried.
    distributed : dict or None
        On a cluster: how the k-steps' walks ran on the workers (as
        :attr:`SwapResult.distributed`, over all k); None when they ran in this process.
    """

    score: float = float("nan")
    scores: dict = field(default_factory=dict)
    medoids_by_k: dict = field(default_factory=dict)
    losses: dict = field(default_factory=dict)
    kmin: int = 2
    kmax: int = 2
    distributed: dict | None = None


@dataclass(repr=False)
class ClaraResult(MedoidsResult):
    """Result of CLARA, FastCLARA and FasterCLARA.

    Attributes
    ----------
    sample_losses : list of float
        Full-data loss of every sample's medoids, in sample order.
    sample_size, n_samples : int
    variant : str
    best_sample : int
        Index of the winning sample.
    include_best : bool
    wave_size : int
    mode : str
        "features" or "matrix".
    clara_loss : float
        Full-data loss before ``polish``.
    polished : bool
    polish_n_iter : int or None
        FasterPAM passes of the polish (None without polish).
    """

    sample_losses: list = field(default_factory=list)
    sample_size: int = 0
    n_samples: int = 0
    variant: str = ""
    best_sample: int = -1
    include_best: bool = True
    wave_size: int = 1
    mode: str = ""
    clara_loss: float = float("nan")
    polished: bool = False
    polish_n_iter: int | None = None


@dataclass(repr=False)
class ClaransResult(MedoidsResult):
    """Result of CLARANS / FastCLARANS: the winning search plus every search's figures.

    Attributes
    ----------
    restart_losses, restart_init_losses : list of float
        Final / starting loss of every local search.
    restart_n_eval, restart_n_swap : list of int
        Neighbours evaluated / swaps of every local search.
    best_restart : int
    numlocal : int
    maxneighbor : int
        The resolved count of consecutive failures ending a search.
    """

    restart_losses: list = field(default_factory=list)
    restart_n_eval: list = field(default_factory=list)
    restart_n_swap: list = field(default_factory=list)
    restart_init_losses: list = field(default_factory=list)
    best_restart: int = 0
    numlocal: int = 0
    maxneighbor: int = 0


@dataclass(repr=False)
class LargeClaraResult(MedoidsResult):
    """Result of LargeCLARA (:func:`~chunked_medoids.largeclara`, and :func:`~chunked_medoids.clara`
    with ``variant="largeclara"`` or its large-n default).

    Attributes
    ----------
    sample_losses : list of float
        Exact full-data loss of every sample's medoids, in sample order.
    sample_passes, sample_swaps : list of int
        FasterPAM passes / swaps of every sample (both levels).
    best_sample : int
        Index of the winning sample (earliest on ties).
    sample_medoids : ndarray of int64, shape (n_samples, k)
        Every sample's medoids (global indices).
    sample_size, init_size, n_samples, max_passes : int
        The resolved sizes of the samples stage.
    polish_iter, polish_candidates : int
        The resolved polish bounds.
    polish_losses : list of float
        Full-data loss of every polish iteration (accepted or not).
    polish_changed : int
        Medoids the polish replaced in total.
    polish_pool : int
        Points the polish drew its candidates from (the samples and the further uniform points).
    variant : str
        "largeclara".
    mode : str
        "features".
    distinct_rows : int
        Distinct feature rows counted by the exact refinement (0: not counted -- refinement
        off, weighted input, or more than ``refine_distinct`` distinct rows).
    refine_passes, refine_swaps : int
        FasterPAM passes / swaps of the exact refinement on the weighted distinct rows
        (0 when it did not run).
    polished, polish_n_iter, clara_loss : bool, int, float or None
        Set only by ``clara(..., polish=True)``: FasterPAM on the full data ran afterwards,
        its passes, and the loss before it.
    """

    sample_losses: list = field(default_factory=list)
    sample_passes: list = field(default_factory=list)
    sample_swaps: list = field(default_factory=list)
    best_sample: int = -1
    sample_medoids: np.ndarray | None = None
    sample_size: int = 0
    init_size: int = 0
    n_samples: int = 0
    max_passes: int = 0
    polish_iter: int = 0
    polish_candidates: int = 0
    polish_losses: list = field(default_factory=list)
    polish_changed: int = 0
    polish_pool: int = 0
    distinct_rows: int = 0
    refine_passes: int = 0
    refine_swaps: int = 0
    variant: str = "largeclara"
    mode: str = "features"
    polished: bool | None = None
    polish_n_iter: int | None = None
    clara_loss: float | None = None
