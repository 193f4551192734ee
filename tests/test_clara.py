"""CLARA / FastCLARA / FasterCLARA: known optima, determinism, modes, weights, errors."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from chunked_medoids import CheckpointMismatchError, InvalidParameterError, InvalidTypeError, UnknownNameError
from chunked_medoids._kernels.clara import PARTIALS, msum_add, score_dist_block, score_rows, symmetrize_upper
from chunked_medoids.algorithms import get_method
from chunked_medoids.algorithms.clara import VARIANTS, clara, default_n_samples, default_sample_size
from chunked_medoids.algorithms.pam import pam
from chunked_medoids.metrics import resolve_metric


def blobs(n, rng, centers=3, d=2, spread=0.3):
    c = rng.normal(scale=10.0, size=(centers, d))
    lab = rng.integers(0, centers, size=n)
    return c[lab] + rng.normal(scale=spread, size=(n, d))


def dmat(X):
    return resolve_metric("euclidean").pairwise_new(X, X)


def naive(X_or_D, medoids, weights=None, features=True):
    D = dmat(X_or_D) if features else X_or_D
    sub = D[:, medoids]
    labels = np.argmin(sub, axis=1)  # first minimum = lowest slot
    for s, m in enumerate(medoids):
        labels[m] = s
    dn = sub[np.arange(D.shape[0]), labels]
    w = np.ones(D.shape[0]) if weights is None else weights
    return labels, math.fsum((w * dn).tolist())


def exhaustive(D, k, weights=None):
    n = D.shape[0]
    w = np.ones(n) if weights is None else weights
    best = math.inf
    for comb in itertools.combinations(range(n), k):
        best = min(best, float((w * D[:, list(comb)].min(axis=1)).sum()))
    return best


# -- kernels ---------------------------------------------------------------------------------
def test_msum_is_exactly_rounded(rng):
    x = np.concatenate([rng.random(500) * 10.0 ** rng.integers(-20, 20, 500), [1e16, 1.0, -1e16 + 2]])
    x = np.abs(x)
    p = np.zeros(PARTIALS)
    cnt = 0
    for v in x:
        cnt = msum_add(p, cnt, float(v))
    assert math.fsum(p[:cnt].tolist()) == math.fsum(x.tolist())
    # split in two expansions and merged: still the exact sum
    p1, p2 = np.zeros(PARTIALS), np.zeros(PARTIALS)
    c1 = c2 = 0
    for v in x[:200]:
        c1 = msum_add(p1, c1, float(v))
    for v in x[200:]:
        c2 = msum_add(p2, c2, float(v))
    assert math.fsum(np.concatenate([p1[:c1], p2[:c2]]).tolist()) == math.fsum(x.tolist())


def test_score_kernels_match_naive(rng):
    X = rng.normal(size=(60, 3))
    D = dmat(X)
    meds = np.array([[5, 17, 40], [0, 1, 59]], dtype=np.int64)
    w = rng.random(60)
    C = np.concatenate([X[m] for m in meds])
    for start, stop in [(0, 60), (10, 45)]:
        dist = resolve_metric("euclidean").pairwise_new(X[start:stop], C)
        partials = np.zeros((2, PARTIALS))
        counts = np.zeros(2, dtype=np.int64)
        labels = np.empty(stop - start, dtype=np.int32)
        score_dist_block(dist, 3, start, meds, w, True, partials, counts, labels, True)
        for q in range(2):
            lab, _ = naive(D, meds[q], w, features=False)
            ref = math.fsum((w[start:stop] * D[np.arange(start, stop)[:, None], meds[q]].min(axis=1)).tolist())
            assert math.fsum(partials[q, :counts[q]].tolist()) == pytest.approx(ref, rel=1e-14)
            if q == 0:
                np.testing.assert_array_equal(labels, lab[start:stop])
    rows = D[meds[0]]
    p = np.zeros(PARTIALS)
    labels = np.empty(60, dtype=np.int32)
    cnt = score_rows(rows, np.arange(3, dtype=np.int64), meds[0], np.empty(0), False, p, labels, True)
    lab, loss = naive(D, meds[0], features=False)
    np.testing.assert_array_equal(labels, lab)
    assert math.fsum(p[:cnt].tolist()) == loss


def test_score_ties_lowest_slot_and_medoid_in_own_slot():
    # points 0 and 1 coincide and are both medoids: each stays in its own slot
    X = np.array([[0.0], [0.0], [5.0], [2.5]])
    D = dmat(X)
    p = np.zeros(PARTIALS)
    labels = np.empty(4, dtype=np.int32)
    score_rows(D[[1, 0, 2]], np.arange(3, dtype=np.int64), np.array([1, 0, 2]), np.empty(0), False, p, labels, True)
    assert labels.tolist() == [1, 0, 2, 0]  # point 3 ties between slot 0/1 (d=2.5) and 2 (2.5): slot 0


def test_symmetrize_upper(rng):
    S = rng.random((7, 7))
    symmetrize_upper(S)
    np.testing.assert_array_equal(S, S.T)
    assert (np.diag(S) == 0).all()


# -- known optima ---------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
@pytest.mark.parametrize("k", [1, 2, 3])
def test_reaches_exhaustive_optimum(variant, k, rng):
    X = blobs(14, rng, centers=3)
    D = dmat(X)
    opt = exhaustive(D, k)
    r = clara(X, k, variant=variant, sample_size=14, n_samples=3, random_state=3, num_workers=1)
    assert r.loss == pytest.approx(opt, rel=1e-12)
    labels, loss = naive(X, r.medoids)
    np.testing.assert_array_equal(r.labels, labels)
    assert r.loss == loss
    assert r.labels.dtype == np.int32 and r.medoids.dtype == np.int64


def test_classic_on_whole_data_equals_pam_build(rng):
    X = rng.normal(size=(80, 2))
    D = dmat(X)
    r = clara(X, 4, variant="clara", sample_size=80, n_samples=1, random_state=0)
    ref = pam(D, 4)
    np.testing.assert_array_equal(r.medoids, ref.medoids)
    assert r.loss == pytest.approx(ref.loss, rel=1e-12)
    w = rng.integers(0, 4, size=80).astype(float)
    rw = clara(X, 4, variant="clara", sample_size=80, n_samples=1, weights=w, random_state=0)
    refw = pam(D, 4, weights=w)
    np.testing.assert_array_equal(rw.medoids, refw.medoids)
    assert rw.loss == pytest.approx(refw.loss, rel=1e-12)
    assert rw.loss == naive(X, rw.medoids, w)[1]


# -- determinism ----------------------------------------------------------------------------
@pytest.mark.parametrize("variant", VARIANTS)
def test_deterministic_across_workers_memory_and_chunking(variant, rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    X = blobs(3000, rng, centers=6, d=3, spread=1.0)
    kw = dict(variant=variant, sample_size=150, n_samples=6, random_state=11)
    ref = clara(X, 6, **kw)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(317, 3), dtype="float64")
    z[:] = X
    for opts, data in [({"num_workers": 1}, X), ({"num_workers": 2, "memory_limit": "1MiB"}, X),
                       ({"memory_limit": "256KiB"}, str(tmp_path / "x.zarr"))]:
        r = clara(data, 6, **kw, **opts)
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        np.testing.assert_array_equal(r.labels, ref.labels)
        assert r.loss == ref.loss
        assert r.sample_losses == ref.sample_losses
    other = clara(X, 6, **{**kw, "random_state": 12})
    assert other.sample_losses != ref.sample_losses


def test_features_and_matrix_modes_agree(rng, tmp_path):
    X = rng.normal(size=(400, 3))
    D = dmat(X)
    w = rng.random(400)
    for variant in VARIANTS:
        a = clara(X, 4, variant=variant, sample_size=60, n_samples=4, random_state=5, weights=w)
        b = clara(D, 4, variant=variant, sample_size=60, n_samples=4, random_state=5, weights=w,
                  metric="precomputed")
        assert a.mode == "features" and b.mode == "matrix"
        np.testing.assert_array_equal(a.medoids, b.medoids)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert a.loss == b.loss and a.sample_losses == b.sample_losses
    # a store written by build_dissimilarity is recognised as a matrix without being told
    from chunked_medoids import build_dissimilarity

    path = str(tmp_path / "d.zarr")
    build_dissimilarity(X, path, dtype="float64")
    c = clara(path, 4, sample_size=60, n_samples=4, random_state=5, weights=w)
    assert c.mode == "matrix"
    d = clara(X, 4, sample_size=60, n_samples=4, random_state=5, weights=w)
    np.testing.assert_array_equal(c.medoids, d.medoids)
    assert c.loss == d.loss


def test_hdf5_features_and_metric_params(rng, tmp_path):
    h5py = pytest.importorskip("h5py")
    X = rng.normal(size=(500, 4))
    with h5py.File(tmp_path / "x.h5", "w") as f:
        f.create_dataset("X", data=X, chunks=(64, 4))
    a = clara(str(tmp_path / "x.h5"), 3, sample_size=80, n_samples=3, random_state=2,
              metric="minkowski", metric_params={"p": 3})
    b = clara(X, 3, sample_size=80, n_samples=3, random_state=2, metric="minkowski", metric_params={"p": 3})
    np.testing.assert_array_equal(a.medoids, b.medoids)
    D = resolve_metric("minkowski", p=3).pairwise_new(X, X)
    assert a.loss == pytest.approx(naive(D, a.medoids, features=False)[1], rel=1e-13)


# -- include_best / samples -----------------------------------------------------------------
def test_best_loss_never_worse_and_include_best(rng):
    X = blobs(2000, rng, centers=8, d=2, spread=2.0)
    r = clara(X, 8, sample_size=64, n_samples=12, wave_size=2, random_state=4)
    assert len(r.sample_losses) == 12 and r.n_iter == 12
    assert r.loss_history == list(np.minimum.accumulate(r.sample_losses))
    assert r.loss == min(r.sample_losses) == r.sample_losses[r.best_sample]
    assert r.best_sample == int(np.argmin(r.sample_losses))  # earliest on ties
    # sample_size == k: a sample after the first wave holds exactly the best medoids, so its
    # medoids (and full-data loss) are those of the best so far
    r = clara(X, 5, variant="clara", sample_size=5, n_samples=4, wave_size=1, random_state=1)
    assert r.sample_losses == [r.sample_losses[0]] * 4
    r = clara(X, 5, variant="clara", sample_size=5, n_samples=4, wave_size=1, include_best=False,
              random_state=1)
    assert len(set(r.sample_losses)) > 1


def test_duplicate_points_do_not_cycle(rng):
    X = rng.integers(0, 4, size=(3000, 3)).astype(float)  # ~64 distinct points, many ties
    for variant in VARIANTS:
        r = clara(X, 5, variant=variant, sample_size=600, n_samples=2, random_state=0)
        assert r.n_swap < 200, (variant, r.n_swap)
        assert r.loss == naive(X, r.medoids)[1]


def test_defaults(rng):
    assert default_sample_size("clara", 10**6, 10, 2**30) == 60
    s = default_sample_size("fasterclara", 10**6, 10, 2**30)
    assert s == 4096  # s*s*8 <= memory_limit / 8
    assert default_sample_size("fastclara", 10**6, 10, 2**40) == 10000
    assert default_sample_size("fastclara", 10**6, 100, 2**20) == 480  # at least 80 + 4k
    assert default_sample_size("fastclara", 300, 100, 2**20) == 300
    assert default_n_samples("clara", 10**6, 60) == 5
    assert default_n_samples("fasterclara", 10**6, 5000) == 10
    assert default_n_samples("fasterclara", 100, 100) == 3
    assert default_n_samples("fasterclara", 10**6, 120) == 50
    X = rng.normal(size=(300, 2))
    r = clara(X, 3, random_state=0)
    assert r.sample_size == 300 and r.n_samples == 3 and r.variant == "fasterclara"
    r = clara(X, 3, variant="clara", random_state=0)
    assert r.sample_size == 46 and r.n_samples == 5


# -- weights, polish, registry, checkpoint --------------------------------------------------
def test_weights_loss_and_zero_weight_samples(rng):
    X = rng.normal(size=(300, 2))
    w = np.zeros(300)
    w[:10] = 1.0  # most samples carry only zero weights
    r = clara(X, 3, sample_size=30, n_samples=4, weights=w, random_state=0)
    labels, loss = naive(X, r.medoids, w)
    np.testing.assert_array_equal(r.labels, labels)
    assert r.loss == loss
    with pytest.raises(InvalidParameterError):
        clara(X, 3, weights=-np.ones(300))


def test_polish_improves_and_equals_fasterpam(rng):
    from chunked_medoids import from_features
    from chunked_medoids.algorithms.fasterpam import fasterpam

    X = blobs(500, rng, centers=5, spread=2.0)
    r0 = clara(X, 5, sample_size=30, n_samples=2, random_state=0)
    r = clara(X, 5, sample_size=30, n_samples=2, random_state=0, polish=True)
    assert r.polished and r.clara_loss == r0.loss
    assert r.loss <= r0.loss * (1 + 1e-12)
    ref = fasterpam(from_features(X, dtype="float64"), 5, init=r0.medoids)
    np.testing.assert_array_equal(r.medoids, ref.medoids)


def test_registry_methods(rng):
    X = rng.normal(size=(200, 2))
    for name in ("clara", "fastclara", "fasterclara"):
        spec = get_method(name)
        assert spec.family == "sampling"
        r = spec.func(X, 3, sample_size=40, n_samples=2, random_state=0)
        assert r.algorithm == name and r.variant == name
    with pytest.raises(InvalidParameterError):
        get_method("fastclara").func(X, 3, variant="clara")


def test_checkpoint_resume_identical(rng, tmp_path):
    X = rng.normal(size=(600, 2))
    kw = dict(sample_size=50, n_samples=6, wave_size=2, random_state=9)
    ref = clara(X, 4, **kw)
    path = tmp_path / "c.ckpt"
    a = clara(X, 4, checkpoint=path, **kw)
    assert path.exists()
    b = clara(X, 4, checkpoint=path, **kw)  # completed: resumes to the same result
    for r in (a, b):
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        assert r.loss == ref.loss and r.sample_losses == ref.sample_losses
    with pytest.raises(CheckpointMismatchError):
        clara(X, 4, checkpoint=path, **{**kw, "n_samples": 7})


def test_checkpoint_resume_after_interruption(rng, tmp_path, monkeypatch):
    import chunked_medoids.algorithms.clara as mod

    X = rng.normal(size=(600, 2))
    kw = dict(sample_size=50, n_samples=6, wave_size=2, random_state=9)
    ref = clara(X, 4, **kw)
    path = tmp_path / "c.ckpt"
    real = mod._Run.run_samples
    calls = {"n": 0}

    def flaky(self, tasks, s, **kw):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt("simulated kill during wave 1")
        return real(self, tasks, s, **kw)

    monkeypatch.setattr(mod._Run, "run_samples", flaky)
    with pytest.raises(KeyboardInterrupt):
        clara(X, 4, checkpoint=path, **kw)
    monkeypatch.setattr(mod._Run, "run_samples", real)
    r = clara(X, 4, checkpoint=path, **kw)
    np.testing.assert_array_equal(r.medoids, ref.medoids)
    assert r.loss == ref.loss and r.sample_losses == ref.sample_losses


# -- errors ---------------------------------------------------------------------------------
def test_bad_inputs(rng):
    X = rng.normal(size=(50, 2))
    with pytest.raises(InvalidParameterError):
        clara(X, 0)
    with pytest.raises(InvalidParameterError):
        clara(X, 51)
    with pytest.raises(InvalidTypeError):
        clara(X, 2.5)
    with pytest.raises(InvalidParameterError, match="sample_size"):
        clara(X, 5, sample_size=4)
    with pytest.raises(InvalidParameterError, match="sample_size"):
        clara(X, 5, sample_size=51)
    with pytest.raises(InvalidParameterError, match="n_samples"):
        clara(X, 5, n_samples=0)
    with pytest.raises(UnknownNameError, match="variant"):
        clara(X, 5, variant="fastestclara")
    with pytest.raises(InvalidParameterError, match="wave_size"):
        clara(X, 5, wave_size=0)
    with pytest.raises(InvalidTypeError):
        clara(X, 5, include_best="yes")
    with pytest.raises(UnknownNameError):
        clara(X, 5, metric="nope")
    with pytest.raises(InvalidParameterError, match="feature inputs only"):
        clara(dmat(X), 5, metric="precomputed", metric_params={"p": 2})
    with pytest.raises(InvalidParameterError):
        clara(X, 5, precomputed=False, metric="precomputed")
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(InvalidParameterError, match="finite"):
        clara(bad, 2)


def test_distributed_cluster_matches_threads(local_cluster, rng, tmp_path):
    """Sample tasks and feature passes on a LocalCluster give the threaded result."""
    zarr = pytest.importorskip("zarr")
    from chunked_medoids.algorithms.clarans import fastclarans

    X = rng.normal(size=(1500, 3))
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(200, 3), dtype="float64")
    z[:] = X
    kw = dict(sample_size=100, n_samples=5, random_state=3)
    ref = clara(X, 4, **kw)
    r = clara(str(tmp_path / "x.zarr"), 4, client=local_cluster, **kw)
    np.testing.assert_array_equal(r.medoids, ref.medoids)
    assert r.loss == ref.loss and r.sample_losses == ref.sample_losses
    D = dmat(X[:400])
    a = fastclarans(D, 4, numlocal=2, random_state=1)
    b = fastclarans(D, 4, numlocal=2, random_state=1, client=local_cluster)
    np.testing.assert_array_equal(a.medoids, b.medoids)
    assert a.restart_losses == b.restart_losses
