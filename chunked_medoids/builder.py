"""Features -> full n×n dissimilarity matrix in a chunked store (zarr or HDF5).

:func:`build_dissimilarity` computes the matrix stripe by stripe with
:func:`~chunked_medoids.sources.features.from_features` (so a built store is bit-identical to
the on-the-fly source with the same ``dtype``), in parallel through the
:class:`~chunked_medoids.engine.Engine` (local threads or a distributed client), with bounded
memory, and resumably.  :func:`store_info` describes a store (CLI ``info``).

Store layout
------------
zarr (``store`` ends in ``.zarr``)
    A zarr v3 array at the root of a local directory store.  Shape ``(n, n)``, chunks
    ``(stripe_rows, n)``: **one chunk is one row stripe**, written by exactly one task (a
    thread or a distributed worker that opens the store by path; workers must share the
    file system).  Chunk keys use the default v3 encoding ``c/<stripe>/0``.  Codecs:
    ``compressor`` (default none: raw chunks, see :data:`COMPRESSORS`), followed
    by a crc32c checksum of every chunk (so a damaged chunk fails to read with
    :class:`~chunked_medoids.StoreCorruptionError` instead of decoding to wrong numbers).
    Fill value NaN for float dtypes, ``-1`` for integer dtypes (distances are never
    negative, so a lost chunk reads as NaN / -1, never as a plausible 0, and
    :func:`~chunked_medoids.validate_source` rejects it).
HDF5 (``store`` ends in ``.h5``, ``.hdf5`` or ``.he5``)
    Dataset ``dataset`` (default ``"dissimilarity"``), shape ``(n, n)``, chunked with
    chunks of ``(h5_chunk_rows, n)`` (about
    :data:`~chunked_medoids._budget.HDF5_CHUNK_BYTES` per chunk, so single
    rows read cheaply); ``stripe_rows`` is a multiple of the chunk height, so every stripe
    covers whole chunks.  Compression: ``compressor`` (default lzf with shuffle); same fill
    values as zarr.  The file is written by the driver process only (HDF5 has one writer).
    With ``compressor=None`` or ``"gzip"`` the stripe tasks encode the chunks themselves
    (shuffle + zlib, bit-compatible with HDF5's filters) in parallel and the driver writes
    the encoded chunks raw (``H5Dwrite_chunk``); other filters run in the driver.

Metadata
    The attribute ``"chunked_medoids"`` (zarr: a JSON object in ``zarr.json``; HDF5: a JSON
    string attribute of the dataset) follows :mod:`chunked_medoids._store_meta`::

        {"format": 1, "n", "dtype", "metric", "metric_params", "features_fingerprint",
         "version", "stripe_rows", "n_stripes", "completed_stripes", "complete",
         "compressor", "features_shape", "validated"}

    ``features_fingerprint`` is the SHA-256 of X's shape, dtype and contents (streamed once
    by the features source, which also rejects NaN/inf).

Completion and resumption
    The store is created with ``complete=False`` before any stripe is computed.

    * zarr: the chunk files themselves are the completion records.  zarr's local store
      writes every chunk to a temporary file and renames it into place, so a chunk key
      exists only once its stripe was fully written; no marker files, no driver round
      trip per stripe, and it works the same with distributed writers.  The driver
      mirrors the set of present stripes into ``completed_stripes`` every
      :data:`RECORD_INTERVAL` seconds, at the end, and when the build fails.
    * HDF5: the driver writes stripes in waves of at most ``parallelism`` stripes (never
      gathering more) and after each wave flushes the data and then records the wave in
      ``completed_stripes``.

    ``complete=True`` is written last, in one atomic metadata write (zarr writes
    ``zarr.json`` by rename; HDF5 after a flush of every stripe), and only after every
    stripe is verified present, so an interrupted build never claims completeness.  A
    process crash (not an OS crash: no fsync is issued) loses at most the stripes in
    flight.  An HDF5 file whose writer was killed mid-write may be unreadable (HDF5 keeps
    no journal); rebuild it with ``overwrite=True``.

    A rerun with the same X (fingerprint), metric, parameters, dtype, compressor and
    library version computes only the missing stripes, reusing the store's
    ``stripe_rows`` (an explicit different ``block_rows`` is an error; a store whose
    stripes no longer fit ``memory_limit`` is an error naming the budget needed).
    A write error (disk full, quota, I/O error) ends the build with an ``OSError`` of the
    same errno that names the store and says to rerun; the store stays ``complete=False``
    with every stripe written so far kept.  A store or directory that cannot be written
    is refused with ``PermissionError`` before anything is computed.
    A concurrent second build of the same store fails with
    :class:`~chunked_medoids.StoreLockedError` (an advisory ``flock`` on ``<store>.lock``).

Overwrite rules (``overwrite=False``)
    * no store: created.
    * HDF5 file without ``dataset``: the dataset is added; other datasets are untouched.
    * complete store built from the same X, metric, parameters and dtype: returned
      unchanged (no recomputation, whatever ``memory_limit``/``compressor`` say) -- except
      that a zarr store whose chunk files went missing is marked incomplete and only the
      missing stripes are recomputed.
    * incomplete store with matching arguments: resumed.
    * anything else (a foreign store, a complete or incomplete store of other arguments):
      :class:`~chunked_medoids.StoreExistsError` naming the differences.

    ``overwrite=True`` deletes the zarr directory (or only ``dataset`` inside the HDF5
    file; HDF5 does not give the space back, use ``h5repack``; a file holding nothing else
    is recreated) and builds afresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import threading
import uuid
from typing import Any, Protocol

import numpy as np

# every size lives in _budget; plan_stripes and the stripe/chunk constants stay importable here
from ._budget import HDF5_CHUNK_BYTES, MAX_STRIPE_BYTES, hdf5_cache_bytes, plan_stripes  # noqa: F401
from ._errors import (
    ChunkedMedoidsError,
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    ReadOnlyLocationError,
    StoreCorruptionError,
    StoreExistsError,
    StoreLockedError,
    UnknownNameError,
    UnsupportedDtypeError,
)
from ._store_meta import ATTR, FORMAT, read_meta
from ._typing import ClientLike, DTypeLike, FeaturesLike, MemoryLimit, MetricLike, PathLike
from ._util import check_int, format_bytes, parse_memory_limit
from ._version import __version__
from .engine import Engine
from .sources.base import DissimilaritySource, check_storage_dtype

logger = logging.getLogger(__name__)

__all__ = ["build_dissimilarity", "store_info", "COMPRESSORS", "plan_stripes", "StoreWriter", "WRITERS",
           "store_writer"]

#: seconds between refreshes of ``completed_stripes`` during a zarr build.
RECORD_INTERVAL = 5.0

# ---------------------------------------------------------------------------------------
# compressors: one registry for both formats
# ---------------------------------------------------------------------------------------
def _zarr_blosc(cname, clevel):
    def make():
        from zarr.codecs import BloscCodec

        return [BloscCodec(cname=cname, clevel=clevel, shuffle="shuffle")]

    return make


def _zarr_zstd():
    from zarr.codecs import ZstdCodec

    return [ZstdCodec(level=1)]


def _zarr_gzip():
    from zarr.codecs import GzipCodec

    return [GzipCodec(level=1)]


def _h5_gzip():
    return {"compression": "gzip", "compression_opts": 1, "shuffle": True}


def _h5_lzf():
    return {"compression": "lzf", "shuffle": True}


def _h5_plugin(name):
    def make():
        try:
            import hdf5plugin
        except ImportError as exc:
            raise InvalidParameterError(
                f"compressor={name!r} for HDF5 needs the hdf5plugin package (pip install "
                "hdf5plugin); readers need it too. Use 'lzf' or 'gzip' instead."
            ) from exc
        if name == "zstd":
            return dict(hdf5plugin.Zstd(clevel=1))
        cname = name.split("-", 1)[1] if "-" in name else "lz4"
        return dict(hdf5plugin.Blosc(cname=cname, clevel=5, shuffle=hdf5plugin.Blosc.SHUFFLE))

    return make


#: name -> (description, zarr codec factory or None, HDF5 create_dataset-kwargs factory or None).
#: ``"default"`` maps to no compressor for zarr (raw chunks + crc32c) and "lzf" for HDF5.
#: zarr: chosen from cold-disk passes (benchmarks/bench_cold_disk.py, issue 17): float32
#: distances compress only 1.16x with lz4 (1.34x zstd; float16 not at all), and decoding
#: costs CPU the swap kernels need, while raw chunks are read straight into the block
#: (ZarrSource's raw path): a cold FasterPAM pass waited 0.17 s for blocks against 0.82 s
#: (lz4) and 3.2 s (zstd) at n = 20000.  Pick "zstd" when bytes matter more than CPU (a
#: network file system, a slow disk).  Build speed (benchmarks/bench_build.py, 2 cores): zarr
#: blosc-lz4 + byte shuffle wrote
#: ~670 MB/s vs ~460 MB/s for zstd level 1 and decodes ~2x faster; HDF5 lzf ~60-75 MB/s vs
#: gzip level 1 ~26-31 MB/s (even with the chunks deflated in parallel tasks).  Float
#: distances compress only ~1.2-1.4x anyway.
COMPRESSORS = {
    "lz4": ("blosc lz4, clevel 5, byte shuffle", _zarr_blosc("lz4", 5), _h5_plugin("blosc-lz4")),
    "blosc-zstd": ("blosc zstd, clevel 1, byte shuffle", _zarr_blosc("zstd", 1), _h5_plugin("blosc-zstd")),
    "zstd": ("zstd level 1", _zarr_zstd, _h5_plugin("zstd")),
    "gzip": ("gzip level 1 (HDF5: with shuffle)", _zarr_gzip, _h5_gzip),
    "lzf": ("lzf with shuffle (HDF5 only)", None, _h5_lzf),
}
_DEFAULT_COMPRESSOR = {"zarr": "none", "hdf5": "lzf"}


def _resolve_compressor(compressor, fmt: str):
    """``(name, codecs-or-h5kwargs)`` for ``compressor`` in format ``fmt``."""
    if compressor is None:
        return "none", (None if fmt == "zarr" else {})
    if isinstance(compressor, str):
        name = _DEFAULT_COMPRESSOR[fmt] if compressor == "default" else compressor
        if name == "none":  # raw chunks (the zarr default)
            return "none", (None if fmt == "zarr" else {})
        entry = COMPRESSORS.get(name)
        if entry is None:
            raise UnknownNameError(
                f"compressor must be None, 'default' or one of {sorted(COMPRESSORS)}, got {compressor!r}"
            )
        factory = entry[1] if fmt == "zarr" else entry[2]
        if factory is None:
            ok = sorted(k for k, v in COMPRESSORS.items() if (v[1] if fmt == "zarr" else v[2]) is not None)
            raise InvalidParameterError(
                f"compressor={compressor!r} is not available for {fmt} stores; use one of {ok} or None"
            )
        return name, factory()
    if fmt == "hdf5" and isinstance(compressor, dict):
        allowed = {"compression", "compression_opts", "shuffle", "fletcher32", "scaleoffset"}
        bad = sorted(set(compressor) - allowed)
        if bad:
            raise InvalidParameterError(
                f"compressor as a dict holds h5py.create_dataset keywords {sorted(allowed)}; got unknown {bad}"
            )
        return f"h5py:{json.dumps(compressor, sort_keys=True, default=str)}", dict(compressor)
    if fmt == "zarr" and not isinstance(compressor, (dict, bytes)):
        from zarr.abc.codec import BytesBytesCodec

        codecs = list(compressor) if isinstance(compressor, (list, tuple)) else [compressor]
        if not codecs or not all(isinstance(c, BytesBytesCodec) for c in codecs):
            raise InvalidTypeError(
                "compressor for a zarr store must be None, a name from "
                f"{sorted(COMPRESSORS)} or zarr bytes-to-bytes codec object(s) (e.g. "
                f"zarr.codecs.ZstdCodec(level=3)); got {compressor!r}"
            )
        try:
            desc = json.dumps([c.to_dict() if hasattr(c, "to_dict") else repr(c) for c in codecs],
                              sort_keys=True, default=str)
        except Exception:  # pragma: no cover - odd codec objects
            desc = repr(codecs)
        return f"zarr:{desc}", codecs
    raise InvalidTypeError(
        f"compressor must be None, a name from {sorted(COMPRESSORS)}, a zarr codec (zarr stores) or "
        f"a dict of h5py compression keywords (HDF5 stores); got {type(compressor).__name__} {compressor!r}"
    )


# ---------------------------------------------------------------------------------------
# validation helpers
# ---------------------------------------------------------------------------------------
def _check_store_path(store) -> tuple[str, str]:
    """``(absolute path, "zarr" | "hdf5")`` from the suffix table of :mod:`.sources.inputs`."""
    from .sources.inputs import WRITABLE_KINDS, describe_suffixes, path_kind

    if not isinstance(store, (str, os.PathLike)):
        raise InvalidTypeError(
            f"store must be a path ending in {describe_suffixes(WRITABLE_KINDS)}, got "
            f"{type(store).__name__} {store!r}"
        )
    path = os.path.abspath(os.fspath(store).rstrip("/\\") or os.fspath(store))
    kind = path_kind(path)
    if kind in WRITABLE_KINDS:
        return path, kind
    raise InvalidParameterError(
        f"store must end in {describe_suffixes('zarr')} (zarr directory store) or "
        f"{describe_suffixes('hdf5')} (HDF5 file), got {os.fspath(store)!r}; "
        "add the suffix of the format you want"
    )


def _fill_value(dt: np.dtype):
    return float("nan") if dt.kind == "f" else -1


def _stripe_ranges(n, m, indices):
    return [(i * m, min((i + 1) * m, n)) for i in indices]


# ---------------------------------------------------------------------------------------
# locking
# ---------------------------------------------------------------------------------------
@contextlib.contextmanager
def _build_lock(path: str):
    """Advisory exclusive lock on ``<path>.lock`` for the duration of a build."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - non-POSIX: no cross-process claim
        yield
        return
    lock_path = path + ".lock"
    parent = os.path.dirname(lock_path)
    if parent and not os.path.isdir(parent):
        raise MissingFileError(f"the directory of store {path!r} does not exist: {parent!r}")
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            raise StoreLockedError(
                f"store {path!r} is being built by another process (lock {lock_path!r} is held); "
                "wait for it to finish or stop it, then rerun to resume"
            ) from exc
        # the holder unlinks the lock file before releasing it: if we locked a file that was
        # unlinked meanwhile, a third process may lock a new file at the same path -- refuse
        try:
            same = os.path.samestat(os.fstat(fd), os.stat(lock_path))
        except FileNotFoundError:
            same = False
        if not same:
            raise StoreLockedError(
                f"store {path!r}: another build released its lock {lock_path!r} just now; rerun "
                "(it resumes from the stripes written)"
            )
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# ---------------------------------------------------------------------------------------
# stripe tasks (module level: picklable for distributed workers)
# ---------------------------------------------------------------------------------------
def _open_zarr_for_write(path):
    """Open the zarr array of a build for writing one stripe (in the stripe task).

    A separate function so tests can inject storage faults (e.g. a store wrapper whose
    writes fail with ``ENOSPC``) by replacing it; nothing else calls it.
    """
    import zarr

    return zarr.open_array(store=path, mode="r+")


