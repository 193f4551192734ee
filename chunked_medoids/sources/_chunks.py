"""The stored chunks of zarr and HDF5 arrays: which are present, and a digest of them.

Everything here reads listings, file sizes and a few bytes, never the matrix values:

* :func:`zarr_chunk_keys` lists the chunk files a zarr array holds (bounded by what is on
  disk, never by the shape or metadata of the array, so a ``zarr.json`` claiming 1e12
  chunks costs nothing);
* :func:`zarr_missing_chunk` answers, for a row range a read touched, whether a chunk of it
  is missing: a foreign store whose fill value is a plausible distance (0) would otherwise
  read a lost chunk as zeros;
* :func:`zarr_chunks_digest` and :func:`hdf5_chunks_digest` hash each stored chunk's
  coordinates, size and sampled bytes (the last bytes of a chunk written by
  :func:`~chunked_medoids.build_dissimilarity` are its crc32c checksum): the data part of a
  source fingerprint (``docs/architecture.rst`` §9).
"""

from __future__ import annotations

import hashlib
import os

#: zarr metadata documents (never chunks).
_META_NAMES = frozenset({"zarr.json", ".zarray", ".zattrs", ".zgroup", ".zmetadata"})
#: sampled byte windows per chunk of a digest, and their width.
DIGEST_WINDOWS, DIGEST_WINDOW = 16, 32
#: chunks whose bytes are sampled by a digest; beyond, an evenly spaced subset (every
#: chunk's key and size still counts).
DIGEST_MAX_CHUNKS = 1 << 12


def zarr_grid(arr) -> tuple[int, int]:
    """The stored grid cell of a 2-D zarr array: shard shape if sharded, else chunk shape."""
    shards = getattr(arr, "shards", None)
    return tuple(int(c) for c in (shards or arr.chunks))


def _decoder(arr):
    """key (relative to the array) -> grid coordinates, or None for a non-chunk key."""
    md = arr.metadata
    enc = getattr(md, "chunk_key_encoding", None)
    if enc is not None:  # zarr v3: "default" keys are c<sep>i<sep>j, "v2" keys i<sep>j
        sep = getattr(enc, "separator", "/")
        prefix = ("c" + sep) if getattr(enc, "name", "default") == "default" else ""
    else:  # zarr v2 metadata
        sep = getattr(md, "dimension_separator", ".") or "."
        prefix = ""

    def decode(key):
        if prefix and not key.startswith(prefix):
            return None
        parts = key[len(prefix):].split(sep)
        if len(parts) != 2 or not all(p.isdigit() for p in parts):
            return None
        return int(parts[0]), int(parts[1])
    return decode


def local_array_dir(ref) -> str | None:
    """Directory of a :class:`~.zarr_store.ZarrArrayRef`'s array in a local store, else None."""
    if getattr(ref, "root", None) is None:
        return None
    return os.path.join(ref.root, *(ref.path or "").split("/"))


def _walk_keys(array_dir):
    """Relative posix keys of the files under ``array_dir`` (metadata and hidden files skipped)."""
    for dirpath, dirnames, files in os.walk(array_dir):
        rel = os.path.relpath(dirpath, array_dir)
        if rel != "." and any(os.path.exists(os.path.join(dirpath, m)) for m in ("zarr.json", ".zarray")):
            dirnames[:] = []  # a nested array of a group: not ours
            continue
        for fn in files:
            if fn in _META_NAMES:
                continue
            yield fn if rel == "." else f"{rel.replace(os.sep, '/')}/{fn}"


def _store_keys(arr):
    from zarr.core.sync import sync

    prefix = (arr.path + "/") if arr.path else ""

    async def collect():
        return [k async for k in arr.store.list_prefix(prefix)]

    for key in sync(collect()):
        rel = key[len(prefix):]
        if rel.rsplit("/", 1)[-1] not in _META_NAMES:
            yield rel


