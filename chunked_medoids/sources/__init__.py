"""Where dissimilarities come from.

One registry of source kinds (:data:`SOURCE_KINDS`) feeds :func:`open_dissimilarity`,
validation messages, the CLI and the conformance tests.  Each entry says which objects or
paths it recognises and how to open them.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from .._errors import InvalidTypeError, MissingFileError, UnknownNameError
from .._typing import DissimilarityLike
from .base import SUPPORTED_DTYPES, DissimilaritySource, check_dtype
from .inputs import INPUT_SUFFIXES, ResolvedInput, input_kind, resolve_input


@dataclass(frozen=True)
class SourceKind:
    """A registered kind of dissimilarity source.

    ``matches(obj)`` says whether ``obj`` (an array object or a path) is of this kind;
    ``open(obj, **options)`` returns a :class:`DissimilaritySource`.
    """

    name: str
    matches: Callable[[Any], bool]
    open: Callable[..., DissimilaritySource]
    description: str


#: name -> SourceKind, in matching order.
SOURCE_KINDS: dict[str, SourceKind] = {}


def register_source_kind(name: str, matches, opener, description: str) -> None:
    """Register a source kind (later registrations are tried after earlier ones)."""
    SOURCE_KINDS[name] = SourceKind(name, matches, opener, description)


def open_dissimilarity(obj: DissimilarityLike, *, kind: str | None = None, validate: bool = True,
                       **options: Any) -> DissimilaritySource:
    """Open anything that holds a symmetric n×n dissimilarity as a streaming source.

    Parameters
    ----------
    obj : array-like, dask array, zarr.Array, h5py.Dataset, path, or DissimilaritySource
        The matrix.  Paths ending in ``.zarr`` open a zarr array (a group's array
        ``dataset="dissimilarity"`` by default), ``.h5``/``.hdf5``/``.he5`` an HDF5 dataset
        (``dataset="dissimilarity"`` by default), ``.npy`` a memory-mapped array.
        A :class:`DissimilaritySource` is returned as is.  With ``kind="features"``, ``obj``
        is an (n, d) feature array and the options are those of
        :func:`~chunked_medoids.from_features` (``metric=``, ``dtype=``, ...).
    kind : str, optional
        Force a registered source kind (see :data:`SOURCE_KINDS`) instead of detecting it.
    validate : bool, default True
        Reject NaN/inf, negative values, a non-zero diagonal and asymmetry, at no extra pass:
        an in-memory array is checked here, completely (vectorised); any other source is
        checked while the algorithm's own reads stream it (every row read: finite, >= 0,
        zero diagonal; symmetry of every pair read in one block and of every pair with a
        sampled column), and the first bad block raises
        :class:`~chunked_medoids.DissimilarityError` naming the position.  Stores written
        by :func:`~chunked_medoids.build_dissimilarity` (metadata ``validated``) and
        features sources are valid by construction and not re-checked.  ``False`` skips
        every check (for data you know is valid), also when the returned source is passed on
        to a clustering function (the choice sticks to the source).  Details:
        :class:`chunked_medoids.sources.validate.StreamValidator`;
        :func:`~chunked_medoids.validate_source` checks a whole matrix in one pass up front.
    **options
        Passed to the kind's opener (e.g. ``dataset=`` for HDF5, ``allow_incomplete=`` for
        stores written by :func:`~chunked_medoids.build_dissimilarity`).

    Returns
    -------
    DissimilaritySource
    """
    if isinstance(obj, DissimilaritySource) and kind is None:
        if options:
            raise InvalidTypeError(
                f"options {sorted(options)} cannot be applied to an already opened source {obj!r}"
            )
        src = obj
    else:
        if kind is not None:
            if kind not in SOURCE_KINDS:
                raise UnknownNameError(
                    f"kind must be one of {list(SOURCE_KINDS)}, got {kind!r}"
                )
            src = SOURCE_KINDS[kind].open(obj, **options)
        else:
            for entry in SOURCE_KINDS.values():
                if entry.matches(obj):
                    src = entry.open(obj, **options)
                    break
            else:
                what = repr(obj) if isinstance(obj, (str, os.PathLike)) else type(obj).__name__
                raise InvalidTypeError(
                    f"cannot open {what} as a dissimilarity matrix; supported: "
                    + "; ".join(f"{k.name} ({k.description})" for k in SOURCE_KINDS.values())
                )
    from .validate import attach_validation, check_validate_flag, skip_validation

    return attach_validation(src) if check_validate_flag(validate) else skip_validation(src)


def _is_numpy(obj) -> bool:
    import numpy as np

    return isinstance(obj, np.ndarray)


def _open_numpy(obj, **options):
    from .memory import NumpySource

    if options:
        raise InvalidTypeError(f"in-memory arrays take no options, got {sorted(options)}")
    return NumpySource(obj)


def _is_npy_path(obj) -> bool:
    return isinstance(obj, (str, os.PathLike)) and input_kind(obj) == "npy"


def _open_npy(obj, **options):
    import numpy as np

    from .._errors import InvalidParameterError
    from .memory import NumpySource

    if options:
        raise InvalidTypeError(f".npy files take no options, got {sorted(options)}")
    path = os.fspath(obj)
    if not os.path.exists(path):
        raise MissingFileError(f"dissimilarity file {path!r} does not exist")
    try:
        arr = np.load(path, mmap_mode="r")
    except ValueError as exc:
        raise InvalidParameterError(f"cannot read {path!r} as a .npy array: {exc}") from exc
    return NumpySource(arr)


register_source_kind("numpy", _is_numpy, _open_numpy, "an in-memory numpy array or np.memmap")
register_source_kind("npy", _is_npy_path, _open_npy, "a path to a .npy file, memory-mapped")


def _lazy(module: str, attr: str):
    """A matcher/opener that imports its module on first call (keeps import cheap)."""

    def call(*args, **kwargs):
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{module}"), attr)(*args, **kwargs)

    call.__name__ = f"{module}.{attr}"
    return call


register_source_kind("dask", _lazy("dask_array", "_matches"), _lazy("dask_array", "_open"),
                     "a dask.array.Array of shape (n, n), read stripe by stripe")
register_source_kind("zarr", _lazy("zarr_store", "_matches"), _lazy("zarr_store", "_open"),
                     "a zarr.Array/Group or a path to a .zarr store; options dataset=, allow_incomplete=, "
                     "direct_io=")
register_source_kind("hdf5", _lazy("hdf5", "_matches"), _lazy("hdf5", "_open"),
                     "an h5py.Dataset or a path to a .h5/.hdf5/.he5 file; options dataset= "
                     "(default 'dissimilarity'), allow_incomplete=")
register_source_kind("features", _lazy("features", "_matches"), _lazy("features", "_open"),
                     "an (n, d) feature array computed on the fly; only with kind='features', "
                     "options metric=, dtype=, ... (see from_features)")

__all__ = [
    "DissimilaritySource",
    "INPUT_SUFFIXES",
    "ResolvedInput",
    "SOURCE_KINDS",
    "SUPPORTED_DTYPES",
    "SourceKind",
    "check_dtype",
    "input_kind",
    "open_dissimilarity",
    "register_source_kind",
    "resolve_input",
]
