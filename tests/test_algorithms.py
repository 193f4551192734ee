"""Exact PAM family drivers: known results, references, invariance, weights, errors, edge
cases and checkpoint resume."""

import signal

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids._errors import InvalidParameterError, InvalidTypeError, UnknownNameError
from chunked_medoids.algorithms.fasterpam import candidate_order
from tests._registries import TD_SWAP_METHODS
from tests.conftest import random_symmetric

FIXTURE = np.array([[0, 2, 3, 4, 5], [2, 0, 6, 7, 8], [3, 6, 0, 9, 10], [4, 7, 9, 0, 11],
                    [5, 8, 10, 11, 0]])
SWAP_METHODS = TD_SWAP_METHODS  # pam, fastpam1, fastpam2, fasterpam, alternating, ... (registry)


def _euclid(n, rng, dim=2, dtype=np.float32):
    X = rng.random((n, dim))
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)).astype(dtype)


# -- known results --------------------------------------------------------------------------
def test_fixture_build_and_no_swap():
    assert cm.build(FIXTURE, 2).tolist() == [0, 4]
    for name in ("pam", "fastpam1", "fastpam2", "fasterpam"):
        r = getattr(cm, name)(FIXTURE, 2, init="build")
        assert r.medoids.tolist() == [0, 4] and r.loss == 9 and r.n_swap == 0
        assert r.labels.tolist() == [0, 0, 0, 0, 1]
        assert r.loss_history[0] == 9 and r.algorithm == name
    assert cm.fastpam is cm.fastpam2
    assert cm.METHODS["fastpam2"].func is cm.fastpam2
    assert cm.METHODS["pam"].default_init == "build"


# -- FasterPAM against a plain numpy reference ------------------------------------------------
def reference_fasterpam(D, init, order=None, max_iter=100, w=None):
    """Obviously correct eager FasterPAM: every (slot) ΔTD by recomputing the loss."""
    D = np.asarray(D, dtype=np.float64)
    n = D.shape[0]
    w = np.ones(n) if w is None else np.asarray(w, float)
    med = [int(m) for m in init]
    order = np.arange(n) if order is None else order

    def loss(meds):
        return float((w * D[:, meds].min(axis=1)).sum())

    td = loss(med)
    since, passes, swaps = 0, 0, 0
    while passes < max_iter:
        passes += 1
        for j in order:
            j = int(j)
            if j not in med:
                deltas = []
                for s in range(len(med)):
                    m2 = list(med)
                    m2[s] = j
                    deltas.append(loss(m2) - td)
                s = int(np.argmin(deltas))
                if deltas[s] < 0:
                    med[s] = j
                    td = loss(med)
                    swaps += 1
                    since = 0
            since += 1
            if since >= n:
                return med, td, passes, swaps
    return med, td, passes, swaps


@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("k", [1, 3, 5])
def test_fasterpam_equals_reference_integer(seed, k):
    rng = np.random.default_rng(seed)
    n = 40
    D = random_symmetric(n, rng, dtype=np.int64, integer=True, high=60)
    init = rng.choice(n, k, replace=False)
    med, td, passes, swaps = reference_fasterpam(D, init)
    r = cm.fasterpam(D, k, init=init)
    assert r.medoids.tolist() == med
    assert r.loss == td and r.n_iter == passes and r.n_swap == swaps


@pytest.mark.parametrize("seed", range(3))
def test_fasterpam_equals_reference_float_and_shuffle(seed):
    rng = np.random.default_rng(100 + seed)
    n, k = 600, 4
    D = _euclid(n, rng, dtype=np.float64)
    init = rng.choice(n, k, replace=False)
    order = candidate_order(n, "shuffle", np.random.default_rng(seed))
    assert sorted(order.tolist()) == list(range(n))
    med, td, passes, _ = reference_fasterpam(D, init, order=order)
    r = cm.fasterpam(D, k, init=init, order="shuffle", random_state=seed)
    assert r.medoids.tolist() == med and r.n_iter == passes
    assert r.loss == pytest.approx(td, rel=1e-12)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("k", [5, 12])
