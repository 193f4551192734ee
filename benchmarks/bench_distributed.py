"""FasterPAM on the workers of a real Dask cluster (issue 18).  Prints one JSON document.

The cluster is started as on a real machine room: ``dask scheduler --scheduler-file F``
and ``dask worker --scheduler-file F --nthreads 1 --nworkers W`` as subprocesses (their
own processes; zarr / blosc / numba threads pinned to one per worker), and this process
connects to it with ``Client(scheduler_file=F)`` and only coordinates.

For each source -- a zarr store of the n×n float32 Euclidean matrix (built once with
``build_dissimilarity``) and the features themselves (rows computed on the fly) -- and for
W = 1 and 2 worker processes, side by side in one run:

* the fit (``order="natural"``) from two fixed starts -- ``random`` (k seeded random
  points: a first pass dense with swaps) and ``lab`` (the LAB medoids, computed once
  beforehand and passed as an array: few swaps) -- on the cluster, its wall time and this
  client process's CPU time over it (``time.process_time``: the driver thread plus the
  client's communication thread);
* the result must equal the local sequential run (``num_workers=1``) bit for bit
  (medoids, labels, loss, swaps, passes; asserted);
* per pass (from the walk's log): round trips, seconds, swaps, candidates evaluated,
  worker compute seconds; hence seconds per round trip;
* resident stripes (``resident_io``, on each cluster size, skipped with ``--no-io``): BUILD
  + 5 FastPAM2 iterations on the zarr store with ``resident=True`` and ``False``; the bytes
  the worker processes read (their own ``/proc/self/io`` ``rchar``) as a multiple of the
  store's size on disk (target <= 1.5x), and identical medoids.

Data: ``n`` seeded random pixels of scikit-image's ``hubble_deep_field`` (d = 3).  Also
(``--swap-ns``) the local sequential FasterPAM swap and pass counts for a few smaller n,
which ``model_distributed.py`` uses to extrapolate.

Per run, ``breakdown`` says where the walk's time went (each worker's busy, idle, kernel,
swap-apply and CPU seconds, candidates, bytes of swapped rows; round-trip latency; the
client's share) and ``*_load_robust`` gives speedups that do not depend on the machine's
load (the walk's span, the slowest worker's CPU, and a projection with ``--idle-latency-ms``
per round trip).  The speedup part alone (1–2 minutes on an idle 2-core machine; ``--out
DIR`` keeps and reuses the store)::

    python benchmarks/bench_distributed.py --n 24000 --k 20 --inits random --swap-ns --no-io

Reproduce the README figures with::

    python benchmarks/bench_distributed.py --n 24000 --k 20 > benchmarks/results/distributed.json
    python benchmarks/model_distributed.py benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import logging
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine  # noqa: E402

#: one core per worker process: no internal decode / BLAS / numba thread pools.
ONE_CORE_ENV = {"ZARR_THREADING__MAX_WORKERS": "1", "BLOSC_NTHREADS": "1", "OMP_NUM_THREADS": "1",
                "NUMBA_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1"}
PASS_RE = re.compile(r"pass (\d+) on (\d+) workers: (\d+) round trips \(([\d.e+-]+) ms each\), (\d+) swaps, "
                     r"(\d+) candidates evaluated, ([\d.]+)s of worker compute in ([\d.]+)s")


def hubble_sample(n, seed=0):
    from skimage import data

    pix = data.hubble_deep_field().reshape(-1, 3).astype(np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(pix.shape[0], n, replace=False))
    return np.ascontiguousarray(pix[idx])


class PassLog(logging.Handler):
    """Collects the distributed walk's per-pass log lines."""

    def __init__(self):
        super().__init__(logging.INFO)
        self.passes = []

    def emit(self, record):
        m = PASS_RE.search(record.getMessage())
        if m:
            it, w, rt, ms, sw, ev, ws, sec = m.groups()
            self.passes.append({"pass": int(it), "workers": int(w), "round_trips": int(rt),
                                "ms_per_round_trip": float(ms), "swaps": int(sw), "evaluated": int(ev),
                                "worker_seconds": float(ws), "seconds": float(sec)})


