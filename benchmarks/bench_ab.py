"""This tree against a previous commit, side by side in one process (issue 16's swap walk).

``python benchmarks/bench_ab.py --base REV``: ``git archive REV chunked_medoids`` is unpacked
into a temporary directory under another package name (``cm_base``: every
``chunked_medoids`` in its sources renamed, so both trees import side by side with their own
numba caches), then on the in-memory float32 matrix of the n = 20000 hubble pixels of
``bench_features.py`` (the same seeded random init per k):

``walk``    FasterPAM (``validate=False``, ``--threads``) of the base and of this tree,
            alternated ``--rounds`` times after one warm-up fit each; wall ns per element
            per pass (wall / passes / n^2) of every run, medians, and base ÷ this tree
            (> 1: this tree is faster).  Identical medoids and loss asserted.
``kernel``  the four-candidate kernel alone (``swap.eval_quad`` over 4000 rows, one
            thread, caches of the converged medoids), alternated the same way.

Both parts record the 1-minute load average.  The machine is shared: only the ratios of one
run count (README "Benchmarks").
"""

from __future__ import annotations

import argparse
import importlib
import os
import re
import subprocess
import sys
import tarfile
import tempfile
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)
from _common import emit, machine  # noqa: E402
from bench_features import pixels  # noqa: E402


def import_base(rev: str, where: str):
    """The package ``chunked_medoids`` of commit ``rev`` imported as ``cm_base``."""
    root = os.path.dirname(HERE)
    tar = os.path.join(where, "base.tar")
    with open(tar, "wb") as f:
        subprocess.run(["git", "-C", root, "archive", rev, "chunked_medoids"], stdout=f, check=True)
    with tarfile.open(tar) as t:
        t.extractall(where, filter="data")
    os.rename(os.path.join(where, "chunked_medoids"), os.path.join(where, "cm_base"))
    for dirpath, _, files in os.walk(os.path.join(where, "cm_base")):
        for name in files:
            if name.endswith(".py"):
                p = os.path.join(dirpath, name)
                with open(p) as f:
                    src = f.read()
                with open(p, "w") as f:
                    f.write(re.sub(r"\bchunked_medoids\b", "cm_base", src))
    sys.path.insert(0, where)
    return importlib.import_module("cm_base")


def _caches(pkg, D, medoids):
    from importlib import import_module

    assign = import_module(pkg.__name__ + "._kernels.assign")
    n, k = D.shape[0], len(medoids)
    M = np.ascontiguousarray(D[:, medoids])
    dn, ds = np.empty(n, D.dtype), np.empty(n, D.dtype)
    nn, sn = np.empty(n, np.int32), np.empty(n, np.int32)
    assign.assign_all(M, np.asarray(medoids, np.int64), dn, ds, nn, sn)
    R = np.empty(k)
    assign.removal_loss(dn, ds, nn, np.empty(0), False, R)
    return dn, ds, nn, R


def kernel_sweep(pkg, D, dn, ds, nn, R, rows=4000):
    from importlib import import_module

    eval_quad = import_module(pkg.__name__ + "._kernels.swap").eval_quad
    PG = np.empty((4, R.shape[0]))
    w = np.empty(0)
    t0 = time.perf_counter()
    tot = 0.0
    for j in range(0, rows, 4):
        a = eval_quad(D[j], D[j + 1], D[j + 2], D[j + 3], dn, ds, nn, R, w, False, PG)
        tot += sum(a) + PG[0, 0]
    return (time.perf_counter() - t0) / rows / D.shape[0] * 1e9, tot


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", required=True, help="the commit to compare with (git revision)")
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--part", choices=["walk", "kernel", "both"], default="both")
    a = ap.parse_args(argv)
    import chunked_medoids as new

    with tempfile.TemporaryDirectory(prefix="cm_ab_") as where:
        old = import_base(a.base, where)
        n = a.n
        D = new.from_features(pixels(n, 0), "euclidean").read_rows(0, n)
        rng = np.random.default_rng(0)
        out = {"machine": machine(), "base": a.base, "n": n, "threads": a.threads, "k": {}}
        for k in a.ks:
            init = rng.choice(n, k, replace=False)
            entry = {}
            fits = {}
            for name, pkg in (("base", old), ("this", new)):
                fits[name] = pkg.fasterpam(D, k, init=init, validate=False, num_workers=a.threads)
            assert np.array_equal(fits["base"].medoids, fits["this"].medoids) and fits["base"].loss == fits["this"].loss
            if a.part in ("walk", "both"):
                runs = {"base": [], "this": []}
                for _ in range(a.rounds):
                    for name, pkg in (("base", old), ("this", new)):
                        t0 = time.perf_counter()
                        r = pkg.fasterpam(D, k, init=init, validate=False, num_workers=a.threads)
                        dt = time.perf_counter() - t0
                        assert np.array_equal(r.medoids, fits["this"].medoids) and r.loss == fits["this"].loss
                        runs[name].append(dt / max(1, r.n_iter) / n / n * 1e9)
                entry["walk"] = {"passes": int(fits["this"].n_iter), "swaps": int(fits["this"].n_swap),
                                 "ns_per_el_pass": runs,
                                 "median": {m: float(np.median(v)) for m, v in runs.items()},
                                 "base_over_this": float(np.median(runs["base"]) / np.median(runs["this"])),
                                 "loadavg": os.getloadavg()[0]}
            if a.part in ("kernel", "both"):
                med = np.asarray(fits["this"].medoids, np.int64)
                runs = {"base": [], "this": []}
                c = {name: _caches(pkg, D, med) for name, pkg in (("base", old), ("this", new))}
                sums = {}
                for name, pkg in (("base", old), ("this", new)):
                    kernel_sweep(pkg, D, *c[name], rows=8)
                for _ in range(a.rounds):
                    for name, pkg in (("base", old), ("this", new)):
                        t, sums[name] = kernel_sweep(pkg, D, *c[name])
                        runs[name].append(t)
                assert sums["base"] == sums["this"], "the kernels differ"
                entry["kernel_one_thread"] = {"ns_per_el": runs,
                                              "median": {m: float(np.median(v)) for m, v in runs.items()},
                                              "base_over_this": float(np.median(runs["base"]) / np.median(runs["this"])),
                                              "loadavg": os.getloadavg()[0]}
            out["k"][str(k)] = entry
            print(f"k={k}: " + ", ".join(f"{part} base {e['median']['base']:.3f} this {e['median']['this']:.3f} "
                                         f"ratio {e['base_over_this']:.3f}"
                                         for part, e in entry.items()), file=sys.stderr)
    emit(out)


if __name__ == "__main__":
    main()
