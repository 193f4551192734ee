"""Input detection of the command line: is INPUT a dissimilarity matrix or features, which
file kind is it, and the source the Python API gets for it.

The CLI asks the library's one input resolver
(:func:`chunked_medoids.sources.resolve_input` and its suffix table
:data:`~chunked_medoids.sources.INPUT_SUFFIXES`) which store kind a path is and whether it is
a matrix built by ``build``; it adds only what is the command line's own: ``--metric`` /
``--precomputed`` settle an undecided input, and text files (``.csv`` / ``.tsv`` / ``.txt``)
are read here by :func:`read_csv` rather than streamed.
"""

from __future__ import annotations

import logging
import os

from ..sources.inputs import FEATURES, MATRIX, WRITABLE_KINDS, describe_suffixes, path_kind, path_roles
from ._common import UsageError, metric_params

logger = logging.getLogger("chunked_medoids.cli")


def require_exists(path, what) -> None:
    from .._errors import MissingFileError

    if not os.path.exists(path):
        raise MissingFileError(f"{what} {path!r} does not exist")


# ---------------------------------------------------------------------------------------
# CSV
# ---------------------------------------------------------------------------------------
def read_csv(path, *, chunk_rows: int = 65536, categories: bool = False):
    """Read a numeric CSV file into a float64 array of shape (n, d), in chunks.

    The delimiter (``,``, ``;``, tab or blank) is sniffed; a first line that does not parse
    as numbers is taken as a header.  Memory: the result plus one chunk of text rows.

    With ``categories=True`` a column holding any non-numeric value is a categorical column:
    its values are replaced by integer codes (in order of first appearance) and the function
    returns ``(X, categorical_columns)``.  Used for ``--metric gower``.
    """
    import csv

    import numpy as np

    from .._errors import InvalidParameterError

    with open(path, newline="") as fh:
        sample = fh.read(65536)
        fh.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
            delim = dialect.delimiter
        except csv.Error:
            delim = ","
        reader = csv.reader(fh, delimiter=delim, skipinitialspace=True)
        rows, d, first, header = [], None, True, None
        chunks = []
        for lineno, row in enumerate(reader, start=1):
            if delim == " ":
                row = [c for c in row if c != ""]
            if not row or all(not c.strip() for c in row):
                continue
            if first:
                first = False
                if _is_header(row, sample, delim, categories):
                    logger.info("%s: first line taken as a header: %s", path, row)
                    header = row
                    d = len(row)
                    continue
            if d is None:
                d = len(row)
            if len(row) != d:
                raise InvalidParameterError(
                    f"CSV file {path!r} line {lineno} has {len(row)} fields, expected {d}; every row "
                    "must have the same number of columns")
            rows.append(row)
            if not categories and len(rows) >= chunk_rows:
                chunks.append(_csv_chunk(rows, path, lineno - len(rows) + 1))
                rows = []
        if categories:
            if not rows:
                raise InvalidParameterError(f"CSV file {path!r} holds no data rows")
            return _encode_categories(rows, header)
        if rows:
            chunks.append(_csv_chunk(rows, path, None))
    if not chunks:
        raise InvalidParameterError(f"CSV file {path!r} holds no numeric rows")
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _is_number(cell) -> bool:
    try:
        float(cell)
    except ValueError:
        return False
    return True


def _is_header(row, sample, delim, categories) -> bool:
    if all(_is_number(c) for c in row):
        return False
    if not categories:
        return True
    # with categorical columns a text first line may be data: it is a header when a column
    # that is numeric further down has text in the first line
    import csv
    import io

    lines = list(csv.reader(io.StringIO(sample), delimiter=delim, skipinitialspace=True))[1:-1]
    lines = [[c for c in r if c != ""] if delim == " " else r for r in lines if r]
    for j, cell in enumerate(row):
        if not _is_number(cell) and lines and all(j < len(r) and _is_number(r[j]) for r in lines):
            return True
    return False


def _encode_categories(rows, header):
    import numpy as np

    d = len(rows[0])
    cols = list(zip(*rows))
    X = np.empty((len(rows), d), dtype=np.float64)
    categorical = []
    for j, col in enumerate(cols):
        try:
            X[:, j] = np.array(col, dtype=np.float64)
        except ValueError:
            codes: dict[str, int] = {}
            X[:, j] = [codes.setdefault(c.strip(), len(codes)) for c in col]
            categorical.append(j)
            logger.info("column %s read as categories (%d distinct values)",
                        header[j] if header else j + 1, len(codes))
    return X, categorical


