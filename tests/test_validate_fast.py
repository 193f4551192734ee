"""The one-pass kernels of ``check_array`` agree with its numpy definition.

``check_array`` decides "valid or not" with ``_array_is_valid`` (tile-pair kernels of
``_kernels/checks.py``) and only runs ``_check_array_numpy`` (which names the first offender)
when the kernels reject.  These tests compare the two decisions on random matrices with
injected defects, for every dtype, small tiles (n not a multiple of the tile) and one or two
threads, and check that the messages are the numpy definition's.
"""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from chunked_medoids import DissimilarityError
from chunked_medoids.sources.validate import _array_is_valid, _check_array_numpy, check_array

DTYPES = [np.float32, np.float64, np.int32, np.int64]
DEFECTS = ["none", "asym_exact", "asym_within", "asym_beyond", "asym_boundary", "asym_scale",
           "nan", "inf", "-inf", "neg0", "neg0_diag", "negative", "tiny_negative", "diag",
           "all_zero_neg0", "int_beyond_2p53", "many_within"]


def _old_ok(A, rtol, atol) -> bool:
    try:
        _check_array_numpy(A, "D", rtol=rtol, atol=atol)
    except DissimilarityError:
        return False
    return True


def _matrix(rng, n, dtype, defect, high):
    is_float = np.issubdtype(dtype, np.floating)
    if is_float:
        a = rng.random((n, n)) * high
    else:
        a = rng.integers(1, max(2, int(high)), size=(n, n))
    d = np.triu(a, 1)
    A = (d + d.T).astype(dtype)
    if n < 2 and defect.startswith(("asym", "many", "int_")):
        return A
    i, j = (int(x) for x in rng.choice(n, 2, replace=False)) if n >= 2 else (0, 0)
    hi = float(A.max()) if A.size else 0.0
    step = 1 if not is_float else 0
    if defect == "asym_exact":
        A[i, j] = A[i, j] + (1 if not is_float else A.dtype.type(1e-3) * max(hi, 1.0))
    elif defect in ("asym_within", "asym_beyond", "asym_boundary", "asym_scale") and is_float:
        ft = A.dtype.type
        rtol = 1e-6
        a = A[i, j]
        if defect == "asym_scale":  # relative to the entry: rtol * |a| scaled around 1
            b = ft(float(a) * (1 + rtol * rng.choice([0.25, 0.5, 0.99, 1.0, 1.01, 2.0, 4.0])))
        else:
            tol = ft(ft(rtol * hi) + ft(rtol) * a)
            f = {"asym_within": 0.5, "asym_beyond": 3.0, "asym_boundary": 1.0}[defect]
            b = ft(a + ft(f) * tol)
        for _ in range(int(rng.integers(-3, 4)) if defect in ("asym_boundary", "asym_scale") else 0):
            b = np.nextafter(b, ft(np.inf))
        A[j, i] = b
    elif defect in ("asym_within", "asym_beyond", "asym_boundary", "asym_scale"):
        A[j, i] = A[i, j] + rng.integers(-2, 3) * step
    elif defect == "many_within" and is_float:
        # widespread rounding-level asymmetry (upper triangle nudged by one ulp)
        up = np.triu(np.ones((n, n), dtype=bool), 1) & (rng.random((n, n)) < 0.3)
        A[up] = np.nextafter(A[up], A.dtype.type(np.inf))
    elif defect == "int_beyond_2p53" and not is_float and A.dtype == np.int64:
        A[i, j] = 2 ** 53
        A[j, i] = 2 ** 53 + 1  # equal in float64: the numpy definition accepts it
    elif defect in ("nan", "inf", "-inf") and is_float:
        A[i, j] = {"nan": np.nan, "inf": np.inf, "-inf": -np.inf}[defect]
    elif defect == "neg0" and is_float:
        A[i, j] = -0.0
        A[j, i] = 0.0 if rng.random() < 0.5 else -0.0
    elif defect == "neg0_diag" and is_float:
        A[i, i] = -0.0
    elif defect == "negative":
        A[i, j] = -5
        A[j, i] = -5
    elif defect == "tiny_negative" and is_float:
        A[i, j] = -np.finfo(A.dtype).tiny
    elif defect == "diag":
        A[i, i] = 1
    elif defect == "all_zero_neg0":
        A[...] = 0
        if is_float:
            A[rng.random((n, n)) < 0.3] = -0.0
    return A


@settings(max_examples=400, deadline=None)
@given(dtype=st.sampled_from(DTYPES), defect=st.sampled_from(DEFECTS), seed=st.integers(0, 2**31 - 1),
       n=st.integers(1, 45), tile=st.sampled_from([3, 4, 8, 16, 512]), threads=st.sampled_from([1, 2]),
       tolerances=st.sampled_from([(None, None), (None, 0.0), (1e-3, None), (0.0, 0.0), (1e-6, 1e-3), (0.0, 2.0)]),
       order=st.sampled_from(["C", "F"]), high=st.sampled_from([1.0, 100.0, 3e5]))
