"""CLARA for large n against OneBatchPAM, on several scikit-image pictures (issue 13).

Default mode (``--k 10``, then ``--k 100``; one run per k): for every data set of
:data:`DATASETS` -- n real RGB pixels of a scikit-image picture (or of several pictures
concatenated), drawn with a per-data-set seed -- run, each in its own subprocess,

* ``clara(X, k, random_state=seed)`` at its defaults (LargeCLARA for n >= 100000), and
* ``OneBatchPAM(n_medoids=k, random_state=seed).fit(X)`` (the ``onebatch`` package, used
  as a black box) at its defaults,

side by side (ours first, then OneBatchPAM, per data set; the load average is recorded
before and after each child).  OneBatchPAM is skipped (and reported as such) when its
default batch matrix would exceed ``--onebatch-max-gb`` (8 GB): at n = 2M its
100·ln(n·k)-column float64 matrix alone is about 27 GB.  Each child loads the pixels,
times the fit alone and prints the medoid indices; the parent reads the child's peak RSS
from ``os.wait4`` and scores both medoid sets EXACTLY on every point
(Σ_o min_m ‖x_o − x_m‖, correctly rounded with ``math.fsum``).  Extra reference methods:
``--methods ours,onebatch,fasterclara``.

``--part basins``: for the failing k = 10 pairs, exact weighted FasterPAM on the distinct
rows of each data set (the same loss as on all n points) from several starts -- the ours /
OneBatchPAM medoids of a compare-mode JSON, random and weighted k-means++ inits -- each run
to convergence (float32 matrix of the distinct rows when it fits ``--basin-matrix-gb``,
then float64 passes on the fly until no swap improves) and scored exactly on all points.

Legacy modes: ``--legacy`` runs the older single-image table (all CLARA variants on the
~2M ``retina`` pixels, OneBatchPAM with a capped batch); ``--synthetic N`` checks the memory
claim on an N × 8 float32 zarr store.

Usage::

    python benchmarks/bench_clara.py --k 10  > benchmarks/results/clara_large_k10.json
    python benchmarks/bench_clara.py --k 100 > benchmarks/results/clara_large_k100.json
    python benchmarks/bench_clara.py --k 10 --n 150000 --datasets retina,hubble   # quick
    python benchmarks/bench_clara.py --k 10 --n 2000000 --datasets retina         # ours only: see below
    python benchmarks/bench_clara.py --part basins --k 10 --datasets retina_s1,hubble \
        --basins-from benchmarks/results/clara_large_k10.json        # exact local search, 10 starts
    python benchmarks/bench_clara.py --legacy --k 10
    python benchmarks/bench_clara.py --synthetic 10000000 --k 10

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

# chunked_medoids is imported inside the functions that use it, so that the OneBatchPAM
# child process does not carry numba / dask in its peak RSS.

ALL = ("fasterclara", "fastclara", "clara", "fasterclara_paper", "onebatch", "fasterpam_subsample")

#: the data sets of the comparison: name -> (pictures, pixel-sample seed).  n is --n
#: (default 500000) capped at the pixels available.  At its default batch OneBatchPAM holds
#: an n × 100·ln(n·k) matrix (about 6 GB at n = 500k, growing faster than n), which bounds n
#: on a 23 GB machine shared with other jobs.
DATASETS = {
    "retina": (("retina",), 0),
    "retina_s1": (("retina",), 1),
    "hubble": (("hubble_deep_field",), 2),
    "astronaut+coffee+rocket": (("astronaut", "coffee", "rocket"), 3),
    "ihc+chelsea+colorwheel": (("immunohistochemistry", "chelsea", "colorwheel"), 4),
}
COMPARE = ("ours", "onebatch", "fasterclara")


def picture_pixels(pictures, n, seed):
    """n RGB pixels (float64) drawn without replacement, seed ``seed``, from the pictures."""
    from skimage import data

    X = np.concatenate([getattr(data, p)()[..., :3].reshape(-1, 3) for p in pictures]).astype(np.float64)
    if n is not None and n < X.shape[0]:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
        X = X[idx]
    return np.ascontiguousarray(X)


def _child(spec):
    """Subprocess body: load the pixels, fit one method at its defaults, print the result."""
    pictures, n, seed, k, method = spec["pictures"], spec["n"], spec["seed"], spec["k"], spec["method"]
    X = picture_pixels(pictures, n, seed)
    info = {}
    if method == "onebatch":
        from onebatch import OneBatchPAM

        t0 = time.perf_counter()
        est = OneBatchPAM(n_medoids=k, random_state=seed).fit(X)
        sec = time.perf_counter() - t0
        medoids = np.asarray(est.medoid_indices_, dtype=np.int64)
    else:
        from chunked_medoids.algorithms.clara import clara

        variant = None if method == "ours" else method
        t0 = time.perf_counter()
        r = clara(X, k, variant=variant, random_state=seed)
        sec = time.perf_counter() - t0
        medoids = np.asarray(r.medoids, dtype=np.int64)
        info = {"algorithm": r.algorithm, "reported_loss": r.loss,
                **{key: r.extra[key] for key in ("sample_size", "n_samples", "init_size", "sample_passes",
                                                  "sample_losses", "polish_losses", "distinct_rows",
                                                  "refine_passes", "refine_swaps") if key in r.extra}}
    print(json.dumps({"seconds": sec, "medoids": medoids.tolist(), **info}))


def compare(args):
    ks = args.k
    methods = [m.strip() for m in args.methods.split(",")] if args.methods else ["ours", "onebatch"]
    names = list(DATASETS) if args.datasets is None else [d.strip() for d in args.datasets.split(",")]
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    from _common import machine

    out = {"mode": "compare", "k": ks, "n_requested": args.n, "machine": machine(), "datasets": {}}
    for name in names:
        pictures, seed = DATASETS[name]
        X = picture_pixels(pictures, args.n, seed)
        n = int(X.shape[0])
        entry = {"pictures": list(pictures), "seed": seed, "n": n, "results": {}}
        for method in methods:
            spec = {"pictures": list(pictures), "n": n, "seed": seed, "k": ks, "method": method}
            if method == "onebatch":
                need = onebatch_matrix_bytes(n, ks)
                if need > args.onebatch_max_gb * 1e9:
                    entry["results"][method] = {
                        "skipped": f"OneBatchPAM's default batch needs an n x {onebatch_batch(n, ks)} float64 "
                                   f"matrix ({need / 1e9:.1f} GB) > --onebatch-max-gb {args.onebatch_max_gb}"}
                    print(f"# {name} k={ks} {method}: {entry['results'][method]}", file=sys.stderr, flush=True)
                    continue
            load_before = os.getloadavg()
            r = run_child_wait4(spec)
            r["loadavg_before"] = [round(x, 2) for x in load_before]
            r["loadavg_after"] = [round(x, 2) for x in os.getloadavg()]
            if "medoids" in r:
                r["loss"] = full_loss(X, r["medoids"])
                r["mean_distance"] = r["loss"] / n
            entry["results"][method] = r
            print(f"# {name} k={ks} {method}: " + json.dumps({key: v for key, v in r.items() if key != "medoids"}),
                  file=sys.stderr, flush=True)
        res = entry["results"]
        if "loss" in res.get("ours", {}) and "loss" in res.get("onebatch", {}):
            o, b = res["ours"], res["onebatch"]
            entry["loss_ratio"] = o["loss"] / b["loss"]
            entry["time_ratio"] = o["seconds"] / b["seconds"]
            entry["rss_ratio"] = o["peak_rss_mib"] / b["peak_rss_mib"]
            entry["targets_met"] = {"loss<=0.995x": entry["loss_ratio"] <= 0.995,
                                    "time<=1x": entry["time_ratio"] <= 1.0,
                                    "peak_rss<=1x": entry["rss_ratio"] <= 1.0}
        out["datasets"][name] = entry
    return out


def onebatch_batch(n, k):
    """OneBatchPAM's default batch size as its paper states it, 100·ln(n·k) columns (at most n)."""
    return int(min(n, 100.0 * np.log(max(2, n * max(1, k)))))


