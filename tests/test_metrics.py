"""Tests of chunked_medoids.metrics and its numba kernels."""

from __future__ import annotations

import ast
import json
import pickle
from pathlib import Path

import numba
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from chunked_medoids import InvalidParameterError, InvalidTypeError, UnknownNameError
from chunked_medoids.metrics import METRIC_ALIASES, METRICS, BoundMetric, metric_names, resolve_metric

cdist = pytest.importorskip("scipy.spatial.distance").cdist

SCIPY_METRICS = sorted(name for name, spec in METRICS.items() if spec.scipy_name is not None)
ALL_METRICS = sorted(METRICS)


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------


def _data_for(name, rng, a, b, d):
    """Random data suited to a metric (with ties / zeros where the metric cares)."""
    if name == "jaccard":
        A = (rng.random((a, d)) < 0.4) * rng.integers(1, 4, (a, d)).astype(float)
        B = (rng.random((b, d)) < 0.4) * rng.integers(1, 4, (b, d)).astype(float)
    elif name in ("hamming",):
        A = rng.integers(0, 3, (a, d)).astype(float)
        B = rng.integers(0, 3, (b, d)).astype(float)
    elif name in ("canberra", "braycurtis"):
        A = rng.random((a, d)) * (rng.random((a, d)) < 0.8)
        B = rng.random((b, d)) * (rng.random((b, d)) < 0.8)
    else:
        A = rng.normal(size=(a, d))
        B = rng.normal(size=(b, d))
    return np.ascontiguousarray(A), np.ascontiguousarray(B)


def _bound(name, data=None, **params):
    """A ready-to-use bound metric (gower fitted on ``data``)."""
    m = resolve_metric(name, **params)
    if m.needs_fit:
        m = m.fit(lambda: iter([data]))
    return m


def gower_reference(XA, XB, categorical_mask, ranges):
    """Naive numpy Gower: mean over columns of |x-y|/range (numeric) or x != y (categorical)."""
    diff = np.abs(XA[:, None, :] - XB[None, :, :])
    safe = np.where(ranges > 0, ranges, 1.0)
    num = np.where(ranges > 0, diff / safe, 0.0)
    cat = (XA[:, None, :] != XB[None, :, :]).astype(float)
    terms = np.where(categorical_mask, cat, num)
    return terms.mean(axis=2)


# module-level njit functions for the custom-metric tests (picklable by reference)
@numba.njit
def _njit_l1(x, y):
    s = 0.0
    for i in range(x.shape[0]):
        s += abs(x[i] - y[i])
    return s


def _python_l1(x, y):
    return float(np.abs(x - y).sum())


# ---------------------------------------------------------------------------------------
# correctness against scipy / naive references
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", SCIPY_METRICS)
def test_matches_scipy_cdist(name):
    rng = np.random.default_rng(1234)
    A, B = _data_for(name, rng, 37, 29, 6)
    m = resolve_metric(name)
    got = m.pairwise_new(A, B)
    ref = cdist(A, B, METRICS[name].scipy_name)
    assert got.dtype == np.float64 and got.shape == (37, 29)
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("p", [1, 1.5, 2, 3.0, 7])
def test_minkowski_matches_scipy(p):
    rng = np.random.default_rng(7)
    A, B = rng.normal(size=(20, 5)), rng.normal(size=(15, 5))
    m = resolve_metric("minkowski", p=p)
    assert m.params == {"p": float(p)}
    np.testing.assert_allclose(m.pairwise_new(A, B), cdist(A, B, "minkowski", p=p), rtol=1e-12, atol=1e-13)


def test_minkowski_default_and_special_cases_are_exact():
    rng = np.random.default_rng(8)
    A, B = rng.normal(size=(12, 4)), rng.normal(size=(9, 4))
    assert resolve_metric("minkowski").params == {"p": 2.0}
    np.testing.assert_array_equal(resolve_metric("minkowski").pairwise_new(A, B),
                                  resolve_metric("euclidean").pairwise_new(A, B))
    np.testing.assert_array_equal(resolve_metric("minkowski", p=1).pairwise_new(A, B),
                                  resolve_metric("manhattan").pairwise_new(A, B))


