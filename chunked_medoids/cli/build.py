"""``chunked-medoids build``: the n×n dissimilarity of a feature file into a chunked store."""

from __future__ import annotations

import signal
import time

from ..sources.inputs import path_kind
from ._common import EXIT_OK, BuildInterrupted, announce_compilation, cluster, metric_params, progress
from ._inputs import features_arg, require_exists


def _previous_state(path, dataset):
    """``store_info`` of an existing store at the output path (None when there is none)."""
    import os

    if not os.path.exists(path):
        return None
    from ..builder import store_info

    try:
        return store_info(path, dataset)
    except Exception:  # noqa: BLE001 - not a store of ours: the builder says what is wrong
        return None


def run(args) -> int:
    from .._util import format_bytes
    from ..builder import build_dissimilarity, store_info

    require_exists(args.features, "FEATURES")
    mparams = metric_params(args.metric_param)
    X, fdataset = features_arg(args.features, args.dataset, metric=args.metric, params=mparams)
    out_dataset = args.output_dataset if path_kind(args.output) == "hdf5" else None
    before = None if args.overwrite else _previous_state(args.output, out_dataset)
    announce_compilation(args)

    def on_signal(signum, frame):
        raise BuildInterrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    t0 = time.perf_counter()
    try:
        with cluster(args) as client:
            opts = {}
            if args.memory_limit is not None:
                opts["memory_limit"] = args.memory_limit
            build_dissimilarity(
                X, args.output, args.metric, dtype=args.dtype, block_rows=args.block_rows,
                compressor=None if args.compressor == "none" else args.compressor,
                overwrite=args.overwrite, client=client, progress=progress(args),
                dataset=out_dataset or "dissimilarity",
                features_dataset=fdataset, **opts, **mparams)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    seconds = time.perf_counter() - t0
    info = store_info(args.output, out_dataset)
    what = (f"{info['shape'][0]}×{info['shape'][1]} {info['dtype']}, metric {info.get('metric')}, "
            f"{format_bytes(info.get('size_on_disk') or 0)} on disk")
    if before is not None and before.get("managed") and before.get("complete"):
        print(f"already complete: {info['path']}: {what}; nothing was computed (pass --overwrite to rebuild)")
    else:
        print(f"built {info['path']}: {what}, {seconds:.2f} s")
    return EXIT_OK
