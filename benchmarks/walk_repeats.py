"""Repeated FasterPAM walks in one process (issue 16's swap kernel, spread of the figure).

``python benchmarks/walk_repeats.py THREADS K``: the in-memory float32 matrix of the
n = 20000 hubble pixels of ``bench_features.py``, the same seeded random init, one warm-up
fit (``max_iter=1``), then 6 fits with ``validate=False``: wall ns per element per pass of
each (wall / passes / n^2), on one line.  Run it alternately on two trees (``PYTHONPATH``) for
a side-by-side comparison; ``benchmarks/results/features_walk_vs_c3d5c91_idle.txt`` is
3 alternated rounds of ``THREADS`` in {2, 1} and ``K`` in {10, 100} on c3d5c91 ("old") and
this tree ("main").  The first line also prints where the matrix lies (its address modulo
4 KiB and 2 MiB), which did not explain the spread between processes.
"""

from __future__ import annotations

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_features import pixels  # noqa: E402

import chunked_medoids as cm  # noqa: E402


def main(threads, k, n=20000, fits=6):
    D = cm.from_features(pixels(n, 0), "euclidean").read_rows(0, n)
    print("D addr mod 4096:", D.ctypes.data % 4096, "mod 2M:", D.ctypes.data % (2 << 20))
    init = np.random.default_rng(0).choice(n, k, replace=False)
    cm.fasterpam(D, k, init=init, max_iter=1, num_workers=threads, validate=False)
    out = []
    for _ in range(fits):
        t0 = time.perf_counter()
        res = cm.fasterpam(D, k, init=init, num_workers=threads, validate=False)
        out.append((time.perf_counter() - t0) / res.n_iter / n / n * 1e9)
    print(" ".join(f"{t:.3f}" for t in out))


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]))
