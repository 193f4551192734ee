"""The scikit-learn estimator: sklearn's own checks, equality with the functional API, lazy inputs."""

import pickle

import numpy as np
import pytest
from numba import njit
from scipy.spatial.distance import cdist
from sklearn.base import clone
from sklearn.exceptions import NotFittedError
from sklearn.utils.estimator_checks import check_estimator

from chunked_medoids import (
    InvalidParameterError,
    KMedoids,
    UnknownNameError,
    fastermsc,
    fasterpam,
    from_features,
    pam,
)
from chunked_medoids.algorithms import METHODS, _load_all, get_method

_load_all()  # every registered method, for the parametrisation below

#: checks that cannot pass by the nature of k-medoids (documented reason each).
EXPECTED_FAILED = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-medoids picks medoids among the data points: a zero-weight point can be a medoid "
        "while its repeated-data counterpart does not exist, and the random init draws from "
        "a different number of points, so slots/medoids differ between weighted and repeated "
        "fits (scikit-learn's own KMeans-type estimators fail this check too)"
    ),
}


def _blobs(rng, n=90, d=3):
    X = rng.normal(size=(n, d))
    X[: n // 3] += 5
    X[n // 3: 2 * n // 3] -= 5
    return X


def test_sklearn_check_estimator():
    check_estimator(KMedoids(n_clusters=3), expected_failed_checks=EXPECTED_FAILED)


def test_sklearn_check_estimator_pam_build():
    check_estimator(KMedoids(n_clusters=3, method="pam"), expected_failed_checks=EXPECTED_FAILED)


def test_equals_functional_api_features(rng):
    X = _blobs(rng)
    est = KMedoids(4, random_state=5).fit(X)
    res = fasterpam(from_features(X, "euclidean", dtype="float64"), 4, random_state=5)
    np.testing.assert_array_equal(est.medoid_indices_, res.medoids)
    np.testing.assert_array_equal(est.labels_, res.labels)
    assert est.inertia_ == res.loss and est.n_iter_ == res.n_iter and est.n_swap_ == res.n_swap
    assert est.loss_history_ == res.loss_history
    np.testing.assert_array_equal(est.cluster_centers_, X[res.medoids])
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    np.testing.assert_allclose(est.transform(X), cdist(X, X[res.medoids]), rtol=1e-12)
    assert est.score(X) == pytest.approx(-est.inertia_, rel=1e-12)
    assert est.n_features_in_ == 3
    assert est.result_.algorithm == "fasterpam"


def test_equals_functional_api_precomputed(rng):
    X = _blobs(rng)
    D = cdist(X, X)
    est = KMedoids(3, metric="precomputed", method="pam").fit(D)
    res = pam(D, 3)
    np.testing.assert_array_equal(est.medoid_indices_, res.medoids)
    assert est.cluster_centers_ is None
    assert est.n_features_in_ == 90
    np.testing.assert_array_equal(est.predict(D), est.labels_)
    np.testing.assert_array_equal(est.transform(D[:7]), D[:7][:, res.medoids])
    assert est.__sklearn_tags__().input_tags.pairwise
    # a source / store in predict: the training matrix again
    np.testing.assert_array_equal(est.predict(from_features(X, dtype="float64")), est.labels_)


@pytest.mark.slow
@pytest.mark.parametrize("method", sorted(METHODS))
def test_every_registered_method(rng, method):
    X = _blobs(rng, n=60)
    est = KMedoids(3, method=method, random_state=0).fit(X)
    spec = get_method(method)
    assert est.result_.algorithm == spec.name
    assert est.labels_.shape == (60,) and set(np.unique(est.labels_)) == {0, 1, 2}
    np.testing.assert_array_equal(est.predict(X), est.labels_)


def test_fastermsc_through_estimator(rng):
    X = _blobs(rng)
    est = KMedoids(3, method="fastermsc", init="build").fit(X)
    res = fastermsc(from_features(X, dtype="float64"), 3, init="build")
    np.testing.assert_array_equal(est.medoid_indices_, res.medoids)
    assert est.result_.score == res.score


def test_sample_weight_equals_functional(rng):
    X = _blobs(rng)
    w = rng.integers(1, 5, size=90).astype(float)
    est = KMedoids(3, random_state=1).fit(X, sample_weight=w)
    res = fasterpam(from_features(X, dtype="float64"), 3, random_state=1, weights=w)
    np.testing.assert_array_equal(est.medoid_indices_, res.medoids)
    assert est.inertia_ == res.loss
    assert est.score(X, sample_weight=w) == pytest.approx(-res.loss, rel=1e-12)


def test_lazy_inputs_dask_and_zarr(rng, tmp_path):
    da = pytest.importorskip("dask.array")
    zarr = pytest.importorskip("zarr")
    X = _blobs(rng)
    ref = KMedoids(3, random_state=2).fit(X)
    Xd = da.from_array(X, chunks=(25, 3))
    est = KMedoids(3, random_state=2).fit(Xd)
    np.testing.assert_array_equal(est.medoid_indices_, ref.medoid_indices_)
    np.testing.assert_array_equal(est.predict(Xd), ref.labels_)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)
    z = zarr.create_array(str(tmp_path / "X.zarr"), shape=X.shape, chunks=(20, 3), dtype="float64")
    z[:] = X
    est = KMedoids(3, random_state=2).fit(z)
    np.testing.assert_array_equal(est.labels_, ref.labels_)
    np.testing.assert_allclose(est.transform(z), ref.transform(X), rtol=1e-12)


def test_metrics_and_custom_numba_metric(rng):
    X = _blobs(rng, n=45)

    @njit
    def l1(x, y):
        return np.abs(x - y).sum()

    a = KMedoids(3, metric=l1, random_state=0).fit(X)
    b = KMedoids(3, metric="manhattan", random_state=0).fit(X)
    np.testing.assert_array_equal(a.medoid_indices_, b.medoid_indices_)
    np.testing.assert_allclose(a.transform(X), cdist(X, a.cluster_centers_, "cityblock"), rtol=1e-12)
    c = KMedoids(3, metric="minkowski", metric_params={"p": 1.0}, random_state=0).fit(X)
    np.testing.assert_array_equal(c.medoid_indices_, b.medoid_indices_)


def test_clone_pickle_params(rng):
    X = _blobs(rng, n=30)
    est = KMedoids(3, method="pam", memory_limit="64MiB", method_params={"tol": 0.0})
    assert clone(est).get_params() == est.get_params()
    est.set_params(n_clusters=2)
    assert est.n_clusters == 2
    est.fit(X)
    est2 = pickle.loads(pickle.dumps(est))
    np.testing.assert_array_equal(est2.predict(X), est.predict(X))
    np.testing.assert_array_equal(est2.medoid_indices_, est.medoid_indices_)


def test_errors(rng):
    X = _blobs(rng, n=10)
    with pytest.raises(NotFittedError):
        KMedoids(2).predict(X)
    with pytest.raises(ValueError, match="n_samples=10 should be >= n_clusters=11"):
        KMedoids(11).fit(X)
    with pytest.raises(UnknownNameError, match="fasterpam"):
        KMedoids(2, method="nope").fit(X)
    with pytest.raises(UnknownNameError):
        KMedoids(2, metric="nope").fit(X)
    with pytest.raises(InvalidParameterError, match="method_params"):
        KMedoids(2, method_params={"init": "build"}).fit(X)
    with pytest.raises(InvalidParameterError, match="takes no init"):
        KMedoids(2, method="clara", init="build").fit(X)
    with pytest.raises(InvalidParameterError, match="precomputed"):
        KMedoids(2, metric="precomputed", metric_params={"p": 2}).fit(cdist(X, X))
    with pytest.raises(InvalidParameterError, match="square"):
        KMedoids(2, metric="precomputed").fit(X)
    with pytest.raises(ValueError):
        KMedoids(2, metric="precomputed").fit(-cdist(X, X))
    with pytest.raises(ValueError, match="features"):
        KMedoids(2).fit(X).predict(X[:, :2])
    with pytest.raises(ValueError, match="zero"):
        KMedoids(2).fit(X, sample_weight=np.zeros(10))
    with pytest.raises(TypeError):
        KMedoids(2.5).fit(X)


# -- CLARA ------------------------------------------------------------------------------------------
def test_sklearn_check_estimator_clara():
    from chunked_medoids import CLARA

    check_estimator(CLARA(n_clusters=3), expected_failed_checks=EXPECTED_FAILED)


def test_clara_equals_functional_api(rng):
    da = pytest.importorskip("dask.array")
    from chunked_medoids import CLARA, clara

    X = _blobs(rng, n=300)
    est = CLARA(3, random_state=4, sample_size=60).fit(X)
    res = clara(X, 3, random_state=4, sample_size=60)
    np.testing.assert_array_equal(est.medoid_indices_, res.medoids)
    np.testing.assert_array_equal(est.labels_, res.labels)
    assert est.inertia_ == res.loss
    np.testing.assert_array_equal(est.cluster_centers_, X[res.medoids])
    np.testing.assert_array_equal(est.predict(X), est.labels_)
    lazy = CLARA(3, random_state=4, sample_size=60).fit(da.from_array(X, chunks=(70, 3)))
    np.testing.assert_array_equal(lazy.medoid_indices_, res.medoids)
    D = cdist(X, X)
    pre = CLARA(3, metric="precomputed", random_state=4, sample_size=60).fit(D)
    assert pre.cluster_centers_ is None
    np.testing.assert_array_equal(pre.predict(D), pre.labels_)
    with pytest.raises(InvalidParameterError, match="clara_params"):
        CLARA(3, clara_params={"variant": "clara"}).fit(X)
