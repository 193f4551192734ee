"""Bad input across the public surface: every case must fail with a typed error.

A catalogue of distinct bad inputs (``PY_CASES`` for the Python API, ``CLI_CASES`` for the
command line).  Each Python case must raise an exception that is a
:class:`chunked_medoids.ChunkedMedoidsError` *and* a ``ValueError`` / ``TypeError`` /
``LookupError`` / ``OSError`` -- never a numba typing error, an ``IndexError`` or an
``AssertionError`` from deep inside -- and its message must name the parameter (or file)
and the value received.  File-system cases (``fs=True``) must in addition be a
``FileNotFoundError`` (our ``MissingFileError``) with the path in the message.

Each CLI case must exit with code 2 and print a single ``chunked-medoids: error: ...``
line naming the problem (no traceback), and must not leave a ``summary.json`` behind.
Most CLI cases run ``chunked_medoids.cli.main([...])`` in-process; a few run real
subprocesses.
"""

from __future__ import annotations

import logging
import os
import re
import signal
import subprocess
import sys
from types import SimpleNamespace

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import ChunkedMedoidsError

#: the builtin bases every typed error must also have.
BUILTIN_BASES = (ValueError, TypeError, LookupError, OSError)

N = 12


# ---------------------------------------------------------------------------------------
# shared data
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_input")
    rng = np.random.default_rng(3)
    X = rng.random((N, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1))
    np.save(d / "X.npy", X)
    np.save(d / "D.npy", D)
    np.save(d / "Dneg.npy", -D)
    np.save(d / "Dbad.npy", np.zeros((3, 4)))
    np.save(d / "X1.npy", X[:, 0])
    np.save(d / "lab5.npy", np.arange(5))
    np.save(d / "med_range.npy", np.array([0, N]))
    np.save(d / "med1.npy", np.array([0]))
    (d / "X.csv").write_text("a,b\n1,2\n3,x\n")
    (d / "ragged.csv").write_text("1,2\n3\n")
    (d / "lab.txt").write_text("0 1 x\n")
    (d / "junk.npy").write_bytes(b"junk")
    (d / "junk.h5").write_bytes(b"junk")
    (d / "garbage.ckpt").write_bytes(b"not a checkpoint")
    (d / "plain").mkdir()
    (d / "empty.zarr").mkdir()
    store = d / "E.zarr"
    cm.build_dissimilarity(X, store, "euclidean")
    ckpt = d / "run.ckpt"
    cm.fasterpam(D, 3, random_state=0, checkpoint=str(ckpt))
    return SimpleNamespace(dir=d, X=X, D=D, store=store, ckpt=ckpt)


def _neg_metric():
    import numba

    @numba.njit
    def negative(x, y):
        return -1.0

    return negative


def _nan_metric():
    import numba

    @numba.njit
    def not_a_number(x, y):
        return np.nan

    return not_a_number


def _labels():
    return np.arange(N) % 3


# ---------------------------------------------------------------------------------------
# the Python catalogue: (id, call(env), regexes the message must contain, fs=)
# ---------------------------------------------------------------------------------------
PY_CASES = []


def case(cid, fn, *patterns, fs=False):
    PY_CASES.append(pytest.param(fn, patterns, fs, id=cid))


# -- open_dissimilarity -------------------------------------------------------------------
case("open-nonsquare", lambda e: cm.open_dissimilarity(np.zeros((3, 4))), r"square", r"\(3, 4\)")
case("open-empty", lambda e: cm.open_dissimilarity(np.zeros((0, 0))), r"empty", r"\(0, 0\)")
case("open-3d", lambda e: cm.open_dissimilarity(np.zeros((2, 2, 2))), r"square", r"\(2, 2, 2\)")
case("open-object-dtype", lambda e: cm.open_dissimilarity(np.zeros((2, 2), dtype=object)), r"dtype", r"object")
case("open-complex-dtype", lambda e: cm.open_dissimilarity(np.zeros((2, 2), dtype=complex)), r"dtype",
     r"complex128")
case("open-bool-dtype", lambda e: cm.open_dissimilarity(np.zeros((2, 2), dtype=bool)), r"dtype", r"bool")
case("open-float16-dtype", lambda e: cm.open_dissimilarity(np.zeros((2, 2), dtype=np.float16)), r"dtype",
     r"float16")
case("open-int16-dtype", lambda e: cm.open_dissimilarity(np.zeros((2, 2), dtype=np.int16)), r"dtype",
     r"int16")
case("open-unknown-kind", lambda e: cm.open_dissimilarity(e.D, kind="sparse"), r"kind", r"'sparse'")
case("open-options-to-numpy", lambda e: cm.open_dissimilarity(e.D, dataset="x"), r"options|dataset",
     r"dataset")
case("open-options-to-source", lambda e: cm.open_dissimilarity(cm.open_dissimilarity(e.D), dataset="x"),
     r"options", r"dataset")
case("open-list", lambda e: cm.open_dissimilarity([[0, 1], [1, 0]]), r"cannot open", r"list")
case("open-none", lambda e: cm.open_dissimilarity(None), r"cannot open", r"NoneType")
case("open-missing-npy", lambda e: cm.open_dissimilarity(e.dir / "nope.npy"), r"nope\.npy", fs=True)
case("open-missing-zarr", lambda e: cm.open_dissimilarity(e.dir / "nope.zarr"), r"nope\.zarr", fs=True)
case("open-missing-h5", lambda e: cm.open_dissimilarity(e.dir / "nope.h5"), r"nope\.h5", fs=True)
case("open-dir-not-a-store", lambda e: cm.open_dissimilarity(e.dir / "empty.zarr"), r"empty\.zarr",
     r"zarr")
