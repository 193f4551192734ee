"""Rows of a raw chunked store mapped from the page cache instead of read into new memory.

A store of raw chunks (``build_dissimilarity(..., compressor=None)``, the default: rows as
little-endian bytes plus a crc32c) holds each chunk's rows exactly as an array holds them.
:func:`map_chunk_rows` maps the chunk files a caller needs (``mmap``, copy-on-write, never
written) into one contiguous virtual region, one chunk per *slot*, so that the rows are an
ordinary 2-D array (``rows[index[r]]`` is row ``r``) -- without a copy and without touching a
byte of fresh memory.  Reading rows into new memory costs the kernel a page fault per 4 KiB
page on top of the copy; on virtual machines whose free memory is handed back to the host
(free page reporting) a first touch costs far more than the read itself (measured on the
benchmark machine: 1-4 s per 2.3 GB, against 0.3-0.5 s to map and check the same rows).

Each chunk's checksum is verified over the mapped bytes and the source's own checks of a
read run on them (:meth:`~chunked_medoids.sources.zarr_store.ZarrSource.check_mapped_rows`),
so a mapped row is accepted exactly when a read of it would be; anything unusual (a missing,
short or damaged chunk file, a file system that cannot map, a platform without ``MAP_FIXED``)
returns None and the caller reads the rows as usual, with the read path's error messages.

Slots are a whole number of rows long *and* start on a page boundary (a file can only be
mapped at a page-aligned address), so a slot is the chunk height rounded up to a multiple of
``page / gcd(row bytes, page)`` rows; the padding rows between chunks stay unmapped and are
never indexed.  The pages are the page cache's: the kernel may drop them under memory
pressure and read them again from the file on the next touch, which changes the time, never
a value.  Linux only (elsewhere: None).
"""

from __future__ import annotations

import ctypes
import logging
import math
import mmap
import os
import sys

import numpy as np

logger = logging.getLogger(__name__)

#: Linux's ``MAP_FIXED`` (the Python ``mmap`` module cannot map at a given address).
_MAP_FIXED = 0x10
_LIBC = None


def _libc():
    global _LIBC
    if _LIBC is None:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mmap.restype = ctypes.c_void_p
        libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int,
                              ctypes.c_long]
        libc.munmap.restype = ctypes.c_int
        libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
        _LIBC = libc
    return _LIBC


def _region(base: int, nbytes: int):
    """A ctypes byte array over ``[base, base + nbytes)`` that unmaps the region when freed
    (arrays made from it keep it alive through their ``base``)."""

    class MappedRegion(ctypes.c_char * nbytes):
        def __del__(self):
            _libc().munmap(base, nbytes)

    return MappedRegion.from_address(base)


class MappedRows:
    """Rows mapped by :func:`map_chunk_rows`.

    Attributes
    ----------
    rows : ndarray, shape (slots * slot_rows, n)
        The mapped rows (padding rows between chunks are never to be indexed).
    index : ndarray of int64, shape (n,)
        ``rows[index[r]]`` is row ``r`` of the matrix; -1 where ``r`` was not mapped.
    nbytes : int
        Bytes of rows mapped (the chunks' stored rows).
    """

    def __init__(self, rows, index, nbytes):
        self.rows, self.index, self.nbytes = rows, index, int(nbytes)


def map_chunk_rows(source, row_ranges, verify=None) -> MappedRows | None:
    """Map the chunks of ``source`` that hold the rows ``row_ranges`` (``(start, stop)``
    pairs); None when the source or the platform cannot (the caller then reads them).

    ``verify`` (row ranges, default all of ``row_ranges``): only the chunks holding these
    rows get the checksum and the read checks; the caller vouches that the others are
    checked elsewhere before any is used (the distributed walk's actors on one host each
    map every chunk and check their own share, ``_dist_eager.py``).

    Raises what the source's checks of a read raise
    (:class:`~chunked_medoids.StoreCorruptionError` for a chunk of fill values, a store
    replaced meanwhile).
    """
    plan = getattr(source, "raw_chunk_files", None)
    plan = plan() if plan is not None and sys.platform.startswith("linux") else None
    if plan is None:
        return None
    cr, crc, path_of = plan
    n = int(source.n)
    dtype = np.dtype(source.dtype)
    row = n * dtype.itemsize
    chunks = sorted({c for a, b in row_ranges if b > a for c in range(int(a) // cr, (int(b) - 1) // cr + 1)})
    if not chunks:
        return None
    checked = set(chunks) if verify is None else {
        c for a, b in verify if b > a for c in range(int(a) // cr, (int(b) - 1) // cr + 1)}
    page = mmap.PAGESIZE
    unit = page // math.gcd(row, page)
    slot_rows = -(-cr // unit) * unit
    data = cr * row  # every stored chunk has cr rows (an edge chunk is padded)
    total = len(chunks) * slot_rows * row
    libc = _libc()
    base = libc.mmap(None, total, 0,  # PROT_NONE: a reservation; the chunks are mapped into it
                     mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, -1, 0)
    if base in (None, ctypes.c_void_p(-1).value):
        return None
    region = _region(base, total)  # unmaps everything once dropped
    if crc:
        import google_crc32c
    try:
        rows = np.frombuffer(region, dtype=dtype).reshape(len(chunks) * slot_rows, n)
        index = np.full(n, -1, dtype=np.int64)
        for s, c in enumerate(chunks):
            path = path_of(c)
            try:
                fd = os.open(path, os.O_RDONLY)
            except OSError:
                logger.debug("cannot open %s: reading the rows instead", path)
                return None
            try:
                if os.fstat(fd).st_size != data + (4 if crc else 0):
                    return None
                at = base + s * slot_rows * row
                got = libc.mmap(at, data, mmap.PROT_READ | mmap.PROT_WRITE, mmap.MAP_PRIVATE | _MAP_FIXED, fd, 0)
                if got != at:
                    logger.debug("mmap of %s failed (errno %d): reading the rows instead", path, ctypes.get_errno())
                    return None
                stored = os.pread(fd, 4, data) if crc and c in checked else b""
            finally:
                os.close(fd)
            block = rows[s * slot_rows: s * slot_rows + cr]
            a, b = c * cr, min((c + 1) * cr, n)
            index[a:b] = np.arange(s * slot_rows, s * slot_rows + (b - a), dtype=np.int64)
            if c not in checked:
                continue
            if crc and google_crc32c.value(block.reshape(-1).view(np.uint8)) != int.from_bytes(stored, "little"):
                return None  # a damaged chunk: the read path names it
            source.check_mapped_rows(block[:b - a], a, b)
    except BaseException:
        del region
        raise
    return MappedRows(rows, index, len(chunks) * data)
