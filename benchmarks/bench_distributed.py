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

With several workers on this one host the zarr actors share the store's rows (each maps
every chunk, checks its own: ``SHARE_ROWS`` in ``chunked_medoids/_dist_eager.py``); the
zarr run with each actor holding only its own granules, as across hosts, runs side by side
as ``zarr-owned_W2`` (skip with ``--no-owned``).

``--part ceiling`` (in ``all`` too) measures what the machine allows: a swap-free pass on
the cluster with the real walk (the fit from the converged medoids: one pass, no swap,
``*-converged_W*``); the same numba work in 1 and in 2 processes at once without Dask (the
walk's own ``EagerActor`` per process, its share of a swap-free pass, started together;
``ceiling.*_processes``); no-op actor calls (wall and client CPU per call, distributed's
floor); and ``ceiling.*_amdahl``, the best fit speedup given the W = 1 run's parts (first
pass sequential, the rest at the process ceiling, round trips free)::

    python benchmarks/bench_distributed.py --n 24000 --k 20 --inits random --swap-ns --no-io --part all

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


# -- the machine's ceiling (``--part ceiling``) -------------------------------------------------
class _Noop:
    """An actor doing nothing: one call's latency and client CPU is distributed's floor."""

    def ping(self, x=None):
        return 0

    async def aping(self, x=None):
        return 0


def noop_round_trips(cluster, calls=200):
    """Wall and client CPU milliseconds per actor call that does nothing, straight to the
    workers (``direct_to_workers``, as the walk sends them): a blocking call from this
    thread (``ActorFuture.result()``) to a method run in the actor's thread and to an async
    one run on the worker's event loop, one call to each of the workers at once, and one
    call carrying a 96 KB row."""
    import asyncio

    c = cluster.client
    keep, c.direct_to_workers = c.direct_to_workers, True
    try:
        addrs = sorted(c.scheduler_info(n_workers=-1)["workers"])
        futs = [c.submit(_Noop, actor=True, workers=[a], pure=False) for a in addrs]
        acts = [f.result() for f in futs]
        row = np.zeros(24000, np.float32)

        async def gathered():
            await asyncio.gather(*[a.aping() for a in acts])

        cases = {"thread_method": lambda: acts[0].ping().result(),
                 "async_method": lambda: acts[0].aping().result(),
                 "thread_method_with_row": lambda: acts[0].ping([(1, 2, 3, row)]).result(),
                 "all_workers_thread_method": lambda: [f.result() for f in [a.ping() for a in acts]],
                 "all_workers_async_awaited_on_loop": lambda: c.sync(gathered)}
        out = {}
        for name, fn in cases.items():
            for _ in range(20):
                fn()
            c0, t0 = time.process_time(), time.perf_counter()
            for _ in range(calls):
                fn()
            wall, cpu = time.perf_counter() - t0, time.process_time() - c0
            out[name] = {"ms_wall": 1e3 * wall / calls, "ms_client_cpu": 1e3 * cpu / calls}
        c.cancel(futs)
        return out
    finally:
        c.direct_to_workers = keep


