"""Dissimilarities computed on the fly from a feature array with a metric.

:func:`from_features` wraps an (n, d) feature array -- in memory, memory-mapped, a dask
array, a zarr array or an HDF5 dataset, or a path to one -- and a metric from
:mod:`chunked_medoids.metrics` as a :class:`~chunked_medoids.sources.DissimilaritySource`.
Row block ``D[start:stop]`` is computed against the feature rows in column chunks of
``feature_block_rows`` points, so a feature array on disk is never loaded whole.

Every entry is computed as ``d(X[min(i, j)], X[max(i, j)])`` and the diagonal is set to 0,
so the matrix is exactly (bitwise) symmetric with a zero diagonal whatever the metric
kernel's rounding is and whatever the block boundaries are.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from typing import Any

import numpy as np

from .. import _budget
from .._errors import (
    DissimilarityError,
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    UnsupportedDtypeError,
)
from .._typing import DTypeLike, FeaturesLike, MetricLike
from .._util import check_int
from .base import DissimilaritySource, check_storage_dtype
from .memory import _is_whole_memmap

#: widest features (d) whose passes run through the fused kernels (:meth:`FeatureSource.prefer_fused`);
#: wider features stream row blocks.  Measured (bench_features.py --part metrics, one FasterPAM pass
#: each way, 9 metrics, loaded 2-core machine): the fused pass wins or ties at d = 3 and 9 for most
#: metrics, is mixed at d = 16 and 36, and loses for all but correlation at d = 64 (3-4x at d = 784).
FUSED_MAX_D = 32
#: the same bound for FasterPAM's eager walk (``prefer_fused(walk=True)``); None: any d.  Its
#: fused kernels evaluate four candidates per sweep (``_kernels/fused.py`` ``eval_quad_fused``)
#: and won in wall time over the row blocks for all 10 metrics at every d measured
#: (3, 16, 64, 784: 0.18-0.70x the time at d >= 64; also d = 64, n = 40000 and d = 784,
#: n = 8000), at 0.6-1.3x the process CPU (README, "On-the-fly distances").
FUSED_WALK_MAX_D = None

logger = logging.getLogger(__name__)


def _check_feature_dtype(dtype, where: str) -> np.dtype:
    dt = np.dtype(dtype)
    if dt == np.bool_ or np.issubdtype(dt, np.integer) or np.issubdtype(dt, np.floating):
        return dt
    raise UnsupportedDtypeError(
        f"{where} has dtype {dt}; features must be real numbers (bool, integer or float); "
        "encode categories as integer codes (and use metric='gower' with categorical=...)"
    )


class FeatureArray:
    """Read-only, picklable view of an (n, d) feature array, read in row ranges as float64.

    Parameters
    ----------
    X : ndarray, np.memmap, dask array, zarr.Array, h5py.Dataset, path or array-like
        Paths: ``.npy`` (memory-mapped), ``.zarr`` (directory store), ``.h5``/``.hdf5``/``.he5``
        (``dataset=`` names the dataset; optional when the file holds only one).
    dataset : str, optional
        Dataset/array name inside an HDF5 file or zarr group.

    Notes
    -----
    File-backed arrays pickle as their path and are reopened in the receiving process;
    in-memory numpy arrays pickle with their data.
    """

    def __init__(self, X, dataset: str | None = None):
        from . import hdf5, zarr_store
        from .inputs import describe_suffixes, input_kind

        self.dataset = dataset
        self._mode = None
        self._arr = None  # numpy array / dask array
        self._ref = None  # zarr / h5 reference
        self._npy = None  # path of a memory-mapped .npy
        if dataset is not None and not isinstance(dataset, str):
            raise InvalidTypeError(f"dataset must be a string, got {type(dataset).__name__} {dataset!r}")
        kind = input_kind(X)
        if kind == "source":
            raise InvalidTypeError(
                "from_features needs a feature array X of shape (n, d), got a dissimilarity source; "
                "pass the dissimilarity to the clustering function directly"
            )
        if isinstance(X, (str, os.PathLike)):
            path = os.fspath(X)
            if not os.path.exists(path):
                raise MissingFileError(f"feature file {path!r} does not exist")
            if kind == "npy":
                self._no_dataset(dataset, path)
                try:
                    arr = np.load(path, mmap_mode="r")
                except ValueError as exc:
                    raise InvalidParameterError(f"cannot read {path!r} as a .npy array: {exc}") from exc
                self._mode, self._npy = "npy", os.path.abspath(path)
                self._arr = arr
            elif kind == "zarr":
                self._mode, self._ref = "zarr", zarr_store.ZarrArrayRef(path, dataset, default=None)
            elif kind == "hdf5":
                fname, name = hdf5.resolve_h5(path, dataset, default=None)
                self._mode, self._ref = "hdf5", hdf5.H5DatasetRef(fname, name)
            else:
                text = (" (text files: load them with numpy, e.g. np.loadtxt, or use the CLI)"
                        if kind == "text" else "")
                raise InvalidParameterError(
                    f"feature path {path!r} must end in {describe_suffixes(('npy', 'zarr', 'hdf5'))}{text}"
                )
        elif kind == "numpy":
            self._no_dataset(dataset, "a numpy array")
            if _is_whole_memmap(X):
                self._mode = "memmap"
                self._memmap_args = (os.fspath(X.filename), X.offset, X.dtype.str, X.shape,
                                     "F" if (X.flags.f_contiguous and not X.flags.c_contiguous) else "C")
            else:
                self._mode = "numpy"
            self._arr = X
        elif kind == "dask":
            self._no_dataset(dataset, "a dask array")
            self._mode, self._arr = "dask", X
        elif kind == "zarr":
            self._mode, self._ref = "zarr", zarr_store.ZarrArrayRef(X, dataset, default=None)
        elif kind == "hdf5":
            fname, name = hdf5.resolve_h5(X, dataset, default=None)
            self._mode, self._ref = "hdf5", hdf5.H5DatasetRef(fname, name)
        else:
            self._no_dataset(dataset, type(X).__name__)
            try:
                arr = np.asarray(X)
            except Exception as exc:
                raise InvalidTypeError(
                    f"X must be an (n, d) array (numpy, dask, zarr, h5py) or a path, got {type(X).__name__}"
                ) from exc
            if arr.dtype == object:
                raise UnsupportedDtypeError(
                    f"X ({type(X).__name__}) converts to a numpy object array; features must be real numbers"
                )
            self._mode, self._arr = "numpy", arr
        a = self._get()
        shape = tuple(int(s) for s in a.shape)
        if len(shape) != 2:
            raise InvalidParameterError(
                f"X must be a 2-D array of shape (n, d) (rows = points), got shape {shape}; "
                "reshape 1-D data with X.reshape(-1, 1)"
            )
        if shape[0] == 0:
            raise InvalidParameterError(f"X is empty (shape {shape}); need at least one point")
        if shape[1] == 0:
            raise InvalidParameterError(f"X has no features (shape {shape}); need d >= 1 columns")
        self.n, self.d = shape
        self.dtype = _check_feature_dtype(a.dtype, "X")
        chunks = getattr(a, "chunks", None)
        if self._mode == "dask":
            self.chunk_rows = int(a.chunks[0][0])
        elif self._mode == "zarr":
            shards = getattr(a, "shards", None)
            self.chunk_rows = int((shards or chunks)[0])
        elif self._mode == "hdf5" and chunks:
            self.chunk_rows = int(chunks[0])
        else:
            self.chunk_rows = 1

    @staticmethod
    def _no_dataset(dataset, what):
        if dataset is not None:
            raise InvalidParameterError(
                f"dataset={dataset!r} only applies to HDF5 files and zarr groups, not to {what}; drop it"
            )

    def _get(self):
        if self._ref is not None:
            return self._ref.get()
        return self._arr

    def read(self, start: int, stop: int) -> np.ndarray:
        """Rows ``start:stop`` as a float64 C-contiguous array (a view when possible)."""
        a = self._get()
        if self._mode == "dask":
            block = np.asarray(a[start:stop].compute(scheduler="synchronous"))
        elif self._mode == "zarr":
            block = a[start:stop] if stop > start else np.empty((0, self.d), self.dtype)
        elif self._mode == "hdf5":
            block = a[start:stop] if stop > start else np.empty((0, self.d), self.dtype)
        else:
            block = a[start:stop]
        return np.ascontiguousarray(block, dtype=np.float64)

    def iter_blocks(self, rows: int):
        """Yield ``(start, stop, float64 block)`` over all rows."""
        for start in range(0, self.n, rows):
            stop = min(start + rows, self.n)
            yield start, stop, self.read(start, stop)

    def describe(self) -> str:
        if self._mode == "npy":
            return self._npy
        if self._mode in ("zarr",):
            return self._ref.location
        if self._mode == "hdf5":
            return f"{self._ref.filename}:{self._ref.dataset}"
        return f"<{self._mode} array>"

    def __getstate__(self):
        state = self.__dict__.copy()
        if self._mode in ("npy", "memmap"):
            state["_arr"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        if self._mode == "npy":
            self._arr = np.load(self._npy, mmap_mode="r")
        elif self._mode == "memmap":
            filename, offset, dtype, shape, order = self._memmap_args
            self._arr = np.memmap(filename, mode="r", dtype=np.dtype(dtype), shape=shape,
                                  offset=offset, order=order)


def _scan(features: FeatureArray, rows: int) -> str:
    """One streaming pass: reject NaN/inf (naming the first one) and hash the contents."""
    h = hashlib.sha256()
    h.update(f"{features.n}|{features.d}|{features.dtype.str}|".encode())
    for start, _stop, block in features.iter_blocks(rows):
        finite = np.isfinite(block)
        if not finite.all():
            r, c = np.argwhere(~finite)[0]
            raise InvalidParameterError(
                f"X ({features.describe()}) contains {block[r, c].item()!r} at X[{start + r}, {c}]; "
                "features must be finite: impute or drop missing values before computing distances"
            )
        h.update(memoryview(np.ascontiguousarray(block)).cast("B"))  # no copy
    return h.hexdigest()


class FeatureSource(DissimilaritySource):
    """``D[i, j] = metric(X[min(i, j)], X[max(i, j)])`` computed block by block.

    Made by :func:`from_features` (see there for parameters).

    Attributes
    ----------
    features : FeatureArray
        The (n, d) feature rows.
    metric : chunked_medoids.metrics.BoundMetric
        The metric, fitted when it needed data-dependent parameters.
    feature_block_rows : int
        Feature rows per column chunk.
    features_hash : str
        Contents hash of X (part of :meth:`fingerprint`).
    """

    kind = "features"
    rows_in_memory = True  # rows are computed, never read: nothing to hold resident

    def __init__(self, X, metric="euclidean", *, dtype="float32", block_rows=None,
                 feature_block_rows=None, dataset=None, scale=None, **metric_params):
        from .._quant import check_scale
        from ..metrics import resolve_metric

        self.dtype, stored = check_storage_dtype(dtype, "dtype")
        if stored == self.dtype and scale is not None:
            raise InvalidParameterError(
                f"scale={scale!r} applies to dtype='float16' (the 2-byte storage type) only, got "
                f"dtype={dtype!r}; drop scale= or pass dtype='float16'")
        if scale is not None:
            scale = check_scale(scale)
        self.features = FeatureArray(X, dataset=dataset)
        self.n = self.features.n
        n, d = self.n, self.features.d
        if block_rows is None:
            block_rows = _budget.natural_block_rows(n, self.dtype.itemsize)
        self.block_rows = check_int(block_rows, "block_rows", minimum=1)
        self.block_rows = min(self.block_rows, n)
        if feature_block_rows is None:
            feature_block_rows = _budget.feature_block_rows(n, d, self.block_rows, self.features.chunk_rows)
        self.feature_block_rows = min(n, check_int(feature_block_rows, "feature_block_rows", minimum=1))
        metric = resolve_metric(metric, **metric_params)
        scan_rows = _budget.feature_scan_rows(n, d)
        self._x_hash = _scan(self.features, scan_rows)
        if metric.needs_fit:
            feats = self.features
            metric = metric.fit(lambda: (blk for _, _, blk in feats.iter_blocks(scan_rows)))
        self.metric = metric
        if np.issubdtype(self.dtype, np.integer):
            self._imax = float(np.iinfo(self.dtype).max)
        else:
            self._imax = None
        self._fused = metric.fused_args(d)
        self._prep = None
        self._prep_lock = threading.Lock()
        if stored != self.dtype:
            self.storage_dtype = stored
            self.scale = self._float16_scale(scale)

    def _float16_scale(self, scale):
        """The scale of a float16 source: given (checked against row 0) or chosen from row 0.

        Every built-in metric obeys ``D[i, j] <= 4 max_o D[0, o]`` (the triangle inequality
        gives 2 for metrics; 4 covers squared Euclidean distances and cosine / correlation,
        which are squared Euclidean distances of normalised rows); the scale maps that bound
        into ``(2**14, 2**15]`` (:func:`chunked_medoids._quant.choose_scale`).  A value that
        still overflows (user metrics, braycurtis on signed data) raises
        :class:`~chunked_medoids.QuantisationOverflowError` when computed.
        """
        from .._quant import choose_scale, quantise

        row0 = self._compute_rows(0, 1)
        if scale is None:
            scale = choose_scale(4.0 * float(row0.max()))
        quantise(row0, scale, where=lambda f: f"D[0, {f}]")  # refuses a scale that overflows
        return scale

    def _quantise(self, values, row_ids):
        from .._quant import quantise

        n = self.n
        return quantise(values, self.scale, where=lambda f: f"D[{int(row_ids(f // n))}, {f % n}]")

    @property
    def features_hash(self) -> str:
        """SHA-256 (hex) of X's shape, dtype and values, streamed once at creation."""
        return self._x_hash

    # -- computing ---------------------------------------------------------------------
    def _check_values(self, block, row_ids):
        """Refuse NaN, inf (e.g. float32 overflow) and negative computed dissimilarities.

        Two reductions per block (no temporaries); only on failure is the first offending
        entry located for the message.  ``row_ids(r)`` maps a block row to its point index.
        """
        if block.size == 0:
            return
        lo = block.min()
        ok = lo >= 0
        if ok and self._imax is None:
            ok = block.max() < np.inf
        if ok:
            return
        bad = ~(block >= 0) if self._imax is not None else ~((block >= 0) & (block < np.inf))
        r, c = (int(v) for v in np.argwhere(bad)[0])
        i, val = int(row_ids(r)), block[r, c].item()
        if val == np.inf:
            fix = (f"the features are too large for metric {self.metric.name!r} in dtype {self.dtype}: "
                   "rescale X (e.g. standardise it)" + (" or use dtype='float64'" if self.dtype.itemsize < 8 else ""))
        else:
            fix = f"metric {self.metric.name!r} must return finite values >= 0; fix the metric function"
        raise DissimilarityError(
            f"the dissimilarity computed from X ({self.features.describe()}) is {val!r} at D[{i}, {c}] "
            f"(metric {self.metric.name!r}, dtype {self.dtype}); dissimilarities must be finite and >= 0: {fix}"
        )

    def _store(self, target, values):
        """Write float64 ``values`` into the view ``target``, cast to the source dtype."""
        if self._imax is not None:
            if np.isnan(values).any():
                raise DissimilarityError(
                    f"metric {self.metric.name!r} returned NaN for features of X ({self.features.describe()}); "
                    "it must return finite values >= 0: fix the metric function"
                )
            np.rint(values, out=values)
            if values.size and values.max() > self._imax:
                raise DissimilarityError(
                    f"distance {values.max().item()!r} overflows dtype {self.dtype}; use "
                    + ("dtype='int64' or " if self.dtype.itemsize < 8 else "") + "a float dtype"
                )
        with np.errstate(over="ignore"):  # float32 overflow -> inf, refused by _check_values
            target[...] = values

    def _read_rows(self, start, stop):
        out = self._compute_rows(start, stop)
        if self.storage_dtype is None:
            return out
        return self._quantise(out, lambda r: start + r)

    def _take_rows(self, indices):
        out = self._compute_take(indices)
        if self.storage_dtype is None:
            return out
        return self._quantise(out, lambda r: indices[r])

    def _compute_rows(self, start, stop):
        m = stop - start
        if m == 0 or self._fused is None:
            return self._read_rows_generic(start, stop)
        out = np.empty((m, self.n), dtype=self.dtype)
        if self._fused_rows(None, np.arange(start, stop, dtype=np.int64), out):
            return out
        return self._read_rows_generic(start, stop)  # raises naming the offending entry

    def _read_rows_generic(self, start, stop):
        """Rows through ``metric.pairwise`` blocks (user metrics; error reporting)."""
        n, m = self.n, stop - start
        out = np.empty((m, n), dtype=self.dtype)
        if m == 0:
            return out
        metric, feats, fbr = self.metric, self.features, self.feature_block_rows
        XA = feats.read(start, stop)
        work = np.empty(m * min(fbr, n), dtype=np.float64)
        # the diagonal square D[start:stop, start:stop] in pieces of fbr rows: each piece
        # pair p <= q is computed once as d(x_i, x_j), i < j, and mirrored.
        pieces = [(a, min(a + fbr, stop)) for a in range(start, stop, fbr)]
        for pi, (a0, a1) in enumerate(pieces):
            XP = XA[a0 - start: a1 - start]
            for b0, b1 in pieces[pi:]:
                buf = work[: (a1 - a0) * (b1 - b0)].reshape(a1 - a0, b1 - b0)
                metric.pairwise(XP, XA[b0 - start: b1 - start], buf)
                if a0 == b0:
                    for i in range(1, a1 - a0):  # mirror the upper triangle
                        buf[i, :i] = buf[:i, i]
                    np.fill_diagonal(buf, 0.0)
                    self._store(out[a0 - start: a1 - start, a0:a1], buf)
                else:
                    self._store(out[a0 - start: a1 - start, b0:b1], buf)
                    self._store(out[b0 - start: b1 - start, a0:a1], buf.T)
        # the columns left (j < start) and right (j >= stop) of the block, in chunks of X.
        for c0 in range(0, n, fbr):
            c1 = min(c0 + fbr, n)
            if start <= c0 and c1 <= stop:
                continue
            XB = feats.read(c0, c1)
            lo, hi = c0, min(c1, start)  # left: d(x_j, x_i), j < i
            if lo < hi:
                buf = work[: (hi - lo) * m].reshape(hi - lo, m)
                metric.pairwise(XB[lo - c0: hi - c0], XA, buf)
                self._store(out[:, lo:hi], buf.T)
            lo, hi = max(c0, stop), c1  # right: d(x_i, x_j), i < j
            if lo < hi:
                buf = work[: m * (hi - lo)].reshape(m, hi - lo)
                metric.pairwise(XA, XB[lo - c0: hi - c0], buf)
                self._store(out[:, lo:hi], buf)
        self._check_values(out, lambda r: start + r)
        return out

    def _compute_take(self, indices):
        """Scattered rows in one pass over X (not one pass per run of indices)."""
        K = indices.shape[0]
        out = np.empty((K, self.n), dtype=self.dtype)
        if K == 0:
            return out
        uniq, inverse = np.unique(indices, return_inverse=True)
        if uniq.shape[0] == uniq[-1] - uniq[0] + 1:
            out[:] = self._compute_rows(int(uniq[0]), int(uniq[-1]) + 1)[inverse]
            return out
        n, u, fbr = self.n, uniq.shape[0], self.feature_block_rows
        metric, feats = self.metric, self.features
        breaks = np.flatnonzero(np.diff(uniq) != 1) + 1
        run_starts = np.concatenate(([0], breaks))
        run_stops = np.concatenate((breaks, [u]))
        XS = np.vstack([feats.read(int(uniq[a]), int(uniq[b - 1]) + 1) for a, b in zip(run_starts, run_stops)])
        if self._fused is not None:
            rows = np.empty((u, n), dtype=self.dtype)
            if self._fused_rows(XS, uniq.astype(np.int64), rows):
                out[:] = rows[inverse]
                return out
        rows = np.empty((u, n), dtype=self.dtype)
        work = np.empty(u * min(fbr, n), dtype=np.float64)
        for c0 in range(0, n, fbr):
            c1 = min(c0 + fbr, n)
            w = c1 - c0
            XB = feats.read(c0, c1)
            ia = int(np.searchsorted(uniq, c0))  # rows i < c0: d(x_i, x_j)
            ib = int(np.searchsorted(uniq, c1))  # rows i >= c1: d(x_j, x_i)
            if ia > 0:
                buf = work[: ia * w].reshape(ia, w)
                metric.pairwise(XS[:ia], XB, buf)
                self._store(rows[:ia, c0:c1], buf)
            if ib < u:
                buf = work[: w * (u - ib)].reshape(w, u - ib)
                metric.pairwise(XB, XS[ib:], buf)
                self._store(rows[ib:, c0:c1], buf.T)
            if ia < ib:  # rows inside the chunk need both orientations
                r = ib - ia
                P1 = metric.pairwise(XS[ia:ib], XB, np.empty((r, w), np.float64))
                P2 = metric.pairwise(XB, XS[ia:ib], np.empty((w, r), np.float64))
                j = np.arange(c0, c1)
                for t in range(r):
                    i = int(uniq[ia + t])
                    vals = np.where(j > i, P1[t], P2[:, t])
                    vals[i - c0] = 0.0
                    self._store(rows[ia + t, c0:c1], vals)
        self._check_values(rows, lambda r: uniq[r])
        out[:] = rows[inverse]
        return out

    def _fingerprint_parts(self):
        return ["features", self._x_hash, self.metric.describe()]


    def __getstate__(self):
        state = self.__dict__.copy()
        state["_prep"] = None  # rebuilt lazily where it is used (e.g. on a Dask worker)
        state["_prep_lock"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._prep_lock = threading.Lock()

    # -- fused row kernels -------------------------------------------------------------
    def prepared_features(self):
        """``(T, aux)``: the metric-prepared features of all n points, transposed, or None.

        ``T`` is (d, n) float64 C-contiguous, column ``o`` the row of point ``o`` after the
        metric's per-row preparation; ``aux`` (2, n) float64 its squared norm and that
        norm's square root (cosine / correlation) or zeros.  This is what the fused kernels
        of :mod:`chunked_medoids._kernels` take instead of dissimilarity rows.

        None for a user metric (no fused kernel), for X in a zarr / HDF5 / dask array
        (never loaded whole: rows are then computed column chunk by column chunk) or when
        the copy would exceed ``_budget.FEATURE_PREP_BYTES``.  Computed once on first use (one
        streaming read of X), kept by this object (not pickled).

        Returns
        -------
        tuple of (ndarray, ndarray) or None
        """
        if (self._fused is None or self.features._mode not in ("numpy", "memmap", "npy")
                or self.n * self.features.d * 8 > _budget.FEATURE_PREP_BYTES):
            return None
        if self._prep is None:
            with self._prep_lock:
                if self._prep is None:
                    from .._kernels.metrics import prepare_columns

                    n, d, code = self.n, self.features.d, self._fused[0]
                    T = np.empty((d, n), dtype=np.float64)
                    aux = np.empty((2, n), dtype=np.float64)
                    rows = max(1, min(n, _budget.FEATURE_WORK_BYTES // (8 * d)))
                    for a, b, blk in self.features.iter_blocks(rows):
                        t, x = prepare_columns(code, blk)
                        T[:, a:b] = t
                        aux[:, a:b] = x
                    self._prep = (T, aux)
        return self._prep

    def fused_bundle(self):
        """The feature bundle ``F`` the fused swap kernels take instead of rows of D, or None.

        ``(code, T, aux, p, categorical, ranges, tw, qs, qinv)``: metric code and parameters,
        the prepared features (:meth:`prepared_features`), the tile width and the float16
        quantisation (``qs`` the scale and ``qinv = 1 / qs`` as float32, both 0 unless the
        source is float16: the kernels then round every value as the float16 store does); see
        :mod:`chunked_medoids._kernels.fused`.  None for integer dtypes, user metrics and
        when :meth:`prepared_features` is None (the caller then streams :meth:`read_rows`).
        """
        if self.dtype not in (np.dtype(np.float32), np.dtype(np.float64)):
            return None
        prep = self.prepared_features()
        if prep is None:
            return None
        from .._kernels.metrics import tile_width

        code, p, cat, ranges = self._fused
        qs = qinv = np.float32(0.0)
        if self.storage_dtype is not None:  # float16: exact powers of two (_quant.check_scale)
            qs, qinv = np.float32(self.scale), np.float32(1.0 / self.scale)
        return (int(code), prep[0], prep[1], float(p), cat, ranges, int(tile_width(self.features.d)), qs, qinv)

    def prefer_fused(self, walk: bool = False) -> bool:
        """Whether the algorithms' passes should run through the fused kernels.

        True when :meth:`fused_bundle` is not None and the features have at most
        :data:`FUSED_MAX_D` dimensions (with ``walk=True``, FasterPAM's eager walk:
        :data:`FUSED_WALK_MAX_D`, no bound).  The fused kernels of the block-parallel passes
        compute one candidate row at a time from the prepared features, streaming all of
        them per candidate; for wide features the row-block path (:meth:`read_rows`,
        cache-blocked over many candidates at once, into the stored kernels) is faster.  The
        walk's fused kernels evaluate four candidates per sweep and are faster at every d
        measured (per metric and d: ``benchmarks/bench_features.py --part metrics``,
        README).  Both paths give bitwise the same results.

        Parameters
        ----------
        walk : bool, default False
            Ask for FasterPAM's eager walk instead of a block-parallel pass.

        Returns
        -------
        bool
        """
        max_d = FUSED_WALK_MAX_D if walk else FUSED_MAX_D
        return (max_d is None or self.features.d <= max_d) and self.fused_bundle() is not None

    def fused_metric(self):
        """``(code, p, categorical, ranges)`` of the fused kernels, or None (user metric)."""
        return self._fused

    def _fused_rows(self, XA, ids, out):
        """Fill ``out`` (len(ids), n) with the rows of points ``ids`` (features ``XA``, or None
        when the prepared copy is used).  False if an entry is not finite / overflows."""
        from .._kernels.metrics import dist_rows, prepare_columns, tile_width

        code, p, cat, ranges = self._fused
        is_int = self._imax is not None
        imax = self._imax if is_int else 0.0
        tw = tile_width(self.features.d)
        prep = self.prepared_features()
        if prep is not None:
            T, aux = prep
            if XA is None:
                a_off = int(ids[0])
                AT, auxA = T, aux
            else:
                AT, auxA = prepare_columns(code, XA)
                a_off = 0
            bad = dist_rows(code, AT, auxA, a_off, ids, T, aux, 0, out, 0, p, cat, ranges, is_int, imax, tw)
            return bad == 0
        if XA is None:
            XA = self.features.read(int(ids[0]), int(ids[-1]) + 1)
        AT, auxA = prepare_columns(code, XA)
        fbr = self.feature_block_rows
        for c0 in range(0, self.n, fbr):
            c1 = min(c0 + fbr, self.n)
            BT, auxB = prepare_columns(code, self.features.read(c0, c1))
            bad = dist_rows(code, AT, auxA, 0, ids, BT, auxB, c0, out, c0, p, cat, ranges, is_int, imax, tw)
            if bad:
                return False
        return True

    def __repr__(self) -> str:
        return (f"<FeatureSource X={self.features.describe()} n={self.n} d={self.features.d} "
                f"metric={self.metric.name!r} dtype={self.dtype}"
                + (f" stored={self.storage_dtype} scale={self.scale!r}" if self.storage_dtype is not None else "")
                + f" block_rows={self.block_rows}>")


def from_features(X: FeaturesLike, metric: MetricLike = "euclidean", *, dtype: DTypeLike = "float32",
                  block_rows: int | None = None, feature_block_rows: int | None = None,
                  dataset: str | None = None, scale: float | None = None,
                  **metric_params: Any) -> FeatureSource:
    """A dissimilarity source computing ``D[i, j] = metric(X[i], X[j])`` on the fly.

    Parameters
    ----------
    X : array of shape (n, d), or path
        Feature rows: a numpy array (used directly, no copy), ``np.memmap``, dask array,
        ``zarr.Array``, ``h5py.Dataset``, or a path to a ``.npy`` file, ``.zarr`` store or
        ``.h5``/``.hdf5``/``.he5`` file.  Values must be finite (checked once, streaming).
    metric : str or numba.njit function, default "euclidean"
        A name from :data:`chunked_medoids.METRICS` or a jitted ``f(x, y) -> float``.
    dtype : {"float32", "float64", "int32", "int64", "float16"}, default "float32"
        Element type of the returned rows.  Distances are computed in float64 and rounded
        to it; integer dtypes round to the nearest integer (overflow raises).  ``"float16"``
        is the 2-byte storage type (:mod:`chunked_medoids._quant`): each float32 distance
        is multiplied by ``scale`` and rounded to float16, and rows are returned as float32
        ``float16 value / scale`` -- exactly what a float16 store built by
        :func:`~chunked_medoids.build_dissimilarity` returns (the fused kernels round
        the same way, so a float16 source's passes run fused too).
    scale : float, optional
        ``dtype="float16"`` only: a power of two; default chosen from the distances of
        point 0 so that no distance overflows float16 (see
        :meth:`FeatureSource._float16_scale`).  A scale under which a distance exceeds
        65504 raises :class:`~chunked_medoids.QuantisationOverflowError`.
    block_rows : int, optional
        Natural row-block height (default: about 64 MiB of output rows).
    feature_block_rows : int, optional
        Feature rows read per column chunk when computing a row block (default: about
        32 MiB of float64 work buffer, whole storage chunks of X).
    dataset : str, optional
        Dataset name inside an HDF5 file or zarr group holding X (optional when the file
        holds a single array).
    **metric_params
        Metric parameters (e.g. ``p=3`` for minkowski, ``categorical=`` for gower).
        Data-dependent parameters (gower ``ranges``) are fitted once here in a streaming
        pass over X.

    Returns
    -------
    FeatureSource
        ``kind == "features"``.  Pickles as the path of file-backed X (in-memory X pickles
        with the source).

    Notes
    -----
    Rows are computed by the fused row kernels of :mod:`chunked_medoids._kernels.metrics`:
    tiles of a few hundred distances in float64 registers/L1, rounded straight into the
    output rows (no float64 blocks, no transposed copies, finiteness checked in the same
    sweep); user metrics take the generic path through ``metric.pairwise``.  Memory per
    row block of height ``m``: the output ``m × n``; for X in memory (numpy, memmap, .npy)
    plus one metric-prepared float64 copy of X, ``n × d × 8`` bytes, kept by the source
    when it is at most 256 MiB (also what the fused FasterPAM kernels read); otherwise
    X is prepared column chunk by column chunk (``feature_block_rows × d × 8`` bytes).
    ``take_rows`` of scattered rows makes one pass over X for all of them.
    Creation streams X once (finite check, contents hash for :meth:`fingerprint`, metric fit).
    Each entry is ``metric(X[min(i, j)], X[max(i, j)])`` and the diagonal is exactly 0, so D
    is bitwise symmetric and does not depend on block sizes.

    Raises
    ------
    InvalidParameterError
        X is not 2-D, is empty, or holds NaN/inf (the first position is named).
    UnsupportedDtypeError
        X is not numeric, or ``dtype`` is not supported.
    UnknownNameError
        Unknown metric name.
    """
    return FeatureSource(X, metric, dtype=dtype, block_rows=block_rows,
                         feature_block_rows=feature_block_rows, dataset=dataset, scale=scale,
                         **metric_params)


def _matches(obj) -> bool:
    return False


def _open(obj, **options):
    return from_features(obj, **options)