case("open-plain-directory", lambda e: cm.open_dissimilarity(e.dir / "plain"), r"cannot open", r"plain")
case("open-junk-npy", lambda e: cm.open_dissimilarity(e.dir / "junk.npy"), r"junk\.npy", r"\.npy")
case("open-junk-h5", lambda e: cm.open_dissimilarity(e.dir / "junk.h5"), r"junk\.h5", r"HDF5")
case("open-nonsquare-npy-file", lambda e: cm.open_dissimilarity(e.dir / "Dbad.npy"), r"square",
     r"\(3, 4\)")
case("source-read-rows-reversed", lambda e: cm.open_dissimilarity(e.D).read_rows(5, 2), r"read_rows",
     r"start=5, stop=2")
case("source-take-rows-out-of-range", lambda e: cm.open_dissimilarity(e.D).take_rows([N]), r"take_rows",
     rf"{N}")
case("source-take-rows-float", lambda e: cm.open_dissimilarity(e.D).take_rows([1.5]), r"take_rows",
     r"float64")

# -- validation -----------------------------------------------------------------------------
_nan = lambda e: np.where(np.eye(N, dtype=bool), 0.0, np.nan)  # noqa: E731
case("validate-nan", lambda e: cm.open_dissimilarity(_nan(e), validate=True), r"nan", r"D\[0, 1\]")
case("validate-inf", lambda e: cm.open_dissimilarity(np.where(np.eye(N, dtype=bool), 0.0, np.inf),
                                                     validate=True), r"inf", r"D\[0, 1\]")
case("validate-negative", lambda e: cm.open_dissimilarity(-e.D, validate=True), r"negative", r"D\[0, 1\]")
case("validate-diagonal", lambda e: cm.open_dissimilarity(e.D + 1, validate=True), r"diagonal",
     r"D\[0, 0\] = 1\.0")
case("validate-asymmetric", lambda e: cm.open_dissimilarity(np.triu(e.D), validate=True), r"symmetric",
     r"D\[0, 1\]")
case("validate-negative-npy-file", lambda e: cm.validate_source(e.dir / "Dneg.npy"), r"Dneg\.npy",
     r"negative")
case("validate-rtol", lambda e: cm.validate_source(e.D, rtol=-1), r"rtol", r"-1")
case("validate-atol", lambda e: cm.validate_source(e.D, atol="x"), r"atol", r"'x'")
case("validate-n-sample-pairs", lambda e: cm.validate_source(e.D, n_sample_pairs=-1), r"n_sample_pairs",
     r"-1")

# -- from_features / metrics ----------------------------------------------------------------
case("features-nan", lambda e: cm.from_features(np.array([[1.0], [np.nan]])), r"X", r"nan at X\[1, 0\]")
case("features-1d", lambda e: cm.from_features(np.arange(5.0)), r"X must be a 2-D", r"\(5,\)")
case("features-empty", lambda e: cm.from_features(np.zeros((0, 3))), r"X is empty", r"\(0, 3\)")
case("features-strings", lambda e: cm.from_features(np.array([["a", "b"]])), r"X", r"<U1")
case("features-complex", lambda e: cm.from_features(e.X.astype(complex)), r"X", r"complex128")
case("metric-unknown", lambda e: cm.from_features(e.X, "nosuch"), r"metric", r"'nosuch'")
case("metric-not-a-name", lambda e: cm.from_features(e.X, 3), r"metric", r"3")
case("metric-minkowski-p-below-1", lambda e: cm.from_features(e.X, "minkowski", p=0.5), r"\bp\b", r"0\.5")
case("metric-minkowski-p-string", lambda e: cm.from_features(e.X, "minkowski", p="3"), r"\bp\b", r"'3'")
case("metric-unknown-param", lambda e: cm.from_features(e.X, "minkowski", q=3), r"parameter", r"'q'")
case("metric-param-to-paramless", lambda e: cm.from_features(e.X, "euclidean", p=2), r"euclidean",
     r"'p'")
case("metric-python-callable", lambda e: cm.from_features(e.X, lambda a, b: 0.0), r"metric", r"lambda",
     )
case("features-euclidean-overflow-inf",
     lambda e: cm.from_features(np.array([[0.0], [1e200], [3.0]])).read_rows(0, 3), r"inf at D\[0, 1\]",
     r"euclidean.*rescale X")
case("features-float32-cast-overflow",
     lambda e: cm.from_features(np.array([[0.0], [1e20]]), "sqeuclidean", dtype="float32").take_rows([1]),
     r"inf at D\[1, 0\]", r"float32.*dtype='float64'")
case("metric-custom-negative", lambda e: cm.from_features(e.X, _neg_metric()).read_rows(0, 2),
     r"-1\.0 at D\[0, 1\]", r"metric 'custom:")
case("metric-custom-nan-int", lambda e: cm.from_features(e.X, _nan_metric(), dtype="int32").read_rows(0, 2),
     r"returned NaN", r"metric 'custom:")
case("build-features-overflow",
     lambda e: cm.build_dissimilarity(np.array([[0.0], [1e200], [3.0]]), e.dir / "b7.zarr"), r"inf",
     r"rescale X")
case("metric-gower-negative-column", lambda e: cm.resolve_metric("gower", categorical=[-1]),
     r"categorical", r"-1")
case("features-dtype-int16", lambda e: cm.from_features(e.X, dtype="int16"), r"dtype", r"int16")
case("features-block-rows-0", lambda e: cm.from_features(e.X, block_rows=0), r"block_rows", r"0")
case("features-dataset-on-numpy", lambda e: cm.from_features(e.X, dataset="x"), r"dataset", r"'x'")
case("features-missing-file", lambda e: cm.from_features(e.dir / "nope.npy"), r"nope\.npy", fs=True)
case("features-bad-suffix", lambda e: cm.from_features(e.dir / "garbage.ckpt"), r"garbage\.ckpt",
     r"\.npy")
case("features-int32-overflow", lambda e: cm.from_features(e.X * 1e12, dtype="int32").read_rows(0, N),
     r"overflows dtype int32", r"distance")

