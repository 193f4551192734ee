"""Safe by default (issue 12): broken matrices are refused on the default path of every public
function and CLI command, for every source kind, with the position named; validate=False
skips the checks; integer matrices; float ties refused like R's pam; the estimators under
scikit-learn's checks."""

import warnings
from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import chunked_medoids as cm
from chunked_medoids import DissimilarityError, cli
from chunked_medoids.algorithms import METHODS, _load_all
from chunked_medoids.sources import DissimilaritySource
from chunked_medoids.sources.validate import StreamValidator, sampled_columns

from .conftest import random_symmetric

_load_all()

KINDS = ("numpy", "memmap", "npy", "dask", "zarr", "hdf5")
#: defect name -> (function putting it at (i, j) in place, positions the message must name)
I, J = 29, 7
N = 48


def _nan(D):
    D[I, J] = np.nan


def _inf(D):
    D[I, J] = np.inf


def _neg(D):
    D[I, J] = D[J, I] = -1.5


def _asym(D):
    D[I, J] += 3.0


def _diag(D):
    D[I, I] = 0.5


DEFECTS = {
    "nan": (_nan, [f"D[{I}, {J}]", "nan"]),
    "inf": (_inf, [f"D[{I}, {J}]", "inf"]),
    "negative": (_neg, [f"D[{J}, {I}]", "negative"]),
    "asymmetric": (_asym, [f"D[{I}, {J}]", f"D[{J}, {I}]", "not symmetric"]),
    "diagonal": (_diag, [f"D[{I}, {I}] = 0.5", "diagonal"]),
}


def as_kind(kind, D, path, chunk_rows=8):
    """``D`` as the object a user would pass, for each source kind (foreign stores: no
    'validated' metadata)."""
    n = D.shape[0]
    if kind == "numpy":
        return D
    if kind in ("memmap", "npy"):
        np.save(path / "D.npy", D)
        return np.load(path / "D.npy", mmap_mode="r") if kind == "memmap" else str(path / "D.npy")
    if kind == "dask":
        import dask.array as da

        return da.from_array(D, chunks=(chunk_rows, n))
    if kind == "zarr":
        import zarr

        z = zarr.create_array(store=str(path / "D.zarr"), shape=D.shape, chunks=(chunk_rows, n), dtype=D.dtype)
        z[:] = D
        return str(path / "D.zarr")
    if kind == "hdf5":
        import h5py

        with h5py.File(path / "D.h5", "w") as f:
            f.create_dataset("dissimilarity", data=D, chunks=(chunk_rows, n))
        return str(path / "D.h5")
    raise AssertionError(kind)


def _params(func):
    import inspect

    return inspect.signature(func).parameters


def _method_calls():
    """Every public clustering entry point, as (name, call(D))."""
    calls = []
    for name, spec in sorted(METHODS.items()):
        extra = {"precomputed": True} if "precomputed" in _params(spec.func) else {}
        calls.append((f"METHODS[{name!r}]", lambda D, f=spec.func, e=extra: f(D, 3, random_state=0, **e)))
    calls += [
        ("build", lambda D: cm.build(D, 3)),
        ("lab", lambda D: cm.lab(D, 3, random_state=0)),
        ("silhouette", lambda D: cm.silhouette(D, np.arange(N) % 3)),
        ("medoid_silhouette", lambda D: cm.medoid_silhouette(D, [0, 20, 40])),
        ("dynmsc", lambda D: cm.dynmsc(D, 4)),
        ("KMedoids", lambda D: cm.KMedoids(3, metric="precomputed", random_state=0).fit(D)),
        ("CLARA", lambda D: cm.CLARA(3, metric="precomputed", random_state=0).fit(D)),
        ("open_dissimilarity+read", lambda D: cm.open_dissimilarity(D).read_rows(0, N)),
    ]
    return calls


CALLS = _method_calls()


def test_every_registered_method_is_covered():
    names = {name for name, _ in CALLS}
    assert {f"METHODS[{m!r}]" for m in METHODS} <= names and len(METHODS) >= 10


