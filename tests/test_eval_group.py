"""Four candidates per sweep (``eval_quad`` / ``eval_group``) in the eager FasterPAM loops:
each candidate's ``P`` and ``acc`` are bitwise those of the one-row kernel, and the eager
loops that evaluate ahead (sequential ``fasterpam_block`` and the strided speculation
share) take exactly the swaps of a one-candidate-at-a-time reference walk written here."""

from __future__ import annotations

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from chunked_medoids._kernels.assign import assign_all, removal_loss
from chunked_medoids._kernels.swap import (
    GROUP,
    accept_swap,
    apply_swap,
    best_slot,
    eval_candidate,
    eval_group,
    fasterpam_block,
    first_improving_strided,
)


def _matrix(n, dtype, seed, ties):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, 2)) if ties else rng.random((n, 2)) * 10
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    if np.issubdtype(dtype, np.integer):
        D = np.rint(D * 3)
    return np.ascontiguousarray(D.astype(dtype)), rng


def _state(D, k, rng, weighted):
    n = D.shape[0]
    med = rng.choice(n, k, replace=False).astype(np.int64)
    M = np.ascontiguousarray(D[:, med])
    dn, ds = np.empty(n, D.dtype), np.empty(n, D.dtype)
    nn, sn = np.empty(n, np.int32), np.empty(n, np.int32)
    assign_all(M, med, dn, ds, nn, sn)
    is_medoid = np.zeros(n, np.bool_)
    is_medoid[med] = True
    w = rng.uniform(0.0, 3.0, n) if weighted else np.empty(0)
    R = np.empty(k)
    removal_loss(dn, ds, nn, w, weighted, R)
    td = float((w * dn).sum()) if weighted else float(np.sum(dn.astype(np.float64)))
    return dict(M=M, medoids=med, is_medoid=is_medoid, dn=dn, ds=ds, nn=nn, sn=sn, R=R, w=w, weighted=weighted,
                td=td)


def _bits(x):
    return np.asarray(x, np.float64).view(np.uint64)


dtypes = st.sampled_from([np.float32, np.float64, np.int32])


@settings(max_examples=80, deadline=None)
@given(st.integers(5, 200), st.integers(1, 20), st.integers(0, 2 ** 31), dtypes, st.booleans(), st.booleans(),
       st.integers(1, GROUP))
def test_group_terms_are_bitwise_the_one_row_kernel(n, k, seed, dtype, weighted, ties, ng):
    k = min(k, n - 1)
    D, rng = _matrix(n, dtype, seed, ties)
    c = _state(D, k, rng, weighted)
    visit = rng.permutation(n).astype(np.int64)
    gpos = np.sort(rng.choice(n, ng, replace=False)).astype(np.int64)
    PG, accs = np.full((GROUP, k), np.nan), np.full(GROUP, np.nan)
    eval_group(D, visit, gpos, ng, c["dn"], c["ds"], c["nn"], c["R"], c["w"], weighted, PG, accs,
               np.empty(n, np.int32))
    P = np.empty(k)
    for g in range(ng):
        acc = eval_candidate(D[visit[gpos[g]]], c["dn"], c["ds"], c["nn"], c["R"], c["w"], weighted, P, None)
        assert _bits(accs[g]) == _bits(acc)
        np.testing.assert_array_equal(_bits(PG[g]), _bits(P))


def _reference_walk(D, visit, cand, c, tol, n_positions):
    """Eager FasterPAM one candidate at a time (the definition), over ``n_positions``
    positions or until a full cycle without a swap; returns (since, swaps, consumed)."""
    n = D.shape[0]
    P = np.empty(c["R"].shape[0])
    since, nsw, consumed = 0, 0, n_positions
    for i in range(n_positions):
        j = cand[i]
        if not c["is_medoid"][j]:
            row = D[visit[i]]
            acc = eval_candidate(row, c["dn"], c["ds"], c["nn"], c["R"], c["w"], c["weighted"], P, None)
            s, dlt = best_slot(P, acc)
            if accept_swap(row, s, c["dn"], c["ds"], c["nn"], c["w"], c["weighted"], c["td"], tol, dlt):
                c["td"] = apply_swap(row, s, j, c["M"], c["medoids"], c["is_medoid"], c["dn"], c["ds"], c["nn"],
                                     c["sn"], c["R"], c["w"], c["weighted"])
                nsw += 1
                since = 0
        since += 1
        if since >= n:
            consumed = i + 1
            break
    return since, nsw, consumed