def zarr_chunk_keys(arr, array_dir: str | None = None) -> dict[tuple[int, int], str]:
    """``{grid coordinates: key}`` of every chunk (shard) file a 2-D zarr array holds.

    ``array_dir``: the array's directory for a local store (listed with ``os.walk``); else
    the store's own listing.  Coordinates outside the array's grid and temporary files
    (``*.partial``) are left out.
    """
    decode = _decoder(arr)
    cr, cc = zarr_grid(arr)
    nr, nc = -(-int(arr.shape[0]) // cr), -(-int(arr.shape[1]) // cc)
    keys = _walk_keys(array_dir) if array_dir is not None else _store_keys(arr)
    out = {}
    for key in keys:
        coords = decode(key)
        if coords is not None and 0 <= coords[0] < nr and 0 <= coords[1] < nc:
            out[coords] = key
    return out


def zarr_missing_chunk(arr, array_dir: str | None, row_chunks, cols=None) -> tuple[int, int] | None:
    """Grid coordinates of the first chunk missing among the grid rows ``row_chunks`` (all
    columns, or the grid columns ``cols``), or None when every one is stored.

    Local stores with nested keys (``c/<row>/<col>``, zarr v3's default) list one directory
    per grid row; other local layouts stat each key; other stores ask ``store.exists``.
    Cost: one directory listing (or a few stats) per grid row a read touches.
    """
    cr, cc = zarr_grid(arr)
    nc = -(-int(arr.shape[1]) // cc)
    md = arr.metadata
    rows = sorted({int(r) for r in row_chunks})
    col_ids = list(range(nc)) if cols is None else sorted({int(c) for c in cols})
    for r in rows:
        keys = [(c, md.encode_chunk_key((r, c))) for c in col_ids]
        if array_dir is not None:
            parents = {k.rpartition("/")[0] for _, k in keys}
            if len(parents) == 1 and len(keys) > 1:  # one directory holds the grid row: list it once
                parent = parents.pop()
                try:
                    names = set(os.listdir(os.path.join(array_dir, *parent.split("/")) if parent else array_dir))
                except FileNotFoundError:
                    return (r, col_ids[0])
                for c, k in keys:
                    if k.rpartition("/")[2] not in names:
                        return (r, c)
                continue
            for c, k in keys:
                if not os.path.isfile(os.path.join(array_dir, *k.split("/"))):
                    return (r, c)
            continue
        from zarr.core.sync import sync

        prefix = (arr.path + "/") if arr.path else ""
        for c, k in keys:
            if not sync(arr.store.exists(prefix + k)):
                return (r, c)
    return None


def _windows(size: int, seed: bytes) -> list[int]:
    """Deterministic pseudo-random window offsets within a chunk of ``size`` bytes (plus
    its head and its tail, which holds the crc32c of chunks we wrote)."""
    if size <= DIGEST_WINDOW * (DIGEST_WINDOWS + 2):
        return [0]  # small: the whole chunk (read as one window of ``size`` bytes)
    span = size - DIGEST_WINDOW
    h = hashlib.sha256(seed).digest()
    offs = [0, span]
    while len(offs) < DIGEST_WINDOWS + 2:
        h = hashlib.sha256(h).digest()
        offs += [int.from_bytes(h[i:i + 8], "little") % span for i in range(0, 32, 8)]
    return offs[:DIGEST_WINDOWS + 2]


def _sample_file(h, fd: int, base: int, size: int, seed: bytes) -> None:
    offs = _windows(size, seed)
    if offs == [0]:
        h.update(os.pread(fd, size, base))
        return
    for off in offs:
        h.update(os.pread(fd, DIGEST_WINDOW, base + off))


def _sampled(n_items: int) -> set[int]:
    if n_items <= DIGEST_MAX_CHUNKS:
        return set(range(n_items))
    step = n_items / DIGEST_MAX_CHUNKS
    return {int(i * step) for i in range(DIGEST_MAX_CHUNKS)}


def zarr_chunks_digest(arr, array_dir: str | None) -> str | None:
    """Hex digest of the stored chunks of a local zarr array (None for other stores).

    Hashes, in key order, every chunk's grid coordinates and file size and, for up to
    :data:`DIGEST_MAX_CHUNKS` chunks (evenly spaced beyond), its first and last
    :data:`DIGEST_WINDOW` bytes and :data:`DIGEST_WINDOWS` windows at pseudo-random offsets
    (a chunk smaller than the windows is hashed whole).  Stores written by
    :func:`~chunked_medoids.build_dissimilarity` end every chunk with its crc32c, so any
    change of a chunk written through zarr changes the digest.
    """
    if array_dir is None:
        return None
    keys = sorted(zarr_chunk_keys(arr, array_dir).items())
    take = _sampled(len(keys))
    h = hashlib.sha256()
    for i, (coords, key) in enumerate(keys):
        p = os.path.join(array_dir, *key.split("/"))
        try:
            fd = os.open(p, os.O_RDONLY)
        except OSError:
            h.update(f"{coords}:gone|".encode())
            continue
        try:
            size = os.fstat(fd).st_size
            h.update(f"{coords}:{size}|".encode())
            if i in take:
                _sample_file(h, fd, 0, size, key.encode())
        finally:
            os.close(fd)
    return h.hexdigest()


def hdf5_chunks_digest(dset) -> str | None:
    """Hex digest of the stored data of an h5py dataset (None when it cannot be read raw).

    Chunked: every allocated chunk's coordinates, filter mask and stored size, and sampled
    bytes of up to :data:`DIGEST_MAX_CHUNKS` of them (as :func:`zarr_chunks_digest`).
    Contiguous: the data region's size and sampled windows across it.  Byte offsets in the
    file are not hashed, so a copied or repacked file with the same chunks has the same digest.
    """
    filename = dset.file.filename
    h = hashlib.sha256()
    try:
        fd = os.open(filename, os.O_RDONLY)
    except OSError:
        return None
    try:
        if dset.chunks:
            infos = []
            dset.id.chunk_iter(infos.append)
            infos.sort(key=lambda s: tuple(s.chunk_offset))
            take = _sampled(len(infos))
            for i, info in enumerate(infos):
                h.update(f"{tuple(info.chunk_offset)}:{info.filter_mask}:{info.size}|".encode())
                if i in take and info.byte_offset is not None:
                    _sample_file(h, fd, int(info.byte_offset), int(info.size), repr(tuple(info.chunk_offset)).encode())
        else:
            off = dset.id.get_offset()
            size = int(dset.id.get_storage_size())
            h.update(f"contiguous:{size}|".encode())
            if off is not None and size:
                # up to DIGEST_MAX_CHUNKS regions of equal size, each sampled like a chunk
                step = max(DIGEST_WINDOW, -(-size // DIGEST_MAX_CHUNKS))
                for j in range(0, size, step):
                    _sample_file(h, fd, int(off) + j, min(step, size - j), f"{j}".encode())
    except (AttributeError, OSError):  # pragma: no cover - HDF5 without chunk queries
        return None
    finally:
        os.close(fd)
    return h.hexdigest()
