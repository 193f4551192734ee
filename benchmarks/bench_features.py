"""On-the-fly distances from features (issue 16).  Prints one JSON document.

Parts (``--part``):

``headline``  n = 20000 seeded sample of scikit-image ``hubble_deep_field`` pixels (d = 3,
              float32 Euclidean), k = 10 and 100, same random init, 2 threads: FasterPAM
              from ``from_features(X)`` against FasterPAM on the in-memory float32 matrix
              of the same values (``read_rows`` of the whole source), side by side and
              alternated ``--repeat`` times; identical medoids and loss asserted.  Also
              ns per element per pass of the in-memory path (the swap kernel).
``large``     n = 100000 pixels (d = 3) from features, k = 10 and 100: seconds, passes.
``swap``      The stored swap kernel: FasterPAM on the in-memory float32 matrix of 20000
              pixels, k = 10 and 100, 2 threads: ns per element per pass, side by side with
              ``kmedoids.fasterpam`` (``n_cpu=1`` and ``2``, same matrix and init) when that
              package is installed (an optional benchmark reference only).
``passes``    The block-parallel passes on features, n = 10000 pixels (d = 3), 2 threads:
              BUILD (k = 10), one FastPAM1 iteration and the silhouette, each on the
              in-memory float32 matrix, on the features source (fused kernels) and on the
              features source with the fused passes switched off (``read_rows`` blocks into
              the stored kernels); identical results asserted.
``metrics``   Per metric and d in {3, 16, 64, 784}: ns per distance for our rows
              (``read_rows`` of a block of rows), one fused FasterPAM pass (ns per distance
              per pass, k = 10), and ``sklearn.metrics.pairwise_distances`` on the same
              block (its default threads).  d = 3: pixels; d = 16 / 64 / 784: 4×4, 8×8 and
              28×28 patches of the grayscale ``camera`` image at random positions (values
              0..255; the 784-d patches stand in for MNIST, which is not bundled offline).
              n shrinks with d so each measurement takes about a second.

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
N_FOR_D = {3: 20000, 16: 10000, 64: 5000, 784: 2000}


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
    res = fasterpam(D, k, init=init, num_workers=2, **kw)
    return res, time.perf_counter() - t0


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
        mem, feat = [], []
        for _ in range(repeat):
            r1, t1 = _fit(D, k, init)
            r2, t2 = _fit(src, k, init)
            assert np.array_equal(r1.medoids, r2.medoids) and r1.loss == r2.loss, "results differ"
            mem.append(t1)
            feat.append(t2)
        passes = r1.n_iter
        ratios = [b / a for a, b in zip(mem, feat)]
        out["k"][str(k)] = {
            "passes": passes, "swaps": r1.n_swap, "identical": True,
            "memory_s": mem, "features_s": feat, "ratio_each": ratios,
            "ratio_median": float(np.median(ratios)),
            "memory_ns_per_el_pass": float(np.median(mem)) / passes / n / n * 1e9,
            "features_ns_per_el_pass": float(np.median(feat)) / passes / n / n * 1e9,
        }
        print(f"k={k}: memory {np.median(mem):.2f}s features {np.median(feat):.2f}s "
              f"ratio {np.median(ratios):.2f}", file=sys.stderr)
    return out


def large(n=100000, ks=(10, 100), seed=0):
    from chunked_medoids import from_features

    X = pixels(n, seed)
    src = from_features(X, "euclidean")
    rng = np.random.default_rng(seed)
    out = {"n": n, "d": 3, "k": {}}
    for k in ks:
        init = rng.choice(n, k, replace=False)
        res, t = _fit(src, k, init)
        out["k"][str(k)] = {"seconds": t, "passes": res.n_iter, "swaps": res.n_swap, "loss": res.loss,
                            "ns_per_distance_per_pass": t / res.n_iter / n / n * 1e9}
        print(f"n={n} k={k}: {t:.1f}s, {res.n_iter} passes", file=sys.stderr)
    return out


def swap_part(n=20000, ks=(10, 100), seed=0):
    from chunked_medoids import from_features

    try:
        import kmedoids
    except ImportError:  # optional reference
        kmedoids = None
    D = from_features(pixels(n, seed), "euclidean").read_rows(0, n)
    rng = np.random.default_rng(seed)
    out = {"n": n, "threads": 2, "k": {}}
    for k in ks:
        init = rng.choice(n, k, replace=False)
        _fit(D, k, init, max_iter=1)  # warm
        res, t = _fit(D, k, init)
        entry = {"seconds": t, "passes": res.n_iter, "swaps": res.n_swap, "loss": res.loss,
                 "ns_per_el_pass": t / res.n_iter / n / n * 1e9}
        for cpus in ((1, 2) if kmedoids is not None else ()):
            kmedoids.fasterpam(D, init.copy(), max_iter=1, n_cpu=cpus)  # warm
            t0 = time.perf_counter()
            rk = kmedoids.fasterpam(D, init.copy(), max_iter=100, n_cpu=cpus)
            tk = time.perf_counter() - t0
            entry[f"kmedoids_n_cpu_{cpus}"] = {
                "seconds": tk, "passes": int(rk.n_iter), "loss": float(rk.loss),
                "ns_per_el_pass": tk / max(1, int(rk.n_iter)) / n / n * 1e9,
                "same_medoids": sorted(rk.medoids.tolist()) == sorted(res.medoids.tolist()),
                "time_ratio_ours_over_kmedoids": t / tk}
        out["k"][str(k)] = entry
        print(f"swap n={n} k={k}: ours {entry['ns_per_el_pass']:.3f} ns/el/pass"
              + "".join(f", {key} {v['ns_per_el_pass']:.3f}" for key, v in entry.items() if key.startswith("kmed")),
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

    from chunked_medoids import fasterpam, from_features

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
            fasterpam(src, 10, init=init, max_iter=1, num_workers=2)  # compile
            t0 = time.perf_counter()
            fasterpam(src, 10, init=init, max_iter=1, num_workers=2)
            fused = (time.perf_counter() - t0) / n / n * 1e9
            kw = {"p": 3} if name == "minkowski" else {}
            pairwise_distances(X[:2], X[:50], metric=METRICS[name], **kw)
            t0 = time.perf_counter()
            pairwise_distances(X[1000:1000 + rows], X, metric=METRICS[name], **kw)
            skl = (time.perf_counter() - t0) / rows / n * 1e9
            out[f"{name}/d={d}"] = {"metric": name, "d": d, "n": n, "rows_ns": ours,
                                    "fasterpam_pass_ns": fused, "sklearn_ns": skl}
            print(f"{name:12s} d={d:4d} n={n}: rows {ours:.2f} ns, fasterpam pass {fused:.2f} ns, "
                  f"sklearn {skl:.2f} ns", file=sys.stderr)
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--part", choices=["headline", "large", "swap", "passes", "metrics", "all"], default="all")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--n", type=int, default=20000, help="n of the headline part")
    ap.add_argument("--large-n", type=int, default=100000)
    args = ap.parse_args(argv)
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
        result["metrics"] = metrics_part()
    result["loadavg_end"] = os.getloadavg()
    emit(result)


if __name__ == "__main__":
    main()
