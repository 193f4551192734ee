"""Engine scaling benchmarks (issue: Dask engine).  Prints one JSON document.

Parts (``--part``):

``memory``    In-memory n1×n1 float32 Euclidean matrix of scikit-image ``hubble_deep_field``
              pixels (a seeded random sample of pixels, 3-D colour vectors), k = 10 and 100,
              same random init, ``order="natural"``: our ``fasterpam`` (all cores) against
              ``kmedoids.fasterpam(D, init, n_cpu=1)``; times, ratio, equal medoids.
``ooc``       A zarr store of an n2×n2 float32 matrix built with ``build_dissimilarity``;
              one FasterPAM pass with ``memory_limit="512MiB"`` in a fresh subprocess
              (seconds, peak RSS) against one plain sequential zarr read of every chunk
              (the I/O floor), and their ratio.
``scaleout``  One FastPAM2 iteration on a distributed ``LocalCluster`` with 1 vs 2 worker
              processes (1 thread each, zarr/blosc internal threads off so each worker
              uses one core) over a zarr store; the speedup.

Reproduce the README figures with::

    python benchmarks/bench_scaling.py --part all --out /tmp/cm_bench
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, timer  # noqa: E402


def hubble_sample(n, seed=0):
    from skimage import data

    pix = data.hubble_deep_field().reshape(-1, 3).astype(np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(pix.shape[0], n, replace=False))
    return np.ascontiguousarray(pix[idx])


def dense_matrix(X, dtype=np.float32, rows=2000):
    """Euclidean n×n matrix computed in row blocks (only used where in-memory is the point)."""
    from chunked_medoids.metrics import resolve_metric

    metric = resolve_metric("euclidean")
    n = X.shape[0]
    D = np.empty((n, n), dtype=dtype)
    buf = np.empty((rows, n))
    for a in range(0, n, rows):
        b = min(a + rows, n)
        metric.pairwise(X[a:b], X, buf[: b - a])
        D[a:b] = buf[: b - a]
    D[np.arange(n), np.arange(n)] = 0
    return D


def part_memory(n, ks, seed):
    import chunked_medoids as cm

    X = hubble_sample(n, seed)
    D = dense_matrix(X)
    out = {"n": n, "dtype": "float32", "runs": []}
    D.max()
    with timer() as t_np:
        D.max()
    numpy_pass_ns = 1e9 * t_np.seconds / (n * n)
    try:
        import kmedoids
    except ImportError:
        kmedoids = None
    for k in ks:
        init = np.sort(np.random.default_rng(seed + k).choice(n, k, replace=False))
        cm.fasterpam(D, k, init=init, order="natural", max_iter=1)  # compile outside the timing
        with timer() as t_ours:
            ours = cm.fasterpam(D, k, init=init, order="natural", max_iter=100)
        with timer() as t_ours1:
            ours1 = cm.fasterpam(D, k, init=init, order="natural", max_iter=100, num_workers=1)
        with timer() as t_spec:
            spec = cm.fasterpam(D, k, init=init, order="natural", max_iter=100, num_workers=2,
                                speculative=True)
        run = {
            "k": k, "ours_seconds": t_ours.seconds, "ours_1thread_seconds": t_ours1.seconds,
            "ours_loss": ours.loss, "ours_n_iter": ours.n_iter, "ours_n_swap": ours.n_swap,
            "ns_per_element_per_pass": 1e9 * t_ours.seconds / (n * n * max(ours.n_iter, 1)),
            "ns_per_element_per_pass_1thread": 1e9 * t_ours1.seconds / (n * n * max(ours1.n_iter, 1)),
            "speculative_2thread_seconds": t_spec.seconds,
            "ns_per_element_per_pass_speculative": 1e9 * t_spec.seconds / (n * n * max(spec.n_iter, 1)),
            "threads_equal": bool(np.array_equal(ours.medoids, ours1.medoids)
                                  and np.array_equal(ours.medoids, spec.medoids)),
            # the memory floor: one plain numpy read of the matrix (max over all elements)
            "numpy_pass_ns_per_element": numpy_pass_ns,
        }
        if kmedoids is not None:
            with timer() as t_ref:
                ref = kmedoids.fasterpam(D, init.copy(), max_iter=100, n_cpu=1)
            run.update({
                "kmedoids_seconds": t_ref.seconds, "kmedoids_loss": float(ref.loss),
                "ratio_ours_over_kmedoids": t_ours.seconds / t_ref.seconds,
                "ratio_1thread_over_kmedoids": t_ours1.seconds / t_ref.seconds,
                "medoids_equal": bool(np.array_equal(np.sort(ours.medoids), np.sort(np.asarray(ref.medoids)))),
                "loss_rel_diff": abs(ours.loss - float(ref.loss)) / float(ref.loss),
            })
        out["runs"].append(run)
        print(json.dumps(run), file=sys.stderr)
    return out


OOC_CHILD = r"""
import json, sys, time, numpy as np
sys.path.insert(0, {bench!r})
import chunked_medoids as cm
store, k, limit, seed = {store!r}, {k}, {limit!r}, {seed}
src = cm.open_dissimilarity(store)
n = src.n
init = np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
# warm up (numba kernels loaded from the cache, thread pools, zarr) on a small float32
# matrix with swaps and speculative batches, so one-time start-up is not counted
small = cm.from_features(np.random.default_rng(1).normal(size=(3000, 3))).read_rows(0, 3000)
cm.fasterpam(small, k, random_state=1, max_iter=2)
# peak RSS from the kernel's lifetime maximum (ru_maxrss): a sampling thread would compete
# with the pass's own threads for the GIL and distort the timing
from _common import current_rss, ru_maxrss_bytes
start = current_rss()
t0 = time.perf_counter()
res = cm.fasterpam(src, k, init=init, max_iter=1, memory_limit=limit)
sec = time.perf_counter() - t0
print(json.dumps({{"seconds": sec, "peak_rss": ru_maxrss_bytes(), "start_rss": start, "loss": res.loss,
                  "n_swap": res.n_swap}}))
