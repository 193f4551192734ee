"""Record every memory-size decision on a grid of inputs as one SHA-256 per section.

Run on main at e2f9921 (before the sizes moved into chunked_medoids/_budget.py) to record
what the sizes were; tests/test_budget.py rebuilds the same grids through the budget module and checks the
hashes it prints (stored there) are reproduced exactly.
The clara/clarans/validate/estimator entries evaluate the expressions those modules held
inline at that commit (copied verbatim below), the others call the public code.
"""

import json
import math
import os
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from chunked_medoids.builder import plan_stripes  # noqa: E402
from chunked_medoids.engine import Engine  # noqa: E402

NS = [1, 2, 7, 61, 1000, 4097, 30000, 250000]
ITEMS = [4, 8]
LIMITS = [1 << 16, 1 << 20, 3 * 10**6, 1 << 26, 1 << 30, 7 * 2**30]
NATURALS = [1, 7, 64, 1000]
THREADS = [1, 2, 5]
DS = [1, 3, 64, 784]


class _Src:
    def __init__(self, n, itemsize, natural):
        self.n, self.dtype, self.block_rows = n, np.dtype(f"f{itemsize}"), natural


def engine_cases():
    out = []
    for n in NS:
        for it in ITEMS:
            for lim in LIMITS:
                for nat in NATURALS:
                    for t in THREADS:
                        for client in (False, True):
                            eng = Engine(memory_limit=lim, num_workers=t)
                            if client:
                                eng.client = object()
                            src = _Src(n, it, min(nat, n))
                            rows = [eng.block_rows_for(src, b) for b in (None, 1, 2, 3)]
                            eng.client = None
                            blocks = eng.blocks(src, rows[0])
                            conc = eng.read_concurrency(src, blocks)
                            out.append([n, it, lim, nat, t, client, rows, conc])
    return out


def plan_cases():
    out = []
    for n in NS[:-1]:
        for d in DS:
            for it in ITEMS:
                for lim in LIMITS:
                    for p in (1, 2, 8):
                        for fmt in ("zarr", "hdf5"):
                            for br in (None, 5, 64):
                                out.append([n, d, it, lim, p, fmt, br,
                                            plan_stripes(n, d, it, lim, p, br, fmt)])
    return out


def natural_cases():
    # NumpySource / HDF5Source (contiguous) / FeatureSource default natural block height
    return [[n, it, max(1, min(n, (64 << 20) // max(1, n * it)))] for n in NS for it in ITEMS]


def feature_cases():
    out = []
    for n in NS:
        for d in DS:
            for br in (1, 7, 1000):
                for cr in (1, 5, 64, 100000):
                    fbr = max(1, (32 << 20) // (8 * max(d, min(br, n))))
                    if cr > 1 and fbr > cr:
                        fbr -= fbr % cr
                    fbr = min(n, fbr)
                    scan = max(1, min(n, (32 << 20) // (8 * d)))
                    out.append([n, d, br, cr, fbr, scan])
    return out


def validate_cases():
    out = []
    for n in NS:
        for it in ITEMS:
            for lim in LIMITS:
                for nat in NATURALS:
                    natural = max(1, min(nat, n))
                    h = max(1, min(n, lim // (n * it * 4)))
                    if h >= natural:
                        h -= h % natural
                    out.append([n, it, lim, nat, h])
    return out


def predict_cases():
    return [[w, max(1, (32 << 20) // (8 * max(1, w)))] for w in (0, 1, 3, 64, 784, 10**6, 10**8)]


def clara_cases():
    feats, samples, scan, gather, default_s = [], [], [], [], []
    for n in NS:
        for d in DS:
            for lim in LIMITS:
                for cr in (1, 5, 64, 100000):
                    rows = max(1, min(n, int(lim // (32 * 8 * d))))
                    if cr > 1 and rows > cr:
                        rows -= rows % cr
                    scan.append([n, d, lim, cr, rows])
                    for cols in (0, 10, 400):
                        for threads in (1, 2, 5):
                            row_bytes = d * 8 * 3 + cols * 8 + 64
                            per = max(1, int(lim // (4 * (threads + 1) * row_bytes)))
                            c = max(1, int(cr))
                            if c > 1:
                                if per >= c:
                                    per -= per % c
                                elif c * row_bytes * (threads + 1) <= lim // 2:
                                    per = c
                            per = min(per, n)
                            feats.append([n, d, lim, cr, cols, threads, per])
    for s in (2, 80, 1000, 10000):
        for k in (1, 5, 100):
            for lim in LIMITS:
                for par in (1, 2, 8):
                    task_bytes = 2 * 8 * s * s + 64 * s * max(1, k)
                    conc = max(1, min(par, int(0.75 * lim // task_bytes)))
                    gb = max(1 << 16, lim // (8 * conc))
                    samples.append([s, k, lim, par, conc, gb])
    for budget in (1, 1 << 16, 10**6, 1 << 30):
        for n in NS:
            for it in ITEMS:
                gather.append([budget, n, it, max(1, int(budget // max(1, n * it)))])
    for lim in LIMITS:
        default_s.append([lim, int(math.isqrt(int(lim * 0.125) // 8))])
    return {"feature_blocks": feats, "samples": samples, "scan_rows": scan, "gather": gather,
            "sample_cap": default_s}


def clarans_cases():
    out = []
    for lim in LIMITS:
        for conc in (1, 2, 8):
            for n in NS:
                for it in ITEMS:
                    for cap in (1, 64, 1000):
                        row_bytes = n * it
                        fetch = int(max(1, min(cap, (lim // (4 * conc)) // max(1, row_bytes))))
                        out.append([lim, conc, n, it, cap, fetch])
    return out


def h5cache_cases():
    return [[m, row, max(1 << 20, 2 * m * row)] for m in (1, 7, 1000) for row in (4, 4000, 10**6)]


if __name__ == "__main__":
    import logging

    logging.disable(logging.WARNING)
    golden = {
        "engine": engine_cases(),
        "plan_stripes": plan_cases(),
        "natural": natural_cases(),
        "features": feature_cases(),
        "validate": validate_cases(),
        "predict": predict_cases(),
        "clara": clara_cases(),
        "clarans": clarans_cases(),
        "h5cache": h5cache_cases(),
    }
    import hashlib

    for name, value in golden.items():
        blob = json.dumps(value, separators=(",", ":"), sort_keys=True).encode()
        print(f"    {name!r}: {hashlib.sha256(blob).hexdigest()!r},")
