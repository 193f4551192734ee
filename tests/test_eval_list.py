"""The compacted-index path of the FastPAM1 candidate kernel (``eval_candidate`` and its
float16 twin from k = ``LIST_MIN_K`` on): the same points, order and terms as the mask loop,
bitwise, and the index compaction ``compress64`` equal to its reference loop."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunked_medoids._kernels.assign import assign_all, removal_loss
from chunked_medoids._kernels.convert import f16_thresholds, f16_to_f32
from chunked_medoids._kernels.simd import compress64_call, compress64_loop
from chunked_medoids._kernels.swap import LIST_MIN_K, MASK_BITS, eval_candidate, eval_candidate_f16
from chunked_medoids._quant import _kernel_factors

masks = st.one_of(st.integers(0, 2 ** 64 - 1), st.sampled_from([0, 1, 2 ** 63, 2 ** 64 - 1, 0x5555555555555555]),
                  st.builds(lambda b: 1 << b, st.integers(0, 63)))


@settings(max_examples=300, deadline=None)
@given(st.lists(masks, min_size=1, max_size=8), st.sampled_from([np.int32, np.int64]))
def test_compress64_appends_the_set_bits_in_order(ms, dtype):
    n = MASK_BITS * len(ms)
    got = np.full(n, -5, dtype)
    want = np.full(n, -5, dtype)
    p = q = 0
    for i, m in enumerate(ms):
        p = compress64_call(np.uint64(m), i * MASK_BITS, got, p)
        q = compress64_loop(np.uint64(m), i * MASK_BITS, want, q)
        assert p == q
    expect = [i * MASK_BITS + t for i, m in enumerate(ms) for t in range(MASK_BITS) if (m >> t) & 1]
    assert p == len(expect)
    np.testing.assert_array_equal(got[:p], expect)
    np.testing.assert_array_equal(want[:q], expect)


def _problem(n, k, dtype, seed, weighted, ties):
    rng = np.random.default_rng(seed)
    if np.issubdtype(dtype, np.integer) or ties:
        A = rng.integers(0, 6 if ties else 1000, (n, n))
    else:
        A = rng.random((n, n)) * 100
    D = np.triu(A, 1)
    D = (D + D.T).astype(dtype)
    if not np.issubdtype(dtype, np.integer) and ties:
        D[rng.random((n, n)) < 0.05] = -0.0  # signed zeros off the diagonal (compare equal to 0)
    med = rng.choice(n, k, replace=False).astype(np.int64)
    M = np.ascontiguousarray(D[:, med])
    dn, ds = np.empty(n, dtype), np.empty(n, dtype)
    nn, sn = np.empty(n, np.int32), np.empty(n, np.int32)
    assign_all(M, med, dn, ds, nn, sn)
    w = rng.uniform(0.0, 3.0, n) if weighted else np.empty(0)
    R = np.empty(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    return D, dn, ds, nn, R, w


def _textbook(row, dn, ds, nn, R, w, weighted):
    P = R.copy()
    acc = 0.0
    for o in range(row.shape[0]):
        d, a, b = np.float64(row[o]), np.float64(dn[o]), np.float64(ds[o])
        f = w[o] if weighted else 1.0
        if row[o] < dn[o]:
            acc += f * (d - a) if weighted else d - a
            P[nn[o]] += f * (a - b) if weighted else a - b
        elif row[o] < ds[o]:
            P[nn[o]] += f * (d - b) if weighted else d - b
    return acc, P


def _bits(x):
    return np.asarray(x, np.float64).view(np.uint64)


@settings(max_examples=120, deadline=None)
@given(st.integers(LIST_MIN_K, 260), st.integers(LIST_MIN_K, 24), st.integers(0, 2 ** 31),
       st.sampled_from([np.float32, np.float64, np.int32, np.int64]), st.booleans(), st.booleans())
def test_list_path_is_bitwise_the_mask_loop_and_the_textbook_sums(n, k, seed, dtype, weighted, ties):
    k = min(k, n)
    D, dn, ds, nn, R, w = _problem(n, k, dtype, seed, weighted, ties)
    nfull = n - n % MASK_BITS
    P_list, P_mask = np.empty(k), np.empty(k)
    buf = np.full(n, -1, np.int32)
    for j in range(n):
        row = np.ascontiguousarray(D[j])
        a_list = eval_candidate(row, dn, ds, nn, R, w, weighted, P_list, buf)
        a_mask = eval_candidate(row, dn, ds, nn, R, w, weighted, P_mask, None)  # no scratch: the mask loop
        a_text, P_text = _textbook(row, dn, ds, nn, R, w, weighted)
        assert _bits(a_list) == _bits(a_mask) == _bits(a_text)
        np.testing.assert_array_equal(_bits(P_list), _bits(P_mask))
        np.testing.assert_array_equal(_bits(P_list), _bits(P_text))
        if k >= 2 and nfull:  # the list path ran: the scratch holds the passing indices
            passing = np.flatnonzero(row[:nfull] < ds[:nfull])
            np.testing.assert_array_equal(buf[:passing.size], passing)


def test_short_scratch_takes_the_mask_loop_with_the_same_result():
    n, k = 200, 15
    D, dn, ds, nn, R, w = _problem(n, k, np.float32, 3, False, True)
    short = np.full(n - n % MASK_BITS - 1, -1, np.int32)
    P1, P2 = np.empty(k), np.empty(k)
    for j in range(0, n, 7):
        row = np.ascontiguousarray(D[j])
        a1 = eval_candidate(row, dn, ds, nn, R, w, False, P1, short)
        a2 = eval_candidate(row, dn, ds, nn, R, w, False, P2, np.full(n, -1, np.int32))
        assert _bits(a1) == _bits(a2)
        np.testing.assert_array_equal(_bits(P1), _bits(P2))
    assert (short == -1).all()  # never written


@pytest.mark.parametrize("mix", ["valid", "any"])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_float16_list_path_is_bitwise_the_float32_kernel(mix, weighted, seed):
    rng = np.random.default_rng(seed)
    n, k = int(rng.integers(LIST_MIN_K + 1, 300)), int(rng.integers(LIST_MIN_K, 20))
    cats = rng.integers(0, 6 if mix == "any" else 5, size=(n, n))
    bits = np.select([cats == 0, cats == 1, cats == 2, cats == 3, cats == 4],
                     [0, 0x8000, rng.integers(1, 0x400, (n, n)), rng.integers(0x400, 0x7000, (n, n)),
                      rng.integers(0x7000, 0x7C00, (n, n))],
                     rng.integers(0x8001, 0xFC00, (n, n))).astype(np.uint16)
    bits = np.triu(bits, 1)
    bits = np.ascontiguousarray(bits + bits.T)
    scale = [2.0 ** -15, 1.0, 16.0, 2.0 ** 40][seed]
    D32 = np.empty(bits.shape, np.float32)
    f16_to_f32(bits, *_kernel_factors(scale), D32)
    med = rng.choice(n, k, replace=False).astype(np.int64)
    M = np.ascontiguousarray(D32[:, med])
    dn, ds = np.empty(n, np.float32), np.empty(n, np.float32)
    nn, sn = np.empty(n, np.int32), np.empty(n, np.int32)
    assign_all(M, med, dn, ds, nn, sn)
    w = rng.uniform(0.0, 3.0, n) if weighted else np.empty(0)
    R = np.empty(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    m1, m2 = _kernel_factors(scale)
    t = np.empty(n, np.int16)
    f16_thresholds(ds, m1, m2, t)
    P1, P2 = np.empty(k), np.empty(k)
    buf = np.full(n, -1, np.int32)
    for j in range(n):
        with np.errstate(invalid="ignore"):
            a1 = eval_candidate(D32[j], dn, ds, nn, R, w, weighted, P1, None)
        a2 = eval_candidate_f16(bits[j].view(np.int16), t, m1, m2, dn, ds, nn, R, w, weighted, P2, buf)
        assert _bits(a1) == _bits(a2)
        np.testing.assert_array_equal(_bits(P1), _bits(P2))
