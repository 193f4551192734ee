"""HDF5 datasets (h5py), opened lazily per process by filename.

The source stores only the file name and the dataset path.  The h5py file handle is opened
on first read in each process (cached keyed by ``os.getpid()``, so a forked or unpickled
copy reopens it) and is dropped when pickling: a Dask worker never receives an open h5py
object.
"""

from __future__ import annotations

import json
import os
import sys
import threading

import numpy as np

from .._budget import natural_block_rows
from .._errors import (
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    StoreCorruptionError,
    UnknownNameError,
)
from .._store_meta import check_complete, check_meta, read_meta
from .base import DissimilaritySource, check_storage_dtype, fill_marker, first_fill_position
from .memory import _check_square

#: dataset read by default from an HDF5 file given by path.
DEFAULT_DATASET = "dissimilarity"


def _is_h5py_object(obj) -> bool:
    h5py = sys.modules.get("h5py")
    return h5py is not None and isinstance(obj, (h5py.Dataset, h5py.Group))


def dataset_shapes(h5file) -> list[tuple[str, tuple]]:
    """``(path, shape)`` of every dataset in an open h5py file or group."""
    import h5py

    found = []

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            found.append((name, tuple(obj.shape)))

    h5file.visititems(visit)
    return found


def list_datasets(h5file) -> list[str]:
    """``"path (shape)"`` of every dataset in an open h5py file or group (for messages)."""
    return [f"{name} {shape}" for name, shape in dataset_shapes(h5file)]


def _open_file(filename: str):
    import h5py

    try:  # registers the blosc/zstd filters that stores built with those compressors need
        import hdf5plugin  # noqa: F401
    except ImportError:
        pass

    if not os.path.exists(filename):
        raise MissingFileError(f"HDF5 file {filename!r} does not exist")
    if os.path.isdir(filename) or not h5py.is_hdf5(filename):
        size = "" if os.path.isdir(filename) else f" ({os.path.getsize(filename)} bytes, no HDF5 signature)"
        raise InvalidParameterError(
            f"{filename!r} is not an HDF5 file{size}; pass a .h5/.hdf5/.he5 file written by h5py (or a "
            ".zarr / .npy store with the matching path suffix)"
        )
    try:
        return h5py.File(filename, "r")
    except OSError as exc:
        # h5py reports damage (e.g. "truncated file: eof = ..., stored_eof = ...") as a plain
        # OSError without errno; permission and locking problems keep their own type
        if exc.errno is not None or "unable to lock" in str(exc).lower():
            raise
        raise StoreCorruptionError(
            f"HDF5 file {filename!r} cannot be opened: it is truncated or damaged ({exc}); "
            "restore it from a copy or rebuild it (build_dissimilarity(..., overwrite=True))"
        ) from exc


def _get_dataset(h5file, dataset: str, filename: str):
    import h5py

    obj = h5file.get(dataset)
    if not isinstance(obj, h5py.Dataset):
        what = "is a group, not a dataset" if obj is not None else "does not exist"
        present = list_datasets(h5file)
        raise UnknownNameError(
            f"dataset {dataset!r} in HDF5 file {filename!r} {what}; datasets present: "
            f"{present if present else 'none'}; pick one with dataset='name'"
        )
    return obj


def _file_identity(f) -> tuple[int, int] | None:
    """``(st_dev, st_ino)`` of the file behind an open h5py file (None if unknown)."""
    try:
        st = os.fstat(f.id.get_vfd_handle())
    except Exception:  # noqa: BLE001 - a driver without a POSIX descriptor
        try:
            st = os.stat(f.filename)
        except OSError:
            return None
    return (st.st_dev, st.st_ino)


def _path_identity(filename: str) -> tuple[int, int] | None:
    try:
        st = os.stat(filename)
    except OSError:
        return None
    return (st.st_dev, st.st_ino)


