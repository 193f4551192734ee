"""Type aliases used in the annotations of the public API (docs/architecture.rst §12).

The aliases name what a parameter accepts in the words of the docstrings; they add no
runtime check (validation is done by the functions themselves and raises the typed errors
of :mod:`chunked_medoids._errors`).
"""

from __future__ import annotations

import os
from typing import Any, Literal, TypeAlias

import numpy as np
from numpy.typing import ArrayLike, DTypeLike

__all__ = ["ArrayLike", "SourceLike", "ResidentLike", "ClientLike", "DTypeLike", "DissimilarityLike", "FeaturesLike", "IndexArray",
           "InitLike", "MemoryLimit", "MetricLike", "PathLike", "RandomStateLike", "WeightsLike"]

#: a file or directory path.
PathLike: TypeAlias = str | os.PathLike[str]
#: anything :func:`~chunked_medoids.open_dissimilarity` accepts: a numpy array or memmap,
#: a dask array, a zarr array/group, an h5py dataset, a path, or a DissimilaritySource.
DissimilarityLike: TypeAlias = Any
#: an (n, d) feature array (numpy, memmap, dask, zarr, h5py) or a path to one.
FeaturesLike: TypeAlias = Any
#: a memory budget: a number of bytes or a string such as ``"512MiB"``.
MemoryLimit: TypeAlias = int | float | str
#: ``"auto"``, True or False: hold row stripes read from storage for the run (Engine).
ResidentLike: TypeAlias = Literal["auto"] | bool
#: a seed, a SeedSequence, a Generator, or None (fresh entropy).
RandomStateLike: TypeAlias = int | np.random.SeedSequence | np.random.Generator | None
#: a registered init name or an array of k distinct point indices.
InitLike: TypeAlias = str | ArrayLike
#: (n,) non-negative point weights, or None (unweighted).
WeightsLike: TypeAlias = ArrayLike | None
#: a 1-D array of point indices.
IndexArray: TypeAlias = ArrayLike
#: a registered metric name, or a ``numba.njit`` function ``f(x, y) -> float``.
MetricLike: TypeAlias = Any
#: a ``distributed.Client`` to run on, or None (local threads).
ClientLike: TypeAlias = Any
#: a :class:`~chunked_medoids.sources.DissimilaritySource`, or any row reader with ``n``,
#: ``dtype``, ``block_rows`` and ``read_rows(start, stop)`` (what the engine maps over).
SourceLike: TypeAlias = Any
