"""The fused ``apply_swap`` (one pass: swap_update + removal_loss + loss_sum) against the
three-pass definition it replaced (still in ``assign.py``: ``swap_update_three_passes``): bitwise equal in
every output (M, medoids, is_medoid, dn, ds, nn, sn, R, TD) on heavy-tie matrices."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numba import njit

from chunked_medoids._kernels.assign import (
    SMALL_K,
    _big_of,
    _second_excluding,
    _second_fast,
    assign_all,
    removal_loss,
    swap_update_losses,
    swap_update_three_passes,
)
from chunked_medoids._kernels.swap import apply_swap

# ---- reference: the three-pass definition (swap_update, removal_loss, loss_sum) -------------
ref_apply_swap = swap_update_three_passes


# ---- helpers -------------------------------------------------------------------------------------

DTYPES = [np.float32, np.float64, np.int32, np.int64]


def _values(dtype, special):
    """Small value set (heavy ties); with ``special``: -0.0 / inf for floats, the integer max
    (the kernels' "no second medoid" sentinel) for integers."""
    vals = [0, 1, 2, 3]
    if special:
        if np.issubdtype(dtype, np.floating):
            vals += [-0.0, np.inf, 0.5]
        else:
            vals += [int(np.iinfo(dtype).max)]
    return np.array(vals, dtype=dtype)


def _state(D, med, w, weighted):
    n, k = D.shape[0], len(med)
    medoids = np.asarray(med, dtype=np.int64).copy()
    M = np.ascontiguousarray(D[:, medoids])
    is_medoid = np.zeros(n, dtype=np.bool_)
    is_medoid[medoids] = True
    dn = np.empty(n, D.dtype)
    ds = np.empty(n, D.dtype)
    nn = np.empty(n, np.int32)
    sn = np.empty(n, np.int32)
    assign_all(M, medoids, dn, ds, nn, sn)
    R = np.zeros(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    return [M, medoids, is_medoid, dn, ds, nn, sn, R]


def _bits(x):
    return np.asarray(x).dtype.str, np.asarray(x).tobytes()


def _run_both(D, med, swaps, w, weighted, fn=apply_swap):
    ref = _state(D, med, w, weighted)
    new = [a.copy() for a in ref]
    for b, j in swaps:
        row = np.ascontiguousarray(D[:, j])  # row[o] = D[o, j]: the new column of M
        t_ref = ref_apply_swap(row, b, j, *ref, w, weighted)
        t_new = fn(row.copy(), b, j, *new, w, weighted)
        assert _bits(np.float64(t_new)) == _bits(np.float64(t_ref))
        for name, a, c in zip(("M", "medoids", "is_medoid", "dn", "ds", "nn", "sn", "R"), ref, new):
            assert _bits(c) == _bits(a), name
    return ref


@st.composite
def cases(draw, kmin=1, kmax=6, nmax=24):
    dtype = draw(st.sampled_from(DTYPES))
    k = draw(st.integers(kmin, kmax))
    n = draw(st.integers(k + 1, max(k + 1, nmax)))
    special = draw(st.booleans())
    vals = _values(dtype, special)
    idx = draw(st.lists(st.integers(0, len(vals) - 1), min_size=n * n, max_size=n * n))
    D = vals[np.array(idx)].reshape(n, n)
    if draw(st.booleans()):  # symmetric with a zero diagonal, like a real dissimilarity
        D = np.triu(D, 1)
        D = D + D.T
    if draw(st.booleans()):  # duplicate points: copy a row / column pair
        a, c = draw(st.integers(0, n - 1)), draw(st.integers(0, n - 1))
        D[c, :] = D[a, :]
        D[:, c] = D[:, a]
    D = np.ascontiguousarray(D.astype(dtype))
    perm = draw(st.permutations(list(range(n))))
    med = list(perm[:k])
    weighted = draw(st.booleans())
    w = (np.array(draw(st.lists(st.sampled_from([0.5, 1.0, 2.5, 1e-3, 3.0]), min_size=n, max_size=n)))
         if weighted else np.empty(0))
    # a random swap sequence: slot b <- a current non-medoid j
    swaps = []
    cur = list(med)
    for _ in range(draw(st.integers(1, 6))):
        free = [p for p in range(n) if p not in cur]
        b = draw(st.integers(0, k - 1))
        j = draw(st.sampled_from(free))
        cur[b] = j
        swaps.append((b, j))
    return D, med, swaps, w, weighted


@settings(deadline=None, max_examples=300)
@given(cases())
def test_apply_swap_bitwise_small_k(case):
    _run_both(*case)


@settings(deadline=None, max_examples=60)
@given(cases(kmin=SMALL_K + 1, kmax=SMALL_K + 12, nmax=SMALL_K + 20))
def test_apply_swap_bitwise_large_k(case):
    """k above SMALL_K: the vectorised rescan (_second_fast) inside the fused pass."""
    _run_both(*case)


@pytest.mark.parametrize("k", [1, 2, 3, SMALL_K, SMALL_K + 1, 40])
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("weighted", [False, True])
def test_apply_swap_bitwise_random_walk(k, dtype, weighted):
    """Longer random swap sequences on a larger heavy-tie matrix (both loops, both rescans)."""
    rng = np.random.default_rng(k * 7 + weighted)
    n = 120
    D = rng.integers(0, 6, size=(n, n)).astype(dtype)
    D = np.triu(D, 1)
    D = np.ascontiguousarray(D + D.T)
    D[5] = D[9]
    D[:, 5] = D[:, 9]
    w = rng.random(n) + 0.25 if weighted else np.empty(0)
    med = list(rng.choice(n, k, replace=False))
    cur, swaps = list(med), []
    for _ in range(40):
        b = int(rng.integers(k))
        j = int(rng.choice([p for p in range(n) if p not in cur]))
        cur[b] = j
        swaps.append((b, j))
    _run_both(D, med, swaps, w, weighted)
    _run_both(D, med, swaps, w, weighted, fn=swap_update_losses)


@njit(cache=True)
def _second_both(M, o, exclude):
    ds1 = np.empty(M.shape[0], M.dtype)
    sn1 = np.empty(M.shape[0], np.int32)
    ds2 = ds1.copy()
    sn2 = sn1.copy()
    _second_excluding(M, o, exclude, ds1, sn1)
    _second_fast(M, o, exclude, ds2, sn2)
    return ds1[o], sn1[o], ds2[o], sn2[o]


@settings(deadline=None, max_examples=300)
@given(st.sampled_from(DTYPES), st.integers(2, 70), st.data())
def test_second_fast_is_second_excluding(dtype, k, data):
    """Rows of ties, signed zeros, inf / the integer sentinel (also a row of nothing but
    the sentinel): same slot and the same bits as the plain scan, for every exclusion."""
    vals = _values(dtype, True)
    idx = data.draw(st.lists(st.integers(0, len(vals) - 1), min_size=k, max_size=k))
    row = vals[np.array(idx)]
    if data.draw(st.booleans()):
        row[:] = _big_of(row[0]) if np.issubdtype(dtype, np.integer) else np.inf
    M = np.ascontiguousarray(np.stack([row, row[::-1]]))
    for o in range(2):
        for ex in range(k):
            a, b, c, d = _second_both(M, o, ex)
            assert _bits(c) == _bits(a) and b == d, (o, ex)
