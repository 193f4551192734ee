"""The dissimilarity-source conformance suite, for the built-in kinds and third-party ones.

Every source kind -- built in, or registered with
:func:`~chunked_medoids.sources.register_source_kind` -- must honour the
:class:`~chunked_medoids.sources.DissimilaritySource` contract the drivers rely on: exact rows
from :meth:`~chunked_medoids.sources.DissimilaritySource.read_rows` and
:meth:`~chunked_medoids.sources.DissimilaritySource.take_rows` (any order, repeats,
empty ranges), typed errors for bad ranges, pickling without the data for file-backed
sources (distributed workers reopen them), a fingerprint that is stable and depends on the
values, and correct results through the :class:`~chunked_medoids.Engine`.

Two ways to run it with pytest:

* subclass :class:`SourceConformance` in a test module and implement
  :meth:`SourceConformance.make` (the class collects as a set of tests, one per check and
  dtype);
* or call the ``check_*`` functions from your own tests (``tests/test_sources_conformance.py``
  of this project does, for every built-in kind).

Examples
--------
.. code-block:: python

    from chunked_medoids.sources import open_dissimilarity, register_source_kind
    from chunked_medoids.testing import SourceConformance

    register_source_kind("mine", is_mine, open_mine, "my matrices")

    class TestMine(SourceConformance):
        kind = "mine"

        def make(self, D, directory):
            path = write_mine(directory / "D.mine", D)
            return lambda: open_dissimilarity(path)

This module needs pytest (``pip install "chunked-medoids[test]"``).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable

import numpy as np
import pytest

from ._errors import InvalidParameterError, InvalidTypeError
from .engine import Engine
from .sources.base import DissimilaritySource
from .sources.features import from_features

#: points of the reference matrices (not a multiple of :data:`CHUNK`).
N = 37
#: storage chunk height the suite's stored matrices use (and block-boundary cases test).
CHUNK = 8
#: element types every source kind must support.
DTYPES = ("float32", "float64", "int32", "int64")


def reference_features(seed: int, dtype, n: int = N) -> tuple[np.ndarray, str]:
    """``(X, metric)``: small random features whose metric matrix is exact in ``dtype``.

    Integer dtypes get integer-valued features with ``"manhattan"`` (integer distances),
    float dtypes normal features with ``"euclidean"``.
    """
    rng = np.random.default_rng(seed)
    if np.issubdtype(np.dtype(dtype), np.integer):
        return rng.integers(0, 50, size=(n, 3)).astype(np.float64), "manhattan"
    return rng.normal(size=(n, 3)), "euclidean"


def reference_matrix(seed: int, dtype, n: int = N) -> np.ndarray:
    """The (n, n) ``dtype`` dissimilarity of :func:`reference_features` (symmetric, zero diagonal)."""
    X, metric = reference_features(seed, dtype, n)
    return from_features(X, metric, dtype=dtype).read_rows(0, n)


def read_cases(n: int = N, chunk: int = CHUNK) -> list[tuple[int, int]]:
    """``(start, stop)`` row ranges :func:`check_read_rows` covers: empty ranges, the whole
    matrix, first and last rows, ranges crossing and aligned to chunk boundaries."""
    c = lambda v: min(v, n)  # noqa: E731
    return [(0, 0), (c(5), c(5)), (0, n), (0, 1), (n - 1, n), (c(3), c(17)), (c(chunk), c(2 * chunk)),
            (c(7), c(9)), (max(0, n - 7), n)]


def take_cases(n: int = N, chunk: int = CHUNK) -> list[list[int]]:
    """Index lists :func:`check_take_rows` covers: empty, unordered, repeated, reversed, one
    chunk's rows."""
    c = lambda v: v % n  # noqa: E731
    return [[], [0], [n - 1, 0], [c(5), c(3), c(5), n - 1, c(3), 0], list(range(n))[::-1],
            [c(chunk + i) for i in range(4)], [c(2), c(2), c(2)]]


def check_metadata(src, D: np.ndarray, kind: str | None = None, block_rows: int | None = None) -> None:
    """``src`` is a source of ``D``'s size and dtype (and of ``kind`` / ``block_rows`` if given)."""
    assert isinstance(src, DissimilaritySource), f"{src!r} is not a DissimilaritySource"
    if kind is not None:
        assert src.kind == kind, f"kind {src.kind!r}, expected {kind!r}"
    n = D.shape[0]
    assert src.n == n and src.shape == (n, n)
    assert src.dtype == D.dtype, f"dtype {src.dtype}, expected {D.dtype}"
    assert 1 <= src.block_rows <= n
    if block_rows is not None:
        assert src.block_rows == block_rows, f"block_rows {src.block_rows}, expected {block_rows}"