# -- build_dissimilarity (the store must not be left behind looking complete) ---------------
case("build-bad-suffix", lambda e: cm.build_dissimilarity(e.X, e.dir / "out.txt"), r"store", r"out\.txt")
case("build-bad-dtype", lambda e: cm.build_dissimilarity(e.X, e.dir / "b1.zarr", dtype="int16"),
     r"dtype", r"int16")
case("build-existing-store-other-metric",
     lambda e: cm.build_dissimilarity(e.X, e.store, "manhattan"), r"E\.zarr", r"manhattan")
case("build-memory-limit-abc", lambda e: cm.build_dissimilarity(e.X, e.dir / "b2.zarr", memory_limit="abc"),
     r"memory_limit", r"'abc'")
case("build-memory-limit-negative",
     lambda e: cm.build_dissimilarity(e.X, e.dir / "b3.zarr", memory_limit=-5), r"memory_limit", r"-5")
case("build-compressor-unknown",
     lambda e: cm.build_dissimilarity(e.X, e.dir / "b4.zarr", compressor="nope"), r"compressor", r"'nope'")
case("build-nan-features",
     lambda e: cm.build_dissimilarity(np.where(e.X > 0.9, np.nan, e.X), e.dir / "b5.zarr"), r"X", r"nan")
case("build-missing-directory",
     lambda e: cm.build_dissimilarity(e.X, e.dir / "nodir" / "b6.zarr"), r"nodir", fs=True)


# -- every registered method ------------------------------------------------------------------
def _methods():
    cm.METHODS  # noqa: B018 - loads the registry
    return sorted(cm.METHODS)


def _accepts(name, param):
    import inspect

    func = cm.METHODS[name].func
    params = inspect.signature(func).parameters
    if param in params:
        return True
    if any(p.kind is p.VAR_KEYWORD for p in params.values()):  # clara wrappers forward to clara()
        return param in inspect.signature(cm.clara).parameters
    return False


def _mcall(name, *args, **kw):
    return lambda e: cm.METHODS[name].func(e.D, *args, **kw)


#: (id, args, kwargs, patterns, required parameter or None)
METHOD_BAD = [
    ("k-0", (0,), {}, (r"\bk\b", r"got 0"), None),
    ("k-gt-n", (N + 1,), {}, (r"\bk\b", rf"got {N + 1}"), None),
    ("k-float", (2.5,), {}, (r"\bk\b", r"2\.5"), None),
    ("k-str", ("3",), {}, (r"\bk\b", r"'3'"), None),
    ("k-bool", (True,), {}, (r"\bk\b", r"True"), None),
    ("weights-negative", (3,), {"weights": -np.ones(N)}, (r"weights", r"-1\.0"), "weights"),
    ("weights-nan", (3,), {"weights": np.full(N, np.nan)}, (r"weights", r"nan"), "weights"),
    ("weights-length", (3,), {"weights": np.ones(5)}, (r"weights", r"\(5,\)"), "weights"),
    ("weights-all-zero", (3,), {"weights": np.zeros(N)}, (r"weights", r"0"), "weights"),
    ("weights-2d", (3,), {"weights": np.ones((N, 1))}, (r"weights", rf"\({N}, 1\)"), "weights"),
    ("weights-strings", (3,), {"weights": ["a"] * N}, (r"weights", r"<U1"), "weights"),
    ("memory-limit-abc", (3,), {"memory_limit": "abc"}, (r"memory_limit", r"'abc'"), "memory_limit"),
    ("memory-limit-negative", (3,), {"memory_limit": -5}, (r"memory_limit", r"-5"), "memory_limit"),
    ("memory-limit-tiny", (3,), {"memory_limit": 10}, (r"memory_limit", r"10"), "memory_limit"),
    ("memory-limit-inf", (3,), {"memory_limit": float("inf")}, (r"memory_limit", r"inf"), "memory_limit"),
    ("memory-limit-list", (3,), {"memory_limit": [1]}, (r"memory_limit", r"\[1\]"), "memory_limit"),
    ("memory-limit-unit", (3,), {"memory_limit": "5 parsecs"}, (r"memory_limit", r"parsecs"), "memory_limit"),
    ("random-state-str", (3,), {"random_state": "x"}, (r"random_state", r"'x'"), "random_state"),
    ("random-state-negative", (3,), {"random_state": -1}, (r"random_state", r"-1"), "random_state"),
    ("num-workers-0", (3,), {"num_workers": 0}, (r"num_workers", r"0"), "num_workers"),
    ("num-workers-float", (3,), {"num_workers": 1.5}, (r"num_workers", r"1\.5"), "num_workers"),
    ("block-rows-0", (3,), {"block_rows": 0}, (r"block_rows", r"0"), "block_rows"),
    ("init-wrong-length", (3,), {"init": [0, 1]}, (r"init", r"length 2"), "init"),
    ("init-duplicates", (3,), {"init": [0, 1, 1]}, (r"init", r"duplicates: \[1\]"), "init"),
    ("init-out-of-range", (3,), {"init": [0, 1, N]}, (r"init", rf"\[{N}\]"), "init"),
    ("init-negative", (3,), {"init": [0, -1, 2]}, (r"init", r"\[-1\]"), "init"),
    ("init-unknown-name", (3,), {"init": "kmeans++"}, (r"init", r"'kmeans\+\+'"), "init"),
    ("init-float-non-integer", (3,), {"init": [0, 1.5, 2]}, (r"init", r"1\.5"), "init"),
    ("init-nan", (3,), {"init": [0, np.nan, 2]}, (r"init", r"nan"), "init"),
    ("init-none", (3,), {"init": None}, (r"init", r"None"), "init"),
    ("init-scalar", (3,), {"init": 5}, (r"init", r"5"), "init"),
    ("init-2d", (3,), {"init": [[0, 1, 2]]}, (r"init", r"\(1, 3\)"), "init"),
    ("init-strings", (3,), {"init": np.array(["a", "b", "c"])}, (r"init", r"<U1"), "init"),
    ("max-iter-negative", (3,), {"max_iter": -1}, (r"max_iter", r"-1"), "max_iter"),
    ("max-iter-float", (3,), {"max_iter": 2.5}, (r"max_iter", r"2\.5"), "max_iter"),
    ("tol-negative", (3,), {"tol": -1}, (r"\btol\b", r"-1"), "tol"),
    ("tol-nan", (3,), {"tol": float("nan")}, (r"\btol\b", r"nan"), "tol"),
    ("tol-str", (3,), {"tol": "0"}, (r"\btol\b", r"'0'"), "tol"),
    ("tau-0", (3,), {"tau": 0}, (r"\btau\b", r"0"), "tau"),
    ("tau-2", (3,), {"tau": 2}, (r"\btau\b", r"2"), "tau"),
    ("order-unknown", (3,), {"order": "reverse"}, (r"\border\b", r"'reverse'"), "order"),
    ("speculative-str", (3,), {"speculative": "yes"}, (r"speculative", r"'yes'"), "speculative"),
    ("checkpoint-interval-negative", (3,), {"checkpoint": "IN_TMP", "checkpoint_interval": -1},
     (r"checkpoint_interval", r"-1"), "checkpoint_interval"),
    ("checkpoint-not-a-path", (3,), {"checkpoint": 5}, (r"checkpoint", r"int"), "checkpoint"),
    ("maxneighbor-0", (3,), {"maxneighbor": 0}, (r"maxneighbor", r"0"), "maxneighbor"),
    ("numlocal-0", (3,), {"numlocal": 0}, (r"numlocal", r"0"), "numlocal"),
    ("n-samples-0", (3,), {"n_samples": 0}, (r"n_samples", r"0"), "n_samples"),
    ("sample-size-below-k", (3,), {"sample_size": 2}, (r"sample_size", r"2"), "sample_size"),
]
METHOD_CASES = [
    pytest.param(name, args, kw, pats, id=f"{name}-{cid}")
    for cid, args, kw, pats, needs in METHOD_BAD
    for name in _methods()
    if (needs is None or _accepts(name, needs))
    # the medoid silhouette needs k >= 2: its k messages are checked separately below
    and not (name == "fastermsc" and cid.startswith("k-") and cid not in ("k-float", "k-str", "k-bool"))
]

