"""FasterMSC / DynMSC: known results, brute-force references, oracle, the choose_k example."""

import pathlib
import signal
import subprocess
import sys

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunked_medoids import (
    METHODS,
    InvalidParameterError,
    dynmsc,
    fastermsc,
    from_features,
    medoid_silhouette,
)
from chunked_medoids._kernels.msc import eval_msc_candidate, msc_loss, msc_removal, top3_all
from chunked_medoids.algorithms import get_method

from .conftest import random_symmetric

FIXTURE = np.array([[0, 2, 3, 4, 5], [2, 0, 6, 7, 8], [3, 6, 0, 9, 10], [4, 7, 9, 0, 11], [5, 8, 10, 11, 0]])
ROOT = pathlib.Path(__file__).resolve().parents[1]


def _loss(D, med, w=None):
    """Σ w·d1/d2 by brute force (0 where d2 = 0)."""
    s = np.sort(np.asarray(D, dtype=np.float64)[:, list(med)], axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        r = np.where(s[:, 1] == 0, 0.0, s[:, 0] / s[:, 1])
    return float(np.sum(r if w is None else w * r))


def _naive_fastermsc(D, medoids, max_iter=100):
    """Textbook eager FasterMSC: every slot of every candidate scored by recomputing the loss."""
    n = D.shape[0]
    med = [int(m) for m in medoids]
    k = len(med)
    L = _loss(D, med)
    since = 0
    for _ in range(max_iter):
        for j in range(n):
            if j in med:
                since += 1
            else:
                best = None
                for s in range(k):
                    trial = med.copy()
                    trial[s] = j
                    v = _loss(D, trial)
                    if best is None or v < best[0]:
                        best = (v, s)
                if best[0] - L < -1e-12 * n:
                    med[best[1]] = j
                    L = _loss(D, med)
                    since = 1
                else:
                    since += 1
            if since >= n:
                return med
    return med


# -- known results (docs/architecture.rst §13) -------------------------------------------------
def test_fixture_dynmsc():
    r = dynmsc(FIXTURE.astype(float), 3, init="build")
    assert r.k == 3
    assert r.score == 0.8761904761904762
    assert r.scores == {2: 0.8172727272727273, 3: 0.8761904761904762}
    assert sorted(r.medoids.tolist()) == [0, 3, 4]
    assert r.algorithm == "dynmsc"
    np.testing.assert_array_equal(r.medoids_by_k[2], [0, 4])


@pytest.mark.parametrize("dtype", [np.float32, np.int32, np.int64])
def test_fixture_dtypes(dtype):
    r = dynmsc(FIXTURE.astype(dtype), 3, init="build")
    assert r.k == 3 and r.score == pytest.approx(0.8761904761904762, abs=1e-15)


def test_fixture_fastermsc_from_build_no_swap():
    r = fastermsc(FIXTURE, 2, init="build")
    assert r.medoids.tolist() == [0, 4]
    assert r.n_swap == 0 and r.loss == 9.0
    assert r.score == 0.8172727272727273
    assert r.algorithm == "fastermsc" and r.converged


# -- kernels against brute force -----------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 5])
@pytest.mark.parametrize("weighted", [False, True])
@pytest.mark.parametrize("dtype", [np.float32, np.int64])
def test_candidate_kernel_matches_brute_force(rng, k, weighted, dtype):
    n = 30
    D = random_symmetric(n, rng, dtype=dtype, integer=dtype == np.int64)
    med = rng.choice(n, k, replace=False)
    M = np.ascontiguousarray(D[:, med])
    caches = [np.empty(n) for _ in range(3)] + [np.empty(n, dtype=np.int32) for _ in range(3)]
    top3_all(M, *caches)
    d1, d2, d3, n1, n2, n3 = caches
    w = rng.random(n) if weighted else np.empty(0)
    wref = w if weighted else None
    R = np.empty(k)
    msc_removal(d1, d2, d3, n1, n2, w, weighted, R)
    L = msc_loss(d1, d2, w, weighted)
    assert L == pytest.approx(_loss(D, med, wref), rel=1e-12)
    for i in range(k):  # removal loss is the exact change of removing slot i
        rest = np.delete(med, i)
        if len(rest) >= 2:
            assert R[i] == pytest.approx(_loss(D, rest, wref) - L, abs=1e-10)
    P = np.empty(k)
    for j in range(n):
        if j in med:
            continue
        acc = eval_msc_candidate(D[j], d1, d2, d3, n1, n2, R, w, weighted, P)
        for s in range(k):
            trial = med.copy()
            trial[s] = j
            assert P[s] + acc == pytest.approx(_loss(D, trial, wref) - L, abs=1e-10)


@settings(deadline=None, max_examples=12)
@given(n=st.integers(6, 24), k=st.integers(2, 4), seed=st.integers(0, 2**31))
def test_fastermsc_equals_naive(n, k, seed):
    rng = np.random.default_rng(seed)
    D = random_symmetric(n, rng, dtype=np.float64)
    init = rng.choice(n, k, replace=False)
    r = fastermsc(D, k, init=init, block_rows=int(rng.integers(1, n + 1)), num_workers=1)
    assert r.medoids.tolist() == _naive_fastermsc(D, init)
    # reported score = recomputed medoid silhouette; it never decreases
    assert r.score == pytest.approx(medoid_silhouette(D, r.medoids), abs=1e-13)
    assert all(b >= a - 1e-12 for a, b in zip(r.score_history, r.score_history[1:]))
    assert r.loss == pytest.approx(float(np.sum(np.min(D[:, r.medoids], axis=1))), rel=1e-12)
    np.testing.assert_array_equal(r.labels, np.argmin(D[:, r.medoids], axis=1))


def test_fastermsc_oracle(rng):
    kmedoids = pytest.importorskip("kmedoids")
    for _ in range(5):
        D = random_symmetric(50, rng, dtype=np.float64)
        init = rng.choice(50, 4, replace=False)
        ours = fastermsc(D, 4, init=init)
        theirs = kmedoids.fastermsc(D, init.copy(), max_iter=100)
        assert sorted(ours.medoids.tolist()) == sorted(int(m) for m in theirs.medoids)
        assert ours.score == pytest.approx(theirs.loss, abs=1e-12)


def test_fastermsc_block_and_source_invariance(rng):
    X = rng.normal(size=(120, 4))
    X[:40] += 3
    src = from_features(X, "euclidean", dtype="float64")
    D = np.asarray(src.read_rows(0, 120))
    a = fastermsc(D, 5, init="random", random_state=3, block_rows=120)
    b = fastermsc(src, 5, init="random", random_state=3, block_rows=17, num_workers=2)
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.score == b.score and a.loss_history == b.loss_history


def test_fastermsc_weights(rng):
    D = random_symmetric(40, rng, dtype=np.float64)
    w = rng.integers(1, 4, size=40).astype(float)
    r = fastermsc(D, 3, init="build", weights=w)
    assert r.score == pytest.approx(1 - _loss(D, r.medoids, w) / w.sum(), abs=1e-13)
    ones = fastermsc(D, 3, init="build", weights=np.ones(40))
    plain = fastermsc(D, 3, init="build")
    np.testing.assert_array_equal(ones.medoids, plain.medoids)


def test_fastermsc_max_iter_and_errors(rng):
    D = random_symmetric(30, rng)
    r = fastermsc(D, 3, init=[0, 1, 2], max_iter=0)
    assert r.medoids.tolist() == [0, 1, 2] and r.n_iter == 0
    r = fastermsc(D, 30, init="random", random_state=0)  # every point a medoid
    assert r.score == 1.0 and r.n_swap == 0
    with pytest.raises(InvalidParameterError, match="k"):
        fastermsc(D, 1)
    with pytest.raises(InvalidParameterError):
        fastermsc(D, 31)
    with pytest.raises(InvalidParameterError):
        fastermsc(D, 3, tol=-1.0)


def test_fastermsc_registered():
    spec = get_method("fastermsc")
    assert spec.func is fastermsc and spec.family == "swap"
    assert "fastermsc" in METHODS and "medoid silhouette" in spec.description
    assert "dynmsc" not in METHODS  # its k is a maximum: not a k-medoids method


# -- DynMSC ----------------------------------------------------------------------------------------
def test_dynmsc_consistency(rng):
    X = rng.normal(size=(150, 2))
    X[:50] += 6
    X[50:100, 0] -= 6
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    r = dynmsc(D, 6, kmin=2)
    assert list(r.scores) == [2, 3, 4, 5, 6]
    for k, med in r.medoids_by_k.items():
        assert len(med) == k
        assert r.scores[k] == pytest.approx(medoid_silhouette(D, med), abs=1e-13)
        assert r.losses[k] == pytest.approx(float(np.min(D[:, med], axis=1).sum()), rel=1e-12)
    best = max(r.scores.values())
    assert r.score == best and r.scores[r.k] == best
    assert r.k == 3  # three well separated blobs
    np.testing.assert_array_equal(r.medoids, r.medoids_by_k[r.k])
    np.testing.assert_array_equal(r.labels, np.argmin(D[:, r.medoids], axis=1))


def test_dynmsc_removes_least_costly_medoid(rng):
    D = random_symmetric(40, rng, dtype=np.float64)
    init = rng.choice(40, 6, replace=False)
    r = dynmsc(D, 6, kmin=3, init=init, max_iter=0)  # no swaps: removal only
    for k in (6, 5, 4):
        med = list(r.medoids_by_k[k])
        best = min(range(k), key=lambda i: (_loss(D, med[:i] + med[i + 1:]), i))
        assert list(r.medoids_by_k[k - 1]) == med[:best] + med[best + 1:]


def test_dynmsc_single_k_and_errors(rng):
    D = random_symmetric(20, rng, dtype=np.float64)
    r = dynmsc(D, 4, kmin=4, init="build")
    f = fastermsc(D, 4, init="build")
    np.testing.assert_array_equal(r.medoids, f.medoids)
    assert r.scores == {4: f.score}
    with pytest.raises(InvalidParameterError):
        dynmsc(D, 3, kmin=4)
    with pytest.raises(InvalidParameterError):
        dynmsc(D, 21)
    with pytest.raises(InvalidParameterError):
        dynmsc(D, 3, kmin=1)


def test_dynmsc_oracle_fixture():
    kmedoids = pytest.importorskip("kmedoids")
    theirs = kmedoids.dynmsc(FIXTURE.astype(float), 3, 2)
    ours = dynmsc(FIXTURE.astype(float), 3)
    assert ours.k == theirs.bestk and ours.score == pytest.approx(theirs.loss, abs=1e-15)


# -- the example ----------------------------------------------------------------------------------
@pytest.mark.slow
def test_choose_k_example_runs():
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / "choose_k.py"), "--kmax", "8",
                           "--n-samples", "600"], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert any("<- best" in line for line in lines)
    assert "chosen k =" in proc.stdout
    rows = [line.split() for line in lines if line[:2].strip().isdigit()]
    assert [int(r[0]) for r in rows] == list(range(2, 9))


