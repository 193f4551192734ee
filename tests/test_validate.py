"""validate_source: every rejection triggered with its message checked; clean matrices pass."""

import numpy as np
import pytest
import zarr
from hypothesis import given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
from chunked_medoids import (
    DissimilarityError,
    InvalidParameterError,
    InvalidTypeError,
    UnsupportedDtypeError,
    open_dissimilarity,
)
from chunked_medoids.sources import DissimilaritySource
from chunked_medoids.sources.features import from_features
from chunked_medoids.sources.validate import validate_source

from .conftest import random_symmetric


class CountingSource(DissimilaritySource):
    """Wraps an array; records the largest row block requested (bounded-memory check)."""

    kind = "counting"

    def __init__(self, D, block_rows=4):
        self.D = D
        self.n = D.shape[0]
        self.dtype = D.dtype
        self.block_rows = block_rows
        self.max_rows = 0
        self.rows_read = 0

    def _read_rows(self, start, stop):
        self.max_rows = max(self.max_rows, stop - start)
        self.rows_read += stop - start
        return self.D[start:stop]

    def _fingerprint_parts(self):
        return []


@pytest.mark.parametrize("dtype", ["float32", "float64", "int32", "int64"])
def test_clean_matrices_pass(rng, dtype):
    D = random_symmetric(60, rng, dtype=dtype, integer=dtype.startswith("int"))
    src = open_dissimilarity(D)
    assert validate_source(src) is src
    assert validate_source(D).n == 60  # raw arrays are opened first
    assert open_dissimilarity(D, validate=True).n == 60


def test_single_point_and_features_pass():
    validate_source(np.zeros((1, 1), np.float32))
    X = np.random.default_rng(3).normal(size=(40, 5))
    for metric in ("euclidean", "cosine", "correlation", "manhattan"):
        validate_source(from_features(X, metric, block_rows=7), n_sample_pairs=4)


def test_streams_in_bounded_blocks(rng):
    n = 300
    src = CountingSource(random_symmetric(n, rng, dtype=np.float64), block_rows=8)
    validate_source(src, memory_limit=2**16, n_sample_pairs=3)
    # 65536 bytes / (4 * 300 * 8) -> 6 rows (below the natural 8)
    assert src.max_rows == 6
    assert src.rows_read >= n
    src2 = CountingSource(src.D, block_rows=8)
    validate_source(src2, memory_limit="1MiB", n_sample_pairs=0)
    assert src2.max_rows % 8 == 0 and src2.max_rows <= (1 << 20) // (4 * n * 8)
    assert src2.rows_read == n  # exactly one pass without sampled pairs


