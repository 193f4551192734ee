"""LargeCLARA's exact refinement (step 4): exact deduplication of the feature rows into
counts, then FasterPAM on the weighted distinct rows -- the same loss as on all points."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chunked_medoids import InvalidParameterError
from chunked_medoids.algorithms import clara_large as cl
from chunked_medoids.algorithms.clara_large import largeclara
from chunked_medoids.metrics import resolve_metric


def pixels(n, rng, levels=9, d=3):
    """Integer-valued rows with many repeats (like 8-bit colours): at most levels**d distinct."""
    centre = rng.integers(0, levels, size=(5, d))
    X = centre[rng.integers(0, 5, size=n)] + rng.integers(-2, 3, size=(n, d))
    return np.clip(X, 0, levels - 1).astype(np.float64)


SMALL = dict(sample_size=300, init_size=80, polish_iter=1, random_state=3)


def full_loss(X, medoids, metric="euclidean"):
    D = resolve_metric(metric).pairwise_new(X, X[medoids])
    return math.fsum(D.min(axis=1).tolist())


# -- deduplication ------------------------------------------------------------------------------
def test_distinct_rows_are_exact_and_independent_of_the_blocks(rng):
    X = pixels(3000, rng)
    X[7] = [0.0, -0.0, 1.0]
    X[8] = [0.0, 0.0, 1.0]  # equal as numbers, different bytes: kept apart (any metric is safe)

    class Feats:
        def read(self, a, b):
            return X[a:b]

    ref = None
    for bounds in ([0, 3000], [0, 1, 1000, 2999, 3000], list(range(0, 3001, 250))):
        parts = [cl._distinct_task((a, b), {"features": Feats(), "cap": 10**6}) for a, b in zip(bounds, bounds[1:])]
        keys, first, counts = cl._merge_distinct(parts)
        U = keys.view(np.float64).reshape(-1, 3)
        if ref is None:
            ref = (keys, first, counts)
        else:  # any split of the rows into blocks: the same keys, first indices and counts
            for a, b in zip(ref, (keys, first, counts)):
                np.testing.assert_array_equal(a, b)
        # every row is one distinct row, counted once; first is the lowest index holding it
        rowkeys = cl._row_keys(X)
        pos = {key.tobytes(): j for j, key in enumerate(keys)}
        inv = np.array([pos[key.tobytes()] for key in rowkeys])
        np.testing.assert_array_equal(np.bincount(inv, minlength=keys.shape[0]), counts)
        np.testing.assert_array_equal(U[inv].view(np.uint64), X.view(np.uint64))
        for j in range(keys.shape[0]):
            assert first[j] == np.flatnonzero(inv == j)[0]
    assert inv[7] != inv[8]
    # a block with more distinct rows than the cap is refused (the cost bound)
    assert cl._distinct_task((0, 3000), {"features": Feats(), "cap": 10}) is None


def test_weighted_distinct_rows_have_exactly_the_full_data_loss(rng):
    """With integer distances (manhattan on integer rows) every term is exact: Σ_j count_j·d_j
    over the distinct rows equals Σ_o d_o over all points bit for bit."""
    X = pixels(4000, rng)
    keys, first, counts = cl._merge_distinct([cl._distinct_task((0, 4000), {"features": _Arr(X), "cap": 10**6})])
    U = keys.view(np.float64).reshape(-1, 3)
    for medoids in (np.array([0, 5, 9]), rng.choice(4000, size=6, replace=False)):
        dU = resolve_metric("manhattan").pairwise_new(U, X[medoids]).min(axis=1)
        assert math.fsum((counts * dU).tolist()) == full_loss(X, medoids, "manhattan")


class _Arr:
    def __init__(self, X):
        self.X = X

    def read(self, a, b):
        return self.X[a:b]


# -- the refinement in largeclara --------------------------------------------------------------
def test_refinement_is_exact_local_search_on_all_points(rng):
    X = pixels(6000, rng)
    m = np.unique(X, axis=0).shape[0]
    r = largeclara(X, 6, metric="manhattan", refine_passes=50, **SMALL)
    off = largeclara(X, 6, metric="manhattan", refine_distinct=0, **SMALL)
    assert r.distinct_rows == m and r.refine_passes >= 1 and r.refine_swaps > 0  # it really ran
    assert r.loss == full_loss(X, r.medoids, "manhattan") < off.loss
    assert r.loss_history[:-1] == off.loss_history and r.loss_history[-1] == r.loss
    assert r.n_swap == off.n_swap + r.refine_swaps
    # a FasterPAM local optimum of the full data: no swap with any row improves the loss
    U, first = np.unique(X, axis=0, return_index=True)
    for s in range(6):
        for j in first:
            if j in r.medoids:
                continue
            trial = r.medoids.copy()
            trial[s] = j
            assert full_loss(X, trial, "manhattan") >= r.loss
    # each medoid is the lowest index of its row's value
    for mm in r.medoids:
        assert mm == np.flatnonzero((X == X[mm]).all(axis=1))[0]


def test_refinement_off_or_skipped_is_the_previous_behaviour(rng):
    X = pixels(5000, rng)
    m = np.unique(X, axis=0).shape[0]
    off = largeclara(X, 5, refine_distinct=0, **SMALL)
    assert off.distinct_rows == 0 and off.refine_passes == 0 and off.refine_swaps == 0
    w = np.ones(5000)
    for r in (largeclara(X, 5, refine_distinct=m - 1, **SMALL),  # more distinct rows than the bound
              largeclara(X, 5, weights=w, **SMALL)):  # weighted input: not refined
        assert r.distinct_rows == 0 and r.refine_passes == 0
        np.testing.assert_array_equal(r.medoids, off.medoids)
        np.testing.assert_array_equal(r.labels, off.labels)
        assert r.loss == off.loss and r.loss_history == off.loss_history
    on = largeclara(X, 5, refine_distinct=m, **SMALL)
    assert on.distinct_rows == m and on.loss <= off.loss


def test_refinement_skips_the_full_pass_when_the_gathered_rows_exceed_the_bound(rng, monkeypatch):
    X = pixels(5000, rng)
    called = []
    real = cl._Passes.distinct
    monkeypatch.setattr(cl._Passes, "distinct", lambda self, cap: called.append(cap) or real(self, cap))
    r = largeclara(X, 5, refine_distinct=20, **SMALL)
    assert r.distinct_rows == 0 and called == []


def test_refined_result_is_the_same_for_any_scheduler_threads_and_blocks(local_cluster, rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    X = pixels(6000, rng)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(512, 3), dtype="float64")
    z[:] = X
    ref = largeclara(X, 6, num_workers=1, **SMALL)
    assert ref.refine_swaps > 0
    for r in (largeclara(X, 6, num_workers=2, **SMALL),
              largeclara(X, 6, num_workers=2, memory_limit="4MiB", **SMALL),
              largeclara(str(tmp_path / "x.zarr"), 6, num_workers=2, **SMALL),
              largeclara(str(tmp_path / "x.zarr"), 6, client=local_cluster, **SMALL)):
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        np.testing.assert_array_equal(r.labels, ref.labels)
        assert r.loss == ref.loss and r.refine_swaps == ref.refine_swaps and r.distinct_rows == ref.distinct_rows


def test_bad_refinement_parameters_are_refused(rng):
    X = pixels(500, rng)
    with pytest.raises(InvalidParameterError, match="refine_distinct"):
        largeclara(X, 3, refine_distinct=-1)
    with pytest.raises(InvalidParameterError, match="refine_passes"):
        largeclara(X, 3, refine_passes=0)
    D = resolve_metric("euclidean").pairwise_new(X, X)
    with pytest.raises(InvalidParameterError, match="refine_distinct"):
        largeclara(D, 3, precomputed=True, refine_distinct=10)
