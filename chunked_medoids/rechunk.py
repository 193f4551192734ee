"""A row-striped copy of a stored dissimilarity (``chunked-medoids rechunk IN -o OUT``).

A foreign store chunked in tiles (or in any layout that streams badly) is rewritten as the
builder writes its stores: row stripes of ``stripe_rows`` rows (one zarr chunk per
stripe, crc32c per chunk, fill value NaN / -1; or HDF5 chunks of about 4 MiB), created
``complete=False`` and marked complete only once every stripe is written, resumable after
an interruption, refused while another process writes the same output.

The copy is ``dask.array.rechunk`` (``method="tasks"``) of the input, as a dask array with
one chunk per read unit of the input, into the output's row stripes
(:func:`~chunked_medoids.engine.rechunk_rows`; ``engine.py`` is the only module that talks to
Dask), written by the builder's :class:`~chunked_medoids.builder.StoreWriter` through the
:class:`~chunked_medoids.engine.Engine` (Dask threads or a distributed client): each write
task computes one output stripe -- the input chunks overlapping it, concatenated -- and
writes it as one chunk.  The stripe height comes from the memory budget
(:func:`~chunked_medoids._budget.plan_stripes`, :func:`~chunked_medoids._budget.rechunk_plan`),
so memory stays within ``memory_limit`` whatever the input layout.  Rows are copied bit for
bit.

The read unit is the one a pass uses: a stored row stripe; for a column-striped store (chunks
spanning every row) a column stripe, read as the row stripe it is transposed (the matrix is
symmetric); for tiles a band of tiles one tile high, read at once.  Rechunking the stored
chunk grid itself is not used for column stripes: every output row stripe needs a piece of
every column chunk (an all-to-all), so ``dask.array.rechunk`` either holds the whole matrix
or decodes each column chunk once per output stripe.  The reads carry the source's fault
checks (lost chunks, fill values, a store replaced under the reader) and validation.
"""

from __future__ import annotations

import logging
import os

import numpy as np

from ._errors import InvalidTypeError
from ._util import check_int, format_bytes, parse_memory_limit

logger = logging.getLogger(__name__)

__all__ = ["rechunk_store"]


def rechunk_store(source, store, *, dataset=None, output_dataset="dissimilarity", memory_limit="1GiB",
                  block_rows=None, compressor="default", overwrite=False, client=None, num_workers=None,
                  progress=False, validate=True):
    """Write a row-striped copy of the dissimilarity ``source`` to ``store``.

    Parameters
    ----------
    source : path, zarr / h5py array or DissimilaritySource
        The input matrix (anything :func:`~chunked_medoids.open_dissimilarity` opens).
    store : str or os.PathLike
        Output ``*.zarr`` or ``*.h5`` / ``*.hdf5`` / ``*.he5``; may not overlap the input.
    dataset : str, optional
        Array / dataset of the input inside a zarr group or HDF5 file.
    output_dataset : str, default "dissimilarity"
        Dataset of the copy in an HDF5 output.
    memory_limit : int or str, default "1GiB"
        Budget for the stripes in flight (read, held and encoded).
    block_rows : int, optional
        Force the stripe height of the copy.
    compressor : str, None or codecs, default "default"
        As in :func:`~chunked_medoids.build_dissimilarity`.
    overwrite : bool, default False
        Replace an existing output (never the input).
    client : distributed.Client, optional
    num_workers : int, optional
    progress : bool, default False
    validate : bool, default True
        Check the input as it streams (finite, non-negative, zero diagonal, symmetric on the
        rows read; see :func:`~chunked_medoids.open_dissimilarity`).

    Returns
    -------
    DissimilaritySource
        The copy, opened.

    Raises
    ------
    OutputOverlapsInputError
        ``store`` is, contains or lies inside the input.
    StoreExistsError, StoreLockedError, InvalidParameterError
        As :func:`~chunked_medoids.build_dissimilarity`.

    Notes
    -----
    Memory: ``memory_limit`` (the stripe height is planned as for a build of the same n with
    d = 1).  I/O: the input is read once, the copy written once.  The copy's metadata names
    the input's fingerprint, so a rerun with the same input resumes, and it is marked
    ``validated: false``: readers validate it as they would the input.
    """
    from . import builder
    from ._budget import plan_stripes, rechunk_plan
    from ._paths import check_output_not_input, source_locations
    from .engine import Engine, rechunk_rows
    from .sources import open_dissimilarity

    path, fmt = builder._check_store_path(store)
    limit = parse_memory_limit(memory_limit, "memory_limit")
    if block_rows is not None:
        block_rows = check_int(block_rows, "block_rows", minimum=1)
    if not isinstance(overwrite, bool):
        raise InvalidTypeError(f"overwrite must be True or False, got {type(overwrite).__name__} {overwrite!r}")
    writer = builder.WRITERS[fmt](path, output_dataset if fmt == "hdf5" else None)
    comp_name, comp = writer.resolve_compressor(compressor)
    opts = {} if dataset is None else {"dataset": dataset}
    if isinstance(source, (str, os.PathLike)) and dataset is None:
        from .sources import zarr_store

        zarr_store._TILE_WARNED.add(os.path.abspath(os.fspath(source)))  # the fix is under way
    src = open_dissimilarity(source, validate=validate, **opts)
    opened_here = isinstance(source, (str, os.PathLike))
    try:
        check_output_not_input(writer.path, fmt, getattr(writer, "dataset", None), source_locations(src))
        builder._check_writable(writer.path, writer.writable_dirs())
        n, dt = src.n, np.dtype(src.dtype)
        engine = Engine(memory_limit=limit, client=client, num_workers=num_workers,
                        progress=progress and writer.engine_progress)
        try:
            plan = plan_stripes(n, 1, dt.itemsize, limit, engine.parallelism, block_rows, writer.fmt)
            if not plan["fits"]:
                logger.warning("memory_limit=%s is below the estimated need of %s for %d parallel stripes "
                               "of %d rows", format_bytes(limit), format_bytes(plan["estimated_peak"]),
                               plan["parallelism"], plan["stripe_rows"])
            # the identity of a copy is its input's: a rerun with the same input resumes
            meta = builder._new_store_meta(n, dt, plan, comp_name, metric="precomputed", metric_params={},
                                          fingerprint=f"rechunk:{src.fingerprint()}", features_shape=None,
                                          validated=False, source=repr(src))
            with builder._build_lock(writer.path):
                meta = builder._prepare(writer, meta, plan, block_rows, overwrite, limit)
                if meta is not None:
                    rp = rechunk_plan(plan["stripe_rows"], src.block_rows, n, dt.itemsize)
                    logger.info("rechunking %r into %s: %d-row input chunks into %d-row stripes", src,
                                writer.where, rp["input_rows"], plan["stripe_rows"])
                    stripes = rechunk_rows(src, plan["stripe_rows"], rp["input_rows"], rp["block_size_limit"])
                    try:
                        writer.write(meta, comp, plan, stripes, engine, progress)
                    except OSError as exc:
                        if isinstance(exc, builder.ChunkedMedoidsError):
                            raise
                        raise builder._write_error(writer.where, exc) from exc
        finally:
            engine.close()
    finally:
        if opened_here:
            src.close()
    return writer.open()