@pytest.mark.parametrize("bad,word", [(np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")])
def test_non_finite(rng, bad, word):
    D = random_symmetric(50, rng, dtype=np.float64)
    D[31, 7] = D[7, 31] = bad
    D[40, 2] = bad
    with pytest.raises(DissimilarityError) as ei:
        validate_source(D, memory_limit=2**16)
    msg = str(ei.value)
    assert f"contains {word} at D[7, 31]" in msg
    assert "must be finite" in msg and "drop those points" in msg


def test_negative_value(rng):
    D = random_symmetric(50, rng, dtype=np.float32)
    D[12, 30] = D[30, 12] = -0.5
    with pytest.raises(DissimilarityError, match=r"negative value -0\.5 at D\[12, 30\].*np\.maximum\(D, 0\)"):
        validate_source(D)
    Di = random_symmetric(20, rng, dtype=np.int64, integer=True)
    Di[3, 4] = Di[4, 3] = -2
    with pytest.raises(DissimilarityError, match=r"negative value -2 at D\[3, 4\]"):
        validate_source(Di)


def test_non_zero_diagonal(rng):
    D = random_symmetric(50, rng, dtype=np.float64)
    D[44, 44] = 1e-9
    D[45, 45] = 3.0
    with pytest.raises(DissimilarityError) as ei:
        validate_source(D, memory_limit=2**16)
    msg = str(ei.value)
    assert "non-zero diagonal: D[44, 44] = 1e-09" in msg and "np.fill_diagonal(D, 0)" in msg


def test_asymmetry_in_diagonal_block(rng):
    D = random_symmetric(50, rng, dtype=np.float64)
    D[5, 9] += 1.0
    with pytest.raises(DissimilarityError) as ei:
        validate_source(D, n_sample_pairs=0)
    msg = str(ei.value)
    assert "not symmetric" in msg and "D[5, 9]" in msg and "D[9, 5]" in msg
    assert "(D + D.T) / 2" in msg


def test_asymmetry_found_by_sampled_off_diagonal_pairs(rng):
    n = 200
    D = random_symmetric(n, rng, dtype=np.float64)
    D[0, n - 1] += 5.0  # the corner pair (first rows, last rows) is always sampled
    # memory limit -> 8-row blocks: the entry is outside every diagonal block
    with pytest.raises(DissimilarityError, match=rf"not symmetric: D\[{n - 1}, 0\]|not symmetric: D\[0, {n - 1}\]"):
        validate_source(D, memory_limit=2**16, n_sample_pairs=1)
    # without sampled pairs only the diagonal blocks are compared: the defect goes unseen
    validate_source(D, memory_limit=2**16, n_sample_pairs=0)
    # a large stripe of asymmetric entries is found by random pairs
    D2 = random_symmetric(n, rng, dtype=np.float64)
    D2[60:140, :] *= 1.5
    np.fill_diagonal(D2, 0)
    with pytest.raises(DissimilarityError, match="not symmetric"):
        validate_source(D2, memory_limit=2**16, n_sample_pairs=8, random_state=1)


def test_symmetry_tolerances(rng):
    D = random_symmetric(30, rng, dtype=np.float64, high=10)
    D[2, 3] = D[3, 2] * (1 + 1e-9)  # rounding-sized: accepted by default
    validate_source(D)
    D[2, 3] = D[3, 2] * (1 + 1e-4)
    with pytest.raises(DissimilarityError, match="exceeds atol"):
        validate_source(D)
    validate_source(D, rtol=1e-3)
    validate_source(D, atol=0.01, rtol=0)
    with pytest.raises(DissimilarityError):
        validate_source(D, atol=0.0, rtol=1e-6)
    Di = random_symmetric(30, rng, dtype=np.int32, integer=True)
    Di[1, 2] = Di[2, 1] + 1  # integers must match exactly by default
    with pytest.raises(DissimilarityError, match=r"D\[1, 2\]"):
        validate_source(Di)
    validate_source(Di, atol=1)


@pytest.mark.parametrize("dt", ["float16", "uint8", "int16", "complex64"])
def test_unsupported_dtype_named(dt):
    D = np.zeros((4, 4), dtype=dt)
    with pytest.raises(UnsupportedDtypeError, match=dt):
        validate_source(D)
    with pytest.raises(UnsupportedDtypeError, match=dt):
        open_dissimilarity(D, validate=True)


def test_unsupported_dtype_of_custom_source():
    src = CountingSource(np.zeros((3, 3), np.float32))
    src.dtype = np.dtype("float16")
    with pytest.raises(UnsupportedDtypeError, match="float16"):
        validate_source(src)


@pytest.mark.parametrize("shape", [(3, 4), (0, 0), (5,), (2, 2, 2)])
def test_shape_errors(shape):
    with pytest.raises(InvalidParameterError, match="square|empty"):
        validate_source(np.zeros(shape, np.float32))


def test_custom_source_returning_wrong_shape():
    class Lying(CountingSource):
        def _read_rows(self, start, stop):
            return self.D[start:stop, :-1]

    with pytest.raises(InvalidParameterError, match=r"square.*shape \(3, 2\)"):
        validate_source(Lying(np.zeros((3, 3), np.float64)))
    empty = CountingSource(np.zeros((1, 1), np.float64))
    empty.n = 0
    with pytest.raises(InvalidParameterError, match="empty"):
        validate_source(empty)


def test_argument_errors(rng):
    D = random_symmetric(5, rng)
    with pytest.raises(InvalidParameterError, match="memory_limit"):
        validate_source(D, memory_limit="lots")
    with pytest.raises(InvalidParameterError, match="n_sample_pairs"):
        validate_source(D, n_sample_pairs=-1)
    with pytest.raises(InvalidTypeError, match="n_sample_pairs"):
        validate_source(D, n_sample_pairs=1.5)
    with pytest.raises(InvalidParameterError, match="rtol"):
        validate_source(D, rtol=-1)
    with pytest.raises(InvalidParameterError, match="atol"):
        validate_source(D, atol=float("nan"))


def test_validate_on_stores_with_first_offending_position(tmp_path, rng):
    D = random_symmetric(40, rng, dtype=np.float32)
    D[25, 3] = np.nan
    z = zarr.create_array(store=str(tmp_path / "D.zarr"), shape=D.shape, chunks=(8, 40), dtype=D.dtype)
    z[:] = D
    # a stored matrix is validated while the first pass streams it (opening reads nothing)
    src = open_dissimilarity(tmp_path / "D.zarr", validate=True)
    with pytest.raises(DissimilarityError, match=r"nan at D\[25, 3\].*D\.zarr|D\.zarr.*nan at D\[25, 3\]"):
        src.read_rows(24, 32)
    from chunked_medoids import fasterpam

    with pytest.raises(DissimilarityError, match=r"nan at D\[25, 3\].*D\.zarr|D\.zarr.*nan at D\[25, 3\]"):
        fasterpam(tmp_path / "D.zarr", 3, random_state=0)


@settings(max_examples=200, deadline=None)
@given(dtype=st.sampled_from([np.float32, np.float64]), seed=st.integers(0, 2**31 - 1),
       special=st.sampled_from([None, np.nan, np.inf, -np.inf, -1e-30, -0.0, 0.0, -5.0, 3.4e38,
                                np.finfo(np.float32).tiny, 1e-45]),
       shape=st.tuples(st.integers(1, 9), st.integers(1, 70)))
def test_one_pass_value_check_agrees_with_float_comparisons(dtype, seed, special, shape):
    """The bit-pattern check (one integer max reduction) says True exactly when every entry is
    finite, >= 0 and has its sign bit clear; check_values then accepts -0.0 like >= 0."""
    from chunked_medoids._kernels.checks import all_nonneg_finite
    from chunked_medoids.sources.validate import check_values

    rng = np.random.default_rng(seed)
    block = rng.uniform(0, 100, size=shape).astype(dtype)
    if special is not None:
        block.flat[int(rng.integers(block.size))] = special
    legal = bool(np.all(np.isfinite(block)) and np.all(block >= 0))
    assert all_nonneg_finite(block) == (legal and not np.any(np.signbit(block)))
    if legal:
        check_values(block, (0, shape[0]), "D")
    else:
        with pytest.raises(cm.DissimilarityError):
            check_values(block, (0, shape[0]), "D")