def test_float32_input_is_converted():
    rng = np.random.default_rng(9)
    A = rng.normal(size=(10, 3)).astype(np.float32)
    m = resolve_metric("euclidean")
    got = m.pairwise_new(A, A[::2])  # also a non-contiguous view
    ref = cdist(A.astype(np.float64), A[::2].astype(np.float64))
    np.testing.assert_allclose(got, ref, rtol=1e-12)
    assert np.all(np.diag(m.pairwise_new(A, A)) == 0.0)


def test_cosine_correlation_zero_vector_convention():
    X = np.array([[0.0, 0.0, 0.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0], [2.0, 2.0, 2.0], [5.0, 5.0, 5.0]])
    cos = resolve_metric("cosine").pairwise_new(X, X)
    assert not np.isnan(cos).any()
    assert cos[0, 1] == 0.0 and cos[0, 0] == 0.0  # two zero vectors: 0
    assert cos[0, 2] == 1.0 and cos[2, 0] == 1.0  # zero vs non-zero: 1
    assert cos[3, 4] == 0.0  # parallel vectors
    cor = resolve_metric("correlation").pairwise_new(X, X)
    assert not np.isnan(cor).any()
    # rows 0, 1, 3, 4 are constant (centred: zero vectors) -> 0 among themselves, 1 to row 2
    for i in (0, 1, 3, 4):
        for j in (0, 1, 3, 4):
            assert cor[i, j] == 0.0
        assert cor[i, 2] == 1.0 and cor[2, i] == 1.0
    assert cor[2, 2] == 0.0


def test_cosine_range_is_clamped():
    X = np.array([[1.0, 0.0], [-1.0, 0.0], [1e-300, 1e-300], [1e300, 1e300]])
    D = resolve_metric("cosine").pairwise_new(X, X)
    assert np.all((D >= 0.0) & (D <= 2.0))
    assert D[0, 1] == 2.0
    assert D[2, 3] == 0.0  # parallel, at extreme magnitudes (no under/overflow)


@pytest.mark.parametrize("name", ["cosine", "correlation", "braycurtis"])
def test_extreme_magnitudes_no_nan(name):
    rng = np.random.default_rng(5)
    base = np.abs(rng.normal(size=(6, 4))) if name == "braycurtis" else rng.normal(size=(6, 4))
    scales = np.array([1e-300, 1e-160, 1.0, 1e160, 1e300, 1e307])[:, None]
    X = base * scales
    D = resolve_metric(name).pairwise_new(X, X)
    assert np.isfinite(D).all()
    assert np.all(np.diag(D) == 0.0)
    if name != "braycurtis":  # scale invariant per row: equals the distances of the unscaled rows
        np.testing.assert_allclose(D, cdist(base, base, name), rtol=1e-9, atol=1e-12)
    big = np.array([[1e308, 1e308], [-1e308, 1e308]])
    Db = resolve_metric(name).pairwise_new(big, big)
    assert not np.isnan(Db).any()


def test_zero_denominator_conventions_never_nan():
    Z = np.zeros((2, 4))
    X = np.array([[0.0, 1.0, 0.0, 2.0]])
    for name in ("canberra", "braycurtis", "jaccard", "hamming"):
        m = resolve_metric(name)
        assert m.pairwise_new(Z, Z).tolist() == [[0.0, 0.0], [0.0, 0.0]], name
        assert np.isfinite(m.pairwise_new(Z, X)).all(), name
    # canberra: 0/0 terms count 0, like scipy
    np.testing.assert_allclose(resolve_metric("canberra").pairwise_new(Z, X), cdist(Z, X, "canberra"))
    np.testing.assert_allclose(resolve_metric("braycurtis").pairwise_new(Z, X), cdist(Z, X, "braycurtis"))
    # jaccard: two all-False rows are at distance 0 (as scipy)
    np.testing.assert_array_equal(resolve_metric("jaccard").pairwise_new(Z, Z), cdist(Z, Z, "jaccard"))