# -- checkpoints --------------------------------------------------------------------------------
case("checkpoint-missing-directory",
     lambda e: cm.fasterpam(e.D, 3, checkpoint=str(e.dir / "nodir" / "c.ckpt")), r"checkpoint",
     r"nodir", fs=True)
case("checkpoint-mismatch-params", lambda e: cm.fasterpam(e.D, 4, random_state=0, checkpoint=str(e.ckpt)),
     r"run\.ckpt", r"k: saved 3 vs now 4")
case("checkpoint-mismatch-data", lambda e: cm.fasterpam(2 * e.D, 3, random_state=0, checkpoint=str(e.ckpt)),
     r"run\.ckpt", r"another dissimilarity")
case("checkpoint-other-algorithm", lambda e: cm.pam(e.D, 3, random_state=0, checkpoint=str(e.ckpt)),
     r"run\.ckpt", r"'fasterpam' != 'pam'")
case("checkpoint-garbage-file", lambda e: cm.fasterpam(e.D, 3, checkpoint=str(e.dir / "garbage.ckpt")),
     r"garbage\.ckpt", r"not a readable")
case("checkpoint-is-directory", lambda e: cm.fasterpam(e.D, 3, checkpoint=str(e.dir / "plain")),
     r"plain", r"not a readable")
case("engine-with-num-workers", lambda e: cm.fasterpam(e.D, 3, engine=cm.Engine(), num_workers=2),
     r"engine", r"num_workers")
case("engine-memory-limit", lambda e: cm.Engine(memory_limit="x"), r"memory_limit", r"'x'")

# -- inits ----------------------------------------------------------------------------------------
case("build-k-0", lambda e: cm.build(e.D, 0), r"\bk\b", r"got 0")
case("lab-k-gt-n", lambda e: cm.lab(e.D, N + 1), r"\bk\b", rf"got {N + 1}")
case("build-weights-length", lambda e: cm.build(e.D, 2, weights=[1, 2]), r"weights", r"\(2,\)")
case("lab-random-state", lambda e: cm.lab(e.D, 2, random_state="x"), r"random_state", r"'x'")

# -- silhouettes / k selection ----------------------------------------------------------------
case("silhouette-labels-length", lambda e: cm.silhouette(e.D, _labels()[:5]), r"labels", r"\(5,\)")
case("silhouette-labels-2d", lambda e: cm.silhouette(e.D, _labels().reshape(3, 4)), r"labels", r"\(3, 4\)")
case("silhouette-single-cluster", lambda e: cm.silhouette(e.D, np.zeros(N, int)), r"labels",
     r"got 1 distinct")
case("silhouette-all-singletons", lambda e: cm.silhouette(e.D, np.arange(N)), r"labels",
     rf"got {N} distinct")
case("silhouette-labels-object", lambda e: cm.silhouette(e.D, np.array([None] * N)), r"labels", r"object")
case("silhouette-labels-nan", lambda e: cm.silhouette(e.D, np.where(_labels() == 0, np.nan, _labels())),
     r"labels", r"NaN")
case("silhouette-samples-str", lambda e: cm.silhouette(e.D, _labels(), samples="yes"), r"samples",
     r"'yes'")
case("medoid-silhouette-k1", lambda e: cm.medoid_silhouette(e.D, [0]), r"2 medoids", r"got 1")
case("medoid-silhouette-out-of-range", lambda e: cm.medoid_silhouette(e.D, [0, N]), r"medoids", rf"\[{N}\]")
case("medoid-silhouette-duplicates", lambda e: cm.medoid_silhouette(e.D, [1, 1]), r"medoids",
     r"duplicates: \[1\]")
