"""Larger than RAM for real (issue 17): a store bigger than the machine's memory.  Not CI.

Builds the Euclidean matrix of n real pixels (scikit-image ``hubble_deep_field``, a seeded
sample; n = 100000 gives 40 GB in float32, 20 GB in float16) with ``build_dissimilarity``,
then, in a fresh subprocess with the page cache dropped (root), runs FasterPAM (k = 10,
random init) and the medoid silhouette with ``memory_limit``, and reports the build time,
seconds per pass, passes, peak RSS and the total, next to the fastest cold read of the
store's files (1, 4, 8 reader threads).  The store is deleted afterwards unless ``--keep``.
Needs the disk space (check ``df``) and an hour or more per dtype on 2 cores.  Prints one
JSON document::

    python benchmarks/bench_larger_than_ram.py --n 100000 --dtypes float16 --dir /work/bench_tmp/ltr
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine  # noqa: E402
from bench_cold_disk import cold_read, drop_caches, pixels  # noqa: E402

CHILD = r"""
import json, logging, re, resource, sys, time
import chunked_medoids as cm
spec = json.loads(sys.argv[1])
passes = []
class H(logging.Handler):
    def emit(self, rec):
        m = re.search(r"pass (\d+): .* ([0-9.]+)s read", rec.getMessage())
        if m:
            passes.append(float(m.group(2)))
logging.getLogger("chunked_medoids").addHandler(H())
logging.getLogger("chunked_medoids").setLevel(logging.INFO)
src = cm.open_dissimilarity(spec["store"])
t0 = time.perf_counter()
res = cm.fasterpam(src, spec["k"], init="random", random_state=0, memory_limit=spec["memory_limit"],
                   max_iter=spec["max_iter"])
t1 = time.perf_counter()
sil = cm.medoid_silhouette(src, res.medoids)  # k medoid rows: no budget needed
t2 = time.perf_counter()
print(json.dumps({"fasterpam_s": t1 - t0, "passes": res.n_iter, "pass_s": passes, "swaps": res.n_swap,
                  "loss": res.loss, "medoid_silhouette": float(sil), "silhouette_s": t2 - t1,
                  "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}))
"""


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=100000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--dtypes", default="float16")
    ap.add_argument("--codec", default="default")
    ap.add_argument("--memory-limit", default="2GiB")
    ap.add_argument("--max-iter", type=int, default=100)
    ap.add_argument("--dir", default="/tmp/cm_ltr")
    ap.add_argument("--keep", action="store_true")
    args = ap.parse_args(argv)
    import chunked_medoids as cm

    os.makedirs(args.dir, exist_ok=True)
    X = pixels("hubble", args.n)
    rows = []
    for dtype in args.dtypes.split(","):
        path = os.path.join(args.dir, f"D_{args.n}_{dtype}.zarr")
        row = {"n": args.n, "k": args.k, "dtype": dtype, "codec": args.codec, "memory_limit": args.memory_limit}
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
        spec = json.dumps({"store": path, "k": args.k, "memory_limit": args.memory_limit,
                           "max_iter": args.max_iter})
        t0 = time.perf_counter()
        proc = subprocess.run([sys.executable, "-c", CHILD, spec], capture_output=True, text=True, check=True)
        row["run"] = json.loads(proc.stdout.strip().splitlines()[-1])
        row["total_s"] = row["build_s"] + (time.perf_counter() - t0)
        print(json.dumps(row), file=sys.stderr, flush=True)
        rows.append(row)
        if not args.keep:
            shutil.rmtree(path)
    emit({"machine": machine(), "results": rows, "command": " ".join(sys.argv)})


if __name__ == "__main__":
    main()
