"""Dask arrays: a lazy (n, n) ``dask.array.Array`` read one row stripe at a time.

Each read computes only the requested slice with Dask's *synchronous* scheduler: reads
already run inside the engine's worker threads (or distributed workers), so no nested
thread pool is started.
"""

from __future__ import annotations

import math
import sys

import numpy as np

from .._errors import InvalidParameterError, InvalidTypeError
from .base import DissimilaritySource, check_dtype
from .memory import _check_square


def _is_dask_array(obj) -> bool:
    da = sys.modules.get("dask.array")
    return da is not None and isinstance(obj, da.Array)


class DaskArraySource(DissimilaritySource):
    """A dissimilarity held as a lazy dask array.

    Parameters
    ----------
    array : dask.array.Array, shape (n, n)
        Must have known chunk sizes.  ``block_rows`` is its first row-chunk height.

    Notes
    -----
    The source pickles with the array's task graph, so keep the graph cheap (e.g. built with
    ``da.from_zarr``) when using a distributed cluster.  The fingerprint hashes shape,
    dtype and the values of the first, middle and last rows.
    """

    kind = "dask"

    def __init__(self, array):
        if not _is_dask_array(array):
            raise InvalidTypeError(f"expected a dask.array.Array, got {type(array).__name__}")
        if any(isinstance(c, float) and math.isnan(c) for cs in array.chunks for c in cs):
            raise InvalidParameterError(
                "the dask array has unknown chunk sizes; call array.compute_chunk_sizes() first"
            )
        self.n = _check_square(array.shape, "dask array")
        self.dtype = check_dtype(array.dtype, "dask array")
        if array.dtype != self.dtype:
            array = array.astype(self.dtype)
        self._array = array
        self.block_rows = int(min(self.n, array.chunks[0][0]))

    @property
    def array(self):
        return self._array

    def _compute(self, x):
        return np.asarray(x.compute(scheduler="synchronous"))

    def _read_rows(self, start, stop):
        if start == stop:
            return np.empty((0, self.n), dtype=self.dtype)
        return self._compute(self._array[start:stop])

    def _take_rows(self, indices):
        out = np.empty((indices.shape[0], self.n), dtype=self.dtype)
        if indices.shape[0] == 0:
            return out
        uniq, inverse = np.unique(indices, return_inverse=True)
        if uniq.shape[0] == uniq[-1] - uniq[0] + 1:
            rows = self._read_rows(int(uniq[0]), int(uniq[-1]) + 1)
        else:
            rows = self._compute(self._array[uniq])
        out[:] = rows[inverse]
        return out

    def _fingerprint_parts(self):
        return ["dask", *self.sample_fingerprint_rows()]


def _matches(obj) -> bool:
    return _is_dask_array(obj)


def _open(obj, **options):
    if options:
        raise InvalidTypeError(f"dask array sources take no options, got {sorted(options)}")
    return DaskArraySource(obj)
