"""The read-prefetch hint of the candidate kernels (``simd.prefetch_read``, used by
``swap._prefetch_window``): it compiles to LLVM's prefetch for C-contiguous rows, to nothing
for other arrays, is clamped to the row, and changes no value (the kernels' results are
compared bitwise with their definitions in test_eval_group / test_eval_list / test_kernels)."""

from __future__ import annotations

import numpy as np
import pytest
from numba import njit

from chunked_medoids._kernels.simd import prefetch_read, prefetch_sum
from chunked_medoids._kernels.swap import MASK_BITS, PREFETCH_BYTES, _prefetch_window


@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.int16, np.int32])
@pytest.mark.parametrize("n", [0, 1, 5, 64, 1000])
@pytest.mark.parametrize("ahead", [0, 3, 10 ** 6])
def test_prefetch_sum_is_the_plain_sum(dtype, n, ahead):
    a = (np.random.default_rng(n).random(n) * 100).astype(dtype)
    want = 0.0
    for v in a:
        want += float(v)
    assert prefetch_sum(a, ahead) == want
    assert prefetch_sum(a[::2].copy(), ahead) == prefetch_sum(np.ascontiguousarray(a[::2]), ahead)


def test_strided_arrays_take_the_no_op():
    a = np.arange(20.0)
    assert prefetch_sum(a[::2], 1) == a[::2].sum()  # a non-C array: compiles, no hint


def _ir(fn, *args):
    fn(*args)
    return "\n".join(fn.inspect_llvm().values())


def _one():
    @njit
    def one(a, i):
        prefetch_read(a, i)
        return a[0]

    return one


def test_the_hint_is_emitted_for_c_rows_and_not_for_strided_ones():
    assert "llvm.prefetch" in _ir(_one(), np.zeros(8, np.float32), 3)
    assert "llvm.prefetch" not in _ir(_one(), np.zeros(8, np.float32)[::2], 3)


@pytest.mark.parametrize("dtype,lines", [(np.float32, 4), (np.float64, 8), (np.int16, 2)])
def test_one_hint_per_cache_line_of_the_window(dtype, lines):
    @njit
    def window(row, base):
        _prefetch_window(row, base)
        return row[base]

    ir = _ir(window, np.zeros(4 * MASK_BITS, dtype), 0)
    assert ir.count("call void @llvm.prefetch") == lines
    assert PREFETCH_BYTES % 64 == 0
