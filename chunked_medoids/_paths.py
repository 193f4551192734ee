"""Where an input lives on disk, and whether an output would overwrite it.

:func:`check_output_not_input` is called by every command that writes a store from an
input (``build_dissimilarity``, ``rechunk``) before anything is deleted or created: an
output that is its input, contains it or lies inside it is refused with
:class:`~chunked_medoids.OutputOverlapsInputError`, with or without ``overwrite``.  Paths
are compared after resolving symbolic links (and hard links, for files that exist); two
datasets of one HDF5 file overlap when one is the other or a group containing it.
"""

from __future__ import annotations

import os

from ._errors import OutputOverlapsInputError


def _real(path) -> str:
    return os.path.realpath(os.path.abspath(os.fspath(path)))


def _inside(inner: str, outer: str) -> bool:
    """Whether real path ``inner`` equals ``outer`` or lies below it."""
    try:
        return os.path.commonpath([inner, outer]) == outer
    except ValueError:  # different drives (Windows)
        return False


def _same_file(a: str, b: str) -> bool:
    try:
        return os.path.samefile(a, b)
    except OSError:
        return _real(a) == _real(b)


def _dataset_parts(name) -> tuple[str, ...]:
    return tuple(p for p in str(name or "").split("/") if p)


def feature_locations(features) -> list[tuple[str, str | None]]:
    """``[(path on disk, dataset inside or None)]`` of a
    :class:`~chunked_medoids.sources.features.FeatureArray` (empty when it lives in memory).

    ``.npy`` files and memmaps give their file, zarr arrays their store directory (and the
    array's path inside), HDF5 datasets their file and dataset path.  Dask arrays are not
    traced back to the files they read.
    """
    mode = getattr(features, "_mode", None)
    if mode == "npy":
        return [(features._npy, None)]
    if mode == "memmap":
        return [(features._memmap_args[0], None)]
    ref = getattr(features, "_ref", None)
    if mode == "zarr" and ref is not None and getattr(ref, "root", None) is not None:
        return [(ref.root, ref.path or None)]
    if mode == "hdf5" and ref is not None:
        return [(ref.filename, ref.dataset)]
    return []


def source_locations(source) -> list[tuple[str, str | None]]:
    """``[(path on disk, dataset inside or None)]`` of a dissimilarity source (zarr, HDF5,
    ``.npy``/memmap); empty for sources that live in memory or elsewhere."""
    ref = getattr(source, "_ref", None)
    if getattr(source, "kind", None) == "zarr" and ref is not None and ref.root is not None:
        return [(ref.root, ref.path or None)]
    if getattr(source, "kind", None) == "hdf5" and ref is not None:
        return [(ref.filename, ref.dataset)]
    arr = getattr(source, "array", None) if getattr(source, "kind", None) in ("numpy", "npy") else None
    fname = getattr(arr, "filename", None)
    if fname:
        return [(os.fspath(fname), None)]
    return []


def check_output_not_input(out_path, out_fmt: str, out_dataset, inputs, *, what: str = "store") -> None:
    """Refuse an output that would overwrite (or delete, to overwrite) one of ``inputs``.

    Parameters
    ----------
    out_path : str or os.PathLike
        The output store (a zarr directory or an HDF5 file; it may not exist yet).
    out_fmt : {"zarr", "hdf5"}
    out_dataset : str or None
        The output dataset inside an HDF5 file.
    inputs : list of (path, dataset or None)
        Where the input lives (:func:`feature_locations`, :func:`source_locations`).
    what : str
        The output as named in the message.

    Raises
    ------
    OutputOverlapsInputError
        The output is the input, contains it, or lies inside it; or both are the same
        dataset (or one contains the other) of one HDF5 file.
    """
    out_real = _real(out_path)
    for in_path, in_dataset in inputs:
        in_real = _real(in_path)
        problem = None
        same = _same_file(out_real, in_real) if os.path.exists(out_real) else out_real == in_real
        if same:
            if out_fmt == "hdf5" and os.path.isfile(in_real):
                a, b = _dataset_parts(out_dataset), _dataset_parts(in_dataset)
                if a == b or a[:len(b)] == b or b[:len(a)] == a:
                    problem = (f"its dataset {out_dataset!r} is the input dataset {in_dataset!r} or contains it"
                               if len(a) <= len(b) else
                               f"its dataset {out_dataset!r} lies inside the input group {in_dataset!r}")
            else:
                problem = "it is the input itself"
        elif _inside(in_real, out_real):
            problem = "the input lies inside it (replacing the output would delete the input)"
        elif _inside(out_real, in_real):
            problem = "it lies inside the input (writing it would change the input)"
        if problem:
            shown = os.fspath(in_path) + (f":{in_dataset}" if in_dataset else "")
            raise OutputOverlapsInputError(
                f"output {what} {os.fspath(out_path)!r} overlaps the input {shown!r}: {problem}; "
                "this is refused with or without overwrite. Write the output to another path"
                + (" (or another dataset name of the HDF5 file)" if out_fmt == "hdf5" else "")
            )
