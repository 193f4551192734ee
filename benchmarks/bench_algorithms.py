"""Benchmark of the exact PAM family: ns per matrix element per pass, loss, kmedoids ratio.

Data: the first ``--n`` pixels of scikit-image's ``hubble_deep_field`` (RGB as float64
features); the Euclidean matrix is computed in memory with numpy in row blocks and cast to
float32 (default n = 20000: a 1.6 GB matrix).  For k in ``--k`` (default 10 and 100), from
the same random init:

* FasterPAM single-threaded (``num_workers=1``, the sequential path) and with 2 threads
  (speculative evaluation, exact): seconds, passes, ns per element per pass, loss;
* ``kmedoids.fasterpam(D, init, n_cpu=1)`` when installed: seconds, time ratio
  ours/kmedoids, equality of the medoid sets and of the loss;
* FastPAM1, FastPAM2 and alternating (block-parallel passes, default threads) with at most
  ``--max-iter-full`` iterations (each iteration is a full pass; the figure of merit is the
  time per pass);
* PAM (O(k·n²) per iteration) on the first ``--pam-n`` points only (default 2000), at most
  ``--max-iter-full`` iterations: ns per (element × k) per iteration.

    python benchmarks/bench_algorithms.py              # full size
    python benchmarks/bench_algorithms.py --n 5000     # quicker

Prints one JSON document (logs on stderr).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import emit, hubble_pixels, machine  # noqa: E402


def euclidean_matrix(X, block=2000):
    n = X.shape[0]
    D = np.empty((n, n), dtype=np.float32)
    for a in range(0, n, block):
        b = min(a + block, n)
        diff = X[a:b, None, :] - X[None, :, :]
        D[a:b] = np.sqrt((diff * diff).sum(-1))
    np.fill_diagonal(D, 0)
    return D


def _run(f, D, k, **kw):
    t0 = time.perf_counter()
    r = f(D, k, **kw)
    return r, time.perf_counter() - t0


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--k", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--pam-n", type=int, default=2000)
    ap.add_argument("--max-iter-full", type=int, default=3,
                    help="iteration bound of FastPAM1/2, alternating and PAM (default 3)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--skip-full", action="store_true", help="only FasterPAM and kmedoids")
    args = ap.parse_args(argv)

    import chunked_medoids as cm

    X = hubble_pixels(args.n)
    t0 = time.perf_counter()
    D = euclidean_matrix(X)
    t_matrix = time.perf_counter() - t0
    n = D.shape[0]
    el = float(n) * n
    # warm up (compile / load numba kernels)
    small = D[:50, :50].copy()
    for f in (cm.fasterpam, cm.fastpam1, cm.fastpam2, cm.pam, cm.alternating):
        f(small, 3, init=[0, 1, 2])
    cm.fasterpam(small, 3, init=[0, 1, 2], num_workers=2, speculative=True)
    try:
        import kmedoids
    except ImportError:  # pragma: no cover
        kmedoids = None
    out = {"machine": machine(), "n": n, "matrix_seconds": t_matrix, "dtype": "float32", "runs": []}
    for k in args.k:
        init = np.random.default_rng(args.seed).choice(n, k, replace=False)
        entry = {"k": k}
        r1, t1 = _run(cm.fasterpam, D, k, init=init, num_workers=1)
        entry["fasterpam_1thread"] = {"seconds": t1, "passes": r1.n_iter, "swaps": r1.n_swap,
                                      "ns_per_element_per_pass": t1 / (r1.n_iter * el) * 1e9,
                                      "loss": r1.loss}
        r2, t2 = _run(cm.fasterpam, D, k, init=init, num_workers=2, speculative=True)
        entry["fasterpam_2threads_speculative"] = {
            "seconds": t2, "passes": r2.n_iter, "ns_per_element_per_pass": t2 / (r2.n_iter * el) * 1e9,
            "identical_to_1thread": bool(np.array_equal(r1.medoids, r2.medoids) and r1.loss == r2.loss)}
        if kmedoids is not None:
            rk, tk = _run(kmedoids.fasterpam, D, init.copy(), max_iter=100, n_cpu=1)
            entry["kmedoids_fasterpam_1thread"] = {
                "seconds": tk, "passes": int(rk.n_iter), "loss": float(rk.loss),
                "ns_per_element_per_pass": tk / (int(rk.n_iter) * el) * 1e9,
                "time_ratio_ours_over_kmedoids": t1 / tk,
                "same_medoids": sorted(int(m) for m in rk.medoids) == sorted(r1.medoids.tolist()),
                "loss_rel_diff": abs(float(rk.loss) - r1.loss) / max(abs(float(rk.loss)), 1e-300)}
        if not args.skip_full:
            for name in ("fastpam1", "fastpam2", "alternating"):
                f = getattr(cm, name)
                r, t = _run(f, D, k, init=init, max_iter=args.max_iter_full)
                entry[name] = {"seconds": t, "iterations": r.n_iter, "swaps": r.n_swap,
                               "ns_per_element_per_pass": t / (max(r.n_iter, 1) * el) * 1e9,
                               "loss": r.loss, "converged": r.converged}
            pn = min(args.pam_n, n)
            if k <= pn // 2:
                Dp = np.ascontiguousarray(D[:pn, :pn])
                ip = np.random.default_rng(args.seed).choice(pn, k, replace=False)
                r, t = _run(cm.pam, Dp, k, init=ip, max_iter=args.max_iter_full)
                rf, tf = _run(cm.fastpam1, Dp, k, init=ip, max_iter=args.max_iter_full)
                entry["pam_small"] = {
                    "n": pn, "seconds": t, "iterations": r.n_iter, "loss": r.loss,
                    "ns_per_element_per_iteration": t / (max(r.n_iter, 1) * pn * pn) * 1e9,
                    "ns_per_element_times_k_per_iteration": t / (max(r.n_iter, 1) * pn * pn * k) * 1e9,
                    "fastpam1_same_n_seconds": tf, "same_as_fastpam1": bool(
                        np.array_equal(r.medoids, rf.medoids))}
        out["runs"].append(entry)
        print(f"k={k} done", file=sys.stderr, flush=True)
    emit(out)


if __name__ == "__main__":
    main()
