"""Property tests (hypothesis) of the exact PAM family."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
from tests._registries import TD_SWAP_METHODS


@st.composite
def integer_problem(draw, max_n=24):
    n = draw(st.integers(2, max_n))
    k = draw(st.integers(1, min(n, 5)))
    high = draw(st.sampled_from([3, 10, 1000]))  # small ranges force many ties
    seed = draw(st.integers(0, 2**32 - 1))
    rng = np.random.default_rng(seed)
    a = np.triu(rng.integers(0, high, size=(n, n)), 1)
    D = (a + a.T).astype(draw(st.sampled_from([np.int32, np.int64])))
    init = rng.choice(n, k, replace=False)
    return D, k, init


@settings(deadline=None, max_examples=60)
@given(integer_problem())
def test_pam_equals_fastpam1_on_integer_matrices(problem):
    D, k, init = problem
    a = cm.pam(D, k, init=init)
    b = cm.fastpam1(D, k, init=init, block_rows=3)
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.n_iter == b.n_iter and a.n_swap == b.n_swap
    assert a.loss_history == b.loss_history


@settings(deadline=None, max_examples=25)
@given(integer_problem(max_n=30), st.sampled_from(TD_SWAP_METHODS))
def test_invariants(problem, name):
    D, k, init = problem
    r = getattr(cm, name)(D, k, init=init)
    M = D[:, r.medoids]
    assert r.medoids.dtype == np.int64 and r.labels.dtype == np.int32
    assert len(set(r.medoids.tolist())) == k
    # labels: argmin over medoids, lowest slot on ties, each medoid in its own slot
    want = np.argmin(M, axis=1)
    want[r.medoids] = np.arange(k)
    np.testing.assert_array_equal(r.labels, want)
    assert r.loss == float(M.min(axis=1).sum())
    h = r.loss_history
    assert all(b <= a for a, b in zip(h, h[1:]))
    assert h[-1] == r.loss and h[0] == float(D[:, init].min(axis=1).sum())


@settings(deadline=None, max_examples=20)
@given(integer_problem(max_n=20), st.integers(1, 4))
def test_fasterpam_is_a_local_optimum_and_weights_scale(problem, scale):
    D, k, init = problem
    r = cm.fasterpam(D, k, init=init)
    if r.n_iter < 100:  # converged: no single swap improves the loss
        base = D[:, r.medoids].min(axis=1).sum()
        for j in range(D.shape[0]):
            if j in r.medoids:
                continue
            for s in range(k):
                m2 = r.medoids.copy()
                m2[s] = j
                assert D[:, m2].min(axis=1).sum() >= base
    # uniform weights change the loss scale, not the result
    rw = cm.fasterpam(D, k, init=init, weights=np.full(D.shape[0], scale))
    np.testing.assert_array_equal(rw.medoids, r.medoids)
    assert rw.loss == pytest.approx(scale * r.loss)
