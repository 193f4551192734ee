"""The CLI and the Python API read every input suffix alike.

Both ask the one resolver (``chunked_medoids.sources.inputs``: ``resolve_input`` and the
``INPUT_SUFFIXES`` table) which store kind a path is and whether it is a matrix written by
``build``; the tests walk the table, so a suffix added to it is covered here too.
"""

import json
import logging

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import cli
from chunked_medoids.sources import INPUT_SUFFIXES, resolve_input
from chunked_medoids.sources.inputs import FEATURES, MATRIX, WRITABLE_KINDS, describe_suffixes, path_kind
from tests.test_inputs import _write as write_kind

K, SEED = 3, 4


@pytest.fixture(autouse=True)
def _restore_logging():
    log = logging.getLogger("chunked_medoids")
    saved = (list(log.handlers), log.level, log.propagate)
    yield
    log.handlers[:], log.level, log.propagate = saved


@pytest.fixture(scope="module")
def X():
    rng = np.random.default_rng(11)
    return np.concatenate([c + rng.normal(size=(20, 3)) for c in 9.0 * np.eye(3)])


def _write(path, arr):
    """``arr`` in the store kind the suffix names (test_inputs' writer); returns the dataset
    name to pass (or None)."""
    write_kind(path, arr)
    return "data" if path_kind(path) == "hdf5" else None


def _fit(capsys, out, *args):
    """``chunked-medoids fit ARGS`` in-process; (exit code, medoids or None, stderr)."""
    code = cli.main(["fit", *map(str, args), "-k", str(K), "--seed", str(SEED), "--method", "fasterpam",
                     "--no-progress", "-o", str(out)])
    err = capsys.readouterr().err
    medoids = np.load(out / "medoids.npy") if code == 0 else None
    return code, medoids, err


@pytest.mark.parametrize("suffix", list(INPUT_SUFFIXES))
def test_features_of_every_suffix_cli_equals_api(tmp_path, capsys, X, suffix):
    path = tmp_path / f"X{suffix}"
    dataset = _write(path, X)
    roles = INPUT_SUFFIXES[suffix][1]
    extra = ["--dataset", dataset] if dataset else []
    code, medoids, err = _fit(capsys, tmp_path / "out", path, "--metric", "euclidean", *extra)
    if FEATURES not in roles:  # no suffix of today's table, but the CLI must then refuse it
        assert code == 2 and describe_suffixes(role=FEATURES) in err
        return
    assert code == 0, err
    # what the API gets for the same file: the path itself, or (text) the rows the CLI reads
    if path_kind(path) == "text":
        api_source = cm.from_features(X)
    else:
        api_source = cm.from_features(path, dataset=dataset)
        np.testing.assert_array_equal(api_source.read_rows(0, len(X)), cm.from_features(X).read_rows(0, len(X)))
    ref = cm.fasterpam(api_source, K, random_state=SEED)
    np.testing.assert_array_equal(medoids, ref.medoids)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["input"]["kind"] == "features" and summary["loss"] == ref.loss
    # neither side calls a plain feature file a matrix on its own
    assert not resolve_input(path, dataset=dataset).decided


@pytest.mark.parametrize("suffix", list(INPUT_SUFFIXES))
def test_foreign_matrix_of_every_suffix_cli_equals_api(tmp_path, capsys, X, suffix):
    D = cm.from_features(X).read_rows(0, len(X))
    path = tmp_path / f"D{suffix}"
    dataset = _write(path, D)
    extra = ["--dataset", dataset] if dataset else []
    code, medoids, err = _fit(capsys, tmp_path / "out", path, "--precomputed", *extra)
    if MATRIX not in INPUT_SUFFIXES[suffix][1]:  # text: features only, for both sides
        assert code == 2 and describe_suffixes(role=MATRIX) in err and "--metric" in err
        with pytest.raises(cm.InvalidTypeError):
            cm.open_dissimilarity(path)
        return
    assert code == 0, err
    ref = cm.fasterpam(cm.open_dissimilarity(path, **({"dataset": dataset} if dataset else {})), K,
                       random_state=SEED)
    np.testing.assert_array_equal(medoids, ref.medoids)
    # undecided without a flag: the API takes it for features, the CLI asks
    assert not resolve_input(path, dataset=dataset).decided
    code, _, err = _fit(capsys, tmp_path / "out2", path, *extra)
    assert code == 2 and "--precomputed" in err and "--metric" in err


@pytest.mark.parametrize("suffix", [s for s, (kind, _) in INPUT_SUFFIXES.items() if kind in WRITABLE_KINDS])
def test_built_store_of_every_writable_suffix_is_a_matrix_for_both(tmp_path, capsys, X, suffix):
    path = tmp_path / f"D{suffix}"
    cm.build_dissimilarity(X, path).close()
    r = resolve_input(path)
    assert (r.role, r.decided, r.managed) == (MATRIX, True, True)
    code, medoids, err = _fit(capsys, tmp_path / "out", path)  # no --precomputed needed
    assert code == 0, err
    ref = cm.fasterpam(str(path), K, random_state=SEED)
    np.testing.assert_array_equal(medoids, ref.medoids)
    summary = json.loads((tmp_path / "out" / "summary.json").read_text())
    assert summary["input"]["kind"] == "precomputed" and summary["input"]["metric"] == "euclidean"
    code, _, err = _fit(capsys, tmp_path / "out2", path, "--metric", "euclidean")
    assert code == 2 and "written by 'build'" in err


def test_unknown_suffix_is_refused_naming_the_table(tmp_path, capsys, X):
    path = tmp_path / "X.parquet"
    path.write_bytes(b"not a table")
    code, _, err = _fit(capsys, tmp_path / "out", path, "--metric", "euclidean")
    assert code == 2 and describe_suffixes(role=FEATURES) in err


def test_help_names_the_suffixes_of_the_table(capsys):
    """The help texts take their suffix lists from the same table (a suffix added there shows up)."""
    assert cli.main(["fit", "--help"]) == 0
    fit_help = " ".join(capsys.readouterr().out.split())
    assert cli.main(["build", "--help"]) == 0
    build_help = " ".join(capsys.readouterr().out.split())
    for suffix in INPUT_SUFFIXES:
        assert suffix in fit_help and suffix in build_help
    assert describe_suffixes(role=MATRIX) in fit_help
    assert f"output store: {describe_suffixes(WRITABLE_KINDS)}" in build_help
