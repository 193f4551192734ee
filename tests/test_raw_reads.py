"""The raw fast path of zarr stores built with ``compressor=None`` (issue 17): chunk files read
with ``os.preadv`` straight into the block, crc32c verified in place -- the same values and
the same errors as zarr's own path, and the concurrent stream of an eager pass."""

from __future__ import annotations

import os

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids.sources.zarr_store import ZarrSource


@pytest.fixture()
def raw(tmp_path):
    X = np.random.default_rng(0).normal(size=(53, 3))
    src = cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=10)
    return tmp_path / "D.zarr", src


def _chunk(path, i):
    return os.path.join(path, "c", str(i), "0")


def test_raw_layout_detected_only_for_raw_chunks(tmp_path, raw):
    path, src = raw
    assert src._raw_layout() == (os.path.join(str(path), ""), True)
    lz = cm.build_dissimilarity(np.zeros((5, 2)) + np.arange(5)[:, None], tmp_path / "L.zarr", compressor="lz4")
    assert lz._raw_layout() is None
    f16 = cm.build_dissimilarity(np.arange(12.0).reshape(6, 2), tmp_path / "H.zarr", compressor=None,
                                 dtype="float16")
    assert f16._raw_layout() is not None
    np.testing.assert_array_equal(f16.read_rows(0, 6), cm.from_features(np.arange(12.0).reshape(6, 2),
                                                                        dtype="float16").read_rows(0, 6))


def test_raw_reads_equal_zarr_reads(raw, monkeypatch):
    path, src = raw
    arr = src.array
    calls = {"raw": 0}
    real = ZarrSource._read_raw

    def spy(self, *a):
        calls["raw"] += 1
        return real(self, *a)

    monkeypatch.setattr(ZarrSource, "_read_raw", spy)
    for a, b in ((0, 10), (0, 53), (3, 7), (9, 11), (45, 53), (50, 53), (52, 53)):
        np.testing.assert_array_equal(src.read_rows(a, b), arr[a:b])
    idx = np.array([52, 0, 17, 17, 3])
    np.testing.assert_array_equal(src.take_rows(idx), arr[:][idx])
    assert calls["raw"] >= 7
    r1 = cm.fasterpam(src, 4, random_state=0, memory_limit=2 ** 16)
    r2 = cm.fasterpam(arr[:], 4, random_state=0)
    np.testing.assert_array_equal(r1.medoids, r2.medoids)
    assert r1.loss == r2.loss


def test_raw_path_keeps_zarrs_errors(raw):
    path, _ = raw
    # a flipped bit: the checksum fails, the zarr path names the chunk
    p = _chunk(path, 2)
    data = bytearray(open(p, "rb").read())
    data[100] ^= 1
    open(p, "wb").write(bytes(data))
    src = cm.open_dissimilarity(path)
    with pytest.raises(cm.StoreCorruptionError, match="rows 20:30"):
        src.read_rows(15, 25)
    # a truncated chunk
    p = _chunk(path, 3)
    data = open(p, "rb").read()
    open(p, "wb").write(data[:-9])
    with pytest.raises(cm.StoreCorruptionError, match="rows 30:40"):
        src.read_rows(30, 40)
    # a missing chunk
    os.unlink(_chunk(path, 4))
    with pytest.raises(cm.StoreCorruptionError, match=r"rows 40:50.*missing"):
        src.read_rows(40, 45)
    np.testing.assert_array_equal(src.read_rows(0, 10), cm.open_dissimilarity(path).array[0:10])