class Cluster:
    """``dask scheduler`` + ``dask worker --nworkers W`` subprocesses sharing a scheduler file."""

    def __init__(self, workdir, workers, memory_limit):
        self.file = os.path.join(workdir, f"scheduler-{workers}.json")
        env = dict(os.environ, **ONE_CORE_ENV)
        log = open(os.path.join(workdir, f"cluster-{workers}.log"), "w")  # noqa: SIM115 - kept open for the run
        self.procs = [subprocess.Popen(["dask", "scheduler", "--scheduler-file", self.file, "--no-dashboard",
                                        "--port", "0"], env=env, stdout=log, stderr=log, start_new_session=True)]
        deadline = time.monotonic() + 60
        while not os.path.exists(self.file):
            if time.monotonic() > deadline:
                raise RuntimeError("the scheduler did not start")
            time.sleep(0.1)
        self.procs.append(subprocess.Popen(
            ["dask", "worker", "--scheduler-file", self.file, "--nthreads", "1", "--nworkers", str(workers),
             "--memory-limit", memory_limit, "--no-dashboard", "--local-directory", workdir],
            env=env, stdout=log, stderr=log, start_new_session=True))
        from distributed import Client

        self.client = Client(scheduler_file=self.file, timeout="60s")
        self.client.wait_for_workers(workers, timeout=120)

    def close(self):
        self.client.close()
        for p in reversed(self.procs):
            os.killpg(p.pid, signal.SIGTERM)
        for p in self.procs:
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(p.pid, signal.SIGKILL)


def same(a, b):
    return bool(np.array_equal(a.medoids, b.medoids) and np.array_equal(a.labels, b.labels)
                and a.loss == b.loss and a.n_swap == b.n_swap and a.n_iter == b.n_iter)


def fit_on(cluster, src, k, init, log):
    import chunked_medoids as cm

    log.passes.clear()
    c0, t0 = time.process_time(), time.perf_counter()
    res = cm.fasterpam(src, k, init=init, client=cluster.client, memory_limit="1GiB")
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    info = res.distributed
    fig = {"seconds": wall, "client_cpu_seconds": cpu, "client_cpu_fraction": cpu / wall,
           "round_trips": info["round_trips"], "rows": info["rows"],
           "setup_seconds": info["setup_seconds"], "granule": info["granule"],
           "sequential_runs": info["sequential_runs"], "parallel_batches": info["parallel_batches"],
           "run_positions": info["run_positions"], "stops_sent": info["stops_sent"],
           "walk_seconds": info["walk_seconds"], "walk_client_cpu_seconds": info["client_cpu_seconds"],
           "round_trip_seconds": info["round_trip_seconds"], "critical_cpu_seconds": info["critical_cpu_seconds"],
           "create_seconds": info["create_seconds"], "load_seconds": info["load_seconds"],
           "span_candidates": info["span_candidates"], "evaluated": info["evaluated"],
           "passes": list(log.passes), "n_swap": res.n_swap, "n_iter": res.n_iter}
    fig["breakdown"] = breakdown(info, fig)
    return res, fig


def breakdown(info, fig):
    """Where the walk's time went, from the actors' own counters (``EagerActor.stats_now``):
    per worker its busy seconds (kernels, applying the swaps found elsewhere -- the work
    replicated on every worker --, applying its own), its idle seconds between steps
    (waiting for the client and the slowest worker), its CPU seconds; and the load-robust
    figures ``busy_over_wall`` (Σ busy / walk wall: workers kept busy at once) and
    ``cpu_speedup_bound`` (Σ worker CPU / the largest worker's CPU: the speedup were every
    process on its own core and no one waited)."""
    actors = info.get("actors") or []
    if not actors:
        return None
    walk = max(info["walk_seconds"], 1e-9)
    per = [{key: a[key] for key in ("busy_s", "scan_s", "apply_s", "apply_own_s", "idle_s", "cpu_s",
                                    "proc_cpu_s", "load_s", "load_cpu_s", "calls", "parallel", "runs", "stopped", "evaluated",
                                    "swaps_in", "rows_in_bytes", "rows_out_bytes", "prefetch_s", "prefetched_rows",
                                    "evaluated_prefetched")} for a in actors]
    busy = sum(a["busy_s"] for a in per)
    cpu = [a["cpu_s"] for a in per]
    rts = max(1, fig["round_trips"])
    return {"workers": per, "busy_over_wall": busy / walk, "worker_cpu_seconds": sum(cpu),
            "cpu_speedup_bound": sum(cpu) / max(max(cpu), 1e-9),
            "evaluated": sum(a["evaluated"] for a in per),
            "replicated_apply_seconds": sum(a["apply_s"] for a in per),
            "ms_per_round_trip": 1e3 * fig["round_trip_seconds"] / rts,
            "ms_latency_per_round_trip": 1e3 * max(0.0, fig["round_trip_seconds"] - max(a["busy_s"] for a in per)
                                                   ) / rts,
            "client_share_of_walk": fig["walk_client_cpu_seconds"] / walk}


