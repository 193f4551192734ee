"""Metadata schema of stores written by :func:`chunked_medoids.build_dissimilarity`.

Both zarr and HDF5 stores carry one attribute ``ATTR`` holding a JSON-able dict::

    {"format": 1, "n": int, "dtype": "float32", "metric": str, "metric_params": {...},
     "features_fingerprint": str, "version": str, "stripe_rows": int, "n_stripes": int,
     "completed_stripes": [int, ...], "complete": bool}

A store is complete only when ``complete`` is true (set after the last stripe landed).
Stores without the attribute are foreign matrices and are opened as they are.
"""

from __future__ import annotations

from ._errors import IncompleteStoreError

ATTR = "chunked_medoids"
FORMAT = 1


def read_meta(attrs) -> dict | None:
    """The metadata dict from a zarr/h5py attribute mapping, or None for foreign stores."""
    try:
        meta = attrs.get(ATTR) if hasattr(attrs, "get") else None
    except Exception:  # pragma: no cover - odd attribute backends
        return None
    if meta is None:
        return None
    if isinstance(meta, (bytes, str)):
        import json

        meta = json.loads(meta)
    return dict(meta)


def check_complete(meta: dict | None, where: str) -> None:
    """Raise :class:`IncompleteStoreError` when ``meta`` describes an unfinished build."""
    if meta is None or meta.get("complete", False):
        return
    n_stripes = int(meta.get("n_stripes", 0))
    done = len(set(meta.get("completed_stripes", [])))
    missing = n_stripes - done
    raise IncompleteStoreError(
        f"store {where!r} is incomplete: {missing} of {n_stripes} row stripes "
        f"({meta.get('stripe_rows', '?')} rows each) were never written; rerun "
        "build_dissimilarity(...) with the same arguments to finish it (only the missing "
        "stripes are computed), or pass allow_incomplete=True to inspect it"
    )