def _write_zarr_stripe(block, start, stop, state):
    """Write one computed row stripe into its zarr chunk (opens the store by path)."""
    arr = _open_zarr_for_write(state["path"])
    if block.shape != (stop - start, arr.shape[1]):  # pragma: no cover - contract breach
        raise StoreCorruptionError(f"stripe {start}:{stop} has shape {block.shape}, expected {(stop - start, arr.shape[1])}")
    arr[start:stop] = block
    return start


class _StoredRows:
    """The rows of a float16 features source *as stored* (scaled float16), for the stripe
    tasks: a row reader for :meth:`Engine.map_blocks` (``n``, ``dtype``, ``block_rows``,
    ``read_rows``) that pickles with the source."""

    def __init__(self, source):
        self.source = source
        self.n, self.dtype, self.block_rows = source.n, source.stored_dtype, source.block_rows

    def read_rows(self, start, stop):
        return self.source.read_stored_rows(start, stop)


def _return_block(block, start, stop, state):
    """HDF5 stripes: the computed block goes back to the driver, which writes it."""
    return block


def _encode_h5_stripe(block, start, stop, state):
    """HDF5 stripes with a filter pipeline we can reproduce (none, or shuffle + deflate):
    encode every chunk of the stripe in the task -- in parallel -- and return
    ``[(row offset, encoded bytes), ...]`` for ``H5Dwrite_chunk`` in the driver.

    The bytes are exactly what HDF5's own filters produce for the chunk: the shuffle filter
    is the byte transpose of the (elements, itemsize) view, deflate is a zlib stream, and
    edge chunks are stored full-size (padded with the fill value).
    """
    import zlib

    rows, n = block.shape
    hc, level, shuffle, fill = state["chunk_rows"], state["level"], state["shuffle"], state["fill"]
    isz = block.dtype.itemsize
    out = []
    for r0 in range(0, rows, hc):
        piece = block[r0:r0 + hc]
        if piece.shape[0] < hc:
            padded = np.full((hc, n), fill, dtype=block.dtype)
            padded[: piece.shape[0]] = piece
            piece = padded
        buf = np.ascontiguousarray(piece)
        if shuffle:
            buf = np.ascontiguousarray(buf.view(np.uint8).reshape(-1, isz).T)
        data = zlib.compress(buf, level) if level is not None else buf.tobytes()
        out.append((start + r0, data))
        del buf
    return out


