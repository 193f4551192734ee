"""CLARANS and FastCLARANS: improvement over the start, determinism, kernel, errors."""

from __future__ import annotations

import signal

import numpy as np
import pytest

from chunked_medoids import InvalidParameterError, InvalidTypeError
from chunked_medoids._kernels.clara import clarans_run
from chunked_medoids.algorithms import get_method
from chunked_medoids.algorithms._common import SwapCaches
from chunked_medoids.algorithms.clarans import clarans, fastclarans, resolve_maxneighbor
from chunked_medoids.metrics import resolve_metric
from chunked_medoids.sources import open_dissimilarity
from tests._registries import METHODS, methods

FUNCS = [METHODS[name].func for name in methods(module="clarans")]  # clarans, fastclarans


def dmat(X):
    return resolve_metric("euclidean").pairwise_new(X, X)


def loss_of(D, medoids, w=None):
    dn = D[:, medoids].min(axis=1)
    return float(dn.sum() if w is None else (w * dn).sum())


@pytest.fixture
def data(rng):
    c = rng.normal(scale=8, size=(6, 2))
    X = c[rng.integers(0, 6, 400)] + rng.normal(size=(400, 2))
    return X, dmat(X)


@pytest.mark.parametrize("func", FUNCS)
def test_improves_on_random_start_and_consistent(func, data):
    X, D = data
    r = func(D, 6, numlocal=3, random_state=0)
    assert len(r.restart_losses) == 3
    for init, final in zip(r.restart_init_losses, r.restart_losses):
        assert final < init
    assert r.loss == pytest.approx(min(r.restart_losses), rel=1e-12)
    assert r.loss == pytest.approx(loss_of(D, r.medoids), rel=1e-12)
    sub = D[:, r.medoids]
    expect = np.argmin(sub, axis=1)
    expect[r.medoids] = np.arange(6)
    np.testing.assert_array_equal(r.labels, expect)
    assert r.algorithm == func.__name__
    assert len(set(r.medoids.tolist())) == 6


@pytest.mark.parametrize("func", FUNCS)
def test_local_optimum_property_and_quality(func, data):
    X, D = data
    from chunked_medoids.algorithms.fasterpam import fasterpam

    ref = fasterpam(D, 6, random_state=0).loss
    r = func(D, 6, numlocal=2, maxneighbor=1.0, random_state=1)  # exhaustive neighbour budget
    # with maxneighbor = all neighbours, the search stops only at a (near) local optimum
    assert r.loss <= ref * 1.05


@pytest.mark.parametrize("func", FUNCS)
def test_deterministic_across_workers_and_memory(func, data, tmp_path):
    zarr = pytest.importorskip("zarr")
    X, D = data
    ref = func(D, 5, numlocal=3, random_state=7)
    z = zarr.create_array(str(tmp_path / "d.zarr"), shape=D.shape, chunks=(37, 400), dtype="float64")
    z[:] = D
    for data_, opts in [(D, {"num_workers": 1}), (D, {"memory_limit": 1 << 16}),
                        (str(tmp_path / "d.zarr"), {"num_workers": 2, "memory_limit": "200KiB"})]:
        r = func(data_, 5, numlocal=3, random_state=7, **opts)
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        assert r.loss == ref.loss and r.restart_losses == ref.restart_losses
        assert r.restart_n_eval == ref.restart_n_eval
    assert func(D, 5, numlocal=3, random_state=8).restart_losses != ref.restart_losses


@pytest.mark.parametrize("func", FUNCS)
def test_weights_and_init(func, data, rng):
    X, D = data
    w = rng.random(400) * 3
    r = func(D, 4, weights=w, random_state=2)
    assert r.loss == pytest.approx(loss_of(D, r.medoids, w), rel=1e-12)
    start = np.array([0, 1, 2, 3])
    r = func(D, 4, init=start, numlocal=1, random_state=2)
    assert r.restart_init_losses[0] == pytest.approx(loss_of(D, start), rel=1e-12)
    assert r.loss < r.restart_init_losses[0]


@pytest.mark.parametrize("func", FUNCS)
def test_k_equals_n_and_k1(func, rng):
    D = dmat(rng.normal(size=(7, 2)))
    r = func(D, 7, random_state=0)
    assert sorted(r.medoids.tolist()) == list(range(7)) and r.loss == 0.0
    r = func(D, 1, maxneighbor=1.0, random_state=0)
    assert r.medoids[0] == int(np.argmin(D.sum(axis=1)))  # k = 1, all neighbours: the 1-medoid


def test_kernel_steps_match_naive(data):
    """clarans_run takes exactly the improving neighbours a naive loop takes."""
    X, D = data
    src = open_dissimilarity(D)
    k = 4
    for fast in (False, True):
        rng = np.random.default_rng(3)
        st = SwapCaches(src, np.array([0, 1, 2, 3]), None)
        cands = rng.integers(0, 400, size=200)
        slots = rng.integers(0, k, size=200)
        stv = np.zeros(4, dtype=np.int64)
        td = np.array([st.td])
        P = np.empty(k)
        clarans_run(D[cands], np.arange(200), slots, cands, fast, 10**9, 0.0, st.M, st.medoids, st.is_medoid,
                    st.dn, st.ds, st.nn, st.sn, st.R, st.w, st.weighted, P, stv, td)
        # naive replay
        med = [0, 1, 2, 3]
        n_eval = n_swap = 0
        for j, s in zip(cands, slots):
            if j in med:
                continue
            n_eval += 1
            cur = loss_of(D, med)
            if fast:
                trial = [loss_of(D, med[:t] + [j] + med[t + 1:]) for t in range(k)]
                t = int(np.argmin(trial))
                new = trial[t]
            else:
                t = int(s)
                new = loss_of(D, med[:t] + [j] + med[t + 1:])
            if new - cur < -1e-9:
                med[t] = int(j)
                n_swap += 1
        assert st.medoids.tolist() == med
        assert stv[1] == n_eval and stv[2] == n_swap
        assert td[0] == pytest.approx(loss_of(D, med), rel=1e-12)