@pytest.fixture(scope="module")
def clean():
    return random_symmetric(N, np.random.default_rng(5), dtype=np.float64)


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("defect", list(DEFECTS))
def test_every_entry_point_refuses_every_defect(tmp_path, clean, kind, defect):
    put, needles = DEFECTS[defect]
    D = clean.copy()
    put(D)
    obj = as_kind(kind, D, tmp_path)
    for name, call in CALLS:
        with pytest.raises(DissimilarityError) as ei:
            call(obj)
        msg = str(ei.value)
        for needle in needles:
            assert needle in msg, f"{name} on {kind}/{defect}: {needle!r} not in {msg!r}"


@pytest.mark.parametrize("kind", KINDS)
def test_clean_matrix_passes_every_entry_point(tmp_path, clean, kind):
    obj = as_kind(kind, clean, tmp_path)
    ref = cm.fasterpam(cm.open_dissimilarity(clean, validate=False), 3, random_state=0)
    for _name, call in CALLS:
        call(obj)  # no error
    res = cm.fasterpam(obj, 3, random_state=0)
    np.testing.assert_array_equal(res.medoids, ref.medoids)  # validation changes no result
    assert res.loss == ref.loss


@pytest.mark.parametrize("defect", list(DEFECTS))
def test_validate_false_skips_the_checks(tmp_path, clean, defect):
    """validate=False: the broken matrix is not refused by validation (the choice sticks to
    the source through the inner calls of a run)."""
    put, _ = DEFECTS[defect]
    D = clean.copy()
    put(D)
    for kind in ("numpy", "zarr"):
        (tmp_path / kind).mkdir()
        obj = as_kind(kind, D, tmp_path / kind)
        src = cm.open_dissimilarity(obj, validate=False)
        for name, call in CALLS:
            if name.startswith(("KMedoids", "CLARA", "METHODS['clara", "METHODS['fastclara",
                                "METHODS['fasterclara")):
                continue  # they open the input themselves (with validation); covered below
            try:
                call(src)
            except DissimilarityError as exc:
                pytest.fail(f"{name} validated a source opened with validate=False: {exc}")
            except (ValueError, ArithmeticError, IndexError):
                pass  # the algorithm itself may still fail on garbage input (not validation)


@pytest.mark.parametrize("defect", ["diagonal", "asymmetric", "negative"])
@pytest.mark.parametrize("kind", ["numpy", "zarr"])
def test_validate_keyword_of_every_entry_point(tmp_path, clean, defect, kind):
    """Every registered method's (and the other public functions') ``validate`` keyword:
    True (the default) refuses the matrix, False skips the checks and runs."""
    put, needles = DEFECTS[defect]
    D = clean.copy()
    put(D)
    obj = as_kind(kind, D, tmp_path)
    calls = []
    for name, spec in sorted(METHODS.items()):
        extra = {"precomputed": True} if "precomputed" in _params(spec.func) else {}
        calls.append((name, lambda v, f=spec.func, e=extra: f(obj, 3, random_state=0, validate=v, **e)))
    calls += [("build", lambda v: cm.build(obj, 3, validate=v)),
              ("lab", lambda v: cm.lab(obj, 3, random_state=0, validate=v)),
              ("silhouette", lambda v: cm.silhouette(obj, np.arange(N) % 3, validate=v)),
              ("dynmsc", lambda v: cm.dynmsc(obj, 4, validate=v))]
    for name, call in calls:
        with pytest.raises(DissimilarityError) as ei:
            call(True)
        assert all(needle in str(ei.value) for needle in needles), (name, str(ei.value))
        res = call(False)  # no validation: the algorithm runs on the matrix as it is
        assert res is not None, name


def test_validate_flag_type():
    with pytest.raises(cm.InvalidTypeError, match="validate must be True or False"):
        cm.open_dissimilarity(np.zeros((3, 3)), validate="yes")


