"""A worker that dies holding a pass's scattered data: the pass runs again, identically.

The engine scatters each pass's state to one worker (never ``broadcast=True``: replication
to every worker waits forever for a worker that died but is still listed).  When the holder
dies before the block tasks fetched the state, they are cancelled for "lost dependencies";
the engine then runs the pass again.  These tests kill the holder for real (SIGKILL of the
worker process) right after the scatter.
"""

import logging
import os
import signal
import time

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import engine as engine_mod

pytestmark = pytest.mark.distributed


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(11)
    X = np.concatenate([rng.normal(c, 0.6, size=(60, 3)) for c in (0, 4, 8, 12)])
    path = tmp_path_factory.mktemp("lost") / "D.zarr"
    cm.build_dissimilarity(X, path, block_rows=20)
    return path


def _wait_gone(client, address, timeout=60.0):
    t0 = time.monotonic()
    while address in client.scheduler_info()["workers"]:
        if time.monotonic() - t0 > timeout:
            raise AssertionError(f"the scheduler still lists the killed worker {address}")
        time.sleep(0.1)


def test_state_holder_killed_pass_runs_again_identically(store, monkeypatch, caplog):
    from distributed import Client, LocalCluster

    ref = cm.fastpam2(store, 4, random_state=1, block_rows=20, num_workers=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=50) as cluster, Client(cluster) as client:
        pids = client.run(os.getpid)
        real = engine_mod._scatter
        calls, killed = [], []

        def scatter_then_kill(cl, obj):
            calls.append(type(obj).__name__)
            if killed or not isinstance(obj, dict):
                return real(cl, obj)
            address = sorted(pids)[0]
            fut = cl.scatter([obj], workers=[address], hash=False)[0]
            os.kill(pids[address], signal.SIGKILL)  # the only copy of the state dies
            killed.append(address)
            _wait_gone(cl, address)
            return fut

        monkeypatch.setattr(engine_mod, "_scatter", scatter_then_kill)
        with caplog.at_level(logging.WARNING, logger="chunked_medoids.engine"):
            got = cm.fastpam2(store, 4, random_state=1, block_rows=20, client=client)
        assert killed
        assert pids[killed[0]] not in client.run(os.getpid).values()
    assert any("running the pass again (attempt 2 of" in r.getMessage() for r in caplog.records)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    assert got.loss == ref.loss and got.loss_history == ref.loss_history


def test_no_scatter_broadcasts(store, monkeypatch):
    """Every scatter of a pass goes to one worker; the stored source is not scattered at all."""
    from distributed import Client, LocalCluster

    seen = []
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=50) as cluster, Client(cluster) as client:
        orig = Client.scatter

        def recording(self, data, *args, **kwargs):
            seen.append((type(data[0]).__name__ if isinstance(data, list) else type(data).__name__,
                         kwargs.get("broadcast", False)))
            return orig(self, data, *args, **kwargs)

        monkeypatch.setattr(Client, "scatter", recording)
        res = cm.fastpam2(store, 3, random_state=2, block_rows=20, client=client, max_iter=2)
    assert res.n_iter >= 1
    assert seen, "the passes scattered nothing"
    assert not any(b for _, b in seen), seen
    assert not any(name.endswith("Source") for name, _ in seen), seen  # stored: inside the tasks