def _direct_chunk_state(h5kw, dt, chunk_rows):
    """State for :func:`_encode_h5_stripe` when the filters are reproducible, else None."""
    keys = set(h5kw)
    if not keys:
        return {"chunk_rows": chunk_rows, "level": None, "shuffle": False, "fill": _fill_value(dt)}
    if h5kw.get("compression") == "gzip" and keys <= {"compression", "compression_opts", "shuffle"}:
        level = h5kw.get("compression_opts", 4)
        level = 4 if level is None else int(level)
        return {"chunk_rows": chunk_rows, "level": level, "shuffle": bool(h5kw.get("shuffle", False)),
                "fill": _fill_value(dt)}
    return None


# ---------------------------------------------------------------------------------------
# existing-store inspection
# ---------------------------------------------------------------------------------------
def _zarr_chunk_path(path, i):
    return os.path.join(path, "c", str(i), "0")


def _zarr_present(path, n_stripes):
    """Sorted stripes < n_stripes whose chunk file exists: a listing of ``c/``, so the cost
    is bounded by what is on disk, never by ``n_stripes`` (which a file may misstate)."""
    try:
        names = os.listdir(os.path.join(path, "c"))
    except (FileNotFoundError, NotADirectoryError):
        return []
    found = (int(e) for e in names if e.isdigit())
    return sorted(i for i in found if i < n_stripes and os.path.isfile(_zarr_chunk_path(path, i)))


_IDENTITY = ("n", "dtype", "scale", "metric", "metric_params", "features_fingerprint")
_RESUME = _IDENTITY + ("version", "compressor")


def _differences(old: dict, new: dict, keys) -> list[str]:
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if json.dumps(a, sort_keys=True, default=str) != json.dumps(b, sort_keys=True, default=str):
            if k == "features_fingerprint":
                out.append("features X (contents fingerprint differs)")
            else:
                out.append(f"{k}: store has {a!r}, requested {b!r}")
    return out


# ---------------------------------------------------------------------------------------
# the builder
# ---------------------------------------------------------------------------------------
def _new_store_meta(n, dt, plan, compressor, *, metric, metric_params, fingerprint, features_shape,
                   validated, scale=None, source=None) -> dict:
    """The metadata of a store this package starts writing (``build`` and ``rechunk``).

    The keys keep one order (it is part of the stored bytes, ``tests/test_store_bytes.py``):
    ``scale`` only for float16 stores, ``source`` only for copies.
    """
    meta = {"format": FORMAT, "n": int(n), "dtype": str(dt)}
    if scale is not None:
        meta["scale"] = scale
    meta.update({
        "metric": metric,
        "metric_params": metric_params,
        "features_fingerprint": fingerprint,
        "version": __version__,
        "stripe_rows": plan["stripe_rows"],
        "n_stripes": plan["n_stripes"],
        "completed_stripes": [],
        "complete": False,
        "compressor": compressor,
        "features_shape": features_shape,
    })
    if source is not None:
        meta["source"] = source
    meta["validated"] = validated
    return meta