def _csv_chunk(rows, path, first_line):
    import numpy as np

    from .._errors import InvalidParameterError

    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                if not _is_number(cell):
                    raise InvalidParameterError(
                        f"CSV file {path!r}: non-numeric value {cell!r} in data row "
                        f"{i + 1 if first_line is None else first_line + i}, column {j + 1}; the file "
                        "must hold numbers only (plus an optional header) -- for columns of "
                        "categories use --metric gower"
                    ) from None
        raise


# ---------------------------------------------------------------------------------------
# features and matrices
# ---------------------------------------------------------------------------------------
def features_arg(path, dataset, *, metric=None, params=None):
    """What from_features / build_dissimilarity get for a features file: ``(X, dataset)``.

    For ``--metric gower`` the text columns of a CSV file are categories: they are encoded
    and added to ``params["categorical"]`` (unless the user gave ``categorical`` himself).
    """
    kind = path_kind(path)
    if kind == "text":
        if dataset is not None:
            raise UsageError(f"--dataset applies to {describe_suffixes(WRITABLE_KINDS)} feature files, "
                             f"not to the text file {path!r}")
        if metric == "gower":
            X, categorical = read_csv(path, categories=True)
            if params is not None and params.get("categorical") is None and categorical:
                params["categorical"] = categorical
            return X, None
        return read_csv(path), None
    if FEATURES in (path_roles(path) or ()):
        return path, dataset
    from .._errors import InvalidParameterError

    raise InvalidParameterError(
        f"features file {path!r} has an unsupported suffix; use {describe_suffixes(role=FEATURES)}")


def open_input(args, *, memory_limit=None):
    """``(source, description)`` for INPUT (precomputed matrix or on-the-fly features)."""
    from .._errors import InvalidParameterError

    path = args.input
    require_exists(path, "INPUT")
    dataset = args.dataset
    from ..sources import resolve_input

    # the library's decision: which store kind, and is it a matrix written by 'build'?
    resolved = resolve_input(path, dataset=dataset)
    managed = resolved.meta
    metric = args.metric
    mparams = metric_params(args.metric_param)
    desc = {"path": os.path.abspath(path), "dataset": dataset}
    if metric is not None and managed is not None:
        raise InvalidParameterError(
            f"INPUT {path!r} is a dissimilarity store written by 'build' (metric {managed.get('metric')!r}); "
            "drop --metric (it applies to feature files)")
    if metric is None and (args.precomputed or managed is not None):
        if mparams or args.dtype is not None:
            raise UsageError("--metric-param and --dtype need --metric (INPUT is a precomputed matrix)")
        roles = path_roles(path)
        if roles is not None and MATRIX not in roles:
            raise UsageError(
                f"--precomputed expects a square n×n matrix in a {describe_suffixes(role=MATRIX)} file, not "
                f"the {resolved.kind} file {path!r}; to cluster the rows of {os.path.basename(path)!r} as features, "
                "pass --metric NAME instead of --precomputed")
        from ..sources import open_dissimilarity

        opts = {"dataset": dataset} if dataset is not None else {}
        if dataset is not None and resolved.kind not in WRITABLE_KINDS:
            raise UsageError(f"--dataset applies to {describe_suffixes(WRITABLE_KINDS)} inputs, not {path!r}")
        # validated while the command's own first pass streams it (no extra pass); stores
        # written by 'build' record that they are valid and are not re-checked
        validate = args.validate if args.validate is not None else True
        source = open_dissimilarity(path, validate=validate, **opts)
        desc["validate"] = bool(validate)
        desc.update(kind="precomputed", source_kind=source.kind,
                    metric=None if managed is None else managed.get("metric"))
        return source, desc
    if metric is None:
        raise InvalidParameterError(
            f"cannot tell whether INPUT {path!r} holds features or a dissimilarity matrix: pass "
            "--metric NAME (features; see --help for the names) or --precomputed (a square n×n matrix)")
    if args.validate:
        raise UsageError("--validate applies to precomputed matrices, not to features with --metric")
    from ..sources.features import from_features

    X, fdataset = features_arg(path, dataset, metric=metric, params=mparams)
    dtype = args.dtype or "float32"
    source = from_features(X, metric, dtype=dtype, dataset=fdataset, **mparams)
    desc.update(kind="features", metric=metric, metric_params=mparams, dtype=dtype,
                _features=(X, fdataset))
    return source, desc
