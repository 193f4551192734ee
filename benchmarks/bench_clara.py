"""CLARA family on the ~2,000,000 pixels of scikit-image's retina image (RGB, Euclidean).

Times and FULL-data losses (Σ_o min_m ‖x_o − x_m‖, float64, correctly rounded) of

* fasterclara / fastclara / classic clara with their default settings (memory_limit 1GiB),
* fasterclara with the paper's small samples (80 + 4k points, 5 samples),
* OneBatchPAM (``onebatch`` package) when importable; its default batch (100·ln(n·k)
  columns) needs an n × batch float64 matrix (27 GB at 2M points, k = 10), so the batch is
  capped to fit ``--onebatch-gb`` (reported),
* FasterPAM on the full data is O(n²) per pass (~4·10^12 distances per pass at 2M): it is
  run on a uniform subsample of ``--fasterpam-n`` points instead (reported as such), its
  medoids scored on the full data.

A second mode checks the memory claim at full size: ``--synthetic 10000000`` writes a
10^7 × 8 float32 zarr feature store (Gaussian blobs) and runs fasterclara on it with
``--memory-limit`` (default 1GiB), reporting time, loss and the process's peak RSS growth
over a baseline taken after a warm-up run.

Usage::

    python benchmarks/bench_clara.py --synthetic 10000000 --k 10
    python benchmarks/bench_clara.py                 # full image, k = 10
    python benchmarks/bench_clara.py --k 100
    python benchmarks/bench_clara.py --n 200000 --k 10 --methods fasterclara,clara

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chunked_medoids.algorithms.clara import clara  # noqa: E402
from chunked_medoids.metrics import resolve_metric  # noqa: E402

ALL = ("fasterclara", "fastclara", "clara", "fasterclara_paper", "onebatch", "fasterpam_subsample")


def retina_pixels(n=None, seed=0):
    from skimage import data

    X = data.retina().reshape(-1, 3).astype(np.float64)
    if n is not None and n < X.shape[0]:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
        X = X[idx]
    return np.ascontiguousarray(X)


def full_loss(X, medoids, chunk=200_000):
    """Σ_o min_m d(x_o, x_m) over all points (exactly rounded float64)."""
    metric = resolve_metric("euclidean")
    C = X[np.asarray(medoids)]
    parts = []
    for a in range(0, X.shape[0], chunk):
        d = metric.pairwise_new(X[a:a + chunk], C)
        parts.append(d.min(axis=1))
    return math.fsum(np.concatenate(parts).tolist())


def run(method, X, k, seed, args):
    n = X.shape[0]
    t0 = time.perf_counter()
    info = {}
    if method in ("fasterclara", "fastclara", "clara"):
        r = clara(X, k, variant=method, random_state=seed, memory_limit=args.memory_limit)
        medoids = r.medoids
        info = {"sample_size": r.sample_size, "n_samples": r.n_samples, "reported_loss": r.loss}
    elif method == "fasterclara_paper":
        s = min(n, 80 + 4 * k)
        r = clara(X, k, variant="fasterclara", sample_size=s, n_samples=5, random_state=seed,
                  memory_limit=args.memory_limit)
        medoids = r.medoids
        info = {"sample_size": s, "n_samples": 5, "reported_loss": r.loss}
    elif method == "onebatch":
        try:
            from onebatch import OneBatchPAM
        except ImportError:
            return {"skipped": "onebatch not importable (pip install onebatch)"}
        auto = int(100.0 * np.log(max(2, n * max(1, k))))
        cap = int(args.onebatch_gb * 1e9 // (8 * n))
        batch = max(k, min(auto, cap, n))
        t0 = time.perf_counter()
        est = OneBatchPAM(n_medoids=k, batch_size=batch, random_state=seed).fit(X)
        medoids = np.asarray(est.medoid_indices_)
        info = {"batch_size": batch, "auto_batch_size": auto,
                "note": "batch capped to fit memory" if batch < auto else "auto batch"}
    elif method == "fasterpam_subsample":
        from chunked_medoids.algorithms.fasterpam import fasterpam

        m = min(n, args.fasterpam_n)
        idx = np.sort(np.random.default_rng(seed).choice(n, size=m, replace=False))
        Xs = X[idx]
        D = resolve_metric("euclidean").pairwise_new(Xs, Xs)
        r = fasterpam(D, k, random_state=seed)
        medoids = idx[r.medoids]
        info = {"subsample": m, "note": f"FasterPAM on a uniform subsample of {m} points "
                                        "(full data is O(n^2) per pass); medoids scored on all points"}
    else:
        raise ValueError(method)
    seconds = time.perf_counter() - t0
    loss = full_loss(X, medoids)
    return {"seconds": round(seconds, 3), "loss": loss, "mean_distance": loss / n, **info}


def synthetic(n, k, seed, memory_limit, store=None):
    """fasterclara on an n × 8 float32 zarr store; peak RSS growth in MiB."""
    import resource
    import tempfile

    import psutil
    import zarr

    tmp = None
    if store is None:
        tmp = tempfile.TemporaryDirectory()
        store = os.path.join(tmp.name, "x.zarr")
    t = time.perf_counter()
    if not os.path.exists(store):
        rng = np.random.default_rng(seed)
        mu = rng.normal(scale=6.0, size=(k, 8))
        z = zarr.create_array(store, shape=(n, 8), chunks=(65536, 8), dtype="float32")
        for a in range(0, n, 250_000):
            b = min(n, a + 250_000)
            z[a:b] = (mu[rng.integers(0, k, b - a)] + rng.normal(size=(b - a, 8))).astype(np.float32)
    write_s = time.perf_counter() - t
    clara(np.random.default_rng(0).normal(size=(3000, 8)).astype("float32"), k, sample_size=300,
          n_samples=3, random_state=0)  # warm-up: numba kernels loaded
    base = psutil.Process().memory_info().rss
    peak_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    r = clara(store, k, variant="fasterclara", memory_limit=memory_limit, random_state=seed)
    sec = time.perf_counter() - t
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    out = {"dataset": f"synthetic zarr store {n} x 8 float32 (chunks 65536 rows)", "n": n, "k": k,
           "memory_limit": memory_limit, "write_seconds": round(write_s, 2), "seconds": round(sec, 2),
           "loss": r.loss, "mean_distance": r.loss / n, "sample_size": r.sample_size,
           "n_samples": r.n_samples, "baseline_rss_mib": round(base / 2**20, 1),
           "peak_rss_mib": round(peak / 2**20, 1),
           "peak_growth_mib": round((peak - base) / 2**20, 1),
           "note": "peak_growth is an upper bound when the peak before clustering was higher"
                   if peak_before > base else "peak growth over the post-warm-up baseline"}
    if tmp is not None:
        tmp.cleanup()
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None, help="use a random subset of n pixels (default: all)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--methods", default=",".join(ALL), help=f"comma-separated subset of {ALL}")
    ap.add_argument("--onebatch-gb", type=float, default=4.0, help="memory cap (GB) of OneBatchPAM's batch matrix")
    ap.add_argument("--fasterpam-n", type=int, default=20000)
    ap.add_argument("--synthetic", type=int, default=None, metavar="N",
                    help="instead: fasterclara on an N x 8 float32 zarr store, reporting peak RSS")
    ap.add_argument("--store", default=None, help="zarr path for --synthetic (default: temporary)")
    args = ap.parse_args(argv)
    if args.synthetic:
        print(json.dumps(synthetic(args.synthetic, args.k, args.seed, args.memory_limit, args.store), indent=2))
        return
    X = retina_pixels(args.n, args.seed)
    out = {"dataset": "skimage.data.retina() RGB pixels", "n": int(X.shape[0]), "d": 3, "k": args.k,
           "seed": args.seed, "memory_limit": args.memory_limit, "cpus": os.cpu_count(),
           "python": platform.python_version(), "results": {}}
    for m in args.methods.split(","):
        m = m.strip()
        if m not in ALL:
            ap.error(f"unknown method {m!r}; choose from {ALL}")
        out["results"][m] = run(m, X, args.k, args.seed, args)
        print(f"# {m}: {out['results'][m]}", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