def test_fasterpam_matches_kmedoids_oracle(dtype, k):
    kmedoids = pytest.importorskip("kmedoids")
    rng = np.random.default_rng(k)
    n = 400
    D = _euclid(n, rng, dtype=dtype)
    init = rng.choice(n, k, replace=False)
    ref = kmedoids.fasterpam(D, init.copy(), max_iter=100, n_cpu=1)
    r = cm.fasterpam(D, k, init=init)
    assert sorted(r.medoids.tolist()) == sorted(int(m) for m in ref.medoids)
    assert r.loss == pytest.approx(float(ref.loss), rel=1e-6)


def test_pam_fastpam1_match_kmedoids_oracle():
    kmedoids = pytest.importorskip("kmedoids")
    rng = np.random.default_rng(5)
    D = random_symmetric(80, rng, dtype=np.int64, integer=True, high=1000)
    init = rng.choice(80, 4, replace=False)
    ref = kmedoids.fastpam1(D, init.copy(), max_iter=100)
    for f in (cm.pam, cm.fastpam1):
        r = f(D, 4, init=init)
        assert sorted(r.medoids.tolist()) == sorted(int(m) for m in ref.medoids)
        assert r.loss == float(ref.loss)


# -- invariance over block sizes, threads, speculation ----------------------------------------
def _same(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.n_iter == b.n_iter and a.n_swap == b.n_swap
    assert a.loss_history == b.loss_history


@pytest.mark.parametrize("name", SWAP_METHODS)
def test_identical_across_block_sizes_and_threads(name):
    rng = np.random.default_rng(11)
    D = _euclid(150, rng)
    f = getattr(cm, name)
    base = f(D, 5, init="random", random_state=4, num_workers=1, block_rows=150)
    for kw in ({"block_rows": 3}, {"block_rows": 17, "num_workers": 2}, {"memory_limit": 2**16},
               {"num_workers": 2}):
        _same(base, f(D, 5, init="random", random_state=4, **kw))
    # invariants
    M = D[:, base.medoids]
    assert base.labels.tolist() == [int(np.argmin(row)) for row in M]
    assert base.loss == pytest.approx(float(M.min(axis=1).astype(np.float64).sum()), rel=1e-12)
    h = base.loss_history
    assert all(b <= a for a, b in zip(h, h[1:]))
    assert h[-1] == pytest.approx(base.loss, rel=1e-12)


@pytest.mark.parametrize("order", ["natural", "shuffle"])
def test_fasterpam_speculative_is_exact(order):
    rng = np.random.default_rng(3)
    D = _euclid(700, rng)
    init = rng.choice(700, 8, replace=False)
    seq = cm.fasterpam(D, 8, init=init, order=order, random_state=1, num_workers=1)
    for kw in ({"num_workers": 2, "speculative": True}, {"num_workers": 2, "speculative": True,
                                                        "block_rows": 100},
               {"block_rows": 9}, {"block_rows": 300}):
        _same(seq, cm.fasterpam(D, 8, init=init, order=order, random_state=1, **kw))


# -- weights ---------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SWAP_METHODS)
def test_integer_weights_equal_duplication(name):
    rng = np.random.default_rng(21)
    n, k = 30, 3
    D = random_symmetric(n, rng, dtype=np.int64, integer=True, high=40)
    w = rng.integers(1, 4, n)
    rep = np.repeat(np.arange(n), w)
    Ddup = D[np.ix_(rep, rep)]
    first = np.cumsum(w) - w  # first copy of each point
    init = rng.choice(n, k, replace=False)
    f = getattr(cm, name)
    rw = f(D, k, init=init, weights=w)
    rd = f(Ddup, k, init=first[init])
    np.testing.assert_array_equal(first[rw.medoids], rd.medoids)
    assert rw.loss == rd.loss
    assert rw.loss == float((w * D[:, rw.medoids].min(axis=1)).sum())


def test_build_weights_equal_duplication():
    rng = np.random.default_rng(2)
    D = random_symmetric(25, rng, dtype=np.int64, integer=True, high=30)
    w = rng.integers(1, 4, 25)
    rep = np.repeat(np.arange(25), w)
    first = np.cumsum(w) - w
    np.testing.assert_array_equal(first[cm.build(D, 4, weights=w)], cm.build(D[np.ix_(rep, rep)], 4))


# -- inits -------------------------------------------------------------------------------------
def test_build_and_lab():
    rng = np.random.default_rng(8)
    D = _euclid(200, rng)
    b = cm.build(D, 6)
    assert len(set(b.tolist())) == 6
    assert b[0] == int(np.argmin(D.astype(np.float64).sum(axis=1)))
    assert cm.build(D, 6, block_rows=7).tolist() == b.tolist()
    la = cm.lab(D, 6, random_state=3)
    assert len(set(la.tolist())) == 6 and la.dtype == np.int64
    assert cm.lab(D, 6, random_state=3).tolist() == la.tolist()
    r = cm.fasterpam(D, 6, init="lab", random_state=3)
    assert r.loss_history[0] == pytest.approx(float(D[:, la].min(axis=1).astype(np.float64).sum()), rel=1e-6)
    ra = cm.fasterpam(D, 6, init="random", random_state=3)
    assert sorted(np.random.default_rng(3).choice(200, 6, replace=False).tolist()) == \
        sorted(ra.medoids.tolist()) or ra.n_swap > 0


# -- edge cases ----------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SWAP_METHODS)
def test_k1_kn_duplicates(name):
    rng = np.random.default_rng(4)
    D = random_symmetric(20, rng, dtype=np.float64)
    f = getattr(cm, name)
    r = f(D, 1, init="random", random_state=0)
    if name != "alternating":  # alternating: the medoid of its one cluster, also the argmin
        pass
    assert r.medoids.tolist() == [int(np.argmin(D.sum(axis=1)))]
    assert (r.labels == 0).all()
    r = f(D, 20, init="build")
    assert r.loss == 0 and sorted(r.medoids.tolist()) == list(range(20))
    assert (r.labels[r.medoids] == np.arange(20)).all()
    # all-zero matrix and fewer distinct points than k
    Z = np.zeros((6, 6), np.float32)
    r = f(Z, 3, init="build")
    assert len(set(r.medoids.tolist())) == 3 and r.loss == 0
    X = np.repeat(np.array([[0.0], [1.0], [5.0]]), 3, axis=0)  # 3 distinct points, 9 rows
    Dd = np.abs(X - X.T).astype(np.float32)
    r = f(Dd, 5, init="build")
    assert len(set(r.medoids.tolist())) == 5 and r.loss == 0
    assert (r.labels[r.medoids] == np.arange(5)).all()


def test_max_iter_zero_and_bound():
    rng = np.random.default_rng(6)
    D = _euclid(100, rng)
    init = rng.choice(100, 4, replace=False)
    for name in SWAP_METHODS:
        r = getattr(cm, name)(D, 4, init=init, max_iter=0)
        assert r.medoids.tolist() == init.tolist() and r.n_iter == 0 and len(r.loss_history) == 1
        r = getattr(cm, name)(D, 4, init=init, max_iter=1)
        assert r.n_iter == 1
    assert cm.pam(D, 4, init=init, tol=0.5).n_swap == 0  # no swap gains 50%


# -- validation --------------------------------------------------------------------------------
@pytest.mark.parametrize("name", SWAP_METHODS)
def test_errors(name):
    f = getattr(cm, name)
    D = random_symmetric(10, np.random.default_rng(0))
    bad = [
        ({"k": 0}, InvalidParameterError), ({"k": 11}, InvalidParameterError),
        ({"k": 2.5}, InvalidTypeError),
        ({"init": [1, 1, 2]}, InvalidParameterError), ({"init": [1, 2, 10]}, InvalidParameterError),
        ({"init": [1, 2]}, InvalidParameterError), ({"init": "kmeans++"}, UnknownNameError),
        ({"init": 3}, InvalidTypeError),
        ({"weights": -np.ones(10)}, InvalidParameterError),
        ({"weights": np.full(10, np.nan)}, InvalidParameterError),
        ({"weights": np.ones(9)}, InvalidParameterError),
        ({"max_iter": -1}, InvalidParameterError), ({"memory_limit": "lots"}, InvalidParameterError),
        ({"tol": -0.1}, InvalidParameterError),
    ]
    for kw, exc in bad:
        args = {"k": 3, **kw}
        k = args.pop("k")
        with pytest.raises(exc):
            f(D, k, **args)
    with pytest.raises(UnknownNameError, match="build"):
        f(D, 3, init="nope")


def test_specific_errors():
    D = random_symmetric(10, np.random.default_rng(0))
    for tau in (0.0, 1.5, -1):
        with pytest.raises(InvalidParameterError, match="tau"):
            cm.fastpam2(D, 3, tau=tau)
    with pytest.raises(UnknownNameError, match="natural"):
        cm.fasterpam(D, 3, order="random")
    with pytest.raises(InvalidTypeError):
        cm.fasterpam(D, 3, speculative="yes")
    with pytest.raises(InvalidParameterError):
        cm.build(D, 0)


# -- checkpoint resume -------------------------------------------------------------------------
@pytest.mark.parametrize("name", SWAP_METHODS)
def test_checkpoint_resume_equals_uninterrupted(name, tmp_path, monkeypatch):
    from chunked_medoids import checkpoint as ck

    rng = np.random.default_rng(9)
    D = _euclid(240, rng)
    f = getattr(cm, name)
    kw = dict(init="random", random_state=5, block_rows=20, checkpoint_interval=0.0)
    if name == "fasterpam":
        kw["order"] = "shuffle"
    full = f(D, 6, **kw)
    path = str(tmp_path / f"{name}.ckpt")
    calls = {"n": 0}
    orig = ck.Checkpoint.step

    def step(self, state_fn, force=False):
        calls["n"] += 1
        if calls["n"] == 3:
            self.stop.request(signal.SIGTERM)
        return orig(self, state_fn, force)

    monkeypatch.setattr(ck.Checkpoint, "step", step)
    with pytest.raises(ck.CheckpointInterrupt):
        f(D, 6, checkpoint=path, **kw)
    monkeypatch.setattr(ck.Checkpoint, "step", orig)
    resumed = f(D, 6, checkpoint=path, **kw)
    _same(full, resumed)
    again = f(D, 6, checkpoint=path, **kw)  # complete checkpoint: same result again
    _same(full, again)
    with pytest.raises(cm.CheckpointMismatchError):
        f(D, 6, checkpoint=path, **{**kw, "random_state": 6})


# -- sources -----------------------------------------------------------------------------------
def test_identical_across_sources(tmp_path):
    rng = np.random.default_rng(12)
    X = rng.normal(size=(90, 3))
    feat = cm.from_features(X, metric="euclidean", dtype="float32")
    arr = feat.read_rows(0, 90)
    zsrc = cm.build_dissimilarity(X, str(tmp_path / "D.zarr"), metric="euclidean", memory_limit=2**16)
    hsrc = cm.build_dissimilarity(X, str(tmp_path / "D.h5"), metric="euclidean", memory_limit=2**16)
    for name in ("fasterpam", "fastpam1", "alternating"):
        f = getattr(cm, name)
        base = f(arr, 4, random_state=1)
        for src in (feat, zsrc, hsrc, str(tmp_path / "D.zarr")):
            _same(base, f(src, 4, random_state=1, memory_limit=2**16))


def test_lab_reads_only_sample_rows():
    from chunked_medoids.sources.memory import NumpySource

    class Counting(NumpySource):
        rows = 0

        def _read_rows(self, start, stop):
            Counting.rows += stop - start
            return super()._read_rows(start, stop)

        def _take_rows(self, indices):
            Counting.rows += len(indices)
            return super()._take_rows(indices)

    rng = np.random.default_rng(1)
    n, k = 400, 5
    src = Counting(_euclid(n, rng))
    med = cm.lab(src, k, random_state=2)
    assert len(set(med.tolist())) == k
    assert Counting.rows <= k * (10 + int(np.ceil(np.sqrt(n))))


def test_progress_and_logging(caplog, capsys):
    import logging

    rng = np.random.default_rng(2)
    D = _euclid(120, rng)
    with caplog.at_level(logging.INFO, logger="chunked_medoids"):
        r = cm.fasterpam(D, 3, random_state=0, progress=True, block_rows=30)
        cm.fastpam1(D, 3, random_state=0, progress=True, max_iter=1)
    msgs = [rec.getMessage() for rec in caplog.records]
    assert any(m.startswith("fasterpam pass 1: loss=") and "read" in m for m in msgs)
    assert any(m.startswith("fastpam1 iteration 1: loss=") for m in msgs)
    assert r.n_iter >= 1