def test_jaccard_treats_nonzero_as_true():
    A = np.array([[0.0, 2.0, -1.0, 0.5]])
    B = np.array([[0.0, 1.0, 0.0, 3.0]])
    # booleans: A = 0111, B = 0101 -> 1 differing of 3 set
    assert resolve_metric("jaccard").pairwise_new(A, B)[0, 0] == pytest.approx(1.0 / 3.0, abs=0)


# ---------------------------------------------------------------------------------------
# gower
# ---------------------------------------------------------------------------------------


def _mixed_data(rng, n=60):
    num = rng.normal(size=(n, 3)) * np.array([1.0, 10.0, 0.1])
    const = np.full((n, 1), 4.0)  # zero-range numeric column
    cat = rng.integers(0, 4, (n, 2)).astype(float)
    return np.ascontiguousarray(np.hstack([num[:, :2], cat[:, :1], const, num[:, 2:], cat[:, 1:]]))


def test_gower_matches_naive_reference_with_categorical():
    rng = np.random.default_rng(11)
    X = _mixed_data(rng)
    mask = np.array([False, False, True, False, False, True])
    m = resolve_metric("gower", categorical=[2, 5])
    assert m.needs_fit
    fitted = m.fit(lambda: iter([X]))
    assert not fitted.needs_fit
    ranges = X.max(axis=0) - X.min(axis=0)
    ranges[mask] = 0.0
    assert fitted.params["ranges"] == pytest.approx(ranges.tolist(), abs=0)
    assert fitted.params["ranges"][3] == 0.0  # constant column
    got = fitted.pairwise_new(X[:25], X[10:])
    ref = gower_reference(X[:25], X[10:], mask, X.max(axis=0) - X.min(axis=0))
    np.testing.assert_allclose(got, ref, rtol=1e-12, atol=1e-15)
    # the boolean-mask form is the same metric
    m2 = resolve_metric("gower", categorical=mask).fit(lambda: iter([X]))
    assert m2.describe() == fitted.describe()
    np.testing.assert_array_equal(m2.pairwise_new(X[:25], X[10:]), got)


def test_gower_all_numeric_matches_scaled_manhattan():
    rng = np.random.default_rng(12)
    X = rng.normal(size=(30, 4))
    m = resolve_metric("gower").fit(X)  # an array is accepted as a single block
    r = X.max(0) - X.min(0)
    ref = cdist(X / r, X / r, "cityblock") / X.shape[1]
    np.testing.assert_allclose(m.pairwise_new(X, X), ref, rtol=1e-12, atol=1e-14)


def test_gower_fit_via_blocks_equals_fit_on_whole():
    rng = np.random.default_rng(13)
    X = _mixed_data(rng, 101)
    whole = resolve_metric("gower", categorical=[2, 5]).fit(lambda: iter([X]))
    calls = []

    def blocks():
        calls.append(1)
        return (X[s : s + 17] for s in range(0, X.shape[0], 17))

    streamed = resolve_metric("gower", categorical=[2, 5]).fit(blocks)
    assert len(calls) == 1
    assert streamed.params == whole.params
    np.testing.assert_array_equal(streamed.pairwise_new(X, X), whole.pairwise_new(X, X))


def test_gower_explicit_ranges_need_no_fit():
    X = np.array([[0.0, 1.0], [2.0, 3.0], [4.0, 1.0]])
    m = resolve_metric("gower", categorical=[1], ranges=[4.0, 123.0])
    assert not m.needs_fit
    assert m.params["ranges"] == [4.0, 0.0]  # categorical entries are canonicalised to 0
    assert m.fit(lambda: pytest.fail("must not read data")) is m
    D = m.pairwise_new(X, X)
    np.testing.assert_allclose(D, gower_reference(X, X, np.array([False, True]), np.array([4.0, 0.0])))
    assert D[0, 1] == pytest.approx((0.5 + 1.0) / 2)


