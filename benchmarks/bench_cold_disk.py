"""Cold-disk FasterPAM passes, codecs and the 2-byte storage type (issue 17).  Not CI.

Drops the page cache (``sync; echo 3 > /proc/sys/vm/drop_caches``; needs root) before
every cold measurement, so run it on a machine where that is acceptable.  Prints one JSON
document on stdout.

Parts (``--part``):

``pass``      For each ``--codecs`` x ``--dtypes`` store of the n x n Euclidean matrix of n
              real pixels (scikit-image ``hubble_deep_field``, a seeded sample): bytes on
              disk, the fastest cold read of the store's files (each file read once, by 1, 4
              and 8 threads), one cold FasterPAM pass (k = 10, random init, ``max_iter=1``,
              ``memory_limit``) in a fresh subprocess with its peak RSS and where the time
              went (``_common.PASS_CHILD``: CPU seconds of the reads and of the kernels, the
              kernel's wait for blocks, the machine's load, the disk's busy time), and a
              warm pass (the files read into the page cache first) when the store fits in
              RAM.  ``summary`` (also printed on stderr): per store the fastest cold pass
              and its ratio to the best read, the CPU seconds of every pass (user + system;
              reads vs the rest: kernels and glue) and peak RSS, and float16 / float32 of
              the fastest passes and of the CPU, for this checkout and ``--baseline-tree``.  Stores are deleted afterwards unless ``--keep``; ``--reuse`` keeps them
              and times passes on the ones already in ``--dir`` (no build), so the pass
              part can be repeated quickly.
``quality``   FasterPAM (k = 20, random init) on float32 and on float16 distances of the
              same n points from the same init, both rescored on exact float32 distances:
              the loss ratio, for three real-pixel data sets.

Reproduce the README figures with::

    python benchmarks/bench_cold_disk.py --part pass --n 60000 --codecs default --dtypes float32,float16 \\
        --dir /tmp/cold --reuse --baseline-tree <older checkout> > cold.json
    python benchmarks/bench_cold_disk.py --part pass --n 20000 --codecs none,lz4,zstd,blosc-zstd \\
        --dtypes float32 --dir /work/bench_tmp/cold > codecs.json
    python benchmarks/bench_cold_disk.py --part quality --n 20000 --k 20 > quality.json
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine, run_pass_child  # noqa: E402

DATASETS = {
    "hubble": (("hubble_deep_field",), 0),
    "retina": (("retina",), 1),
    "astronaut+coffee+rocket": (("astronaut", "coffee", "rocket"), 2),
}


def pixels(name, n):
    from skimage import data

    pics, seed = DATASETS[name]
    X = np.concatenate([getattr(data, p)()[..., :3].reshape(-1, 3) for p in pics]).astype(np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
    return np.ascontiguousarray(X[idx])


def drop_caches():
    subprocess.run(["sync"], check=True)
    with open("/proc/sys/vm/drop_caches", "w") as f:
        f.write("3\n")


def store_files(path):
    if os.path.isfile(path):
        return [path]
    out = []
    for dp, _, files in os.walk(path):
        out += [os.path.join(dp, f) for f in files]
    return sorted(out)


def _read_file(path, bufsize=8 << 20):
    total = 0
    with open(path, "rb", buffering=0) as f:
        while True:
            b = f.read(bufsize)
            if not b:
                return total
            total += len(b)


def cold_read(path, threads):
    """Seconds to read every file of the store once with ``threads`` readers (cache dropped)."""
    files = store_files(path)
    drop_caches()
    t0 = time.perf_counter()
    with ThreadPoolExecutor(threads) as pool:
        nbytes = sum(pool.map(_read_file, files))
    return time.perf_counter() - t0, nbytes


def warm_cache(path):
    """Read every file of the store once through the page cache (4 threads)."""
    with ThreadPoolExecutor(4) as pool:
        return sum(pool.map(_read_file, store_files(path)))


def run_pass(store, k, memory_limit, cold, tree=None, direct_io=None):
    """One FasterPAM pass (``max_iter=1``) in a fresh subprocess (``tree``: another checkout's
    package), with where its time went (:data:`_common.PASS_CHILD`)."""
    if cold:
        drop_caches()
    out = run_pass_child(store, k=k, memory_limit=memory_limit, max_iter=1, tree=tree, direct_io=direct_io)
    out["pass_s"] = out["pass_s"][0] if out["pass_s"] else None
    out["loadavg_before"] = os.getloadavg()[0]
    return out


def part_pass(args):
    import chunked_medoids as cm

    X = None
    out = []
    threads = [int(t) for t in args.read_threads.split(",")]
    for dtype in args.dtypes.split(","):
        for codec in args.codecs.split(","):
            path = os.path.join(args.dir, f"D_{args.n}_{dtype}_{codec}.zarr")
            row = {"n": args.n, "dtype": dtype, "codec": codec}
            if not os.path.exists(path):
                X = pixels("hubble", args.n) if X is None else X
                t0 = time.perf_counter()
                cm.build_dissimilarity(X, path, dtype=dtype, compressor=None if codec == "none" else codec,
                                       memory_limit="2GiB")
                row["build_s"] = time.perf_counter() - t0
            info = cm.store_info(path)
            row.update(bytes_on_disk=info["size_on_disk"], nbytes=info["nbytes"], scale=info.get("scale"))
            reads = {}
            for t in threads:
                sec, nb = cold_read(path, t)
                reads[t] = sec
            row["cold_read_s"] = reads
            row["cold_read_best_s"] = min(reads.values())
            # side by side: this checkout, then the baseline's (same store, same minutes)
            row["cold_passes"], row["baseline_cold_passes"] = [], []
            for _ in range(args.repeat):
                row["cold_passes"].append(run_pass(path, args.k, args.memory_limit, cold=True))
                if args.baseline_tree:
                    row["baseline_cold_passes"].append(run_pass(path, args.k, args.memory_limit, cold=True,
                                                                tree=args.baseline_tree))
            row["cold_pass"] = min(row["cold_passes"], key=lambda r: r["pass_s"])
            row["pass_over_read"] = row["cold_pass"]["pass_s"] / row["cold_read_best_s"]
            if row["baseline_cold_passes"]:
                row["baseline_cold_pass"] = min(row["baseline_cold_passes"], key=lambda r: r["pass_s"])
                row["baseline_pass_over_read"] = row["baseline_cold_pass"]["pass_s"] / row["cold_read_best_s"]
            if args.warm and info["size_on_disk"] < 0.6 * os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"):
                # warm the cache by reading the files (an O_DIRECT pass would not cache them)
                warm_cache(path)
                row["warm_pass"] = run_pass(path, args.k, args.memory_limit, cold=False)
                if args.baseline_tree:
                    warm_cache(path)
                    row["baseline_warm_pass"] = run_pass(path, args.k, args.memory_limit, cold=False,
                                                         tree=args.baseline_tree)
            print(json.dumps(row), file=sys.stderr, flush=True)
            out.append(row)
            if not (args.keep or args.reuse):
                shutil.rmtree(path)
    return out


def _cpu(p):
    """``(user + system, reads, rest)`` CPU seconds of a pass (``cpu_per_pass`` of PASS_CHILD)."""
    c = (p.get("cpu_per_pass") or [{}])[0]
    if not c:
        return None
    return {"cpu_s": c["user_s"] + c["sys_s"], "read_cpu_s": c["read_cpu_s"], "kernel_cpu_s": c["compute_cpu_s"]}


def summarise(rows):
    """What the README table needs, per store and across dtypes: the fastest cold pass, its
    ratio to the best cold read, the CPU seconds of every pass (load-robust: user + system,
    reads vs the rest, i.e. kernels and glue), and float16 / float32 of the fastest passes
    (also of the CPU) for this checkout and the baseline."""
    out = {"stores": []}
    best = {}
    for r in rows:
        item = {"dtype": r["dtype"], "codec": r["codec"], "cold_read_best_s": r["cold_read_best_s"]}
        for tag in ("", "baseline_"):
            passes = r.get(f"{tag}cold_passes") or []
            if not passes:
                continue
            fastest = min(passes, key=lambda p: p["pass_s"])
            cpus = [_cpu(p) for p in passes]
            item[f"{tag}pass_s"] = [p["pass_s"] for p in passes]
            item[f"{tag}fastest_pass_s"] = fastest["pass_s"]
            item[f"{tag}pass_over_read"] = fastest["pass_s"] / r["cold_read_best_s"]
            item[f"{tag}cpu_per_pass"] = cpus
            if all(cpus):
                item[f"{tag}min_cpu_s"] = min(c["cpu_s"] for c in cpus)
            item[f"{tag}peak_rss"] = max(p["peak_rss"] for p in passes)
            best[(tag, r["dtype"], r["codec"])] = (fastest["pass_s"], item.get(f"{tag}min_cpu_s"))
        out["stores"].append(item)
    for tag in ("", "baseline_"):
        for codec in {r["codec"] for r in rows}:
            a, b = best.get((tag, "float16", codec)), best.get((tag, "float32", codec))
            if a and b:
                out[f"{tag}float16_over_float32_{codec}"] = a[0] / b[0]
                if a[1] and b[1]:
                    out[f"{tag}float16_over_float32_cpu_{codec}"] = a[1] / b[1]
    return out


def print_summary(summary):
    for item in summary["stores"]:
        for tag in ("", "baseline_"):
            if f"{tag}fastest_pass_s" not in item:
                continue
            cpus = ", ".join(f"{c['cpu_s']:.2f} ({c['read_cpu_s']:.2f} reads / {c['kernel_cpu_s']:.2f} rest)"
                             for c in item[f"{tag}cpu_per_pass"] if c)
            print(f"{tag or 'this '}{item['dtype']} {item['codec']}: cold read {item['cold_read_best_s']:.2f} s, "
                  f"passes {', '.join(f'{v:.2f}' for v in item[f'{tag}pass_s'])} s "
                  f"(fastest / read {item[f'{tag}pass_over_read']:.2f}), CPU s per pass {cpus}, "
                  f"peak RSS {item[f'{tag}peak_rss'] / 2**20:.0f} MiB", file=sys.stderr)
    for key, v in summary.items():
        if key.startswith(("float16_over", "baseline_float16_over")):
            print(f"{key}: {v:.3f}", file=sys.stderr)


def part_quality(args):
    import chunked_medoids as cm

    out = []
    for name in DATASETS:
        X = pixels(name, args.n)
        init = np.random.default_rng(7).choice(args.n, size=args.k, replace=False)
        f32 = cm.from_features(X, dtype="float32")
        f16 = cm.from_features(X, dtype="float16")
        t0 = time.perf_counter()
        r32 = cm.fasterpam(f32, args.k, init=init, memory_limit="1GiB")
        t32 = time.perf_counter() - t0
        t0 = time.perf_counter()
        r16 = cm.fasterpam(f16, args.k, init=init, memory_limit="1GiB")
        t16 = time.perf_counter() - t0
        rescored = _loss(f32, r16.medoids)
        row = {"dataset": name, "n": args.n, "k": args.k, "scale": f16.scale,
               "loss_float32": r32.loss, "loss_float16_rescored_on_float32": rescored,
               "ratio": rescored / r32.loss, "same_medoids": sorted(r32.medoids.tolist()) == sorted(r16.medoids.tolist()),
               "passes_float32": r32.n_iter, "passes_float16": r16.n_iter, "seconds_float32": t32,
               "seconds_float16": t16}
        print(json.dumps(row), file=sys.stderr, flush=True)
        out.append(row)
    return out


def _loss(src, medoids):
    """Σ_o min_m D[o, m] on the float32 source (k medoid rows, float64 sum)."""
    rows = src.take_rows(np.asarray(medoids, dtype=np.int64))
    return float(rows.min(axis=0).astype(np.float64).sum())


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--part", choices=["pass", "quality"], required=True)
    ap.add_argument("--n", type=int, default=60000)
    ap.add_argument("--k", type=int, default=None)
    ap.add_argument("--codecs", default="lz4")
    ap.add_argument("--dtypes", default="float32,float16")
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--dir", default="/tmp/cm_cold")
    ap.add_argument("--keep", action="store_true", help="keep the stores afterwards")
    ap.add_argument("--reuse", action="store_true",
                    help="keep the stores, and time passes on stores already in --dir (built only if missing)")
    ap.add_argument("--read-threads", default="1,4,8", help="reader threads of the cold reads of the files")
    ap.add_argument("--repeat", type=int, default=1, help="cold passes per store (the fastest is reported)")
    ap.add_argument("--no-warm", dest="warm", action="store_false", help="skip the warm passes")
    ap.add_argument("--baseline-tree", help="also time the passes with the package of this checkout")
    args = ap.parse_args(argv)
    os.makedirs(args.dir, exist_ok=True)
    if args.part == "pass":
        args.k = args.k or 10
        rows = part_pass(args)
        summary = summarise(rows)
        print_summary(summary)
    else:
        args.k = args.k or 20
        rows = part_quality(args)
    doc = {"part": args.part, "machine": machine(), "memory_limit": args.memory_limit, "results": rows,
           "command": " ".join(sys.argv)}
    if args.part == "pass":
        doc["summary"] = summary
    emit(doc)


if __name__ == "__main__":
    main()
