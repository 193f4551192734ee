"""Result dataclass shared by every clustering driver."""

from __future__ import annotations

from dataclasses import dataclass, field

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
        Algorithm-specific details (e.g. ``sample_losses`` for CLARA).
    """

    medoids: np.ndarray
    labels: np.ndarray
    loss: float
    n_iter: int = 0
    n_swap: int = 0
    loss_history: list = field(default_factory=list)
    algorithm: str = ""
    extra: dict = field(default_factory=dict)

    @property
    def k(self) -> int:
        return int(self.medoids.shape[0])

    @property
    def n(self) -> int:
        return int(self.labels.shape[0])

    def __getattr__(self, name):
        # expose algorithm-specific details (e.g. result.sample_losses) as attributes
        extra = self.__dict__.get("extra", {})
        if name in extra:
            return extra[name]
        raise AttributeError(f"{type(self).__name__!r} object has no attribute {name!r}")

    def __repr__(self) -> str:
        med = np.array2string(self.medoids[:10], separator=", ")
        if self.k > 10:
            med = med[:-1] + ", ...]"
        return (
            f"MedoidsResult(algorithm={self.algorithm!r}, n={self.n}, k={self.k}, "
            f"loss={self.loss:.6g}, n_iter={self.n_iter}, n_swap={self.n_swap}, medoids={med})"
        )