def check_read_rows(src, D: np.ndarray, start: int, stop: int) -> None:
    """``src.read_rows(start, stop)`` is ``D[start:stop]``: shape, dtype, C order, values."""
    rows = src.read_rows(start, stop)
    assert rows.shape == (stop - start, D.shape[0])
    assert rows.dtype == D.dtype and rows.flags.c_contiguous
    np.testing.assert_array_equal(rows, D[start:stop])


def check_take_rows(src, D: np.ndarray, indices) -> None:
    """``src.take_rows(indices)`` is ``D[indices]``: shape, dtype, C order, values."""
    rows = src.take_rows(np.array(indices, dtype=np.int64))
    assert rows.shape == (len(indices), D.shape[0]) and rows.dtype == D.dtype and rows.flags.c_contiguous
    np.testing.assert_array_equal(rows, D[list(indices)])


def check_argument_errors(src) -> None:
    """Bad ranges and indices raise the library's typed errors."""
    n = src.n
    with pytest.raises(InvalidParameterError):
        src.read_rows(3, 2)
    with pytest.raises(InvalidParameterError):
        src.read_rows(0, n + 1)
    with pytest.raises(InvalidParameterError):
        src.take_rows([n])
    with pytest.raises(InvalidTypeError):
        src.take_rows([0.5])


def pickled_modules(data: bytes) -> set:
    """Modules of every class/function referenced by a pickle."""
    found = set()

    class Recorder(pickle.Unpickler):
        def find_class(self, module, name):
            found.add(module)
            return super().find_class(module, name)

    Recorder(io.BytesIO(data)).load()
    return found


def check_pickle(src, D: np.ndarray, file_backed: bool = False) -> None:
    """``src`` survives pickling (twice) with the same rows, block height and fingerprint.

    No h5py object may travel in the pickle; a ``file_backed`` source must pickle in under
    4 KiB (its location, not its data).
    """
    n = D.shape[0]
    src.read_rows(0, min(2, n))  # any lazily opened handle is open now
    data = pickle.dumps(src)
    modules = pickled_modules(data)
    assert not any(m.split(".")[0] == "h5py" for m in modules), modules
    if file_backed:
        assert len(data) < 4096, f"{src!r} pickles {len(data)} bytes: the data travelled along"
    clone = pickle.loads(data)
    assert clone.n == src.n and clone.dtype == src.dtype and clone.block_rows == src.block_rows
    a, b = min(4, n), min(20, n)
    np.testing.assert_array_equal(clone.read_rows(a, b), D[a:b])
    idx = [min(9, n - 1), min(1, n - 1), min(9, n - 1)]
    np.testing.assert_array_equal(clone.take_rows(idx), D[idx])
    assert clone.fingerprint() == src.fingerprint()
    # a second round trip of an already unpickled (and used) source
    again = pickle.loads(pickle.dumps(clone))
    np.testing.assert_array_equal(again.read_rows(0, n), D)


def check_fingerprint(open_source: Callable[[], DissimilaritySource],
                      open_other: Callable[[], DissimilaritySource] | None = None) -> None:
    """The fingerprint is a string, equal for the same data opened twice, and different for
    another matrix (``open_other``, which must hold different values)."""
    fp = open_source().fingerprint()
    assert isinstance(fp, str) and len(fp) >= 16
    assert open_source().fingerprint() == fp  # same data opened twice
    if open_other is not None:
        assert open_other().fingerprint() != fp


def _row_sums(block, start, stop, state):
    return block.astype(np.float64).sum(axis=1)


def check_engine(src, D: np.ndarray) -> None:
    """:meth:`Engine.map_blocks` (2 threads) and :meth:`Engine.iter_blocks` see exactly ``D``."""
    with Engine(num_workers=2, block_rows=5) as eng:
        got = np.concatenate(eng.map_blocks(src, _row_sums))
        streamed = np.vstack([b for _, _, b in eng.iter_blocks(src)])
    np.testing.assert_allclose(got, D.astype(np.float64).sum(axis=1))
    np.testing.assert_array_equal(streamed, D)


