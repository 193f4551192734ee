"""Generated tests/data/fused_fixture.npz and fused_fixture_hashes.json with the code BEFORE the
fused kernels (commit e2f9921); kept to show how.  Do not rerun to "fix" a failing hash test."""
import hashlib
import json
import os
import sys
import tempfile

import numpy as np

sys.path.insert(0, os.getcwd())
from chunked_medoids import build_dissimilarity, from_features  # noqa: E402

rng = np.random.default_rng(20261201)
Xs = {}
A = rng.normal(size=(67, 5))
A[10] = A[3]
A[20] = 0.0
A[21] = 0.0
A[30] = 7.0
Xs["normal"] = A
Xs["counts"] = rng.integers(0, 6, size=(41, 7)).astype(np.float64)
Xs["wide"] = rng.uniform(-3, 3, size=(37, 33)) * rng.uniform(0.01, 100, size=(1, 33))
B = rng.normal(size=(29, 3)) * 1e15
B[5] = B[7]
Xs["big"] = B
Xs["d1"] = np.round(rng.normal(size=(23, 1)), 2)
Xs["pix"] = rng.integers(0, 256, size=(53, 3)).astype(np.float64)
cases = []
for xname in Xs:
    for metric, params in [("euclidean", {}), ("sqeuclidean", {}), ("manhattan", {}), ("chebyshev", {}),
                           ("minkowski", {"p": 3}), ("minkowski", {"p": 1.5}), ("cosine", {}),
                           ("correlation", {}), ("canberra", {}), ("braycurtis", {}), ("hamming", {}),
                           ("jaccard", {}), ("gower", {"categorical": [0]})]:
        for dtype in ("float32", "float64"):
            cases.append((xname, metric, params, dtype))
    cases.append((xname, "manhattan", {}, "int64"))
cases.append(("counts", "manhattan", {}, "int32"))
cases.append(("pix", "sqeuclidean", {}, "int32"))
out = []
for xname, metric, params, dtype in cases:
    X = Xs[xname]
    if metric == "sqeuclidean" and xname == "big" and dtype == "float32":
        continue
    try:
        D = from_features(X, metric, dtype=dtype, **params).read_rows(0, X.shape[0])
    except Exception as exc:
        print("skip", xname, metric, params, dtype, type(exc).__name__, exc)
        continue
    h = hashlib.sha256(np.ascontiguousarray(D).tobytes()).hexdigest()
    out.append({"X": xname, "metric": metric, "params": params, "dtype": dtype, "sha256": h})
# builder output (zarr and h5), a few cases with small stripes
with tempfile.TemporaryDirectory() as td:
    for i, (xname, metric, params, dtype, suffix, br) in enumerate([
            ("normal", "euclidean", {}, "float32", ".zarr", 9), ("wide", "cosine", {}, "float64", ".h5", 5),
            ("pix", "manhattan", {}, "float32", ".zarr", 53), ("counts", "correlation", {}, "float32", ".h5", 7),
            ("normal", "minkowski", {"p": 3}, "float32", ".zarr", 4)]):
        X = Xs[xname]
        src = build_dissimilarity(X, os.path.join(td, f"s{i}{suffix}"), metric, dtype=dtype, block_rows=br, **params)
        D = src.read_rows(0, src.n)
        h = hashlib.sha256(np.ascontiguousarray(D).tobytes()).hexdigest()
        out.append({"X": xname, "metric": metric, "params": params, "dtype": dtype, "store": suffix,
                    "block_rows": br, "sha256": h})
np.savez("tests/data/fused_fixture.npz", **Xs)
json.dump(out, open("tests/data/fused_fixture_hashes.json", "w"), indent=1)
print(len(out), "hashes")
