import os

import numpy as np
import pytest

# Keep numba/BLAS from oversubscribing the 2 cores while Dask threads run.
os.environ.setdefault("OMP_NUM_THREADS", "1")
# Worker processes of a distributed LocalCluster must be able to import block functions
# defined in test modules (``tests.test_*``): put the repository root on their path.
_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
os.environ["PYTHONPATH"] = os.pathsep.join(
    [_ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
)


def random_symmetric(n, rng, dtype=np.float32, integer=False, high=100):
    """A random valid dissimilarity: symmetric, zero diagonal, non-negative."""
    if integer:
        a = rng.integers(1, high, size=(n, n))
    else:
        a = rng.random((n, n)) * high
    d = np.triu(a, 1)
    d = d + d.T
    return d.astype(dtype)


@pytest.fixture
def rng():
    return np.random.default_rng(12345)


@pytest.fixture(scope="session")
def local_cluster():
    """One distributed LocalCluster (2 worker processes, 1 thread each) for the session."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=40)
    client = Client(cluster)
    try:
        yield client
    finally:
        client.close()
        cluster.close()


def pytest_collection_modifyitems(config, items):
    """A test that starts a distributed cluster is ``distributed`` and ``slow``.

    Tests asking for the ``local_cluster`` fixture get the ``distributed`` marker, and every
    ``distributed`` test the ``slow`` one, so ``pytest -m "not slow"`` (the fast subset for
    local work, docs/development.rst) starts no cluster.  CI runs everything.
    """
    for item in items:
        if "local_cluster" in getattr(item, "fixturenames", ()) and item.get_closest_marker("distributed") is None:
            item.add_marker(pytest.mark.distributed)
        if item.get_closest_marker("distributed") is not None:
            item.add_marker(pytest.mark.slow)
