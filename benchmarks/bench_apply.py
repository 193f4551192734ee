"""Per-swap cost of ``apply_swap`` (issue 16, "The swap kernel itself").  Prints one JSON document.

Records the swaps of real eager FasterPAM walks (``eval_candidate`` / ``best_slot`` /
``accept_swap``, candidates in natural order, one thread) on the in-memory float32 matrix
of n = 20000 scikit-image ``hubble_deep_field`` pixels (``pixels()`` of
``bench_features.py``, same seeded random init as its ``swap`` part), k = 10 and 100, then
replays each swap sequence from the initial state with two states side by side in one
process: the pre-fusion definition of ``apply_swap`` (``swap_update`` + ``removal_loss`` +
``loss_sum`` as they were, kept verbatim below) and the current
:func:`chunked_medoids._kernels.swap.apply_swap`, alternated swap by swap.  Every output
(M, medoids, is_medoid, dn, ds, nn, sn, R, TD) is asserted bitwise equal after every swap.
The same sequences are also replayed with random weights.

Per-swap figures are medians and means of the individual calls in microseconds (wall
``perf_counter_ns`` around the jitted call; both sides pay the same dispatch), plus the
process CPU time of each side.  Usage::

    python benchmarks/bench_apply.py [--n 20000] [--ks 10 100]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np
from numba import njit

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from bench_features import pixels  # noqa: E402

from chunked_medoids._kernels.assign import _big_of, assign_all  # noqa: E402
from chunked_medoids._kernels.swap import accept_swap, apply_swap, best_slot, eval_candidate  # noqa: E402

# ---- the reference: apply_swap before the fused pass (verbatim copies) ----------------------


@njit(nogil=True, cache=True)
def ref_rescan_point(M, o, medoid_slot, dn, ds, nn, sn):
    k = M.shape[1]
    big = _big_of(M[o, 0])
    bn = big
    bs = big
    ibn = -1
    ibs = -1
    if medoid_slot >= 0:
        bn = M[o, medoid_slot]
        ibn = medoid_slot
        for s in range(k):
            if s == medoid_slot:
                continue
            d = M[o, s]
            if d < bs or ibs < 0:
                bs = d
                ibs = s
    else:
        for s in range(k):
            d = M[o, s]
            if d < bn or ibn < 0:
                bs = bn
                ibs = ibn
                bn = d
                ibn = s
            elif d < bs or ibs < 0:
                bs = d
                ibs = s
    dn[o] = bn
    nn[o] = ibn
    if ibs < 0:
        ds[o] = big
        sn[o] = -1
    else:
        ds[o] = bs
        sn[o] = ibs


@njit(nogil=True, cache=True)
def ref_second_excluding(M, o, exclude, ds, sn):
    k = M.shape[1]
    best = _big_of(M[o, 0])
    ib = -1
    for s in range(k):
        if s == exclude:
            continue
        d = M[o, s]
        if ib < 0 or d < best:
            best = d
            ib = s
    ds[o] = best
    sn[o] = ib


@njit(nogil=True, cache=True)
def ref_swap_update(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn):
    n = M.shape[0]
    k = M.shape[1]
    old = medoids[b]
    is_medoid[old] = False
    is_medoid[j] = True
    medoids[b] = j
    for o in range(n):
        M[o, b] = row[o]
    if k == 1:
        for o in range(n):
            dn[o] = row[o]
        return
    for o in range(n):
        d = row[o]
        if nn[o] == b:
            if d < ds[o]:
                dn[o] = d
                ref_second_excluding(M, o, b, ds, sn)
            else:
                dn[o] = ds[o]
                nn[o] = sn[o]
                ref_second_excluding(M, o, sn[o], ds, sn)
        elif d < dn[o]:
            ds[o] = dn[o]
            sn[o] = nn[o]
            dn[o] = d
            nn[o] = b
        elif d < ds[o]:
            ds[o] = d
            sn[o] = b
        elif sn[o] == b:
            ref_second_excluding(M, o, nn[o], ds, sn)
    if nn[j] != b:
        ref_rescan_point(M, j, b, dn, ds, nn, sn)


@njit(nogil=True, cache=True)
def ref_removal_loss(dn, ds, nn, w, weighted, R):
    k = R.shape[0]
    for s in range(k):
        R[s] = 0.0
    if k == 1:
        return
    n = dn.shape[0]
    for o in range(n):
        diff = np.float64(ds[o]) - np.float64(dn[o])
        if weighted:
            R[nn[o]] += w[o] * diff
        else:
            R[nn[o]] += diff


@njit(nogil=True, cache=True)
def ref_loss_sum(dn, w, weighted):
    acc = 0.0
    n = dn.shape[0]
    if weighted:
        for o in range(n):
            acc += w[o] * np.float64(dn[o])
    else:
        for o in range(n):
            acc += np.float64(dn[o])
    return acc


@njit(nogil=True, cache=True)
def ref_apply_swap(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted):
    ref_swap_update(row, b, j, M, medoids, is_medoid, dn, ds, nn, sn)
    ref_removal_loss(dn, ds, nn, w, weighted, R)
    return ref_loss_sum(dn, w, weighted)


# ---- state, walk recorder, replay -------------------------------------------------------------


def initial_state(D, init, w, weighted):
    n, k = D.shape[0], len(init)
    medoids = np.asarray(init, dtype=np.int64).copy()
    M = np.ascontiguousarray(D[:, medoids])
    is_medoid = np.zeros(n, dtype=np.bool_)
    is_medoid[medoids] = True
    dn = np.empty(n, D.dtype)
    ds = np.empty(n, D.dtype)
    nn = np.empty(n, np.int32)
    sn = np.empty(n, np.int32)
    assign_all(M, medoids, dn, ds, nn, sn)
    R = np.zeros(k)
    ref_removal_loss(dn, ds, nn, w, weighted, R)
    return [M, medoids, is_medoid, dn, ds, nn, sn, R]


@njit(nogil=True, cache=True)
def record_walk(D, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted, td, tol, max_pass, out):
    """Eager FasterPAM in natural order with the reference apply; ``out[i] = (slot, j)``."""
    n = D.shape[0]
    P = np.empty(R.shape[0])
    buf = np.empty(n, dtype=np.int32)
    since = 0
    nsw = 0
    for _ in range(max_pass):
        for j in range(n):
            if not is_medoid[j]:
                row = D[j]
                acc = eval_candidate(row, dn, ds, nn, R, w, weighted, P, buf)
                s, dlt = best_slot(P, acc)
                if accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, dlt) and nsw < out.shape[0]:
                    td = ref_apply_swap(row, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
                    out[nsw, 0] = s
                    out[nsw, 1] = j
                    nsw += 1
                    since = 0
            since += 1
            if since >= n:
                return nsw
    return nsw


def replay(D, init, swaps, w, weighted):
    old = initial_state(D, init, w, weighted)
    if len(swaps):  # warm (compile / load from cache) both sides on throw-away copies
        s, j = swaps[0]
        for fn in (ref_apply_swap, apply_swap):
            st = [a.copy() for a in old]
            fn(D[j], int(s), int(j), *st, w, weighted)
    new = [a.copy() for a in old]
    t_old, t_new = [], []
    c_old = c_new = 0.0
    for i, (s, j) in enumerate(swaps):
        row = D[j]
        first = (ref_apply_swap, old, t_old), (apply_swap, new, t_new)
        for fn, st, times in (first if i % 2 == 0 else first[::-1]):
            c0 = time.process_time()
            t0 = time.perf_counter_ns()
            td = fn(row, int(s), int(j), *st[:7], st[7], w, weighted)
            times.append((time.perf_counter_ns() - t0) / 1e3)
            dc = time.process_time() - c0
            st.append(td) if len(st) == 8 else st.__setitem__(8, td)
            if fn is ref_apply_swap:
                c_old += dc
            else:
                c_new += dc
        for a, b in zip(old, new):
            a, b = np.asarray(a), np.asarray(b)
            assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"swap {i}: outputs differ"
    ns = len(swaps)
    return {"swaps": ns,
            "old_us_median": float(np.median(t_old)), "new_us_median": float(np.median(t_new)),
            "old_us_mean": float(np.mean(t_old)), "new_us_mean": float(np.mean(t_new)),
            "old_cpu_us_per_swap": c_old / max(1, ns) * 1e6, "new_cpu_us_per_swap": c_new / max(1, ns) * 1e6,
            "speedup_mean": float(np.mean(t_old) / np.mean(t_new)),
            "speedup_median": float(np.median(t_old) / np.median(t_new))}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-swaps", type=int, default=2000)
    args = ap.parse_args(argv)
    from chunked_medoids import from_features

    n = args.n
    D = np.ascontiguousarray(from_features(pixels(n, args.seed), "euclidean").read_rows(0, n))
    rng = np.random.default_rng(args.seed)  # the same init draws as bench_features' swap part
    out = {"n": n, "dtype": str(D.dtype), "k": {},
           "notes": "per-swap microseconds of apply_swap, old (swap_update + removal_loss + loss_sum, "
                    "pre-fusion copies) vs new, alternated swap by swap in one process over the swaps "
                    "of a recorded eager FasterPAM walk (natural order, 1 thread); outputs asserted "
                    "bitwise equal after every swap; 'weighted' replays the same swaps with random "
                    "weights; cpu = process CPU time per swap; loadavg = 1-minute load average"}
    wts = rng.random(n) + 0.5
    for k in args.ks:
        init = rng.choice(n, k, replace=False)
        st = initial_state(D, init, np.empty(0), False)
        td = ref_loss_sum(st[3], np.empty(0), False)
        rec = np.empty((args.max_swaps, 2), dtype=np.int64)
        t0 = time.perf_counter()
        nsw = record_walk(D, *st, np.empty(0), False, td, 0.0, 100, rec)
        walk_s = time.perf_counter() - t0
        swaps = rec[:nsw]
        entry = {"walk_record_seconds": walk_s, "unweighted": replay(D, init, swaps, np.empty(0), False),
                 "weighted": replay(D, init, swaps, wts, True), "loadavg": os.getloadavg()[0]}
        out["k"][str(k)] = entry
        u = entry["unweighted"]
        print(f"apply n={n} k={k}: {nsw} swaps, old {u['old_us_mean']:.1f} us/swap, new {u['new_us_mean']:.1f} "
              f"(x{u['speedup_mean']:.2f}); weighted x{entry['weighted']['speedup_mean']:.2f}", file=sys.stderr)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
