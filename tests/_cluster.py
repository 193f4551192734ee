"""A real Dask cluster of processes for the tests: ``dask scheduler`` and ``dask worker``
(or a ``LocalCluster`` of worker processes), and what the distributed walks' tests share.

Started as on a real cluster (own processes, a scheduler file), so a test can kill the
scheduler or a worker for real.  The workers import this checkout (PYTHONPATH).
"""

import os
import subprocess
import sys
import time

import numpy as np

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sub_env() -> dict:
    """The environment of a child process: this checkout first on PYTHONPATH, 1 BLAS thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def start_process_cluster(tmp_path, nworkers: int = 2):
    """Start a scheduler and ``nworkers`` one-thread workers; ``(scheduler_file, sched, workers)``.

    Both run under this interpreter (``python -m`` the modules behind ``dask scheduler`` /
    ``dask worker``), not whichever ``dask`` comes first on PATH: one from another
    environment (e.g. with numpy 2 while the tests run numpy 1.x) cannot unpickle what this
    client sends, nor this client what it returns."""
    sf = tmp_path / "scheduler.json"
    env = sub_env()
    sched = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--scheduler-file", str(sf),
                              "--no-dashboard", "--port", "0", "--host", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    workers = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file", str(sf),
                                "--nworkers", str(nworkers), "--nthreads", "1", "--no-dashboard"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    return sf, sched, workers


def connect_process_cluster(sf, sched, nworkers: int = 2):
    """A client of the cluster once its scheduler file exists and its workers are up."""
    from distributed import Client

    t0 = time.monotonic()
    while not sf.exists():
        assert time.monotonic() - t0 < 60 and sched.poll() is None
        time.sleep(0.05)
    client = Client(scheduler_file=str(sf), timeout="30s")
    client.wait_for_workers(nworkers, timeout=60)
    return client


def stop_processes(*procs) -> None:
    """Kill what still runs of ``procs`` and reap them."""
    for p in procs:
        if p.poll() is None:
            p.kill()
        p.wait()


def local_process_cluster(n_workers: int):
    """``(cluster, client)``: a ``LocalCluster`` of ``n_workers`` one-thread worker processes."""
    from distributed import Client, LocalCluster

    cluster = LocalCluster(n_workers=n_workers, threads_per_worker=1, processes=True,
                           dashboard_address=":0", silence_logs=50)
    return cluster, Client(cluster)


def blobs(n: int, seed: int = 18):
    """``n`` points in 3-d around 8 random centres (the distributed walks' test data)."""
    rng = np.random.default_rng(seed)
    centers = rng.normal(scale=6.0, size=(8, 3))
    return centers[rng.integers(0, 8, n)] + rng.normal(size=(n, 3))


def assert_same_fit(got, ref):
    """Two swap results bitwise equal: medoids, labels, loss, its history, swaps, passes."""
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    assert got.loss == ref.loss
    assert got.loss_history == ref.loss_history
    assert (got.n_swap, got.n_iter, got.extra.get("converged")) == (ref.n_swap, ref.n_iter, ref.extra.get("converged"))
