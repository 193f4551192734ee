"""``chunked-medoids rechunk``: a row-striped copy of a dissimilarity store."""

from __future__ import annotations

import time

from ._common import EXIT_OK, cluster, progress
from ._inputs import require_exists


def run(args) -> int:
    from .._util import format_bytes
    from ..builder import store_info
    from ..rechunk import rechunk_store
    from ..sources.inputs import path_kind

    require_exists(args.input, "INPUT")
    out_dataset = args.output_dataset if path_kind(args.output) == "hdf5" else None
    t0 = time.perf_counter()
    with cluster(args) as client:
        opts = {} if args.memory_limit is None else {"memory_limit": args.memory_limit}
        rechunk_store(args.input, args.output, dataset=args.dataset,
                      output_dataset=out_dataset or "dissimilarity", block_rows=args.block_rows,
                      compressor=None if args.compressor == "none" else args.compressor,
                      overwrite=args.overwrite, client=client, progress=progress(args),
                      validate=args.validate, **opts).close()
    info = store_info(args.output, out_dataset)
    print(f"rechunked {args.input} -> {info['path']}: {info['shape'][0]}×{info['shape'][1]} {info['dtype']}, "
          f"stripes of {info['stripe_rows']} rows, {format_bytes(info.get('size_on_disk') or 0)} on disk, "
          f"{time.perf_counter() - t0:.2f} s")
    return EXIT_OK
