"""The source contract: a symmetric n×n dissimilarity streamed in row blocks.

See docs/architecture.rst §3.  A source never holds more than the rows it was asked for
(unless it wraps an array that already is in memory), pickles cheaply (file-backed sources
carry a path, never an open handle), and yields identical values whatever the block
boundaries are.
"""

from __future__ import annotations

import abc
import hashlib
import sys
import threading
from collections.abc import Iterable, Iterator

import numpy as np

from .._errors import InvalidParameterError, InvalidTypeError, UnsupportedDtypeError
from .._typing import ArrayLike

#: block buffers :func:`block_buffer` keeps for reuse (bytes in all, busy or idle): the
#: blocks in flight of a streamed pass (readers + read-ahead + the one processed, and the
#: float32 blocks float16 ones are converted into).  Idle ones are let go at the end of a
#: stream (:func:`release_block_buffers`).
POOL_MAX_BYTES = 1 << 30
#: alignment of the buffers of :func:`block_buffer` (``O_DIRECT`` reads go straight into them).
BUFFER_ALIGN = 4096


class _BufferPool:
    """Block buffers by size, reused once nothing refers to them (see :func:`block_buffer`).

    Every array handed out is a view of a pooled owner array, and numpy makes every view of a
    view refer to the owner directly, so an owner whose only reference is the pool's is free
    (``sys.getrefcount``).  No callback, no lock-step with the consumer: a block (or a row
    of it) kept anywhere keeps its buffer out of reuse.  Several sizes live side by side
    (float16 blocks and the float32 blocks they are converted into); idle buffers of other
    sizes make room for a new size.
    """

    def __init__(self):
        self.owners: dict[int, list] = {}
        self.lock = threading.Lock()

    def _tracked(self) -> int:
        return sum(size * len(v) for size, v in self.owners.items())

    def get(self, nbytes: int) -> np.ndarray:
        with self.lock:
            mine = self.owners.setdefault(nbytes, [])
            for raw in mine:
                # references: the list, the loop variable, getrefcount's argument
                if sys.getrefcount(raw) == 3:
                    return _aligned_view(raw, nbytes)
            raw = np.empty(nbytes + BUFFER_ALIGN, dtype=np.uint8)
            if self._tracked() + nbytes > POOL_MAX_BYTES:  # drop idle buffers of other sizes
                for size in list(self.owners):
                    if size != nbytes:
                        self.owners[size] = [r for r in self.owners[size] if sys.getrefcount(r) > 3]  # busy
                        if not self.owners[size]:
                            del self.owners[size]
            if self._tracked() + nbytes <= POOL_MAX_BYTES:
                mine.append(raw)
            return _aligned_view(raw, nbytes)

    @property
    def idle_bytes(self) -> int:
        with self.lock:
            return sum(size for size, v in self.owners.items() for raw in v if sys.getrefcount(raw) == 3)


    def release(self) -> None:
        with self.lock:
            for size in list(self.owners):
                self.owners[size] = [r for r in self.owners[size] if sys.getrefcount(r) > 3]  # busy
                if not self.owners[size]:
                    del self.owners[size]


def _aligned_view(raw: np.ndarray, nbytes: int) -> np.ndarray:
    off = (-raw.ctypes.data) % BUFFER_ALIGN
    return raw[off:off + nbytes]


_POOL = _BufferPool()


def release_block_buffers() -> None:
    """Let the idle buffers of :func:`block_buffer` go (the end of a stream of blocks)."""
    _POOL.release()


def block_buffer(shape: tuple[int, int], dtype) -> np.ndarray:
    """An uninitialised C-contiguous array for a block read from storage, page aligned.

    Its memory is reused for a later block of the same size once the array and every view of
    it are gone: a pass that allocated every block afresh spent a quarter of its CPU in the
    kernel zeroing new pages (``perf``, cold n = 60000 pass).  The pool holds at most
    :data:`POOL_MAX_BYTES` (beyond that, blocks are plain allocations).  The caller must
    overwrite every element.
    """
    dtype = np.dtype(dtype)
    nbytes = int(shape[0]) * int(shape[1]) * dtype.itemsize
    if nbytes < (1 << 20):  # small: not worth it
        return np.empty(shape, dtype=dtype)
    return _POOL.get(nbytes).view(dtype).reshape(shape)


#: dtypes a dissimilarity may have; everything else is refused with the dtype named.
SUPPORTED_DTYPES = (np.dtype(np.float32), np.dtype(np.float64), np.dtype(np.int32), np.dtype(np.int64))


