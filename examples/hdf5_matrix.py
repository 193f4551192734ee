"""A dissimilarity matrix in an HDF5 file, under a custom dataset name.

Run:  python examples/hdf5_matrix.py [directory]

HDF5 stores are written by the driver process only (HDF5 has a single writer) and read by
file name inside each task, so they work with local threads and with a distributed
cluster on a shared file system.  One file may hold several matrices: here the Manhattan
and the Euclidean matrix of the same features live side by side.
"""

import os
import sys
import tempfile

import h5py
import numpy as np
from sklearn.datasets import load_wine
from sklearn.preprocessing import StandardScaler

import chunked_medoids as cm
from chunked_medoids.builder import store_info


def main(workdir):
    X = StandardScaler().fit_transform(load_wine().data)  # 178 wines, 13 features
    path = os.path.join(workdir, "wine.h5")

    for metric in ("manhattan", "euclidean"):
        cm.build_dissimilarity(X, path, metric, dataset=f"distances/{metric}", memory_limit="8MiB")
    with h5py.File(path, "r") as f:
        print("datasets in", path, ":", sorted(f["distances"]))
    info = store_info(path, dataset="distances/manhattan")
    print(f"distances/manhattan: shape {info['shape']}, {info['dtype']}, chunks {info['chunks']}, "
          f"metric {info['metric']}, complete {info['complete']}")

    # open by file name + dataset name (also what a worker does)
    D = cm.open_dissimilarity(path, dataset="distances/manhattan")
    fast = cm.fastpam2(D, 3, init="build")
    eager = cm.fasterpam(D, 3, init="build")
    print("fastpam2 :", fast)
    print("fasterpam:", eager)
    # both reach a local optimum; from BUILD on this small set they agree
    print(f"same medoids: {sorted(fast.medoids.tolist()) == sorted(eager.medoids.tolist())}")

    # reading the matrix back gives exactly the on-the-fly values (float32)
    ref = cm.from_features(X, "manhattan").read_rows(0, len(X))
    assert np.array_equal(D.read_rows(0, D.n), ref)
    print("stored values equal the on-the-fly dissimilarities bit for bit")


if __name__ == "__main__":
    if len(sys.argv) > 1:
        os.makedirs(sys.argv[1], exist_ok=True)
        main(sys.argv[1])
    else:
        with tempfile.TemporaryDirectory() as tmp:
            main(tmp)