def build_dissimilarity(X: FeaturesLike, store: PathLike, metric: MetricLike = "euclidean", *,
                        dtype: DTypeLike = "float32", memory_limit: MemoryLimit = "1GiB",
                        block_rows: int | None = None, compressor: Any = "default", overwrite: bool = False,
                        client: ClientLike = None, progress: bool = False, dataset: str = "dissimilarity",
                        num_workers: int | None = None, features_dataset: str | None = None,
                        scale: float | None = None, **metric_params: Any) -> DissimilaritySource:
    """Compute the full symmetric n×n dissimilarity of ``X`` into a chunked store on disk.

    Parameters
    ----------
    X : array of shape (n, d), or path
        Feature rows, anything :func:`~chunked_medoids.from_features` accepts (numpy, memmap,
        dask, zarr, h5py, ``.npy``/``.zarr``/``.h5`` path).  Must be finite: NaN/inf are
        rejected (position named) before anything is written.
    store : str or os.PathLike
        Output path: ``*.zarr`` (zarr v3 directory store) or ``*.h5``/``*.hdf5``/``*.he5`` (HDF5 file).
        See the module notes for the layout.
    metric : str or numba.njit function, default "euclidean"
        A name from :data:`chunked_medoids.METRICS` or a jitted ``f(x, y) -> float``.  A
        custom function is identified in the metadata by its qualified name only.
    dtype : {"float32", "float64", "int32", "int64", "float16"}, default "float32"
        Element type stored.  Integer dtypes round every distance to the nearest integer
        (overflow raises): only meaningful for integer-valued metrics (e.g. ``hamming`` on
        counts via ``manhattan`` on integer features) -- otherwise use a float dtype.
        ``"float16"`` is the 2-byte storage type: half the bytes on disk and per pass, each
        distance rounded to float16 (relative error <= 2**-11) after multiplying by
        ``scale``; readers get float32 ``value / scale`` (see :mod:`chunked_medoids._quant`).
    scale : float, optional
        ``dtype="float16"`` only: a power of two recorded in the store's metadata; by
        default chosen from the data so that no distance overflows float16.  A scale under
        which some distance exceeds 65504 raises
        :class:`~chunked_medoids.QuantisationOverflowError` naming the largest that fits.
    memory_limit : int or str, default "1GiB"
        Budget for the stripes in flight (see :func:`plan_stripes`); stripes are sized so
        ``parallelism`` stripes being computed plus their work and codec buffers fit.  The
        interpreter, X itself (when in memory) and library code come on top.
    block_rows : int, optional
        Force the stripe height (rows per stripe = rows per zarr chunk) instead of deriving
        it from ``memory_limit``.
    compressor : str, None, zarr codec(s) or dict, default "default"
        ``"default"`` is no compressor for zarr (raw chunks with a crc32c checksum: the
        fastest cold and warm passes, +16 % bytes on disk against lz4) and lzf + shuffle for
        HDF5; ``"none"`` is the same as None; other
        names in :data:`COMPRESSORS` (``"zstd"``, ``"blosc-zstd"``, ``"gzip"``; ``"lzf"``
        HDF5 only; blosc/zstd in HDF5 need ``hdf5plugin`` imported by readers too);
        ``None`` stores raw values (zarr: still followed by the crc32c chunk checksum); zarr
        stores accept zarr codec objects, HDF5 stores a
        dict of ``h5py`` compression keywords.
    overwrite : bool, default False
        Replace an existing store (see the module notes for what happens otherwise).
    client : distributed.Client, optional
        Compute stripes on this cluster.  zarr: workers write their chunks themselves and
        must see ``store`` at the same path (shared file system).  HDF5: stripes travel
        back to the driver, which writes them.  Default: local threads.
    progress : bool, default False
        Show a tqdm progress bar over the stripes.
    dataset : str, default "dissimilarity"
        HDF5 dataset name.  zarr stores hold a single array at the root, so only the default
        is accepted there.
    num_workers : int, optional
        Local threads (default: number of cores).  Not allowed with ``client``.
    features_dataset : str, optional
        Dataset/array name of ``X`` inside an HDF5 file or zarr group given by path.
    **metric_params
        Metric parameters (e.g. ``p=3`` for minkowski).

    Returns
    -------
    DissimilaritySource
        The finished store opened with :func:`~chunked_medoids.open_dissimilarity`.

    Raises
    ------
    InvalidParameterError
        Bad ``store`` suffix, ``memory_limit``, ``block_rows``, ``dataset``; X not 2-D,
        empty or not finite.
    UnsupportedDtypeError
        ``dtype`` not one of float32/float64/int32/int64/float16, or X not numeric.
    QuantisationOverflowError
        ``dtype="float16"`` and a distance times ``scale`` exceeds float16's maximum.
    UnknownNameError
        Unknown metric or compressor name.
    StoreExistsError
        ``store`` exists and may not be touched (foreign, or built with other arguments).
    StoreLockedError
        Another process is building the same store.

    Notes
    -----
    Memory: about ``memory_limit`` plus X when X is in memory.  I/O: X is streamed once to
    validate and fingerprint it (and once more per stripe when X lives on disk); the
    matrix is written once.  Each stripe is computed by the features source, so the store
    holds exactly the values ``from_features(X, metric, dtype=dtype).read_rows`` returns:
    bitwise symmetric with an exactly zero diagonal.
    """
    # -- parameter validation (nothing touched yet) ---------------------------------------
    path, fmt = _check_store_path(store)
    try:
        np.dtype(dtype)
    except TypeError as exc:
        raise UnsupportedDtypeError(
            f"dtype must be one of float32, float64, int32, int64, float16, got {dtype!r}"
        ) from exc
    values_dt, dt = check_storage_dtype(dtype, "dtype")
    if scale is not None and dt == values_dt:
        raise InvalidParameterError(
            f"scale={scale!r} applies to dtype='float16' (the 2-byte storage type) only, got "
            f"dtype={dtype!r}; drop scale= or pass dtype='float16'")
    limit = parse_memory_limit(memory_limit, "memory_limit")
    if block_rows is not None:
        block_rows = check_int(block_rows, "block_rows", minimum=1)
    if not isinstance(overwrite, bool):
        raise InvalidTypeError(f"overwrite must be True or False, got {type(overwrite).__name__} {overwrite!r}")
    writer = WRITERS[fmt](path, dataset)
    if client is not None and num_workers is not None:
        raise InvalidParameterError("num_workers= sets local threads and cannot be combined with client=")
    comp_name, comp = writer.resolve_compressor(compressor)
    _check_writable(writer.path, writer.writable_dirs())

    from .sources.features import FeatureArray, from_features

    # cheap peek at (n, d) to size the stripes before the (streaming) validation pass
    peek = FeatureArray(X, dataset=features_dataset)
    n, d = peek.n, peek.d
    from ._paths import check_output_not_input, feature_locations

    check_output_not_input(writer.path, fmt, getattr(writer, "dataset", None), feature_locations(peek))
    del peek
    engine = Engine(memory_limit=limit, client=client, num_workers=num_workers,
                    progress=progress and writer.engine_progress)
    try:
        # float16: the stripe is computed in float32 before it is quantised, so plan with 4 bytes
        plan = plan_stripes(n, d, values_dt.itemsize, limit, engine.parallelism, block_rows, writer.fmt)
        if not plan["fits"]:
            logger.warning(
                "memory_limit=%s is below the estimated need of %s for %d parallel stripes of %d rows "
                "(n=%d); the build may use more memory than asked", format_bytes(limit),
                format_bytes(plan["estimated_peak"]), plan["parallelism"], plan["stripe_rows"], n)
        fsrc = from_features(X, metric, dtype=dt, block_rows=plan["stripe_rows"],
                             feature_block_rows=plan["feature_block_rows"],
                             dataset=features_dataset, scale=scale, **metric_params)
        mdesc = fsrc.metric.describe()
        # valid by construction (finite features, every computed value checked finite and
        # >= 0, symmetric with a zero diagonal): readers skip validation (sources/validate.py)
        meta = _new_store_meta(n, dt, plan, comp_name, metric=mdesc["metric"], metric_params=mdesc["params"],
                              fingerprint=_features_hash(fsrc), features_shape=[int(n), int(d)],
                              validated=True,
                              scale=float(fsrc.scale) if fsrc.storage_dtype is not None else None)
        fref = getattr(getattr(fsrc, "features", None), "_ref", None)
        if isinstance(getattr(fref, "filename", None), str) and os.path.realpath(fref.filename) == os.path.realpath(path):
            fref.close()  # X in another dataset of this HDF5 file: reread through the writer's handle
        with _build_lock(writer.path):
            meta = _prepare(writer, meta, plan, block_rows, overwrite, limit)
            if meta is None:  # complete store with the same arguments
                logger.info("store %s is complete and matches the request; returned unchanged", writer.path)
            else:
                rows = fsrc if fsrc.storage_dtype is None else _StoredRows(fsrc)
                try:
                    writer.write(meta, comp, plan, rows, engine, progress)
                except OSError as exc:
                    if isinstance(exc, ChunkedMedoidsError):
                        raise
                    raise _write_error(writer.where, exc) from exc
    finally:
        engine.close()
    return writer.open()


def _write_error(where: str, exc: OSError) -> OSError:
    """An OSError of the same errno (hence the same subclass) naming the store and the fix."""
    import errno as _errno

    reason = exc.strerror or str(exc)
    hint = " (free some space)" if exc.errno in (_errno.ENOSPC, _errno.EDQUOT) else ""
    msg = (f"writing store {where!r} failed: {type(exc).__name__}: {reason}{hint}. The store is "
           "left marked incomplete (complete=False) and every stripe already written is kept; "
           "rerun build_dissimilarity(...) with the same arguments to resume the build")
    if exc.errno is None:
        return OSError(msg)
    return OSError(exc.errno, msg)


def _probe_write(directory: str) -> None:
    import tempfile

    fd, tmp = tempfile.mkstemp(prefix=".cm-probe-", dir=directory)
    os.close(fd)
    os.unlink(tmp)


def _check_writable(path: str, extra_dirs=()) -> None:
    """Fail before any work when the store (or its directory) cannot be written.

    ``os.access`` answers for permission bits, read-only mounts and immutable inodes (even
    for root); a probe file catches what it cannot see (e.g. network file systems).
    """
    parent = os.path.dirname(path) or "."
    if not os.path.isdir(parent):
        raise MissingFileError(f"the directory of store {path!r} does not exist: {parent!r}; create it first")
    targets = [parent, *extra_dirs]  # the lock file <store>.lock lives in parent, and a new store
    for directory in targets:
        problem = None
        if not os.access(directory, os.W_OK | os.X_OK):
            problem = "is not writable"
        else:
            try:
                _probe_write(directory)
            except OSError as exc:
                problem = f"cannot be written ({type(exc).__name__}: {exc.strerror or exc})"
        if problem:
            raise ReadOnlyLocationError(
                f"cannot build store {path!r}: directory {directory!r} {problem}; nothing was "
                "computed. Choose a writable location or fix the permissions"
            )
    if os.path.isfile(path) and not os.access(path, os.W_OK):
        raise ReadOnlyLocationError(
            f"cannot build store {path!r}: the file is read-only; nothing was computed. Choose "
            "a writable location or fix the permissions"
        )


