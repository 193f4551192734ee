"""Zarr arrays (zarr-python 3): a path to a ``.zarr`` store or a ``zarr.Array`` object.

Arrays in a local directory store pickle as ``(store root, array path)`` and are reopened
lazily in the receiving process; arrays in other stores (in-memory, remote) pickle as
themselves (zarr knows how).
"""

from __future__ import annotations

import errno
import json
import os
import sys

import numpy as np

from .._errors import (
    ChunkedMedoidsError,
    InvalidParameterError,
    InvalidTypeError,
    MissingFileError,
    StoreCorruptionError,
    UnknownNameError,
)
from .._store_meta import check_complete, check_meta, read_meta
from .base import DissimilaritySource, block_buffer, check_storage_dtype, fill_marker, first_fill_position
from .memory import _check_square

#: array read by default when the store root is a group.
DEFAULT_ARRAY = "dissimilarity"


def _zarr_types():
    zarr = sys.modules.get("zarr")
    if zarr is None:
        return ()
    return (zarr.Array, zarr.Group)


def _is_zarr_object(obj) -> bool:
    types = _zarr_types()
    return bool(types) and isinstance(obj, types)


def _array_shapes(group) -> list[tuple[str, tuple]]:
    import zarr

    return [(name, tuple(member.shape)) for name, member in group.members(max_depth=None)
            if isinstance(member, zarr.Array)]


def _list_arrays(group) -> list[str]:
    return [f"{name} {shape}" for name, shape in _array_shapes(group)]


def _pick_array(group, dataset, where, default):
    import zarr

    name = dataset if dataset is not None else default
    if name is None:
        shapes = _array_shapes(group)
        present = _list_arrays(group)
        if len(shapes) == 1:
            name = shapes[0][0]
        else:
            raise InvalidParameterError(
                f"zarr group {where!r} holds {len(present)} arrays {present}; pick one with dataset='name'"
            )
    try:
        member = group[name]
    except KeyError:
        member = None
    if not isinstance(member, zarr.Array):
        what = "is a group, not an array" if member is not None else "does not exist"
        present = _list_arrays(group)
        raise UnknownNameError(
            f"array {name!r} in zarr group {where!r} {what}; arrays present: "
            f"{present if present else 'none'}; pick one with dataset='name'"
        )
    return member


def _is_decode_error(exc: BaseException) -> bool:
    """Whether a read error means damaged chunk bytes (codec / checksum / size failures:
    RuntimeError, ValueError, gzip's OSError without errno...) rather than an I/O or
    permission problem (OSError with an errno), memory, or one of our own errors."""
    if isinstance(exc, (ChunkedMedoidsError, MemoryError)):
        return False
    return not (isinstance(exc, OSError) and exc.errno is not None)


#: bytes per buffered read (and checksum update) of the raw path: small enough for the CPU
#: cache and a short hold of the GIL by the checksum, large enough for few system calls.
RAW_PIECE = 1 << 20
#: bytes per ``O_DIRECT`` read of the raw path (a multiple of :data:`DIRECT_ALIGN`): the
#: device gets requests of its largest size, several per reader in flight.
DIRECT_PIECE = 16 << 20
#: alignment of ``O_DIRECT`` offsets, lengths and buffer addresses (a page covers every
#: logical block size in use).
DIRECT_ALIGN = 4096
#: ``direct_io="auto"`` bypasses the page cache for stores larger than this fraction of the
#: machine's memory: the cache keeps them between passes poorly (it is shared with every
#: other program; a 20 GB store on 24 GB gained nothing on its second pass), and copying every
#: byte through it costs the kernel more CPU than the distance kernels of a pass
#: (``benchmarks/bench_cold_disk.py``: 7.2 and 14.4 GB stores on 24 GB).
DIRECT_MIN_RAM_FRACTION = 0.25
#: whether the raw path announces its buffered reads to the kernel (``os.posix_fadvise``).
_FADVISE = hasattr(os, "posix_fadvise")
_HAS_DIRECT = hasattr(os, "O_DIRECT") and hasattr(os, "preadv")
_NOWAIT = getattr(os, "RWF_NOWAIT", None)


def _physical_memory() -> int | None:
    try:
        return int(os.sysconf("SC_PAGE_SIZE")) * int(os.sysconf("SC_PHYS_PAGES"))
    except (AttributeError, ValueError, OSError):  # pragma: no cover - not POSIX
        return None


def _crc_extend(value: int, data) -> int:
    import google_crc32c

    return google_crc32c.extend(value, data)


