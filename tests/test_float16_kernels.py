"""The float16 swap kernels (issue 17): FasterPAM consumes the 2-byte rows of a float16 store
directly (``_kernels/swap.py``, the float16 section) and must give bitwise what the float32
kernels give on the rows converted by ``f16_to_f32``: the same per-candidate terms, swaps,
caches and loss, for every source kind, block size, weighting and k.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
from chunked_medoids import _budget
from chunked_medoids._kernels.assign import removal_loss
from chunked_medoids._kernels.convert import f16_row, f16_threshold, f16_thresholds, f16_to_f32
from chunked_medoids._kernels.swap import (
    eval_candidate,
    eval_candidate_f16,
    fasterpam_block,
    fasterpam_block_f16,
    first_improving,
    first_improving_f16,
)
from chunked_medoids._quant import _kernel_factors
from chunked_medoids.algorithms import fasterpam as fp_mod
from chunked_medoids.algorithms._common import SwapCaches
from chunked_medoids.sources.base import StoredRows, stored_rows
from chunked_medoids.sources.memory import NumpySource

ALL_BITS = np.arange(1 << 16, dtype=np.uint32).astype(np.uint16)
SCALES = [2.0 ** -100, 2.0 ** -15, 2.0 ** -3, 1.0, 16.0, 2.0 ** 40, 2.0 ** 100]


def _convert(bits, scale):
    out = np.empty(bits.shape, np.float32)
    f16_to_f32(np.ascontiguousarray(bits).view(np.uint16), *_kernel_factors(scale), out)
    return out


# -- conversion and thresholds -------------------------------------------------------------------
@pytest.mark.parametrize("scale", SCALES)
def test_register_conversion_is_bitwise_the_block_conversion_on_every_pattern(scale):
    ref = _convert(ALL_BITS, scale)
    out = np.empty(ALL_BITS.shape, np.float32)
    f16_row(ALL_BITS.view(np.int16), *_kernel_factors(scale), out)
    np.testing.assert_array_equal(out.view(np.uint32), ref.view(np.uint32))


@pytest.mark.parametrize("scale", SCALES)
def test_thresholds_order_the_bits_exactly_like_the_values(scale):
    m1, m2 = _kernel_factors(scale)
    vals = _convert(ALL_BITS, scale)
    rng = np.random.default_rng(int(np.log2(scale)) + 200)
    finite = vals[np.isfinite(vals) & (ALL_BITS < 0x8000)]
    xs = np.concatenate([
        rng.choice(finite, 300),  # exactly a stored value
        np.nextafter(rng.choice(finite, 200), np.float32(np.inf)),  # just above one
        np.nextafter(rng.choice(finite, 200), np.float32(0)),  # just below one
        rng.uniform(0, 70000, 100).astype(np.float32) / np.float32(scale),
        np.array([0.0, -0.0, -1.0, np.inf, -np.inf, np.nan, 1e-45, 3e38, np.finfo(np.float32).max], np.float32),
    ]).astype(np.float32)
    t = np.empty(xs.shape, np.int16)
    f16_thresholds(xs, m1, m2, t)
    signed = ALL_BITS.view(np.int16)
    pos = ALL_BITS < 0x8000
    with np.errstate(invalid="ignore"):
        for x, tt in zip(xs, t):
            assert tt == f16_threshold(x, m1, m2)
            below, mask = vals < x, signed < tt
            np.testing.assert_array_equal(mask[pos], below[pos], err_msg=f"x={x!r} scale={scale}")
            assert not (below & ~mask).any()  # a superset on the sign-bit patterns


# -- the kernels against the float32 kernels -------------------------------------------------------
def _bits(rng, shape, mix):
    """float16 patterns: zeros, -0.0, subnormals, normals, large values (and, unvalidated,
    negatives)."""
    cats = rng.integers(0, 6 if mix == "any" else 5, size=shape)
    out = np.select(
        [cats == 0, cats == 1, cats == 2, cats == 3, cats == 4],
        [0, 0x8000, rng.integers(1, 0x400, size=shape), rng.integers(0x400, 0x7000, size=shape),
         rng.integers(0x7000, 0x7C00, size=shape)],
        rng.integers(0x8001, 0xFC00, size=shape))
    return out.astype(np.uint16)


def _symmetric_bits(rng, n, mix):
    b = _bits(rng, (n, n), mix)
    b = np.triu(b, 1)
    return np.ascontiguousarray(b + b.T)  # zero diagonal, symmetric bits


problem = st.tuples(st.integers(1, 150), st.integers(1, 5), st.integers(0, 2 ** 31), st.sampled_from(SCALES),
                    st.booleans(), st.sampled_from(["valid", "any"]))


def _caches(bits, scale, k, seed, weighted):
    n = bits.shape[0]
    D32 = _convert(bits, scale)
    rng = np.random.default_rng(seed)
    k = min(k, n)
    medoids = rng.choice(n, k, replace=False)
    w = rng.uniform(0.1, 3.0, n) if weighted else None
    return D32, SwapCaches(NumpySource(D32), medoids, w), medoids, w


@settings(max_examples=60, deadline=None)
@given(problem)
def test_eval_candidate_f16_is_bitwise_the_float32_kernel(p):
    n, k, seed, scale, weighted, mix = p
    rng = np.random.default_rng(seed)
    bits = _bits(rng, (min(n, 40), n), mix)
    D32 = _convert(bits, scale)
    sym = _symmetric_bits(rng, n, mix)
    _, c, _, _ = _caches(sym, scale, k, seed, weighted)
    m1, m2 = _kernel_factors(scale)
    t = np.empty(n, np.int16)
    f16_thresholds(c.ds, m1, m2, t)
    removal_loss(c.dn, c.ds, c.nn, c.w, c.weighted, c.R)
    P1, P2 = np.empty(c.k), np.empty(c.k)
    for i in range(bits.shape[0]):
        a1 = eval_candidate(D32[i], c.dn, c.ds, c.nn, c.R, c.w, c.weighted, P1, None)
        a2 = eval_candidate_f16(bits[i].view(np.int16), t, m1, m2, c.dn, c.ds, c.nn, c.R, c.w, c.weighted, P2, None)
        np.testing.assert_array_equal(np.float64(a2).view(np.uint64), np.float64(a1).view(np.uint64))
        np.testing.assert_array_equal(P2.view(np.uint64), P1.view(np.uint64))


def _state(c):
    return [c.M, c.medoids, c.is_medoid, c.dn, c.ds, c.nn, c.sn, c.R]


@settings(max_examples=40, deadline=None)
@given(problem, st.sampled_from([0.0, 1e-4]))
def test_fasterpam_block_f16_swaps_like_the_float32_kernel(p, tol):
    n, k, seed, scale, weighted, mix = p
    rng = np.random.default_rng(seed)
    bits = _symmetric_bits(rng, n, mix)
    D32, a, medoids, w = _caches(bits, scale, k, seed, weighted)
    b = SwapCaches(NumpySource(D32), medoids, w)
    m1, m2 = _kernel_factors(scale)
    for c in (a, b):
        removal_loss(c.dn, c.ds, c.nn, c.w, c.weighted, c.R)
    t = np.empty(n, np.int16)
    f16_thresholds(b.ds, m1, m2, t)
    cand = rng.permutation(n).astype(np.int64)  # any visiting order
    visit = cand.copy()
    # the speculative helper first, on the unchanged caches
    out1, out2 = np.zeros(2), np.zeros(2)
    P1, P2 = np.empty(a.k), np.empty(a.k)
    r32 = np.empty(n, np.float32)
    i1 = first_improving(D32, visit, cand, 0, n, a.is_medoid, a.dn, a.ds, a.nn, a.R, a.w, a.weighted, a.td, tol,
                         P1, None, out1)
    i2 = first_improving_f16(bits.view(np.int16), visit, cand, 0, n, m1, m2, t, r32, b.is_medoid, b.dn, b.ds, b.nn,
                             b.R, b.w, b.weighted, b.td, tol, P2, out2)
    assert i1 == i2 and (i1 < 0 or out1.tolist() == out2.tolist())
    # then two eager passes, swapping
    c1, c2 = np.zeros(2, np.int64), np.zeros(2, np.int64)
    td1, td2 = np.array([a.td]), np.array([b.td])
    for _ in range(2):
        k1 = fasterpam_block(D32, visit, cand, a.M, a.medoids, a.is_medoid, a.dn, a.ds, a.nn, a.sn, a.R, a.w,
                             a.weighted, tol, P1, np.empty(n, np.int32), c1, td1)
        k2 = fasterpam_block_f16(bits.view(np.int16), visit, cand, m1, m2, t, r32, b.M, b.medoids, b.is_medoid,
                                 b.dn, b.ds, b.nn, b.sn, b.R, b.w, b.weighted, tol, P2, c2, td2)
        assert k1 == k2 and c1.tolist() == c2.tolist()
        np.testing.assert_array_equal(td1.view(np.uint64), td2.view(np.uint64))
        for x, y in zip(_state(a), _state(b)):
            np.testing.assert_array_equal(x, y)
        expect = np.empty(n, np.int16)
        f16_thresholds(b.ds, m1, m2, expect)
        np.testing.assert_array_equal(t, expect)  # kept in step with ds


# -- through the API: every source kind ------------------------------------------------------------
def _same(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.n_swap == b.n_swap and a.loss_history == b.loss_history


@pytest.fixture(scope="module")
def f16_stores(tmp_path_factory):
    d = tmp_path_factory.mktemp("f16k")
    rng = np.random.default_rng(3)
    n = 97  # not a multiple of 64
    # clusters at very different distances: subnormal-scale, ordinary and large stored values
    X = np.concatenate([rng.normal(size=(40, 3)) * 1e-3, rng.normal(size=(40, 3)) * 10 + 50,
                        rng.normal(size=(17, 3)) * 300 + 5000])
    assert X.shape[0] == n
    z = cm.build_dissimilarity(X, d / "D.zarr", dtype="float16", memory_limit="2MiB", block_rows=9)
    h = cm.build_dissimilarity(X, d / "D.h5", dtype="float16", memory_limit="2MiB", block_rows=10)
    f = cm.from_features(X, dtype="float16", block_rows=13)
    ref = z.read_rows(0, n)  # the dequantised float32 values
    return {"zarr": z, "hdf5": h, "features": f, "ref": ref, "n": n, "X": X, "dir": d}


@pytest.fixture
def count_f16(monkeypatch):
    calls = {"block": 0, "first": 0, "dtypes": set()}
    real_block, real_first = fp_mod.fasterpam_block_f16, fp_mod.first_improving_f16
    real_strided = fp_mod.first_improving_strided_f16

    def block(blk, *a):
        calls["block"] += 1
        calls["dtypes"].add(blk.dtype)
        return real_block(blk, *a)

    def first(blk, *a):
        calls["first"] += 1
        calls["dtypes"].add(blk.dtype)
        return real_first(blk, *a)

    def strided(blk, *a):  # the interleaved speculative helper counts as "first"
        calls["first"] += 1
        calls["dtypes"].add(blk.dtype)
        return real_strided(blk, *a)

    monkeypatch.setattr(fp_mod, "fasterpam_block_f16", block)
    monkeypatch.setattr(fp_mod, "first_improving_f16", first)
    monkeypatch.setattr(fp_mod, "first_improving_strided_f16", strided)
    return calls


OPTS = [{}, {"block_rows": 1}, {"block_rows": 9}, {"block_rows": 64}, {"num_workers": 1},
        {"memory_limit": 2 ** 16}, {"order": "shuffle"}, {"order": "shuffle", "block_rows": 300}]


@pytest.mark.parametrize("key", ["zarr", "hdf5", "features"])
@pytest.mark.parametrize("opts", OPTS)
def test_fasterpam_on_float16_rows_is_the_float32_run(f16_stores, key, opts, count_f16, monkeypatch):
    src, n = f16_stores[key], f16_stores["n"]
    ref = cm.open_dissimilarity(f16_stores["ref"])
    if key == "features":  # fused kernels compute its rows unless told to stream them
        monkeypatch.setattr(type(src), "prefer_fused", lambda self, walk=False: False)
    w = np.random.default_rng(1).uniform(0.5, 2.0, n)
    for k, weights in ((1, None), (3, None), (5, w)):
        _same(cm.fasterpam(src, k, random_state=5, weights=weights, **opts),
              cm.fasterpam(ref, k, random_state=5, weights=weights, **opts))
    assert count_f16["block"] + count_f16["first"] > 0
    assert count_f16["dtypes"] == {np.dtype(np.int16)}


def test_float16_features_sources_with_fused_kernels_are_the_float32_run(f16_stores):
    src, ref = f16_stores["features"], cm.open_dissimilarity(f16_stores["ref"])
    for opts in ({}, {"block_rows": 7}, {"num_workers": 1}):
        _same(cm.fasterpam(src, 4, random_state=2, **opts), cm.fasterpam(ref, 4, random_state=2, **opts))


def test_checkpointing_every_block_on_float16_changes_nothing(f16_stores, tmp_path):
    src, ref = f16_stores["zarr"], cm.open_dissimilarity(f16_stores["ref"])
    full = cm.fasterpam(src, 4, random_state=8, block_rows=9)
    _same(cm.fasterpam(src, 4, random_state=8, block_rows=9, checkpoint=tmp_path / "ck.json",
                       checkpoint_interval=0.0), full)
    _same(full, cm.fasterpam(ref, 4, random_state=8, block_rows=9))


def test_the_stored_view_reads_the_bits_and_keeps_validating(f16_stores, tmp_path):
    import zarr

    z = f16_stores["zarr"]
    v = stored_rows(z)
    assert isinstance(v, StoredRows) and v.dtype == np.float16 and v.n == z.n and v.block_rows == z.block_rows
    np.testing.assert_array_equal(v.read_rows(3, 20).astype(np.float32) / np.float32(z.scale), z.read_rows(3, 20))
    idx = np.array([5, 1, 5, 90])
    np.testing.assert_array_equal(v.take_rows(idx), v.read_rows(0, z.n)[idx])
    assert stored_rows(cm.open_dissimilarity(f16_stores["ref"])) is None
    # a foreign float16 zarr array (no build metadata, so validated while read) with a negative entry
    D = f16_stores["ref"].astype(np.float16)
    D[40, 41] = D[41, 40] = -1.0
    p = tmp_path / "bad.zarr"
    arr = zarr.create_array(store=str(p), shape=D.shape, chunks=(10, D.shape[1]), dtype="float16")
    arr[:] = D
    with pytest.raises(cm.DissimilarityError, match="negative"):
        cm.fasterpam(str(p), 3, random_state=0)


# -- the stream plan of O_DIRECT stores ----------------------------------------------------------------
def test_direct_stream_plan_reads_one_chunk_per_unit_within_the_plan():
    assert _budget.direct_stream_plan((345, 4, 8), 69) == (69, 4, 8)
    assert _budget.direct_stream_plan((138, 4, 15), 69) == (69, 4, _budget.DIRECT_AHEAD)
    assert _budget.direct_stream_plan((138, 4, 1), 69) == (69, 4, 2)  # never more bytes ahead
    assert _budget.direct_stream_plan((345, 4, 8), None) == (345, 4, 8)
    assert _budget.direct_stream_plan((69, 1, 1), 69) == (69, 1, 1)
    assert _budget.direct_stream_plan((40, 4, 3), 69) == (40, 4, 3)  # below a chunk: kept


def test_direct_unit_rows_only_for_unaligned_direct_chunks(tmp_path):
    X = np.random.default_rng(0).normal(size=(300, 2))
    for dtype, rows in (("float16", 7), ("float32", 7), ("float32", 1024 // 4)):
        p = tmp_path / f"{dtype}_{rows}.zarr"
        cm.build_dissimilarity(X if rows < 100 else np.random.default_rng(0).normal(size=(1024, 2)), p,
                               dtype=dtype, block_rows=rows, memory_limit="64MiB")
        on = cm.open_dissimilarity(p, direct_io=True)
        n = on.n
        aligned = (rows * n * on.storage_itemsize) % 4096 == 0
        hint = on.direct_unit_rows()
        if not on.__dict__.get("_direct_ok", True):  # pragma: no cover - a file system without O_DIRECT
            continue
        assert hint == (None if aligned else rows)
        assert cm.open_dissimilarity(p, direct_io=False).direct_unit_rows() is None
        view = stored_rows(on)
        if view is not None:
            assert view.direct_unit_rows() == hint
        _same(cm.fasterpam(on, 3, random_state=1), cm.fasterpam(cm.open_dissimilarity(p, direct_io=False), 3,
                                                                 random_state=1))