def _features_hash(fsrc) -> str:
    return str(fsrc.features_hash)


def _prepare(writer, meta, plan, block_rows, overwrite, limit):
    """Apply the overwrite/resume rules; return the metadata to build with or None (done)."""
    where = writer.where
    state, old = writer.inspect()
    if state in ("absent", "absent-dataset"):
        meta["_create"] = True
        return meta
    if overwrite:
        logger.info("overwrite=True: replacing %s", where)
        writer.delete(state)
        meta["_create"] = True
        return meta
    if old is not None and "_damaged" in old:
        raise old["_damaged"]
    if state in ("foreign", "foreign-file"):
        raise StoreExistsError(
            f"store {where!r} exists and was not written by build_dissimilarity; pass overwrite=True "
            "to replace it or choose another path"
        )
    if old.get("complete", False):
        diff = _differences(old, meta, _IDENTITY)
        if not diff:
            lost = writer.lost_stripes(old)
            if not lost:
                return None
            # a complete zarr store whose chunk files went missing: recompute just those
            logger.warning("store %s claims completeness but stripes %s are missing; recomputing them",
                           where, lost[:10])
            healed = dict(old, complete=False, _create=False, _reset=True)
            healed["completed_stripes"] = [i for i in range(int(old["n_stripes"])) if i not in set(lost)]
            return healed
        raise StoreExistsError(
            f"store {where!r} already holds a complete matrix built with other arguments ("
            + "; ".join(diff) + "); pass overwrite=True to replace it or choose another path"
        )
    diff = _differences(old, meta, _RESUME)
    old_rows = int(old.get("stripe_rows", 0))
    if not diff:
        if block_rows is not None and min(block_rows, meta["n"]) != old_rows:
            diff.append(f"stripe_rows: store has {old_rows}, requested block_rows={block_rows}")
        elif block_rows is None and old_rows > plan["max_rows"]:
            raise InvalidParameterError(
                f"memory_limit is too small to resume {where!r}: its stripes have {old_rows} rows but the "
                f"budget allows {plan['max_rows']} with {plan['parallelism']} parallel stripes; rerun with "
                f"a larger memory_limit (about {format_bytes(limit * old_rows / max(plan['max_rows'], 1))}), "
                "fewer num_workers, or overwrite=True"
            )
    if diff:
        raise StoreExistsError(
            f"store {where!r} is an unfinished build with other arguments ("
            + "; ".join(diff) + "); rerun with the original arguments to resume it, or pass overwrite=True"
        )
    resumed = dict(old)
    resumed["_create"] = False
    return resumed


def h5kw_of(dset) -> dict:
    """The filter keywords of an existing h5py dataset (none / gzip+shuffle / other)."""
    kw = {}
    if dset.compression is not None:
        kw["compression"] = dset.compression
        if dset.compression_opts is not None:
            kw["compression_opts"] = dset.compression_opts
    if dset.shuffle:
        kw["shuffle"] = True
    if dset.fletcher32 or dset.scaleoffset is not None or (dset.compression is None and _has_other_filters(dset)):
        kw["other"] = True
    return kw


def _has_other_filters(dset) -> bool:
    try:
        plist = dset.id.get_create_plist()
        return plist.get_nfilters() > (1 if dset.shuffle else 0)
    except Exception:  # pragma: no cover - be safe: take the generic path
        return True


def _checked_meta(meta, shape, chunk_rows, where, exact_rows):
    """``meta`` after :func:`~chunked_medoids._store_meta.check_meta`; damaged metadata is
    marked ``_damaged`` (overwrite=True replaces the store, anything else is refused)."""
    from ._store_meta import check_meta

    try:
        check_meta(meta, shape, chunk_rows, where, exact_rows=exact_rows)
    except StoreCorruptionError as exc:
        meta["_damaged"] = exc
    return meta


def _public_meta(meta):
    return {k: v for k, v in meta.items() if not k.startswith("_")}


# ---------------------------------------------------------------------------------------
# store writers: everything format-specific of a build
# ---------------------------------------------------------------------------------------
class StoreWriter(Protocol):
    """What :func:`build_dissimilarity` needs from a store format (zarr, HDF5).

    The build driver validates the arguments, plans the stripes, fingerprints X, takes the
    build lock and applies the overwrite / resume rules; a writer knows its format's layout:
    how to inspect, delete, write and reopen a store.  One instance per build.

    Attributes
    ----------
    fmt : str
        Format name, the key of :data:`WRITERS` (``"zarr"`` or ``"hdf5"``).
    path : str
        Absolute path of the store.
    where : str
        The store as named in messages (``path``, or ``path:dataset`` for HDF5).
    engine_progress : bool
        Whether the engine's progress bar covers the stripes (else :meth:`write` shows one).
    """

    fmt: str
    path: str
    where: str
    engine_progress: bool

    def resolve_compressor(self, compressor) -> tuple[str, Any]:
        """``(name recorded in the metadata, codecs or h5py keywords)`` for ``compressor``."""

    def writable_dirs(self) -> list[str]:
        """Directories besides the store's parent that the build writes into."""

    def inspect(self) -> tuple[str, dict | None]:
        """``(state, metadata)``; state is ``"absent"``, ``"absent-dataset"`` (HDF5 file
        without the dataset), ``"foreign"``, ``"foreign-file"`` (not an HDF5 file) or
        ``"ours"`` (written by :func:`build_dissimilarity`, with its metadata)."""

    def lost_stripes(self, meta: dict) -> list[int]:
        """Stripes a complete store claims but no longer holds (checked cheaply, or [])."""

    def delete(self, state: str) -> None:
        """Remove the store (``overwrite=True``), given its :meth:`inspect` state."""

    def write(self, meta: dict, codec, plan: dict, fsrc, engine, progress: bool) -> None:
        """Create (``meta["_create"]``) or reopen the store and compute the missing stripes
        of ``fsrc`` into it with ``engine``, recording completion in the metadata."""

    def open(self):
        """The finished store as a :class:`~chunked_medoids.sources.DissimilaritySource`."""


