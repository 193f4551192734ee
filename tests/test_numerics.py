"""Rounding noise must never fake an improvement (duplicates made the eager loop cycle).

With exact duplicate points a swap between a medoid and its duplicate has ΔTD = 0
mathematically, but the float64 sums R[s] + Σ(dn − ds) leave a residue of either sign.
Before the guard, FasterPAM swapped duplicates back and forth until ``max_iter``.
"""

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids._kernels.swap import NOISE, accept_swap, swapped_loss
from chunked_medoids.algorithms._common import SwapCaches


def _dup_matrix(n=400, seed=0):
    rng = np.random.default_rng(seed)
    base = rng.integers(0, 6, size=(n // 4, 3)).astype(np.float64)   # few distinct colours
    X = base[rng.integers(0, base.shape[0], size=n)]                  # many exact duplicates
    diff = X[:, None, :] - X[None, :, :]
    D = np.sqrt((diff ** 2).sum(-1))                                  # irrational float64 values
    np.fill_diagonal(D, 0)
    return D


def _loss(D, medoids):
    return D[:, medoids].min(axis=1).sum()


@pytest.mark.parametrize("method", ["fasterpam", "fastpam1", "fastpam2", "pam"])
def test_duplicates_converge_to_a_local_optimum(method):
    D = _dup_matrix()
    init = np.random.default_rng(1).choice(D.shape[0], 6, replace=False)
    res = getattr(cm, method)(D, 6, init=init, max_iter=60)
    assert res.converged and res.n_iter < 60
    # a local optimum: no single swap improves the (recomputed) loss beyond the noise band
    td = _loss(D, res.medoids)
    assert res.loss == pytest.approx(td, rel=1e-12)
    for s in range(6):
        for j in np.unique(D, axis=0, return_index=True)[1]:
            if j in res.medoids:
                continue
            trial = res.medoids.copy()
            trial[s] = j
            assert _loss(D, trial) >= td * (1 - 1e-9)


def test_duplicate_swap_is_rejected_and_real_gains_accepted():
    D = _dup_matrix(80)
    medoids = np.array([0, 5, 9])
    st = SwapCaches(cm.open_dissimilarity(D), medoids)
    dup = next(j for j in range(80) if j not in medoids and np.array_equal(D[j], D[medoids[1]]))
    row = D[dup]
    assert swapped_loss(row, 1, st.dn, st.ds, st.nn, st.w, st.weighted) == st.td
    # whatever tiny residue the fast kernel reports, the swap is refused
    for fake in (-1e-13 * st.td, -NOISE * st.td / 2):
        assert not accept_swap(row, 1, st.dn, st.ds, st.nn, st.w, st.weighted, st.td, 0.0, fake)
    # a genuine improvement is accepted, whether clearly outside the band or confirmed inside it
    gains = [(_loss(D, np.r_[medoids[:s], [j], medoids[s + 1:]]) - st.td, s, j)
             for s in range(3) for j in range(80) if j not in medoids]
    best, s, j = min(gains)
    assert best < 0
    assert accept_swap(D[j], s, st.dn, st.ds, st.nn, st.w, st.weighted, st.td, 0.0, best)
    assert accept_swap(D[j], s, st.dn, st.ds, st.nn, st.w, st.weighted, st.td, 0.0, -NOISE * st.td / 2)
    # tol raises the bar: an improvement smaller than tol·TD is refused
    assert not accept_swap(D[j], s, st.dn, st.ds, st.nn, st.w, st.weighted, st.td, -best / st.td * 2, best)
    # nothing improves a zero loss
    assert not accept_swap(D[j], s, st.dn, st.ds, st.nn, st.w, st.weighted, 0.0, 0.0, -1.0)