case("medoid-silhouette-string", lambda e: cm.medoid_silhouette(e.D, "abc"), r"medoids", r"'abc'")
case("medoid-silhouette-2d", lambda e: cm.medoid_silhouette(e.D, [[0, 1]]), r"medoids", r"\(1, 2\)")
case("medoid-silhouette-samples-str", lambda e: cm.medoid_silhouette(e.D, [0, 1], samples=1),
     r"samples", r"1")
case("fastermsc-k1", lambda e: cm.fastermsc(e.D, 1), r"\bk\b", r">= 2, got 1")
case("fastermsc-k-gt-n", lambda e: cm.fastermsc(e.D, N + 1), r"\bk\b", rf"got {N + 1}")
case("dynmsc-kmax-lt-kmin", lambda e: cm.dynmsc(e.D, 3, kmin=5), r"kmin", r"kmin=5 and kmax=3")
case("dynmsc-kmin-lt-2", lambda e: cm.dynmsc(e.D, 5, kmin=1), r"kmin", r"got 1")
case("dynmsc-kmax-gt-n", lambda e: cm.dynmsc(e.D, N + 1), r"kmax", rf"got {N + 1}")
case("dynmsc-kmax-float", lambda e: cm.dynmsc(e.D, 3.0), r"kmax", r"3\.0")
case("dynmsc-init-none", lambda e: cm.dynmsc(e.D, 3, init=None), r"init", r"None")
case("dynmsc-init-wrong-length", lambda e: cm.dynmsc(e.D, 3, init=[0, 1]), r"init", r"length 2")
case("dynmsc-init-strings", lambda e: cm.dynmsc(e.D, 3, init=np.array(["a", "b", "c"])), r"init", r"<U1")

# -- sampling ---------------------------------------------------------------------------------------
case("clara-variant-unknown", lambda e: cm.clara(e.X, 3, variant="nope"), r"variant", r"'nope'")
case("clarans-maxneighbor-fraction-count", lambda e: cm.clarans(e.D, 3, maxneighbor=2.5), r"maxneighbor",
     r"2\.5")


# -- estimators -----------------------------------------------------------------------------------
def _fitted(e, **kw):
    return cm.KMedoids(3, random_state=0, **kw).fit(e.D if kw.get("metric") == "precomputed" else e.X)


case("kmedoids-n-clusters-0", lambda e: cm.KMedoids(0).fit(e.X), r"n_clusters", r"got 0")
case("kmedoids-n-clusters-str", lambda e: cm.KMedoids("3").fit(e.X), r"n_clusters", r"'3'")
case("kmedoids-n-clusters-gt-n", lambda e: cm.KMedoids(N + 8).fit(e.X), r"n_clusters", rf"{N + 8}")
case("kmedoids-method-unknown", lambda e: cm.KMedoids(3, method="kmeans").fit(e.X), r"method", r"'kmeans'")
case("kmedoids-metric-unknown", lambda e: cm.KMedoids(3, metric="nosuch").fit(e.X), r"metric", r"'nosuch'")
case("kmedoids-predict-before-fit", lambda e: cm.KMedoids(3).predict(e.X), r"KMedoids", r"not fitted")
case("kmedoids-predict-n-features", lambda e: _fitted(e).predict(e.X[:, :2]), r"X", r"2 features")
case("kmedoids-transform-n-features", lambda e: _fitted(e).transform(e.X[:, :1]), r"X", r"1 features")
case("kmedoids-precomputed-predict-width", lambda e: _fitted(e, metric="precomputed").predict(e.D[:, :5]),
     r"X", r"5 features")
case("kmedoids-sample-weight-length", lambda e: cm.KMedoids(3).fit(e.X, sample_weight=np.ones(3)),
     r"sample_weight", r"\(3,\)")
case("kmedoids-sample-weight-negative", lambda e: cm.KMedoids(3).fit(e.X, sample_weight=-np.ones(N)),
     r"sample_weight", r"-1\.0")
case("kmedoids-sample-weight-zero", lambda e: cm.KMedoids(3).fit(e.X, sample_weight=np.zeros(N)),
     r"sample_weight", r"zero")
case("kmedoids-score-sample-weight", lambda e: _fitted(e).score(e.X, sample_weight=np.ones(2)),
     r"sample_weight", r"\(2,\)")
case("kmedoids-nan-features", lambda e: cm.KMedoids(3).fit(np.where(e.X > 0.9, np.nan, e.X)), r"X",
     r"NaN")
case("kmedoids-1d-features", lambda e: cm.KMedoids(3).fit(np.arange(12.0)), r"X", r"1D array")
case("kmedoids-precomputed-nonsquare", lambda e: cm.KMedoids(3, metric="precomputed").fit(e.X),
     r"precomputed", r"\(12, 3\)")
case("kmedoids-precomputed-negative", lambda e: cm.KMedoids(3, metric="precomputed").fit(-e.D),
     r"negative", r"D\[0, 1\]")
case("kmedoids-method-params-reserved", lambda e: cm.KMedoids(3, method_params={"init": "build"}).fit(e.X),
     r"method_params", r"'init'")
case("kmedoids-method-params-unknown", lambda e: cm.KMedoids(3, method_params={"foo": 1}).fit(e.X),
     r"method_params", r"'foo'")
case("kmedoids-method-params-not-dict", lambda e: cm.KMedoids(3, method_params=[1]).fit(e.X),
     r"method_params", r"list")
case("kmedoids-metric-params-precomputed",
     lambda e: cm.KMedoids(3, metric="precomputed", metric_params={"p": 1}).fit(e.D), r"metric_params",
     r"precomputed")
case("kmedoids-init-for-clara", lambda e: cm.KMedoids(3, method="clara", init="build").fit(e.X),
     r"init", r"'build'")
