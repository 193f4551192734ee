"""On-the-fly distances from features (issue 16).  Prints one JSON document.

Parts (``--part``):

``headline``  n = 20000 seeded sample of scikit-image ``hubble_deep_field`` pixels (d = 3,
              float32 Euclidean), k = 10 and 100, same random init, 2 threads: FasterPAM
              from ``from_features(X)`` against FasterPAM on the in-memory float32 matrix
              of the same values (``read_rows`` of the whole source), side by side and
              alternated ``--repeat`` times; identical medoids and loss asserted.  Also
              ns per element per pass of the in-memory path (the swap kernel).  Both
              sides are default fits (``ratio_median``): the in-memory fit includes the
              one-time validation of the matrix; ``ratio_vs_walk_median`` divides by the
              in-memory fit with ``validate=False`` instead (the stricter comparison).
``large``     n = 100000 pixels (d = 3) from features, k = 10 and 100: seconds, passes, the
              seconds of each pass, CPU time over wall time.
``swap``      The stored swap kernel: FasterPAM on the in-memory float32 matrix of 20000
              pixels, k = 10 and 100, 2 threads and 1 thread (identical results asserted),
              each fit run 3 times alternated (the median run reported, every run's ns in
              ``walk_runs_ns_per_el_pass``), timed three ways, each divided by passes · n² (ns per element per pass):
              the walk alone (``validate=False``: ``walk_*`` keys, the issue-16 figure),
              the default fit (``validate=True``: ``ns_per_el_pass`` and the other keys
              without a prefix, as before; this includes the one-time up-front validation
              of the matrix, ``check_array``), and that validation alone
              (``validation_seconds``; next to it ``validation_numpy_seconds``, the numpy
              definition of the same check, which was the whole check before the one-pass
              kernels: medians of 3 alternated runs).  ``kmedoids.fasterpam`` (``n_cpu=1`` and ``2``,
              same matrix and init, no validation) when that package is installed (an
              optional benchmark reference only).  A few minutes on an idle machine.
``passes``    The block-parallel passes on features, n = 10000 pixels (d = 3), 2 threads:
              BUILD (k = 10), one FastPAM1 iteration and the silhouette, each on the
              in-memory float32 matrix, on the features source (fused kernels) and on the
              features source with the fused passes switched off (``read_rows`` blocks into
              the stored kernels); identical results asserted.
``metrics``   Per metric and d (``--dims``, default 3, 16, 64, 784; also 9, 36, 144, 256):
              ns per distance for our rows (``read_rows`` of a block of rows), one FasterPAM
              pass (k = 10, 2 threads) through the fused kernels and one through
              ``read_rows`` blocks into the stored kernel (wall and process CPU time per
              distance), which of the two ``FeatureSource.prefer_fused`` picks, and
              ``sklearn.metrics.pairwise_distances`` on the same block (its default
              threads).  d = 3: pixels; other d: square patches (4×4, 8×8, 28×28, ...) of
              the grayscale ``camera`` image at random positions (values 0..255; the 784-d
              patches stand in for MNIST, which is not bundled offline).  n shrinks with d
              so each measurement takes about a second.
``float16``   FasterPAM (n = 20000 pixels, d = 3, k = 10 and 20, same random init, 2 threads)
              from ``from_features(X, dtype="float16")`` through the fused kernels (which
              quantise as the float16 store does) against ``from_features(X)`` (float32,
              fused), the float16 source with the fused passes switched off (``read_rows``
              blocks: the only path before the kernels quantised) and the in-memory float32
              matrix of the float16 values; alternated ``--repeat`` times, identical results
              of the three float16 runs asserted.

``walk``      Whole default FasterPAM fits (k = 10-50, 2 threads, euclidean) from wide image
              patches (d = 64, 144, 784; ``WALK_CASES``): the eager walk through the fused
              kernels (``prefer_fused(walk=True)``, no bound on d) against the row-block walk
              it replaced above d = 32, alternated twice; identical results asserted.

Every part records the 1-minute load average next to its figures; the ``swap`` and
``large`` parts also record process CPU time (per thread, per element), which a shared
machine inflates much less than wall time.

Reproduce the README figures with::

    python benchmarks/bench_features.py --part all > benchmarks/results/features.json
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine  # noqa: E402

#: metrics benchmarked by the ``metrics`` part, and the sklearn / scipy name of each.
METRICS = {"euclidean": "euclidean", "sqeuclidean": "sqeuclidean", "manhattan": "cityblock",
           "chebyshev": "chebyshev", "minkowski": "minkowski", "cosine": "cosine",
           "correlation": "correlation", "canberra": "canberra", "braycurtis": "braycurtis",
           "hamming": "hamming"}
#: n per feature dimension in the ``metrics`` part.
N_FOR_D = {3: 20000, 9: 15000, 16: 10000, 36: 7000, 64: 5000, 144: 4000, 256: 3000, 784: 2000}


def pixels(n, seed=0):
    from skimage import data

    pix = data.hubble_deep_field().reshape(-1, 3).astype(np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(pix.shape[0], n, replace=False))
    return np.ascontiguousarray(pix[idx])


def patches(n, side, seed=0):
    from skimage import data

    img = data.camera().astype(np.float64)
    rng = np.random.default_rng(seed)
    r = rng.integers(0, img.shape[0] - side + 1, n)
    c = rng.integers(0, img.shape[1] - side + 1, n)
    out = np.empty((n, side * side))
    for i in range(n):
        out[i] = img[r[i]:r[i] + side, c[i]:c[i] + side].ravel()
    return out


def features_for(d, n, seed=0):
    if d == 3:
        return pixels(n, seed)
    return patches(n, int(round(d ** 0.5)), seed)


def _fit(D, k, init, **kw):
    from chunked_medoids import fasterpam

    t0 = time.perf_counter()
    res = fasterpam(D, k, init=init, **dict({"num_workers": 2}, **kw))
    return res, time.perf_counter() - t0


def _timed(fn, *args, **kw):
    """``(result, wall s, process CPU s, loadavg-1min at the end)`` of ``fn(*args, **kw)``.

    Process CPU time counts only the time this process's threads were on a core, so on a
    shared machine ``cpu / (passes·n²)`` per thread is a load-robust figure next to the wall
    time (it still includes cache / memory-bandwidth contention from other processes).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    res = fn(*args, **kw)
    return res, time.perf_counter() - t0, time.process_time() - c0, os.getloadavg()[0]


