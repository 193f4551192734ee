"""Rows of a raw zarr store mapped from the page cache (``sources/_mapped.py``): what the
distributed walk's actors hold instead of a copy.  The mapped rows equal the rows a read
returns; whatever a read would refuse or could not do the raw way is not mapped (the
caller then reads, with the read path's errors)."""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids._errors import StoreCorruptionError
from chunked_medoids.sources._mapped import map_chunk_rows

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="mapping is Linux-only")


@pytest.fixture()
def store(tmp_path):
    # 301 points: row bytes 1204, so slots are padded (page / gcd(1204, 4096) = 1024 rows)
    X = np.random.default_rng(3).normal(size=(301, 3))
    src = cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=40)
    return tmp_path / "D.zarr", src


def _chunk(path, i):
    return os.path.join(path, "c", str(i), "0")


@pytest.mark.parametrize("ranges", [[(0, 301)], [(0, 40), (120, 200)], [(37, 43)], [(280, 301)]])
def test_mapped_rows_equal_read_rows(store, ranges):
    _, src = store
    m = map_chunk_rows(src, ranges)
    assert m is not None
    full = src.read_rows(0, src.n)
    held = np.zeros(src.n, dtype=bool)
    for a, b in ranges:
        held[a:b] = True
        np.testing.assert_array_equal(m.rows[m.index[a:b]], full[a:b])
    # whole chunks are mapped: every row of a touched chunk, nothing else
    chunks = {r // 40 for a, b in ranges for r in range(a, b)}
    want = np.array([r // 40 in chunks for r in range(src.n)])
    np.testing.assert_array_equal(m.index >= 0, want)
    assert m.nbytes == len(chunks) * 40 * src.n * 4
    rows = m.index[want]
    np.testing.assert_array_equal(m.rows[rows], full[want])
    assert m.rows.flags.writeable  # the kernels take writable arrays (never written)


def test_mapped_rows_outlive_the_mapping_object(store):
    _, src = store
    m = map_chunk_rows(src, [(0, 80)])
    view = m.rows[m.index[:80]].copy()
    rows, index = m.rows, m.index
    del m
    np.testing.assert_array_equal(rows[index[:80]], view)  # the region stays mapped while rows lives


def test_a_damaged_chunk_is_not_mapped_and_the_read_names_it(store):
    path, src = store
    with open(_chunk(path, 1), "r+b") as fh:  # flip a byte of chunk 1's rows: the crc32c fails
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    assert map_chunk_rows(src, [(0, 120)]) is None
    assert map_chunk_rows(src, [(0, 40)]) is not None  # chunk 0 alone is fine
    with pytest.raises(StoreCorruptionError):
        src.read_rows(40, 80)


def test_missing_or_short_chunk_is_not_mapped(store):
    path, src = store
    with open(_chunk(path, 2), "r+b") as fh:
        fh.truncate(1000)
    assert map_chunk_rows(src, [(80, 120)]) is None
    os.remove(_chunk(path, 3))
    assert map_chunk_rows(src, [(120, 160)]) is None


def test_a_chunk_of_fill_values_is_refused_as_a_read_refuses_it(tmp_path):
    X = np.random.default_rng(4).normal(size=(50, 2))
    src = cm.build_dissimilarity(X, tmp_path / "D.zarr", compressor=None, block_rows=10)
    import google_crc32c

    data = np.full((10, 50), np.nan, dtype="<f4").tobytes()  # a present chunk of fill values, valid crc32c
    with open(_chunk(tmp_path / "D.zarr", 1), "wb") as fh:
        fh.write(data + google_crc32c.value(data).to_bytes(4, "little"))
    with pytest.raises(StoreCorruptionError):
        src.read_rows(10, 20)
    with pytest.raises(StoreCorruptionError):
        map_chunk_rows(src, [(10, 20)])


def test_only_raw_unvalidated_float_rows_are_mapped(tmp_path):
    X = np.random.default_rng(5).normal(size=(30, 2))
    lz = cm.build_dissimilarity(X, tmp_path / "L.zarr", compressor="lz4")
    assert map_chunk_rows(lz, [(0, 30)]) is None  # compressed chunks must be decoded
    f16 = cm.build_dissimilarity(X, tmp_path / "H.zarr", compressor=None, dtype="float16")
    assert map_chunk_rows(f16, [(0, 30)]) is None  # stored float16, returned float32
    h5 = cm.build_dissimilarity(X, tmp_path / "D.h5")
    assert map_chunk_rows(h5, [(0, 30)]) is None  # not a zarr store
    assert map_chunk_rows(cm.from_features(X), [(0, 30)]) is None


def test_verify_checks_only_the_chunks_named(store):
    """``verify=`` (the distributed walk's actors on one host: each maps every chunk, checks
    its own share): a damaged chunk outside ``verify`` is mapped unchecked, inside it is
    refused as without ``verify``; rows are indexed for every mapped chunk either way."""
    path, src = store
    full = src.read_rows(0, src.n)
    with open(_chunk(path, 1), "r+b") as fh:
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    assert map_chunk_rows(src, [(0, 301)], verify=[(40, 80)]) is None
    assert map_chunk_rows(src, [(0, 301)], verify=[(45, 46), (200, 230)]) is None
    m = map_chunk_rows(src, [(0, 301)], verify=[(0, 40), (80, 301)])
    assert m is not None and (m.index >= 0).all() and m.nbytes == 8 * 40 * src.n * 4
    keep = np.r_[0:40, 80:301]
    np.testing.assert_array_equal(m.rows[m.index[keep]], full[keep])
    assert not np.array_equal(m.rows[m.index[40:80]], full[40:80])  # mapped as stored, unchecked
    assert map_chunk_rows(src, [(0, 301)], verify=[]) is not None
