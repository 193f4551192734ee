"""A real Dask cluster of processes for the tests: ``dask scheduler`` and ``dask worker``.

Started as on a real cluster (own processes, a scheduler file), so a test can kill the
scheduler or a worker for real.  The workers import this checkout (PYTHONPATH).
"""

import os
import subprocess
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def sub_env() -> dict:
    """The environment of a child process: this checkout first on PYTHONPATH, 1 BLAS thread."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    env["PYTHONPATH"] = os.pathsep.join([ROOT] + [p for p in env.get("PYTHONPATH", "").split(os.pathsep) if p])
    return env


def start_process_cluster(tmp_path, nworkers: int = 2):
    """Start a scheduler and ``nworkers`` one-thread workers; ``(scheduler_file, sched, workers)``."""
    sf = tmp_path / "scheduler.json"
    env = sub_env()
    sched = subprocess.Popen(["dask", "scheduler", "--scheduler-file", str(sf), "--no-dashboard",
                              "--port", "0", "--host", "127.0.0.1"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env, cwd=ROOT)
    workers = subprocess.Popen(["dask", "worker", "--scheduler-file", str(sf), "--nworkers", str(nworkers),
                                "--nthreads", "1", "--no-dashboard"],
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
