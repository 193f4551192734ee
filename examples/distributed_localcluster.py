"""Distributed: the same clustering on a dask.distributed cluster and on local threads.

Run:  python examples/distributed_localcluster.py [directory]

Starts a LocalCluster of 2 worker processes (1 thread each) -- replace it with
``Client(scheduler_file=...)`` for a real cluster (dask-mpi, dask-jobqueue).  The workers
write the zarr store's row stripes themselves and read them back by path during the
clustering (on a cluster the store must live on a shared file system).  Results are
identical to the local threaded scheduler: the engine reduces the per-block results in a
fixed order, whatever the number of workers or the scheduling.
"""

import os
import sys
import tempfile
import time

import numpy as np
from distributed import Client, LocalCluster
from sklearn.datasets import make_blobs

import chunked_medoids as cm


def main(workdir):
    X, _ = make_blobs(n_samples=2000, n_features=8, centers=8, random_state=1)
    store = os.path.join(workdir, "blobs.zarr")

    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=None) as cluster, Client(cluster) as client:
        print(client)
        t0 = time.perf_counter()
        cm.build_dissimilarity(X, store, "euclidean", memory_limit="32MiB", client=client)
        print(f"built {store} on the cluster in {time.perf_counter() - t0:.1f} s")

        results = {}
        for name, func in (("fastpam2", cm.fastpam2), ("fasterpam", cm.fasterpam)):
            t0 = time.perf_counter()
            on_cluster = func(store, 8, init="build", memory_limit="32MiB", client=client)
            t1 = time.perf_counter()
            on_threads = func(store, 8, init="build", memory_limit="32MiB")
            t2 = time.perf_counter()
            same = (np.array_equal(on_cluster.medoids, on_threads.medoids)
                    and np.array_equal(on_cluster.labels, on_threads.labels)
                    and on_cluster.loss == on_threads.loss)
            print(f"{name:9s}: loss {on_cluster.loss:.3f}, {on_cluster.n_iter} iterations; cluster "
                  f"{t1 - t0:.2f} s, threads {t2 - t1:.2f} s; identical results: {same}")
            assert same, f"{name}: cluster and threads disagree"
            results[name] = on_cluster
    print(f"fastpam2 and fasterpam reach losses {results['fastpam2'].loss:.3f} and "
          f"{results['fasterpam'].loss:.3f}")


if __name__ == "__main__":  # required: worker processes import this module
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