def _read_segments(fd: int, segments, scratch, crc: bool, pos: int = 0, value: int = 0):
    """Read ``fd`` from offset ``pos`` into ``segments`` in order, :data:`RAW_PIECE` bytes at a time.

    ``segments``: ``(array, None)`` reads into the uint8 array; ``(None, nbytes)`` reads
    ``nbytes`` into ``scratch`` (bytes outside the rows asked for).  Returns the crc32c
    (continuing ``value``) of every byte read (0 when ``crc`` is False), or None on a short
    file.
    """
    for dest, size in segments:
        total = dest.shape[0] if dest is not None else size
        off = 0
        while off < total:
            m = min(RAW_PIECE, total - off)
            piece = dest[off:off + m] if dest is not None else scratch[:m]
            got = os.preadv(fd, [piece], pos)
            if got <= 0:
                return None
            if crc:
                value = _crc_extend(value, piece[:got])
            off += got
            pos += got
    return value


def _cached(fd: int, probe) -> bool:
    """Whether the first bytes of ``fd`` are in the page cache: a buffered read of ``probe``
    (a uint8 array) with ``RWF_NOWAIT`` fails instead of waiting for the disk."""
    if _NOWAIT is None:
        return False
    try:
        return os.preadv(fd, [probe], 0, _NOWAIT) == probe.shape[0]
    except OSError:  # EAGAIN (not cached), EOPNOTSUPP (cannot tell)
        return False


def _aligned_buffer(nbytes: int) -> np.ndarray:
    """A uint8 array of ``nbytes`` whose address is a multiple of :data:`DIRECT_ALIGN`."""
    raw = np.empty(nbytes + DIRECT_ALIGN, dtype=np.uint8)
    off = (-raw.ctypes.data) % DIRECT_ALIGN
    return raw[off:off + nbytes]


