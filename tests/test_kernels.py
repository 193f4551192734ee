"""The swap / assignment / BUILD kernels against naive numpy."""

import numpy as np
import pytest

from chunked_medoids._kernels.assign import assign_all, loss_sum, removal_loss, swap_update
from chunked_medoids._kernels.build import (
    argmin_per_cluster,
    build_gains,
    row_sums,
    update_nearest,
    within_cluster_sums,
)
from chunked_medoids._kernels.swap import (
    best_slot,
    eval_candidate,
    fasterpam_block,
    fastpam1_block,
    fastpam2_block,
    first_improving,
    pam_block,
    pam_delta,
)
from tests.conftest import random_symmetric

DTYPES = [np.float32, np.float64, np.int32, np.int64]


def _naive_caches(D, med):
    """Nearest / second slots with the tie rules: lowest slot; medoid in its own slot."""
    n, k = D.shape[0], len(med)
    Mt = D[:, med]
    nn = np.empty(n, np.int32)
    sn = np.full(n, -1, np.int32)
    for o in range(n):
        slots = list(range(k))
        own = [s for s in slots if med[s] == o]
        if own:
            first = own[0]
        else:
            first = min(slots, key=lambda s: (Mt[o, s], s))
        nn[o] = first
        rest = [s for s in slots if s != first]
        if rest:
            sn[o] = min(rest, key=lambda s: (Mt[o, s], s))
    dn = Mt[np.arange(n), nn]
    return Mt, nn, sn, dn


def _caches(D, med):
    Mt = np.ascontiguousarray(D[:, med])
    n = D.shape[0]
    dn = np.empty(n, D.dtype)
    ds = np.empty(n, D.dtype)
    nn = np.empty(n, np.int32)
    sn = np.empty(n, np.int32)
    assign_all(Mt, np.asarray(med, np.int64), dn, ds, nn, sn)
    return Mt, dn, ds, nn, sn


def _loss(D, med, w=None):
    dn = D[:, med].min(axis=1).astype(np.float64)
    return float(dn.sum() if w is None else (w * dn).sum())


@pytest.mark.parametrize("dtype", DTYPES)
def test_assign_all_matches_naive_with_ties(dtype, rng):
    D = random_symmetric(30, rng, dtype=dtype, integer=True, high=4)  # many ties
    D[5] = D[3]
    D[:, 5] = D[:, 3]
    D[3, 5] = D[5, 3] = 0  # point 5 duplicates point 3
    D[5, 5] = 0
    med = np.array([3, 17, 5, 9], np.int64)
    Mt, dn, ds, nn, sn = _caches(D, med)
    _, nn_ref, sn_ref, dn_ref = _naive_caches(D, med)
    np.testing.assert_array_equal(nn, nn_ref)
    np.testing.assert_array_equal(sn, sn_ref)
    np.testing.assert_array_equal(dn, dn_ref)
    np.testing.assert_array_equal(ds, Mt[np.arange(30), sn_ref])
    assert nn[5] == 2 and nn[3] == 0  # duplicates: each medoid in its own slot


def test_assign_all_k1_has_no_second(rng):
    D = random_symmetric(10, rng)
    _, dn, ds, nn, sn = _caches(D, [4])
    assert (nn == 0).all() and (sn == -1).all() and np.isinf(ds).all()
    np.testing.assert_array_equal(dn, D[:, 4])


@pytest.mark.parametrize("weighted", [False, True])
def test_removal_loss_and_loss_sum(weighted, rng):
    D = random_symmetric(40, rng, dtype=np.float64)
    med = [1, 7, 30]
    _, dn, ds, nn, _ = _caches(D, med)
    w = rng.random(40) if weighted else np.empty(0)
    R = np.empty(3)
    removal_loss(dn, ds, nn, w, weighted, R)
    ww = w if weighted else np.ones(40)
    for s in range(3):
        m = nn == s
        assert R[s] == pytest.approx(float((ww[m] * (ds[m] - dn[m])).sum()), rel=1e-12)
    assert loss_sum(dn, w, weighted) == pytest.approx(float((ww * dn).sum()), rel=1e-12)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("k", [1, 2, 5])