def test_eager_stream_plan_reads_concurrently_within_budget(raw):
    from chunked_medoids import _budget

    path, src = raw
    eng = cm.Engine(memory_limit=2 ** 16)
    rows, readers, ahead = eng.stream_plan(src)
    assert readers == _budget.STREAM_READERS and rows % src.block_rows == 0
    n = src.n
    # readers decoding + every finished block read ahead + the one processed fit the budget
    held = ahead - readers + 1
    assert rows * n * (readers * _budget.reader_bytes(4) + held * 4) <= 2 ** 16
    assert ahead >= readers
    got = np.vstack([b for _, _, b in eng.iter_blocks(src, eng.blocks(src, rows), prefetch=ahead,
                                                     readers=readers)])
    np.testing.assert_array_equal(got, src.array[:])
    assert eng.read_stats["blocks"] == -(-n // rows)
    # other sources (in memory, forced block rows) keep one reader and one block ahead
    assert cm.Engine(memory_limit=2 ** 20).stream_plan(cm.open_dissimilarity(src.array[:]))[1:] == (1, 1)
    assert cm.Engine(memory_limit=2 ** 20, block_rows=7).stream_plan(src) == (7, 1, 1)


@pytest.mark.parametrize("piece", [64, 1000, 1 << 20])
@pytest.mark.parametrize("crc", [True, False])
def test_raw_reads_in_pieces_equal_zarr_reads(tmp_path, monkeypatch, piece, crc):
    """Pieces smaller than a row, across rows, and larger than a chunk; rows outside the range
    asked for (a partly read chunk) through the scratch buffer, with and without checksum."""
    from chunked_medoids.sources import zarr_store

    X = np.random.default_rng(1).normal(size=(47, 4))
    src = cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=9)
    if not crc:  # the same raw chunks without the checksum codec
        import zarr

        plain = zarr.create_array(str(tmp_path / "P.zarr"), shape=src.array.shape, chunks=(9, 47),
                                  dtype="float32", compressors=None, fill_value=-1.0)
        plain[:] = src.array[:]
        src = ZarrSource(str(tmp_path / "P.zarr"))
    assert src._raw_layout()[1] is crc
    monkeypatch.setattr(zarr_store, "RAW_PIECE", piece)
    full = src.array[:]
    for a, b in ((0, 47), (0, 9), (1, 8), (4, 23), (8, 10), (44, 47), (46, 47), (17, 18)):
        got = src._read_raw(a, b, src._raw_layout())
        assert got is not None
        np.testing.assert_array_equal(got, full[a:b])


def test_raw_reads_announce_every_chunk_before_reading(raw, monkeypatch):
    """All chunk files of a block are announced (POSIX_FADV_WILLNEED, whole file) before the
    first read, so one reader has the whole block's requests in flight."""
    from chunked_medoids.sources import zarr_store

    if not zarr_store._FADVISE:
        pytest.skip("no os.posix_fadvise on this platform")
    path, src = raw
    events = []
    real_fadvise, real_preadv = os.posix_fadvise, os.preadv
    monkeypatch.setattr(os, "posix_fadvise",
                        lambda fd, off, ln, adv: (events.append(("advise", off, ln, adv)), real_fadvise(fd, off, ln, adv))[1])
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: (events.append(("read",)), real_preadv(fd, bufs, off))[1])
    block = src.read_rows(5, 33)  # chunks 0..3 (rows 0:40)
    np.testing.assert_array_equal(block, src.array[5:33])
    advised = [e for e in events if e[0] == "advise"]
    assert len(advised) == 4
    assert all(e[1:] == (0, 10 * 53 * 4 + 4, os.POSIX_FADV_WILLNEED) for e in advised)
    first_read = events.index(("read",))
    assert first_read == 4  # every announcement came first


def test_raw_path_refuses_a_chunk_file_longer_than_a_chunk(raw):
    path, _ = raw
    p = _chunk(path, 1)
    with open(p, "ab") as f:
        f.write(b"\0\0\0\0")
    src = cm.open_dissimilarity(path)
    assert src._read_raw(10, 20, src._raw_layout()) is None  # zarr's path decides
    with pytest.raises(cm.StoreCorruptionError, match="rows 10:20"):
        src.read_rows(10, 20)


@pytest.fixture()
def direct(tmp_path, monkeypatch):
    """A raw store read with O_DIRECT as if nothing were cached (the probe says cold)."""
    from chunked_medoids.sources import zarr_store

    X = np.random.default_rng(2).normal(size=(700, 3))
    cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=13)
    monkeypatch.setattr(zarr_store, "_cached", lambda fd, probe: False)
    calls = {"direct": 0}
    real = zarr_store._read_direct

    def spy(*a):
        calls["direct"] += 1
        return real(*a)

    monkeypatch.setattr(zarr_store, "_read_direct", spy)
    src = ZarrSource(str(tmp_path / "D.zarr"), direct_io=True)
    try:  # a file system without O_DIRECT (tmpfs): nothing to test here
        os.close(os.open(_chunk(tmp_path / "D.zarr", 0), os.O_RDONLY | os.O_DIRECT))
    except OSError:
        pytest.skip("the test directory's file system refuses O_DIRECT")
    return tmp_path / "D.zarr", src, calls