def load_robust(one, two, lam):
    """Speedup figures of W = 2 over W = 1 that do not depend on how busy the machine was.

    * ``span_speedup``: the walk's critical path in candidates (Σ over round trips of the
      most candidates one worker had to evaluate: a run's length, a batch's largest share
      before its first hit) at W = 1 over W = 2 -- a property of the walk alone.
    * ``cpu_speedup``: Σ over round trips of the slowest worker's CPU seconds, W = 1 over
      W = 2 (inflated at W = 2 when the stop message is slow: the others go on meanwhile).
    * ``projected_*``: each process on its own core and ``lam`` seconds per round trip (the
      idle machine's latency): walk = t·span + lam·round trips, with ``t`` the W = 1
      worker's CPU seconds per candidate; setup = the slowest worker's CPU seconds reading
      its resident rows; fit = setup + walk.
    """
    b1, b2 = one.get("breakdown"), two.get("breakdown")
    if not b1 or not b2:
        return None
    t = b1["worker_cpu_seconds"] / max(1, b1["evaluated"])
    walk = {W: t * r["span_candidates"] + lam * r["round_trips"] for W, r in ((1, one), (2, two))}
    setup = {W: max(w["load_cpu_s"] for w in b["workers"]) for W, b in ((1, b1), (2, b2))}
    return {"span_speedup": one["span_candidates"] / max(1, two["span_candidates"]),
            "cpu_speedup": one["critical_cpu_seconds"] / max(1e-9, two["critical_cpu_seconds"]),
            "seconds_per_candidate": t, "assumed_latency_seconds": lam,
            "projected_walk_seconds": walk, "projected_setup_seconds": setup,
            "projected_walk_speedup": walk[1] / walk[2],
            "projected_fit_speedup": (setup[1] + walk[1]) / (setup[2] + walk[2])}


def _worker_rchar():
    """Bytes this worker process has read through read(2)-like calls (``/proc/self/io``)."""
    with open("/proc/self/io") as fh:
        return next(int(line.split()[1]) for line in fh if line.startswith("rchar:"))