@pytest.mark.parametrize("dtype", ["int32", "int64"])
def test_integer_matrices(tmp_path, dtype):
    rng = np.random.default_rng(2)
    D = random_symmetric(48, rng, dtype=dtype, integer=True)
    for kind in ("numpy", "zarr"):
        sub = tmp_path / kind
        sub.mkdir()
        cm.fasterpam(as_kind(kind, D, sub), 3, random_state=0)
        bad = D.copy()
        bad[I, J] += 1  # integers: exact symmetry, a difference of 1 is refused
        sub2 = tmp_path / (kind + "bad")
        sub2.mkdir()
        with pytest.raises(DissimilarityError, match=rf"not symmetric.*D\[{J}, {I}\]|not symmetric.*D\[{I}, {J}\]"):
            cm.fasterpam(as_kind(kind, bad, sub2), 3, random_state=0)
        neg = D.copy()
        neg[I, J] = neg[J, I] = -3
        sub3 = tmp_path / (kind + "neg")
        sub3.mkdir()
        with pytest.raises(DissimilarityError, match=rf"negative value -3 at D\[{J}, {I}\]"):
            cm.pam(as_kind(kind, neg, sub3), 3)


def test_features_sources_need_no_matrix_validation():
    X = np.random.default_rng(1).normal(size=(80, 3))
    src = cm.from_features(X, "euclidean")
    assert cm.open_dissimilarity(src) is src  # valid by construction: nothing attached
    cm.fasterpam(src, 3, random_state=0)
    Xbad = X.copy()
    Xbad[11, 2] = np.nan
    with pytest.raises(cm.ChunkedMedoidsError, match="NaN|nan"):
        cm.fasterpam(cm.from_features(Xbad, "euclidean"), 3, random_state=0)


def test_built_stores_are_marked_validated_and_not_rechecked(tmp_path):
    X = np.random.default_rng(1).normal(size=(90, 3))
    src = cm.build_dissimilarity(X, tmp_path / "B.zarr", block_rows=16)
    assert src.meta["validated"] is True
    opened = cm.open_dissimilarity(tmp_path / "B.zarr")
    assert "_validator" not in opened.__dict__  # no re-check of a store we built
    src = cm.build_dissimilarity(X, tmp_path / "B.h5", block_rows=16)
    assert cm.open_dissimilarity(tmp_path / "B.h5").meta["validated"] is True
    # a foreign store gets the in-pass validator
    foreign = as_kind("zarr", cm.from_features(X).read_rows(0, 90), tmp_path)
    assert isinstance(cm.open_dissimilarity(foreign).__dict__["_validator"], StreamValidator)


class CountingSource(DissimilaritySource):
    """An in-memory matrix presented as a streamed source; counts the rows read."""

    kind = "counting"

    def __init__(self, D, block_rows=16):
        self.D, self.n, self.dtype, self.block_rows = D, D.shape[0], D.dtype, block_rows
        self.rows_read = 0

    def _read_rows(self, start, stop):
        self.rows_read += stop - start
        return self.D[start:stop]

    def _fingerprint_parts(self):
        return ["counting", self.n]


