"""First-call latency of the CLI (issue: hardening, cold start).  Prints one JSON document.

Runs ``chunked-medoids fit X.npy -k 10 --metric euclidean`` on a 2000-point input (2000 rows
drawn from scikit-learn's digits with a little seeded jitter, 64 features) in fresh processes:

* cold: ``NUMBA_CACHE_DIR`` points to an empty directory, so every kernel the run needs is
  compiled;
* warm: the same command again with the now-populated cache (median of ``--repeat`` runs).

Reproduce::

    python benchmarks/bench_cold_start.py
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from _common import emit  # noqa: E402


def run(cmd, env):
    t0 = time.perf_counter()
    subprocess.run(cmd, env=env, check=True, capture_output=True)
    return time.perf_counter() - t0


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--method", default="fasterpam")
    args = p.parse_args(argv)
    from sklearn.datasets import load_digits

    rng = np.random.default_rng(0)
    digits = load_digits().data
    # n rows drawn from the 1797 digits (with replacement past 1797), plus a little seeded
    # jitter so repeated digits are distinct points
    X = digits[rng.choice(digits.shape[0], args.n, replace=args.n > digits.shape[0])]
    X = X + rng.normal(scale=0.01, size=X.shape)
    work = tempfile.mkdtemp(prefix="cm-cold-")
    try:
        xpath = os.path.join(work, "X.npy")
        np.save(xpath, X)
        cache = os.path.join(work, "numba-cache")
        env = dict(os.environ, NUMBA_CACHE_DIR=cache)
        cmd = [sys.executable, "-m", "chunked_medoids", "fit", xpath, "-k", "10", "--metric", "euclidean",
               "--method", args.method, "--seed", "0", "--output", os.path.join(work, "out"), "--no-progress"]
        version = run([sys.executable, "-m", "chunked_medoids", "--version"], env)
        cold = run(cmd, env)
        warm = [run(cmd, env) for _ in range(args.repeat)]
        emit({
            "benchmark": "cold_start", "n": int(X.shape[0]), "method": args.method,
            "version_seconds": version, "cold_seconds": cold,
            "warm_seconds_median": statistics.median(warm), "warm_seconds": warm,
            "target_warm_seconds": 3.0, "warm_within_target": statistics.median(warm) < 3.0,
        })
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
