"""Larger than RAM for real (issue 17): a store bigger than the machine's memory.  Not CI.

Builds the Euclidean matrix of n real pixels (scikit-image ``hubble_deep_field``, a seeded
sample; n = 100000 gives 40 GB in float32, 20 GB in float16) with ``build_dissimilarity``,
then, in a fresh subprocess with the page cache dropped (root), runs FasterPAM (k = 10,
random init) and the medoid silhouette with ``memory_limit``, and reports the build time,
seconds per pass, passes, peak RSS and the total, next to the fastest cold read of the
store's files (1, 4, 8 reader threads), with where the time of each pass went (CPU
seconds of the reads and of the kernels, the machine's load, the disk's busy time:
``benchmarks/_common.py``, ``PASS_CHILD``).  The store is deleted afterwards unless
``--keep``; ``--reuse`` keeps it and reruns on it without building.  Needs the disk space
(check ``df``: 40 GB for float32) and about 10 minutes per dtype on 2 cores.  Prints one
JSON document::

    python benchmarks/bench_larger_than_ram.py --n 100000 --dtypes float32 --dir /tmp/ltr \
        > benchmarks/results/larger_than_ram_100k_float32.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine, run_pass_child  # noqa: E402
from bench_cold_disk import cold_read, drop_caches, pixels  # noqa: E402


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dtypes", default="float16")
    ap.add_argument("--codec", default="default")
    ap.add_argument("--memory-limit", default="2GiB")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--dir", default="/tmp/cm_ltr")
    ap.add_argument("--keep", action="store_true", help="keep the store afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the store, and run on the one already in --dir (built only if missing)")
    args = ap.parse_args(argv)
    import chunked_medoids as cm

    os.makedirs(args.dir, exist_ok=True)
    X = None
    rows = []
    for dtype in args.dtypes.split(","):
        path = os.path.join(args.dir, f"D_{args.n}_{dtype}.zarr")
        row = {"n": args.n, "k": args.k, "dtype": dtype, "codec": args.codec, "memory_limit": args.memory_limit}
        if not (args.reuse and os.path.exists(path)):
            X = pixels("hubble", args.n) if X is None else X
            t0 = time.perf_counter()
            cm.build_dissimilarity(X, path, dtype=dtype, memory_limit="2GiB",
                                   compressor=None if args.codec == "none" else args.codec)
            row["build_s"] = time.perf_counter() - t0
        info = cm.store_info(path)
        row.update(bytes_on_disk=info["size_on_disk"], nbytes=info["nbytes"], scale=info.get("scale"))
        print(json.dumps(row), file=sys.stderr, flush=True)
        row["cold_read_s"] = {t: cold_read(path, t)[0] for t in (1, 4, 8)}
        print(json.dumps(row), file=sys.stderr, flush=True)
        drop_caches()
        row["loadavg_before"] = os.getloadavg()[0]
        t0 = time.perf_counter()
        row["run"] = run_pass_child(path, k=args.k, memory_limit=args.memory_limit, max_iter=args.max_iter,
                                    silhouette=True)
        if "build_s" in row:
            row["total_s"] = row["build_s"] + (time.perf_counter() - t0)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
        if not (args.keep or args.reuse):
            shutil.rmtree(path)
    emit({"machine": machine(), "results": rows, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
