"""One suffix table decides "which store kind?" and "matrix or features?" for every entry point.

``chunked_medoids.sources.inputs`` holds the table; ``open_dissimilarity``, ``from_features``,
``build_dissimilarity``, ``store_info``, the estimators and ``clara`` all use it, so an input
means the same thing everywhere -- e.g. a ``.he5`` file is HDF5 for all of them.
"""

import os

import h5py
import numpy as np
import pytest
import zarr

import chunked_medoids as cm
from chunked_medoids.sources import INPUT_SUFFIXES, input_kind, resolve_input
from chunked_medoids.sources.inputs import (
    FEATURES,
    MATRIX,
    WRITABLE_KINDS,
    describe_suffixes,
    path_kind,
    suffixes,
)


@pytest.fixture
def X():
    return np.random.default_rng(5).normal(size=(40, 3))


def _write(path, arr):
    """Write ``arr`` to ``path`` in the store kind its suffix names."""
    kind = path_kind(path)
    if kind == "npy":
        np.save(path, arr)
    elif kind == "zarr":
        z = zarr.create_array(store=str(path), shape=arr.shape, chunks=(7, arr.shape[1]), dtype=arr.dtype)
        z[:] = arr
    elif kind == "hdf5":
        with h5py.File(path, "w") as f:
            f.create_dataset("data", data=arr)
    else:
        np.savetxt(path, arr, delimiter=",")


def test_table_kinds_and_roles():
    assert set(suffixes("hdf5")) == {".h5", ".hdf5", ".he5"}
    assert suffixes("zarr") == (".zarr",) and suffixes("npy") == (".npy",)
    assert set(suffixes(role=MATRIX)) == {".zarr", ".h5", ".hdf5", ".he5", ".npy"}
    assert set(suffixes(role=FEATURES)) == set(INPUT_SUFFIXES)
    assert describe_suffixes("hdf5") == ".h5, .hdf5 or .he5"
    for suffix, (kind, _roles) in INPUT_SUFFIXES.items():
        assert path_kind(f"a/b{suffix}") == kind
        assert path_kind(f"a/B{suffix.upper()}") == kind  # case-insensitive
        assert path_kind(f"b{suffix}/") == kind  # trailing slash of a directory store
    assert path_kind("x.parquet") is None and path_kind("zarr") is None
    assert set(WRITABLE_KINDS) == {"zarr", "hdf5"}


def test_input_kind_of_objects(tmp_path, X):
    import dask.array as da

    D = cm.from_features(X).read_rows(0, 40)
    assert input_kind(D) == "numpy"
    assert input_kind(D.tolist()) == "array"
    assert input_kind(da.from_array(D)) == "dask"
    assert input_kind(cm.open_dissimilarity(D)) == "source"
    z = zarr.create_array(store=str(tmp_path / "z.zarr"), shape=D.shape, dtype=D.dtype)
    assert input_kind(z) == "zarr"
    with h5py.File(tmp_path / "f.h5", "w") as f:
        dset = f.create_dataset("d", data=D)
        assert input_kind(dset) == "hdf5" and input_kind(f) == "hdf5"
    lazy = {"numpy": False, "array": False, "dask": True, "zarr": True, "source": True}
    for obj in (D, D.tolist(), da.from_array(D), z, cm.open_dissimilarity(D)):
        assert resolve_input(obj).lazy == lazy[input_kind(obj)]


@pytest.mark.parametrize("suffix", suffixes(role=MATRIX))
def test_every_matrix_suffix_opens_as_a_matrix(tmp_path, X, suffix):
    D = cm.from_features(X).read_rows(0, 40)
    path = tmp_path / f"D{suffix}"
    _write(path, D)
    opts = {"dataset": "data"} if path_kind(path) == "hdf5" else {}
    src = cm.open_dissimilarity(path, **opts)
    assert src.kind == path_kind(path) or (src.kind == "numpy" and path_kind(path) == "npy")
    np.testing.assert_array_equal(src.read_rows(0, 40), D)
    # a foreign matrix carries no build metadata: its role is only the (features) default
    r = resolve_input(path, dataset=opts.get("dataset"))
    assert r.kind == path_kind(path) and r.lazy and not r.decided and not r.managed
    assert resolve_input(path, precomputed=True).role == MATRIX