class ZarrWriter:
    """:class:`StoreWriter` of a zarr v3 directory store (one chunk per stripe, written by the
    stripe tasks themselves; see the module notes)."""

    fmt = "zarr"
    engine_progress = True

    def __init__(self, path: str, dataset: str | None = None):
        if dataset not in (None, "dissimilarity"):
            raise InvalidParameterError(
                f"dataset={dataset!r} applies to HDF5 output only; a .zarr store holds one array at its root "
                "(drop dataset= or write to a .h5 file)"
            )
        self.path = self.where = path

    def resolve_compressor(self, compressor):
        return _resolve_compressor(compressor, self.fmt)

    def writable_dirs(self):
        path = self.path
        if not os.path.isdir(path):
            return []
        return [path] + [os.path.join(path, d) for d in ("c",) if os.path.isdir(os.path.join(path, d))]

    def inspect(self):
        path = self.path
        if not os.path.exists(path):
            return "absent", None
        if os.path.isdir(path) and not os.listdir(path):
            return "absent", None
        if not os.path.isdir(path):
            return "foreign", None
        if not any(os.path.exists(os.path.join(path, m)) for m in ("zarr.json", ".zarray", ".zgroup")):
            files = [f for _, _, fs in os.walk(path) for f in fs]
            if all(f.endswith(".partial") for f in files):
                return "absent", None  # a creation that never got its metadata written (full disk)
        import zarr

        try:
            arr = zarr.open_array(store=path, mode="r")
        except Exception:
            return "foreign", None
        try:
            meta = read_meta(arr.attrs, path)
        except StoreCorruptionError as exc:  # overwrite=True replaces it, anything else is refused
            return "ours", {"_damaged": exc}
        if meta is not None:
            _checked_meta(meta, arr.shape, arr.chunks[0], path, True)
        return ("ours", meta) if meta is not None else ("foreign", None)

    def lost_stripes(self, meta):
        n_stripes = int(meta.get("n_stripes", 0))
        present = set(_zarr_present(self.path, n_stripes))
        return [i for i in range(n_stripes) if i not in present]

    def delete(self, state):
        if os.path.isdir(self.path):
            shutil.rmtree(self.path)
        else:
            os.unlink(self.path)

    def write(self, meta, codec, plan, fsrc, engine, progress):
        import zarr

        path, codecs = self.path, codec

        n, m, n_stripes = meta["n"], meta["stripe_rows"], meta["n_stripes"]
        dt = np.dtype(meta["dtype"])
        _remove_partials(path)  # left by a killed writer; we hold the build lock: none is live
        if meta.pop("_create"):
            from zarr.codecs import Crc32cCodec

            # a crc32c checksum after the compressor: a damaged chunk fails on read even when
            # the damage would still decode (blosc-lz4 has no checksum); ~4 GB/s, i.e. a few
            # percent of a streaming pass.
            arr = zarr.create_array(
                store=path, shape=(n, n), chunks=(m, n), dtype=dt,
                compressors=[*(codecs or []), Crc32cCodec()],
                fill_value=_fill_value(dt), attributes={ATTR: _public_meta(meta)},
                chunk_key_encoding={"name": "default", "separator": "/"},
                config={"write_empty_chunks": True}, overwrite=False,
            )
        else:
            arr = zarr.open_array(store=path, mode="r+")
            if tuple(arr.chunks) != (m, n) or arr.shape != (n, n):
                raise StoreCorruptionError(
                    f"store {path!r}: chunks {arr.chunks} / shape {arr.shape} do not match its metadata "
                    f"(stripe_rows={m}, n={n}); rebuild with overwrite=True"
                )
            if meta.pop("_reset", False):  # withdraw a completeness claim before repairing
                arr.attrs[ATTR] = _public_meta(meta)
        done = set(_zarr_present(path, n_stripes))
        missing = [i for i in range(n_stripes) if i not in done]
        logger.info("building %s: %d of %d stripes of %d rows to compute", path, len(missing), n_stripes, m)
        lock = threading.Lock()
        recorded = {"set": set(meta.get("completed_stripes", []))}

        def record(final=False):
            with lock:
                present = _zarr_present(path, n_stripes)
                if set(present) == recorded["set"] and not final:
                    return present
                meta["completed_stripes"] = present
                arr.attrs[ATTR] = _public_meta(meta)
                recorded["set"] = set(present)
                return present

        stop = threading.Event()

        def recorder():
            while not stop.wait(RECORD_INTERVAL):
                try:
                    record()
                except Exception:  # pragma: no cover - keep building; the final record reports
                    logger.exception("could not record completed stripes of %s", path)

        thread = threading.Thread(target=recorder, name="cm-build-record", daemon=True)
        thread.start()
        ok = False
        try:
            if missing:
                engine.map_blocks(fsrc, _write_zarr_stripe, {"path": path},
                                  blocks=_stripe_ranges(n, m, missing), desc="build stripes")
            ok = True
        finally:
            stop.set()
            thread.join()
            try:
                present = record(final=True)
            except OSError as exc:
                if ok:
                    raise
                # e.g. the disk is still full: the store stays complete=False, and the chunk
                # files on disk remain the completion record a rerun trusts
                logger.warning("could not record completed stripes of %s (%s); the chunk files on "
                               "disk remain the record a rerun trusts", path, exc.strerror or exc)
                present = _zarr_present(path, n_stripes)
            if not ok:
                logger.warning("build of %s interrupted: %d of %d stripes written; rerun to resume",
                               path, len(present), n_stripes)
        if len(present) != n_stripes:
            lost = sorted(set(range(n_stripes)) - set(present))
            raise StoreCorruptionError(
                f"store {path!r}: stripes {lost[:10]} are missing after the build although their tasks "
                "succeeded (file system trouble?); rerun to compute them"
            )
        meta["complete"] = True
        meta["completed_stripes"] = list(range(n_stripes))
        arr.attrs[ATTR] = _public_meta(meta)
        logger.info("store %s complete (%d stripes)", path, n_stripes)

    def open(self):
        from .sources import open_dissimilarity

        return open_dissimilarity(self.path)


class HDF5Writer:
    """:class:`StoreWriter` of a dataset in an HDF5 file (written by the driver process in
    waves of stripes; see the module notes)."""

    fmt = "hdf5"
    engine_progress = False

    def __init__(self, path: str, dataset: str = "dissimilarity"):
        if not isinstance(dataset, str) or not dataset.strip("/"):
            raise InvalidParameterError(f"dataset must be a non-empty HDF5 dataset name, got {dataset!r}")
        self.path, self.dataset = path, dataset
        self.where = f"{path}:{dataset}"

    def resolve_compressor(self, compressor):
        return _resolve_compressor(compressor, self.fmt)

    def writable_dirs(self):
        return []

    def inspect(self):
        path, dataset = self.path, self.dataset
        if not os.path.exists(path):
            return "absent", None
        import h5py

        if os.path.isdir(path) or not h5py.is_hdf5(path):
            return "foreign-file", None
        with h5py.File(path, "r") as f:
            obj = f.get(dataset)
            if obj is None:
                return "absent-dataset", None
            if not isinstance(obj, h5py.Dataset):
                return "foreign", None
            try:
                meta = read_meta(obj.attrs, self.where)
            except StoreCorruptionError as exc:  # overwrite=True replaces it, anything else is refused
                return "ours", {"_damaged": exc}
            if meta is not None:
                _checked_meta(meta, obj.shape, obj.chunks[0] if obj.chunks else None, self.where, False)
        return ("ours", meta) if meta is not None else ("foreign", None)

    def lost_stripes(self, meta):
        return []  # chunks are not files: completion is the recorded stripes

    def delete(self, state):
        path, dataset = self.path, self.dataset
        if state == "foreign-file":
            if os.path.isdir(path):
                raise StoreExistsError(f"store {path!r} is a directory, not an HDF5 file; remove it yourself")
            os.unlink(path)
            return
        import h5py

        _refuse_if_read_elsewhere(path, self.where)
        with h5py.File(path, "r") as f:
            others = [k for k in f.keys() if k != dataset.strip("/").split("/")[0]] or list(f.attrs.keys())
            only = not others and "/" not in dataset.strip("/")
        if only:
            os.unlink(path)
        else:
            try:
                f = h5py.File(path, "a")
            except OSError as exc:
                if "already open" not in str(exc):
                    raise
                raise StoreLockedError(
                    f"cannot overwrite {self.where!r}: the HDF5 file is open read-only in this process "
                    "(HDF5 cannot reopen it for writing); close the sources reading it (source.close()) and "
                    "retry") from exc
            with f:
                del f[dataset]

    def write(self, meta, codec, plan, fsrc, engine, progress):
        try:
            self._write(meta, codec, plan, fsrc, engine, progress)
        except _NotEnoughSpace as exc:  # refused before HDF5 wrote: the file and library are fine
            raise _StoreWriteError(exc.errno, _write_error(self.where, OSError(exc.errno, exc.strerror)).strerror) from None
        except (RuntimeError, OSError) as exc:
            if isinstance(exc, ChunkedMedoidsError) or not _HDF5_WRITE_FAILURE.search(str(exc)):
                raise  # not the HDF5 library failing to write (a task error, a read error...)
            raise _h5_write_failure(self.where, exc) from exc

    def _write(self, meta, codec, plan, fsrc, engine, progress):
        import h5py

        path, dataset, h5kw = self.path, self.dataset, codec

        n, m, n_stripes = meta["n"], meta["stripe_rows"], meta["n_stripes"]
        dt = np.dtype(meta["dtype"])
        create = meta.pop("_create")
        row = n * dt.itemsize
        try:
            f = h5py.File(path, "a", libver=("v108", "latest"), rdcc_nbytes=hdf5_cache_bytes(m, row))
        except OSError as exc:
            if "already open" in str(exc):
                raise StoreLockedError(
                    f"HDF5 file {path!r} is open read-only in this process (HDF5 cannot reopen it for "
                    "writing); close the sources reading it (source.close()) and retry"
                ) from exc
            raise
        with f:
            if create:
                # which build readers are reading: a dataset rebuilt in place (overwrite=True on a
                # file holding other datasets too) is told apart from the one a reader opened
                meta["build_id"] = uuid.uuid4().hex
                h5_rows = plan["h5_chunk_rows"]  # a new store uses the plan's stripe height
                dset = f.create_dataset(dataset, shape=(n, n), dtype=dt, chunks=(h5_rows, n),
                                        fillvalue=_fill_value(dt), **h5kw)
                dset.attrs[ATTR] = json.dumps(_public_meta(meta))
                f.flush()
            else:
                dset = f[dataset]
                if dset.shape != (n, n) or m % dset.chunks[0]:
                    raise StoreCorruptionError(
                        f"store {path}:{dataset}: shape {dset.shape} / chunks {dset.chunks} do not match its "
                        f"metadata (n={n}, stripe_rows={m}); rebuild with overwrite=True"
                    )
            done = set(int(i) for i in meta.get("completed_stripes", []))
            missing = [i for i in range(n_stripes) if i not in done]
            logger.info("building %s:%s: %d of %d stripes of %d rows to compute", path, dataset,
                        len(missing), n_stripes, m)
            bar = None
            if progress:
                from tqdm.auto import tqdm

                bar = tqdm(total=n_stripes, initial=n_stripes - len(missing), desc="build stripes",
                           unit="stripe", leave=False)
            wave = max(1, engine.parallelism)
            direct = _direct_chunk_state(h5kw_of(dset), dt, int(dset.chunks[0]))
            try:
                for w0 in range(0, len(missing), wave):
                    ids = missing[w0:w0 + wave]
                    ranges = _stripe_ranges(n, m, ids)
                    _check_free_space(path, sum(b - a for a, b in ranges) * row)
                    if direct is not None:  # chunks encoded in the tasks, written raw here
                        encoded = engine.map_blocks(fsrc, _encode_h5_stripe, direct, blocks=ranges,
                                                    desc="build stripes")
                        for chunks in encoded:
                            for r0, data in chunks:
                                dset.id.write_direct_chunk((r0, 0), data, 0)
                        del encoded, chunks
                    else:
                        blocks = engine.map_blocks(fsrc, _return_block, None, blocks=ranges,
                                                   desc="build stripes")
                        for (a, b), blk in zip(ranges, blocks):
                            dset.write_direct(np.ascontiguousarray(blk), None, np.s_[a:b])
                        del blocks, blk
                    f.flush()  # data first, then the record of it
                    done.update(ids)
                    meta["completed_stripes"] = sorted(done)
                    dset.attrs[ATTR] = json.dumps(_public_meta(meta))
                    f.flush()
                    if bar is not None:
                        bar.update(len(ids))
            finally:
                if bar is not None:
                    bar.close()
            meta["complete"] = True
            meta["completed_stripes"] = list(range(n_stripes))
            dset.attrs[ATTR] = json.dumps(_public_meta(meta))
            f.flush()
        logger.info("store %s:%s complete (%d stripes)", path, dataset, n_stripes)

    def open(self):
        from .sources import open_dissimilarity

        return open_dissimilarity(self.path, dataset=self.dataset)