def check_dtype(dtype, what: str = "dissimilarity") -> np.dtype:
    dt = np.dtype(dtype)
    if dt.newbyteorder("=") not in SUPPORTED_DTYPES:
        raise UnsupportedDtypeError(
            f"{what} dtype {dt} is not supported; use one of "
            f"{', '.join(str(d) for d in SUPPORTED_DTYPES)} (convert with .astype('float32'))"
        )
    return dt.newbyteorder("=")


def check_storage_dtype(dtype, what: str = "dissimilarity") -> tuple[np.dtype, np.dtype]:
    """``(dtype of the values read, dtype stored)`` of a stored matrix.

    Like :func:`check_dtype`, but also accepts float16, the 2-byte storage type
    (:mod:`chunked_medoids._quant`): it is read as float32 (dequantised block by block).
    """
    dt = np.dtype(dtype).newbyteorder("=")
    if dt == np.float16:
        return np.dtype(np.float32), dt
    dt = check_dtype(dtype, what)
    return dt, dt


def fill_marker(fill):
    """The marker of never-written chunks for a store fill value, or None if not checkable.

    A NaN fill gives ``"nan"``; a negative fill is returned as is (neither is ever a valid
    distance); anything else (0, None) cannot be told apart from data.
    """
    if fill is None:
        return None
    fill = fill.item() if hasattr(fill, "item") else fill
    if isinstance(fill, float) and np.isnan(fill):
        return "nan"
    if isinstance(fill, (int, float)) and fill < 0:
        return fill
    return None


def first_fill_position(block: np.ndarray, marker, chunk_cols: int):
    """``(block row, column)`` of the first sampled element equal to the fill ``marker``.

    A missing chunk reads as the fill value everywhere, so one element per (row, stored
    chunk column) suffices: ``block[:, ::chunk_cols]``.  None when nothing matches.
    """
    if marker is None or block.size == 0:
        return None
    sample = block[:, ::chunk_cols]
    bad = np.isnan(sample) if marker == "nan" else (sample == marker)
    if not bad.any():
        return None
    i, j = np.unravel_index(int(np.argmax(bad)), bad.shape)
    return int(i), int(j) * chunk_cols


