"""Quickstart: k-medoids of scikit-learn's handwritten digits, all in memory.

Run:  python examples/quickstart.py

The 1797×1797 Euclidean dissimilarity matrix of the digits fits in memory (13 MiB as
float32), so it is simply a numpy array here; every chunked_medoids function accepts it
as well as a zarr/HDF5 store (see out_of_core_zarr.py) or features computed on the fly.
"""

import time

import numpy as np
from sklearn.datasets import load_digits
from sklearn.metrics import adjusted_rand_score

import chunked_medoids as cm


def main():
    digits = load_digits()
    X, y = digits.data, digits.target

    # n×n Euclidean distances, computed block-wise by the library's metric kernels.
    D = cm.from_features(X, "euclidean").read_rows(0, X.shape[0])  # (1797, 1797) float32
    print(f"D: {D.shape} {D.dtype}")

    t0 = time.perf_counter()
    result = cm.fasterpam(D, 10, init="build", random_state=0)
    seconds = time.perf_counter() - t0
    print(result)
    print(f"loss {result.loss:.2f} after {result.n_iter} passes, {result.n_swap} swaps, {seconds:.2f} s")
    print(f"medoids are images of the digits {[int(y[m]) for m in result.medoids]}")
    print(f"adjusted Rand index vs the true digits: {adjusted_rand_score(y, result.labels):.3f}")
    print(f"average medoid silhouette: {cm.medoid_silhouette(D, result.medoids):.3f}")

    # The same clustering straight from the features (distances computed on the fly, never
    # stored): identical medoids, because the on-the-fly source yields the same values.
    same = cm.fasterpam(cm.from_features(X, "euclidean"), 10, init="build", random_state=0)
    assert np.array_equal(same.medoids, result.medoids)
    print("on-the-fly source: same medoids")

    # The scikit-learn style estimator on the features (same driver underneath).
    km = cm.KMedoids(n_clusters=10, metric="euclidean", method="fasterpam", init="build", random_state=0).fit(X)
    assert np.array_equal(km.labels_, result.labels)
    print(f"KMedoids(...).fit(X): medoid indices {km.medoid_indices_.tolist()}, inertia {km.inertia_:.2f}")


if __name__ == "__main__":
    main()
