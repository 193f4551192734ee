"""Bounded-memory checks that a source really is a dissimilarity matrix.

:func:`validate_source` streams every row block once and rejects NaN/inf, negative values
and a non-zero diagonal; symmetry is checked exactly on every diagonal block and on a random
sample of off-diagonal block pairs.  Each error names the problem, the first offending
position and the fix.
"""

from __future__ import annotations

import logging

import numpy as np

from .._budget import validate_block_rows
from .._errors import DissimilarityError, InvalidParameterError
from .._util import check_int, check_random_state, parse_memory_limit
from .base import DissimilaritySource, check_dtype

logger = logging.getLogger(__name__)

def _first(mask: np.ndarray) -> tuple[int, int]:
    r, c = np.argwhere(mask)[0]
    return int(r), int(c)


def _check_pair(a: np.ndarray, b: np.ndarray, atol, rtol, rows0: int, cols0: int, src):
    """Compare ``a = D[rows0:.., cols0:..]`` with ``b = D[cols0:.., rows0:..].T``."""
    if a.size == 0:
        return
    if np.issubdtype(a.dtype, np.integer):
        a64 = a.astype(np.float64)
        b64 = b.astype(np.float64)
    else:
        a64, b64 = a, b
    diff = np.abs(a64 - b64)
    scale = np.maximum(np.abs(a64), np.abs(b64))
    tol_abs = float(atol) if atol is not None else (
        0.0 if np.issubdtype(a.dtype, np.integer) else rtol * float(scale.max()))
    bad = diff > tol_abs + rtol * scale
    if bad.any():
        r, c = _first(bad)
        i, j = rows0 + r, cols0 + c
        raise DissimilarityError(
            f"dissimilarity {src!r} is not symmetric: D[{i}, {j}] = {a[r, c].item()!r} but "
            f"D[{j}, {i}] = {b[r, c].item()!r} (difference {diff[r, c].item()!r} exceeds atol="
            f"{tol_abs!r} + rtol={rtol!r} * |value|; {int(bad.sum())} such entries in this block); "
            "symmetrise the matrix, e.g. D = (D + D.T) / 2 (or store min/max of both halves), "
            "or raise rtol/atol if the difference is rounding"
        )


