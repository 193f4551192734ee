"""``chunked-medoids silhouette``: silhouette of given labels, or medoid silhouette of given medoids."""

from __future__ import annotations

import os

from ..sources.inputs import path_kind
from ._common import (
    CLUSTER_FLAGS,
    EXIT_OK,
    UsageError,
    announce_compilation,
    call,
    cluster,
    progress,
    resident_given,
)
from ._inputs import open_input, require_exists
from ._outputs import atomic_npy
from .fit import api_validation


def load_index_file(path, what):
    """A 1-D integer array from a .npy or text file given to option ``what``."""
    import numpy as np

    from .._errors import InvalidParameterError

    require_exists(path, what)
    if os.path.isdir(path):
        name = "labels.npy" if what == "--labels" else "medoids.npy"
        hint = (f"; it holds {os.path.join(path, name)!r}: pass that file"
                if os.path.isfile(os.path.join(path, name)) else "")
        raise InvalidParameterError(f"{what} {path!r} is a directory, not a file of integers{hint} "
                                    f"({what} takes a .npy or text file)")
    if path_kind(path) == "npy":
        arr = np.load(path, allow_pickle=False)
    else:
        try:
            arr = np.loadtxt(path, dtype=np.float64, ndmin=1, delimiter=None)
        except ValueError as exc:
            raise InvalidParameterError(f"{what} file {path!r} is not a list of integers: {exc}") from None
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise InvalidParameterError(f"{what} file {path!r} must hold a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InvalidParameterError(f"{what} file {path!r} must hold integers")
        arr = arr.astype(np.int64)
    return arr


def run(args) -> int:
    import numpy as np

    import chunked_medoids as cm

    if args.medoids is not None:
        for flag, value in (("--memory-limit", args.memory_limit), ("--workers", args.workers),
                            ("--scheduler-file", args.scheduler_file),
                            ("--scheduler-address", args.scheduler_address)):
            if value is not None:
                raise UsageError(f"{flag} does not apply to --medoids (the medoid silhouette reads only "
                                 "the k medoid rows, in this process)")
    announce_compilation(args)
    with cluster(args) as client:
        source, desc = open_input(args, memory_limit=args.memory_limit)
        want = args.samples_out is not None
        optional = {"progress": progress(args), **api_validation(desc)}
        given = {"memory_limit": (args.memory_limit, "--memory-limit"), "client": (client, CLUSTER_FLAGS),
                 **resident_given(args)}
        if args.labels is not None:
            labels = load_index_file(args.labels, "--labels")
            values = call(cm.silhouette, "silhouette", (source, labels), dict(given, samples=(True, "")),
                          optional)
            score = float(np.mean(values))  # exactly what silhouette(samples=False) returns
            what = "silhouette"
        else:
            medoids = load_index_file(args.medoids, "--medoids")
            score = float(cm.medoid_silhouette(source, medoids))  # k medoid rows only: cheap
            values = cm.medoid_silhouette(source, medoids, samples=True) if want else None
            what = "medoid silhouette"
        print(f"{what}: {score:.10g}")
        if want:
            atomic_npy(args.samples_out, np.asarray(values, dtype=np.float64))
            print(f"samples:  {os.path.abspath(args.samples_out)}")
    return EXIT_OK
