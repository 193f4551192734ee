"""A scaling model of FasterPAM on W workers, fitted to ``bench_distributed.py`` (issue 18).

Reads the JSON of ``bench_distributed.py``, fits three things from its measurements and
predicts the eager walk's time for W = 1…256 workers and n = 10⁵…10⁷ points; writes a plot
(default ``docs/_static/distributed_model.png``) and prints one JSON document.

Model of one fit (the walk; the one-off read of the resident rows is left out)::

    T(n, W) = λ · RT(n, W)  +  c · n · (ψ·S(n) + (E(n, W) − ψ·S(n)) / W)

* ``c`` -- seconds per element of D per candidate evaluated on a worker (the swap kernel's
  cost per row entry; for features it includes computing the row): Σ worker compute
  seconds / Σ (candidates evaluated · n), over the passes of the W = 1 run (one worker
  alone on a core; ``c_seconds_per_element_by_W`` shows what sharing the 2 cores of the
  benchmark machine between 2 workers, the client and the scheduler does to it).
* ``λ`` -- seconds per client↔worker round trip beyond the workers' compute: Σ (pass
  seconds − worker compute / W) / Σ round trips, over the W >= 2 runs.  It absorbs the
  message latency, the client's own work and load imbalance.
* swaps ``S(n) = a + b·ln n`` and passes ``P(n)`` (their mean), fitted to the local
  sequential runs at several n (same data, random init).
* ``RT(n, W) = ρ·S(n) + P(n)·(1 + n / (8192·W))``: ρ round trips per swap (fitted at
  W = 2) plus the batches of a pass without a swap (8192 positions per worker is the batch
  bound of ``chunked_medoids/_dist_eager.py``; batches no longer grow from 16 positions:
  a batch is cut short at its first hit, so it starts long); with one worker every round
  trip is a sequential run of up to 8192 positions, so ``RT(n, 1) = P(n)·n / 8192``.
* ``E(n, W) = n·P(n) + β·W·S(n)``: every position once per pass plus the candidates
  evaluated beyond a swap in its batch (β fitted); ``ψ·S(n)`` of them are walked in
  sequential runs on one worker while swaps are dense (ψ = run positions per swap, fitted
  at W = 2), the rest in parallel.

Assumptions: the workers hold their rows (resident) or compute them (features), so no
storage I/O inside a pass; parallel batches are balanced; swap counts grow with ``ln n``
for the same kind of data; the latency does not grow with W (the client sends W messages
per round trip, so in reality λ grows slowly with W).  The crossover latency
``λ* = compute / RT`` is where round trips cost as much as the compute: above it, more
workers stop paying off.

Usage::

    python benchmarks/model_distributed.py benchmarks/results/distributed.json
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
MAX_PER_WORKER = 8192
WS = [1, 2, 4, 8, 16, 32, 64, 128, 256]
NS = [100_000, 1_000_000, 10_000_000]


def rt_growth(n, W):
    """Round trips of a pass spent on batches without a swap (see the module notes)."""
    return 1.0 + n / (MAX_PER_WORKER * W)


def fit(bench):
    n = bench["n"]
    sc = bench["swap_counts"]
    ln = np.log([s["n"] for s in sc])
    A = np.vstack([np.ones_like(ln), ln]).T
    a, b = np.linalg.lstsq(A, np.array([s["n_swap"] for s in sc], dtype=float), rcond=None)[0]
    swaps = {"a": float(a), "b": float(b), "passes": float(np.mean([s["n_iter"] for s in sc]))}
    models = {}
    # the random-init runs (the swap counts S(n) are those of random inits; "-lab" runs are
    # reported by the benchmark itself)
    for src in sorted({key.rsplit("_W", 1)[0] for key in bench["runs"]} - {""}):
        if "-" in src:
            continue
        runs = {int(key.rsplit("_W", 1)[1]): r for key, r in bench["runs"].items() if key.startswith(src + "_W")}
        multi = {W: r for W, r in runs.items() if W > 1} or runs
        def cost(rs):
            ws = sum(p["worker_seconds"] for r in rs for p in r["passes"])
            return ws / sum(p["evaluated"] * n for r in rs for p in r["passes"])

        single = [r for W, r in runs.items() if W == 1] or list(runs.values())
        over = sum(p["seconds"] - p["worker_seconds"] / W for W, r in multi.items() for p in r["passes"])
        rts = sum(p["round_trips"] for r in multi.values() for p in r["passes"])
        rho = np.mean([(r["round_trips"] - r["n_iter"] * rt_growth(n, W)) / max(1, r["n_swap"])
                       for W, r in multi.items()])
        beta = np.mean([(sum(p["evaluated"] for p in r["passes"]) - n * r["n_iter"]) / max(1, W * r["n_swap"])
                        for W, r in multi.items()])
        psi = np.mean([r.get("run_positions", 0) / max(1, r["n_swap"]) for r in multi.values()])
        models[src] = {"c_seconds_per_element": cost(single),
                       "c_seconds_per_element_by_W": {W: cost([r]) for W, r in runs.items()},
                       "latency_seconds": max(over, 0.0) / max(1, rts),
                       "round_trips_per_swap": float(max(rho, 0.0)),
                       "extra_evaluated_per_swap_per_worker": float(max(beta, 0.0)),
                       "run_positions_per_swap": float(psi),
                       "measured": {W: {"walk_seconds": sum(p["seconds"] for p in r["passes"]),
                                        "fit_seconds": r["seconds"], "setup_seconds": r.get("setup_seconds"),
                                        "round_trips": r["round_trips"], "n_swap": r["n_swap"],
                                        "n_iter": r["n_iter"]} for W, r in runs.items()}}
    return swaps, models


def predict(m, sw, n, W, lam=None, S=None, P=None):
    lam = m["latency_seconds"] if lam is None else lam
    S = sw["a"] + sw["b"] * math.log(n) if S is None else S
    P = sw["passes"] if P is None else P
    if W == 1:
        RT = P * math.ceil(n / MAX_PER_WORKER)
        E = n * P
        compute = m["c_seconds_per_element"] * n * E
    else:
        RT = m["round_trips_per_swap"] * S + P * rt_growth(n, W)
        E = n * P + m["extra_evaluated_per_swap_per_worker"] * W * S
        dense = min(E, m["run_positions_per_swap"] * S)
        compute = m["c_seconds_per_element"] * n * (dense + (E - dense) / W)
    total = lam * RT + compute
    return {"seconds": total, "pass_seconds": total / P, "round_trips": RT, "compute_seconds": compute,
            "crossover_latency_seconds": compute / RT}


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("bench", help="JSON written by bench_distributed.py")
    ap.add_argument("--plot", default=os.path.join(HERE, os.pardir, "docs", "_static", "distributed_model.png"))
    args = ap.parse_args()
    with open(args.bench) as f:
        bench = json.load(f)
    swaps, models = fit(bench)
    out = {"bench": os.path.basename(args.bench), "n_measured": bench["n"], "k": bench["k"], "swaps": swaps,
           "models": models, "validation": {}, "predictions": {}}
    for src, m in models.items():
        val = {}
        for W, meas in m["measured"].items():
            p = predict(m, swaps, bench["n"], W, S=meas["n_swap"], P=meas["n_iter"])
            val[W] = {"predicted_walk_seconds": p["seconds"], "measured_walk_seconds": meas["walk_seconds"],
                      "relative_error": p["seconds"] / meas["walk_seconds"] - 1.0}
        out["validation"][src] = val
        out["predictions"][src] = {n: {W: predict(m, swaps, n, W) for W in WS} for n in NS}
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # pragma: no cover
        plt = None
    if plt is not None and args.plot:
        fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
        colors = {NS[0]: "tab:blue", NS[1]: "tab:orange", NS[2]: "tab:red"}
        styles = {"zarr": "-", "features": "--"}
        for src, m in models.items():
            for n in NS:
                t = [predict(m, swaps, n, W)["pass_seconds"] for W in WS]
                axes[0].plot(WS, t, styles.get(src, ":"), color=colors[n], label=f"n={n:.0e} ({src})")
                lam_star = [predict(m, swaps, n, W)["crossover_latency_seconds"] * 1e3 for W in WS]
                axes[1].plot(WS, lam_star, styles.get(src, ":"), color=colors[n], label=f"n={n:.0e} ({src})")
            nm = bench["n"]
            axes[0].plot(WS, [predict(m, swaps, nm, W)["pass_seconds"] for W in WS], styles.get(src, ":"),
                         color="k", lw=0.8, label=f"n={nm} ({src}), the measured n")
            for W, meas in m["measured"].items():
                axes[0].plot([int(W)], [meas["walk_seconds"] / meas["n_iter"]], "o", color="k")
            axes[1].axhline(m["latency_seconds"] * 1e3, color="gray", ls=styles.get(src, ":"), lw=1)
        axes[0].set(xscale="log", yscale="log", xlabel="workers W", ylabel="seconds per pass (model)",
                    title=f"FasterPAM pass time, k={bench['k']} (dots: measured, n={bench['n']})")
        axes[1].set(xscale="log", yscale="log", xlabel="workers W", ylabel="crossover latency λ* (ms)",
                    title="round trips dominate above λ* (gray: measured λ)")
        axes[0].legend(fontsize=7)
        for ax in axes:
            ax.set_xticks(WS)
            ax.set_xticklabels([str(w) for w in WS])
            ax.grid(True, which="both", alpha=0.3)
        fig.tight_layout()
        os.makedirs(os.path.dirname(os.path.abspath(args.plot)), exist_ok=True)
        fig.savefig(args.plot, dpi=110)
        out["plot"] = os.path.relpath(os.path.abspath(args.plot), os.path.join(HERE, os.pardir))
    json.dump(out, sys.stdout, indent=2, default=float)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