def _replaced_error(filename: str, dataset: str, what: str) -> StoreCorruptionError:
    return StoreCorruptionError(
        f"HDF5 dataset {filename}:{dataset} was replaced or rewritten while it was being read ({what}: a "
        "concurrent 'build --overwrite' or another writer?); the rows read so far may belong to another "
        "matrix -- rerun once the writer has finished"
    )


class H5DatasetRef:
    """A picklable reference to one dataset of an HDF5 file (filename + dataset path).

    ``get()`` returns the open ``h5py.Dataset`` of the current process, opening the file
    read-only on first use.  Pickling drops the handle.

    Once :meth:`pin` recorded the identity of the file (device, inode) and the store's
    ``build_id``, every (re)open -- in this process, a forked one or a Dask worker -- checks
    it opened the same file and dataset build, and :meth:`check_not_replaced` checks the
    path still names that file (a ``build --overwrite`` unlinks and recreates it).
    """

    def __init__(self, filename, dataset: str):
        self.filename = os.path.abspath(os.fspath(filename))
        self.dataset = str(dataset)
        self._pid = None
        self._file = None
        self._dset = None
        self._lock = threading.Lock()
        self._identity = None  # (st_dev, st_ino) of the file when pinned
        self._build_id = None  # the store's build_id when pinned (stores we built)

    def pin(self, identity, build_id) -> None:
        """Remember which file (and build) later opens must find."""
        self._identity, self._build_id = identity, build_id

    def check_not_replaced(self) -> None:
        """Raise StoreCorruptionError when the path no longer names the pinned file.  One
        ``stat`` per call."""
        if self._identity is not None and _path_identity(self.filename) != self._identity:
            raise _replaced_error(self.filename, self.dataset, "the file was replaced")

    def _check_opened(self, f, dset) -> None:
        if self._identity is not None and _file_identity(f) != self._identity:
            raise _replaced_error(self.filename, self.dataset, "the file was replaced")
        if self._build_id is not None:
            meta = _meta_of(dset) or {}
            if meta.get("build_id") != self._build_id:
                raise _replaced_error(self.filename, self.dataset, "the dataset was rebuilt")

    def get(self):
        pid = os.getpid()
        if self._pid == pid and self._dset is not None:
            return self._dset
        if self._pid != pid:  # new process (fork): a fresh lock, never the parent's handle
            self._lock = threading.Lock()
            self._file = self._dset = None
            self._pid = pid
        with self._lock:
            if self._dset is None:
                f = _open_file(self.filename)
                try:
                    dset = _get_dataset(f, self.dataset, self.filename)
                    self._check_opened(f, dset)
                    self._dset = dset
                except Exception:
                    f.close()
                    raise
                self._file = f
        return self._dset

    def close(self) -> None:
        if self._file is not None and self._pid == os.getpid():
            try:
                self._file.close()
            except Exception:  # pragma: no cover - already closed
                pass
        self._file = self._dset = None

    def __getstate__(self):
        return {"filename": self.filename, "dataset": self.dataset, "identity": self._identity,
                "build_id": self._build_id}

    def __setstate__(self, state):
        self.filename = state["filename"]
        self.dataset = state["dataset"]
        self._identity = state.get("identity")
        self._build_id = state.get("build_id")
        self._pid = None
        self._file = None
        self._dset = None
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"H5DatasetRef({self.filename!r}, {self.dataset!r})"


