"""Out of core: a dissimilarity matrix larger than the memory budget, streamed from zarr.

Run:  python examples/out_of_core_zarr.py [directory]

Builds the 6000×6000 float32 Euclidean matrix (137 MiB) of a blob data set into a zarr
store with a 16 MiB budget, then runs FasterPAM on it with the same budget: the algorithm
holds only a few row blocks plus the n×k medoid table.  The peak of the memory allocated
during each phase is measured with tracemalloc (numpy arrays, decoded chunks and Python
objects; the budget bounds the row blocks, library buffers come on top) and compared with
the matrix size.
"""

import os
import sys
import tempfile
import time
import tracemalloc

from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

import chunked_medoids as cm
from chunked_medoids.builder import store_info

BUDGET = "16MiB"


def measured(label, func, *args, **kwargs):
    """Run func, printing its wall time and the peak of the memory it allocated."""
    tracemalloc.start()
    t0 = time.perf_counter()
    try:
        out = func(*args, **kwargs)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    print(f"{label}: {time.perf_counter() - t0:.1f} s, peak allocated {peak / 2**20:.1f} MiB")
    return out, peak


def main(workdir):
    X, y = make_blobs(n_samples=6000, n_features=10, centers=12, random_state=0)
    store = os.path.join(workdir, "blobs.zarr")

    D, build_peak = measured("build", cm.build_dissimilarity, X, store, "euclidean",
                             memory_limit=BUDGET, overwrite=True)
    info = store_info(store)
    matrix = info["nbytes"]
    print(f"built {store}: {D.n}×{D.n} {D.dtype}, {matrix / 2**20:.0f} MiB uncompressed, "
          f"{info['size_on_disk'] / 2**20:.0f} MiB on disk, row stripes of {info['stripe_rows']} rows")

    result, fit_peak = measured("fasterpam", cm.fasterpam, store, 12, init="lab", random_state=0,
                                memory_limit=BUDGET)
    print(result)
    print(f"loss {result.loss:.1f} after {result.n_iter} passes (one read of D each)")
    print(f"peak memory / matrix size: build {build_peak / matrix:.0%}, fasterpam {fit_peak / matrix:.0%} "
          f"(budget {BUDGET})")
    print(f"adjusted Rand index vs the generating blobs: {adjusted_rand_score(y, result.labels):.3f}")
    assert fit_peak < 0.75 * matrix, "the clustering must not hold the matrix in memory"


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