def check_source(open_source: Callable[[], DissimilaritySource], D: np.ndarray, *,
                 kind: str | None = None, block_rows: int | None = None, file_backed: bool = False,
                 open_other: Callable[[], DissimilaritySource] | None = None, chunk: int = CHUNK) -> None:
    """Run every check of the suite on the source ``open_source()`` holding matrix ``D``.

    Parameters
    ----------
    open_source : callable
        Returns a fresh source of ``D`` on every call.
    D : ndarray of shape (n, n)
        The matrix it must hold, in the source's dtype.
    kind : str, optional
        Expected ``source.kind``.
    block_rows : int, optional
        Expected natural block height.
    file_backed : bool, default False
        The source must pickle as its location (under 4 KiB).
    open_other : callable, optional
        Returns a source of another matrix (its fingerprint must differ).
    chunk : int, default CHUNK
        Storage chunk height, for the block-boundary cases.
    """
    check_metadata(open_source(), D, kind=kind, block_rows=block_rows)
    n = D.shape[0]
    src = open_source()
    for start, stop in read_cases(n, chunk):
        check_read_rows(src, D, start, stop)
    for idx in take_cases(n, chunk):
        check_take_rows(src, D, idx)
    check_argument_errors(open_source())
    check_pickle(open_source(), D, file_backed=file_backed)
    check_fingerprint(open_source, open_other)
    check_engine(open_source(), D)


class SourceConformance:
    """The conformance suite as a pytest test class: subclass it (name it ``Test...``).

    Implement :meth:`make`; set :attr:`kind` (expected ``source.kind``), :attr:`file_backed`
    and :attr:`block_rows` when they apply, and narrow :attr:`dtypes` if the kind cannot
    store some of :data:`DTYPES` (all four are expected of built-in kinds).  Every check runs
    once per dtype on the :func:`reference_matrix` of seed 0; the fingerprint check also
    builds seed 1's matrix.
    """

    #: expected ``source.kind`` (None: not checked).
    kind: str | None = None
    #: whether the source must pickle as its location, not its data.
    file_backed: bool = False
    #: expected natural block height (None: not checked).
    block_rows: int | None = None
    #: element types to test.
    dtypes: tuple = DTYPES

    def make(self, D: np.ndarray, directory) -> Callable[[], DissimilaritySource]:
        """Store ``D`` under ``directory`` (a ``pathlib.Path``, empty) as your kind and return
        a function that opens it as a source (a new one on each call)."""
        raise NotImplementedError("implement make(D, directory) -> opener")

    # -- parametrisation and fixtures ----------------------------------------------------
    def pytest_generate_tests(self, metafunc):
        """Run every check once per dtype of :attr:`dtypes` (pytest calls this hook)."""
        if "conformance_dtype" in metafunc.fixturenames:
            metafunc.parametrize("conformance_dtype", list(self.dtypes))

    @pytest.fixture
    def conformance_case(self, tmp_path, conformance_dtype):
        D = reference_matrix(0, conformance_dtype)
        directory = tmp_path / "a"
        directory.mkdir()
        return self.make(D, directory), D

    # -- the checks ----------------------------------------------------------------------
    def test_metadata(self, conformance_case):
        opener, D = conformance_case
        check_metadata(opener(), D, kind=self.kind, block_rows=self.block_rows)

    def test_read_rows(self, conformance_case):
        opener, D = conformance_case
        src = opener()
        for start, stop in read_cases(D.shape[0]):
            check_read_rows(src, D, start, stop)

    def test_take_rows(self, conformance_case):
        opener, D = conformance_case
        src = opener()
        for idx in take_cases(D.shape[0]):
            check_take_rows(src, D, idx)

    def test_argument_errors(self, conformance_case):
        check_argument_errors(conformance_case[0]())

    def test_pickle(self, conformance_case):
        opener, D = conformance_case
        check_pickle(opener(), D, file_backed=self.file_backed)

    def test_fingerprint(self, conformance_case, conformance_dtype, tmp_path):
        D2 = reference_matrix(1, conformance_dtype)
        directory = tmp_path / "b"
        directory.mkdir()
        check_fingerprint(conformance_case[0], self.make(D2, directory))

    def test_engine(self, conformance_case):
        opener, D = conformance_case
        check_engine(opener(), D)


__all__ = [
    "CHUNK",
    "DTYPES",
    "N",
    "SourceConformance",
    "check_argument_errors",
    "check_engine",
    "check_fingerprint",
    "check_metadata",
    "check_pickle",
    "check_read_rows",
    "check_source",
    "check_take_rows",
    "pickled_modules",
    "read_cases",
    "reference_features",
    "reference_matrix",
    "take_cases",
]
