"""In-memory numpy arrays and ``np.memmap`` (no copy)."""

from __future__ import annotations

import mmap
import os

import numpy as np

from .._budget import natural_block_rows
from .._errors import InvalidParameterError
from .base import DissimilaritySource, check_dtype


def _check_square(shape, what="dissimilarity matrix") -> int:
    if len(shape) != 2 or shape[0] != shape[1]:
        raise InvalidParameterError(
            f"{what} must be square (n, n), got shape {tuple(shape)}; pass features through "
            "from_features(X, metric=...) instead"
        )
    if shape[0] == 0:
        raise InvalidParameterError(f"{what} is empty (shape {tuple(shape)}); need at least one point")
    return int(shape[0])


def _is_whole_memmap(arr) -> bool:
    """True for an ``np.memmap`` that maps a file region itself (not a view of another one).

    Only such arrays can be re-mapped from ``(filename, offset, dtype, shape, order)``; a
    slice of a memmap keeps its parent's offset and must pickle with its data.
    """
    return (isinstance(arr, np.memmap) and isinstance(arr.base, mmap.mmap)
            and isinstance(getattr(arr, "filename", None), (str, os.PathLike)))


class NumpySource(DissimilaritySource):
    """A dissimilarity already in memory (numpy array) or memory-mapped (``np.memmap``).

    The array is wrapped without a copy when it is C-contiguous with a supported dtype in
    native byte order.  A memmap pickles as (filename, offset, dtype, shape, order) and is
    re-mapped on unpickling, so workers never receive the data itself.
    """

    kind = "numpy"

    def __init__(self, array: np.ndarray):
        n = _check_square(array.shape)
        dtype = check_dtype(array.dtype)
        if array.dtype != dtype or not (array.flags.c_contiguous or array.flags.f_contiguous):
            array = np.ascontiguousarray(array, dtype=dtype)
        self._array = array
        self.n = n
        self.dtype = dtype
        self.block_rows = natural_block_rows(n, dtype.itemsize)
        self._fp = None

    @property
    def array(self) -> np.ndarray:
        return self._array

    @property
    def rows_in_memory(self) -> bool:  # a memmap reads its file: worth holding
        return not isinstance(self._array, np.memmap)

    def _read_rows(self, start, stop):
        return self._array[start:stop]

    def _take_rows(self, indices):
        return self._array[indices]

    def _fingerprint_parts(self):
        if self._fp is None:
            import hashlib

            h = hashlib.sha256()
            for start, stop in self.row_blocks():
                h.update(np.ascontiguousarray(self._array[start:stop]).view(np.uint8).tobytes())
            self._fp = h.hexdigest()
        return ["array", self._fp]

    def __repr__(self) -> str:
        arr = self._array
        where = ""
        if isinstance(arr, np.memmap) and getattr(arr, "filename", None) is not None:
            where = f" file={os.fspath(arr.filename)!r}"
        return (f"<{type(self).__name__} kind={self.kind!r}{where} n={self.n} dtype={self.dtype} "
                f"block_rows={self.block_rows}>")

    def __getstate__(self):
        state = self.__dict__.copy()
        arr = self._array
        if _is_whole_memmap(arr):
            state["_array"] = None
            state["_memmap"] = (os.fspath(arr.filename), arr.offset, arr.dtype.str, arr.shape,
                                "F" if (arr.flags.f_contiguous and not arr.flags.c_contiguous) else "C")
        return state

    def __setstate__(self, state):
        mm = state.pop("_memmap", None)
        self.__dict__.update(state)
        if mm is not None:
            filename, offset, dtype, shape, order = mm
            self._array = np.memmap(filename, mode="r", dtype=np.dtype(dtype), shape=shape,
                                    offset=offset, order=order)
