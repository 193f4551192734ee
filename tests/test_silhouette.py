"""Silhouette and medoid silhouette: known values, sklearn / naive references, streaming."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.spatial.distance import cdist
from sklearn.metrics import silhouette_samples, silhouette_score

from chunked_medoids import Engine, InvalidParameterError, from_features
from chunked_medoids._kernels.silhouette import cluster_sums, medoid_silhouette_values, silhouette_block
from chunked_medoids.algorithms.silhouette import medoid_silhouette, silhouette

from .conftest import random_symmetric

FIXTURE = np.array([[0, 2, 3, 4, 5], [2, 0, 6, 7, 8], [3, 6, 0, 9, 10], [4, 7, 9, 0, 11], [5, 8, 10, 11, 0]])


def _naive_medoid_silhouette(D, medoids):
    M = np.asarray(D, dtype=np.float64)[:, medoids]
    Ms = np.sort(M, axis=1)
    d1, d2 = Ms[:, 0], Ms[:, 1]
    with np.errstate(invalid="ignore", divide="ignore"):
        s = np.where(d2 == 0, 1.0, 1.0 - d1 / d2)
    return s


# -- known values (docs/architecture.rst §13) --------------------------------------------------
@pytest.mark.parametrize("dtype", [np.float64, np.float32, np.int32, np.int64])
def test_fixture_values(dtype):
    D = FIXTURE.astype(dtype)
    assert silhouette(D, [0, 0, 0, 0, 1]) == pytest.approx(0.3137878787878788, abs=1e-15)
    assert medoid_silhouette(D, [0, 4]) == pytest.approx(0.8172727272727273, abs=1e-15)


def test_fixture_values_exact_float64():
    assert silhouette(FIXTURE.astype(float), [0, 0, 0, 0, 1]) == 0.3137878787878788
    assert medoid_silhouette(FIXTURE.astype(float), [0, 4]) == 0.8172727272727273


# -- silhouette vs scikit-learn --------------------------------------------------------------
@pytest.mark.parametrize("block_rows", [None, 1, 7, 33])
def test_silhouette_matches_sklearn(rng, block_rows):
    X = rng.normal(size=(90, 3))
    X[:30] += 4
    D = cdist(X, X)
    labels = rng.integers(0, 4, size=90)
    labels[5] = 7  # a singleton cluster (s = 0)
    s = silhouette(D, labels, samples=True, block_rows=block_rows, num_workers=2)
    np.testing.assert_allclose(s, silhouette_samples(D, labels, metric="precomputed"), rtol=1e-12, atol=1e-14)
    assert s[5] == 0.0
    assert silhouette(D, labels, block_rows=block_rows) == pytest.approx(
        silhouette_score(D, labels, metric="precomputed"), rel=1e-12)


def test_silhouette_string_labels_and_float32_features(rng):
    X = rng.normal(size=(40, 2))
    lab = np.where(X[:, 0] > 0, "right", "left")
    src = from_features(X, "euclidean", dtype="float64")
    D = cdist(X, X)
    assert silhouette(src, lab) == pytest.approx(silhouette_score(D, lab, metric="precomputed"), rel=1e-12)


def test_silhouette_engine_reuse_and_io(rng):
    D = random_symmetric(50, rng, dtype=np.float64)
    labels = np.arange(50) % 3
    with Engine(block_rows=8, num_workers=1) as eng:
        a = silhouette(D, labels, engine=eng)
        # one streaming pass: exactly one read of D
        assert eng.bytes_read == D.nbytes
    assert a == pytest.approx(silhouette_score(D, labels, metric="precomputed"), rel=1e-12)


def test_silhouette_distributed(rng, local_cluster):
    D = random_symmetric(40, rng, dtype=np.float64)
    labels = np.arange(40) % 4
    got = silhouette(D, labels, samples=True, client=local_cluster, block_rows=9)
    np.testing.assert_array_equal(got, silhouette(D, labels, samples=True, block_rows=40, num_workers=1))


@pytest.mark.parametrize("labels", [[0, 0, 0, 0, 0], [0, 1, 2, 3, 4], [0, 1, 2]])
def test_silhouette_label_errors(labels):
    with pytest.raises(InvalidParameterError):
        silhouette(FIXTURE.astype(float), labels)


def test_silhouette_zero_distances():
    # two identical pairs: a = b = 0 for nobody, but a = 0 for all -> s = 1
    D = np.array([[0, 0, 1, 1], [0, 0, 1, 1], [1, 1, 0, 0], [1, 1, 0, 0]], dtype=float)
    np.testing.assert_array_equal(silhouette(D, [0, 0, 1, 1], samples=True), np.ones(4))
    # all distances zero: a = b = 0 -> 0 (sklearn convention)
    Z = np.zeros((4, 4))
    np.testing.assert_array_equal(silhouette(Z, [0, 0, 1, 1], samples=True), np.zeros(4))
    np.testing.assert_array_equal(silhouette_samples(Z, [0, 0, 1, 1], metric="precomputed"), np.zeros(4))


@settings(deadline=None, max_examples=15)
@given(n=st.integers(4, 25), c=st.integers(2, 4), seed=st.integers(0, 2**31), rows=st.integers(1, 30))
def test_silhouette_property(n, c, seed, rows):
    rng = np.random.default_rng(seed)
    D = random_symmetric(n, rng, dtype=np.float64)
    labels = rng.integers(0, c, size=n)
    labels[:3] = [0, 1, 0]  # at least 2 and at most n - 1 distinct labels
    s = silhouette(D, labels, samples=True, block_rows=rows, num_workers=1)
    assert np.all(s >= -1) and np.all(s <= 1)
    np.testing.assert_allclose(s, silhouette_samples(D, labels, metric="precomputed"), rtol=1e-12, atol=1e-14)


# -- kernels directly ---------------------------------------------------------------------------
def test_cluster_sums_kernel(rng):
    D = random_symmetric(20, rng, dtype=np.float32)
    labels = rng.integers(0, 3, size=20).astype(np.int32)
    out = np.empty((6, 3))
    cluster_sums(D[4:10], labels, 3, out)
    ref = np.stack([D[4:10][:, labels == c].astype(np.float64).sum(axis=1) for c in range(3)], axis=1)
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    s = np.empty(6)
    silhouette_block(D[4:10], 4, labels, np.bincount(labels, minlength=3).astype(np.int64), s)
    np.testing.assert_allclose(s, silhouette_samples(D.astype(np.float64), labels, metric="precomputed")[4:10],
                               rtol=1e-6)


# -- medoid silhouette -----------------------------------------------------------------------------
@pytest.mark.parametrize("k", [2, 3, 6])
def test_medoid_silhouette_naive(rng, k):
    D = random_symmetric(60, rng, dtype=np.float32)
    med = rng.choice(60, k, replace=False)
    ref = _naive_medoid_silhouette(D, med)
    np.testing.assert_allclose(medoid_silhouette(D, med, samples=True), ref, rtol=1e-12)
    assert medoid_silhouette(D, med) == pytest.approx(ref.mean(), rel=1e-12)
    assert np.all(medoid_silhouette(D, med, samples=True)[med] == 1.0)


def test_medoid_silhouette_oracle(rng):
    kmedoids = pytest.importorskip("kmedoids")
    D = random_symmetric(80, rng, dtype=np.float64)
    med = rng.choice(80, 5, replace=False)
    ours = medoid_silhouette(D, med, samples=True)
    theirs = kmedoids.medoid_silhouette(D, med, samples=True)
    assert medoid_silhouette(D, med) == pytest.approx(theirs[0], rel=1e-13)
    np.testing.assert_allclose(ours, theirs[1], rtol=1e-13)


def test_medoid_silhouette_ties_and_errors():
    # points 0 and 1 coincide and are both medoids: d1 = d2 = 0 for them -> s = 1
    D = np.array([[0, 0, 2], [0, 0, 2], [2, 2, 0]], dtype=float)
    s = medoid_silhouette(D, [0, 1], samples=True)
    np.testing.assert_array_equal(s, [1.0, 1.0, 0.0])
    out = np.empty(3)
    assert medoid_silhouette_values(D[:, [0, 1]].copy(), out) == 1.0
    with pytest.raises(InvalidParameterError, match="at least 2 medoids"):
        medoid_silhouette(D, [0])
    with pytest.raises(InvalidParameterError):
        medoid_silhouette(D, [0, 0])
    with pytest.raises(InvalidParameterError):
        medoid_silhouette(D, [0, 5])
