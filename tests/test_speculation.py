"""The interleaved speculative FasterPAM walk (``algorithms/fasterpam.py`` ``_Speculator``).

Thread t of T takes the positions i + t, i + t + T, ... of a batch and publishes its first
improving position in a shared array (``first_improving_strided``); whatever the thread
count, block size or the order in which the threads happen to run, the walk must be bitwise
the sequential one.
"""

import threading

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
import chunked_medoids.algorithms.fasterpam as F
from chunked_medoids import open_dissimilarity
from chunked_medoids._kernels.simd import relaxed_roundtrip
from chunked_medoids._kernels.swap import first_improving, first_improving_strided
from chunked_medoids.algorithms._common import SwapCaches


def _problem(seed, n, k, ties):
    rng = np.random.default_rng(seed)
    X = rng.integers(0, 4, (n, 2)) if ties else rng.random((n, 2))  # integer grid: many exact ties
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)).astype(np.float32)
    return D, rng.choice(n, k, replace=False), rng


def _same(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.n_iter == b.n_iter and a.n_swap == b.n_swap
    assert a.loss_history == b.loss_history


def test_relaxed_accessors_roundtrip():
    a = np.zeros(4, dtype=np.int64)
    assert relaxed_roundtrip(a, 2, -7) == -7
    assert a.tolist() == [0, 0, -7, 0]
    assert relaxed_roundtrip(a, 3, 2**62) == 2**62


@settings(deadline=None, max_examples=60)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(8, 90), k=st.integers(2, 6), T=st.integers(1, 4),
       ties=st.booleans(), tol=st.sampled_from([0.0, 1e-3]), data=st.data())
def test_strided_threads_find_the_sequential_first_improving(seed, n, k, T, ties, tol, data):
    """T interleaved shares run one after another in any order (so later ones see earlier
    hits and stop early): min(hits) is first_improving's position, with its slot and ΔTD."""
    D, init, rng = _problem(seed, n, min(k, n - 1), ties)
    c = SwapCaches(open_dissimilarity(D), init)
    lo = data.draw(st.integers(0, n - 1))
    hi = data.draw(st.integers(lo + 1, n))
    cand = rng.permutation(n).astype(np.int64)
    visit = cand.copy()
    P = np.empty(c.k)
    buf = np.empty(n, dtype=np.int32)
    out = np.zeros(2)
    ref = first_improving(D, visit, cand, lo, hi, c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w, c.weighted, c.td, tol,
                          P, buf, out)
    ref_out = out.copy()
    hits = np.full(T, hi, dtype=np.int64)
    outs = [np.zeros(2) for _ in range(T)]
    for t in data.draw(st.permutations(range(T))):
        r = first_improving_strided(D, visit, cand, lo + t, hi, T, c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w,
                                    c.weighted, c.td, tol, P, buf, outs[t], hits, t)
        assert r == (hits[t] if hits[t] < hi else -1)
    p = int(hits.min())
    if ref < 0:
        assert p == hi
    else:
        assert p == ref
        t = int(np.argmin(hits))
        assert outs[t].tobytes() == ref_out.tobytes()  # slot and ΔTD bitwise


def test_strided_stops_beyond_a_published_hit():
    D, init, _ = _problem(5, 60, 3, False)
    c = SwapCaches(open_dissimilarity(D), init)
    cand = np.arange(60, dtype=np.int64)
    hits = np.array([-1, 60], dtype=np.int64)  # "thread 0 found position -1": nothing left to do
    r = first_improving_strided(D, cand, cand, 1, 60, 2, c.is_medoid, c.dn, c.ds, c.nn, c.R, c.w, c.weighted, c.td,
                                0.0, np.empty(3), np.empty(60, np.int32), np.zeros(2), hits, 1)
    assert r == -1 and hits[1] == 60


@settings(deadline=None, max_examples=20)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(30, 260), k=st.integers(2, 9),
       nw=st.sampled_from([2, 3]), block_rows=st.sampled_from([None, 7, 50]),
       order=st.sampled_from(["natural", "shuffle"]), ties=st.booleans())
def test_identical_for_thread_counts_and_block_sizes(seed, n, k, nw, block_rows, order, ties):
    D, init, _ = _problem(seed, n, k, ties)
    seq = cm.fasterpam(D, k, init=init, order=order, random_state=1, num_workers=1)
    _same(seq, cm.fasterpam(D, k, init=init, order=order, random_state=1, num_workers=nw, block_rows=block_rows,
                            speculative=True))


