"""Per-swap cost of ``apply_swap`` (issue 16, "The swap kernel itself").  Prints one JSON document.

Records the swaps of real eager FasterPAM walks (``eval_candidate`` / ``best_slot`` /
``accept_swap``, candidates in natural order, one thread) on the in-memory float32 matrix
of n = 20000 scikit-image ``hubble_deep_field`` pixels (``pixels()`` of
``bench_features.py``, same seeded random init as its ``swap`` part), k = 10 and 100, then
replays each swap sequence from the initial state with two states side by side in one
process: the pre-fusion definition of ``apply_swap`` (``swap_update`` + ``removal_loss`` +
``loss_sum``, still in ``assign.py`` as ``swap_update_three_passes``) and the current
:func:`chunked_medoids._kernels.swap.apply_swap`, whole replays alternated (old, new, old,
new), one state in the caches at a time as in the walk.  The TD after every swap and the
final M, medoids, is_medoid, dn, ds, nn, sn and R are asserted bitwise equal
(tests/test_apply_fast.py checks every output after every swap).
The same sequences are also replayed with random weights.  Before each timed call the
side evaluates (untimed) the up to 64 candidates the walk evaluated just before that swap,
so M, the caches and the row are as warm or cold as in the walk itself (M is evicted from
L2 by the candidate rows streaming through).

Per-swap figures are medians and means of the individual calls in microseconds (wall
``perf_counter_ns`` around the jitted call; both sides pay the same dispatch), plus the
process CPU time of each side.  Usage::

    python benchmarks/bench_apply.py [--n 20000] [--ks 10 100] [--rounds 3]
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

from chunked_medoids._kernels.assign import (  # noqa: E402
    assign_all,
    loss_sum,
    removal_loss,
    swap_update_three_passes,
)
from chunked_medoids._kernels.swap import accept_swap, apply_swap, best_slot, eval_candidate  # noqa: E402

# ---- the reference: the three passes apply_swap ran before the fused one ------------------
ref_apply_swap = swap_update_three_passes


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
    removal_loss(dn, ds, nn, w, weighted, R)
    return [M, medoids, is_medoid, dn, ds, nn, sn, R]


@njit(nogil=True, cache=True)
def record_walk(D, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted, td, tol, max_pass, out):
    """Eager FasterPAM in natural order with the reference apply; ``out[i] = (slot, j,
    position)`` (position = pass·n + j)."""
    n = D.shape[0]
    P = np.empty(R.shape[0])
    buf = np.empty(n, dtype=np.int32)
    since = 0
    nsw = 0
    for ps in range(max_pass):
        for j in range(n):
            if not is_medoid[j]:
                row = D[j]
                acc = eval_candidate(row, dn, ds, nn, R, w, weighted, P, buf)
                s, dlt = best_slot(P, acc)
                if accept_swap(row, s, dn, ds, nn, w, weighted, td, tol, dlt) and nsw < out.shape[0]:
                    td = ref_apply_swap(row, s, j, M, medoids, is_medoid, dn, ds, nn, sn, R, w, weighted)
                    out[nsw, 0] = s
                    out[nsw, 1] = j
                    out[nsw, 2] = ps * n + j
                    nsw += 1
                    since = 0
            since += 1
            if since >= n:
                return nsw
    return nsw


@njit(nogil=True, cache=True)
def evaluate_between(D, lo, hi, is_medoid, dn, ds, nn, R, w, weighted):
    """Evaluate the candidates at walk positions ``[lo, hi)`` (untimed): the work the walk
    does between two swaps, so each timed apply finds the caches as it would in the walk."""
    n = D.shape[0]
    P = np.empty(R.shape[0])
    buf = np.empty(n, dtype=np.int32)
    acc = 0.0
    for p in range(lo, hi):
        j = p % n
        if not is_medoid[j]:
            acc += eval_candidate(D[j], dn, ds, nn, R, w, weighted, P, buf)
    return acc


def _replay_one(fn, D, init, swaps, w, weighted, between):
    """Replay ``swaps`` with ``fn`` from the initial state: per-swap us, CPU s, TDs, final state."""
    st = initial_state(D, init, w, weighted)
    times, tds = [], []
    cpu = 0.0
    for i, (s, j, pos) in enumerate(swaps):
        lo = max(int(swaps[i - 1][2]) + 1 if i else 0, int(pos) - between)
        evaluate_between(D, lo, int(pos), st[2], st[3], st[4], st[5], st[7], w, weighted)
        row = D[j]
        c0 = time.process_time()
        t0 = time.perf_counter_ns()
        td = fn(row, int(s), int(j), *st, w, weighted)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        cpu += time.process_time() - c0
        tds.append(td)
    return np.array(times), cpu, np.array(tds), st


def replay(D, init, swaps, w, weighted, between=64, rounds=2):
    """Old and new side by side: whole replays alternated (old, new, old, new, ...), one
    state at a time (as in the walk, one M in the caches); outputs compared bitwise."""
    if len(swaps):  # warm (compile / load from cache) both sides on throw-away copies
        for fn in (ref_apply_swap, apply_swap):
            _replay_one(fn, D, init, swaps[:1], w, weighted, between)
    res = {"old": [], "new": []}
    for _ in range(rounds):
        for side, fn in (("old", ref_apply_swap), ("new", apply_swap)):
            res[side].append(_replay_one(fn, D, init, swaps, w, weighted, between))
    ref_tds, ref_st = res["old"][0][2], res["old"][0][3]
    for side in ("old", "new"):
        for _, _, tds, st in res[side]:
            assert tds.tobytes() == ref_tds.tobytes(), f"{side}: TD sequence differs"
            for a, b in zip(st, ref_st):
                assert a.dtype == b.dtype and a.tobytes() == b.tobytes(), f"{side}: final state differs"
    ns = max(1, len(swaps))
    t_old = np.concatenate([r[0] for r in res["old"]])
    t_new = np.concatenate([r[0] for r in res["new"]])
    c_old = sum(r[1] for r in res["old"]) / rounds
    c_new = sum(r[1] for r in res["new"]) / rounds
    return {"swaps": len(swaps), "rounds": rounds,
            "old_us_median": float(np.median(t_old)), "new_us_median": float(np.median(t_new)),
            "old_us_mean": float(np.mean(t_old)), "new_us_mean": float(np.mean(t_new)),
            "old_us_mean_per_round": [float(r[0].mean()) for r in res["old"]],
            "new_us_mean_per_round": [float(r[0].mean()) for r in res["new"]],
            "old_cpu_us_per_swap": c_old / ns * 1e6, "new_cpu_us_per_swap": c_new / ns * 1e6,
            "speedup_mean": float(np.mean(t_old) / np.mean(t_new)),
            "speedup_median": float(np.median(t_old) / np.median(t_new)),
            "speedup_cpu": c_old / c_new if c_new > 0 else None}


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=20000)
    ap.add_argument("--ks", type=int, nargs="+", default=[10, 100])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--max-swaps", type=int, default=2000)
    ap.add_argument("--rounds", type=int, default=3, help="whole replays per side, alternated")
    args = ap.parse_args(argv)
    from chunked_medoids import from_features

    n = args.n
    D = np.ascontiguousarray(from_features(pixels(n, args.seed), "euclidean").read_rows(0, n))
    rng = np.random.default_rng(args.seed)  # the same init draws as bench_features' swap part
    out = {"n": n, "dtype": str(D.dtype), "k": {},
           "notes": "per-swap microseconds of apply_swap, old (swap_update + removal_loss + loss_sum, "
                    "pre-fusion copies) vs new, whole replays alternated old/new in one process over "
                    "the swaps of a recorded eager FasterPAM walk (natural order, 1 thread), each swap "
                    "preceded (untimed) by the up to 64 candidate evaluations the walk did before it; "
                    "TD after every swap and the final state asserted bitwise equal; 'weighted' "
                    "replays the same swaps with random weights; cpu = process CPU time per swap; "
                    "loadavg = 1-minute load average"}
    wts = rng.random(n) + 0.5
    for k in args.ks:
        init = rng.choice(n, k, replace=False)
        st = initial_state(D, init, np.empty(0), False)
        td = loss_sum(st[3], np.empty(0), False)
        rec = np.empty((args.max_swaps, 3), dtype=np.int64)
        t0 = time.perf_counter()
        nsw = record_walk(D, *st, np.empty(0), False, td, 0.0, 100, rec)
        walk_s = time.perf_counter() - t0
        swaps = rec[:nsw]
        entry = {"walk_record_seconds": walk_s, "unweighted": replay(D, init, swaps, np.empty(0), False, rounds=args.rounds),
                 "weighted": replay(D, init, swaps, wts, True, rounds=args.rounds), "loadavg": os.getloadavg()[0]}
        out["k"][str(k)] = entry
        u = entry["unweighted"]
        print(f"apply n={n} k={k}: {nsw} swaps, old {u['old_us_mean']:.1f} us/swap, new {u['new_us_mean']:.1f} "
              f"(x{u['speedup_mean']:.2f}); weighted x{entry['weighted']['speedup_mean']:.2f}", file=sys.stderr)
    json.dump(out, sys.stdout, indent=2)
    print()


if __name__ == "__main__":
    main()