def resident_io(cluster, store, k, store_bytes):
    """BUILD + 5 FastPAM2 iterations on the cluster with resident stripes and without: bytes
    the workers read (their own /proc counters) as a multiple of the store's size on disk."""
    import chunked_medoids as cm

    fig = {}
    for resident in (True, False):
        before = sum(cluster.client.run(_worker_rchar).values())
        t0 = time.perf_counter()
        res = cm.fastpam2(store, k, init="build", max_iter=5, client=cluster.client, resident=resident)
        read = sum(cluster.client.run(_worker_rchar).values()) - before
        fig["resident" if resident else "streamed"] = {
            "seconds": time.perf_counter() - t0, "worker_bytes_read": read,
            "times_store_size": read / store_bytes, "n_iter": res.n_iter, "medoids": res.medoids.tolist()}
        print(f"BUILD + FastPAM2 (5 iterations) resident={resident}: workers read "
              f"{read / store_bytes:.2f}x the store in {fig['resident' if resident else 'streamed']['seconds']:.1f}s",
              file=sys.stderr)
    fig["identical"] = fig["resident"]["medoids"] == fig["streamed"]["medoids"]
    return fig


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=24000)
    ap.add_argument("--k", type=int, default=20)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    ap.add_argument("--sources", nargs="+", default=["zarr", "features"])
    ap.add_argument("--inits", nargs="+", default=["random", "lab"], choices=["random", "lab"])
    ap.add_argument("--worker-memory", default="8GiB")
    ap.add_argument("--swap-ns", type=int, nargs="*", default=[3000, 6000, 12000],
                    help="smaller n whose local swap counts feed the scaling model")
    ap.add_argument("--out", default=None, help="directory for the store (default: a temporary one; an "
                    "existing complete D.zarr there is reused)")
    ap.add_argument("--idle-latency-ms", type=float, default=2.0,
                    help="round-trip latency of the idle machine for the projected (load-robust) speedups")
    ap.add_argument("--no-io", action="store_true",
                    help="skip the resident-stripes I/O part (BUILD + 5 FastPAM2 iterations)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    log = PassLog()
    lg = logging.getLogger("chunked_medoids._dist_eager")
    lg.addHandler(log)
    lg.setLevel(logging.INFO)

    import chunked_medoids as cm

    work = args.out or tempfile.mkdtemp(prefix="cm_bench_dist_")
    os.makedirs(work, exist_ok=True)
    X = hubble_sample(args.n, args.seed)
    inits = {"random": np.sort(np.random.default_rng(args.seed + 1).choice(args.n, args.k, replace=False))}
    out = {"machine": machine(), "n": args.n, "k": args.k, "seed": args.seed,
           "data": "hubble_deep_field pixels (d=3), float32 euclidean", "order": "natural"}
    srcs = {}
    if "zarr" in args.sources:
        t0 = time.perf_counter()
        srcs["zarr"] = cm.build_dissimilarity(X, os.path.join(work, "D.zarr"), metric="euclidean",
                                              dtype="float32", memory_limit="1GiB")
        out["build_seconds"] = time.perf_counter() - t0
        out["store_bytes"] = int(sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in
                                     os.walk(os.path.join(work, "D.zarr")) for f in fs))
        warm_store = cm.build_dissimilarity(X[:500], os.path.join(work, "warm.zarr"), metric="euclidean",
                                            dtype="float32", memory_limit=2**18, overwrite=True)
    if "features" in args.sources:
        srcs["features"] = cm.from_features(X, metric="euclidean", dtype="float32")
    if "lab" in args.inits:
        t0 = time.perf_counter()
        inits["lab"] = cm.lab(cm.from_features(X, metric="euclidean", dtype="float32"), args.k,
                              random_state=args.seed)
        out["lab_seconds"] = time.perf_counter() - t0
    inits = {name: inits[name] for name in args.inits}
    out["inits"] = {name: med.tolist() for name, med in inits.items()}
    refs = {}
    for name, src in srcs.items():
        for iname, init in inits.items():
            t0 = time.perf_counter()
            refs[name, iname] = cm.fasterpam(src, args.k, init=init, num_workers=1, memory_limit="1GiB")
            out[f"local_sequential_{name}_{iname}_seconds"] = time.perf_counter() - t0
            out[f"n_swap_{iname}"], out[f"n_iter_{iname}"] = refs[name, iname].n_swap, refs[name, iname].n_iter
            print(f"local {name} {iname}: {out[f'local_sequential_{name}_{iname}_seconds']:.2f}s", file=sys.stderr)
    out["n_swap"], out["n_iter"] = out["n_swap_random"], out["n_iter_random"]
    runs = {}
    for W in args.workers:
        cluster = Cluster(work, W, args.worker_memory)
        try:
            # imports and the numba kernels' caches in every worker process, for computed rows
            # and for stored ones (loading a cached kernel costs a fresh process about 0.5 s)
            warm = cm.from_features(X[:500], metric="euclidean", dtype="float32")
            cm.fasterpam(warm, 3, random_state=0, client=cluster.client)
            if "zarr" in srcs:
                cm.fasterpam(warm_store, 3, random_state=0, client=cluster.client)
            for name, src in srcs.items():
                for iname, init in inits.items():
                    res, fig = fit_on(cluster, src, args.k, init, log)
                    fig["identical_to_local_sequential"] = same(res, refs[name, iname])
                    assert fig["identical_to_local_sequential"], (name, iname, W)
                    key = f"{name}_W{W}" if iname == "random" else f"{name}-{iname}_W{W}"
                    runs[key] = fig
                    print(f"{key}: {fig['seconds']:.2f}s (setup {fig['setup_seconds']:.2f}s) client cpu "
                          f"{fig['client_cpu_fraction']:.1%} round trips {fig['round_trips']}", file=sys.stderr)
            if "zarr" in srcs and not args.no_io:
                out.setdefault("resident_io", {})[f"W{W}"] = resident_io(cluster, srcs["zarr"], args.k,
                                                                          out["store_bytes"])
        finally:
            cluster.close()
    out["runs"] = runs
    for name in {key.rsplit("_W", 1)[0] for key in runs}:
        if f"{name}_W1" in runs and f"{name}_W2" in runs:
            one, two = runs[f"{name}_W1"], runs[f"{name}_W2"]
            out[f"{name}_speedup_2_over_1"] = one["seconds"] / two["seconds"]
            walk1 = sum(p["seconds"] for p in one["passes"])
            walk2 = sum(p["seconds"] for p in two["passes"])
            out[f"{name}_walk_speedup_2_over_1"] = walk1 / walk2
            out[f"{name}_load_robust"] = load_robust(one, two, args.idle_latency_ms * 1e-3)
    swaps = []
    for n in args.swap_ns:
        if n >= args.n:
            continue
        res = cm.fasterpam(cm.from_features(X[np.random.default_rng(n).choice(args.n, n, replace=False)],
                                            metric="euclidean", dtype="float32"),
                           args.k, random_state=args.seed + 1, num_workers=1)
        swaps.append({"n": n, "n_swap": res.n_swap, "n_iter": res.n_iter})
    swaps.append({"n": args.n, "n_swap": out["n_swap"], "n_iter": out["n_iter"]})
    out["swap_counts"] = swaps
    if args.out is None:
        shutil.rmtree(work, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    main()