case("kmedoids-max-iter-negative", lambda e: cm.KMedoids(3, max_iter=-1).fit(e.X), r"max_iter", r"-1")
case("clara-estimator-variant", lambda e: cm.CLARA(3, variant="nope").fit(e.X), r"variant", r"'nope'")
case("clara-estimator-params-unknown", lambda e: cm.CLARA(3, clara_params={"foo": 1}).fit(e.X),
     r"clara_params", r"'foo'")
case("clara-estimator-predict-before-fit", lambda e: cm.CLARA(3).predict(e.X), r"CLARA", r"not fitted")


def _check_typed(exc, fs):
    if fs:  # missing files: our MissingFileError, which is also a FileNotFoundError
        assert isinstance(exc, FileNotFoundError), f"{type(exc).__name__}: {exc}"
    assert isinstance(exc, ChunkedMedoidsError), f"untyped error {type(exc).__name__}: {exc}"
    assert isinstance(exc, BUILTIN_BASES), f"{type(exc).__name__} is not a ValueError/TypeError/LookupError/OSError"


def _check_message(exc, patterns):
    msg = str(exc)
    assert "Traceback" not in msg
    for pat in patterns:
        assert re.search(pat, msg), f"{pat!r} not found in message: {msg!r}"


def _run_py(fn, patterns, fs, env):
    with pytest.raises(BUILTIN_BASES, match=patterns[0]) as info:
        fn(env)
    _check_typed(info.value, fs)
    _check_message(info.value, patterns)
    return info.value


@pytest.mark.parametrize(("fn", "patterns", "fs"), PY_CASES)
def test_bad_python_input(fn, patterns, fs, env):
    _run_py(fn, patterns, fs, env)


@pytest.mark.parametrize(("name", "args", "kw", "patterns"), METHOD_CASES)
def test_bad_method_input(name, args, kw, patterns, env, tmp_path):
    kw = {key: (str(tmp_path / "c.ckpt") if isinstance(v, str) and v == "IN_TMP" else v) for key, v in kw.items()}
    _run_py(_mcall(name, *args, **kw), patterns, False, env)
    # nothing that looks like a finished checkpoint is left by a rejected call
    assert not (tmp_path / "c.ckpt").exists()


def test_fastermsc_k_rules(env):
    """fastermsc needs 2 <= k <= n: k = 0 and k = n + 1 are refused with the rule named."""
    for k, pat in ((0, r">= 2, got 0"), (N + 1, rf"<= n = {N}, got {N + 1}")):
        exc = _run_py(lambda e: cm.fastermsc(e.D, k), (r"\bk\b", pat), False, env)
        assert isinstance(exc, cm.InvalidParameterError)


def test_rejected_builds_leave_no_store(env, tmp_path):
    """A build refused for bad arguments or bad features writes nothing; a build stopped
    midway (an infinite distance, an integer overflow) never leaves a store that opens as
    complete."""
    X = env.X
    bad = {
        "dtype.zarr": dict(dtype="int16"),
        "memory.zarr": dict(memory_limit="abc"),
        "compressor.zarr": dict(compressor="nope"),
        "metric.h5": dict(metric="nosuch"),
    }
    for name, kw in bad.items():
        with pytest.raises(ChunkedMedoidsError):
            cm.build_dissimilarity(X, tmp_path / name, **kw)
        assert not (tmp_path / name).exists(), name
    with pytest.raises(cm.InvalidParameterError, match="nan"):
        cm.build_dissimilarity(np.where(X > 0.9, np.nan, X), tmp_path / "nan.zarr")
    assert not (tmp_path / "nan.zarr").exists()
    midway = {
        "inf.zarr": (np.concatenate([X, [[1e200, 0.0, 0.0]]]), {}, "rescale X"),
        "inf.h5": (np.concatenate([X, [[1e200, 0.0, 0.0]]]), {}, "rescale X"),
        "overflow.zarr": (X * 1e12, {"dtype": "int32"}, "overflows dtype int32"),
    }
    for name, (Xb, kw, msg) in midway.items():
        with pytest.raises(cm.DissimilarityError, match=msg):
            cm.build_dissimilarity(Xb, tmp_path / name, block_rows=2, **kw)
        if (tmp_path / name).exists():
            with pytest.raises(cm.IncompleteStoreError):
                cm.open_dissimilarity(tmp_path / name)


def test_negative_labels_are_ordinary_labels(env):
    """Labels are arbitrary cluster names (relabelled internally, as in scikit-learn), so
    negative labels are valid input, not an error: same silhouette as the shifted labels."""
    lab = _labels()
    assert cm.silhouette(env.D, lab - 5) == cm.silhouette(env.D, lab)


def test_estimator_not_fitted_is_sklearn_compatible(env):
    from sklearn.exceptions import NotFittedError

    with pytest.raises(NotFittedError):
        cm.KMedoids(3).transform(env.X)
    with pytest.raises(cm.ChunkedMedoidsError):
        cm.KMedoids(3).score(env.X)


# ---------------------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------------------
@pytest.fixture
def cli_main(capsys):
    """Run ``cli.main(argv)`` in-process; restore the logging and signal state it changes."""
    from chunked_medoids import cli

    log = logging.getLogger("chunked_medoids")
    saved = (list(log.handlers), log.level, log.propagate)
    sigs = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}

    def run(argv):
        rc = cli.main([str(a) for a in argv])
        out, err = capsys.readouterr()
        return rc, out, err

    try:
        yield run
    finally:
        log.handlers[:] = saved[0]
        log.setLevel(saved[1])
        log.propagate = saved[2]
        for s, h in sigs.items():
            signal.signal(s, h)


def _assert_cli_error(rc, err, patterns):
    assert rc == 2, f"rc={rc}, stderr={err!r}"
    lines = err.strip().splitlines()
    assert len(lines) == 1, f"expected one line on stderr, got {err!r}"
    assert lines[0].startswith("chunked-medoids: error: "), lines[0]
    assert "Traceback" not in err
    for pat in patterns:
        assert re.search(pat, lines[0]), f"{pat!r} not in {lines[0]!r}"