def test_gower_errors():
    X = np.zeros((3, 2))
    with pytest.raises(InvalidParameterError, match="fit"):
        resolve_metric("gower").pairwise_new(X, X)
    with pytest.raises(InvalidParameterError, match="ranges"):
        resolve_metric("gower", ranges=[1.0, -1.0])
    with pytest.raises(InvalidParameterError, match="ranges"):
        resolve_metric("gower", ranges=[1.0, np.nan])
    with pytest.raises(InvalidParameterError, match="categorical"):
        resolve_metric("gower", categorical=[0, 5], ranges=[1.0, 1.0])
    with pytest.raises(InvalidParameterError, match="categorical"):
        resolve_metric("gower", categorical=[-1])
    with pytest.raises(InvalidParameterError, match="categorical"):
        resolve_metric("gower", categorical=[1, 1])
    with pytest.raises(InvalidTypeError, match="categorical"):
        resolve_metric("gower", categorical=[0.5])
    with pytest.raises(InvalidParameterError, match="d=3"):
        resolve_metric("gower", ranges=[1.0, 1.0]).pairwise_new(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(InvalidParameterError, match="NaN"):
        resolve_metric("gower").fit(lambda: iter([np.array([[1.0, np.nan]])]))
    with pytest.raises(InvalidParameterError, match="no rows"):
        resolve_metric("gower").fit(lambda: iter([]))
    with pytest.raises(InvalidParameterError, match="columns"):
        resolve_metric("gower", categorical=[True, False, False]).fit(lambda: iter([X]))
    with pytest.raises(InvalidTypeError, match="iter_blocks"):
        resolve_metric("gower").fit(42)


# ---------------------------------------------------------------------------------------
# exactness properties: bitwise symmetry, zero self-distance, chunk independence
# ---------------------------------------------------------------------------------------

_VALUES = st.one_of(
    st.sampled_from([0.0, 1.0, -1.0, 0.5, 2.0, 3.0, 1e-3, -7.25]),
    st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64),
)


@st.composite
def _row_sets(draw):
    d = draw(st.integers(1, 6))
    a = draw(st.integers(1, 7))
    b = draw(st.integers(1, 7))
    A = draw(hnp.arrays(np.float64, (a, d), elements=_VALUES))
    B = draw(hnp.arrays(np.float64, (b, d), elements=_VALUES))
    # include exact copies of some rows of A in B (identical points across blocks)
    k = draw(st.integers(0, min(a, b)))
    B[:k] = A[:k]
    return A, B


#: every metric with default parameters, plus non-default parameter settings
PROPERTY_CASES = [(name, {}) for name in ALL_METRICS] + [
    ("minkowski", {"p": 1.5}),
    ("minkowski", {"p": 3}),
    ("gower", {"categorical": [0]}),
]


@pytest.mark.parametrize("name, params", PROPERTY_CASES, ids=lambda v: str(v))
@settings(deadline=None, max_examples=40)
@given(data=_row_sets())
def test_bitwise_symmetry_and_zero_self_distance(name, params, data):
    A, B = data
    m = _bound(name, np.vstack([A, B]), **params)
    D_ab = m.pairwise_new(A, B)
    D_ba = m.pairwise_new(B, A)
    assert not np.isnan(D_ab).any()
    np.testing.assert_array_equal(D_ab, D_ba.T)  # exact, not approximate
    D_aa = m.pairwise_new(A, A)
    assert np.all(np.diag(D_aa) == 0.0)
    np.testing.assert_array_equal(D_aa, D_aa.T)
    k = np.flatnonzero((A[: len(B)] == B[: len(A)]).all(axis=1))
    assert np.all(D_ab[k, k] == 0.0)  # identical rows in different blocks
    assert np.all(D_ab >= 0.0)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_self_distance_zero_on_random_data(name):
    rng = np.random.default_rng(21)
    X = rng.normal(size=(200, 9)) * rng.uniform(1e-3, 1e3, size=9)
    m = _bound(name, X)
    D = m.pairwise_new(X, X)
    assert np.all(np.diag(D) == 0.0)
    np.testing.assert_array_equal(D, D.T)