@pytest.mark.parametrize("func", FUNCS)
def test_duplicates_terminate(func, rng):
    """Many exact duplicates (like image pixels): ties must not count as improvements."""
    X = rng.integers(0, 4, size=(1500, 3)).astype(float)
    D = dmat(X)
    r = func(D, 5, numlocal=1, maxneighbor=1.0 if func is fastclarans else 0.2, random_state=0)
    assert r.n_swap < 100
    assert r.loss <= r.restart_init_losses[0]
    with pytest.raises(InvalidParameterError):
        func(D, 3, tol=-1.0)


def test_maxneighbor_resolution_and_errors(data):
    assert resolve_maxneighbor(0.0125, 4 * 396) == 20
    assert resolve_maxneighbor(1.0, 50) == 50
    assert resolve_maxneighbor(250, 50) == 250
    assert resolve_maxneighbor(1e-9, 50) == 1
    for bad in (0, -1, 0.0, float("nan"), float("inf")):
        with pytest.raises(InvalidParameterError):
            resolve_maxneighbor(bad, 10)
    with pytest.raises(InvalidParameterError, match="integer"):
        resolve_maxneighbor(2.5, 10)
    with pytest.raises(InvalidTypeError):
        resolve_maxneighbor("many", 10)
    X, D = data
    r = clarans(D, 4, random_state=0)
    assert r.maxneighbor == int(np.ceil(0.0125 * 4 * 396))
    r = fastclarans(D, 4, random_state=0)
    assert r.maxneighbor == int(np.ceil(0.025 * 396))
    for func in FUNCS:
        with pytest.raises(InvalidParameterError):
            func(D, 0)
        with pytest.raises(InvalidParameterError):
            func(D, 3, numlocal=0)
        with pytest.raises(InvalidParameterError):
            func(D, 3, maxneighbor=-0.1)


def test_registry():
    for name, func in (("clarans", clarans), ("fastclarans", fastclarans)):
        spec = get_method(name)
        assert spec.family == "sampling" and spec.func is func


# -- checkpoint resume ---------------------------------------------------------------------------
def _same_result(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.n_iter == b.n_iter and a.n_swap == b.n_swap
    assert a.loss_history == b.loss_history and a.extra == b.extra


@pytest.mark.parametrize("func", FUNCS)
@pytest.mark.parametrize("init", ["random", "lab"])
def test_checkpoint_resume_equals_uninterrupted(func, init, data, tmp_path, monkeypatch):
    """Interrupted after the 2nd of 4 local searches (SIGTERM simulated): the rerun redoes
    only searches 3-4 and returns exactly the uninterrupted result."""
    from chunked_medoids import checkpoint as ck
    from chunked_medoids.algorithms import clarans as mod

    X, D = data
    kw = dict(numlocal=4, init=init, random_state=11, num_workers=1)  # 1 worker: 1 search per wave
    full = func(D, 5, **kw)
    path = str(tmp_path / "c.ckpt")
    calls = {"n": 0}
    orig = ck.Checkpoint.step

    def step(self, state_fn, force=False):
        calls["n"] += 1
        if calls["n"] == 2:
            self.stop.request(signal.SIGTERM)
        return orig(self, state_fn, force)

    monkeypatch.setattr(ck.Checkpoint, "step", step)
    with pytest.raises(ck.CheckpointInterrupt):
        func(D, 5, checkpoint=path, **kw)
    monkeypatch.setattr(ck.Checkpoint, "step", orig)
    assert (tmp_path / "c.ckpt").exists()
    searched = []
    real = mod._local_search

    def counting(i, st):
        searched.append(int(i))
        return real(i, st)

    monkeypatch.setattr(mod, "_local_search", counting)
    resumed = func(D, 5, checkpoint=path, **kw)
    assert sorted(searched) == [2, 3]
    _same_result(full, resumed)
    searched.clear()
    again = func(D, 5, checkpoint=path, **{**kw, "num_workers": 2})  # finished: no search rerun
    assert searched == []
    _same_result(full, again)


@pytest.mark.parametrize("func", FUNCS)
def test_checkpoint_mismatch_refused(func, data, tmp_path, rng):
    from chunked_medoids import CheckpointMismatchError

    X, D = data
    path = str(tmp_path / "c.ckpt")
    base = dict(numlocal=2, random_state=1, checkpoint=path)
    ref = func(D, 4, **base)
    _same_result(ref, func(D, 4, **base))
    other = fastclarans if func is clarans else clarans
    for call in (lambda: func(D, 5, **base),
                 lambda: func(D, 4, **{**base, "random_state": 2}),
                 lambda: func(D, 4, **{**base, "numlocal": 3}),
                 lambda: func(D, 4, **{**base, "maxneighbor": 0.5}),
                 lambda: func(D, 4, **{**base, "tol": 1e-3}),
                 lambda: func(D, 4, **{**base, "init": [0, 1, 2, 3]}),
                 lambda: func(D, 4, **{**base, "weights": rng.random(400)}),
                 lambda: func(2 * D, 4, **base),
                 lambda: other(D, 4, **base)):
        with pytest.raises(CheckpointMismatchError):
            call()