P = "--precomputed"
#: (id, argv with {d} for the data directory, patterns)
CLI_CASES = [
    ("fit-k-0", ["fit", "{d}/D.npy", P, "-k", "0"], [r"\bk\b", r"got 0"]),
    ("fit-k-gt-n", ["fit", "{d}/D.npy", P, "-k", "13"], [r"\bk\b", r"got 13"]),
    ("fit-k-float", ["fit", "{d}/D.npy", P, "-k", "2.5"], [r"-k/--n-clusters", r"'2\.5'"]),
    ("fit-k-missing", ["fit", "{d}/D.npy", P], [r"-k/--n-clusters", r"required"]),
    ("fit-method-unknown", ["fit", "{d}/D.npy", P, "-k", "3", "--method", "kmeans"], [r"--method", r"'kmeans'"]),
    ("fit-init-unknown", ["fit", "{d}/D.npy", P, "-k", "3", "--init", "kmeans++"], [r"--init", r"'kmeans\+\+'"]),
    ("fit-max-iter-negative", ["fit", "{d}/D.npy", P, "-k", "3", "--max-iter", "-1"], [r"max_iter", r"-1"]),
    ("fit-seed-negative", ["fit", "{d}/D.npy", P, "-k", "3", "--seed", "-1"], [r"random_state", r"-1"]),
    ("fit-memory-limit-abc", ["fit", "{d}/D.npy", P, "-k", "3", "--memory-limit", "abc"],
     [r"memory_limit", r"'abc'"]),
    ("fit-memory-limit-tiny", ["fit", "{d}/D.npy", P, "-k", "3", "--memory-limit", "10"],
     [r"memory_limit", r"'10'"]),
    ("fit-input-missing", ["fit", "{d}/missing.npy", P, "-k", "3"], [r"INPUT", r"missing\.npy"]),
    ("fit-input-nonsquare", ["fit", "{d}/Dbad.npy", P, "-k", "3"], [r"square", r"\(3, 4\)"]),
    ("fit-input-negative", ["fit", "{d}/Dneg.npy", P, "-k", "3"], [r"Dneg\.npy", r"negative"]),
    ("fit-input-plain-dir", ["fit", "{d}/plain", P, "-k", "3"], [r"cannot open", r"plain"]),
    ("fit-input-empty-zarr", ["fit", "{d}/empty.zarr", P, "-k", "3"], [r"empty\.zarr", r"zarr"]),
    ("fit-features-or-matrix", ["fit", "{d}/D.npy", "-k", "3"], [r"--metric", r"--precomputed"]),
    ("fit-metric-and-precomputed", ["fit", "{d}/D.npy", P, "--metric", "euclidean", "-k", "3"],
     [r"--metric", r"--precomputed"]),
    ("fit-metric-unknown", ["fit", "{d}/X.npy", "--metric", "nosuch", "-k", "3"], [r"--metric", r"'nosuch'"]),
    ("fit-metric-param-p", ["fit", "{d}/X.npy", "--metric", "minkowski", "--metric-param", "p=0.5", "-k", "3"],
     [r"\bp\b", r"0\.5"]),
    ("fit-metric-param-syntax", ["fit", "{d}/X.npy", "--metric", "euclidean", "--metric-param", "p", "-k", "3"],
     [r"--metric-param", r"'p'"]),
    ("fit-metric-param-unknown", ["fit", "{d}/X.npy", "--metric", "euclidean", "--metric-param", "q=1",
                                  "-k", "3"], [r"euclidean", r"'q'"]),
    ("fit-features-1d", ["fit", "{d}/X1.npy", "--metric", "euclidean", "-k", "3"], [r"2-D", r"\(12,\)"]),
    ("fit-csv-non-numeric", ["fit", "{d}/X.csv", "--metric", "euclidean", "-k", "3"], [r"X\.csv", r"'x'"]),
    ("fit-csv-ragged", ["fit", "{d}/ragged.csv", "--metric", "euclidean", "-k", "3"],
     [r"ragged\.csv", r"line 2"]),
    ("fit-checkpoint-missing-dir", ["fit", "{d}/D.npy", P, "-k", "3", "--checkpoint", "{d}/nodir/c.ckpt"],
     [r"checkpoint", r"nodir"]),
    ("fit-checkpoint-interval-alone", ["fit", "{d}/D.npy", P, "-k", "3", "--checkpoint-interval", "5"],
     [r"--checkpoint-interval", r"--checkpoint"]),
    ("fit-workers-0", ["fit", "{d}/D.npy", P, "-k", "3", "--workers", "0"], [r"--workers", r"got 0"]),
    ("fit-dataset-on-npy", ["fit", "{d}/D.npy", P, "--dataset", "x", "-k", "3"], [r"--dataset", r"D\.npy"]),
    ("fit-dtype-on-precomputed", ["fit", "{d}/D.npy", P, "-k", "3", "--dtype", "float64"], [r"--dtype"]),
    ("fit-clara-max-iter", ["fit", "{d}/D.npy", P, "-k", "3", "--method", "clara", "--max-iter", "3"],
     [r"max.iter"]),
    ("fit-unknown-option", ["fit", "{d}/D.npy", P, "-k", "3", "--bogus"], [r"--bogus"]),
    ("command-unknown", ["nosuchcmd"], [r"COMMAND", r"'nosuchcmd'"]),
    ("command-missing", [], [r"COMMAND", r"required"]),
    ("clara-n-samples-0", ["clara", "{d}/D.npy", P, "-k", "3", "--n-samples", "0"], [r"n_samples", r"0"]),
    ("clara-sample-size-2", ["clara", "{d}/D.npy", P, "-k", "3", "--sample-size", "2"],
     [r"sample_size", r"got 2"]),
    ("clara-variant-unknown", ["clara", "{d}/D.npy", P, "-k", "3", "--variant", "x"], [r"--variant", r"'x'"]),
    ("silhouette-labels-length", ["silhouette", "{d}/D.npy", P, "--labels", "{d}/lab5.npy"],
     [r"labels", r"\(5,\)"]),
    ("silhouette-labels-text", ["silhouette", "{d}/D.npy", P, "--labels", "{d}/lab.txt"],
     [r"--labels", r"lab\.txt"]),
    ("silhouette-labels-missing", ["silhouette", "{d}/D.npy", P, "--labels", "{d}/nolab.npy"],
     [r"--labels", r"nolab\.npy"]),
    ("silhouette-medoids-range", ["silhouette", "{d}/D.npy", P, "--medoids", "{d}/med_range.npy"],
     [r"medoids", r"\[12\]"]),
    ("silhouette-medoids-k1", ["silhouette", "{d}/D.npy", P, "--medoids", "{d}/med1.npy"],
     [r"2 medoids", r"got 1"]),
    ("silhouette-medoids-memory-limit", ["silhouette", "{d}/D.npy", P, "--medoids", "{d}/med1.npy",
                                         "--memory-limit", "1GiB"], [r"--memory-limit", r"--medoids"]),
    ("silhouette-nothing", ["silhouette", "{d}/D.npy", P], [r"--labels", r"--medoids"]),
    ("dynmsc-kmax-lt-kmin", ["dynmsc", "{d}/D.npy", P, "--kmax", "3", "--kmin", "5"],
     [r"kmin", r"kmin=5 and kmax=3"]),
    ("dynmsc-kmax-gt-n", ["dynmsc", "{d}/D.npy", P, "--kmax", "13"], [r"kmax", r"got 13"]),
    ("dynmsc-kmin-1", ["dynmsc", "{d}/D.npy", P, "--kmax", "5", "--kmin", "1"], [r"kmin", r"got 1"]),
    ("build-bad-suffix", ["build", "{d}/X.npy", "-o", "{d}/out.txt", "--metric", "euclidean"],
     [r"store", r"out\.txt"]),
    ("build-missing-dir", ["build", "{d}/X.npy", "-o", "{d}/nodir/out.zarr", "--metric", "euclidean"],
     [r"nodir"]),
    ("build-memory-limit", ["build", "{d}/X.npy", "-o", "{d}/c1.zarr", "--metric", "euclidean",
                            "--memory-limit", "abc"], [r"memory_limit", r"'abc'"]),
    ("build-block-rows-0", ["build", "{d}/X.npy", "-o", "{d}/c2.zarr", "--metric", "euclidean",
                            "--block-rows", "0"], [r"block_rows", r"got 0"]),
    ("build-compressor", ["build", "{d}/X.npy", "-o", "{d}/c3.zarr", "--metric", "euclidean",
                          "--compressor", "nope"], [r"compressor", r"'nope'"]),
    ("build-features-missing", ["build", "{d}/missing.npy", "-o", "{d}/c4.zarr", "--metric", "euclidean"],
     [r"FEATURES", r"missing\.npy"]),
    ("build-existing-other-metric", ["build", "{d}/X.npy", "-o", "{d}/E.zarr", "--metric", "manhattan"],
     [r"E\.zarr", r"manhattan"]),
    ("info-missing", ["info", "{d}/missing.zarr"], [r"STORE", r"missing\.zarr"]),
    ("info-not-a-store", ["info", "{d}/X.npy"], [r"store", r"X\.npy"]),
    ("info-empty-zarr", ["info", "{d}/empty.zarr"], [r"empty\.zarr"]),
]