#: set once an HDF5 write failed in this process: the HDF5 library (2.0) is left in a state
#: in which closing files or exiting the interpreter can crash (SIGSEGV); the CLI then ends
#: with ``os._exit`` after its message.
HDF5_WRITE_FAILED = False
#: bytes kept free besides a wave's raw size before an HDF5 wave is written (metadata).
HDF5_SPACE_MARGIN = 1 << 20


def _remove_partials(path: str) -> int:
    """Remove the ``*.partial`` temporary files zarr's local store leaves when its writer is
    killed mid-write (it writes ``<key>.<uuid>.partial`` and renames); returns their number.
    Called under the build lock, so no live writer of this store owns one."""
    removed = 0
    for dp, _, files in os.walk(path):
        for fn in files:
            if fn.endswith(".partial"):
                with contextlib.suppress(OSError):
                    os.unlink(os.path.join(dp, fn))
                    removed += 1
    if removed:
        logger.info("removed %d stale *.partial chunk files from %s", removed, path)
    return removed


def _check_free_space(path: str, nbytes: int) -> None:
    """Refuse to start an HDF5 wave the file system cannot hold (raw size + margin): HDF5 does
    not survive a full disk mid-write, so the wave is not started and the file stays healthy."""
    try:
        st = os.statvfs(os.path.dirname(path) or ".")
    except (AttributeError, OSError):  # pragma: no cover - not POSIX
        return
    free = st.f_bavail * st.f_frsize
    need = int(nbytes) + HDF5_SPACE_MARGIN
    if free < need:
        import errno as _errno

        raise _NotEnoughSpace(_errno.ENOSPC, f"No space left on device: the next stripes need up to "
                                             f"{format_bytes(need)} and {format_bytes(free)} are free")


def _refuse_if_read_elsewhere(path: str, where: str) -> None:
    """Raise StoreLockedError when another process has the HDF5 file ``path`` open (a reader
    mid-pass): overwriting it now would change the matrix under that reader.  Probed with
    HDF5's own file lock (a reader holds a shared one, a writer needs it exclusively); where
    file locking is off (``HDF5_USE_FILE_LOCKING=FALSE``) the probe passes and readers
    notice the replaced file at their next block read instead."""
    import h5py

    try:
        h5py.File(path, "r+").close()
    except OSError as exc:
        if "unable to lock" not in str(exc).lower() and "resource temporarily unavailable" not in str(exc).lower():
            return  # open in this process, read-only file...: decided by the caller
        raise StoreLockedError(
            f"cannot overwrite {where!r}: another process has the HDF5 file open (a reader mid-pass, or a "
            "writer); replacing it would change the matrix under that process. Wait until it has finished "
            "(or stop it) and retry") from exc


class _NotEnoughSpace(OSError):
    """Raised before an HDF5 wave that would not fit (nothing was written)."""


class _StoreWriteError(ChunkedMedoidsError, OSError):
    """A write error whose message already names the store and the fix."""


#: how the HDF5 library reports a failed write (h5py raises RuntimeError or OSError)
_HDF5_WRITE_FAILURE = __import__("re").compile(r"file write failed|[Uu]nable to .*(flush|write)|[Cc]an't write")


def _h5_write_failure(where: str, exc: BaseException) -> OSError:
    """The OSError (errno from h5py's message when it only says RuntimeError) of a failed HDF5
    write, naming the store; marks :data:`HDF5_WRITE_FAILED`."""
    import re

    global HDF5_WRITE_FAILED
    HDF5_WRITE_FAILED = True
    err = getattr(exc, "errno", None)
    if err is None:
        m = re.search(r"errno = (\d+)", str(exc))
        err = int(m.group(1)) if m else None
    if err is None and not isinstance(exc, OSError):
        err = 5  # EIO: an HDF5 write error without an errno
    reason = os.strerror(err) if err else str(exc)
    wrapped = _write_error(where, OSError(err, reason))
    return _StoreWriteError(wrapped.errno, f"{wrapped.strerror}. The HDF5 library cannot be used safely in "
                                           "this process after a failed write: end this Python process (it "
                                           "may crash when it exits) and resume in a new one")


#: store format -> its :class:`StoreWriter` class (the format comes from the path suffix).
WRITERS: dict[str, type] = {"zarr": ZarrWriter, "hdf5": HDF5Writer}


def store_writer(store, dataset: str | None = "dissimilarity") -> StoreWriter:
    """The :class:`StoreWriter` for output path ``store`` (format from its suffix).

    Raises
    ------
    InvalidTypeError, InvalidParameterError
        ``store`` is not a path with a zarr / HDF5 suffix, or ``dataset`` does not fit the format.
    """
    path, fmt = _check_store_path(store)
    return WRITERS[fmt](path, dataset)