@pytest.mark.parametrize("defect", ["nan", "negative", "diagonal", "asym-in-block", "asym-sampled"])
@pytest.mark.parametrize("method", ["fasterpam", "pam", "alternating", "silhouette"])
def test_streamed_error_stops_at_the_first_bad_block(defect, method):
    n = 800
    D = random_symmetric(n, np.random.default_rng(9), dtype=np.float32)
    src = CountingSource(D)
    s0, s1 = sampled_columns(src)
    i = next(r for r in range(250, 300) if not s0 <= r < s1 and r % 16 < 8)
    j = i + 5  # same 16-row block as i
    if defect == "nan":
        D[i, 3] = np.nan
        needle = f"D[{i}, 3]"
    elif defect == "negative":
        D[i, 3] = -1.0
        needle = f"D[{i}, 3]"
    elif defect == "diagonal":
        D[i, i] = 2.0
        needle = f"D[{i}, {i}]"
    elif defect == "asym-in-block":
        assert not (s0 <= j < s1)
        D[i, j] += 1.0  # outside the sampled columns: found by the block's diagonal square
        needle = f"D[{i}, {j}]"
    else:
        D[i, s0 + 1] += 1.0  # in another block, but involving a sampled column
        needle = f"D[{i}, {s0 + 1}]"
    run = {"fasterpam": lambda s: cm.fasterpam(s, 3, init=np.array([0, 1, 2]), block_rows=16, num_workers=1),
           "pam": lambda s: cm.pam(s, 3, init=np.array([0, 1, 2]), block_rows=16, num_workers=1),
           "alternating": lambda s: cm.alternating(s, 3, init=np.array([0, 1, 2]), block_rows=16, num_workers=1),
           "silhouette": lambda s: cm.silhouette(s, np.arange(n) % 3, block_rows=16, num_workers=1)}[method]
    with pytest.raises(DissimilarityError) as ei:
        run(src)
    assert needle in str(ei.value)
    # stopped at the bad block: the pass did not go on to the end of the matrix
    assert src.rows_read < (i // 16 + 1) * 16 + 64 + 3 + 4 * 16, src.rows_read


def test_distributed_workers_validate_the_blocks(local_cluster):
    n = 200
    D = random_symmetric(n, np.random.default_rng(4), dtype=np.float64)
    good = cm.pam(D, 3, init=np.array([0, 1, 2]))
    import dask.array as da

    res = cm.pam(da.from_array(D, chunks=(25, n)), 3, init=np.array([0, 1, 2]), client=local_cluster)
    np.testing.assert_array_equal(res.medoids, good.medoids)
    bad = D.copy()
    bad[130, 131] = np.inf
    src = cm.open_dissimilarity(da.from_array(bad, chunks=(25, n)))
    with pytest.raises(DissimilarityError, match=r"inf at D\[130, 131\]"):
        cm.pam(src, 3, init=np.array([0, 1, 2]), client=local_cluster)
    # a clean distributed pass records every block as checked (later passes skip the checks)
    src = cm.open_dissimilarity(da.from_array(D, chunks=(25, n)))
    cm.silhouette(src, np.arange(n) % 3, client=local_cluster)
    assert src.__dict__["_validator"].complete


def test_single_asymmetric_entry_in_one_block_at_n12000(tmp_path):
    """Issue 15 item 9: one asymmetric entry in a 12000-point store with a small budget is
    found by the check of the block's diagonal square (it is not in the sampled columns)."""
    import zarr

    n, rows = 12000, 16
    path = tmp_path / "L.zarr"
    z = zarr.create_array(store=str(path), shape=(n, n), chunks=(rows, n), dtype="int32")
    cols = np.arange(n, dtype=np.int64)
    s0, s1 = sampled_columns(cm.open_dissimilarity(str(path), validate=False))
    i = next(r for r in range(7000, 8000) if r % rows == 2 and not (s0 <= r < s1 or s0 <= r + 9 < s1))
    for a in range(0, n, 1024):
        b = min(a + 1024, n)
        blk = np.abs(np.arange(a, b)[:, None] - cols[None, :]).astype(np.int32)
        if a <= i < b:
            blk[i - a, i + 9] += 1  # D[i, i+9] != D[i+9, i], both rows in one 16-row chunk
        z[a:b] = blk
    code = cli.main(["fit", str(path), "--precomputed", "-k", "3", "--memory-limit", "8MiB", "--seed", "0"])
    assert code == 2
    assert cli.main(["fit", str(path), "--precomputed", "-k", "3", "--memory-limit", "8MiB", "--seed", "0",
                     "--no-validate"]) == 0


def test_single_asymmetric_entry_python_api(tmp_path, capsys):
    n = 3000
    D = np.abs(np.arange(n)[:, None] - np.arange(n)[None, :]).astype(np.float32)
    src0 = as_kind("zarr", D, tmp_path, chunk_rows=16)
    s0, s1 = sampled_columns(cm.open_dissimilarity(src0, validate=False))
    i = next(r for r in range(1500, 2000) if r % 16 == 1 and not (s0 <= r < s1 or s0 <= r + 7 < s1))
    import zarr

    z = zarr.open_array(src0, mode="r+")
    z[i, i + 7] = D[i, i + 7] + 0.5
    with pytest.raises(DissimilarityError, match=rf"D\[{i}, {i + 7}\]"):
        cm.fasterpam(src0, 3, random_state=0, memory_limit="2MiB")


# -- CLI ----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind", ["npy", "zarr", "hdf5"])
@pytest.mark.parametrize("command", ["fit", "clara", "silhouette", "dynmsc"])
def test_cli_commands_refuse_broken_matrices(tmp_path, clean, capsys, kind, command):
    labels = tmp_path / "labels.npy"
    np.save(labels, np.arange(48) % 3)
    extra = {"fit": ["-k", "3", "--seed", "0"], "clara": ["-k", "3", "--seed", "0"],
             "silhouette": ["--labels", str(labels)], "dynmsc": ["--kmax", "4"]}[command]
    for defect, (put, needles) in DEFECTS.items():
        D = clean.copy()
        put(D)
        sub = tmp_path / defect
        sub.mkdir()
        path = as_kind(kind, D, sub)
        capsys.readouterr()
        code = cli.main([command, path, "--precomputed", *extra])
        err = capsys.readouterr().err
        assert code == 2, (command, kind, defect, err)
        for needle in needles:
            assert needle in err, (command, kind, defect, err)
        if defect in ("diagonal", "asymmetric", "negative"):  # finite: the command runs without checks
            assert cli.main([command, path, "--precomputed", "--no-validate", *extra]) == 0, capsys.readouterr().err


# -- float ties like R --------------------------------------------------------------------------
def _tie_matrix():
    """Two clusters on a line at decimal positions; medoid x=0.9 or x=0.2 of the first
    cluster gives the same true loss, but the float64 sums differ in the last bit."""
    base = [Fraction(0), Fraction(2, 10), Fraction(9, 10), Fraction(11, 10)]
    exact = base + [b + 100 for b in base]
    x = np.array([float(v) for v in exact])
    D = np.abs(x[:, None] - x[None, :])
    return D, exact


def test_float_tie_is_refused_by_every_swap_method():
    D, exact = _tie_matrix()

    def true_loss(meds):
        return sum(min(abs(exact[o] - exact[m]) for m in meds) for o in range(len(exact)))

    start, other = np.array([2, 5]), np.array([1, 5])
    assert true_loss(start) == true_loss(other)  # an exact tie
    a = float(np.sum(np.minimum(D[:, 2], D[:, 5])))
    b = float(np.sum(np.minimum(D[:, 1], D[:, 5])))
    assert b < a  # ... that rounding makes look like an improvement (one ulp)
    for name in ("pam", "fastpam1", "fastpam2", "fasterpam"):
        res = getattr(cm, name)(D, 2, init=start)
        assert res.n_swap == 0, name
        np.testing.assert_array_equal(res.medoids, start)
        assert res.loss == a
    for name in ("clarans", "fastclarans"):
        res = getattr(cm, name)(D, 2, init=start, numlocal=1, maxneighbor=1.0, random_state=0)
        assert res.loss == a and sorted(res.medoids) == [2, 5], name
    # PAM and FastPAM1 agree from the same start
    p, f = cm.pam(D, 2, init=start), cm.fastpam1(D, 2, init=start)
    np.testing.assert_array_equal(p.medoids, f.medoids)
    assert p.loss_history == f.loss_history


def test_iris_manhattan_rounding_swap_refused():
    """The issue's case: FastPAM1 from BUILD on iris (Manhattan, k = 3) no longer takes the
    swap 164.70000000000002 -> 164.7 (equal true loss)."""
    pytest.importorskip("sklearn")
    from scipy.spatial.distance import cdist
    from sklearn.datasets import load_iris

    X = load_iris().data
    D = cdist(X, X, "cityblock")
    for name in ("fastpam1", "fastpam2", "pam"):
        res = getattr(cm, name)(D, 3, init="build")
        hist = res.loss_history
        assert all(b < a for a, b in zip(hist, hist[1:-1])), (name, hist)  # every swap improved
        assert not any(abs(a - b) < 1e-9 * a and b < a for a, b in zip(hist, hist[1:])), (name, hist)
    f = cm.fastpam1(D, 3, init="build")
    assert f.n_swap == 1 and f.loss == 164.70000000000002


@pytest.mark.parametrize("k", [2, 3, 4, 5, 6])
def test_iris_manhattan_pam_and_fastpam1_agree_from_build(k):
    """Exact ties between candidates: PAM and FastPAM1 compute the tied ΔTD along different
    float paths; both take the earliest pair within the rounding margin of the best, so they
    agree -- and agree with the same matrix scaled to exact integers (×10)."""
    pytest.importorskip("sklearn")
    from scipy.spatial.distance import cdist
    from sklearn.datasets import load_iris

    X = load_iris().data
    D = cdist(X, X, "cityblock")
    Di = np.rint(D * 10).astype(np.int64)
    np.testing.assert_allclose(Di / 10, D, rtol=0, atol=1e-12)  # one decimal: Di is the exact matrix
    start = cm.build(D, k)
    np.testing.assert_array_equal(cm.build(Di, k), start)
    p, f = cm.pam(D, k, init=start), cm.fastpam1(D, k, init=start)
    pi, fi = cm.pam(Di, k, init=start), cm.fastpam1(Di, k, init=start)
    for r in (f, pi, fi):
        np.testing.assert_array_equal(r.medoids, p.medoids)
        assert r.n_swap == p.n_swap
    assert p.loss_history == f.loss_history


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 2**31 - 1), n=st.integers(20, 80), k=st.integers(2, 5),
       high=st.integers(3, 12))
