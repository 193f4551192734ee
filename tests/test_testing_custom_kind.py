"""A third-party source kind, registered with register_source_kind, runs the public suite.

The kind stores the condensed upper triangle (scipy's ``pdist`` layout) in a ``.cond``
file and reads rows of the full matrix from it, memory-mapped; it pickles as its path.
"""

import os

import numpy as np
import pytest
from scipy.spatial.distance import squareform

from chunked_medoids import open_dissimilarity, testing
from chunked_medoids.sources import SOURCE_KINDS, DissimilaritySource, register_source_kind
from chunked_medoids.testing import SourceConformance


class CondensedSource(DissimilaritySource):
    """``D`` from its condensed upper triangle ``c`` (``c[k]`` = D[i, j], i < j, row-major)."""

    kind = "condensed"

    def __init__(self, path):
        self.path = os.fspath(path)
        self._c = np.load(self.path, mmap_mode="r")
        m = self._c.shape[0]
        self.n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
        self.dtype = np.dtype(self._c.dtype)
        self.block_rows = min(testing.CHUNK, self.n)

    def _row(self, i):
        n, c = self.n, self._c
        out = np.zeros(n, dtype=self.dtype)
        j = np.arange(i)  # D[j, i] for j < i
        out[:i] = c[n * j - j * (j + 1) // 2 + (i - j - 1)]
        k0 = n * i - i * (i + 1) // 2
        out[i + 1:] = c[k0: k0 + n - i - 1]
        return out

    def _read_rows(self, start, stop):
        out = np.empty((stop - start, self.n), dtype=self.dtype)
        for r in range(start, stop):
            out[r - start] = self._row(r)
        return out

    def _fingerprint_parts(self):
        return ["condensed", os.path.abspath(self.path), *self.sample_fingerprint_rows()]

    def __getstate__(self):
        state = self.__dict__.copy()
        state["_c"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._c = np.load(self.path, mmap_mode="r")


def _is_condensed(obj):
    return isinstance(obj, (str, os.PathLike)) and os.fspath(obj).endswith(".cond")


def _open_condensed(obj, **options):
    return CondensedSource(obj)


def write_condensed(path, D):
    with open(path, "wb") as fh:
        np.save(fh, squareform(D, checks=False).astype(D.dtype))
    return path


@pytest.fixture(autouse=True, scope="module")
def condensed_kind():
    register_source_kind("condensed", _is_condensed, _open_condensed, "a .cond file of pdist values")
    yield
    del SOURCE_KINDS["condensed"]


class TestCondensedKind(SourceConformance):
    kind = "condensed"
    file_backed = True
    block_rows = testing.CHUNK

    def make(self, D, directory):
        path = write_condensed(directory / "D.cond", D)
        return lambda: open_dissimilarity(path)  # found through the registry


def test_check_source_runs_every_check(tmp_path):
    D = testing.reference_matrix(0, "float64")
    D2 = testing.reference_matrix(1, "float64")
    p1 = write_condensed(tmp_path / "a.cond", D)
    p2 = write_condensed(tmp_path / "b.cond", D2)
    testing.check_source(lambda: open_dissimilarity(p1), D, kind="condensed", block_rows=testing.CHUNK,
                         file_backed=True, open_other=lambda: open_dissimilarity(p2))


class _WrongTake(CondensedSource):
    def _take_rows(self, indices):  # a broken kind: ignores the order of the indices
        return super()._take_rows(np.sort(indices))


class _Heavy(CondensedSource):
    def __getstate__(self):  # a broken kind: ships the whole matrix to every worker
        state = self.__dict__.copy()
        state["_c"] = None
        state["_payload"] = np.asarray(self._c).copy()
        return state


def test_the_suite_fails_broken_kinds(tmp_path):
    D = testing.reference_matrix(0, "float64")
    path = write_condensed(tmp_path / "a.cond", D)
    with pytest.raises(AssertionError):
        testing.check_take_rows(_WrongTake(path), D, [5, 3, 0])
    with pytest.raises(AssertionError, match="pickles"):
        testing.check_pickle(_Heavy(path), D, file_backed=True)
    with pytest.raises(AssertionError, match="kind"):
        testing.check_metadata(CondensedSource(path), D, kind="numpy")
    with pytest.raises(AssertionError):  # same fingerprint for two different matrices
        testing.check_fingerprint(lambda: CondensedSource(path), lambda: CondensedSource(path))