def onebatch_matrix_bytes(n, k):
    """Bytes of OneBatchPAM's n x batch float64 distance matrix at its default batch."""
    return 8 * n * onebatch_batch(n, k)


def run_child_wait4(spec):
    """Run :func:`_child` in a fresh interpreter and add its own peak RSS (``wait4``)."""
    import subprocess
    import tempfile

    cmd = [sys.executable, os.path.abspath(__file__), "--child", json.dumps(spec)]
    with tempfile.TemporaryFile("w+") as fo, tempfile.TemporaryFile("w+") as fe:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, stdout=fo, stderr=fe, text=True)
        _, status, ru = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        proc.returncode = os.waitstatus_to_exitcode(status)
        fo.seek(0)
        fe.seek(0)
        out, err = fo.read(), fe.read()
    if proc.returncode != 0:
        return {"error": err.strip().splitlines()[-5:] if err else f"exit {proc.returncode}"}
    doc = json.loads(out.strip().splitlines()[-1])
    scale = 1 if sys.platform == "darwin" else 1024
    doc["peak_rss_mib"] = round(ru.ru_maxrss * scale / 2**20, 1)
    doc["process_seconds"] = round(wall, 2)
    doc["cpu_seconds"] = round(ru.ru_utime + ru.ru_stime, 2)
    doc["seconds"] = round(doc["seconds"], 3)
    return doc