def _ceiling_child(source, medoids, W, a, reps, barrier, queue):
    """One process of :func:`process_ceiling`: the worker's compute of a swap-free pass
    (``EagerActor.step`` over this process's share of the positions, from the converged
    medoids: nothing accepted) ``reps`` times, each started together with the other
    processes (``barrier``); puts ``(a, [(start, end, thread CPU)...])`` on ``queue``."""
    os.environ.update(ONE_CORE_ENV)
    from chunked_medoids import _dist_eager as de
    from chunked_medoids.algorithms._common import SwapCaches
    from chunked_medoids.algorithms.fasterpam import _replica, fused_eval

    st = SwapCaches(source, np.asarray(medoids, dtype=np.int64))
    fused = fused_eval(source, 1, st) is not None
    G = de.FINE if fused else de.ownership_granule(source, W)
    n_gran = -(-source.n // G)
    payload = {"method": "fasterpam", "source": source, "order": None, "granule": G,
               "granules": np.arange(a, n_gran, W, dtype=np.int64), "state": _replica(st),
               "params": {"tol": 0.0, "w": st.w, "weighted": st.weighted, "fused": fused, "applied": 0},
               "resident": True, "budget": 1 << 30, "threads": 1, "workers": W}
    act = de.EagerActor(payload)
    act.load()
    act.step([], 0, source.n, None, 0)  # first touch of the rows (the walk's setup makes it)
    times = []
    for r in range(reps):
        barrier.wait()
        t0, c0 = time.perf_counter(), time.thread_time()
        hits = act.step([], 0, source.n, None, r + 1)[0]
        times.append((t0, time.perf_counter(), time.thread_time() - c0))
        assert not hits, "the medoids given are not converged"
    queue.put((a, times))


def process_ceiling(source, medoids, workers=(1, 2), reps=3):
    """The numba work of a swap-free pass in W processes at once, without Dask: each process
    builds the walk's own :class:`~chunked_medoids._dist_eager.EagerActor` for its share
    (same granules, same resident rows or computed ones) and walks it; the pass's wall time
    is from the first start to the last end.  ``speedup`` (W=1 over W=2 median walls) is
    what 2 cores give the walk's compute at best on this machine."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    out = {}
    for W in workers:
        barrier, queue = ctx.Barrier(W), ctx.Queue()
        procs = [ctx.Process(target=_ceiling_child, args=(source, medoids, W, a, reps, barrier, queue))
                 for a in range(W)]
        for p in procs:
            p.start()
        got = dict(queue.get(timeout=600) for _ in procs)
        for p in procs:
            p.join()
        walls = [max(got[a][r][1] for a in got) - min(got[a][r][0] for a in got) for r in range(reps)]
        out[f"W{W}"] = {"pass_seconds": sorted(walls)[reps // 2], "all_seconds": walls,
                        "cpu_seconds_per_process": [sorted(t[2] for t in got[a])[reps // 2] for a in sorted(got)]}
    if "W1" in out and "W2" in out:
        out["speedup_2_over_1"] = out["W1"]["pass_seconds"] / out["W2"]["pass_seconds"]
        out["cpu_ratio_2_over_1"] = out["W1"]["cpu_seconds_per_process"][0] / max(
            out["W2"]["cpu_seconds_per_process"])
    return out


def amdahl_bound(one, ceiling):
    """The best 2-over-1 speedup of the fit given the W = 1 run's parts: the first pass (its
    swaps dense: sequential, one synchronisation per swap) and the time outside the walk and
    the set-up stay as they are; the set-up and the other passes run as much faster as the
    process ceiling allows; round trips cost nothing.  ``bound_2_over_1`` takes the
    ceiling's CPU ratio (each process on its own core: what the kernels' contention, e.g.
    for memory bandwidth, leaves; load-robust), ``bound_2_over_1_wall`` its wall ratio
    (includes whatever else ran on the cores meanwhile)."""
    passes = one["passes"]
    if not passes:
        return None
    first = passes[0]["seconds"]
    rest = sum(p["seconds"] for p in passes[1:])
    outside = max(0.0, one["seconds"] - one["setup_seconds"] - sum(p["seconds"] for p in passes))
    out = {"fit_seconds_W1": one["seconds"], "outside_walk_seconds": outside, "setup_seconds": one["setup_seconds"],
           "first_pass_seconds": first, "other_passes_seconds": rest}
    for suffix, speedup in (("", ceiling["cpu_ratio_2_over_1"]), ("_wall", ceiling["speedup_2_over_1"])):
        best = outside + first + (one["setup_seconds"] + rest) / speedup
        out[f"compute_speedup{suffix}"] = speedup
        out[f"best_W2_seconds{suffix}"] = best
        out[f"bound_2_over_1{suffix}"] = one["seconds"] / best
    return out


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
    ap.add_argument("--part", choices=["all", "fits", "ceiling"], default="all",
                    help="fits: the speedup runs; ceiling: what the machine allows (a swap-free pass from the "
                    "converged medoids on the cluster, the same numba work in 1 and 2 processes without Dask, "
                    "no-op actor calls); all: both")
    ap.add_argument("--no-owned", action="store_true",
                    help="skip the zarr W>1 run with each actor holding only its own granules "
                    "(SHARE_ROWS=False: as across hosts), run side by side with the shared rows")
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
            fits = args.part in ("all", "fits")
            ceiling = args.part in ("all", "ceiling")
            if ceiling:
                out.setdefault("ceiling", {}).setdefault("noop_actor_calls", {})[f"W{W}"] = noop_round_trips(cluster)
                for name, src in srcs.items():
                    # a swap-free pass with the real walk: from the converged medoids
                    conv = refs[name, "random"].medoids
                    res, fig = fit_on(cluster, src, args.k, conv, log)
                    assert res.n_swap == 0 and np.array_equal(np.sort(res.medoids), np.sort(conv)), name
                    runs[f"{name}-converged_W{W}"] = fig
                    print(f"{name}-converged_W{W}: {fig['seconds']:.2f}s walk {fig['walk_seconds']:.2f}s",
                          file=sys.stderr)
            for name, src in (srcs.items() if fits else ()):
                for iname, init in inits.items():
                    res, fig = fit_on(cluster, src, args.k, init, log)
                    fig["identical_to_local_sequential"] = same(res, refs[name, iname])
                    assert fig["identical_to_local_sequential"], (name, iname, W)
                    key = f"{name}_W{W}" if iname == "random" else f"{name}-{iname}_W{W}"
                    runs[key] = fig
                    print(f"{key}: {fig['seconds']:.2f}s (setup {fig['setup_seconds']:.2f}s) client cpu "
                          f"{fig['client_cpu_fraction']:.1%} round trips {fig['round_trips']}", file=sys.stderr)
                    if W > 1 and name == "zarr" and iname == "random" and not args.no_owned:
                        # side by side: each actor holding only its own granules (as across
                        # hosts, and as before the workers of one host shared the rows)
                        from chunked_medoids import _dist_eager

                        _dist_eager.SHARE_ROWS = False
                        try:
                            res, fig = fit_on(cluster, src, args.k, init, log)
                        finally:
                            _dist_eager.SHARE_ROWS = None
                        fig["identical_to_local_sequential"] = same(res, refs[name, iname])
                        assert fig["identical_to_local_sequential"], (name, "owned", W)
                        runs[f"{name}-owned_W{W}"] = fig
                        print(f"{name}-owned_W{W}: {fig['seconds']:.2f}s client cpu {fig['client_cpu_fraction']:.1%} "
                              f"round trips {fig['round_trips']}", file=sys.stderr)
            if "zarr" in srcs and not args.no_io and fits:
                out.setdefault("resident_io", {})[f"W{W}"] = resident_io(cluster, srcs["zarr"], args.k,
                                                                          out["store_bytes"])
        finally:
            cluster.close()
    out["runs"] = runs
    for name in {key.rsplit("_W", 1)[0] for key in runs}:
        base = name[:-len("-owned")] if name.endswith("-owned") else name  # one worker shares nothing
        if f"{base}_W1" in runs and f"{name}_W2" in runs:
            one, two = runs[f"{base}_W1"], runs[f"{name}_W2"]
            out[f"{name}_speedup_2_over_1"] = one["seconds"] / two["seconds"]
            walk1 = sum(p["seconds"] for p in one["passes"])
            walk2 = sum(p["seconds"] for p in two["passes"])
            out[f"{name}_walk_speedup_2_over_1"] = walk1 / walk2
            out[f"{name}_load_robust"] = load_robust(one, two, args.idle_latency_ms * 1e-3)
    if args.part in ("all", "ceiling"):
        # after the clusters are gone: nothing else competes for the cores
        for name, src in srcs.items():
            pc = process_ceiling(src, refs[name, "random"].medoids, workers=args.workers)
            out["ceiling"][f"{name}_processes"] = pc
            print(f"ceiling {name}: 2 processes {pc.get('speedup_2_over_1', float('nan')):.2f}x over 1 "
                  f"(CPU ratio {pc.get('cpu_ratio_2_over_1', float('nan')):.2f}x)", file=sys.stderr)
            if f"{name}_W1" in runs and "speedup_2_over_1" in pc:
                out["ceiling"][f"{name}_amdahl"] = amdahl_bound(runs[f"{name}_W1"], pc)
            one, two = runs.get(f"{name}-converged_W1"), runs.get(f"{name}-converged_W2")
            if one and two:
                out["ceiling"][f"{name}_swap_free_pass_2_over_1"] = {
                    "walk": one["walk_seconds"] / two["walk_seconds"], "fit": one["seconds"] / two["seconds"]}
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
