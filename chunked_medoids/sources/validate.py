"""Checks that a source really is a dissimilarity matrix.

Two ways to validate, with the same rules and the same messages:

* **On the default path** (:func:`attach_validation`, what ``open_dissimilarity(D)`` and every
  clustering function do unless given ``validate=False``): an in-memory array is checked up
  front with vectorised reductions; every other source (np.memmap / .npy file, dask array,
  zarr, HDF5, custom sources) is checked *while the algorithm's own reads stream it*, so no
  extra pass over the matrix is made.  See :class:`StreamValidator` for exactly what that
  check sees.  Stores written by :func:`~chunked_medoids.build_dissimilarity` carry
  ``"validated": true`` in their metadata and are not re-checked; sources computed from
  features (:func:`~chunked_medoids.from_features`) are valid by construction (the features
  and every computed value are checked as they are computed).
* **Standalone** (:func:`validate_source`): one bounded-memory streaming pass over the
  whole matrix before use.

The rules: every entry finite (floats) and ``>= 0``; the diagonal exactly 0; ``D[i, j]``
equal to ``D[j, i]`` -- exactly for integer matrices, within
``atol + rtol * max(|D[i, j]|, |D[j, i]|)`` for floating ones.  Each error names the
problem, the first offending position ``D[i, j]`` (row-major order within the block where it
was found), the value and the fix.
"""

from __future__ import annotations

import logging
import os
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from .._budget import validate_block_rows
from .._errors import DissimilarityError, InvalidParameterError, InvalidTypeError
from .._kernels.checks import all_nonneg_finite, sym_pass_float, sym_pass_int
from .._typing import DissimilarityLike, MemoryLimit, RandomStateLike
from .._util import check_int, check_random_state, parse_memory_limit
from .base import DissimilaritySource, check_dtype

logger = logging.getLogger(__name__)

#: default relative asymmetry tolerance of floating-point matrices.
RTOL = 1e-6
#: the sampled column set of the in-pass symmetry check: at most this many columns ...
SAMPLE_COLUMNS = 64
#: ... and at most this many bytes for the sampled rows ``D[S, :]`` held for the run.
SAMPLE_BYTES = 16 << 20
#: seed of the sampled column set's position (a function of n only: reproducible).
_SAMPLE_SEED = 0x5AFE
#: tile edge of the up-front symmetry check of in-memory arrays (two tiles in cache).
_TILE = 512
#: tile edge of the one-pass kernels of that check (rows read in 2-4 KiB segments; a
#: float32 tile pair, 2 MiB, stays in cache between its value scan and its comparison).
_FAST_TILE = 512
#: at most this many threads run the one-pass kernels (the pass is memory-bound) ...
_FAST_THREADS = 2
#: ... and only from this n on (below, one thread: the matrix is small).
_FAST_THREADS_MIN_N = 2048


def _where(src) -> str:
    return repr(src)


