"""FasterCLARA on millions of points stored in a chunked zarr feature array.

The features are written to a zarr store chunk by chunk (never held in memory whole) and
clustered with :func:`chunked_medoids.clara`, which streams the store in row blocks sized
from ``memory_limit``: sample rows are gathered and every sample's medoids are scored on
all points during those streaming passes.

Usage::

    python examples/clara_millions.py                  # 10^6 x 8, memory_limit 128MiB (< 60 s)
    python examples/clara_millions.py --full           # 10^7 x 8, memory_limit 1GiB
    python examples/clara_millions.py --n 3000000 --k 20 --memory-limit 512MiB
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time

import numpy as np
import zarr

from chunked_medoids import clara


def write_store(path, n, d, centers, seed=0, chunk=250_000):
    """Gaussian blobs around ``centers`` random centres, written chunk by chunk (float32)."""
    rng = np.random.default_rng(seed)
    mu = rng.normal(scale=6.0, size=(centers, d))
    z = zarr.create_array(path, shape=(n, d), chunks=(min(n, 65536), d), dtype="float32")
    for a in range(0, n, chunk):
        b = min(n, a + chunk)
        z[a:b] = (mu[rng.integers(0, centers, b - a)] + rng.normal(size=(b - a, d))).astype(np.float32)
    return z


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--d", type=int, default=8)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--memory-limit", default=None, help="default: 128MiB, or 1GiB with --full")
    ap.add_argument("--full", action="store_true", help="10^7 points within a 1 GiB budget")
    ap.add_argument("--store", default=None, help="zarr path (default: a temporary directory)")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)
    n = 10_000_000 if args.full else args.n
    limit = args.memory_limit or ("1GiB" if args.full else "128MiB")
    tmp = None
    path = args.store
    if path is None:
        tmp = tempfile.TemporaryDirectory()
        path = os.path.join(tmp.name, "features.zarr")
    if not os.path.exists(path):
        t = time.perf_counter()
        write_store(path, n, args.d, centers=args.k, seed=args.seed)
        print(f"wrote {n:,} x {args.d} float32 features to {path} in {time.perf_counter() - t:.1f}s")
    rss0 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    t = time.perf_counter()
    r = clara(path, args.k, variant="fasterclara", memory_limit=limit, random_state=args.seed)
    sec = time.perf_counter() - t
    rss1 = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    print(r)
    print(f"n={r.n:,} k={r.k} sample_size={r.sample_size} samples={r.n_samples} "
          f"memory_limit={limit}: {sec:.1f}s")
    print(f"full-data loss {r.loss:.6g} (mean distance {r.loss / r.n:.4f}); "
          f"sample losses from {max(r.sample_losses):.6g} down to {min(r.sample_losses):.6g} "
          f"(best: sample {r.best_sample})")
    print(f"cluster sizes {np.bincount(r.labels, minlength=r.k).tolist()}")
    print(f"peak RSS of this process {rss1 / 2**20:.0f} MiB (before clustering {rss0 / 2**20:.0f} MiB)")
    if tmp is not None:
        tmp.cleanup()


if __name__ == "__main__":
    main()
