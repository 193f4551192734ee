"""Metadata schema of stores written by :func:`chunked_medoids.build_dissimilarity`.

Both zarr and HDF5 stores carry one attribute ``ATTR`` holding a JSON-able dict::

    {"format": 1, "n": int, "dtype": "float32", "metric": str, "metric_params": {...},
     "features_fingerprint": str, "version": str, "stripe_rows": int, "n_stripes": int,
     "completed_stripes": [int, ...], "complete": bool}

A store is complete only when ``complete`` is true (set after the last stripe landed).
Stores without the attribute are foreign matrices and are opened as they are.
"""

from __future__ import annotations

from ._errors import IncompleteStoreError, StoreCorruptionError

ATTR = "chunked_medoids"
FORMAT = 1


def read_meta(attrs, where: str | None = None) -> dict | None:
    """The metadata dict from a zarr/h5py attribute mapping, or None for foreign stores.

    Raises
    ------
    StoreCorruptionError
        The attribute is not a JSON object (a list, a number, a string that does not parse),
        naming the store ``where`` and the fix.
    """
    try:
        meta = attrs.get(ATTR) if hasattr(attrs, "get") else None
    except Exception:  # pragma: no cover - odd attribute backends
        return None
    if meta is None:
        return None
    problem = None
    if isinstance(meta, (bytes, str)):
        import json

        try:
            meta = json.loads(meta)
        except ValueError as exc:
            problem = f"does not parse as JSON ({exc})"
    if problem is None and not isinstance(meta, dict):
        problem = f"is a JSON {type(meta).__name__}, not an object"
    if problem is not None:
        store = f"store {where!r}" if where else "the store"
        err = StoreCorruptionError(
            f"{store}: its {ATTR!r} metadata attribute {problem}; the metadata was edited or damaged -- "
            "rebuild the store (build_dissimilarity(..., overwrite=True))")
        err.damaged_metadata = True  # the store is ours and damaged, not foreign (inputs._build_meta)
        raise err
    return dict(meta)


def _bad(where, field, value, rule):
    return StoreCorruptionError(
        f"store {where!r}: its chunked_medoids metadata has {field}={value!r}, but {rule}; the "
        "metadata was edited or damaged -- rebuild the store (build_dissimilarity(..., overwrite=True))"
    )


def check_meta(meta: dict | None, shape, chunk_rows: int | None, where: str, *, exact_rows: bool = True) -> None:
    """Check the sizes of build metadata against the array itself before anything uses them.

    ``n`` must be the array's side, ``stripe_rows`` in ``[1, n]`` (the chunk height for zarr,
    ``exact_rows``; a multiple of it for HDF5), ``n_stripes`` = ceil(n / stripe_rows) and
    ``completed_stripes`` a list of stripe indices in ``[0, n_stripes)``.  A hostile or
    damaged ``zarr.json`` (``n_stripes`` = 1e12) is refused here instead of driving a loop.

    Raises
    ------
    StoreCorruptionError
        Naming the field, its value and the rule.
    """
    if meta is None:
        return
    n = int(shape[0]) if len(shape) else 0

    def integer(field):
        v = meta.get(field)
        if isinstance(v, bool) or not isinstance(v, int):
            raise _bad(where, field, v, "it must be an integer")
        return v

    if "n" in meta and integer("n") != n:
        raise _bad(where, "n", meta["n"], f"the array has {n} rows")
    if "stripe_rows" in meta:
        m = integer("stripe_rows")
        if not 1 <= m <= max(n, 1):
            raise _bad(where, "stripe_rows", m, f"it must lie in [1, {n}]")
        if chunk_rows and (m != min(chunk_rows, max(n, 1)) if exact_rows else m % chunk_rows and m != n):
            raise _bad(where, "stripe_rows", m, f"the array's chunks have {chunk_rows} rows")
        if "n_stripes" in meta and integer("n_stripes") != -(-n // m):
            raise _bad(where, "n_stripes", meta["n_stripes"], f"{n} rows in stripes of {m} make {-(-n // m)}")
    done = meta.get("completed_stripes", [])
    if not isinstance(done, list):
        raise _bad(where, "completed_stripes", type(done).__name__, "it must be a list of stripe indices")
    top = meta.get("n_stripes") if isinstance(meta.get("n_stripes"), int) else None
    for i in done:
        if isinstance(i, bool) or not isinstance(i, int) or i < 0 or (top is not None and i >= top):
            raise _bad(where, "completed_stripes", i, f"a stripe index must lie in [0, {top})")


def check_complete(meta: dict | None, where: str, present: int | None = None) -> None:
    """Raise :class:`IncompleteStoreError` when ``meta`` describes an unfinished build.

    ``present``: the number of stripes actually stored (zarr: the chunk files on disk, which
    are the completion record; the metadata's list lags behind them by up to a few seconds).
    """
    if meta is None or meta.get("complete", False):
        return
    n_stripes = int(meta.get("n_stripes", 0))
    recorded = len(set(meta.get("completed_stripes", [])))
    done = recorded if present is None else int(present)
    missing = n_stripes - done
    lag = (f" ({n_stripes - recorded} of {n_stripes} row stripes per its metadata, which lags behind "
           "the chunk files on disk)" if done != recorded else "")
    raise IncompleteStoreError(
        f"store {where!r} is incomplete: {missing} of {n_stripes} row stripes "
        f"({meta.get('stripe_rows', '?')} rows each) were never written{lag}; rerun "
        "build_dissimilarity(...) with the same arguments to finish it (only the missing "
        "stripes are computed), or pass allow_incomplete=True to inspect it"
    )