def test_pam_fastpam1_float_ties_follow_the_exact_integer_rule(seed, n, k, high):
    """Property: on an integer matrix with many exact ties, scaled by 1/10 into floats that
    are not exact, PAM and FastPAM1 take the same swaps as on the exact integer matrix.
    (Without the rounding-margin tie rule about a quarter of such cases disagree.)"""
    rng = np.random.default_rng(seed)
    k = min(k, n - 1)
    A = rng.integers(1, high, size=(n, n))
    Di = np.triu(A, 1)
    Di = Di + Di.T
    D = Di / 10.0
    start = np.sort(rng.choice(n, k, replace=False))
    want = cm.pam(Di, k, init=start)
    for res in (cm.fastpam1(Di, k, init=start), cm.pam(D, k, init=start), cm.fastpam1(D, k, init=start)):
        np.testing.assert_array_equal(res.medoids, want.medoids)
        assert res.n_swap == want.n_swap


def test_integer_strict_improvement_stays_exact():
    """On integer matrices a gain of 1 is taken whatever TD is (integer sums are exact); the
    same values as floats: a gain of 1 at TD = 2e15 is within the rounding bound of the
    float64 sums (2·γ·TD ≈ 2.2) and refused."""
    e = 10**15
    D = np.array([[0, 5, e, e], [5, 0, e - 1, e], [e, e - 1, 0, 2 * e], [e, e, 2 * e, 0]], dtype=np.int64)
    for name in ("pam", "fastpam1", "fastpam2", "fasterpam"):
        res = getattr(cm, name)(D, 1, init=np.array([0]))
        assert res.medoids.tolist() == [1] and res.loss == 2 * e + 4 and res.n_swap == 1, (name, res)
        resf = getattr(cm, name)(D.astype(np.float64), 1, init=np.array([0]))
        assert resf.medoids.tolist() == [0] and resf.n_swap == 0, (name, resf)


# -- scikit-learn estimator checks ----------------------------------------------------------------
@pytest.mark.parametrize("make", [lambda: cm.KMedoids(n_clusters=3), lambda: cm.CLARA(n_clusters=3),
                                  lambda: cm.KMedoids(n_clusters=3, init="build")])
def test_check_estimator_declared_failures_are_xfail(make):
    from sklearn.utils.estimator_checks import check_estimator

    from chunked_medoids.estimator import expected_failed_checks

    est = make()
    declared = expected_failed_checks(est)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        results = check_estimator(est, expected_failed_checks=declared, on_fail=None)
    status = {r["check_name"]: r["status"] for r in results}
    bad = {k: v for k, v in status.items() if v not in ("passed", "skipped", "xfail")}
    assert not bad, bad
    for name in declared:
        assert status[name] in ("xfail", "passed"), (name, status[name])
    if getattr(est, "init", None) == "build":
        assert declared == {}
    else:
        assert status["check_sample_weight_equivalence_on_dense_data"] == "xfail"