def _per_el(seconds, passes, n):
    return seconds / max(1, passes) / n / n * 1e9


def headline(n=20000, ks=(10, 100), repeat=3, seed=0):
    from chunked_medoids import from_features

    X = pixels(n, seed)
    src = from_features(X, "euclidean")
    t0 = time.perf_counter()
    D = src.read_rows(0, n)
    rows_s = time.perf_counter() - t0
    out = {"n": n, "d": 3, "data": "hubble_deep_field pixels", "rows_whole_matrix_s": rows_s, "k": {}}
    rng = np.random.default_rng(seed)
    for k in ks:
        init = rng.choice(n, k, replace=False)
        _fit(src, k, init, max_iter=1)  # compile / warm both paths
        _fit(D, k, init, max_iter=1)
        _fit(D, k, init, max_iter=1, validate=False)
        mem, feat, walk = [], [], []
        for _ in range(repeat):
            r1, t1 = _fit(D, k, init)
            r2, t2 = _fit(src, k, init)
            r3, t3 = _fit(D, k, init, validate=False)
            assert np.array_equal(r1.medoids, r2.medoids) and r1.loss == r2.loss, "results differ"
            assert np.array_equal(r1.medoids, r3.medoids) and r1.loss == r3.loss, "results differ"
            mem.append(t1)
            feat.append(t2)
            walk.append(t3)
        passes = r1.n_iter
        ratios = [b / a for a, b in zip(mem, feat)]
        ratios_walk = [b / a for a, b in zip(walk, feat)]
        out["k"][str(k)] = {
            "passes": passes, "swaps": r1.n_swap, "identical": True,
            "memory_s": mem, "features_s": feat, "ratio_each": ratios,
            "ratio_median": float(np.median(ratios)),
            "memory_ns_per_el_pass": float(np.median(mem)) / passes / n / n * 1e9,
            "features_ns_per_el_pass": float(np.median(feat)) / passes / n / n * 1e9,
            "memory_walk_s": walk, "ratio_vs_walk_each": ratios_walk,
            "ratio_vs_walk_median": float(np.median(ratios_walk)),
        }
        print(f"k={k}: memory {np.median(mem):.2f}s (walk alone {np.median(walk):.2f}s) features "
              f"{np.median(feat):.2f}s ratio {np.median(ratios):.2f} (vs the walk alone "
              f"{np.median(ratios_walk):.2f})", file=sys.stderr)
    return out