def retina_pixels(n=None, seed=0):
    from skimage import data

    X = data.retina().reshape(-1, 3).astype(np.float64)
    if n is not None and n < X.shape[0]:
        idx = np.sort(np.random.default_rng(seed).choice(X.shape[0], size=n, replace=False))
        X = X[idx]
    return np.ascontiguousarray(X)


def full_loss(X, medoids, chunk=200_000):
    """Σ_o min_m d(x_o, x_m) over all points (exactly rounded float64)."""
    from chunked_medoids.metrics import resolve_metric

    metric = resolve_metric("euclidean")
    C = X[np.asarray(medoids)]
    parts = []
    for a in range(0, X.shape[0], chunk):
        d = metric.pairwise_new(X[a:a + chunk], C)
        parts.append(d.min(axis=1))
    return math.fsum(np.concatenate(parts).tolist())


def run(method, X, k, seed, args):
    from chunked_medoids.algorithms.clara import clara
    from chunked_medoids.metrics import resolve_metric

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

    from chunked_medoids.algorithms.clara import clara

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


# ---------------------------------------------------------------------------------------
# --part basins: what exact full-data local search reaches (issue 13's failing k = 10 pairs)
# ---------------------------------------------------------------------------------------
def distinct_rows(X):
    """Exact deduplication: (U, counts, first, inverse) with X[i] == U[inverse[i]] and
    U[j] == X[first[j]].  Σ_o min_m d(x_o, x_m) == Σ_j counts[j]·min_m d(U[j], x_m) exactly
    in real arithmetic (the weighted distinct rows have the same loss as the full data)."""
    U, first, inverse, counts = np.unique(X, axis=0, return_index=True, return_inverse=True, return_counts=True)
    return np.ascontiguousarray(U), counts.astype(np.float64), first.astype(np.int64), inverse.ravel()