def _same_state(a, b):
    for key in ("M", "medoids", "is_medoid", "dn", "ds", "nn", "sn"):
        np.testing.assert_array_equal(a[key], b[key], err_msg=key)
    np.testing.assert_array_equal(_bits(a["R"]), _bits(b["R"]))
    assert _bits(a["td"]) == _bits(b["td"])


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 150), st.integers(1, 16), st.integers(0, 2 ** 31), dtypes, st.booleans(), st.booleans(),
       st.sampled_from([0.0, 1e-3]))
def test_fasterpam_block_takes_the_swaps_of_the_one_at_a_time_walk(n, k, seed, dtype, weighted, ties, tol):
    k = min(k, n - 1)
    D, rng = _matrix(n, dtype, seed, ties)
    ref = _state(D, k, np.random.default_rng(seed + 1), weighted)
    got = {key: (v.copy() if isinstance(v, np.ndarray) else v) for key, v in ref.items()}
    L = 3 * n
    cand = np.concatenate([rng.permutation(n) for _ in range(3)]).astype(np.int64)
    visit = cand.copy()
    since, nsw, consumed = _reference_walk(D, visit, cand, ref, tol, L)
    counters = np.zeros(2, np.int64)
    td_box = np.array([got["td"]])
    used = fasterpam_block(D, visit, cand, got["M"], got["medoids"], got["is_medoid"], got["dn"], got["ds"],
                           got["nn"], got["sn"], got["R"], got["w"], weighted, tol, np.empty(k),
                           np.empty(n, np.int32), counters, td_box)
    got["td"] = float(td_box[0])
    assert (used, int(counters[0]), int(counters[1])) == (consumed, since, nsw)
    _same_state(ref, got)


@settings(max_examples=60, deadline=None)
@given(st.integers(8, 150), st.integers(2, 16), st.integers(0, 2 ** 31), dtypes, st.booleans(),
       st.integers(1, 3), st.integers(0, 2))
def test_strided_share_finds_the_first_improving_own_position(n, k, seed, dtype, ties, step, me):
    k = min(k, n - 1)
    me = min(me, step - 1)
    D, rng = _matrix(n, dtype, seed, ties)
    c = _state(D, k, rng, False)
    cand = rng.permutation(n).astype(np.int64)
    visit = cand.copy()
    P = np.empty(k)
    want = -1
    for i in range(me, n, step):  # the definition: the own positions one at a time
        j = cand[i]
        if c["is_medoid"][j]:
            continue
        acc = eval_candidate(D[j], c["dn"], c["ds"], c["nn"], c["R"], c["w"], False, P, None)
        s, dlt = best_slot(P, acc)
        if accept_swap(D[j], s, c["dn"], c["ds"], c["nn"], c["w"], False, c["td"], 0.0, dlt):
            want = (i, s, dlt)
            break
    hits = np.full(step, n, np.int64)
    out = np.empty(2)
    p = first_improving_strided(D, visit, cand, me, n, step, c["is_medoid"], c["dn"], c["ds"], c["nn"], c["R"],
                                c["w"], False, c["td"], 0.0, np.empty(k), np.empty(n, np.int32), out, hits, me)
    if want == -1:
        assert p == -1 and hits[me] == n
    else:
        assert (p, int(out[0]), _bits(out[1])) == (want[0], want[1], _bits(want[2]))
        assert hits[me] == p
