"""FasterPAM on the workers of a SLURM cluster started from Python with dask-jobqueue.

The Python counterpart of ``slurm_job.sh`` (which starts Dask with dask-mpi inside one
batch job): here this script runs on a login node (or in a small job), and
``dask_jobqueue.SLURMCluster`` submits one SLURM job per worker.  FasterPAM's eager walk
then runs on the workers: each reads its share of the store's rows once and holds them,
and this process only coordinates (one round trip per batch of candidates).  The result
is bitwise the sequential one, whatever the number of workers.

Run on a SLURM machine::

    pip install chunked-medoids dask-jobqueue
    python examples/slurm_cluster.py /shared/D.zarr 20 8     # store, k, workers

The store must be on a file system every node sees (workers open it by path); each
worker needs about ``n² · 4 / workers`` bytes for its rows plus ~1 GB.  Without SLURM
(no ``sbatch`` or no dask-jobqueue) the script runs the same fit on a local cluster of
two worker processes, on a small store it builds itself, so it can be tried anywhere.
"""

from __future__ import annotations

import os
import shutil
import sys
import tempfile

import numpy as np

import chunked_medoids as cm


def slurm_cluster(workers: int, memory_per_worker: str = "8GB"):
    """A dask-jobqueue SLURMCluster of ``workers`` single-threaded workers (one job each)."""
    from dask_jobqueue import SLURMCluster

    cluster = SLURMCluster(
        cores=1, processes=1, memory=memory_per_worker,  # one worker process, one thread per job
        walltime="04:00:00",
        job_extra_directives=["--signal=B:USR1@300"],    # see slurm_job.sh for checkpointing
        # queue="compute", account="myproject", interface="ib0",   # site-specific
    )
    cluster.scale(jobs=workers)
    return cluster


def local_cluster(workers: int):
    from distributed import LocalCluster

    return LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=":0")


def main(argv):
    from distributed import Client

    on_slurm = shutil.which("sbatch") is not None
    try:
        import dask_jobqueue  # noqa: F401
    except ImportError:
        on_slurm = False
    tmp = None
    if len(argv) >= 2 and on_slurm:
        store, k = argv[0], int(argv[1])
        workers = int(argv[2]) if len(argv) > 2 else 4
        cluster = slurm_cluster(workers)
    else:
        print("no SLURM here (or no dask-jobqueue): running on a local cluster of 2 worker processes")
        tmp = tempfile.mkdtemp(prefix="cm_slurm_example_")
        rng = np.random.default_rng(0)
        X = np.concatenate([rng.normal(c, 1.0, size=(400, 2)) for c in ((0, 0), (6, 0), (0, 6), (6, 6))])
        store = cm.build_dissimilarity(X, os.path.join(tmp, "D.zarr"), metric="euclidean")
        k, workers = 4, 2
        cluster = local_cluster(workers)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(workers, timeout=600)
            # checkpoint= makes the fit resumable (rerun the same call after a walltime kill)
            res = cm.fasterpam(store, k, init="random", random_state=0, client=client)
            info = res.distributed
            print(f"medoids {res.medoids.tolist()}  loss {res.loss:.6g}  swaps {res.n_swap}  "
                  f"passes {res.n_iter}")
            print(f"walked on {info['workers']} workers, rows {info['rows']}, "
                  f"{info['round_trips']} round trips (per pass: {info['pass_round_trips']})")
    finally:
        cluster.close()
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main(sys.argv[1:])
