"""Benchmark of build_dissimilarity: throughput, raw-write baseline and peak memory.

Builds the Euclidean dissimilarity of the first ``--n`` pixels of scikit-image's
``hubble_deep_field`` (RGB colour vectors as float64 features) into a float32 store with
``--memory-limit`` (default 20000 points -> a 1.6 GB matrix, 256MiB).  Then writes the same
number of bytes with zarr, uncompressed, same chunks and same thread count, from one
precomputed stripe repeated: the cost of writing alone.  Prints JSON.

    python benchmarks/bench_build.py                 # full size, temporary directory
    python benchmarks/bench_build.py --n 5000 --out /scratch --keep
    python benchmarks/bench_build.py --format hdf5

Peak RSS of the build phase is exact (``getrusage`` lifetime maximum, measured before the
baseline runs) and cross-checked with a 10 ms psutil sampler.  Issue target: < 700 MB.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import PeakRSS, current_rss, emit, hubble_pixels, machine, ru_maxrss_bytes, timer  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000, help="number of pixels / points (default 20000)")
    ap.add_argument("--out", default=None, help="directory for the stores (default: a temporary one)")
    ap.add_argument("--memory-limit", default="256MiB")
    ap.add_argument("--format", choices=("zarr", "hdf5"), default="zarr")
    ap.add_argument("--compressor", default="default", help="compressor name or 'none'")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--keep", action="store_true", help="keep the stores")
    ap.add_argument("--no-baseline", action="store_true")
    args = ap.parse_args(argv)

    import numpy as np

    from chunked_medoids import build_dissimilarity, from_features
    from chunked_medoids._util import parse_memory_limit
    from chunked_medoids.builder import plan_stripes, store_info
    from chunked_medoids.engine import Engine

    X = hubble_pixels(args.n)
    # warm the numba kernels (compile/cache load) outside the measured region
    from_features(X[:64]).read_rows(0, 8)
    import dask.threaded  # noqa: F401  (library imports happen before the baseline)
    import h5py  # noqa: F401
    import zarr  # noqa: F401

    base_rss = current_rss()

    out = args.out or tempfile.mkdtemp(prefix="cm-bench-build-")
    os.makedirs(out, exist_ok=True)
    suffix = ".zarr" if args.format == "zarr" else ".h5"
    store = os.path.join(out, f"hubble_{args.n}{suffix}")
    comp = None if args.compressor == "none" else args.compressor
    n = args.n
    itemsize = np.dtype(args.dtype).itemsize
    nbytes = n * n * itemsize
    try:
        with PeakRSS() as mem, timer() as t:
            src = build_dissimilarity(X, store, dtype=args.dtype, memory_limit=args.memory_limit,
                                      compressor=comp, overwrite=True)
        build_peak = ru_maxrss_bytes()
        info = store_info(store)
        threads = Engine().parallelism
        plan = plan_stripes(n, X.shape[1], itemsize, parse_memory_limit(args.memory_limit), threads,
                            fmt=args.format)
        # correctness spot check: a few rows against numpy
        rows = src.take_rows([0, n // 2, n - 1]).astype(np.float64)
        ref = np.sqrt(((X[[0, n // 2, n - 1], None, :] - X[None, :, :]) ** 2).sum(-1))
        max_err = float(np.abs(rows - ref).max())

        result = {
            "benchmark": "build_dissimilarity",
            "n": n,
            "d": int(X.shape[1]),
            "dtype": args.dtype,
            "format": args.format,
            "memory_limit": args.memory_limit,
            "threads": threads,
            "stripe_rows": info["stripe_rows"],
            "n_stripes": info["n_stripes"],
            "matrix_bytes": nbytes,
            "size_on_disk": info["size_on_disk"],
            "compression_ratio": info["compression_ratio"],
            "compressor": info.get("compressor"),
            "build_seconds": t.seconds,
            "build_MBps": nbytes / t.seconds / 1e6,
            "baseline_rss_bytes": base_rss,
            "peak_rss_bytes": build_peak,
            "peak_rss_sampled_bytes": mem.peak,
            "peak_minus_baseline_bytes": build_peak - base_rss,
            "planned_peak_bytes": plan["estimated_peak"],
            "target_peak_rss_bytes": 700 * 10**6,
            "peak_below_target": build_peak < 700 * 10**6,
            "max_abs_error_vs_numpy": max_err,
            "machine": machine(),
        }
        if not args.no_baseline:
            import zarr

            m = info["stripe_rows"]
            stripe = src.read_rows(0, m)  # one precomputed stripe
            raw = os.path.join(out, f"raw_{n}.zarr")
            shutil.rmtree(raw, ignore_errors=True)
            arr = zarr.create_array(store=raw, shape=(n, n), chunks=(m, n), dtype=args.dtype,
                                    compressors=None, fill_value=0, overwrite=True)

            def write(a):
                b = min(a + m, n)
                arr[a:b] = stripe[: b - a]

            with timer() as tb, ThreadPoolExecutor(threads) as pool:
                list(pool.map(write, range(0, n, m)))
            shutil.rmtree(raw, ignore_errors=True)
            result["raw_write_seconds"] = tb.seconds
            result["raw_write_MBps"] = nbytes / tb.seconds / 1e6
            result["build_over_raw_time_ratio"] = t.seconds / tb.seconds
    finally:
        if not args.keep:
            shutil.rmtree(store, ignore_errors=True) if os.path.isdir(store) else (
                os.path.exists(store) and os.unlink(store))
            if args.out is None:
                shutil.rmtree(out, ignore_errors=True)
    emit(result)


if __name__ == "__main__":
    main()
