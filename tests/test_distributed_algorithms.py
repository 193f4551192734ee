"""Every registered algorithm gives identical medoids and labels on every scheduler.

Local threads (default), ``num_workers=1`` and a distributed ``LocalCluster`` with two
worker processes, over zarr, HDF5 and on-the-fly (features) sources.  Real schedulers, no
mocks.  The method list comes from the registry, so a newly registered method is covered
automatically.
"""

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids.algorithms import METHODS, _load_all

_load_all()
N, K = 72, 3


@pytest.fixture(scope="module")
def features():
    return np.random.default_rng(7).normal(size=(N, 4))


@pytest.fixture(scope="module")
def sources(features, tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    onthefly = cm.from_features(features, metric="euclidean", dtype="float32")
    zarr_src = cm.build_dissimilarity(features, str(d / "D.zarr"), metric="euclidean",
                                      memory_limit=2**16)
    h5_src = cm.build_dissimilarity(features, str(d / "D.h5"), metric="euclidean",
                                    memory_limit=2**16)
    return {"features": onthefly, "zarr": zarr_src, "hdf5": h5_src}


def _run(name, src, **sched):
    spec = METHODS[name]
    return spec.func(src, K, random_state=3, memory_limit=2**16, **sched)


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["zarr", "hdf5", "features"])
@pytest.mark.parametrize("name", sorted(METHODS))
def test_same_result_on_every_scheduler(name, kind, sources, local_cluster):
    src = sources[kind]
    threads = _run(name, src)
    single = _run(name, src, num_workers=1)
    dist = _run(name, src, client=local_cluster)
    for other in (single, dist):
        np.testing.assert_array_equal(other.medoids, threads.medoids)
        np.testing.assert_array_equal(other.labels, threads.labels)
        assert other.loss == threads.loss


def test_sources_hold_identical_values(sources):
    ref = sources["features"].read_rows(0, N)
    for kind in ("zarr", "hdf5"):
        np.testing.assert_array_equal(sources[kind].read_rows(0, N), ref)


def test_registry_covers_the_exact_family():
    assert {"pam", "fastpam1", "fastpam2", "fasterpam", "alternating"} <= set(METHODS)


@pytest.mark.distributed
@pytest.mark.parametrize("kind", ["zarr", "hdf5", "features"])
def test_inits_silhouette_dynmsc_same_on_every_scheduler(kind, sources, local_cluster):
    """The public functions outside METHODS: BUILD, LAB, silhouette, DynMSC."""
    src = sources[kind]
    runs = [{}, {"num_workers": 1}, {"client": local_cluster}]
    builds = [cm.build(src, K, memory_limit=2**16, **s) for s in runs]
    labs = [cm.lab(src, K, random_state=5, memory_limit=2**16, **s) for s in runs]
    labels = cm.fasterpam(src, K, random_state=0).labels
    sils = [cm.silhouette(src, labels, samples=True, memory_limit=2**16, **s) for s in runs]
    dyn = [cm.dynmsc(src, 5, memory_limit=2**16, **s) for s in runs]
    for other in range(1, 3):
        np.testing.assert_array_equal(builds[other], builds[0])
        np.testing.assert_array_equal(labs[other], labs[0])
        np.testing.assert_array_equal(sils[other], sils[0])
        np.testing.assert_array_equal(dyn[other].medoids, dyn[0].medoids)
        assert dyn[other].scores == dyn[0].scores