def test_kernels_agree_with_the_numpy_definition(dtype, defect, seed, n, tile, threads, tolerances, order, high):
    rng = np.random.default_rng(seed)
    A = _matrix(rng, n, dtype, defect, high)
    if order == "F":
        A = np.asfortranarray(A)
    rtol, atol = tolerances
    expected = _old_ok(A, rtol, atol)
    assert _array_is_valid(A, rtol, atol, tile=tile, threads=threads) is expected
    if expected:
        check_array(A, "D", rtol=rtol, atol=atol)
    else:
        with pytest.raises(DissimilarityError) as fast:
            check_array(A, "D", rtol=rtol, atol=atol)
        with pytest.raises(DissimilarityError) as old:
            _check_array_numpy(A, "D", rtol=rtol, atol=atol)
        assert str(fast.value) == str(old.value)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("defect", DEFECTS)
def test_every_defect_on_a_multi_tile_matrix(dtype, defect):
    """Each defect once at n = 37 with 8-tiles on 2 threads (both kernels' parts), and the
    clean matrix: the decision is the numpy definition's (the hypothesis test above draws
    the combinations; this one makes sure each is seen)."""
    for seed in range(6):
        rng = np.random.default_rng(seed)
        A = _matrix(rng, 37, dtype, defect, 100.0)
        assert _array_is_valid(A, tile=8, threads=2) is _old_ok(A, None, None), (defect, seed)


def test_defaults_take_the_fast_path_on_large_matrices(rng):
    """n past the threading threshold: 2 threads, the default tile (n not a multiple)."""
    from chunked_medoids.sources import validate

    n = validate._FAST_THREADS_MIN_N + 37
    d = np.triu(rng.random((n, n), dtype=np.float32), 1)
    A = d + d.T
    assert _array_is_valid(A) is True
    A[n - 1, 3] = np.float32(1.0) + A[n - 1, 3]
    assert _array_is_valid(A) is False
    with pytest.raises(DissimilarityError, match=rf"D\[3, {n - 1}\]"):
        check_array(A, "D")


def test_unsupported_layouts_fall_back_to_numpy(rng):
    """Non-contiguous views and byte-swapped arrays are not for the kernels (None): the numpy
    definition decides."""
    d = np.triu(rng.random((30, 30)), 1)
    A = d + d.T
    assert _array_is_valid(A[::2, ::2]) is None
    check_array(A[::2, ::2], "D")
    B = A.astype(">f8")
    assert _array_is_valid(B) is None
    check_array(B, "D")
    B[1, 2] = -1.0
    with pytest.raises(DissimilarityError, match="negative"):
        check_array(B, "D")


def test_second_pass_when_the_tolerance_is_only_known_at_the_end():
    """The first tiles hold small values, a later one the largest: an asymmetry in the first
    tile that is within rtol * max but beyond rtol * (max so far) is accepted (second pass),
    and one beyond rtol * max is refused."""
    n = 40
    A = np.zeros((n, n), dtype=np.float64)
    A[np.triu_indices(n, 1)] = 1.0
    A = A + A.T
    A[30, 35] = A[35, 30] = 1e6  # the largest entry, in a later tile pair
    A[0, 1] = 1.0 + 0.5  # |diff| 0.5 <= 1e-6 * 1e6 = 1
    assert _array_is_valid(A, tile=8, threads=1) is True and _old_ok(A, None, None)
    A[0, 1] = 1.0 + 1.5  # beyond
    assert _array_is_valid(A, tile=8, threads=1) is False and not _old_ok(A, None, None)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("threads", [1, 2])
def test_difference_exactly_at_the_tolerance_is_accepted(dtype, threads):
    """``|a - b| > atol + rtol * max(|a|, |b|)`` is strict: a difference equal to the
    tolerance passes (1 vs 2 with atol 0.5, rtol 0.25), one ulp more fails."""
    n = 21
    A = np.zeros((n, n), dtype=dtype)
    A[np.triu_indices(n, 1)] = 1.0
    A = A + A.T
    A[17, 3] = 2.0
    assert _array_is_valid(A, 0.25, 0.5, tile=4, threads=threads) is True and _old_ok(A, 0.25, 0.5)
    A[17, 3] = np.nextafter(dtype(2.0), dtype(3.0))
    assert _array_is_valid(A, 0.25, 0.5, tile=4, threads=threads) is False and not _old_ok(A, 0.25, 0.5)
