"""Cost of validation on the default path (issue 12).  Prints one JSON document.

A foreign-style zarr store (an n×n float32 Euclidean matrix of scikit-image
``hubble_deep_field`` pixels, written by ``build_dissimilarity`` and then stripped of its
``validated`` metadata flag so readers check it like any store they did not write) is
clustered with FasterPAM, k = 10, from the same random init, with validation on (the
default: checked while the first pass streams the store) and off (``validate=False``),
alternating the two, ``--repeats`` times each.  Reported: every time, the medians and the
overhead ``median(on) / median(off) - 1`` in wall time and in process CPU time, and the CPU
time spent inside the checks themselves over the CPU time of a run without them (the direct
cost, the most robust figure on a busy machine); both runs must give identical medoids.  The
up-front check of the same matrix in memory (``check_array``) is timed too, against an
in-memory FasterPAM run, for reference.

Reproduce the README figure with::

    python benchmarks/bench_validation.py --n 20000 --repeats 3 --out /tmp/cm_bench_validation
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit, machine, timer  # noqa: E402


def hubble_sample(n, seed=0):
    from skimage import data

    pix = data.hubble_deep_field().reshape(-1, 3).astype(np.float64)
    idx = np.sort(np.random.default_rng(seed).choice(pix.shape[0], n, replace=False))
    return np.ascontiguousarray(pix[idx])


def strip_validated(path):
    """Remove ``validated`` from a built zarr store's metadata (zarr.json, atomically)."""
    meta_path = os.path.join(path, "zarr.json")
    with open(meta_path) as fh:
        doc = json.load(fh)
    doc["attributes"]["chunked_medoids"].pop("validated", None)
    tmp = meta_path + ".tmp"
    with open(tmp, "w") as fh:
        json.dump(doc, fh)
    os.replace(tmp, meta_path)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--out", default="/tmp/cm_bench_validation")
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args(argv)

    import chunked_medoids as cm
    from chunked_medoids.sources.validate import StreamValidator, check_array

    os.makedirs(args.out, exist_ok=True)
    path = os.path.join(args.out, f"hubble_{args.n}.zarr")
    X = hubble_sample(args.n, args.seed)
    if not os.path.exists(path):
        with timer() as tb:
            cm.build_dissimilarity(X, path, metric="euclidean", dtype="float32")
        build_s = tb.seconds
    else:
        build_s = None
    strip_validated(path)
    probe = cm.open_dissimilarity(path)
    assert isinstance(probe.__dict__.get("_validator"), StreamValidator), "the store would not be validated"
    init = np.sort(np.random.default_rng(args.seed + 1).choice(args.n, args.k, replace=False))

    # time spent inside the checks themselves (the validator's two entry points), summed over
    # the threads that ran them: the direct cost, independent of how busy the machine is
    in_checks = [0.0]
    for name in ("check_rows", "check_take"):
        orig = getattr(StreamValidator, name)

        def timed(self, *a, _orig=orig, **kw):
            t0 = time.thread_time()
            try:
                return _orig(self, *a, **kw)
            finally:
                in_checks[0] += time.thread_time() - t0

        setattr(StreamValidator, name, timed)

    def run(validate):
        src = cm.open_dissimilarity(path, validate=validate)
        in_checks[0] = 0.0
        c0 = time.process_time()
        with timer() as t:
            res = cm.fasterpam(src, args.k, init=init, memory_limit=args.memory_limit)
        cpu = time.process_time() - c0
        v = src.__dict__.get("_validator")
        return t.seconds, cpu, in_checks[0], res, (None if v is None else bool(v.complete))

    on, off, cpu_on, cpu_off, checks, results = [], [], [], [], [], {}
    run(False)  # warm-up: numba compilation / page cache, not timed
    for r in range(args.repeats):
        order = (True, False) if r % 2 == 0 else (False, True)
        for validate in order:
            secs, cpu, chk, res, complete = run(validate)
            (on if validate else off).append(secs)
            (cpu_on if validate else cpu_off).append(cpu)
            results[validate] = res
            if validate:
                checks.append(chk)
                assert complete, "validation did not cover every row"
            print(f"repeat {r} validate={validate}: {secs:.2f}s wall {cpu:.2f}s cpu (checks {chk:.2f}s) "
                  f"loss={res.loss:.6g} passes={res.n_iter} load={os.getloadavg()[0]:.1f}", file=sys.stderr)
    same = bool(np.array_equal(results[True].medoids, results[False].medoids)
                and results[True].loss == results[False].loss)

    # in memory: the up-front vectorised check against an in-memory FasterPAM run
    D = probe.read_rows(0, args.n) if args.n <= 30000 else None
    mem = None
    if D is not None:
        with timer() as tc:
            check_array(D, "D")
        Dsrc = cm.open_dissimilarity(D, validate=False)
        with timer() as tf:
            cm.fasterpam(Dsrc, args.k, init=init)
        mem = {"check_array_seconds": tc.seconds, "fasterpam_in_memory_seconds": tf.seconds,
               "ratio_check_over_fasterpam": tc.seconds / tf.seconds}
        del D, Dsrc
    med_on, med_off = statistics.median(on), statistics.median(off)
    emit({"benchmark": "validation", **machine(), "n": args.n, "k": args.k, "memory_limit": args.memory_limit,
          "store": path, "build_seconds": build_s, "passes": results[True].n_iter,
          "n_swap": results[True].n_swap, "validate_on_seconds": on, "validate_off_seconds": off,
          "median_on": med_on, "median_off": med_off, "overhead_wall": med_on / med_off - 1.0,
          "cpu_on_seconds": cpu_on, "cpu_off_seconds": cpu_off,
          "overhead_cpu": statistics.median(cpu_on) / statistics.median(cpu_off) - 1.0,
          "in_check_seconds": checks,
          "overhead_in_checks": statistics.median(checks) / statistics.median(cpu_off),
          "identical_results": same, "in_memory": mem,
          "load_average": os.getloadavg()})
    if args.out and os.environ.get("CM_BENCH_KEEP") == "0":
        shutil.rmtree(path, ignore_errors=True)


if __name__ == "__main__":
    main()