@pytest.mark.parametrize("name", ALL_METRICS)
def test_chunk_independence(name):
    rng = np.random.default_rng(31)
    A, B = _data_for(name, rng, 23, 41, 5)
    m = _bound(name, np.vstack([A, B]))
    full = m.pairwise_new(A, B)
    # split XB (columns) and XA (rows) irregularly, filling views of one preallocated array
    out = np.full_like(full, -1.0)
    for cs, ce in [(0, 1), (1, 13), (13, 14), (14, 41)]:
        for rs, re in [(0, 5), (5, 6), (6, 23)]:
            block = np.empty((re - rs, ce - cs))
            m.pairwise(A[rs:re], B[cs:ce], block)
            out[rs:re, cs:ce] = block
    np.testing.assert_array_equal(out, full)
    # row by row as well
    rows = np.vstack([m.pairwise_new(A[i : i + 1], B) for i in range(A.shape[0])])
    np.testing.assert_array_equal(rows, full)


# ---------------------------------------------------------------------------------------
# custom metrics and resolution errors
# ---------------------------------------------------------------------------------------


def test_custom_njit_callable():
    rng = np.random.default_rng(41)
    A, B = rng.normal(size=(8, 3)), rng.normal(size=(6, 3))
    m = resolve_metric(_njit_l1)
    assert isinstance(m, BoundMetric)
    assert m.name.startswith("custom:") and m.name.endswith("_njit_l1")
    assert not m.needs_fit and list(m.params) == ["code_hash"]
    np.testing.assert_allclose(m.pairwise_new(A, B), cdist(A, B, "cityblock"), rtol=1e-12)
    assert json.loads(json.dumps(m.describe())) == {"metric": m.name, "params": m.params}

    @numba.njit
    def other(x, y):
        return 2.0 * abs(x[0] - y[0])

    # a different function has a different description (name and code hash)
    other.py_func.__qualname__ = _njit_l1.py_func.__qualname__
    assert resolve_metric(other).name == m.name
    assert resolve_metric(other).describe() != m.describe()
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.pairwise_new(A, B), m.pairwise_new(A, B))
    with pytest.raises(InvalidParameterError):
        resolve_metric(_njit_l1, p=2)


def test_plain_python_callable_is_refused():
    with pytest.raises(InvalidTypeError, match="numba.njit"):
        resolve_metric(_python_l1)
    with pytest.raises(InvalidTypeError, match="_python_l1"):
        resolve_metric(_python_l1)


def test_unknown_name_lists_valid_names():
    with pytest.raises(UnknownNameError) as exc:
        resolve_metric("euclidian")
    msg = str(exc.value)
    assert "euclidian" in msg
    for name in METRICS:
        assert name in msg
    assert isinstance(exc.value, ValueError)
    with pytest.raises(InvalidTypeError):
        resolve_metric(3)


@pytest.mark.parametrize(
    "metric, params, match",
    [
        ("minkowski", {"p": 0.5}, "p"),
        ("minkowski", {"p": float("nan")}, "p"),
        ("minkowski", {"p": float("inf")}, "chebyshev"),
        ("euclidean", {"p": 2}, "p"),
        ("cosine", {"ranges": [1.0]}, "ranges"),
        ("gower", {"q": 1}, "q"),
    ],
)
def test_invalid_params(metric, params, match):
    with pytest.raises(InvalidParameterError, match=match):
        resolve_metric(metric, **params)


def test_invalid_param_types():
    with pytest.raises(InvalidTypeError, match="p"):
        resolve_metric("minkowski", p="3")
    with pytest.raises(InvalidTypeError, match="p"):
        resolve_metric("minkowski", p=True)


def test_aliases_and_names():
    assert resolve_metric("cityblock").name == "manhattan"
    assert resolve_metric("l1").name == "manhattan"
    assert resolve_metric("l2").name == "euclidean"
    assert resolve_metric("Euclidean").name == "euclidean"
    assert set(METRIC_ALIASES) & set(METRICS) == set()
    assert set(metric_names()) == set(METRICS) | set(METRIC_ALIASES)
    assert set(metric_names(aliases=False)) == set(METRICS)
    bm = resolve_metric("euclidean")
    assert resolve_metric(bm) is bm
    with pytest.raises(InvalidParameterError):
        resolve_metric(bm, p=2)