def _first(mask: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(mask)[0]
    return int(r), int(c)


# -- the checks (shared by every entry point; ``rows`` maps block rows to point indices) ---
def _rows_desc(rows) -> str:
    if isinstance(rows, tuple):
        return f"rows {rows[0]}:{rows[1]}"
    return f"the {len(rows)} rows read"


def _row_id(rows, r) -> int:
    return int(rows[0] + r) if isinstance(rows, tuple) else int(rows[r])


def check_values(block: np.ndarray, rows, where: str) -> None:
    """Refuse NaN/inf (floats) and negative entries in ``block`` (rows ``rows`` of D).

    ``rows`` is ``(start, stop)`` or an index array.  One reduction over the IEEE bits on the
    happy path (:func:`~chunked_medoids._kernels.checks.all_nonneg_finite`; min and max for
    other layouts and integers); only a failing block is searched for the first offender.
    """
    if block.size == 0:
        return
    is_float = np.issubdtype(block.dtype, np.floating)
    if (is_float and block.flags.c_contiguous and block.dtype in (np.float32, np.float64)
            and all_nonneg_finite(block)):
        return  # one pass over the bits (``_kernels/checks.py``); -0.0 falls through
    lo = block.min()
    if lo >= 0 and (not is_float or block.max() < np.inf):
        return
    if is_float:
        finite = np.isfinite(block)
        if not finite.all():
            r, c = _first(~finite)
            raise DissimilarityError(
                f"dissimilarity {where} contains {block[r, c].item()!r} at D[{_row_id(rows, r)}, {c}] "
                f"({int((~finite).sum())} non-finite entries in {_rows_desc(rows)}); dissimilarities "
                "must be finite: recompute the missing/overflowing entries or drop those points"
            )
        del finite
    neg = block < 0
    r, c = _first(neg)
    raise DissimilarityError(
        f"dissimilarity {where} has a negative value {block[r, c].item()!r} at "
        f"D[{_row_id(rows, r)}, {c}] ({int(neg.sum())} negative entries in {_rows_desc(rows)}); "
        "dissimilarities must be >= 0: clip rounding noise with np.maximum(D, 0) or fix "
        "the metric"
    )


def check_diagonal(diag: np.ndarray, rows, where: str) -> None:
    """Refuse non-zero ``diag[r] = D[row r, row r]``."""
    nz = np.flatnonzero(diag != 0)
    if nz.size:
        i = _row_id(rows, int(nz[0]))
        raise DissimilarityError(
            f"dissimilarity {where} has a non-zero diagonal: D[{i}, {i}] = "
            f"{diag[nz[0]].item()!r} ({nz.size} non-zero diagonal entries in {_rows_desc(rows)}); "
            "the distance of a point to itself must be 0: set it with np.fill_diagonal(D, 0)"
        )


def default_tolerances(dtype, rtol, atol, scale: float):
    """``(atol, rtol)`` used for a matrix of ``dtype``: exact for integers unless given;
    for floats ``atol`` defaults to ``rtol * scale`` (``scale``: the largest magnitude)."""
    if np.issubdtype(dtype, np.integer):
        return (0.0 if atol is None else float(atol)), (0.0 if rtol is None else float(rtol))
    rtol = RTOL if rtol is None else float(rtol)
    return (rtol * float(scale) if atol is None else float(atol)), rtol


def check_pairs(a: np.ndarray, b: np.ndarray, rows, cols, atol: float, rtol: float, where: str) -> None:
    """Compare ``a[r, c] = D[rows[r], cols[c]]`` with ``b[r, c] = D[cols[c], rows[r]]``.

    ``rows`` / ``cols``: ``(start, stop)`` ranges or index arrays.  An exact comparison
    first (the common case: no temporaries beyond one boolean array); the tolerance is only
    evaluated when it fails.
    """
    if a.size == 0 or np.array_equal(a, b):
        return
    if np.issubdtype(a.dtype, np.integer):
        a64 = a.astype(np.float64)
        b64 = b.astype(np.float64)
    else:
        a64, b64 = a, b
    diff = np.abs(a64 - b64)
    bad = diff > atol + rtol * np.maximum(np.abs(a64), np.abs(b64))
    if bad.any():
        r, c = _first(bad)
        i, j = _row_id(rows, r), _row_id(cols, c)
        raise DissimilarityError(
            f"dissimilarity {where} is not symmetric: D[{i}, {j}] = {a[r, c].item()!r} but "
            f"D[{j}, {i}] = {b[r, c].item()!r} (difference {diff[r, c].item()!r} exceeds atol="
            f"{atol!r} + rtol={rtol!r} * |value|; {int(bad.sum())} such entries in this block); "
            "symmetrise the matrix, e.g. D = (D + D.T) / 2 (or store min/max of both halves), "
            "or raise rtol/atol if the difference is rounding"
        )


# -- in-memory arrays: up front -----------------------------------------------------------
def check_array(A: np.ndarray, where: str, *, rtol=None, atol=None) -> None:
    """Validate an in-memory square array completely, reading it once.

    Every entry finite (floats) and ``>= 0``, the diagonal 0 and ``A[i, j]`` vs ``A[j, i]``
    for every pair -- exactly for integers; for floats within ``atol + rtol * max(|A[i, j]|,
    |A[j, i]|)`` with ``rtol`` 1e-6 and ``atol`` ``rtol`` times the largest entry by default.
    Decided by one pass over cache-blocked tile pairs in nogil numba kernels on up to two
    threads (:func:`_array_is_valid`); only a matrix they reject is searched again with
    :func:`_check_array_numpy`, the numpy definition, which raises the error naming the
    first offending entry.
    """
    if _array_is_valid(A, rtol, atol):
        return
    _check_array_numpy(A, where, rtol=rtol, atol=atol)


def _threads() -> int:
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - non-Linux
        cpus = os.cpu_count() or 1
    return max(1, min(_FAST_THREADS, cpus))


def _tile_pair_parts(n: int, t: int, parts: int) -> list:
    """The tile pairs ``(I, J)``, ``J >= I``, in row-major order, cut into ``parts`` runs of
    about equal work (a diagonal pair counts half: it compares one triangle)."""
    nt = -(-n // t)
    ii, jj = np.triu_indices(nt)
    pairs = np.stack([ii, jj], axis=1).astype(np.int64)
    work = np.where(ii == jj, 0.5, 1.0).cumsum()
    cuts = np.searchsorted(work, work[-1] * np.arange(1, parts) / parts)
    return [p for p in np.split(pairs, cuts) if p.shape[0]]


def _run_parts(fn, parts):
    """``[fn(p) for p in parts]``, the first part in this thread and the others on threads
    (the kernels release the GIL)."""
    if len(parts) == 1:
        return [fn(parts[0])]
    with ThreadPoolExecutor(max_workers=len(parts) - 1, thread_name_prefix="cm-check") as pool:
        futures = [pool.submit(fn, p) for p in parts[1:]]
        first = fn(parts[0])
        return [first] + [f.result() for f in futures]


_UINT = {np.dtype(np.float32): np.uint32, np.dtype(np.float64): np.uint64}


def _array_is_valid(A: np.ndarray, rtol=None, atol=None, *, tile=None, threads=None):
    """True if the square array ``A`` is a valid dissimilarity by the rules of
    :func:`_check_array_numpy` (with the same tolerances), False if not, None when the
    kernels do not apply (not C- or F-contiguous, non-native byte order, other dtypes).

    One pass over tile pairs (``_kernels/checks.py``: :func:`sym_pass_float`,
    :func:`sym_pass_int`); floats with the default ``atol`` take a second pass only when a
    pair differs by more than the tolerance of the largest entry seen so far.  ``tile`` /
    ``threads``: the tile edge and thread count (default ``_FAST_TILE`` and up to
    ``_FAST_THREADS`` from n = ``_FAST_THREADS_MIN_N`` on; the tests use small tiles).
    """
    if A.ndim != 2 or A.shape[0] != A.shape[1] or A.size == 0 or not A.dtype.isnative:
        return None
    if not A.flags.c_contiguous:
        if not A.flags.f_contiguous:
            return None
        A = A.T  # every rule holds for A exactly when it holds for A.T
    dt = A.dtype
    n = A.shape[0]
    t = int(tile or _FAST_TILE)
    if threads is None:
        threads = _threads() if n >= _FAST_THREADS_MIN_N else 1
    parts = _tile_pair_parts(n, t, threads)
    if dt in _UINT:
        ut = _UINT[dt]
        bits = ut(8 * dt.itemsize - 1)
        neg0 = ut(1) << bits
        mag = ~neg0
        inf_bits = np.array([np.inf], dtype=dt).view(ut)[0]
        rtol = RTOL if rtol is None else float(rtol)
        U = A.view(ut)

        def run(pairs, tol, known):
            mbits = np.zeros(1, dtype=ut)
            return sym_pass_float(A, U, pairs, t, neg0, mag, inf_bits, mbits, mbits.view(dt),
                                  np.array([tol], dtype=dt), dt.type(rtol), rtol, known)

        known = atol is not None
        out = _run_parts(lambda p: run(p, float(atol) if known else 0.0, known), parts)
        if any(bad for _, bad, _ in out):
            return False
        if known or not any(recheck for _, _, recheck in out):
            return True
        hi = float(np.array([max(m for m, _, _ in out)], dtype=ut).view(dt)[0])
        out = _run_parts(lambda p: run(p, rtol * hi, True), parts)
        return not any(bad for _, bad, _ in out)
    if dt in (np.dtype(np.int32), np.dtype(np.int64)):
        atol, rtol = default_tolerances(dt, rtol, atol, 0.0)
        return not any(_run_parts(lambda p: sym_pass_int(A, p, t, atol, rtol), parts))
    return None


def _check_array_numpy(A: np.ndarray, where: str, *, rtol=None, atol=None) -> None:
    """The numpy definition of :func:`check_array`, which names the first offender.

    Finite and non-negative (two whole-array reductions), zero diagonal, and the full
    symmetry ``A == A.T`` compared in ``_TILE``-sized tile pairs (no n×n temporary).  Floating
    matrices: ``atol`` defaults to ``rtol`` (1e-6) times the largest entry.
    """
    n = A.shape[0]
    lo = A.min() if A.size else 0
    is_float = np.issubdtype(A.dtype, np.floating)
    hi = A.max() if A.size else 0
    if not (lo >= 0) or (is_float and not hi < np.inf):
        step = max(1, (1 << 22) // max(1, n))
        for a in range(0, n, step):
            check_values(A[a:a + step], (a, min(a + step, n)), where)
    check_diagonal(np.diagonal(A), (0, n), where)
    atol, rtol = default_tolerances(A.dtype, rtol, atol, float(hi) if A.size else 0.0)
    t = _TILE
    for i0 in range(0, n, t):
        i1 = min(i0 + t, n)
        for j0 in range(i0, n, t):
            j1 = min(j0 + t, n)
            check_pairs(A[i0:i1, j0:j1], A[j0:j1, i0:i1].T, (i0, i1), (j0, j1), atol, rtol, where)


# -- streamed sources: while the algorithm reads them --------------------------------------
def sampled_columns(source) -> tuple[int, int]:
    """The sampled column range ``S = [s0, s1)`` of the in-pass symmetry check of ``source``.

    ``s = min(64, n, 16 MiB / (n · itemsize))`` consecutive points starting at a storage
    chunk boundary (``block_rows``) drawn from a seed that depends on n only.
    """
    n = int(source.n)
    s = int(max(1, min(SAMPLE_COLUMNS, n, SAMPLE_BYTES // max(1, n * np.dtype(source.dtype).itemsize))))
    natural = max(1, int(source.block_rows))
    starts = max(1, (n - s) // natural + 1)
    s0 = min(natural * int(np.random.default_rng(_SAMPLE_SEED + n).integers(0, starts)), n - s)
    return s0, s0 + s


class StreamValidator:
    """Validates the rows of a source as they are read (``read_rows`` / ``take_rows``).

    Held by a source opened with validation (see :func:`attach_validation`); the source's
    ``read_rows`` and ``take_rows`` hand every block to :meth:`check_rows` / :meth:`check_take`
    until each row has been checked once, after which the check costs one attribute lookup.

    What is checked, exactly, once every row has been read (by the algorithm's first pass,
    for every method that streams the whole matrix):

    * every entry of every row read is finite and ``>= 0`` (two reductions per block);
    * every diagonal entry ``D[i, i]`` of a row read is 0;
    * ``D[i, j]`` vs ``D[j, i]`` for **every pair of rows read in the same block** (the
      square ``block[:, rows]`` the pass already holds: a block's diagonal square, for a
      row stripe; the sampled rows, for a scattered selection such as a CLARA sample);
    * ``D[i, j]`` vs ``D[j, i]`` for **every pair involving a sampled column** ``j ∈ S``,
      where ``S`` is a fixed set of ``s`` consecutive points (``s = min(64, n, 16 MiB / row
      size)``, starting at a storage-chunk boundary drawn from a seed that depends on n
      only; :func:`sampled_columns`).  The rows ``D[S, :]`` are read once, at the first
      check (one storage chunk or ``s`` rows: the only read the check adds), and each
      block's columns ``block[:, S]`` are compared with them.

    What it does not guarantee: symmetry of a pair ``(i, j)`` whose rows were read in
    different blocks when neither ``i`` nor ``j`` is in ``S``.  A single asymmetric entry at
    a random off-diagonal-block position is found with probability about ``2 s / n`` (plus
    the chance that both rows share a block); asymmetry that is widespread (a transposed
    triangle, a scaled stripe, rounding of one half) is found with certainty because it
    touches ``S``.  Use :func:`validate_source` with sampled pairs, or symmetrise the matrix,
    when you need more.  Methods that read only part of D (CLARA samples, the medoid rows)
    check only what they read.

    Works under local threads (the validator is shared) and on a distributed cluster (the
    validator travels with the pickled source, without its sampled rows, which a worker
    re-reads from the source on its first check; workers check every block they read, and
    the engine records a finished pass's blocks as checked so later passes skip them).
    """

    def __init__(self, source, *, rtol=None, atol=None):
        self.where = _where(source)
        self.n = int(source.n)
        self.dtype = check_dtype(source.dtype, f"dissimilarity {self.where}")
        self.s0, self.s1 = sampled_columns(source)
        self._tolerances = (rtol, atol)
        self.atol = self.rtol = None  # set when the sampled rows are read
        self.srows = None  # D[S, :], read on the first check (opening reads nothing)
        self._s_unreadable = False
        self.checked = np.zeros(self.n, dtype=np.bool_)
        self.n_checked = 0
        self.complete = False
        self._lock = threading.Lock()

    # pickling (distributed workers): small -- no lock, no sampled rows (a worker re-reads
    # them from its own copy of the source, one chunk, on its first check) and no record of
    # checked rows (a worker checks every block it reads; the driver records finished passes)
    def __getstate__(self):
        state = self.__dict__.copy()
        del state["_lock"]
        state["srows"] = state["checked"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._lock = threading.Lock()

    @property
    def columns(self) -> tuple[int, int]:
        """The sampled column range ``S = [s0, s1)``."""
        return self.s0, self.s1

    def _sampled_rows(self, source) -> np.ndarray:
        """``D[S, :]``, read (and checked) on the first call of this copy of the validator."""
        srows = self.srows
        if srows is None and not self._s_unreadable:
            with self._lock:
                if self.srows is None and not self._s_unreadable:
                    s0, s1 = self.s0, self.s1
                    try:
                        rows = np.ascontiguousarray(source._read_rows(s0, s1), dtype=self.dtype)
                    except OSError:  # e.g. a lost chunk: reported when the pass reads those rows
                        logger.warning("sampled rows %d:%d of %s cannot be read; the sampled-column "
                                       "symmetry check is skipped", s0, s1, self.where, exc_info=True)
                        self._s_unreadable = True
                        return None
                    check_values(rows, (s0, s1), self.where)
                    check_diagonal(rows[np.arange(s1 - s0), np.arange(s0, s1)], (s0, s1), self.where)
                    rtol, atol = self._tolerances
                    self.atol, self.rtol = default_tolerances(self.dtype, rtol, atol, float(rows.max()))
                    sq = rows[:, s0:s1]
                    check_pairs(sq, sq.T, (s0, s1), (s0, s1), self.atol, self.rtol, self.where)
                    self.srows = rows
                srows = self.srows
        return srows

    def _tol(self, block):
        if self.atol is not None:
            return self.atol, self.rtol
        rtol, atol = self._tolerances  # sampled rows unreadable: scale by this block
        return default_tolerances(self.dtype, rtol, atol, float(block.max()) if block.size else 0.0)

    def _seen(self, sel) -> bool:
        return self.checked is not None and bool(self.checked[sel].all())

    def check_rows(self, block: np.ndarray, start: int, stop: int, source=None) -> None:
        """Check rows ``start:stop`` (``block``) unless every one of them was checked before."""
        if self.complete or self._seen(slice(start, stop)):
            return
        srows = self._sampled_rows(source)
        rows = (start, stop)
        check_values(block, rows, self.where)
        m = stop - start
        check_diagonal(block[np.arange(m), np.arange(start, stop)], rows, self.where)
        sq = block[:, start:stop]
        check_pairs(sq, sq.T, rows, rows, *self._tol(block), self.where)
        s0, s1 = self.s0, self.s1
        if srows is not None:
            check_pairs(block[:, s0:s1], srows[:, start:stop].T, rows, (s0, s1),
                        self.atol, self.rtol, self.where)
        self.mark(start, stop)

    def check_take(self, block: np.ndarray, indices: np.ndarray, source=None) -> None:
        """Check the rows ``indices`` (``block``, any order) unless all were checked before."""
        if self.complete or indices.shape[0] == 0 or self._seen(indices):
            return
        srows = self._sampled_rows(source)
        check_values(block, indices, self.where)
        m = indices.shape[0]
        check_diagonal(block[np.arange(m), indices], indices, self.where)
        sq = block[:, indices]
        check_pairs(sq, sq.T, indices, indices, *self._tol(block), self.where)
        s0, s1 = self.s0, self.s1
        if srows is not None:
            check_pairs(block[:, s0:s1], srows[:, indices].T, indices, (s0, s1),
                        self.atol, self.rtol, self.where)
        self.mark(indices)

    def mark(self, start, stop=None) -> None:
        """Record rows ``start:stop`` (or the index array ``start``) as checked."""
        if self.complete or self.checked is None:
            return
        sel = slice(int(start), int(stop)) if stop is not None else np.asarray(start, dtype=np.int64)
        with self._lock:
            new = int(np.count_nonzero(~self.checked[sel]))
            if isinstance(sel, np.ndarray) and new:
                new = int(np.count_nonzero(~self.checked[np.unique(sel)]))
            self.checked[sel] = True
            self.n_checked += new
            if self.n_checked >= self.n:
                self.complete = True
                logger.debug("every row of %s has been validated", self.where)

    def __repr__(self) -> str:
        return (f"<StreamValidator of {self.where}: {self.n_checked}/{self.n} rows checked, "
                f"sampled columns {self.s0}:{self.s1}>")


def needs_validation(src) -> bool:
    """False when ``src`` is known valid: features source, a validated store, checked before."""
    d = getattr(src, "__dict__", {})
    if d.get("_validator") is not None or d.get("_validated", False) or d.get("_unvalidated", False):
        return False  # checked (or being checked) already, or opened with validate=False
    if getattr(src, "kind", None) == "features":
        return False  # features and every computed value are checked as they are computed
    meta = getattr(src, "meta", None)
    return not (isinstance(meta, dict) and meta.get("validated") is True)


def attach_validation(src, *, rtol=None, atol=None):
    """The validating counterpart of ``src`` (what ``open_dissimilarity(validate=True)`` returns).

    In-memory arrays are checked at once (:func:`check_array`); other sources get a
    :class:`StreamValidator` (nothing is read until the algorithm reads).  ``src`` itself is
    never modified: a shallow copy carries the validation state.  Sources that need no
    validation (:func:`needs_validation`) are returned as they are.
    """
    if not needs_validation(src):
        return src
    from .memory import NumpySource

    new = object.__new__(type(src))
    new.__dict__.update(src.__dict__)
    if isinstance(src, NumpySource) and not isinstance(src.array, np.memmap):
        check_array(src.array, _where(src), rtol=rtol, atol=atol)
        new._validated = True
    else:
        new._validator = StreamValidator(src, rtol=rtol, atol=atol)
    return new


def skip_validation(src):
    """The counterpart of ``src`` opened with ``validate=False``: marked so that the inner
    ``open_dissimilarity`` calls of a run (init, sub-steps) do not validate it either.
    ``src`` itself is not modified (a shallow copy carries the mark)."""
    if not needs_validation(src):
        return src
    new = object.__new__(type(src))
    new.__dict__.update(src.__dict__)
    new._unvalidated = True
    return new


def check_validate_flag(validate) -> bool:
    if not isinstance(validate, (bool, np.bool_)):
        raise InvalidTypeError(
            f"validate must be True or False, got {type(validate).__name__} {validate!r}")
    return bool(validate)


# -- standalone: one streaming pass before use --------------------------------------------
def _check_pair(a: np.ndarray, b: np.ndarray, atol, rtol, rows0: int, cols0: int, src):
    """Compare ``a = D[rows0:.., cols0:..]`` with ``b = D[cols0:.., rows0:..].T``."""
    if a.size == 0:
        return
    if atol is None:
        if np.issubdtype(a.dtype, np.integer):
            atol = 0.0
        else:
            atol = rtol * float(max(np.abs(a).max(), np.abs(b).max()))
    check_pairs(a, b, (rows0, rows0 + a.shape[0]), (cols0, cols0 + a.shape[1]), float(atol), rtol, _where(src))


def validate_source(source: DissimilarityLike, *, memory_limit: MemoryLimit = "256MiB", n_sample_pairs: int = 8,
                    atol: float | None = None, rtol: float = RTOL,
                    random_state: RandomStateLike = 0) -> DissimilaritySource:
    """Check that ``source`` is a valid dissimilarity matrix, streaming in bounded memory.

    This is the standalone, read-everything check.  The clustering functions validate on
    their default path without it (see :func:`attach_validation`, no extra pass); call this
    to check a matrix once, before any clustering, or with more sampled block pairs.

    Parameters
    ----------
    source : DissimilaritySource or anything :func:`open_dissimilarity` accepts
        The matrix to check.
    memory_limit : int or str, default "256MiB"
        Budget for the row blocks held at once (block height = budget / (4 · n · itemsize),
        at least one row); two sampled row blocks are held for the off-diagonal symmetry
        checks.
    n_sample_pairs : int, default 8
        Number of random off-diagonal block pairs ``D[a:b, c:d]`` compared with
        ``D[c:d, a:b].T`` (every diagonal block ``D[a:b, a:b]`` is always checked).
        The first pair always couples the first and the last rows.
    atol : float, optional
        Absolute asymmetry tolerance.  Default: 0 for integer matrices, ``rtol`` times the
        largest magnitude in the compared blocks for floating matrices.
    rtol : float, default 1e-6
        Relative asymmetry tolerance: entries fail when
        ``|D[i, j] - D[j, i]| > atol + rtol * max(|D[i, j]|, |D[j, i]|)``.
    random_state : int, Generator or None, default 0
        Chooses the sampled block pairs.

    Returns
    -------
    DissimilaritySource
        The (opened) source, unchanged.

    Raises
    ------
    UnsupportedDtypeError
        The dtype is not float32, float64, int32 or int64.
    InvalidParameterError
        Not square or empty (raised when opening), or invalid arguments.
    DissimilarityError
        NaN or inf, a negative value, a non-zero diagonal entry or an asymmetry beyond
        tolerance; the message gives the first offending position ``D[i, j]``, its value and
        the fix.

    Notes
    -----
    Reads the whole matrix once (plus ``2 · n_sample_pairs`` sampled blocks).  Peak memory is
    about ``memory_limit``.
    """
    if not isinstance(source, DissimilaritySource):
        from . import open_dissimilarity

        source = open_dissimilarity(source, validate=False)
    budget = parse_memory_limit(memory_limit)
    n_sample_pairs = check_int(n_sample_pairs, "n_sample_pairs", minimum=0)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating)) or not rtol >= 0:
        raise InvalidParameterError(f"rtol must be a non-negative number, got {rtol!r}")
    rtol = float(rtol)
    if atol is not None:
        if isinstance(atol, bool) or not isinstance(atol, (int, float, np.floating)) or not atol >= 0:
            raise InvalidParameterError(f"atol must be None or a non-negative number, got {atol!r}")
        atol = float(atol)
    rng = check_random_state(random_state)

    dtype = check_dtype(source.dtype, f"dissimilarity {source!r}")
    n = int(source.n)
    if n < 1:
        raise InvalidParameterError(f"dissimilarity {_where(source)} is empty (n = {n}); need at least one point")
    h = validate_block_rows(n, dtype.itemsize, budget, source.block_rows)
    where = _where(source)

    for start in range(0, n, h):
        stop = min(start + h, n)
        block = source.read_rows(start, stop)
        if block.shape != (stop - start, n):
            raise InvalidParameterError(
                f"dissimilarity {where} must be square (n, n) with n = {n}: rows "
                f"{start}:{stop} came back with shape {block.shape}"
            )
        check_values(block, (start, stop), where)
        check_diagonal(block[np.arange(stop - start), np.arange(start, stop)], (start, stop), where)
        sq = block[:, start:stop]
        _check_pair(sq, sq.T, atol, rtol, start, start, source)
        del block, sq

    # off-diagonal symmetry on sampled block pairs (two blocks of height m in memory).
    m = max(1, min(h, n // 2)) if n > 1 else 0
    if m and n_sample_pairs:
        pairs = [(0, n - m)]
        for _ in range(n_sample_pairs - 1):
            a = int(rng.integers(0, n - m + 1))
            c = int(rng.integers(0, n - m + 1))
            pairs.append((a, c))
        for a, c in pairs:
            if a == c:
                continue
            rows_a = source.take_rows(np.arange(a, a + m))
            rows_c = source.take_rows(np.arange(c, c + m))
            _check_pair(rows_a[:, c:c + m], rows_c[:, a:a + m].T, atol, rtol, a, c, source)
            del rows_a, rows_c
    logger.debug("validated %r: %d rows in blocks of %d, %d sampled pairs", source, n, h, n_sample_pairs)
    return source