def _read_direct(fd: int, file_end: int, data_end: int, out_lo: int, dest, bounce, crc: bool):
    """Read a raw chunk file with ``O_DIRECT`` (``fd``): bytes ``out_lo:out_lo + len(dest)``
    into ``dest``, the checksum over ``0:data_end``; returns ``(crc32c, stored checksum
    bytes)`` or None on a short read.

    Reads are aligned (:data:`DIRECT_ALIGN`); where ``dest`` is aligned with the file the
    device writes straight into it (no copy at all), else pieces go through ``bounce`` (an
    aligned buffer of :data:`DIRECT_PIECE` bytes) and are copied out.
    """
    A = DIRECT_ALIGN
    out_hi = out_lo + dest.shape[0]
    straight = (dest.ctypes.data - out_lo) % A == 0
    value, tail, pos = 0, bytearray(), 0
    while pos < file_end:
        if straight and pos >= out_lo and out_hi - pos >= A:
            m = min(DIRECT_PIECE, ((out_hi - pos) // A) * A)
            piece = dest[pos - out_lo:pos - out_lo + m]
            if os.preadv(fd, [piece], pos) != m:
                return None
            if crc:
                value = _crc_extend(value, piece)
            pos += m
            continue
        if straight and pos < out_lo:
            m = min(DIRECT_PIECE, -(-(out_lo - pos) // A) * A)
        else:
            m = min(DIRECT_PIECE, -(-(file_end - pos) // A) * A)
        want = min(m, file_end - pos)
        if os.preadv(fd, [bounce[:m]], pos) != want:
            return None
        hi = pos + want
        d_hi = min(hi, data_end)
        if crc and d_hi > pos:
            value = _crc_extend(value, bounce[:d_hi - pos])
        if hi > data_end:
            tail += bytes(bounce[max(pos, data_end) - pos:want])
        lo, up = max(pos, out_lo), min(hi, out_hi)
        if up > lo:
            dest[lo - out_lo:up - out_lo] = bounce[lo - pos:up - pos]
        pos = hi
    return value, bytes(tail)


def _unparseable_metadata(root: str) -> str | None:
    """The path of a zarr metadata file at the top of ``root`` that is not valid JSON, else None."""
    for name in ("zarr.json", ".zarray", ".zgroup", ".zattrs"):
        p = os.path.join(root, name)
        if os.path.isfile(p):
            try:
                with open(p, "rb") as f:
                    json.loads(f.read())
            except (OSError, ValueError):
                return p
    return None


class ZarrArrayRef:
    """A picklable reference to a zarr array.

    Local directory stores are kept as ``(root, path)`` and reopened lazily (read-only) in
    each process that unpickles the reference; any other store keeps the Array object.
    """

    def __init__(self, obj, dataset: str | None = None, default: str | None = DEFAULT_ARRAY):
        import zarr

        self.root = None
        self.path = None
        self._array = None
        self.group_meta = None
        if isinstance(obj, (str, os.PathLike)):
            root = os.path.abspath(os.fspath(obj))
            if not os.path.exists(root):
                raise MissingFileError(f"zarr store {root!r} does not exist")
            try:
                node = zarr.open(store=root, mode="r")
            except Exception as exc:  # zarr raises several types for non-stores
                bad = _unparseable_metadata(root)
                if bad is not None:  # a store whose own metadata file is damaged, not a non-store
                    err = StoreCorruptionError(
                        f"zarr store {root!r}: its metadata file {bad!r} does not parse as JSON "
                        f"({type(exc).__name__}: {exc}); the store was edited or damaged -- rebuild it "
                        "(build_dissimilarity(..., overwrite=True), CLI 'build --overwrite')")
                    err.damaged_metadata = True  # inputs._build_meta: damaged, not foreign
                    raise err from exc
                raise InvalidParameterError(
                    f"cannot open {root!r} as a zarr store ({type(exc).__name__}: {exc}); pass "
                    "the directory of a zarr array or group"
                ) from exc
        elif _is_zarr_object(obj):
            node = obj
            root = None
        else:
            raise InvalidTypeError(f"expected a .zarr path or a zarr.Array, got {type(obj).__name__}")
        if isinstance(node, zarr.Group):
            where = root or repr(node)
            self.group_meta = read_meta(node.attrs, where)
            node = _pick_array(node, dataset, where, default)
        elif node.path:  # an array inside a group: the build metadata may sit on the group
            try:
                parent = zarr.open_group(store=node.store, path=node.path.rpartition("/")[0] or None, mode="r")
                self.group_meta = read_meta(parent.attrs)
            except Exception:  # no readable parent group: a foreign layout
                self.group_meta = None
        elif dataset is not None and (root is not None or dataset.strip("/") != node.path.strip("/")):
            raise InvalidParameterError(
                f"dataset={dataset!r} was given but {root or node!r} is a single zarr array, not a "
                "group; drop dataset="
            )
        store = node.store
        local_root = getattr(store, "root", None)
        if type(store).__name__ == "LocalStore" and local_root is not None:
            self.root = str(local_root)
            self.path = node.path
        self._array = node

    @property
    def location(self) -> str:
        if self.root is not None:
            return self.root + (f"/{self.path}" if self.path else "")
        return repr(self._array)

    def get(self):
        if self._array is None:
            import zarr

            self._array = zarr.open_array(store=self.root, path=self.path or None, mode="r")
        return self._array

    def __getstate__(self):
        state = self.__dict__.copy()
        if self.root is not None:
            state["_array"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)

    def __repr__(self) -> str:
        return f"ZarrArrayRef({self.location!r})"


class ZarrSource(DissimilaritySource):
    """A dissimilarity stored as a 2-D zarr array.

    Parameters
    ----------
    obj : str, os.PathLike, zarr.Array or zarr.Group
        A path to the store directory (``.zarr``) or an opened array/group.  When the root
        is a group, the array ``dataset`` (default ``"dissimilarity"``) is used.
    dataset : str, optional
        Array path inside a group.
    allow_incomplete : bool, default False
        Open a store written by :func:`~chunked_medoids.build_dissimilarity` even if some of
        its stripes were never written (missing chunks read as the fill value).
    direct_io : {"auto", True, False}, default "auto"
        Read raw chunks (stores built with ``compressor=None``, the default) that are not in
        the page cache with ``O_DIRECT``: past the kernel's cache, straight into the block.
        That saves the kernel's copy and cache upkeep (more CPU than the distance kernels
        of a pass) and leaves other programs' cached files alone, but a later pass finds
        nothing cached.  "auto": for stores larger than a quarter of the machine's memory
        (``DIRECT_MIN_RAM_FRACTION``), which the page cache keeps poorly anyway.  Chunks
        already cached are read from the cache either way; file systems without
        ``O_DIRECT`` read buffered.

    Notes
    -----
    ``block_rows`` is the chunk height, or the shard height for sharded arrays, so aligned
    row stripes decode every stored chunk exactly once.  Local stores pickle as their path.

    Lost and damaged chunks (see :meth:`_check_fill`):

    * zarr reads a missing chunk as the array's fill value.  When that fill value can never
      be a distance -- NaN, or a negative number; stores written by
      :func:`~chunked_medoids.build_dissimilarity` use NaN / -1 -- every read checks one
      element per stored chunk it touched (a missing chunk is uniformly fill, so one
      element is enough; cost O(rows × n / chunk_width), about 1e-4 of the read) and
      raises :class:`~chunked_medoids.StoreCorruptionError` naming the store and the row
      range of the missing chunk.  With ``allow_incomplete=True`` (inspection) missing
      chunks read as the fill value, unchecked.  Foreign stores whose fill value is a
      plausible distance (e.g. 0) cannot be checked by value; :func:`store_info` counts
      the chunks actually present.
    * A chunk that fails to decode (garbage bytes, truncated file, checksum mismatch --
      stores built by ``build_dissimilarity`` carry a crc32c checksum per chunk, so even a
      decodable bit flip is caught) raises ``StoreCorruptionError`` naming the store, the
      chunk's row range and the codec's own error (chained).

    Raises
    ------
    FileNotFoundError, UnknownNameError, InvalidParameterError, UnsupportedDtypeError,
    IncompleteStoreError, StoreCorruptionError (on reads)
    """

    kind = "zarr"
    #: reads from several threads at once run in parallel (the engine streams with several
    #: readers: :meth:`~chunked_medoids.Engine.stream_plan`).
    parallel_reads = True

    def __init__(self, obj, dataset: str | None = None, *, allow_incomplete: bool = False,
                 direct_io: bool | str = "auto"):
        if direct_io != "auto" and not isinstance(direct_io, (bool, np.bool_)):
            raise InvalidTypeError(f"direct_io must be 'auto', True or False, got {direct_io!r}")
        self.direct_io = direct_io if direct_io == "auto" else bool(direct_io)
        self._ref = ZarrArrayRef(obj, dataset)
        arr = self._ref.get()
        where = self._ref.location
        self.n = _check_square(arr.shape, f"zarr array {where!r}")
        self.dtype, stored = check_storage_dtype(arr.dtype, f"zarr array {where!r}")
        meta = read_meta(arr.attrs, where)
        self.meta = meta if meta is not None else self._ref.group_meta
        if stored != self.dtype:  # a float16 store (docs/architecture.rst §3): read as float32
            from .._quant import check_scale

            self.storage_dtype = stored
            self.scale = check_scale((self.meta or {}).get("scale", 1.0), f"scale of zarr store {where!r}")
        self.chunks = tuple(int(c) for c in arr.chunks)
        shards = getattr(arr, "shards", None)
        self.shards = tuple(int(c) for c in shards) if shards else None
        check_meta(self.meta, arr.shape, (self.shards or self.chunks)[0], where)
        if not allow_incomplete and self.meta is not None and not self.meta.get("complete", False):
            check_complete(self.meta, where, present=self._stored_stripes())
        cr, cc = self.shards or self.chunks
        # column stripes (chunks spanning every row): a column stripe of a symmetric matrix is
        # a row stripe transposed, so rows a:b are read as D[:, a:b].T -- each chunk decoded
        # once per pass instead of every chunk for every block
        self.by_columns = cr >= self.n and cc < self.n
        self.block_rows = int(cc if self.by_columns else min(self.n, cr))
        if not self.by_columns and cc < self.n:
            _warn_tiles(where, self.n, cr, cc, self.dtype.itemsize)
        # fill marker of missing chunks, checked on every read (None: not checkable by value)
        self._fill = None if allow_incomplete else fill_marker(arr.fill_value)
        # a fill value that is a plausible distance (0): check chunk presence on every read
        self._check_presence = not allow_incomplete and self._fill is None
        # identity of the metadata file: a store replaced under us (build --overwrite) is noticed
        self._meta_id = None if allow_incomplete else self._metadata_identity()

    @property
    def array(self):
        return self._ref.get()

    # -- fault detection ------------------------------------------------------------------
    def _chunk_desc(self, row: int, col: int = 0) -> str:
        """'rows a:b' (and 'columns c:d' when chunks are narrower than n) of a stored chunk."""
        cr, cc = self.shards or self.chunks
        a = (row // cr) * cr
        desc = f"rows {a}:{min(a + cr, self.n)}"
        if cc < self.n:
            c0 = (col // cc) * cc
            desc += f", columns {c0}:{min(c0 + cc, self.n)}"
        return desc

    def _chunk_key_present(self, row: int, col: int):
        """True/False when the chunk (shard) file of a local store is present, None if unknown."""
        ref = self._ref
        if ref.root is None:
            return None
        try:
            arr = ref.get()
            cr, cc = self.shards or self.chunks
            key = arr.metadata.encode_chunk_key((row // cr, col // cc))
            return os.path.exists(os.path.join(ref.root, ref.path or "", *key.split("/")))
        except Exception:  # pragma: no cover - odd key encodings
            return None

    def _metadata_identity(self):
        """(inode, size, mtime) of the array's metadata file in a local store, else None."""
        from ._chunks import local_array_dir

        d = local_array_dir(self._ref)
        if d is None:
            return None
        for name in ("zarr.json", ".zarray"):
            try:
                st = os.stat(os.path.join(d, name))
            except OSError:
                continue
            return (st.st_ino, st.st_size, st.st_mtime_ns)
        return None

    def _check_not_replaced(self) -> None:
        """Raise StoreCorruptionError when the store's metadata was rewritten since it was
        opened (e.g. by a concurrent ``build --overwrite``): rows read from here on could
        belong to another matrix.  One ``stat`` per block."""
        if self._meta_id is None or self._metadata_identity() == self._meta_id:
            return
        raise StoreCorruptionError(
            f"zarr store {self._ref.location!r} was replaced or rewritten while it was being read (a "
            "concurrent 'build --overwrite' or another writer?); the rows read so far may belong to "
            "another matrix -- rerun once the writer has finished"
        )

    def _stored_stripes(self) -> int:
        """Row stripes whose chunks are all on disk (the listing, not the metadata)."""
        from ._chunks import local_array_dir, zarr_chunk_keys

        arr = self._ref.get()
        cr, cc = self.shards or self.chunks
        ncols = -(-self.n // cc)
        per_row: dict[int, int] = {}
        for r, _c in zarr_chunk_keys(arr, local_array_dir(self._ref)):
            per_row[r] = per_row.get(r, 0) + 1
        return sum(1 for v in per_row.values() if v == ncols)

    def _check_present(self, rows) -> None:
        """Raise StoreCorruptionError when a chunk of the rows just read is not stored.

        For stores whose fill value is a plausible distance (0, or none: zarr's default),
        where a missing chunk cannot be told from data by its values.  ``rows``: a range or
        the row indices read.  One directory listing per stored grid row touched.
        """
        from ._chunks import local_array_dir, zarr_missing_chunk

        cr, cc = self.shards or self.chunks
        step = cc if self.by_columns else cr
        if isinstance(rows, range):
            cells = range(rows.start // step, (rows.stop - 1) // step + 1) if len(rows) else ()
        else:
            cells = np.unique(np.asarray(rows) // step).tolist()
        arr = self._ref.get()
        if self.by_columns:
            hit = zarr_missing_chunk(arr, local_array_dir(self._ref), [0], cols=cells)
        else:
            hit = zarr_missing_chunk(arr, local_array_dir(self._ref), cells)
        if hit is None:
            return
        where = self._chunk_desc(hit[0] * cr, hit[1] * cc)
        fill = arr.fill_value.item() if hasattr(arr.fill_value, "item") else arr.fill_value
        raise StoreCorruptionError(
            f"zarr store {self._ref.location!r}: the chunk holding {where} is missing, and the "
            f"array's fill value {fill!r} would read it as plausible distances; "
            "restore the chunk or rebuild the matrix (if zarr left the chunk out on purpose because "
            "all its values equal the fill value, open the store with allow_incomplete=True)"
        )

    def _check_fill(self, block: np.ndarray, rows) -> None:
        """Raise StoreCorruptionError when ``block`` holds the fill value of a missing chunk.

        ``rows`` maps block row i to matrix row ``rows[i]`` (a range or an index array).  A
        missing chunk reads as the fill value everywhere, so one element per (row, stored
        chunk column) suffices: ``block[:, ::chunk_width]``.
        """
        if self.by_columns:  # block row i is column rows[i]: one element per block row suffices
            hit = first_fill_position(block, self._fill, self.n)
            if hit is None:
                return
            row, col = hit[1], int(rows[hit[0]])
        else:
            hit = first_fill_position(block, self._fill, self.chunks[1])
            if hit is None:
                return
            row, col = int(rows[hit[0]]), hit[1]
        where = self._chunk_desc(row, col)
        present = self._chunk_key_present(row, col)
        fill = "NaN" if self._fill == "nan" else self._fill
        if present is False:
            what = f"the chunk holding {where} is missing (its file was deleted or never written)"
        elif present is True:
            what = (f"the chunk holding {where} is present but holds the fill value {fill}, "
                    f"which is never a valid distance (row {row}, column {col})")
        else:
            what = f"the chunk holding {where} reads as the fill value {fill} (missing chunk)"
        fix = ("rerun build_dissimilarity(...) with the same arguments: it recomputes exactly the "
               "missing stripes" if self.meta is not None else
               "restore the chunk or rebuild the matrix")
        raise StoreCorruptionError(f"zarr store {self._ref.location!r}: {what}; {fix}")

    def _decode_error(self, exc, row_ranges) -> StoreCorruptionError:
        """Locate the chunk that fails to decode (rereading chunk by chunk) and describe it."""
        arr = self._ref.get()
        cr, cc = self.shards or self.chunks
        where = None
        for a, b in row_ranges:
            for r0 in range((a // cr) * cr, b, cr):
                for c0 in range(0, self.n, cc):
                    try:
                        arr[r0:min(r0 + cr, self.n), c0:min(c0 + cc, self.n)]
                    except Exception as inner:  # noqa: BLE001 - any codec failure
                        where, exc = self._chunk_desc(r0, c0), inner
                        break
                if where:
                    break
            if where:
                break
        if where is None:  # could not reproduce chunk by chunk: name the whole request
            where = ", ".join(f"rows {a}:{b}" for a, b in row_ranges[:5])
        return StoreCorruptionError(
            f"zarr store {self._ref.location!r}: the chunk holding {where} cannot be decoded "
            f"({type(exc).__name__}: {exc}); the chunk file is damaged -- "
            + ("rerun build_dissimilarity(...) with overwrite=True to rebuild the store"
               if self.meta is not None else "restore it from a copy or rebuild the matrix")
        )

    # -- the raw fast path -------------------------------------------------------------
    def _raw_layout(self):
        """``(array directory, crc32c?)`` when chunks are raw bytes in a local store, else None.

        Raw means: no filters, a little-endian BytesCodec, no compressor or only the
        crc32c checksum, row stripes spanning every column, no shards, C order, a native
        little-endian dtype -- the layout of ``build_dissimilarity(..., compressor=None)``.
        Such chunks are read with ``os.preadv`` straight into the output block (the only
        copy is the kernel's page-cache copy; the GIL is released during the read) and the
        checksum verified over the bytes in place.  Determined once per process.
        """
        cached = self.__dict__.get("_raw")
        if cached is not None:
            return cached or None
        layout = False
        try:
            ref, arr = self._ref, self._ref.get()
            comps = tuple(arr.compressors)
            ser = arr.serializer
            dt = np.dtype(arr.dtype)
            if (ref.root is not None and not arr.filters and self.shards is None and arr.order == "C"
                    and type(ser).__name__ == "BytesCodec" and str(getattr(ser.endian, "value", ser.endian)) == "little"
                    and self.chunks[1] == self.n and dt.byteorder in ("=", "<", "|") and sys.byteorder == "little"
                    and all(type(c).__name__ == "Crc32cCodec" for c in comps) and len(comps) <= 1):
                layout = (os.path.join(ref.root, ref.path or ""), len(comps) == 1)
        except Exception:  # noqa: BLE001 - anything unusual: the zarr path
            layout = False
        self._raw = layout
        return layout or None

    def raw_chunk_files(self):
        """``(chunk rows, crc32c, path_of)`` when rows can be mapped straight from the chunk
        files instead of read (:mod:`chunked_medoids.sources._mapped`), else None.

        That needs raw chunks in a local store (:meth:`_raw_layout`), rows returned as stored
        (not a float16 store) and no validation on read.  ``path_of(c)`` is the file of
        chunk row ``c``: ``chunk rows`` rows of ``n`` elements, then their crc32c (4 bytes,
        little-endian) when ``crc32c``.  The mapper checks the checksums and then calls
        :meth:`check_mapped_rows`."""
        layout = self._raw_layout()
        if layout is None or self.storage_dtype is not None or self.__dict__.get("_validator") is not None:
            return None
        root, crc = layout
        arr = self._ref.get()
        return self.chunks[0], crc, lambda c: os.path.join(root, *arr.metadata.encode_chunk_key((c, 0)).split("/"))

    def check_mapped_rows(self, block, start, stop) -> None:
        """The checks :meth:`read_rows` makes of rows ``start:stop`` (``block``), for rows
        mapped from :meth:`raw_chunk_files` whose checksums matched."""
        self._check_fill(block, range(start, stop))
        self._check_not_replaced()

    def _use_direct(self) -> bool:
        """Whether cold chunks are read with ``O_DIRECT`` (``direct_io``; "auto": stores
        larger than :data:`DIRECT_MIN_RAM_FRACTION` of the machine's memory)."""
        mode = getattr(self, "direct_io", "auto")
        if mode == "auto":
            ram = _physical_memory()
            return bool(_HAS_DIRECT and ram and self.n * self.n * self.storage_itemsize > DIRECT_MIN_RAM_FRACTION * ram)
        return bool(mode) and _HAS_DIRECT

    def direct_unit_rows(self) -> int | None:
        """Rows per unit of a stream whose chunks go straight to the block with ``O_DIRECT``.

        The chunk height when chunks are read with ``O_DIRECT`` (:meth:`_use_direct`) and a
        chunk's bytes are not a multiple of :data:`DIRECT_ALIGN`: in a block of several
        chunks every chunk but the first then starts at an address the device cannot write
        to, and goes through the bounce buffer (a copy of most of the pass).  One chunk per
        unit reads every chunk straight into its own page-aligned buffer.  None otherwise
        (the budget's units are as good).  The stored layout is not changed.
        """
        if self._raw_layout() is None or not self._use_direct() or not self.__dict__.get("_direct_ok", True):
            return None
        cr = int(self.chunks[0])
        if (cr * self.n * self.storage_itemsize) % DIRECT_ALIGN == 0:
            return None
        return cr

    def _read_raw(self, start, stop, layout):
        """Rows ``start:stop`` from raw chunk files; None when zarr must handle it (a missing,
        short, long or damaged chunk: its error messages and fill-value rules apply).

        Each chunk file is read front to back.  Chunks in the page cache (or all of them,
        without ``O_DIRECT``) are read in pieces of :data:`RAW_PIECE` bytes, the checksum of
        a piece taken right after its read while the bytes are still in the CPU cache; the
        chunk files of the block are first announced to the kernel
        (``POSIX_FADV_WILLNEED``: one reader has the whole block's requests in flight).
        With ``O_DIRECT`` (:meth:`_use_direct`), chunks that are not cached are read past the
        page cache straight into the block (:func:`_read_direct`): no copy through the
        kernel's cache, no eviction of what other programs cache.  Rows outside
        ``start:stop`` of a partly read chunk go through a scratch buffer (they count for
        the checksum).
        """
        root, crc = layout
        arr = self._ref.get()
        dt, n, cr = self.stored_dtype, self.n, self.chunks[0]
        row = n * dt.itemsize
        data_end = cr * row  # a stored chunk has cr rows (edge chunks are padded)
        file_end = data_end + (4 if crc else 0)
        direct = self._use_direct() and self.__dict__.get("_direct_ok", True)
        out = block_buffer((stop - start, n), dt)  # page aligned: O_DIRECT reads go straight in
        flat = out.reshape(-1).view(np.uint8)
        chunks = range(start // cr, (stop - 1) // cr + 1)
        fds, paths = [], []
        try:
            for c in chunks:
                key = arr.metadata.encode_chunk_key((c, 0))
                paths.append(os.path.join(root, *key.split("/")))
                try:
                    fd = os.open(paths[-1], os.O_RDONLY)
                except FileNotFoundError:
                    return None
                fds.append(fd)
                if os.fstat(fd).st_size != file_end:
                    return None
            scratch = bounce = None
            plan = []
            for c, fd, path in zip(chunks, fds, paths):
                r0, r1 = c * cr, (c + 1) * cr
                a, b = max(r0, start), min(r1, stop)
                dest = flat[(a - start) * row:(b - start) * row]
                cold = direct and not _cached(fd, dest[:min(DIRECT_ALIGN, dest.shape[0])])
                plan.append((fd, path, (a - r0) * row, dest, (r1 - b) * row, cold))
            if _FADVISE and not direct:  # (with O_DIRECT, chunks read buffered are cached)
                for fd, *_ in plan:
                    os.posix_fadvise(fd, 0, file_end, os.POSIX_FADV_WILLNEED)
            for fd, path, head, dest, tail, cold in plan:
                if cold:
                    got = self._direct_chunk(path, file_end, data_end, head, dest, crc, bounce)
                    if got == "buffered":
                        cold = False
                    elif got is None:
                        return None
                    else:
                        value, stored, bounce = got
                if not cold:
                    if (head or tail) and scratch is None:
                        scratch = np.empty(min(RAW_PIECE, max(head, tail)), dtype=np.uint8)
                    value = _read_segments(fd, [(None, head), (dest, None), (None, tail)], scratch, crc)
                    if value is None:
                        return None
                    stored = os.pread(fd, 4, data_end) if crc else b""
                if crc and (len(stored) != 4 or int.from_bytes(stored, "little") != value):
                    return None
        finally:
            for fd in fds:
                os.close(fd)
        return out

    def _direct_chunk(self, path, file_end, data_end, head, dest, crc, bounce):
        """One chunk file read with ``O_DIRECT``: ``(crc32c, stored checksum, bounce
        buffer)``, None on a short read, or "buffered" when the file system refuses
        ``O_DIRECT`` (then it is not tried again for this source)."""
        try:
            dfd = os.open(path, os.O_RDONLY | os.O_DIRECT)
        except FileNotFoundError:
            return None
        except OSError:
            self._direct_ok = False
            return "buffered"
        try:
            if bounce is None:
                bounce = block_buffer((1, DIRECT_PIECE), np.uint8).reshape(-1)
            try:
                got = _read_direct(dfd, file_end, data_end, head, dest, bounce, crc)
            except OSError as exc:
                if exc.errno not in (errno.EINVAL, errno.EOPNOTSUPP):
                    raise
                self._direct_ok = False
                return "buffered"
            if _FADVISE:
                # the RWF_NOWAIT probe (:func:`_cached`) starts a small readahead of the file's
                # first pages even as it fails: drop them, or the next pass would take the
                # chunk for cached and read it through the page cache
                os.posix_fadvise(dfd, 0, 0, os.POSIX_FADV_DONTNEED)
        finally:
            os.close(dfd)
        return None if got is None else (got[0], got[1], bounce)

    def _read_rows(self, start, stop):
        if start == stop:
            return np.empty((0, self.n), dtype=self.stored_dtype)
        layout = self._raw_layout()
        if layout is not None:
            block = self._read_raw(start, stop, layout)
            if block is not None:  # every chunk file was there (presence needs no check)
                self._check_fill(block, range(start, stop))
                self._check_not_replaced()
                return block
        try:
            if self.by_columns:
                block = np.ascontiguousarray(self._ref.get()[:, start:stop].T)
            else:
                block = self._ref.get()[start:stop]
        except Exception as exc:  # noqa: BLE001 - codecs raise RuntimeError/ValueError/OSError
            if not _is_decode_error(exc):
                raise
            raise self._decode_error(exc, [(start, stop)]) from exc
        self._check_fill(block, range(start, stop))
        if self._check_presence:
            self._check_present(range(start, stop))
        self._check_not_replaced()
        return block

    def _take_rows(self, indices):
        out = np.empty((indices.shape[0], self.n), dtype=self.stored_dtype)
        if indices.shape[0] == 0:
            return out
        uniq, inverse = np.unique(indices, return_inverse=True)
        if uniq.shape[0] == uniq[-1] - uniq[0] + 1:  # one run: a plain slice
            rows = self._read_rows(int(uniq[0]), int(uniq[-1]) + 1)
        else:
            # One stored row stripe (chunk or shard) at a time: zarr decodes every chunk an
            # orthogonal selection touches concurrently, so selecting k scattered rows at once
            # would hold k decoded chunks (k medoids in k stripes: k × chunk bytes) in memory.
            rows = np.empty((uniq.shape[0], self.n), dtype=self.stored_dtype)
            stripe = uniq // self.block_rows
            cuts = np.flatnonzero(np.diff(stripe)) + 1
            for part in np.split(np.arange(uniq.shape[0]), cuts):
                sel = uniq[part]
                try:
                    if self.by_columns:
                        got = np.ascontiguousarray(self._ref.get().get_orthogonal_selection((slice(None), sel)).T)
                    else:
                        got = self._ref.get().get_orthogonal_selection((sel, slice(None)))
                except Exception as exc:  # noqa: BLE001
                    if not _is_decode_error(exc):
                        raise
                    raise self._decode_error(exc, [(int(i), int(i) + 1) for i in sel]) from exc
                self._check_fill(got, sel)
                if self._check_presence:
                    self._check_present(sel)
                self._check_not_replaced()
                rows[part] = got
        out[:] = rows[inverse]
        return out

    def _fingerprint_parts(self):
        meta = json.dumps(self.meta, sort_keys=True, default=str) if self.meta is not None else None
        from ._chunks import local_array_dir, zarr_chunks_digest

        digest = zarr_chunks_digest(self._ref.get(), local_array_dir(self._ref))
        return ["chunked-matrix", self.shards or self.chunks, meta, digest, *self.sample_fingerprint_rows()]

    def __getstate__(self):
        state = self.__dict__.copy()
        state.pop("_raw", None)  # re-detected in the receiving process
        state.pop("_direct_ok", None)
        return state

    def __repr__(self) -> str:
        return (f"<ZarrSource {self._ref.location!r} n={self.n} dtype={self.dtype} "
                f"block_rows={self.block_rows}>")


#: stores already warned about (a tiled layout is reported once per process)
_TILE_WARNED: set = set()


def _warn_tiles(where: str, n: int, cr: int, cc: int, itemsize: int, kind: str = "zarr store",
                copy: str = "COPY.zarr", source_arg: str | None = None) -> None:
    """Say once that a tiled store streams slowly, with the cost and the fix (also used for
    tiled HDF5 datasets)."""
    if where in _TILE_WARNED:
        return
    _TILE_WARNED.add(where)
    import logging

    from .._util import format_bytes

    per_pass = (-(-n // cr)) * (-(-n // cc))
    logging.getLogger(__name__).warning(
        "%s %s is chunked in tiles of %d x %d: every pass over the rows decodes %d chunks "
        "of %s (each row block needs all %d chunks across its rows), which can make a pass many "
        "times slower than on row stripes; 'chunked-medoids rechunk %s -o %s' writes a "
        "row-striped copy with bounded memory", kind, where, cr, cc, per_pass,
        format_bytes(cr * cc * itemsize), -(-n // cc), source_arg or where, copy)


def _matches(obj) -> bool:
    if _is_zarr_object(obj):
        return True
    if isinstance(obj, (str, os.PathLike)):
        from .inputs import path_kind

        return path_kind(obj) == "zarr"
    return False


def _open(obj, *, dataset=None, allow_incomplete=False, direct_io="auto", **options):
    if options:
        raise InvalidTypeError(
            f"zarr sources take the options dataset=, allow_incomplete=, direct_io=; got unknown {sorted(options)}"
        )
    return ZarrSource(obj, dataset, allow_incomplete=allow_incomplete, direct_io=direct_io)