@pytest.mark.parametrize("piece", [4096, 8192, 8 << 20])
def test_direct_reads_equal_zarr_reads(direct, monkeypatch, piece):
    """O_DIRECT reads (straight into an aligned block, or through the bounce buffer for the
    chunks that are not aligned with it, and for the unaligned end of every chunk) give the
    bytes zarr gives, for whole, partial and single-row blocks."""
    from chunked_medoids.sources import zarr_store

    path, src, calls = direct
    monkeypatch.setattr(zarr_store, "DIRECT_PIECE", piece)
    full = src.array[:]
    for a, b in ((0, 700), (0, 13), (5, 40), (13, 26), (26, 91), (690, 700), (699, 700), (100, 101)):
        np.testing.assert_array_equal(src.read_rows(a, b), full[a:b])
    assert calls["direct"] >= 8
    np.testing.assert_array_equal(src.take_rows(np.array([699, 0, 350, 350])), full[[699, 0, 350, 350]])


def test_direct_read_goes_straight_into_an_aligned_block(direct, monkeypatch):
    from chunked_medoids.sources import zarr_store

    path, src, _ = direct
    file_end = 13 * 700 * 4 + 4
    dest = zarr_store._aligned_buffer(13 * 700 * 4)
    bounce = zarr_store._aligned_buffer(zarr_store.DIRECT_PIECE)
    seen = []
    real = os.preadv
    monkeypatch.setattr(os, "preadv", lambda fd, bufs, off: (seen.append((bufs[0].ctypes.data, off)), real(fd, bufs, off))[1])
    fd = os.open(_chunk(path, 3), os.O_RDONLY | os.O_DIRECT)
    try:
        value, stored = zarr_store._read_direct(fd, file_end, file_end - 4, 0, dest, bounce, True)
    finally:
        os.close(fd)
    np.testing.assert_array_equal(dest.view(np.float32).reshape(13, 700), src.array[39:52])
    import google_crc32c

    assert value == google_crc32c.value(dest.tobytes()) == int.from_bytes(stored, "little")
    # the aligned part went straight into the block; only the last page (with the checksum) bounced
    assert seen[0] == (dest.ctypes.data, 0)
    assert [o for a, o in seen if a == bounce.ctypes.data] == [(file_end - 4) // 4096 * 4096]


def test_direct_reads_keep_zarrs_errors(direct):
    path, _, calls = direct
    p = _chunk(path, 2)
    data = bytearray(open(p, "rb").read())
    data[5000] ^= 1
    open(p, "wb").write(bytes(data))
    src = ZarrSource(str(path), direct_io=True)
    with pytest.raises(cm.StoreCorruptionError, match="rows 26:39"):
        src.read_rows(20, 30)
    p = _chunk(path, 4)
    open(p, "wb").write(open(p, "rb").read()[:-9])
    with pytest.raises(cm.StoreCorruptionError, match="rows 52:65"):
        src.read_rows(52, 65)
    np.testing.assert_array_equal(src.read_rows(0, 13), src.array[0:13])
    assert calls["direct"] >= 2


def test_direct_io_falls_back_to_buffered_reads_where_refused(direct, monkeypatch):
    path, src, calls = direct
    real = os.open

    def refuse(p, flags, *a):
        if flags & os.O_DIRECT:
            raise OSError(22, "Invalid argument")  # e.g. tmpfs
        return real(p, flags, *a)

    monkeypatch.setattr(os, "open", refuse)
    np.testing.assert_array_equal(src.read_rows(0, 700), src.array[:])
    assert src._direct_ok is False and calls["direct"] == 0


def test_direct_io_policy(raw, monkeypatch):
    from chunked_medoids.sources import zarr_store

    path, _ = raw
    nbytes = 53 * 53 * 4
    auto = cm.open_dissimilarity(path)
    assert auto.direct_io == "auto"
    monkeypatch.setattr(zarr_store, "_physical_memory", lambda: 4 * nbytes)  # store = 1/4 of RAM
    assert auto._use_direct() is False
    monkeypatch.setattr(zarr_store, "_physical_memory", lambda: nbytes)  # store as large as RAM
    assert auto._use_direct() is zarr_store._HAS_DIRECT
    assert ZarrSource(str(path), direct_io=False)._use_direct() is False
    assert cm.open_dissimilarity(path, direct_io=True)._use_direct() is zarr_store._HAS_DIRECT
    with pytest.raises(cm.InvalidTypeError, match="direct_io"):
        ZarrSource(str(path), direct_io="yes")


def test_block_buffers_are_aligned_and_reused_once_dropped(monkeypatch):
    from chunked_medoids.sources import base

    monkeypatch.setattr(base, "_POOL", base._BufferPool())
    a = base.block_buffer((300, 1000), np.float32)
    assert a.ctypes.data % base.BUFFER_ALIGN == 0 and a.flags.c_contiguous and a.shape == (300, 1000)
    addr = a.ctypes.data
    view = a[10:20][3]  # a view of a view keeps the buffer in use
    del a
    b = base.block_buffer((300, 1000), np.float32)
    assert b.ctypes.data != addr
    del view
    c = base.block_buffer((300, 1000), np.float32)
    assert c.ctypes.data == addr
    assert base._POOL.idle_bytes == 0
    del b, c
    assert 0 < base._POOL.idle_bytes <= base.POOL_MAX_BYTES
    d = base.block_buffer((299, 1000), np.float32)  # another size: a buffer of its own
    assert d.ctypes.data % base.BUFFER_ALIGN == 0 and d.ctypes.data != addr


def test_block_buffer_pool_keeps_two_sizes_and_its_bound(monkeypatch):
    from chunked_medoids.sources import base

    pool = base._BufferPool()
    monkeypatch.setattr(base, "_POOL", pool)
    a = base.block_buffer((256, 1024), np.float16)  # 512 KiB: below the pooled size
    assert not pool.owners
    del a
    f16 = base.block_buffer((512, 1024), np.float16)
    f32 = base.block_buffer((512, 1024), np.float32)
    a16, a32 = f16.ctypes.data, f32.ctypes.data
    del f16, f32
    assert base.block_buffer((512, 1024), np.float16).ctypes.data == a16
    assert base.block_buffer((512, 1024), np.float32).ctypes.data == a32
    monkeypatch.setattr(base, "POOL_MAX_BYTES", 3 << 20)
    big = base.block_buffer((1024, 1024), np.float16)  # 2 MiB: the idle 1 MiB and 2 MiB ones make room
    assert pool._tracked() <= 3 << 20 and (2 << 20) in pool.owners
    keep = [base.block_buffer((1024, 1024), np.float16) for _ in range(3)]  # beyond the bound: not kept
    assert pool._tracked() <= 3 << 20
    del big, keep
    assert pool.idle_bytes > 0
    base.release_block_buffers()  # the end of a stream: idle buffers go
    assert pool.idle_bytes == 0 and not pool.owners


def test_direct_reads_leave_no_pages_that_make_the_next_pass_buffered(tmp_path):
    """The RWF_NOWAIT probe starts a readahead of a cold chunk's first pages; the direct read
    drops them, so the chunk still reads as cold (O_DIRECT) on the next pass."""
    from chunked_medoids.sources import zarr_store

    if not (zarr_store._FADVISE and zarr_store._NOWAIT is not None and zarr_store._HAS_DIRECT):
        pytest.skip("needs posix_fadvise, RWF_NOWAIT and O_DIRECT")
    X = np.random.default_rng(3).normal(size=(600, 3))
    cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=50)
    path = _chunk(tmp_path / "D.zarr", 1)
    try:
        os.close(os.open(path, os.O_RDONLY | os.O_DIRECT))
    except OSError:
        pytest.skip("the test directory's file system refuses O_DIRECT")
    want = ZarrSource(str(tmp_path / "D.zarr")).array[50:100]  # (zarr reads through the cache)
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)  # evict this one file (not a global drop)
        probe = np.empty(4096, dtype=np.uint8)  # (probing first would start the readahead)
        src = ZarrSource(str(tmp_path / "D.zarr"), direct_io=True)
        np.testing.assert_array_equal(src.read_rows(50, 100), want)
        assert not zarr_store._cached(fd, probe)
    finally:
        os.close(fd)
