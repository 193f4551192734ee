"""``chunked-medoids fit``: k-medoids clustering with any registered method.

:func:`run_clustering` is the shared body of ``fit`` and ``clara``: open the input, cluster,
print, write the outputs and the plots.
"""

from __future__ import annotations

import logging
import os
import time

from ._common import (
    CLUSTER_FLAGS,
    EXIT_OK,
    accepted,
    announce_compilation,
    call,
    checkpoint_given,
    cluster,
    print_result,
    progress,
    resident_given,
    resolve_seed,
    with_checkpoint_signals,
)
from ._inputs import open_input
from ._outputs import check_output_dirs, check_plots_available, summary, write_outputs, write_plots

logger = logging.getLogger("chunked_medoids.cli")


def check_outputs(args) -> None:
    """-o / --plots checks before any work (see :func:`._outputs.check_output_dirs`)."""
    ckpt = getattr(args, "checkpoint", None)
    check_output_dirs(args.output, getattr(args, "plots", None), overwrite=getattr(args, "overwrite", False),
                      resuming=ckpt is not None and os.path.isfile(ckpt))


def api_validation(desc) -> dict:
    """``{"validate": flag}`` for a precomputed INPUT: the CLI's choice (``--validate`` /
    ``--no-validate``, default on) made in :func:`._inputs.open_input`, where the source was
    opened with a stream validator that checks the blocks as the method's first pass reads
    them (a store written by ``build`` is marked valid and not re-checked).  Passing the same
    flag on keeps that validator; ``False`` would switch it off.  Passed only to functions
    that take ``validate``."""
    return {"validate": desc.get("validate", True)} if desc.get("kind") == "precomputed" else {}


#: feature data up to this size is read whole for the projection plot (larger: subsampled
#: when memory-mapped, else no projection).
PROJECTION_READ_BYTES = 256 << 20


def plot_features(desc, source=None):
    """The feature array for the projection plot, or None (a precomputed matrix, or features
    in a store too large to read whole)."""
    if desc.get("kind") != "features":
        return None
    X, dataset = desc["_features"]
    if dataset is None and isinstance(X, (str, os.PathLike)) and str(X).lower().endswith(".npy"):
        import numpy as np

        return np.load(X, mmap_mode="r")  # plot_projection reads only its subsample
    if dataset is None and not isinstance(X, (str, os.PathLike)):
        return X
    fa = getattr(source, "features", None)
    d = getattr(fa, "d", None) or 1
    if fa is not None and hasattr(fa, "read") and source.n * d * 8 <= PROJECTION_READ_BYTES:
        return fa.read(0, source.n)
    logger.info("no projection plot: the features are too large to read whole")
    return None


def run_clustering(args, *, command, method_name, func, given, source_factory=None):
    """Shared body of fit / clara: open, cluster, print, write outputs and plots."""
    check_plots_available(getattr(args, "plots", None))
    check_outputs(args)
    with_checkpoint_signals(args)
    seed, how = resolve_seed(args)
    drawn = how != "given"  # not from --seed: passed to the method and recorded
    if how != "given":
        logger.info("no --seed given: %s seed %d (recorded in summary.json)",
                    "drew" if how == "drawn" else "resuming with the checkpoint's", seed)
    announce_compilation(args)
    with cluster(args) as client:
        source, desc = open_input(args, memory_limit=args.memory_limit)
        t0 = time.perf_counter()
        first, fixed = (source, {}) if source_factory is None else source_factory(source, desc, func)
        optional = {"progress": progress(args), **fixed, **api_validation(desc)}
        given = dict(given)
        if drawn:
            optional["random_state"] = seed
        given["client"] = (client, CLUSTER_FLAGS)
        result = call(func, method_name, (first, args.k), given, optional)
        seconds = time.perf_counter() - t0
        params = {"k": args.k, **{key: value for key, (value, _) in given.items()
                                  if value is not None and key != "client"}}
        takes_seed = accepted(func) is None or "random_state" in accepted(func)
        if drawn and takes_seed:
            params["random_state"] = seed
        if client is not None:
            params["scheduler"] = str(getattr(client, "scheduler_info", lambda: {})().get("address", "distributed"))
        doc = summary(result, command=command, method=method_name, source=source, desc=desc,
                      params=params, seconds=seconds, seed=seed if takes_seed else None, seed_drawn=how == "drawn")
        print_result(result, seconds)
        if args.output:
            try:
                write_outputs(args.output, result, doc)
            except OSError as exc:
                raise _output_error(args, result, exc) from exc
            print(f"outputs:  {os.path.abspath(args.output)}")
        if getattr(args, "plots", None):
            opts = {key: value for key, value in (("memory_limit", args.memory_limit), ("client", client))
                    if value is not None}
            for path in write_plots(args.plots, result, source, features=plot_features(desc, source),
                                    silhouette=getattr(args, "plot_silhouette", "medoid"), engine_opts=opts):
                print(f"plot:     {path}")
    return EXIT_OK


def _output_error(args, result, exc: OSError) -> OSError:
    """Writing -o failed after the clustering finished (a full disk...): say where the result
    is kept and how to get it without recomputing."""
    ckpt = getattr(args, "checkpoint", None)
    if ckpt is not None and os.path.isfile(ckpt):
        keep = (f"the finished result is kept in the checkpoint {os.path.abspath(ckpt)!r}: free some space "
                "and rerun the same command, which returns it from the checkpoint without recomputing")
    else:
        med = [int(m) for m in result.medoids]
        shown = med if len(med) <= 50 else med[:50] + ["..."]
        keep = (f"the clustering finished with loss {float(result.loss):.10g} and medoids {shown}; free some "
                "space and rerun (with --checkpoint FILE a finished result survives a failed write)")
    reason = exc.strerror or str(exc)
    return OSError(exc.errno, f"-o/--output {os.path.abspath(args.output)!r}: {reason}; {keep}")


def sampling_features(source, desc, func):
    """CLARA-style methods work on the features themselves (cheaper than on-the-fly rows):
    hand them X, the metric and precomputed=False when INPUT holds features."""
    if desc.get("kind") != "features":
        return source, {}
    acc = accepted(func)
    if acc is not None and not {"metric", "precomputed"} <= acc:
        return source, {}
    X, fdataset = desc["_features"]
    if fdataset is not None:  # clara() reads feature files without a dataset name
        return source, {}
    extra = {"metric": desc["metric"], "precomputed": False}
    if desc.get("metric_params"):
        extra["metric_params"] = desc["metric_params"]
    return X, extra


def run(args) -> int:
    from ..algorithms import get_method

    spec = get_method(args.method)
    given = {
        "init": (args.init, "--init"),
        "random_state": (args.seed, "--seed"),
        "max_iter": (args.max_iter, "--max-iter"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **resident_given(args),
        **checkpoint_given(args),
    }
    factory = sampling_features if spec.family == "sampling" else None
    return run_clustering(args, command="fit", method_name=spec.name, func=spec.func,
                          given=given, source_factory=factory)