@pytest.mark.parametrize("suffix", suffixes(role=FEATURES))
def test_every_feature_suffix_means_the_same_to_from_features(tmp_path, X, suffix):
    path = tmp_path / f"X{suffix}"
    _write(path, X)
    if path_kind(path) == "text":  # text features are read by the CLI, not streamed
        with pytest.raises(cm.InvalidParameterError, match=r"\.he5"):
            cm.from_features(path)
        with pytest.raises(cm.InvalidTypeError):
            cm.open_dissimilarity(path)
        return
    src = cm.from_features(path, dtype="float64")
    np.testing.assert_array_equal(src.read_rows(0, 40), cm.from_features(X, dtype="float64").read_rows(0, 40))
    r = resolve_input(path)
    assert (r.role, r.decided, r.managed) == (FEATURES, False, False)
    # the estimator streams the same path lazily and fits what the array gives
    a = cm.KMedoids(3, random_state=0).fit(path)
    b = cm.KMedoids(3, random_state=0).fit(X)
    np.testing.assert_array_equal(a.medoid_indices_, b.medoid_indices_)


@pytest.mark.parametrize("suffix", suffixes(kind="hdf5") + suffixes(kind="zarr"))
def test_built_stores_are_matrices_everywhere(tmp_path, X, suffix):
    path = tmp_path / f"D{suffix}"
    src = cm.build_dissimilarity(X, path)
    ref = cm.from_features(X).read_rows(0, 40)
    np.testing.assert_array_equal(src.read_rows(0, 40), ref)
    src.close()
    info = cm.store_info(path)
    assert info["managed"] and info["complete"] and info["format"] == path_kind(path)
    r = resolve_input(path)
    assert (r.kind, r.role, r.decided, r.managed) == (path_kind(path), MATRIX, True, True)
    assert r.meta["n"] == 40
    src = cm.open_dissimilarity(path)
    np.testing.assert_array_equal(src.read_rows(0, 40), ref)
    src.close()
    # clara sees a built store as a matrix without being told (same result as precomputed=True)
    auto = cm.clara(os.fspath(path), 3, random_state=1, n_samples=2, sample_size=20)
    told = cm.clara(os.fspath(path), 3, random_state=1, n_samples=2, sample_size=20, precomputed=True)
    np.testing.assert_array_equal(auto.medoids, told.medoids)
    assert auto.loss == told.loss
    # and so does the precomputed estimator
    est = cm.KMedoids(3, metric="precomputed", random_state=0).fit(path)
    assert est.medoid_indices_.shape == (3,)


def test_incomplete_built_store_is_still_a_matrix(tmp_path, X):
    path = tmp_path / "D.he5"
    cm.build_dissimilarity(X, path, block_rows=10).close()
    with h5py.File(path, "a") as f:  # withdraw completeness as an interrupted build leaves it
        import json

        from chunked_medoids._store_meta import ATTR

        meta = json.loads(f["dissimilarity"].attrs[ATTR])
        meta.update(complete=False, completed_stripes=[0])
        f["dissimilarity"].attrs[ATTR] = json.dumps(meta)
    r = resolve_input(path)
    assert r.role == MATRIX and r.managed and not r.meta["complete"]
    with pytest.raises(cm.IncompleteStoreError):
        cm.clara(os.fspath(path), 3, random_state=1, n_samples=2, sample_size=20)


def test_precomputed_must_be_a_bool():
    with pytest.raises(cm.InvalidTypeError, match="precomputed"):
        resolve_input(np.zeros((2, 2)), precomputed="yes")


def test_build_output_suffixes_come_from_the_table(tmp_path, X):
    with pytest.raises(cm.InvalidParameterError, match=r"\.zarr.*\.h5, \.hdf5 or \.he5"):
        cm.build_dissimilarity(X, tmp_path / "D.npy")
    with pytest.raises(cm.InvalidParameterError, match=r"\.he5"):
        cm.store_info(tmp_path / "D.csv")