def validate_source(source, *, memory_limit="256MiB", n_sample_pairs: int = 8, atol=None,
                    rtol: float = 1e-6, random_state=0) -> DissimilaritySource:
    """Check that ``source`` is a valid dissimilarity matrix, streaming in bounded memory.

    Parameters
    ----------
    source : DissimilaritySource or anything :func:`open_dissimilarity` accepts
        The matrix to check.
    memory_limit : int or str, default "256MiB"
        Budget for the row blocks held at once (block height = budget / (4 · n · itemsize),
        at least one row); two sampled row blocks are held for the off-diagonal symmetry
        checks.
    n_sample_pairs : int, default 8
        Number of random off-diagonal block pairs ``D[a:b, c:d]`` compared with
        ``D[c:d, a:b].T`` (every diagonal block ``D[a:b, a:b]`` is always checked).
        The first pair always couples the first and the last rows.
    atol : float, optional
        Absolute asymmetry tolerance.  Default: 0 for integer matrices, ``rtol`` times the
        largest magnitude in the compared blocks for floating matrices.
    rtol : float, default 1e-6
        Relative asymmetry tolerance: entries fail when
        ``|D[i, j] - D[j, i]| > atol + rtol * max(|D[i, j]|, |D[j, i]|)``.
    random_state : int, Generator or None, default 0
        Chooses the sampled block pairs.

    Returns
    -------
    DissimilaritySource
        The (opened) source, unchanged.

    Raises
    ------
    UnsupportedDtypeError
        The dtype is not float32, float64, int32 or int64.
    InvalidParameterError
        Not square or empty (raised when opening), or invalid arguments.
    DissimilarityError
        NaN or inf, a negative value, a non-zero diagonal entry or an asymmetry beyond
        tolerance; the message gives the first offending position ``D[i, j]``, its value and
        the fix.

    Notes
    -----
    Reads the whole matrix once (plus ``2 · n_sample_pairs`` sampled blocks).  Peak memory is
    about ``memory_limit``.
    """
    if not isinstance(source, DissimilaritySource):
        from . import open_dissimilarity

        source = open_dissimilarity(source)
    budget = parse_memory_limit(memory_limit)
    n_sample_pairs = check_int(n_sample_pairs, "n_sample_pairs", minimum=0)
    if isinstance(rtol, bool) or not isinstance(rtol, (int, float, np.floating)) or not rtol >= 0:
        raise InvalidParameterError(f"rtol must be a non-negative number, got {rtol!r}")
    rtol = float(rtol)
    if atol is not None:
        if isinstance(atol, bool) or not isinstance(atol, (int, float, np.floating)) or not atol >= 0:
            raise InvalidParameterError(f"atol must be None or a non-negative number, got {atol!r}")
        atol = float(atol)
    rng = check_random_state(random_state)

    dtype = check_dtype(source.dtype, f"dissimilarity {source!r}")
    n = int(source.n)
    if n < 1:
        raise InvalidParameterError(f"dissimilarity {source!r} is empty (n = {n}); need at least one point")
    h = validate_block_rows(n, dtype.itemsize, budget, source.block_rows)
    is_float = np.issubdtype(dtype, np.floating)

    for start in range(0, n, h):
        stop = min(start + h, n)
        block = source.read_rows(start, stop)
        if block.shape != (stop - start, n):
            raise InvalidParameterError(
                f"dissimilarity {source!r} must be square (n, n) with n = {n}: rows "
                f"{start}:{stop} came back with shape {block.shape}"
            )
        if is_float:
            finite = np.isfinite(block)
            if not finite.all():
                r, c = _first(~finite)
                raise DissimilarityError(
                    f"dissimilarity {source!r} contains {block[r, c].item()!r} at D[{start + r}, {c}] "
                    f"({int((~finite).sum())} non-finite entries in rows {start}:{stop}); dissimilarities "
                    "must be finite: recompute the missing/overflowing entries or drop those points"
                )
            del finite
        neg = block < 0
        if neg.any():
            r, c = _first(neg)
            raise DissimilarityError(
                f"dissimilarity {source!r} has a negative value {block[r, c].item()!r} at "
                f"D[{start + r}, {c}] ({int(neg.sum())} negative entries in rows {start}:{stop}); "
                "dissimilarities must be >= 0: clip rounding noise with np.maximum(D, 0) or fix "
                "the metric"
            )
        del neg
        diag = block[np.arange(stop - start), np.arange(start, stop)]
        nz = np.flatnonzero(diag != 0)
        if nz.size:
            i = start + int(nz[0])
            raise DissimilarityError(
                f"dissimilarity {source!r} has a non-zero diagonal: D[{i}, {i}] = "
                f"{diag[nz[0]].item()!r} ({nz.size} non-zero diagonal entries in rows {start}:{stop}); "
                "the distance of a point to itself must be 0: set it with np.fill_diagonal(D, 0)"
            )
        sq = block[:, start:stop]
        _check_pair(sq, sq.T, atol, rtol, start, start, source)
        del block, sq

    # off-diagonal symmetry on sampled block pairs (two blocks of height m in memory).
    m = max(1, min(h, n // 2)) if n > 1 else 0
    if m and n_sample_pairs:
        pairs = [(0, n - m)]
        for _ in range(n_sample_pairs - 1):
            a = int(rng.integers(0, n - m + 1))
            c = int(rng.integers(0, n - m + 1))
            pairs.append((a, c))
        for a, c in pairs:
            if a == c:
                continue
            rows_a = source.take_rows(np.arange(a, a + m))
            rows_c = source.take_rows(np.arange(c, c + m))
            _check_pair(rows_a[:, c:c + m], rows_c[:, a:a + m].T, atol, rtol, a, c, source)
            del rows_a, rows_c
    logger.debug("validated %r: %d rows in blocks of %d, %d sampled pairs", source, n, h, n_sample_pairs)
    return source