def test_candidate_kernels_give_exact_delta(dtype, weighted, k, rng):
    """FastPAM1 kernel and classic PAM delta == loss(after swap) - loss(before)."""
    n = 35
    integer = np.issubdtype(dtype, np.integer)
    D = random_symmetric(n, rng, dtype=dtype, integer=integer, high=20)
    med = rng.choice(n, k, replace=False)
    Mt, dn, ds, nn, sn = _caches(D, med)
    w = rng.integers(0, 4, n).astype(np.float64) if weighted else np.empty(0)
    ww = w if weighted else None
    R = np.empty(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    P = np.empty(k)
    buf = np.empty(n, np.int32)
    base = _loss(D, med, ww)
    for j in range(n):
        if j in med:
            continue
        acc = eval_candidate(np.ascontiguousarray(D[j]), dn, ds, nn, R, w, weighted, P, buf)
        for s in range(k):
            m2 = med.copy()
            m2[s] = j
            want = _loss(D, m2, ww) - base
            assert P[s] + acc == pytest.approx(want, abs=1e-9)
            assert pam_delta(np.ascontiguousarray(D[j]), s, dn, ds, nn, w, weighted) == pytest.approx(want, abs=1e-9)
            if integer:  # exact arithmetic: bitwise equal
                assert P[s] + acc == want
        s_best, d_best = best_slot(P, acc)
        assert s_best == int(np.argmin(P + acc)) and d_best == (P + acc).min()


def test_eval_candidate_equals_textbook_loop_bitwise(rng):
    """The branch-light kernel sums exactly the textbook terms in the same order."""
    n, k = 300, 7
    D = random_symmetric(n, rng, dtype=np.float32)
    med = rng.choice(n, k, replace=False)
    _, dn, ds, nn, _ = _caches(D, med)
    R = np.empty(k)
    removal_loss(dn, ds, nn, np.empty(0), False, R)
    P = np.empty(k)
    buf = np.empty(n, np.int32)
    for j in range(0, n, 17):
        row = D[j]
        acc = eval_candidate(row, dn, ds, nn, R, np.empty(0), False, P, buf)
        Pt = R.copy()
        acct = 0.0
        for o in range(n):
            d, a, b = float(row[o]), float(dn[o]), float(ds[o])
            if row[o] < dn[o]:
                acct += d - a
                Pt[nn[o]] += a - b
            elif row[o] < ds[o]:
                Pt[nn[o]] += d - b
        assert acc == acct
        np.testing.assert_array_equal(P, Pt)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("k", [1, 2, 4])
def test_swap_update_matches_full_recompute(dtype, k, rng):
    n = 50
    D = random_symmetric(n, rng, dtype=dtype, integer=np.issubdtype(dtype, np.integer), high=30)
    med = rng.choice(n, k, replace=False).astype(np.int64)
    Mt, dn, ds, nn, sn = _caches(D, med)
    is_med = np.zeros(n, bool)
    is_med[med] = True
    for _step in range(6):
        j = int(rng.choice(np.flatnonzero(~is_med)))
        b = int(rng.integers(k))
        swap_update(np.ascontiguousarray(D[j]), b, j, Mt, med, is_med, dn, ds, nn, sn)
        assert med[b] == j and is_med[j] and is_med.sum() == k
        np.testing.assert_array_equal(Mt, D[:, med])
        ref = D[:, med]
        np.testing.assert_array_equal(dn, ref.min(axis=1))
        np.testing.assert_array_equal(ref[np.arange(n), nn], dn)
        assert nn[j] == b
        if k > 1:
            second = np.sort(ref, axis=1)[:, 1]
            np.testing.assert_array_equal(ds, second)
            assert (sn != nn).all()
            np.testing.assert_array_equal(ref[np.arange(n), sn], ds)


def _pass_state(D, med, weighted, rng):
    n = D.shape[0]
    k = len(med)
    Mt, dn, ds, nn, sn = _caches(D, med)
    w = rng.random(n) if weighted else np.empty(0)
    R = np.empty(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    is_med = np.zeros(n, bool)
    is_med[med] = True
    return Mt, dn, ds, nn, sn, w, R, is_med


@pytest.mark.parametrize("weighted", [False, True])
def test_block_kernels_match_naive_best_swap(weighted, rng):
    n, k = 60, 4
    D = random_symmetric(n, rng, dtype=np.int64, integer=True, high=50)
    med = rng.choice(n, k, replace=False)
    Mt, dn, ds, nn, sn, w, R, is_med = _pass_state(D, med, weighted, rng)
    ww = w if weighted else None
    base = _loss(D, med, ww)
    deltas = np.full((n, k), np.inf)
    for j in range(n):
        if not is_med[j]:
            for s in range(k):
                m2 = med.copy()
                m2[s] = j
                deltas[j, s] = _loss(D, m2, ww) - base
    flat = int(np.argmin(deltas))  # earliest candidate, then lowest slot
    want = (deltas.flat[flat], flat // k, flat % k)
    for start, stop in [(0, n), (0, 25), (25, 60)]:
        blk = np.ascontiguousarray(D[start:stop])
        sub = deltas[start:stop]
        f = int(np.argmin(sub))
        exp = (sub.flat[f], start + f // k, f % k)
        got1 = fastpam1_block(blk, start, is_med, dn, ds, nn, R, w, weighted)
        got0 = pam_block(blk, start, is_med, dn, ds, nn, k, w, weighted)
        for got in (got1, got0):
            assert got[1:] == exp[1:]
            assert got[0] == pytest.approx(exp[0], abs=1e-9)
        bd = np.empty(k)
        bc = np.empty(k, np.int64)
        fastpam2_block(blk, start, is_med, dn, ds, nn, R, w, weighted, bd, bc)
        np.testing.assert_array_equal(bc, start + np.argmin(sub, axis=0))
        np.testing.assert_allclose(bd, sub.min(axis=0), atol=1e-9)
    assert fastpam1_block(np.ascontiguousarray(D), 0, is_med, dn, ds, nn, R, w, weighted)[1:] == want[1:]


def test_fasterpam_block_and_first_improving(rng):
    """Sequential block kernel == speculative pieces (first_improving + apply) bitwise."""
    from chunked_medoids._kernels.swap import apply_swap

    n, k = 80, 3
    D = random_symmetric(n, rng, dtype=np.float32)
    med = np.array([0, 1, 2], np.int64)
    st1 = list(_pass_state(D, med.copy(), False, rng))
    st2 = [a.copy() for a in st1]
    med1, med2 = med.copy(), med.copy()
    visit = np.arange(n, dtype=np.int64)
    cand = visit.copy()
    P = np.empty(k)
    buf = np.empty(n, np.int32)
    Mt, dn, ds, nn, sn, w, R, is_med = st1
    counters = np.array([0, 0], np.int64)
    td = np.array([loss_sum(dn, w, False)])
    consumed = fasterpam_block(np.ascontiguousarray(D), visit, cand, Mt, med1, is_med, dn, ds, nn, sn,
                               R, w, False, 0.0, P, buf, counters, td)
    assert consumed == n and counters[1] > 0
    # speculative emulation with tiny batches
    Mt2, dn2, ds2, nn2, sn2, w2, R2, is_med2 = st2
    td2 = loss_sum(dn2, w2, False)
    out = np.empty(2)
    i, nsw = 0, 0
    while i < n:
        p = first_improving(np.ascontiguousarray(D), visit, cand, i, min(n, i + 5), is_med2, dn2, ds2,
                            nn2, R2, w2, False, td2, 0.0, P, buf, out)
        if p < 0:
            i = min(n, i + 5)
            continue
        td2 = apply_swap(np.ascontiguousarray(D[p]), int(out[0]), p, Mt2, med2, is_med2, dn2, ds2,
                         nn2, sn2, R2, w2, False)
        nsw += 1
        i = p + 1
    np.testing.assert_array_equal(med1, med2)
    assert td[0] == td2 and counters[1] == nsw
    np.testing.assert_array_equal(dn, dn2)


@pytest.mark.parametrize("weighted", [False, True])
def test_build_kernels(weighted, rng):
    n = 45
    D = random_symmetric(n, rng, dtype=np.float32)
    w = rng.random(n) if weighted else np.empty(0)
    ww = w if weighted else np.ones(n)
    out = np.empty(n)
    row_sums(D, w, weighted, out)
    np.testing.assert_allclose(out, (D.astype(np.float64) * ww).sum(axis=1), rtol=1e-12)
    dn = D[:, 3].copy()
    update_nearest(np.ascontiguousarray(D[10]), dn)
    np.testing.assert_array_equal(dn, np.minimum(D[:, 3], D[:, 10]))
    build_gains(D, dn, w, weighted, out)
    want = (np.maximum(dn[None, :].astype(np.float64) - D, 0) * ww).sum(axis=1)
    np.testing.assert_allclose(out, want, rtol=1e-12)
    labels = rng.integers(0, 3, n).astype(np.int32)
    within_cluster_sums(D[5:20], 5, labels, w, weighted, out[:15])
    want = [(D[j].astype(np.float64) * ww * (labels == labels[j])).sum() for j in range(5, 20)]
    np.testing.assert_allclose(out[:15], want, rtol=1e-12)
    bv = np.full(3, np.inf)
    bi = np.full(3, -1, np.int64)
    sums = np.array([3.0, 1.0, 1.0, 2.0])
    argmin_per_cluster(sums, 0, np.array([0, 1, 1, 0], np.int32), 3, bv, bi)
    assert bi.tolist() == [3, 1, -1] and bv[:2].tolist() == [2.0, 1.0]