def resolve_h5(obj, dataset: str | None, default: str | None = DEFAULT_DATASET) -> tuple[str, str]:
    """``(filename, dataset path)`` from a path, an ``h5py.Dataset`` or an ``h5py.Group``."""
    if _is_h5py_object(obj):
        import h5py

        filename = obj.file.filename
        if isinstance(obj, h5py.Dataset):
            if dataset is not None and dataset.strip("/") != obj.name.strip("/"):
                raise InvalidParameterError(
                    f"dataset={dataset!r} cannot be combined with the h5py.Dataset {obj.name!r}; "
                    "pass either the Dataset object or the file name with dataset="
                )
            name = obj.name
        else:
            name = dataset if dataset is not None else default
            if name is None:
                raise InvalidParameterError(
                    f"an h5py group needs dataset='name'; datasets present: {list_datasets(obj)}"
                )
            name = obj.name.rstrip("/") + "/" + name.lstrip("/")
        if not os.path.exists(filename):
            raise InvalidParameterError(
                f"the h5py object lives in {filename!r}, which is not a file on disk (in-memory "
                "HDF5 files cannot be reopened by worker processes); write it to a file first"
            )
        return filename, name
    if isinstance(obj, (str, os.PathLike)):
        if dataset is not None and not isinstance(dataset, str):
            raise InvalidTypeError(f"dataset must be a string, got {type(dataset).__name__} {dataset!r}")
        filename = os.fspath(obj)
        name = dataset if dataset is not None else default
        if name is None:
            with _open_file(filename) as f:
                shapes = dataset_shapes(f)
                present = list_datasets(f)
            if len(shapes) == 1:
                return filename, shapes[0][0]
            raise InvalidParameterError(
                f"HDF5 file {filename!r} holds {len(present)} datasets {present}; pick one with dataset='name'"
            )
        return filename, name
    raise InvalidTypeError(
        f"expected a path to an HDF5 file or an h5py.Dataset, got {type(obj).__name__}"
    )


def _meta_of(dset) -> dict | None:
    where = f"{dset.file.filename}:{dset.name}"
    meta = read_meta(dset.attrs, where)
    if meta is None and dset.parent is not None:
        meta = read_meta(dset.parent.attrs, where)
    return meta