# -- checkpoints ---------------------------------------------------------------------------------
@pytest.mark.parametrize(("func", "interrupt_at"), [("fastermsc", 2), ("fastermsc", 11), ("dynmsc", 2),
                                                    ("dynmsc", 11), ("dynmsc", 40)])
def test_checkpoint_resume_equals_uninterrupted(func, interrupt_at, tmp_path, monkeypatch):
    import chunked_medoids as cm
    from chunked_medoids import checkpoint as ck

    rng = np.random.default_rng(4)
    X = rng.normal(size=(150, 2))
    X[:50] += 4
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    f = getattr(cm, func)
    kw = dict(init="random", random_state=2, block_rows=20, checkpoint_interval=0.0)
    full = f(D, 5, **kw)
    path = str(tmp_path / f"{func}.ckpt")
    calls = {"n": 0}
    orig = ck.Checkpoint.step

    def step(self, state_fn, force=False):
        calls["n"] += 1
        if calls["n"] == interrupt_at:
            self.stop.request(signal.SIGTERM)
        return orig(self, state_fn, force)

    monkeypatch.setattr(ck.Checkpoint, "step", step)
    with pytest.raises(ck.CheckpointInterrupt):
        f(D, 5, checkpoint=path, **kw)
    monkeypatch.setattr(ck.Checkpoint, "step", orig)
    for _ in range(2):  # resume, then rerun from the completed checkpoint
        again = f(D, 5, checkpoint=path, **kw)
        np.testing.assert_array_equal(again.medoids, full.medoids)
        np.testing.assert_array_equal(again.labels, full.labels)
        assert (again.loss, again.n_iter, again.n_swap, again.score) == (full.loss, full.n_iter, full.n_swap,
                                                                         full.score)
        assert again.loss_history == full.loss_history
        if func == "dynmsc":
            assert again.scores == full.scores
    with pytest.raises(cm.CheckpointMismatchError):
        f(D, 5, checkpoint=path, **{**kw, "random_state": 3})


@settings(deadline=None, max_examples=15)
@given(n=st.integers(4, 20), k=st.integers(2, 4), seed=st.integers(0, 2**31), high=st.integers(1, 4))
def test_fastermsc_ties_and_duplicates(n, k, seed, high):
    """Integer matrices with many ties and zero off-diagonal distances (duplicate points)."""
    rng = np.random.default_rng(seed)
    a = np.triu(rng.integers(0, high + 1, size=(n, n)), 1)
    D = (a + a.T).astype(np.int32)
    k = min(k, n)
    r = fastermsc(D, k, init="random", random_state=seed % 1000, block_rows=3, num_workers=1)
    assert r.converged
    assert np.isfinite(r.score) and -1.0 <= r.score <= 1.0
    assert r.score == pytest.approx(medoid_silhouette(D, r.medoids), abs=1e-12)
    assert all(b >= a - 1e-12 for a, b in zip(r.score_history, r.score_history[1:]))
    d = dynmsc(D, k, kmin=2, init="random", random_state=1)
    for kk, med in d.medoids_by_k.items():
        assert d.scores[kk] == pytest.approx(medoid_silhouette(D, med), abs=1e-12)
