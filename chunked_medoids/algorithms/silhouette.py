"""Silhouette (Rousseeuw 1987) and medoid silhouette of a clustering, streaming D.

* :func:`silhouette` -- the classic silhouette from full rows of D: one block-parallel
  streaming pass (one read of D), per block only O(rows + c) state.
* :func:`medoid_silhouette` -- ``1 − d1/d2`` from the k medoid rows of D only (no pass
  over D).
"""

from __future__ import annotations

import logging

import numpy as np

from .._errors import InvalidParameterError, InvalidTypeError
from .._kernels.fused_passes import silhouette_fused
from .._kernels.silhouette import medoid_silhouette_values, silhouette_block
from .._typing import ArrayLike, ClientLike, DissimilarityLike, IndexArray, MemoryLimit, ResidentLike
from .._util import check_medoids
from ..engine import Engine
from ..sources import open_dissimilarity
from ._common import driver_scope, medoid_table
from ._fused import fused_ok, fused_pass

logger = logging.getLogger(__name__)


def _silhouette_rows(block, start, stop, state):
    out = np.empty(block.shape[0], dtype=np.float64)
    silhouette_block(block, start, state["labels"], state["counts"], out)
    return out


def _silhouette_fused(F, S, start, stop, state):
    out = np.empty(stop - start, dtype=np.float64)
    silhouette_fused(F, S, start, stop, state["labels"], state["counts"], out)
    return out


def _check_samples(samples) -> bool:
    if not isinstance(samples, (bool, np.bool_)):
        raise InvalidTypeError(f"samples must be True or False, got {type(samples).__name__} {samples!r}")
    return bool(samples)


def _check_labels(labels, n):
    lab = np.asarray(labels)
    if lab.ndim != 1 or lab.shape[0] != n:
        raise InvalidParameterError(f"labels must have shape (n,) = ({n},), got shape {lab.shape}")
    if lab.dtype == object or not (np.issubdtype(lab.dtype, np.integer) or np.issubdtype(lab.dtype, np.floating)
                                   or lab.dtype == bool or lab.dtype.kind in "US"):
        raise InvalidTypeError(f"labels must be an array of cluster labels (ints or strings), got dtype {lab.dtype}")
    if np.issubdtype(lab.dtype, np.floating) and not np.all(np.isfinite(lab)):
        raise InvalidParameterError("labels must not contain NaN or inf")
    uniq, inv = np.unique(lab, return_inverse=True)
    c = uniq.shape[0]
    if not 2 <= c <= n - 1:
        raise InvalidParameterError(
            f"the silhouette needs 2 <= number of distinct labels <= n - 1 = {n - 1}, got {c} "
            "distinct label(s); it is undefined for a single cluster or all-singleton clusters"
        )
    return inv.astype(np.int32).reshape(-1), np.bincount(inv.reshape(-1), minlength=c).astype(np.int64)


def silhouette(D: DissimilarityLike, labels: ArrayLike, *, samples: bool = False,
               memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
               num_workers: int | None = None, block_rows: int | None = None, engine: Engine | None = None,
               validate: bool = True, resident: ResidentLike = "auto") -> float | np.ndarray:
    """Silhouette (Rousseeuw 1987) of a clustering, computed in one streaming pass over D.

    For a point o in cluster A: ``a(o)`` = mean distance to the other members of A,
    ``b(o)`` = the smallest mean distance to the members of another cluster,
    ``s(o) = (b − a) / max(a, b)``.  Points in singleton clusters get ``s = 0`` (and so
    does ``a = b = 0``), as in :func:`sklearn.metrics.silhouette_samples`.

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
        Symmetric n×n dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity`
        accepts).
    labels : array of shape (n,)
        Cluster label of every point (any integers or strings; they are relabelled
        internally).  Between 2 and n − 1 distinct labels.
    samples : bool, default False
        Return the per-point silhouettes instead of their mean.
    memory_limit, client, progress, num_workers, block_rows, engine
        Engine options (see :class:`~chunked_medoids.Engine`).
    validate : bool, default True
        Check the matrix (see :func:`~chunked_medoids.algorithms._common.driver_scope`).
    resident : {"auto", True, False}, default "auto"
        Hold the row stripes read from storage for the rest of the run, so a store is read
        once rather than once per pass (see :class:`~chunked_medoids.Engine`): "auto" when
        the matrix fits half of ``memory_limit`` (on a cluster: half of the workers' summed
        memory limits), True whenever it fits, False never.

    Returns
    -------
    float or ndarray of float64, shape (n,)
        The mean silhouette, or ``s(o)`` for every point with ``samples=True``.

    Raises
    ------
    InvalidParameterError
        Wrong shape of ``labels`` or fewer than 2 / more than n − 1 distinct labels.

    Notes
    -----
    I/O: one read of D, block-parallel (one Dask task per row block).  Memory: row blocks
    plus O(n) for labels and result; per row a scratch of c float64 sums.  Sums are
    accumulated in float64 in index order, so the result does not depend on block sizes
    or the scheduler.
    """
    samples = _check_samples(samples)
    with driver_scope(D, None, memory_limit=memory_limit, client=client, progress=progress,
                      num_workers=num_workers, block_rows=block_rows, engine=engine,
                      validate=validate, resident=resident) as run:
        lab, counts = _check_labels(labels, run.source.n)
        if fused_ok(run.source, run.engine):  # features in memory: rows computed inside the kernel
            parts = fused_pass(run.engine, run.source, _silhouette_fused, {"labels": lab, "counts": counts},
                               desc="silhouette")
        else:
            parts = run.engine.map_blocks(run.source, _silhouette_rows, {"labels": lab, "counts": counts},
                                          desc="silhouette")
        s = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
    if samples:
        return s
    return float(np.mean(s))


def medoid_silhouette(D: DissimilarityLike, medoids: IndexArray, *, samples: bool = False) -> float | np.ndarray:
    """Average medoid silhouette (Van der Laan et al. 2003; Lenssen & Schubert 2022).

    ``s(o) = 1 − d1(o) / d2(o)`` with ``d1 <= d2`` the distances of o to its nearest and
    second-nearest medoid; ``s(o) = 1`` when ``d2 = 0`` (o coincides with two medoids, so
    also ``d1 = 0``).  Every medoid has ``s = 1``.

    Parameters
    ----------
    D : array-like, path or DissimilaritySource
    medoids : array of k >= 2 distinct point indices
    samples : bool, default False
        Return the per-point values instead of their mean.

    Returns
    -------
    float or ndarray of float64, shape (n,)
        The average is computed as ``1 − (Σ_o d1/d2) / n`` (float64, index order), the
        quantity FasterMSC / DynMSC optimise.

    Raises
    ------
    InvalidParameterError
        Fewer than 2 medoids (the medoid silhouette needs a second-nearest medoid; with
        k = 1 it would be 1 for every point, which is meaningless), repeated or
        out-of-range indices.

    Notes
    -----
    I/O: only the k medoid rows of D (``take_rows``), no pass over D, so no engine is
    involved.  Memory: the n×k medoid table.
    """
    samples = _check_samples(samples)
    source = open_dissimilarity(D)
    med = check_medoids(medoids, source.n, name="medoids")
    if med.shape[0] < 2:
        raise InvalidParameterError(
            f"medoid_silhouette needs at least 2 medoids (a second-nearest medoid), got {med.shape[0]}"
        )
    M = medoid_table(source, med)
    s = np.empty(source.n, dtype=np.float64)
    loss = medoid_silhouette_values(M, s)
    if samples:
        return s
    return float(1.0 - loss / source.n)