# ---------------------------------------------------------------------------------------
# store_info
# ---------------------------------------------------------------------------------------
def _dir_size(path):
    total = 0
    for dp, _, files in os.walk(path):
        for fn in files:
            with contextlib.suppress(OSError):
                total += os.path.getsize(os.path.join(dp, fn))
    return total


def store_info(path: PathLike, dataset: str | None = None) -> dict[str, Any]:
    """Describe a dissimilarity store (zarr or HDF5) without reading its values.

    Parameters
    ----------
    path : str or os.PathLike
        ``*.zarr`` directory or ``*.h5``/``*.hdf5``/``*.he5`` file (built by
        :func:`build_dissimilarity` or foreign).
    dataset : str, optional
        HDF5 dataset / zarr group member; default ``"dissimilarity"`` when present, else the
        only array.

    Returns
    -------
    dict
        JSON-able: ``path``, ``format``, ``dataset``, ``shape``, ``dtype`` (as stored),
        ``scale`` (float16 stores: stored value = distance × scale; else None),
        ``values_dtype`` (what readers return: float32 for float16 stores), ``chunks``,
        ``compressor``, ``fill_value``, ``managed`` (carries chunked_medoids metadata),
        ``metric``, ``metric_params``, ``features_fingerprint``, ``version``,
        ``complete`` (foreign stores count as complete), ``stripe_rows``, ``n_stripes``,
        ``completed_stripes`` / ``missing_stripes`` (counts; zarr: chunks actually on disk),
        ``nbytes`` (uncompressed matrix), ``stored_bytes`` (uncompressed bytes of the chunks
        written), ``size_on_disk`` and ``compression_ratio`` (stored_bytes / bytes of those
        chunks on disk, None when nothing is stored).

    Notes
    -----
    I/O: metadata and directory listings only; O(number of chunks).
    """
    p, fmt = _check_store_path(path)
    if not os.path.exists(p):
        raise MissingFileError(f"store {p!r} does not exist")
    if fmt == "zarr":
        info = _zarr_info(p, dataset)
    else:
        info = _hdf5_info(p, dataset)
    info["path"] = p
    info["format"] = fmt
    stored, disk = info.pop("_stored"), info.pop("_disk_chunks")
    info["stored_bytes"] = int(stored)
    info["compression_ratio"] = (float(stored) / disk) if disk else None
    return info


def _common_meta(info, meta, n_chunks_rows, present_stripes=None):
    info["managed"] = meta is not None
    m = meta or {}
    for k in ("metric", "metric_params", "features_fingerprint", "version", "compressor"):
        info.setdefault(k, None)
        if k in m:
            info[k] = m[k]
    info["complete"] = bool(m.get("complete", True)) if meta is not None else True
    # float16 stores: the scale (stored = distance x scale) and what readers see
    f16 = info.get("dtype") == "float16"
    info["scale"] = float(m.get("scale", 1.0)) if f16 else None
    info["values_dtype"] = "float32" if f16 else info.get("dtype")
    if meta is not None:
        info["stripe_rows"] = int(m.get("stripe_rows", n_chunks_rows))
        info["n_stripes"] = int(m.get("n_stripes", 0))
        if present_stripes is not None:  # zarr: the chunks on disk are the truth
            done = present_stripes
        elif info["complete"]:
            done = info["n_stripes"]
        else:
            done = len(set(m.get("completed_stripes", [])))
        info["completed_stripes"] = int(done)
        info["missing_stripes"] = int(info["n_stripes"] - done)
    else:
        info["stripe_rows"] = int(n_chunks_rows)
        info["n_stripes"] = None
        info["completed_stripes"] = None
        info["missing_stripes"] = None
    return info


def _zarr_info(p, dataset):
    from .sources.zarr_store import ZarrArrayRef

    ref = ZarrArrayRef(p, dataset)
    arr = ref.get()
    meta = read_meta(arr.attrs, ref.location)
    if meta is None:
        meta = ref.group_meta
    shape = tuple(int(s) for s in arr.shape)
    chunks = tuple(int(c) for c in arr.chunks)
    dt = np.dtype(arr.dtype)
    arr_dir = os.path.join(ref.root or p, ref.path or "")
    from ._store_meta import check_meta
    from .sources._chunks import local_array_dir, zarr_chunk_keys, zarr_grid

    check_meta(meta, shape, zarr_grid(arr)[0], ref.location)
    stored_keys = zarr_chunk_keys(arr, local_array_dir(ref))  # a listing: what is on disk
    present = None
    if meta is not None and ref.path in (None, "") and chunks[1:] == shape[1:]:
        present = len(_zarr_present(arr_dir, int(meta.get("n_stripes", 0))))
    try:
        comps = [c.to_dict() for c in arr.compressors]
    except Exception:  # pragma: no cover
        comps = [repr(c) for c in getattr(arr, "compressors", ())]
    grid = zarr_grid(arr)
    nchunks = len(stored_keys) * (int(np.prod(grid)) // int(np.prod(chunks)))
    chunk_bytes = int(np.prod(chunks)) * dt.itemsize
    size = _dir_size(arr_dir)
    meta_bytes = sum(os.path.getsize(os.path.join(arr_dir, fn)) for fn in ("zarr.json", ".zarray", ".zattrs")
                     if os.path.exists(os.path.join(arr_dir, fn)))
    fill = arr.fill_value
    fill = None if fill is None else (float(fill) if dt.kind == "f" else int(fill))
    info = {
        "dataset": ref.path or None,
        "shape": list(shape),
        "dtype": str(dt),
        "chunks": list(chunks),
        "codecs": comps,
        "fill_value": fill if fill is None or not (isinstance(fill, float) and np.isnan(fill)) else "NaN",
        "nbytes": int(np.prod(shape)) * dt.itemsize,
        "size_on_disk": int(size),
        "_stored": nchunks * chunk_bytes,
        "_disk_chunks": max(0, size - meta_bytes),
        # stored grid cells (shards when sharded) against the grid: a lost chunk shows here
        "chunks_stored": len(stored_keys),
        "chunks_total": (-(-shape[0] // grid[0])) * (-(-shape[1] // grid[1])) if len(shape) == 2 else None,
    }
    return _common_meta(info, meta, chunks[0], present)


def _hdf5_info(p, dataset):
    import h5py

    from .sources.hdf5 import _get_dataset, _open_file, resolve_h5

    if dataset is None:
        with _open_file(p) as f:
            dataset = "dissimilarity" if isinstance(f.get("dissimilarity"), h5py.Dataset) else None
    fname, name = resolve_h5(p, dataset, default=None)
    with _open_file(fname) as f:
        dset = _get_dataset(f, name, fname)
        meta = read_meta(dset.attrs, f"{fname}:{dset.name}")
        dt = np.dtype(dset.dtype)
        shape = tuple(int(s) for s in dset.shape)
        chunks = tuple(int(c) for c in dset.chunks) if dset.chunks else None
        from ._store_meta import check_meta

        check_meta(meta, shape, chunks[0] if chunks else None, f"{fname}:{dset.name}", exact_rows=False)
        storage = int(dset.id.get_storage_size())
        if chunks:
            nchunks = int(dset.id.get_num_chunks())
            stored = nchunks * int(np.prod(chunks)) * dt.itemsize
        else:
            stored = storage
        fill = dset.fillvalue
        fill = float(fill) if dt.kind == "f" else int(fill)
        info = {
            "dataset": dset.name,
            "shape": list(shape),
            "dtype": str(dt),
            "chunks": list(chunks) if chunks else None,
            "compression": dset.compression,
            "compression_opts": dset.compression_opts if not isinstance(dset.compression_opts, tuple)
            else list(dset.compression_opts),
            "shuffle": bool(dset.shuffle),
            "fill_value": "NaN" if isinstance(fill, float) and np.isnan(fill) else fill,
            "nbytes": int(np.prod(shape)) * dt.itemsize,
            "size_on_disk": int(os.path.getsize(fname)),
            "dataset_storage_bytes": storage,
            "_stored": stored,
            "_disk_chunks": storage,
        }
    return _common_meta(info, meta, chunks[0] if chunks else shape[0])