def test_registry_entries_are_complete():
    expected = {"euclidean", "sqeuclidean", "manhattan", "chebyshev", "minkowski", "cosine", "correlation",
                "canberra", "braycurtis", "hamming", "jaccard", "gower"}
    assert set(METRICS) == expected
    for name, spec in METRICS.items():
        assert spec.name == name
        assert spec.description
        assert callable(spec.kernel)
        assert spec.needs_fit == resolve_metric(name).needs_fit


def test_out_validation():
    m = resolve_metric("euclidean")
    A = np.zeros((3, 2))
    with pytest.raises(InvalidParameterError, match="out"):
        m.pairwise(A, A, np.empty((3, 3), dtype=np.float32))
    with pytest.raises(InvalidParameterError, match="out"):
        m.pairwise(A, A, np.empty((3, 2)))
    with pytest.raises(InvalidParameterError, match="out"):
        m.pairwise(A, A, np.empty((3, 6))[:, ::2])
    with pytest.raises(InvalidParameterError, match="columns"):
        m.pairwise_new(A, np.zeros((3, 3)))
    with pytest.raises(InvalidParameterError, match="2-D"):
        m.pairwise_new(np.zeros(3), A)
    with pytest.raises(InvalidTypeError):
        m.pairwise_new(np.array([["a", "b"]]), A)
    out = np.empty((0, 3))
    assert m.pairwise(np.zeros((0, 2)), A, out) is out
    bad = np.array([[0.0, np.nan]])
    with pytest.raises(InvalidParameterError, match="XB.*NaN"):
        m.pairwise_new(A, bad, check_finite=True)
    with pytest.raises(InvalidParameterError, match="XA.*NaN"):
        m.pairwise(bad, A, np.empty((1, 3)), check_finite=True)


# ---------------------------------------------------------------------------------------
# metadata and pickling
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_METRICS)
def test_describe_json_and_pickle(name):
    rng = np.random.default_rng(51)
    X = rng.normal(size=(12, 4))
    m = _bound(name, X)
    desc = m.describe()
    assert desc["metric"] == name
    assert json.loads(json.dumps(desc, allow_nan=False)) == desc
    m2 = pickle.loads(pickle.dumps(m))
    assert m2 == m and m2.describe() == desc and m2.needs_fit == m.needs_fit
    np.testing.assert_array_equal(m2.pairwise_new(X, X), m.pairwise_new(X, X))


@pytest.mark.parametrize("name, params", PROPERTY_CASES, ids=lambda v: str(v))
def test_describe_round_trips_through_resolve_metric(name, params):
    X = np.random.default_rng(52).normal(size=(10, 3))
    m = _bound(name, X, **params)
    desc = json.loads(json.dumps(m.describe()))
    m2 = resolve_metric(desc["metric"], **desc["params"])
    assert m2 == m and not m2.needs_fit
    np.testing.assert_array_equal(m2.pairwise_new(X, X), m.pairwise_new(X, X))


def test_custom_function_with_wrong_signature_gives_clear_error():
    @numba.njit
    def three_args(x, y, z):
        return 0.0

    m = resolve_metric(three_args)
    with pytest.raises(InvalidTypeError, match="f\\(x, y\\)"):
        m.pairwise_new(np.zeros((2, 2)), np.zeros((2, 2)))


def test_unfitted_gower_pickles_and_describes():
    m = resolve_metric("gower", categorical=[0])
    m2 = pickle.loads(pickle.dumps(m))
    assert m2.needs_fit and m2.describe() == m.describe()
    assert json.loads(json.dumps(m.describe())) == m.describe()


def test_minkowski_describe_records_p():
    assert resolve_metric("minkowski", p=3).describe() == {"metric": "minkowski", "params": {"p": 3.0}}
    assert resolve_metric("minkowski", p=3) != resolve_metric("minkowski", p=4)


# ---------------------------------------------------------------------------------------
# layer rule
# ---------------------------------------------------------------------------------------


def test_kernel_module_imports_only_numpy_numba_math():
    import chunked_medoids._kernels.metrics as km

    tree = ast.parse(Path(km.__file__).read_text())
    roots = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, "kernels must not import from the package"
            roots.add(node.module.split(".")[0])
    assert roots <= {"math", "numpy", "numba", "__future__"}, roots