"""

READ_CHILD = r"""
import json, time, zarr
arr = zarr.open_array({store!r}, mode="r")
rows = arr.chunks[0]
t0 = time.perf_counter()
total = 0
for a in range(0, arr.shape[0], rows):
    total += arr[a:a + rows].nbytes
print(json.dumps({{"seconds": time.perf_counter() - t0, "bytes": total}}))
"""


def _child(code):
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(proc.stdout.strip().splitlines()[-1])


def part_ooc(n, k, out_dir, seed, limit="512MiB"):
    import chunked_medoids as cm

    store = os.path.join(out_dir, f"hubble_{n}.zarr")
    X = hubble_sample(n, seed)
    t_build = None
    if not os.path.exists(store):
        with timer() as t:
            cm.build_dissimilarity(X, store, metric="euclidean", memory_limit="1GiB")
        t_build = t.seconds
    src = cm.open_dissimilarity(store)
    bench = os.path.dirname(os.path.abspath(__file__))
    # drop nothing from the page cache (not permitted here); read first so both runs see a warm cache
    floor = _child(READ_CHILD.format(store=store))
    floor = _child(READ_CHILD.format(store=store))
    res = _child(OOC_CHILD.format(bench=bench, store=store, k=k, limit=limit, seed=seed))
    budget = 512 * 2**20 + n * k * 8 + 300e6
    return {
        "n": n, "k": k, "memory_limit": limit, "store_bytes": src.nbytes, "chunks_rows": src.block_rows,
        "build_seconds": t_build, "pass_seconds": res["seconds"], "read_floor_seconds": floor["seconds"],
        "ratio_pass_over_read": res["seconds"] / floor["seconds"],
        "peak_rss_bytes": res["peak_rss"], "interpreter_rss_bytes": res["start_rss"],
        "peak_rss_target_bytes": budget, "within_target": res["peak_rss"] <= budget,
    }


ONE_CORE_ENV = {"ZARR_THREADING__MAX_WORKERS": "1", "BLOSC_NTHREADS": "1", "OMP_NUM_THREADS": "1",
                "NUMBA_NUM_THREADS": "1"}


def part_scaleout(n, k, out_dir, seed):
    from distributed import Client, LocalCluster

    import chunked_medoids as cm

    store = os.path.join(out_dir, f"hubble_{n}.zarr")
    if not os.path.exists(store):
        cm.build_dissimilarity(hubble_sample(n, seed), store, metric="euclidean", memory_limit="1GiB")
    init = np.sort(np.random.default_rng(seed).choice(n, k, replace=False))
    out = {"n": n, "k": k}
    meds = {}
    for workers in (1, 2):
        # one core per worker: zarr decodes chunks on its own thread pool and blosc has
        # internal threads, which would let a single "1-thread" worker use both cores
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True,
                          dashboard_address=":0", silence_logs=40, env=ONE_CORE_ENV) as cluster, \
                Client(cluster) as client:
            cm.fastpam2(store, k, init=init, max_iter=1, client=client, memory_limit="256MiB")  # warm up
            with timer() as t:
                res = cm.fastpam2(store, k, init=init, max_iter=1, client=client, memory_limit="256MiB")
            out[f"seconds_{workers}_workers"] = t.seconds
            meds[workers] = res.medoids
    out["speedup"] = out["seconds_1_workers"] / out["seconds_2_workers"]
    out["medoids_equal"] = bool(np.array_equal(meds[1], meds[2]))
    return out


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=["all", "memory", "ooc", "scaleout"], default="all")
    p.add_argument("--n1", type=int, default=20000)
    p.add_argument("--n2", type=int, default=30000)
    p.add_argument("--n3", type=int, default=20000)
    p.add_argument("--k", type=int, nargs="+", default=[10, 100])
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="/tmp/cm_bench")
    args = p.parse_args(argv)
    os.makedirs(args.out, exist_ok=True)
    result = {"benchmark": "scaling", "cores": os.cpu_count()}
    if args.part in ("all", "memory"):
        result["memory"] = part_memory(args.n1, args.k, args.seed)
    if args.part in ("all", "ooc"):
        result["ooc"] = part_ooc(args.n2, args.k[0], args.out, args.seed)
    if args.part in ("all", "scaleout"):
        result["scaleout"] = part_scaleout(args.n3, args.k[0], args.out, args.seed)
    emit(result)


if __name__ == "__main__":
    main()