def kmeanspp_init(U, w, k, rng):
    """Weighted k-means++ seeding on the distinct rows (D² sampling, Arthur & Vassilvitskii 2007,
    with D the Euclidean distance to the nearest chosen row, weighted by the row counts)."""
    from chunked_medoids.metrics import resolve_metric

    metric = resolve_metric("euclidean")
    first = int(rng.choice(U.shape[0], p=w / w.sum()))
    chosen = [first]
    near = metric.pairwise_new(U, U[[first]])[:, 0]
    for _ in range(1, k):
        p = w * near ** 2
        p[chosen] = 0.0
        c = int(rng.choice(U.shape[0], p=p / p.sum()))
        chosen.append(c)
        near = np.minimum(near, metric.pairwise_new(U, U[[c]])[:, 0])
    return np.array(chosen, dtype=np.int64)


def _distinct_matrix(U, max_gb):
    """The float32 dissimilarity of the distinct rows when it fits ``max_gb`` (else None)."""
    from chunked_medoids.metrics import resolve_metric

    m = U.shape[0]
    if 4 * m * m > max_gb * 1e9:
        return None
    metric = resolve_metric("euclidean")
    D = np.empty((m, m), dtype=np.float32)
    step = max(1, int(2**27 // (8 * m)))
    buf = np.empty((step, m), dtype=np.float64)
    for a in range(0, m, step):
        b = min(m, a + step)
        metric.pairwise(U[a:b], U, buf[: b - a])
        D[a:b] = buf[: b - a]
    return D


def basins(args):
    """Exact weighted FasterPAM on the distinct rows of each data set, from several starts."""
    from chunked_medoids.algorithms.fasterpam import fasterpam
    from chunked_medoids.sources.features import from_features

    k = args.k
    names = [d.strip() for d in (args.datasets or "retina_s1,hubble,ihc+chelsea+colorwheel").split(",")]
    ref = json.load(open(args.basins_from)) if args.basins_from else {"datasets": {}}
    out = {"mode": "basins", "k": k, "n_requested": args.n, "from": args.basins_from, "datasets": {}}
    for name in names:
        pictures, seed = DATASETS[name]
        X = picture_pixels(pictures, args.n, seed)
        U, w, first, inv = distinct_rows(X)
        m = U.shape[0]
        starts = {}
        prev = ref["datasets"].get(name, {}).get("results", {})
        for meth in ("ours", "onebatch"):
            if "medoids" in prev.get(meth, {}):
                starts[meth] = np.unique(inv[np.asarray(prev[meth]["medoids"], dtype=np.int64)])
        base = {meth: full_loss(X, prev[meth]["medoids"]) for meth in ("ours", "onebatch")
                if "medoids" in prev.get(meth, {})}
        for r in range(args.basin_random):
            starts[f"random{r}"] = np.sort(np.random.default_rng(1000 + r).choice(m, size=k, replace=False))
        for r in range(args.basin_kmpp):
            starts[f"kmeans++{r}"] = np.sort(kmeanspp_init(U, w, k, np.random.default_rng(2000 + r)))
        t = time.perf_counter()
        D = _distinct_matrix(U, args.basin_matrix_gb)
        mat_s = time.perf_counter() - t
        entry = {"pictures": list(pictures), "seed": seed, "n": int(X.shape[0]), "distinct": int(m),
                 "start_losses": base, "matrix": "float32 in memory" if D is not None else "on the fly, float64",
                 "matrix_seconds": round(mat_s, 2), "runs": {}}
        print(f"# {name}: n={X.shape[0]} distinct={m} matrix={entry['matrix']} ({mat_s:.1f}s)", file=sys.stderr,
              flush=True)
        exact = from_features(U, "euclidean", dtype="float64")
        for label, init in starts.items():
            if init.shape[0] < k:  # duplicate colours among the start's medoids: fill deterministically
                rest = np.setdiff1d(np.arange(m), init)[: k - init.shape[0]]
                init = np.sort(np.concatenate([init, rest]))
            load = os.getloadavg()
            t, c = time.perf_counter(), time.process_time()
            if D is not None:
                r1 = fasterpam(D, k, init=init, weights=w, validate=False)
                # confirm with exact float64 distances (the float32 matrix rounds them)
                r = fasterpam(exact, k, init=r1.medoids, weights=w)
                n_iter, n_swap = int(r1.n_iter) + int(r.n_iter), int(r1.n_swap) + int(r.n_swap)
            else:
                r = fasterpam(exact, k, init=init, weights=w)
                n_iter, n_swap = int(r.n_iter), int(r.n_swap)
            sec, cpu = time.perf_counter() - t, time.process_time() - c
            med = first[np.asarray(r.medoids, dtype=np.int64)]
            loss = full_loss(X, med)
            run = {"loss": loss, "weighted_distinct_loss": float(r.loss), "passes": n_iter, "swaps": n_swap,
                   "seconds": round(sec, 2), "cpu_seconds": round(cpu, 2), "loadavg_before": [round(x, 2) for x in load],
                   "medoids": med.tolist()}
            if "onebatch" in base:
                run["ratio_to_onebatch"] = loss / base["onebatch"]
            entry["runs"][label] = run
            print(f"# {name} {label}: " + json.dumps({key: v for key, v in run.items() if key != "medoids"}),
                  file=sys.stderr, flush=True)
        del D
        best = min(entry["runs"], key=lambda key: entry["runs"][key]["loss"])
        entry["best_start"] = best
        if "onebatch" in base:
            entry["best_ratio"] = entry["runs"][best]["loss"] / base["onebatch"]
        out["datasets"][name] = entry
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=None,
                    help="pixels per data set (compare mode default 500000; legacy default: all)")
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--methods", default=None,
                    help=f"compare mode: subset of {COMPARE} (default ours,onebatch); legacy: subset of {ALL}")
    ap.add_argument("--datasets", default=None, help=f"compare mode: subset of {tuple(DATASETS)} (default all)")
    ap.add_argument("--legacy", action="store_true", help="the older single-image table (retina, all variants)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--onebatch-gb", type=float, default=4.0,
                    help="legacy mode: memory cap (GB) of OneBatchPAM's batch matrix")
    ap.add_argument("--onebatch-max-gb", type=float, default=8.0,
                    help="compare mode: skip OneBatchPAM (reported as skipped) when its default batch matrix "
                         "would exceed this many GB (about 1.45x that in peak RSS); default 8")
    ap.add_argument("--fasterpam-n", type=int, default=20000)
    ap.add_argument("--synthetic", type=int, default=None, metavar="N",
                    help="instead: fasterclara on an N x 8 float32 zarr store, reporting peak RSS")
    ap.add_argument("--store", default=None, help="zarr path for --synthetic (default: temporary)")
    ap.add_argument("--part", choices=("compare", "basins"), default="compare",
                    help="basins: exact weighted FasterPAM on the distinct rows from several starts")
    ap.add_argument("--basins-from", default=None,
                    help="basins: a compare-mode JSON whose ours/onebatch medoids are used as starts")
    ap.add_argument("--basin-random", type=int, default=4, help="basins: random starts (seeds 1000, 1001, ...)")
    ap.add_argument("--basin-kmpp", type=int, default=4, help="basins: k-means++ starts (seeds 2000, ...)")
    ap.add_argument("--basin-matrix-gb", type=float, default=8.0,
                    help="basins: hold the distinct rows' float32 matrix in memory up to this size")
    args = ap.parse_args(argv)
    if args.child:
        _child(json.loads(args.child))
        return
    if args.synthetic:
        print(json.dumps(synthetic(args.synthetic, args.k, args.seed, args.memory_limit, args.store), indent=2))
        return
    if not args.legacy:
        if args.n is None:
            args.n = 500_000
        print(json.dumps(basins(args) if args.part == "basins" else compare(args), indent=2))
        return
    args.methods = args.methods or ",".join(ALL)
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