class _PassTimes:
    """Collects the seconds of each eager pass from the ``log_pass`` lines."""

    def __enter__(self):
        import logging

        self.seconds = []
        parent = self

        class H(logging.Handler):
            def emit(self, record):
                if record.msg.startswith("%s pass %d"):
                    parent.seconds.append(float(record.args[5]))

        self.h = H(level=logging.INFO)
        self.log = logging.getLogger("chunked_medoids.algorithms._eager")
        self.level = self.log.level
        self.log.setLevel(logging.INFO)
        self.log.addHandler(self.h)
        return self

    def __exit__(self, *exc):
        self.log.removeHandler(self.h)
        self.log.setLevel(self.level)


def large(n=100000, ks=(10, 100), seed=0):
    from chunked_medoids import from_features

    X = pixels(n, seed)
    src = from_features(X, "euclidean")
    rng = np.random.default_rng(seed)
    out = {"n": n, "d": 3, "k": {},
           "notes": "pass_seconds from the eager pass log; cpu_over_wall = process CPU / wall (2 cores: 2.0 "
                    "is both threads busy all the time); loadavg = 1-minute load average after the run"}
    _fit(src, 10, np.arange(10), max_iter=1)  # compile (the inits below stay those of earlier runs)
    for k in ks:
        init = rng.choice(n, k, replace=False)
        with _PassTimes() as pt:
            (res, _), t, c, load = _timed(_fit, src, k, init)
        out["k"][str(k)] = {"seconds": t, "passes": res.n_iter, "swaps": res.n_swap, "loss": res.loss,
                            "ns_per_distance_per_pass": _per_el(t, res.n_iter, n),
                            "pass_seconds": pt.seconds, "cpu_seconds": c, "cpu_over_wall": c / t,
                            "loadavg": load}
        print(f"n={n} k={k}: {t:.1f}s, {res.n_iter} passes ({', '.join(f'{x:.1f}' for x in pt.seconds)} s), "
              f"CPU/wall {c / t:.2f}, load {load:.1f}", file=sys.stderr)
    return out


#: alternated repetitions of each fit in the ``swap`` part (medians reported, all runs kept).
WALK_REPEAT = 3


