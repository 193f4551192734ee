"""``chunked-medoids dynmsc``: choose k by the best average medoid silhouette (DynMSC)."""

from __future__ import annotations

import logging
import os
import time

from ._common import (
    CLUSTER_FLAGS,
    EXIT_OK,
    announce_compilation,
    call,
    checkpoint_given,
    cluster,
    progress,
    resident_given,
    resolve_seed,
    warn,
    with_checkpoint_signals,
)
from ._inputs import open_input
from ._outputs import check_plots_available, save_figure, summary, write_outputs, write_plots
from .fit import api_validation, check_outputs, plot_features

logger = logging.getLogger("chunked_medoids.cli")


def scores_by_k(res, kmin):
    """``{k: average medoid silhouette}`` of a DynMSC result, k increasing."""
    import numpy as np

    scores = getattr(res, "scores", None)
    if scores is None:
        return {}
    if isinstance(scores, dict):
        return {int(k): float(v) for k, v in sorted(scores.items())}
    arr = np.asarray(scores, dtype=np.float64)
    ks = getattr(res, "ks", None)
    if ks is None:
        ks = range(kmin, kmin + arr.shape[0])
    return {int(k): float(v) for k, v in zip(ks, arr)}


def boundary_warning(best_k, kmin, kmax):
    """The warning for a best k at the edge of the range tried (None inside it)."""
    if kmin == kmax:
        return None
    if best_k == kmax:
        return (f"the best k ({best_k}) is --kmax: a larger k may score better; rerun with a larger "
                f"--kmax (e.g. --kmax {2 * kmax}) to be sure")
    if best_k == kmin:
        return (f"the best k ({best_k}) is --kmin: a smaller k may score better"
                + ("; rerun with a smaller --kmin (>= 2)" if kmin > 2 else
                   " (k = 1 has no silhouette); the data may have no clear cluster structure"))
    return None


def run(args) -> int:
    import chunked_medoids as cm

    given = {
        "kmin": (args.kmin, "--kmin"),
        "init": (args.init, "--init"),
        "random_state": (args.seed, "--seed"),
        "max_iter": (args.max_iter, "--max-iter"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **resident_given(args),
        **checkpoint_given(args),
    }
    check_plots_available(args.plots)
    check_outputs(args)
    with_checkpoint_signals(args)
    seed, how = resolve_seed(args)
    drawn = how != "given"  # not from --seed: passed to the method and recorded
    announce_compilation(args)
    with cluster(args) as client:
        source, desc = open_input(args, memory_limit=args.memory_limit)
        given["client"] = (client, CLUSTER_FLAGS)
        optional = {"progress": progress(args), **api_validation(desc)}
        if drawn:
            optional["random_state"] = seed
        t0 = time.perf_counter()
        res = call(cm.dynmsc, "dynmsc", (source, args.kmax), given, optional)
        seconds = time.perf_counter() - t0
        kmin = args.kmin if args.kmin is not None else 2
        scores = scores_by_k(res, kmin)
        print(f"best k:   {int(res.k)}")
        print(f"score:    {float(res.score):.10g}  (average medoid silhouette)")
        print("scores:   " + "  ".join(f"k={k}: {s:.6g}" for k, s in scores.items()))
        print(f"time:     {seconds:.3f} s")
        message = boundary_warning(int(res.k), min(scores, default=kmin), max(scores, default=args.kmax))
        if message:
            warn(message)
        if args.output:
            params = {"kmax": args.kmax, **{key: value for key, (value, _) in given.items()
                                            if value is not None and key != "client"}}
            if drawn:
                params["random_state"] = seed
            doc = summary(res, command="dynmsc", method="dynmsc", source=source, desc=desc,
                          params=params, seconds=seconds, seed=seed, seed_drawn=how == "drawn")
            doc["score"] = float(res.score)
            doc["scores"] = {str(k): float(v) for k, v in scores.items()}
            doc["extra"] = {k: v for k, v in doc["extra"].items() if k not in ("scores", "score")}
            if message:
                doc["warning"] = message
            write_outputs(args.output, res, doc)
            print(f"outputs:  {os.path.abspath(args.output)}")
        if args.plots:
            from .. import plotting
            from ._outputs import pyplot

            plt = pyplot()
            fig, ax = plt.subplots(figsize=(7, 4.5))
            plotting.plot_scores(scores, best_k=int(res.k), ax=ax)
            fig.tight_layout()
            paths = [save_figure(fig, os.path.join(args.plots, "scores.png"))]
            paths += write_plots(args.plots, res, source, features=plot_features(desc, source))
            for path in paths:
                print(f"plot:     {path}")
    return EXIT_OK