def _argv(argv, d):
    return [a.replace("{d}", str(d)) for a in argv]


@pytest.mark.parametrize(("argv", "patterns"), [pytest.param(a, p, id=i) for i, a, p in CLI_CASES])
def test_bad_cli_input(argv, patterns, env, cli_main, tmp_path):
    out = tmp_path / "out"
    argv = _argv(argv, env.dir)
    if argv and argv[0] in ("fit", "clara", "dynmsc"):
        argv += ["-o", str(out)]
    rc, _, err = cli_main(argv)
    _assert_cli_error(rc, err, patterns)
    assert not (out / "summary.json").exists()
    assert not (out / "labels.npy").exists()


def test_rejected_cli_builds_leave_no_store(env, cli_main):
    for name in ("c1.zarr", "c2.zarr", "c3.zarr", "c4.zarr", "out.txt"):
        cli_main(["build", env.dir / "X.npy", "-o", env.dir / name, "--metric", "euclidean",
                  "--memory-limit", "abc"])
        assert not (env.dir / name).exists(), name


SUBPROCESS_CASES = [
    ["fit", "{d}/D.npy", P, "-k", "0", "-o", "{d}/sub_out"],
    ["fit", "{d}/Dneg.npy", P, "-k", "3", "-o", "{d}/sub_out"],
    ["fit", "{d}/D.npy", P, "-k", "3", "--method", "kmeans", "-o", "{d}/sub_out"],
]


def test_bad_cli_input_subprocess(env):
    """Real processes: exit code 2, one stderr line, no traceback, no summary.json."""
    for argv in SUBPROCESS_CASES:
        proc = subprocess.run([sys.executable, "-m", "chunked_medoids", *_argv(argv, env.dir)],
                              capture_output=True, text=True, timeout=120,
                              env=dict(os.environ, OMP_NUM_THREADS="1"))
        _assert_cli_error(proc.returncode, proc.stderr, [])
        assert proc.stdout == ""
        assert not (env.dir / "sub_out" / "summary.json").exists()


def test_catalogue_size():
    """The catalogue holds at least 40 distinct bad inputs (and many more cases)."""
    distinct = len(PY_CASES) + len(METHOD_BAD) + len(CLI_CASES)
    assert distinct >= 40
    assert len(METHOD_CASES) > len(METHOD_BAD)