def _median_run(runs):
    """The run of median wall time among ``_timed`` results."""
    return sorted(runs, key=lambda r: r[1])[len(runs) // 2]


def swap_part(n=20000, ks=(10, 100), seed=0):
    from chunked_medoids import from_features, open_dissimilarity
    from chunked_medoids.sources.validate import _check_array_numpy

    try:
        import kmedoids
    except ImportError:  # optional reference
        kmedoids = None
    D = from_features(pixels(n, seed), "euclidean").read_rows(0, n)
    rng = np.random.default_rng(seed)
    out = {"n": n, "threads": 2, "k": {},
           "notes": "walk_ns_per_el_pass = wall of fasterpam(validate=False) / passes / n^2 (2 threads): "
                    "the swap walk alone, the issue-16 'ns per element per pass'; ns_per_el_pass = the same "
                    "for the default fit (validate=True), which also validates the in-memory matrix once "
                    "up front (validation_seconds, timed alone with open_dissimilarity(D)); "
                    "validation_numpy_seconds = the numpy definition of that check (medians of 3 "
                    "alternated runs each); "
                    "*cpu_ns_per_el_pass_per_thread = process CPU / passes / n^2 / threads (load-robust); "
                    "single_thread_* = num_workers=1; kmedoids_* = kmedoids.fasterpam (no validation), "
                    "time_ratio_ours_over_kmedoids uses the default fit, walk_time_ratio_* the walk; "
                    "loadavg = 1-minute load average after the run (2 cores)"}
    for k in ks:
        init = rng.choice(n, k, replace=False)
        _fit(D, k, init, max_iter=1)  # warm
        runs = {"w": [], "d": [], "w1": [], "d1": []}
        for _ in range(WALK_REPEAT):  # alternated, side by side; medians reported (one run swings +-20 %)
            runs["w"].append(_timed(_fit, D, k, init, validate=False))
            runs["d"].append(_timed(_fit, D, k, init))
            runs["w1"].append(_timed(_fit, D, k, init, num_workers=1, validate=False))
            runs["d1"].append(_timed(_fit, D, k, init, num_workers=1))
        (resw, _), tw, cw, loadw = _median_run(runs["w"])
        (res, _), t, c, load = _median_run(runs["d"])
        (resw1, _), tw1, cw1, loadw1 = _median_run(runs["w1"])
        (res1, _), t1, c1, load1 = _median_run(runs["d1"])
        for r in runs["w"] + runs["d"] + runs["w1"] + runs["d1"]:
            assert np.array_equal(res.medoids, r[0][0].medoids) and res.loss == r[0][0].loss, "runs differ"
        for r in (res1, resw, resw1):
            assert np.array_equal(res.medoids, r.medoids) and res.loss == r.loss, "runs differ"
        vals, nums = [], []
        for _ in range(3):  # alternated, side by side; medians reported
            vals.append(_timed(open_dissimilarity, D)[1:])
            nums.append(_timed(_check_array_numpy, D, "D")[1:])
        tv, cv, loadv = (float(np.median(x)) for x in zip(*vals))
        tvn, cvn, _ = (float(np.median(x)) for x in zip(*nums))
        entry = {"walk_runs_ns_per_el_pass": [_per_el(r[1], resw.n_iter, n) for r in runs["w"]],
                 "single_thread_walk_runs_cpu_ns_per_el_pass": [_per_el(r[2], resw.n_iter, n) for r in runs["w1"]],
                 "walk_seconds": tw, "walk_ns_per_el_pass": _per_el(tw, resw.n_iter, n),
                 "walk_cpu_ns_per_el_pass_per_thread": _per_el(cw, resw.n_iter, n) / 2, "walk_loadavg": loadw,
                 "single_thread_walk_ns_per_el_pass": _per_el(tw1, resw1.n_iter, n),
                 "single_thread_walk_cpu_ns_per_el_pass": _per_el(cw1, resw1.n_iter, n),
                 "single_thread_walk_loadavg": loadw1,
                 "seconds": t, "passes": res.n_iter, "swaps": res.n_swap, "loss": res.loss,
                 "ns_per_el_pass": _per_el(t, res.n_iter, n),
                 "cpu_ns_per_el_pass_per_thread": _per_el(c, res.n_iter, n) / 2, "cpu_over_wall": c / t,
                 "loadavg": load,
                 "single_thread_ns_per_el_pass": _per_el(t1, res1.n_iter, n),
                 "single_thread_cpu_ns_per_el_pass": _per_el(c1, res1.n_iter, n), "single_thread_loadavg": load1,
                 "validation_seconds": tv, "validation_cpu_seconds": cv, "validation_loadavg": loadv,
                 "validation_ns_per_el": tv / n / n * 1e9,
                 "validation_numpy_seconds": tvn, "validation_numpy_cpu_seconds": cvn,
                 "validation_numpy_over_kernels": tvn / tv,
                 "validation_runs_seconds": [v[0] for v in vals],
                 "validation_numpy_runs_seconds": [v[0] for v in nums]}
        for cpus in ((1, 2) if kmedoids is not None else ()):
            rk, tk, ck, lk = _timed(kmedoids.fasterpam, D, init.copy(), max_iter=100, n_cpu=cpus)
            passes = max(1, int(rk.n_iter))
            entry[f"kmedoids_n_cpu_{cpus}"] = {
                "seconds": tk, "passes": int(rk.n_iter), "loss": float(rk.loss),
                "ns_per_el_pass": _per_el(tk, passes, n),
                "cpu_ns_per_el_pass_per_thread": _per_el(ck, passes, n) / cpus, "loadavg": lk,
                "same_medoids": sorted(rk.medoids.tolist()) == sorted(res.medoids.tolist()),
                "time_ratio_ours_over_kmedoids": t / tk,
                "cpu_ratio_ours_over_kmedoids": c / ck,
                "walk_time_ratio_ours_over_kmedoids": tw / tk,
                "walk_cpu_ratio_ours_over_kmedoids": cw / ck}
        out["k"][str(k)] = entry
        print(f"swap n={n} k={k}: walk {entry['walk_ns_per_el_pass']:.3f} ns/el/pass wall "
              f"({entry['walk_cpu_ns_per_el_pass_per_thread']:.3f} CPU/thread; 1 thread "
              f"{entry['single_thread_walk_cpu_ns_per_el_pass']:.3f} CPU), default fit "
              f"{entry['ns_per_el_pass']:.3f} wall, validation {tv:.3f} s (numpy definition "
              f"{tvn:.3f} s), load {load:.1f}"
              + "".join(f", {key} {v['ns_per_el_pass']:.3f} wall {v['cpu_ns_per_el_pass_per_thread']:.3f} CPU"
                        for key, v in entry.items() if key.startswith("kmed")),
              file=sys.stderr)
    return out


def passes_part(n=10000, k=10, seed=0):
    import importlib

    import chunked_medoids as cm
    from chunked_medoids.algorithms import _fused

    src = cm.from_features(pixels(n, seed), "euclidean")
    D = src.read_rows(0, n)
    labels = cm.fasterpam(D, k, random_state=seed).labels
    init = np.random.default_rng(seed).choice(n, k, replace=False)
    jobs = {"build": ("init", lambda X: cm.build(X, k, num_workers=2).tolist()),
            "fastpam1_1_iteration": ("pam", lambda X: cm.fastpam1(X, k, init=init, max_iter=1,
                                                                  num_workers=2).medoids.tolist()),
            "silhouette": ("silhouette", lambda X: cm.silhouette(X, labels, num_workers=2))}
    out = {"n": n, "d": 3, "k": k, "threads": 2}
    for name, (modname, job) in jobs.items():
        mod = importlib.import_module(f"chunked_medoids.algorithms.{modname}")
        job(src)  # compile / warm
        job(D)
        times, results = {}, {}
        for label, X, fused in (("memory", D, True), ("features_fused", src, True),
                                ("features_rows", src, False)):
            mod.fused_ok = _fused.fused_ok if fused else (lambda source, engine: False)
            try:
                t0 = time.perf_counter()
                results[label] = job(X)
                times[label] = time.perf_counter() - t0
            finally:
                mod.fused_ok = _fused.fused_ok
        assert results["memory"] == results["features_fused"] == results["features_rows"], name
        out[name] = {"seconds": times, "identical": True,
                     "fused_over_memory": times["features_fused"] / times["memory"],
                     "rows_over_fused": times["features_rows"] / times["features_fused"]}
        print(f"{name}: " + ", ".join(f"{a} {b:.2f}s" for a, b in times.items()), file=sys.stderr)
    return out


def metrics_part(dims=(3, 16, 64, 784), metrics=tuple(METRICS), seed=0, rows=256):
    from sklearn.metrics import pairwise_distances

    import chunked_medoids.algorithms.fasterpam as fp
    from chunked_medoids import fasterpam, from_features
    from chunked_medoids._kernels.fused import FusedEval

    def one_pass(src, init, fused):
        saved = fp.fused_eval
        if fused:  # the fused kernels whatever FeatureSource.prefer_fused says
            fp.fused_eval = lambda source, threads, st: FusedEval(source.fused_bundle(), threads, st.ds)
        else:  # the rows path: read_rows blocks into the stored kernel
            fp.fused_eval = lambda *a: None
        try:
            _, t, c, _ = _timed(fasterpam, src, 10, init=init, max_iter=1, num_workers=2)
            return t, c
        finally:
            fp.fused_eval = saved

    out = {}
    for d in dims:
        n = N_FOR_D[d]
        X = features_for(d, n, seed)
        init = np.random.default_rng(seed).choice(n, 10, replace=False)
        for name in metrics:
            params = {"p": 3} if name == "minkowski" else {}
            src = from_features(X, name, **params)
            src.read_rows(0, 2)  # compile
            t0 = time.perf_counter()
            src.read_rows(1000, 1000 + rows)
            ours = (time.perf_counter() - t0) / rows / n * 1e9
            fused = fused_cpu = None
            if src.fused_bundle() is not None:
                one_pass(src, init, True)  # compile
                t, c = one_pass(src, init, True)
                fused, fused_cpu = _per_el(t, 1, n), _per_el(c, 1, n)
            one_pass(src, init, False)
            t, c = one_pass(src, init, False)
            via_rows, rows_cpu = _per_el(t, 1, n), _per_el(c, 1, n)
            chosen = "fused" if src.prefer_fused(walk=True) else "rows"  # FasterPAM's choice
            kw = {"p": 3} if name == "minkowski" else {}
            pairwise_distances(X[:2], X[:50], metric=METRICS[name], **kw)
            t0 = time.perf_counter()
            pairwise_distances(X[1000:1000 + rows], X, metric=METRICS[name], **kw)
            skl = (time.perf_counter() - t0) / rows / n * 1e9
            out[f"{name}/d={d}"] = {"metric": name, "d": d, "n": n, "rows_ns": ours,
                                    "fasterpam_pass_fused_ns": fused, "fasterpam_pass_rows_ns": via_rows,
                                    "fasterpam_pass_fused_cpu_ns": fused_cpu, "fasterpam_pass_rows_cpu_ns": rows_cpu,
                                    "chosen": chosen, "sklearn_ns": skl, "loadavg": os.getloadavg()[0]}
            print(f"{name:12s} d={d:4d} n={n}: rows {ours:.2f} ns, fasterpam pass fused "
                  f"{'-' if fused is None else f'{fused:.2f}'} ns (CPU {'-' if fused is None else f'{fused_cpu:.2f}'}) / "
                  f"via rows {via_rows:.2f} ns (CPU {rows_cpu:.2f}) (chosen: {chosen}), "
                  f"sklearn {skl:.2f} ns", file=sys.stderr)
    return out


def float16_part(n=20000, ks=(10, 20), repeat=2, seed=0):
    from chunked_medoids import from_features

    X = pixels(n, seed)
    f32 = from_features(X, "euclidean")
    f16 = from_features(X, "euclidean", dtype="float16")
    D16 = f16.read_rows(0, n)

    rows16 = from_features(X, "euclidean", dtype="float16")  # fused passes off: read_rows blocks
    rows16.prefer_fused = lambda walk=False: False
    out = {"n": n, "d": 3, "scale": f16.scale, "fused_float16": f16.prefer_fused(), "k": {}}
    rng = np.random.default_rng(seed)
    for k in ks:
        init = rng.choice(n, k, replace=False)
        for src in (f32, f16, D16):
            _fit(src, k, init, max_iter=1)  # compile / warm
        times = {"float32_features": [], "float16_features": [], "float16_rows": [], "float16_matrix": []}
        for _ in range(repeat):
            r32, t = _fit(f32, k, init)
            times["float32_features"].append(t)
            r16, t = _fit(f16, k, init)
            times["float16_features"].append(t)
            rr, t = _fit(rows16, k, init)
            times["float16_rows"].append(t)
            rm, t = _fit(D16, k, init)
            times["float16_matrix"].append(t)
            for r in (rr, rm):
                assert np.array_equal(r.medoids, r16.medoids) and r.loss == r16.loss, "float16 results differ"
        med = {key: float(np.median(v)) for key, v in times.items()}
        out["k"][str(k)] = {"seconds": times, "median_s": med, "passes_float16": r16.n_iter,
                            "passes_float32": r32.n_iter, "same_medoids_as_float32": bool(
                                np.array_equal(np.sort(r32.medoids), np.sort(r16.medoids))),
                            "ratio_float16_over_float32_features": [
                                b / a for a, b in zip(times["float32_features"], times["float16_features"])],
                            "ratio_rows_over_fused_float16": [
                                b / a for a, b in zip(times["float16_features"], times["float16_rows"])],
                            "loadavg": os.getloadavg()[0]}
        print(f"k={k}: " + ", ".join(f"{key} {v:.2f}s" for key, v in med.items()), file=sys.stderr)
    return out


#: (d, n, k) of the ``walk`` part: image patches as in ``metrics``.
WALK_CASES = ((64, 20000, 10), (144, 6000, 30), (784, 4000, 10), (784, 2000, 50))


def walk_part(cases=WALK_CASES, repeat=2, seed=0):
    """Whole default FasterPAM fits from wide features (euclidean, 2 threads): the walk
    through the fused kernels (``prefer_fused(walk=True)``, no bound on d) against the
    row-block walk it replaced above d = 32 (``FUSED_WALK_MAX_D = 32``), alternated; the same
    medoids and loss asserted."""
    from chunked_medoids import from_features
    from chunked_medoids.sources import features as feat

    out = {}
    saved = feat.FUSED_WALK_MAX_D
    try:
        for d, n, k in cases:
            X = features_for(d, n, seed)
            init = np.random.default_rng(seed).choice(n, k, replace=False)
            src = from_features(X, "euclidean")
            times = {"fused": [], "rows": []}
            res = {}
            for _ in range(repeat):
                for name, bound in (("fused", None), ("rows", 32)):
                    feat.FUSED_WALK_MAX_D = bound
                    res[name], t = _fit(src, k, init)
                    times[name].append(t)
                assert np.array_equal(res["fused"].medoids, res["rows"].medoids) and \
                    res["fused"].loss == res["rows"].loss, "the two walks differ"
            med = {key: float(np.median(v)) for key, v in times.items()}
            out[f"d={d}/n={n}/k={k}"] = {"seconds": times, "median_s": med, "passes": res["fused"].n_iter,
                                         "rows_over_fused": med["rows"] / med["fused"],
                                         "loadavg": os.getloadavg()[0]}
            print(f"walk d={d} n={n} k={k}: fused {med['fused']:.2f}s rows {med['rows']:.2f}s "
                  f"({res['fused'].n_iter} passes)", file=sys.stderr)
    finally:
        feat.FUSED_WALK_MAX_D = saved
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["headline", "large", "swap", "passes", "metrics", "float16", "walk", "all"],
                    default="all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000, help="n of the headline part")
    ap.add_argument("--large-n", type=int, default=100000)
    ap.add_argument("--dims", default="3,16,64,784", help="d values of the metrics part")
    ap.add_argument("--metrics", default=",".join(METRICS), help="metrics of the metrics part")
    ap.add_argument("--sizes", default="", help="n per d of the metrics part, e.g. 64=40000,784=8000 "
                                                "(default: N_FOR_D)")
    args = ap.parse_args(argv)
    for item in filter(None, args.sizes.split(",")):
        d, n = item.split("=")
        N_FOR_D[int(d)] = int(n)
    result = {"machine": machine(), "started": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
              "loadavg_start": os.getloadavg()}
    if args.part in ("headline", "all"):
        result["headline"] = headline(args.n, repeat=args.repeat)
    if args.part in ("large", "all"):
        result["large"] = large(args.large_n)
    if args.part in ("swap", "all"):
        result["swap"] = swap_part(args.n)
    if args.part in ("passes", "all"):
        result["passes"] = passes_part()
    if args.part in ("metrics", "all"):
        result["metrics"] = metrics_part(dims=tuple(int(x) for x in args.dims.split(",")),
                                         metrics=tuple(args.metrics.split(",")))
    if args.part in ("float16", "all"):
        result["float16"] = float16_part(args.n, repeat=args.repeat)
    if args.part in ("walk", "all"):
        result["walk"] = walk_part()
    result["loadavg_end"] = os.getloadavg()
    emit(result)


if __name__ == "__main__":
    main()