def test_helpers_find_swaps_and_match_contiguous_scheme(monkeypatch):
    """On a swap-dense walk the interleaved path is taken, helper threads report improving
    candidates, and the result equals the sequential walk and the contiguous scheme."""
    D, init, _ = _problem(3, 700, 8, False)
    seq = cm.fasterpam(D, 8, init=init, num_workers=1)
    found = []  # (thread whose hit came first, whether there was a hit) per batch
    orig = F._Speculator._batch

    def spy(self, block, visit, cand, i, hi, *a):
        orig(self, block, visit, cand, i, hi, *a)
        found.append((int(np.argmin(self.hits)), int(self.hits.min()) < hi))

    monkeypatch.setattr(F._Speculator, "_batch", spy)
    for nw in (2, 3):
        found.clear()
        _same(seq, cm.fasterpam(D, 8, init=init, num_workers=nw, speculative=True))
        assert any(t >= 1 and hit for t, hit in found)  # a helper's hit was the one swapped
        assert any(t == 0 and hit for t, hit in found)
    monkeypatch.setattr(F._Speculator, "interleave", False)
    found.clear()
    _same(seq, cm.fasterpam(D, 8, init=init, num_workers=2, speculative=True))
    assert not found  # contiguous sub-ranges: the interleaved batches are not used


@pytest.mark.parametrize("exc", [RuntimeError, KeyboardInterrupt])
def test_error_in_calling_thread_stops_helpers_and_propagates(monkeypatch, exc):
    D, init, _ = _problem(4, 400, 4, False)
    started, finished = threading.Event(), threading.Event()
    orig_serve = F._Speculator._serve

    def strided(self, t, *a):
        assert t == 0  # the helpers evaluate inside their serve loops
        assert started.wait(10)
        raise exc("stop")

    def serve(self, t, *a):
        started.set()
        try:
            return orig_serve(self, t, *a)
        finally:
            finished.set()

    monkeypatch.setattr(F._Speculator, "_strided", strided)
    monkeypatch.setattr(F._Speculator, "_serve", serve)
    with pytest.raises(exc, match="stop"):
        cm.fasterpam(D, 4, init=init, num_workers=2, speculative=True)
    assert finished.is_set()  # the helper was stopped and waited for before the error left


def test_error_in_helper_propagates(monkeypatch):
    D, init, _ = _problem(4, 300, 4, False)
    orig = F._Speculator._serve

    def serve(self, t, *a):
        if t == 1:
            raise ValueError("helper failed")
        return orig(self, t, *a)

    monkeypatch.setattr(F._Speculator, "_serve", serve)
    with pytest.raises(ValueError, match="helper failed"):
        cm.fasterpam(D, 4, init=init, num_workers=2, speculative=True)


def test_helper_leaving_its_loop_is_an_error_not_a_hang(monkeypatch):
    D, init, _ = _problem(4, 300, 4, False)
    monkeypatch.setattr(F._Speculator, "_serve", lambda self, t, *a: None)
    with pytest.raises(RuntimeError, match="helper thread stopped unexpectedly"):
        cm.fasterpam(D, 4, init=init, num_workers=2, speculative=True)


@pytest.mark.parametrize("nw", [2, 3])
def test_bounded_waits_and_naps_give_the_same_walk(monkeypatch, nw):
    """With a spin bound of a few checks the helpers return to Python between batches (and
    nap) and the caller's waits time out and retry: the walk is still the sequential one."""
    D, init, _ = _problem(6, 500, 6, False)
    seq = cm.fasterpam(D, 6, init=init, num_workers=1)
    naps = []
    monkeypatch.setattr(F, "SPINS", 4)
    monkeypatch.setattr(F._Speculator, "NAP", 0.0)
    orig_sleep = F.time.sleep

    class _Time:
        @staticmethod
        def sleep(x):
            naps.append(x)
            orig_sleep(x)

    monkeypatch.setattr(F, "time", _Time)
    _same(seq, cm.fasterpam(D, 6, init=init, num_workers=nw, speculative=True))
    assert naps  # the helpers did leave their loops idle and came back


@pytest.mark.parametrize("cores,spins", [(1, "OVERSUBSCRIBED_SPINS"), (64, "SPINS")])
def test_more_threads_than_cores_poll_instead_of_spinning(monkeypatch, cores, spins):
    """With more walk threads than usable cores the waits give up after a few checks (a
    spinning thread would hold a core another one needs); the walk is the same."""
    D, init, _ = _problem(7, 400, 5, False)
    seq = cm.fasterpam(D, 5, init=init, num_workers=1)
    made = []
    orig = F._Speculator.__init__

    def init_spy(self, *a, **kw):
        orig(self, *a, **kw)
        made.append(self.spins)

    monkeypatch.setattr(F, "_default_threads", lambda: cores)
    monkeypatch.setattr(F._Speculator, "__init__", init_spy)
    _same(seq, cm.fasterpam(D, 5, init=init, num_workers=2, speculative=True))
    assert made == [getattr(F, spins)]