class HDF5Source(DissimilaritySource):
    """A dissimilarity stored as a 2-D HDF5 dataset.

    Parameters
    ----------
    obj : str, os.PathLike, h5py.Dataset or h5py.Group
        Path of the HDF5 file, or an open h5py object (only its file name and dataset path
        are kept; the file must exist on disk).
    dataset : str, optional
        Dataset path inside the file; default ``"dissimilarity"``.  Not allowed together
        with an ``h5py.Dataset``.
    allow_incomplete : bool, default False
        Open a store written by :func:`~chunked_medoids.build_dissimilarity` even if some of
        its stripes were never written (for inspection).

    Notes
    -----
    ``block_rows`` is the dataset's chunk height (for contiguous datasets a height of about
    64 MiB of rows).  The file is opened read-only, lazily on the first read, once per
    process; pickling keeps only ``(filename, dataset)``.  Call :meth:`close` to release the
    handle (e.g. before writing to the same file from this process); a later read reopens it.

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    UnknownNameError
        The dataset does not exist (the message lists the datasets present).
    InvalidParameterError
        The dataset is not square or is empty; the file is not HDF5.
    UnsupportedDtypeError
        The dataset dtype is not float32/float64/int32/int64.
    IncompleteStoreError
        The store carries chunked_medoids metadata that says it is unfinished.
    StoreCorruptionError
        The file is truncated or damaged (at open), or a chunk cannot be read or decoded
        (on reads; the message names the chunk's row range).
    """

    kind = "hdf5"

    def __init__(self, obj, dataset: str | None = None, *, allow_incomplete: bool = False):
        filename, name = resolve_h5(obj, dataset)
        self._ref = H5DatasetRef(filename, name)
        try:
            dset = self._ref.get()
            where = f"{self._ref.filename}:{dset.name}"
            self.n = _check_square(dset.shape, f"HDF5 dataset {where!r}")
            self.dtype, stored = check_storage_dtype(dset.dtype, f"HDF5 dataset {where!r}")
            self.meta = _meta_of(dset)
            if stored != self.dtype:  # a float16 store (docs/architecture.rst §3): read as float32
                from .._quant import check_scale

                self.storage_dtype = stored
                self.scale = check_scale((self.meta or {}).get("scale", 1.0), f"scale of HDF5 dataset {where!r}")
            check_meta(self.meta, dset.shape, dset.chunks[0] if dset.chunks else None, where, exact_rows=False)
            if not allow_incomplete:
                check_complete(self.meta, where)
            self.chunks = tuple(dset.chunks) if dset.chunks else None
            # fill marker of never-written chunks (NaN / negative: never a valid distance)
            self._fill = fill_marker(dset.fillvalue) if (dset.chunks and not allow_incomplete) else None
            # the file and build read from here on: a store replaced under us is noticed
            if not allow_incomplete:
                self._ref.pin(_file_identity(dset.file), (self.meta or {}).get("build_id"))
        finally:
            # reopened lazily on the first read: an opened-but-unused source does not hold
            # the file (HDF5 refuses to open a file for writing while it is open read-only
            # in the same process, e.g. to resume a build)
            self._ref.close()
        # column stripes (chunks spanning every row) are read by columns: a column stripe of a
        # symmetric matrix is a row stripe transposed (each chunk decoded once per pass)
        self.by_columns = bool(self.chunks) and self.chunks[0] >= self.n and self.chunks[1] < self.n
        # a fill value that is a plausible distance (0): check the chunks a read touches exist
        self._check_presence = bool(self.chunks) and not allow_incomplete and self._fill is None
        if self.by_columns:
            self.block_rows = int(self.chunks[1])
        elif self.chunks:
            self.block_rows = int(min(self.n, self.chunks[0]))
            if self.chunks[1] < self.n:  # tiles: say once what a pass costs, and the fix
                from .zarr_store import _warn_tiles

                _warn_tiles(where, self.n, int(self.chunks[0]), int(self.chunks[1]), self.dtype.itemsize,
                            kind="HDF5 dataset", copy="COPY.h5",
                            source_arg=f"{self._ref.filename} --dataset {self._ref.dataset.lstrip('/')}")
        else:
            self.block_rows = natural_block_rows(self.n, self.storage_itemsize)

    @property
    def filename(self) -> str:
        return self._ref.filename

    @property
    def dataset(self) -> str:
        return self._ref.dataset

    def _read_rows(self, start, stop):
        dset = self._ref.get()
        if start == stop:
            return np.empty((0, self.n), dtype=self.stored_dtype)
        try:
            if self.by_columns:
                cols = np.empty((self.n, stop - start), dtype=self.stored_dtype)
                dset.read_direct(cols, np.s_[:, start:stop], np.s_[:])
                out = np.ascontiguousarray(cols.T)
                del cols
            else:
                out = np.empty((stop - start, self.n), dtype=self.stored_dtype)
                dset.read_direct(out, np.s_[start:stop], np.s_[:])
        except OSError as exc:
            if exc.errno is not None:
                raise
            raise self._read_error(dset, exc, start, stop) from exc
        if self.by_columns:
            if first_fill_position(out, self._fill, self.n) is not None:
                raise StoreCorruptionError(
                    f"HDF5 dataset {self._ref.filename}:{self._ref.dataset}: a chunk holding columns "
                    f"{start}:{stop} reads as the fill value (never written or lost); restore the file "
                    "or rebuild the matrix")
        else:
            self._check_fill(out, start)
        if self._check_presence:
            self._check_present(dset, start, stop)
        self._ref.check_not_replaced()
        return out

    def _check_present(self, dset, start, stop) -> None:
        """Raise StoreCorruptionError when a chunk of the rows just read was never written
        (HDF5 reads it as the fill value, here a plausible distance).  One chunk-index
        lookup per chunk the read touched."""
        cr, cc = self.chunks
        if self.by_columns:
            cells = [(r0, c0) for r0 in range(0, self.n, cr) for c0 in range((start // cc) * cc, stop, cc)]
        else:
            cells = [(r0, c0) for r0 in range((start // cr) * cr, stop, cr) for c0 in range(0, self.n, cc)]
        for r0, c0 in cells:
            try:
                info = dset.id.get_chunk_info_by_coord((r0, c0))
            except Exception:  # pragma: no cover - HDF5 without chunk queries: by value only
                return
            if info.byte_offset is None:
                fill = dset.fillvalue.item() if hasattr(dset.fillvalue, "item") else dset.fillvalue
                desc = f"rows {r0}:{min(r0 + cr, self.n)}" + (
                    f", columns {c0}:{min(c0 + cc, self.n)}" if cc < self.n else "")
                raise StoreCorruptionError(
                    f"HDF5 dataset {self._ref.filename}:{self._ref.dataset}: the chunk holding {desc} was "
                    f"never written, and the fill value {fill!r} would read it as plausible "
                    "distances; restore the file or rebuild the matrix (if that chunk is meant to hold "
                    "the fill value, open it with allow_incomplete=True)")

    def _check_fill(self, block, start) -> None:
        """Raise StoreCorruptionError when ``block`` holds the fill value of a never-written
        chunk (HDF5 reads unallocated chunks as the fill value).  One element per (row,
        stored chunk column) suffices, as a missing chunk is fill everywhere."""
        hit = first_fill_position(block, self._fill, self.chunks[1] if self.chunks else 1)
        if hit is None:
            return
        cr = self.chunks[0]
        r0 = ((start + hit[0]) // cr) * cr
        fill = "NaN" if self._fill == "nan" else self._fill
        fix = ("rerun build_dissimilarity(...) with the same arguments to recompute it"
               if self.meta is not None else "restore the file or rebuild the matrix")
        raise StoreCorruptionError(
            f"HDF5 dataset {self._ref.filename}:{self._ref.dataset}: the chunk holding rows "
            f"{r0}:{min(r0 + cr, self.n)} reads as the fill value {fill} (never written or lost); {fix}"
        )

    def _read_error(self, dset, exc, start, stop) -> StoreCorruptionError:
        """Locate the HDF5 chunk that fails (rereading chunk by chunk) and describe it."""
        where = f"rows {start}:{stop}"
        cr = self.chunks[0] if self.chunks else None
        if cr:
            buf = np.empty((cr, self.n), dtype=self.stored_dtype)
            for r0 in range((start // cr) * cr, stop, cr):
                r1 = min(r0 + cr, self.n)
                try:
                    dset.read_direct(buf[: r1 - r0], np.s_[r0:r1], np.s_[:])
                except OSError as inner:
                    where, exc = f"the chunk holding rows {r0}:{r1}", inner
                    break
        return StoreCorruptionError(
            f"HDF5 dataset {self.filename!r}:{self.dataset}: cannot read {where} ({exc}); the "
            "file is damaged -- restore it from a copy or rebuild it "
            "(build_dissimilarity(..., overwrite=True))"
        )

    def _fingerprint_parts(self):
        meta = json.dumps(self.meta, sort_keys=True, default=str) if self.meta is not None else None
        from ._chunks import hdf5_chunks_digest

        digest = hdf5_chunks_digest(self._ref.get())
        return ["chunked-matrix", self.chunks, meta, digest, *self.sample_fingerprint_rows()]

    def close(self) -> None:
        self._ref.close()

    def __repr__(self) -> str:
        return (f"<HDF5Source {self.filename!r}:{self.dataset} n={self.n} dtype={self.dtype} "
                f"block_rows={self.block_rows}>")


def _matches(obj) -> bool:
    if _is_h5py_object(obj):
        return True
    if isinstance(obj, (str, os.PathLike)):
        from .inputs import path_kind

        return path_kind(obj) == "hdf5"
    return False


def _open(obj, *, dataset=None, allow_incomplete=False, **options):
    if options:
        raise InvalidTypeError(
            f"HDF5 sources take the options dataset=, allow_incomplete=; got unknown {sorted(options)}"
        )
    return HDF5Source(obj, dataset, allow_incomplete=allow_incomplete)
