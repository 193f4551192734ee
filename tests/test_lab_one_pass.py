"""LAB reads its subsample rows in one pass (issue 17): the k subsamples are drawn up front,
their union's rows read once (in budget-sized pieces), and the result is the same whatever
the source, block size or budget (budget-sized groups of medoid steps)."""

from __future__ import annotations

import math

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids.sources.memory import NumpySource


def _D(n, seed=0):
    X = np.random.default_rng(seed).normal(size=(n, 3))
    return X, np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)).astype(np.float32)


def naive_lab(D, k, seed, weights=None):
    """LAB as documented, in plain numpy: k subsamples drawn up front from all n points."""
    n = D.shape[0]
    rng = np.random.default_rng(seed)
    m = min(n, 10 + math.ceil(math.sqrt(n)))
    samples = [np.sort(rng.choice(n, size=m, replace=False)) for _ in range(k)]
    w = np.ones(n) if weights is None else np.asarray(weights, dtype=np.float64)
    medoids = []
    for S in samples:
        cand = np.array([j not in medoids for j in S])
        DS = D[np.ix_(S, S)].astype(np.float64)
        if not medoids:
            vals = (w[S][None, :] * DS).sum(axis=1)
            vals[~cand] = np.inf
            pick = int(np.argmin(vals))
        else:
            dn = D[np.ix_(S, medoids)].min(axis=1).astype(np.float64)
            vals = (w[S][None, :] * np.maximum(dn[None, :] - DS, 0.0)).sum(axis=1)
            vals[~cand] = -np.inf
            pick = int(np.argmax(vals))
        medoids.append(int(S[pick]))
    return medoids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_lab_matches_the_plain_numpy_definition(seed):
    _, D = _D(150, seed)
    k = 7
    assert cm.lab(D, k, random_state=seed).tolist() == naive_lab(D, k, seed)
    w = np.random.default_rng(seed).uniform(0.5, 2.0, 150)
    assert cm.lab(D, k, random_state=seed, weights=w).tolist() == naive_lab(D, k, seed, w)


def test_lab_is_the_same_whatever_the_budget_groups_and_source(tmp_path):
    X, D = _D(300)
    k = 12
    ref = cm.lab(D, k, random_state=5)
    assert ref.tolist() == naive_lab(D, k, 5)
    z = cm.build_dissimilarity(X, tmp_path / "D.zarr", block_rows=16)
    h = cm.build_dissimilarity(X, tmp_path / "D.h5", block_rows=16)
    f = cm.from_features(X)
    np.testing.assert_array_equal(z.read_rows(0, 300), cm.from_features(X).read_rows(0, 300))
    Dz = z.read_rows(0, 300)
    ref = cm.lab(Dz, k, random_state=5)
    # a budget of 2**16 bytes holds |U|^2 float32 for |U| <= 90 only: several groups
    for src in (z, h, f, Dz):
        for opts in ({}, {"memory_limit": 2 ** 16}, {"block_rows": 3}):
            assert cm.lab(src, k, random_state=5, **opts).tolist() == ref.tolist(), (src, opts)


class Counting(NumpySource):
    def __init__(self, arr):
        super().__init__(arr)
        self.calls, self.rows = [], 0

    def _read_rows(self, start, stop):
        self.rows += stop - start
        return super()._read_rows(start, stop)

    def _take_rows(self, indices):
        self.calls.append(np.asarray(indices).copy())
        self.rows += len(indices)
        return super()._take_rows(indices)


def test_lab_reads_the_union_of_its_subsamples_once():
    _, D = _D(400)
    k = 8
    src = Counting(D)
    med = cm.lab(src, k, random_state=3)
    m = 10 + math.ceil(math.sqrt(400))
    assert src.rows <= k * m
    # one sorted pass: the calls read increasing, disjoint index ranges, no row twice
    allrows = np.concatenate(src.calls)
    assert np.all(np.diff(allrows) > 0)
    assert set(med.tolist()) <= set(allrows.tolist())


def test_lab_in_groups_reads_one_row_per_earlier_medoid():
    _, D = _D(400)
    k = 8
    src = Counting(D)
    med = cm.lab(src, k, random_state=3, memory_limit=2 ** 16)  # |U| <= 90 per group
    m = 10 + math.ceil(math.sqrt(400))
    assert med.tolist() == cm.lab(D, k, random_state=3).tolist()
    # every subsample row once per group it is in, plus each medoid of an earlier group once
    assert src.rows <= k * m + k
    medoid_reads = [c for c in src.calls if set(c.tolist()) <= set(med.tolist())]
    assert medoid_reads  # the carried distances came from medoid rows


def test_lab_resume_across_groups_is_bitwise(tmp_path, monkeypatch):
    import signal

    from chunked_medoids import checkpoint as ck
    from chunked_medoids._state import LabState

    _, D = _D(300)
    kw = dict(init="lab", random_state=4, memory_limit=2 ** 16, checkpoint_interval=0.0)
    full = cm.fasterpam(D, 9, **kw)
    orig = ck.Checkpoint.milestone
    calls = {"n": 0}

    def patched(self, state_fn, *a, **k):
        if isinstance(state_fn(), LabState):
            calls["n"] += 1
            if calls["n"] == 5:
                self.stop.request(signal.SIGTERM)
        return orig(self, state_fn, *a, **k)

    monkeypatch.setattr(ck.Checkpoint, "milestone", patched)
    path = tmp_path / "c.ckpt"
    with pytest.raises(ck.CheckpointInterrupt):
        cm.fasterpam(D, 9, checkpoint=path, **kw)
    monkeypatch.setattr(ck.Checkpoint, "milestone", orig)
    resumed = cm.fasterpam(D, 9, checkpoint=path, **kw)
    np.testing.assert_array_equal(resumed.medoids, full.medoids)
    assert resumed.loss == full.loss and resumed.loss_history == full.loss_history


def test_lab_with_k_close_to_n_still_returns_k_distinct_medoids():
    _, D = _D(30)
    for k in (25, 29, 30):
        med = cm.lab(D, k, random_state=0)
        assert len(set(med.tolist())) == k
