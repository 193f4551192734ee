"""What an input is: which store kind, and whether it holds a matrix or features.

Every entry point (``open_dissimilarity``, ``from_features``, ``build_dissimilarity``,
``store_info``, the estimators, ``clara``, the CLI) answers these two questions here, from
the one table of path suffixes :data:`INPUT_SUFFIXES`, so they agree on every input (a
``.he5`` file is HDF5 everywhere).

Store kinds
-----------
``"source"``
    An already opened :class:`~chunked_medoids.sources.DissimilaritySource`.
``"numpy"``
    An ``np.ndarray`` (including ``np.memmap``), used in place.
``"array"``
    Any other array-like (lists, objects with ``__array__``): converted with ``np.asarray``.
``"dask"``, ``"zarr"``, ``"hdf5"``
    A ``dask.array.Array``; a ``zarr.Array``/``zarr.Group`` or ``.zarr`` path; an
    ``h5py.Dataset``/``h5py.Group`` or ``.h5``/``.hdf5``/``.he5`` path.
``"npy"``
    A ``.npy`` path (memory-mapped).
``"text"``
    A ``.csv``/``.tsv``/``.txt`` path: numeric feature rows (the CLI reads them).

Matrix or features
------------------
:func:`resolve_input` decides, first rule that applies:

1. ``precomputed=True``: a matrix; ``precomputed=False``: features.
2. An opened source: a matrix.
3. A zarr / HDF5 store carrying the ``chunked_medoids`` metadata of
   :func:`~chunked_medoids.build_dissimilarity` (complete or not): a matrix.
4. Anything else: features, but *undecided* (:attr:`ResolvedInput.decided` is False): the
   library functions treat it as features, the CLI asks for ``--metric`` or
   ``--precomputed``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from .._errors import InvalidTypeError

#: the roles an input may play.
MATRIX, FEATURES = "matrix", "features"
_BOTH = frozenset((MATRIX, FEATURES))

#: path suffix (lower case) -> (store kind, roles it can hold).  The only suffix table.
INPUT_SUFFIXES: dict[str, tuple[str, frozenset]] = {
    ".npy": ("npy", _BOTH),
    ".zarr": ("zarr", _BOTH),
    ".h5": ("hdf5", _BOTH),
    ".hdf5": ("hdf5", _BOTH),
    ".he5": ("hdf5", _BOTH),
    ".csv": ("text", frozenset((FEATURES,))),
    ".tsv": ("text", frozenset((FEATURES,))),
    ".txt": ("text", frozenset((FEATURES,))),
}

#: store kinds :func:`~chunked_medoids.build_dissimilarity` can write.
WRITABLE_KINDS = ("zarr", "hdf5")
#: store kinds that live in memory (and may be converted with ``np.asarray``).
IN_MEMORY_KINDS = ("numpy", "array")


def suffixes(kind: str | None = None, role: str | None = None) -> tuple[str, ...]:
    """The suffixes of :data:`INPUT_SUFFIXES` of store ``kind`` and/or able to hold ``role``.

    Parameters
    ----------
    kind : str, optional
        A store kind (``"zarr"``, ``"hdf5"``, ``"npy"``, ``"text"``).
    role : {"matrix", "features"}, optional

    Returns
    -------
    tuple of str
        In table order, e.g. ``suffixes("hdf5") == (".h5", ".hdf5", ".he5")``.
    """
    return tuple(s for s, (k, roles) in INPUT_SUFFIXES.items()
                 if (kind is None or k == kind) and (role is None or role in roles))


def describe_suffixes(kinds=None, role: str | None = None) -> str:
    """``".zarr, .h5, .hdf5 or .he5"``: the suffixes of ``kinds`` (all by default), for messages."""
    kinds = [kinds] if isinstance(kinds, str) else kinds
    found = [s for s in suffixes(role=role) if kinds is None or INPUT_SUFFIXES[s][0] in kinds]
    return found[0] if len(found) == 1 else ", ".join(found[:-1]) + " or " + found[-1]


def _table_entry(path) -> tuple[str, frozenset] | None:
    """The :data:`INPUT_SUFFIXES` entry of a path (case-insensitive, trailing slashes ignored)."""
    low = os.fspath(path).rstrip("/\\").lower()
    for suffix, entry in INPUT_SUFFIXES.items():
        if low.endswith(suffix):
            return entry
    return None


def path_kind(path) -> str | None:
    """The store kind a path's suffix names (``None`` for an unknown suffix).

    Case-insensitive; trailing slashes are ignored (``"D.zarr/"`` is zarr).
    """
    entry = _table_entry(path)
    return None if entry is None else entry[0]


def path_roles(path) -> frozenset | None:
    """The roles (``"matrix"``, ``"features"``) a path's suffix can hold (``None`` for an unknown suffix).

    Same matching as :func:`path_kind`: ``path_roles("X.csv") == {"features"}``.
    """
    entry = _table_entry(path)
    return None if entry is None else entry[1]


def input_kind(obj) -> str | None:
    """The store kind of ``obj`` (see the module notes); ``None`` for a path of unknown suffix.

    Parameters
    ----------
    obj : path, array, array-like or DissimilaritySource

    Returns
    -------
    str or None
        One of ``"source"``, ``"numpy"``, ``"array"``, ``"dask"``, ``"zarr"``, ``"hdf5"``,
        ``"npy"``, ``"text"``, or None.
    """
    from .base import DissimilaritySource
    from .dask_array import _is_dask_array
    from .hdf5 import _is_h5py_object
    from .zarr_store import _is_zarr_object

    if isinstance(obj, DissimilaritySource):
        return "source"
    if isinstance(obj, (str, os.PathLike)):
        return path_kind(obj)
    if isinstance(obj, np.ndarray):
        return "numpy"
    if _is_dask_array(obj):
        return "dask"
    if _is_zarr_object(obj):
        return "zarr"
    if _is_h5py_object(obj):
        return "hdf5"
    return "array"


@dataclass(frozen=True)
class ResolvedInput:
    """What :func:`resolve_input` found out about an input.

    Attributes
    ----------
    kind : str or None
        Store kind (:func:`input_kind`); None for a path of unknown suffix.
    role : {"matrix", "features"}
        Whether the input is a dissimilarity matrix or (n, d) feature rows.
    decided : bool
        False when ``role`` is only the default (features) and nothing in the input or the
        arguments said so.
    lazy : bool
        The input must be read in blocks, never converted with ``np.asarray`` (paths,
        sources, dask / zarr / HDF5 arrays).
    meta : dict or None
        The ``chunked_medoids`` metadata of a store written by ``build_dissimilarity``.
    """

    kind: str | None
    role: str
    decided: bool
    lazy: bool
    meta: dict | None = None

    @property
    def managed(self) -> bool:
        """Whether the input is a store written by ``build_dissimilarity``."""
        return self.meta is not None


def resolve_input(obj, *, precomputed: bool | None = None, dataset: str | None = None) -> ResolvedInput:
    """Decide the store kind of ``obj`` and whether it holds a matrix or features.

    Parameters
    ----------
    obj : path, array, array-like or DissimilaritySource
        The input.
    precomputed : bool, optional
        True: ``obj`` is a dissimilarity matrix; False: feature rows; None (default): decide
        from ``obj`` (rules in the module notes).
    dataset : str, optional
        Dataset / array name inside an HDF5 file or zarr group, used to look for the build
        metadata (default: ``"dissimilarity"`` when present, else the only array).

    Returns
    -------
    ResolvedInput

    Raises
    ------
    InvalidTypeError
        ``precomputed`` is not None, True or False.

    Notes
    -----
    I/O: with ``precomputed=None`` and a zarr / HDF5 input, the store's metadata is read
    (no matrix values).  Nothing else is opened.
    """
    if precomputed is not None and not isinstance(precomputed, (bool, np.bool_)):
        raise InvalidTypeError(f"precomputed must be None, True or False, got {precomputed!r}")
    kind = input_kind(obj)
    lazy = kind not in IN_MEMORY_KINDS
    if precomputed is not None:
        return ResolvedInput(kind, MATRIX if precomputed else FEATURES, True, lazy)
    if kind == "source":
        return ResolvedInput(kind, MATRIX, True, lazy, getattr(obj, "meta", None))
    meta = _build_meta(obj, kind, dataset) if kind in WRITABLE_KINDS else None
    if meta is not None:
        return ResolvedInput(kind, MATRIX, True, lazy, meta)
    return ResolvedInput(kind, FEATURES, False, lazy)


def _build_meta(obj, kind, dataset) -> dict | None:
    """The build metadata of a square zarr / HDF5 store, else None.

    Raises only StoreCorruptionError for a store whose build metadata is not a JSON object
    (damaged: neither features nor a usable matrix)."""
    from .._store_meta import read_meta

    if isinstance(obj, (str, os.PathLike)) and not os.path.exists(os.fspath(obj)):
        return None
    try:
        if kind == "zarr":
            from .zarr_store import ZarrArrayRef

            ref = ZarrArrayRef(obj, dataset)
            arr = ref.get()
            meta = read_meta(arr.attrs, ref.location)
            meta = meta if meta is not None else ref.group_meta
            shape = tuple(arr.shape)
        else:
            import h5py

            from .hdf5 import _meta_of, _open_file, resolve_h5

            name = dataset
            if name is None:  # like store_info: "dissimilarity" when present, else the only one
                if isinstance(obj, (str, os.PathLike)):
                    with _open_file(os.fspath(obj)) as f:
                        has = isinstance(f.get("dissimilarity"), h5py.Dataset)
                else:
                    has = isinstance(obj, h5py.Group) and isinstance(obj.get("dissimilarity"), h5py.Dataset)
                name = "dissimilarity" if has else None
            fname, name = resolve_h5(obj, name, default=None)
            with _open_file(fname) as f:
                dset = f[name]
                meta = _meta_of(dset)
                shape = tuple(dset.shape)
    except Exception as exc:  # not a readable store, several arrays, a group...: not a built matrix
        if getattr(exc, "damaged_metadata", False):
            raise
        return None
    if meta is None or len(shape) != 2 or shape[0] != shape[1]:
        return None
    return meta


__all__ = [
    "FEATURES",
    "INPUT_SUFFIXES",
    "IN_MEMORY_KINDS",
    "MATRIX",
    "ResolvedInput",
    "WRITABLE_KINDS",
    "describe_suffixes",
    "input_kind",
    "path_kind",
    "path_roles",
    "resolve_input",
    "suffixes",
]