class DissimilaritySource(abc.ABC):
    """Abstract symmetric n×n dissimilarity matrix, read in row blocks.

    Attributes
    ----------
    n : int
        Number of points (rows = columns).
    dtype : numpy.dtype
        Element type of the rows returned (float32, float64, int32 or int64).
    block_rows : int
        Natural row-stripe height (the storage chunk height); readers that ask for
        multiples of it, aligned to it, read every chunk exactly once.
    kind : str
        Registry name of the source kind.

    Notes
    -----
    By symmetry a row of D is also a column: the distances of all points to point ``m`` are
    ``take_rows([m])[0]``.
    """

    kind: str = "abstract"
    #: True when rows cost no storage read (in memory, or computed from features): the
    #: engine's resident stripes (``Engine(resident=...)``) then hold nothing for it.
    rows_in_memory: bool = False
    n: int
    dtype: np.dtype
    block_rows: int
    #: element type as stored when it differs from ``dtype`` (float16 stores: the 2-byte
    #: type, read as float32); None means ``dtype``.  ``_read_rows`` / ``_take_rows`` return
    #: it, and :meth:`read_rows` / :meth:`take_rows` dequantise each block.
    storage_dtype: np.dtype | None = None
    #: float16 stores: stored value = distance x ``scale`` (a power of two, so exact).
    scale: float = 1.0

    # -- the contract -------------------------------------------------------------------
    @abc.abstractmethod
    def _read_rows(self, start: int, stop: int) -> np.ndarray:
        """Return rows ``start:stop`` (already validated) as an array of shape (stop-start, n)."""

    def _take_rows(self, indices: np.ndarray) -> np.ndarray:
        """Rows at ``indices`` (validated, any order, duplicates allowed).

        Default: read each maximal run of consecutive sorted indices once, then scatter.
        """
        out = np.empty((indices.shape[0], self.n), dtype=self.stored_dtype)
        if indices.shape[0] == 0:
            return out
        order = np.argsort(indices, kind="stable")
        sorted_idx = indices[order]
        uniq, inverse = np.unique(sorted_idx, return_inverse=True)
        # runs of consecutive unique indices
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        starts = np.concatenate(([0], breaks))
        stops = np.concatenate((breaks, [uniq.shape[0]]))
        rows = np.empty((uniq.shape[0], self.n), dtype=self.stored_dtype)
        for a, b in zip(starts, stops):
            rows[a:b] = self._read_rows(int(uniq[a]), int(uniq[b - 1]) + 1)
        out[order] = rows[inverse]
        return out

    @abc.abstractmethod
    def _fingerprint_parts(self) -> list:
        """Things that identify the data (path, shape, dtype, creation attributes...)."""

    # -- public API built on the contract ----------------------------------------------
    @property
    def shape(self) -> tuple[int, int]:
        return (self.n, self.n)

    @property
    def itemsize(self) -> int:
        return self.dtype.itemsize

    @property
    def stored_dtype(self) -> np.dtype:
        """The element type as stored (``storage_dtype``, or ``dtype``)."""
        return self.dtype if self.storage_dtype is None else self.storage_dtype

    @property
    def storage_itemsize(self) -> int:
        """Bytes per stored element (2 for float16 stores; else ``itemsize``)."""
        return self.stored_dtype.itemsize

    def _values(self, block: np.ndarray) -> np.ndarray:
        """A block as returned to callers: dequantised (float16 stores), C-contiguous, ``dtype``."""
        if block.dtype == np.float16 and self.dtype != np.float16:
            from .._quant import dequantise

            return dequantise(block, self.scale, out=block_buffer(block.shape, np.float32))
        if block.dtype != self.dtype or not block.flags.c_contiguous:
            block = np.ascontiguousarray(block, dtype=self.dtype)
        return block

    def read_stored_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (float16 stores: the scaled float16 values), unvalidated.

        For the builder, which writes a features source's rows into a store bit for bit.
        """
        start, stop = int(start), int(stop)
        if not (0 <= start <= stop <= self.n):
            raise InvalidParameterError(
                f"read_stored_rows needs 0 <= start <= stop <= n = {self.n}, got start={start}, stop={stop}"
            )
        return np.ascontiguousarray(self._read_rows(start, stop), dtype=self.stored_dtype)

    @property
    def nbytes(self) -> int:
        return self.n * self.n * self.dtype.itemsize

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` of D as a C-contiguous array of shape (stop - start, n)."""
        start = int(start)
        stop = int(stop)
        if not (0 <= start <= stop <= self.n):
            raise InvalidParameterError(
                f"read_rows needs 0 <= start <= stop <= n = {self.n}, got start={start}, stop={stop}"
            )
        block = self._values(self._read_rows(start, stop))
        v = self.__dict__.get("_validator")  # validation on the default path (sources/validate.py)
        if v is not None:
            v.check_rows(block, start, stop, self)
        return block

    def take_rows(self, indices: ArrayLike) -> np.ndarray:
        """Rows at ``indices`` (any order, duplicates allowed), shape (len(indices), n)."""
        idx = np.asarray(indices)
        if idx.ndim != 1:
            raise InvalidParameterError(f"take_rows needs a 1-D index array, got shape {idx.shape}")
        if idx.size and not np.issubdtype(idx.dtype, np.integer):
            raise InvalidTypeError(f"take_rows needs integer indices, got dtype {idx.dtype}")
        idx = idx.astype(np.int64, copy=False)
        if idx.size and (idx.min() < 0 or idx.max() >= self.n):
            raise InvalidParameterError(
                f"take_rows indices must lie in [0, {self.n}), got min {idx.min()} max {idx.max()}"
            )
        block = self._values(self._take_rows(idx))
        v = self.__dict__.get("_validator")
        if v is not None:
            v.check_take(block, idx, self)
        return block

    def mark_rows_read(self, blocks: Iterable[tuple[int, int]]) -> None:
        """Record that the row ranges ``blocks`` were read (and so validated) elsewhere.

        Called by the engine after a distributed pass (the workers' copies of the source
        checked the blocks); a no-op for sources opened without validation.
        """
        v = self.__dict__.get("_validator")
        if v is not None:
            for a, b in blocks:
                v.mark(a, b)

    def fingerprint(self) -> str:
        """Stable identity of the data (for checkpoints): a hex digest.

        Equal for the same data opened twice the same way; different after the data change
        (where the storage lets us tell: file-backed stores hash their metadata and a
        sample of values; in-memory arrays hash their contents).
        """
        h = hashlib.sha256()
        h.update(f"{self.n}|{self.dtype.str}|".encode())
        if self.storage_dtype is not None and self.storage_dtype != self.dtype:
            h.update(f"stored {self.storage_dtype.str} scale {self.scale!r}|".encode())
        for part in self._fingerprint_parts():
            if isinstance(part, np.ndarray):
                h.update(np.ascontiguousarray(part).view(np.uint8).tobytes())
            else:
                h.update(repr(part).encode())
            h.update(b"|")
        return h.hexdigest()[:32]

    def sample_fingerprint_rows(self, count: int = 3) -> list:
        """A few deterministic rows (first, middle, last) whose values go into fingerprints."""
        idx = sorted({0, self.n // 2, self.n - 1})[:count]
        return [self.read_rows(i, i + 1) for i in idx]

    def row_blocks(self, block_rows: int | None = None) -> Iterator[tuple[int, int]]:
        """Yield ``(start, stop)`` row ranges of height ``block_rows`` (default the natural one)."""
        b = int(block_rows or self.block_rows)
        for start in range(0, self.n, b):
            yield start, min(start + b, self.n)

    def close(self) -> None:  # noqa: B027 - optional hook; default: nothing to release
        """Release any open handle (file-backed sources reopen lazily)."""

    def __repr__(self) -> str:
        return f"<{type(self).__name__} kind={self.kind!r} n={self.n} dtype={self.dtype} block_rows={self.block_rows}>"


class StoredRows(DissimilaritySource):
    """The rows of a float16 source as stored: its scaled 2-byte values, not dequantised.

    For the kernels that consume float16 blocks directly (the FasterPAM pass: each element
    converted in registers where it is used, ``_kernels/swap.py``), so no float32 copy of a
    block is written and read again.  Reads go through the wrapped source's own
    ``_read_rows`` / ``_take_rows`` (its fault checks: missing or damaged chunks, a replaced
    store); a source validated while it is read (``sources/validate.py``) still checks the
    dequantised values of every block it has not checked yet.  Blocks are 2 bytes per
    element, so the engine sizes them (and holds resident stripes) at that width.  Made by
    :func:`stored_rows`; never registered as a kind of its own.
    """

    def __init__(self, source: DissimilaritySource):
        self.source = source
        self.n = source.n
        self.dtype = np.dtype(source.stored_dtype)
        self.block_rows = source.block_rows
        self.kind = source.kind
        self.scale = float(source.scale)
        self.rows_in_memory = bool(getattr(source, "rows_in_memory", False))
        self.parallel_reads = bool(getattr(source, "parallel_reads", False))
        chunks = getattr(source, "chunks", None)
        if chunks is not None:
            self.chunks = chunks

    def _read_rows(self, start, stop):
        return self.source._read_rows(start, stop)

    def _take_rows(self, indices):
        return self.source._take_rows(indices)

    def _fingerprint_parts(self):
        return ["stored", self.source.fingerprint()]

    def direct_unit_rows(self):
        """The wrapped source's hint (:meth:`~.zarr_store.ZarrSource.direct_unit_rows`), if any."""
        hint = getattr(self.source, "direct_unit_rows", None)
        return None if hint is None else hint()

    def _check(self, block, rows):
        v = self.source.__dict__.get("_validator")
        if v is None or v.complete:
            return
        values = self.source._values(block)
        if isinstance(rows, tuple):
            v.check_rows(values, rows[0], rows[1], self.source)
        else:
            v.check_take(values, rows, self.source)

    def read_rows(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as stored (float16), C-contiguous; validated like the source's."""
        start, stop = int(start), int(stop)
        if not (0 <= start <= stop <= self.n):
            raise InvalidParameterError(
                f"read_rows needs 0 <= start <= stop <= n = {self.n}, got start={start}, stop={stop}"
            )
        block = np.ascontiguousarray(self._read_rows(start, stop), dtype=self.dtype)
        self._check(block, (start, stop))
        return block

    def take_rows(self, indices: ArrayLike) -> np.ndarray:
        """Rows at ``indices`` as stored (float16); validated like the source's."""
        idx = np.asarray(indices, dtype=np.int64)
        if idx.ndim != 1 or (idx.size and (idx.min() < 0 or idx.max() >= self.n)):
            raise InvalidParameterError(f"take_rows needs 1-D indices in [0, {self.n})")
        block = np.ascontiguousarray(self._take_rows(idx), dtype=self.dtype)
        self._check(block, idx)
        return block

    def __repr__(self) -> str:
        return f"<StoredRows of {self.source!r}>"


def stored_rows(source) -> StoredRows | None:
    """The :class:`StoredRows` view of ``source`` when it stores float16 values read as
    float32 (a float16 store or a float16 features source), else None."""
    stored = getattr(source, "storage_dtype", None)
    if stored is None or np.dtype(stored) != np.float16 or getattr(source, "dtype", None) != np.float32:
        return None
    return StoredRows(source)
