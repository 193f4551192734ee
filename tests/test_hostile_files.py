"""Hostile files and real faults (issue 15): no input destroyed, no hang, no silent wrong answer.

* an output that overlaps its input is refused (API and CLI, with or without overwrite);
* metadata sizes (n_stripes, shape) are bounded by the array and the memory budget;
* a foreign zarr store whose fill value is a plausible distance: a lost chunk is detected;
* the checkpoint fingerprint covers the data (an in-place edit refuses the checkpoint);
* every entry point, the registry's CLARA entries included, reads a square matrix as one;
* messages: ``--labels DIR``, stripe counts, ANSI escapes in ``info``, the layout warning.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import cli
from chunked_medoids._errors import (
    CheckpointMismatchError,
    IncompleteStoreError,
    InvalidParameterError,
    OutputOverlapsInputError,
    StoreCorruptionError,
)

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(3).normal(size=(40, 3))


def _zarr_features(path, X):
    import zarr

    zarr.create_array(store=str(path), data=X)
    return path


def _h5_features(path, X, name="X"):
    import h5py

    with h5py.File(path, "a") as f:
        f[name] = X
    return path


def _cli(capsys, *args):
    rc = cli.main([str(a) for a in args])
    out = capsys.readouterr()
    return rc, out.out, out.err


# ---------------------------------------------------------------------------------------
# 1. the output can never be the input
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("overwrite", [False, True])
def test_build_refuses_output_equal_to_zarr_input(tmp_path, X, overwrite):
    src = _zarr_features(tmp_path / "X.zarr", X)
    with pytest.raises(OutputOverlapsInputError, match="X.zarr.*it is the input itself"):
        cm.build_dissimilarity(str(src), str(src), "euclidean", overwrite=overwrite)
    import zarr

    np.testing.assert_array_equal(zarr.open_array(str(src), mode="r")[:], X)  # untouched


def test_build_refuses_overlap_through_a_symlink_and_nesting(tmp_path, X):
    src = _zarr_features(tmp_path / "X.zarr", X)
    link = tmp_path / "L.zarr"
    os.symlink(src, link)
    with pytest.raises(OutputOverlapsInputError, match="it is the input itself"):
        cm.build_dissimilarity(str(link), str(src), "euclidean", overwrite=True)
    with pytest.raises(OutputOverlapsInputError, match="lies inside the input"):
        cm.build_dissimilarity(str(src), str(src / "D.zarr"), "euclidean", overwrite=True)
    # an output directory holding the input would be deleted by overwrite=True
    out = tmp_path / "out.zarr"
    out.mkdir()
    np.save(out / "X.npy", X)
    with pytest.raises(OutputOverlapsInputError, match="the input lies inside it"):
        cm.build_dissimilarity(str(out / "X.npy"), str(out), "euclidean", overwrite=True)
    assert (out / "X.npy").is_file()
    # a memmap of that file is traced back to it too
    mm = np.load(out / "X.npy", mmap_mode="r")
    with pytest.raises(OutputOverlapsInputError):
        cm.build_dissimilarity(mm, str(out), "euclidean", overwrite=True)


@pytest.mark.parametrize("overwrite", [False, True])
def test_build_refuses_the_input_dataset_of_an_hdf5_file(tmp_path, X, overwrite):
    import h5py

    f = _h5_features(tmp_path / "F.h5", X, "grp/X")
    for out_ds in ("grp/X", "grp"):
        with pytest.raises(OutputOverlapsInputError, match="F.h5"):
            cm.build_dissimilarity(str(f), str(f), "euclidean", features_dataset="grp/X",
                                   dataset=out_ds, overwrite=overwrite)
    with h5py.File(f, "r") as h:
        np.testing.assert_array_equal(h["grp/X"][:], X)


def test_build_into_another_dataset_of_the_features_file_works(tmp_path, X):
    import h5py

    f = _h5_features(tmp_path / "F.h5", X)
    ref = cm.from_features(X, "euclidean").read_rows(0, len(X))
    for overwrite in (False, True):
        src = cm.build_dissimilarity(str(f), str(f), "euclidean", features_dataset="X", overwrite=overwrite)
        np.testing.assert_array_equal(src.read_rows(0, src.n), ref)
        src.close()
        with h5py.File(f, "r") as h:
            np.testing.assert_array_equal(h["X"][:], X)


def test_cli_build_refuses_output_equal_to_input(tmp_path, X, capsys):
    src = _zarr_features(tmp_path / "X.zarr", X)
    rc, _, err = _cli(capsys, "build", src, "-o", src, "--metric", "euclidean", "--overwrite")
    assert rc == 2
    assert "overlaps the input" in err and "X.zarr" in err and len(err.strip().splitlines()) == 1
    import zarr

    np.testing.assert_array_equal(zarr.open_array(str(src), mode="r")[:], X)


# ---------------------------------------------------------------------------------------
# 4. sizes read from a file are bounded before use (no hang, no out-of-memory)
# ---------------------------------------------------------------------------------------
def _edit_json(path, edit):
    doc = json.loads(path.read_text())
    edit(doc)
    path.write_text(json.dumps(doc))


def _run_cli_subprocess(*args, timeout=60):
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run([sys.executable, "-m", "chunked_medoids", *map(str, args)], capture_output=True,
                          text=True, timeout=timeout, env=env)


@pytest.fixture
def built(tmp_path, X):
    p = tmp_path / "D.zarr"
    cm.build_dissimilarity(X, str(p), block_rows=10)
    return p


@pytest.mark.parametrize("fmt", ["zarr", "h5"])
@pytest.mark.parametrize("bad", [[1, 2], "{not json", 3], ids=["list", "bad-json", "number"])
def test_metadata_that_is_not_a_json_object_is_a_typed_error(tmp_path, X, fmt, bad, capsys):
    """Messages: build metadata that is a list or bad JSON said 'Expecting value: line 1
    column 1' or 'cannot convert dictionary update sequence' (and blocked --overwrite)."""
    import h5py
    import zarr

    p = str(tmp_path / f"D.{fmt}")
    cm.build_dissimilarity(X, p, block_rows=10).close()
    if fmt == "zarr":
        zarr.open_array(p, mode="r+").attrs["chunked_medoids"] = bad
    else:
        with h5py.File(p, "a") as f:
            f["dissimilarity"].attrs["chunked_medoids"] = json.dumps(bad) if not isinstance(bad, str) else bad
    msg = r"D\.(zarr|h5).*'chunked_medoids' metadata attribute (is a JSON|does not parse).*overwrite=True"
    for call in (lambda: cm.open_dissimilarity(p), lambda: cm.store_info(p),
                 lambda: cm.build_dissimilarity(X, p, block_rows=10)):
        with pytest.raises(StoreCorruptionError, match=msg):
            call()
    rc, _, err = _cli(capsys, "fit", p, "-k", 3)  # not "pass --metric": the store is damaged
    assert rc == 2 and "metadata attribute" in err and "--metric" not in err
    src = cm.build_dissimilarity(X, p, block_rows=10, overwrite=True)  # the fix the message names
    np.testing.assert_array_equal(src.read_rows(0, len(X)), cm.from_features(X).read_rows(0, len(X)))
    src.close()


@pytest.mark.parametrize("what", ["built", "features"])
def test_zarr_json_that_does_not_parse_is_a_damaged_store_not_a_guess(tmp_path, X, what, capsys):
    """Messages: a zarr store whose own zarr.json is not JSON made ``fit`` say "cannot tell
    whether INPUT holds features or a dissimilarity matrix: pass --metric" (and the API
    "pass the directory of a zarr array"), as if it were not a store at all."""
    p = tmp_path / "D.zarr"
    if what == "built":
        cm.build_dissimilarity(X, str(p), block_rows=10).close()
    else:
        _zarr_features(p, X)
    (p / "zarr.json").write_text("{not json")
    msg = r"D\.zarr.*zarr\.json.*does not parse as JSON.*overwrite=True"
    for call in (lambda: cm.open_dissimilarity(str(p)), lambda: cm.store_info(str(p)),
                 lambda: cm.fasterpam(str(p), 3)):
        with pytest.raises(StoreCorruptionError, match=msg):
            call()
    for args in (("fit", p, "-k", 3), ("fit", p, "-k", 3, "--metric", "euclidean"), ("info", p)):
        rc, _, err = _cli(capsys, *args)
        assert rc == 2 and "does not parse as JSON" in err and "cannot tell" not in err, (args, err)
    src = cm.build_dissimilarity(X, str(p), block_rows=10, overwrite=True)  # the fix it names
    np.testing.assert_array_equal(src.read_rows(0, len(X)), cm.from_features(X).read_rows(0, len(X)))
    src.close()


def test_n_stripes_of_1e12_is_refused_at_once_by_info_fit_and_build(tmp_path, X, built):
    np.save(tmp_path / "X.npy", X)

    def edit(doc):
        doc["attributes"]["chunked_medoids"].update(n_stripes=10**12, complete=False)
    _edit_json(built / "zarr.json", edit)
    for args in (("info", built), ("fit", built, "-k", 3, "--precomputed"),
                 ("build", tmp_path / "X.npy", "-o", built, "--metric", "euclidean")):
        r = _run_cli_subprocess(*args)  # hung in a loop over os.path.exists before
        assert r.returncode == 2, (args, r.stderr)
        assert "n_stripes=1000000000000" in r.stderr and "D.zarr" in r.stderr
    with pytest.raises(StoreCorruptionError, match="n_stripes"):
        cm.open_dissimilarity(str(built))
    # overwrite=True replaces the damaged store
    src = cm.build_dissimilarity(tmp_path / "X.npy", str(built), overwrite=True)
    np.testing.assert_array_equal(src.read_rows(0, src.n), cm.from_features(X).read_rows(0, len(X)))


@pytest.mark.parametrize("side", [10**9, 2 * 10**8])
def test_huge_shape_in_zarr_json_gives_a_typed_error_not_a_hang_or_oom(tmp_path, X, side, monkeypatch):
    import zarr

    p = tmp_path / "F.zarr"
    D = cm.from_features(X).read_rows(0, len(X))
    zarr.create_array(store=str(p), shape=D.shape, chunks=(10, D.shape[1]), dtype="float32",
                      fill_value=0.0)[:] = D

    def edit(doc):
        doc["shape"] = [side, side]
        doc["chunk_grid"]["configuration"]["chunk_shape"] = [10, side]
    _edit_json(p / "zarr.json", edit)
    r = _run_cli_subprocess("info", p)  # walked the whole chunk grid before
    assert r.returncode == 0, r.stderr
    assert f"{side} × {side}" in r.stdout
    from chunked_medoids import _budget
    from chunked_medoids.algorithms import _common

    need = sum(_budget.run_floor_bytes(side, 3, 4, 10))
    if (_common.machine_memory() or 0) < need:  # this machine: the real check, in a fresh process
        r = _run_cli_subprocess("fit", p, "-k", 3, "--precomputed")
        assert r.returncode == 2 and f"the n={side} matrix needs at least" in r.stderr, r.stderr
    monkeypatch.setattr(_common, "machine_memory", lambda: 16 << 30)  # any machine smaller than need
    with pytest.raises(InvalidParameterError, match=f"n={side} matrix needs at least .* more than the 16.0 GiB"):
        cm.fasterpam(str(p), 3)


def test_stripe_count_of_an_incomplete_store_follows_the_chunks_on_disk(tmp_path, X, built):
    import zarr

    arr = zarr.open_array(str(built), mode="r+")
    meta = dict(arr.attrs["chunked_medoids"], complete=False, completed_stripes=[])
    arr.attrs["chunked_medoids"] = meta  # the record lags: 0 recorded, 4 on disk
    os.unlink(built / "c" / "2" / "0")
    with pytest.raises(IncompleteStoreError, match=r"1 of 4 row stripes .* never written \(4 of 4 .*metadata"):
        cm.open_dissimilarity(str(built))


# ---------------------------------------------------------------------------------------
# 5. a foreign zarr store with fill value 0 and a lost chunk
# ---------------------------------------------------------------------------------------
@pytest.fixture
def foreign_zero_fill(tmp_path, X):
    import zarr

    p = tmp_path / "Z.zarr"
    D = cm.from_features(X).read_rows(0, len(X))
    zarr.create_array(store=str(p), shape=D.shape, chunks=(10, D.shape[1]), dtype="float32",
                      fill_value=0.0)[:] = D
    return p


def test_lost_chunk_of_zero_fill_foreign_store_is_detected(foreign_zero_fill, capsys):
    p = foreign_zero_fill
    ref = cm.fasterpam(str(p), 3, random_state=0)
    os.unlink(p / "c" / "2" / "0")
    with pytest.raises(StoreCorruptionError, match=r"Z.zarr.*rows 20:30 is missing.*fill value 0.0"):
        cm.fasterpam(str(p), 3, random_state=0)  # was: loss computed with zeros
    with pytest.raises(StoreCorruptionError, match="rows 20:30"):
        cm.open_dissimilarity(str(p)).take_rows([0, 25])
    rc, _, err = _cli(capsys, "fit", p, "-k", 3, "--precomputed", "--seed", 0)
    assert rc == 2 and "rows 20:30 is missing" in err
    rc, out, _ = _cli(capsys, "info", p)
    assert rc == 0 and "3 of 4 chunks (1 missing)" in out
    # the opt-in reads the fill value
    src = cm.open_dissimilarity(str(p), allow_incomplete=True, validate=False)
    assert (src.read_rows(20, 30) == 0).all()
    assert ref.loss > 0


# ---------------------------------------------------------------------------------------
# 6. the checkpoint fingerprint covers the data
# ---------------------------------------------------------------------------------------
def _times_50(path, kind):
    if kind == "hdf5":
        import h5py

        with h5py.File(path, "r+") as f:
            d = f["dissimilarity"]
            d[100:1100, 100:1100] = d[100:1100, 100:1100] * 50
    else:
        import zarr

        a = zarr.open_array(str(path), mode="r+")
        a[100:1100, 100:1100] = a[100:1100, 100:1100] * 50


@pytest.mark.parametrize("kind", ["zarr", "hdf5", "foreign-zarr"])
def test_checkpoint_refused_after_the_store_changed_in_place(tmp_path, kind):
    # n = 2400: the rows the old fingerprint sampled (0, 1200, 2399) miss the edited block
    n = 2400
    X = np.random.default_rng(11).normal(size=(n, 2))
    if kind == "foreign-zarr":
        import zarr

        path = tmp_path / "F.zarr"
        zarr.create_array(store=str(path), shape=(n, n), chunks=(100, n), dtype="float32",
                          compressors=None, fill_value=0.0)[:] = cm.from_features(X).read_rows(0, n)
    else:
        path = tmp_path / ("D.zarr" if kind == "zarr" else "D.h5")
        cm.build_dissimilarity(X, str(path)).close()
    ckpt = tmp_path / "run.npz"
    fp = cm.open_dissimilarity(str(path)).fingerprint()
    done = cm.fasterpam(str(path), 5, random_state=0, checkpoint=ckpt)
    again = cm.fasterpam(str(path), 5, random_state=0, checkpoint=ckpt)  # reused: same data
    assert again.loss == done.loss
    _times_50(path, "hdf5" if kind == "hdf5" else "zarr")
    assert cm.open_dissimilarity(str(path), validate=False).fingerprint() != fp
    with pytest.raises(CheckpointMismatchError, match="(?i)fingerprint|another matrix|different"):
        cm.fasterpam(str(path), 5, random_state=0, checkpoint=ckpt, validate=False)


# ---------------------------------------------------------------------------------------
# 7. one input rule: the registry's CLARA entries read a square matrix as a matrix
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["clara", "fastclara", "fasterclara"])
def test_registry_clara_entries_take_a_square_matrix_as_a_matrix(name, tmp_path):
    X = np.random.default_rng(5).normal(size=(120, 2))
    D = cm.from_features(X).read_rows(0, 120)
    func = cm.METHODS[name].func
    ref = cm.clara(D, 3, metric="precomputed", variant=name, random_state=0)
    got = func(D, 3, random_state=0)
    assert got.loss == ref.loss
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.save(tmp_path / "D.npy", D)
    assert func(str(tmp_path / "D.npy"), 3, random_state=0).loss == ref.loss
    # features still work, by shape or with metric=
    feat = cm.clara(X, 3, variant=name, random_state=0)
    assert func(X, 3, random_state=0).loss == feat.loss
    assert func(X, 3, metric="euclidean", random_state=0).loss == feat.loss


# ---------------------------------------------------------------------------------------
# messages
# ---------------------------------------------------------------------------------------
def test_labels_given_a_directory_says_so(tmp_path, X, capsys):
    D = cm.from_features(X).read_rows(0, len(X))
    np.save(tmp_path / "D.npy", D)
    out = tmp_path / "out"
    out.mkdir()
    np.save(out / "labels.npy", np.zeros(len(X), dtype=np.int32))
    rc, _, err = _cli(capsys, "silhouette", tmp_path / "D.npy", "--precomputed", "--labels", out)
    assert rc == 2
    assert "Errno" not in err and "is a directory" in err and "labels.npy" in err


def test_info_escapes_control_characters_of_metadata(tmp_path, X, capsys, built):
    import zarr

    arr = zarr.open_array(str(built), mode="r+")
    arr.attrs["chunked_medoids"] = dict(arr.attrs["chunked_medoids"], metric="\x1b[2J\x1b[31mevil\nline",
                                        version="0.1\x07")
    rc, out, _ = _cli(capsys, "info", built)
    assert rc == 0
    assert "\x1b" not in out and "\x07" not in out
    assert "\\x1b[31mevil\\nline" in out
    rc, out, _ = _cli(capsys, "info", built, "--json")
    assert rc == 0 and "\x1b" not in out


def test_layout_warning_only_for_stored_chunks(tmp_path, caplog):
    import logging

    import h5py

    from chunked_medoids.engine import Engine

    n = 300
    D = cm.from_features(np.random.default_rng(1).normal(size=(n, 2))).read_rows(0, n)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f["dissimilarity"] = D  # contiguous
    eng = Engine(memory_limit=64 << 10, num_workers=1)
    with caplog.at_level(logging.WARNING, logger="chunked_medoids.engine"):
        for src in (cm.open_dissimilarity(D), cm.open_dissimilarity(str(tmp_path / "c.h5"))):
            eng.block_rows_for(src)
        assert "exceed memory_limit" not in caplog.text  # nothing stored in chunks: no warning
    eng.close()


# ---------------------------------------------------------------------------------------
# foreign layouts: column stripes read as rows, tiles reported once, rechunk
# ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def layouts(tmp_path_factory):
    import zarr

    d = tmp_path_factory.mktemp("layouts")
    n = 240
    D = cm.from_features(np.random.default_rng(2).normal(size=(n, 2))).read_rows(0, n)
    paths = {}
    for name, chunks in (("rows", (24, n)), ("cols", (n, 24)), ("tiles", (24, 24))):
        paths[name] = d / f"{name}.zarr"
        zarr.create_array(store=str(paths[name]), shape=(n, n), chunks=chunks, dtype="float32")[:] = D
    return D, paths


def test_column_striped_store_is_read_by_columns(layouts):
    D, paths = layouts
    src = cm.open_dissimilarity(str(paths["cols"]))
    assert src.block_rows == 24  # one column stripe, not the whole matrix, per block
    np.testing.assert_array_equal(src.read_rows(0, src.n), D)
    np.testing.assert_array_equal(src.read_rows(30, 70), D[30:70])
    np.testing.assert_array_equal(src.take_rows([200, 3, 3, 57]), D[[200, 3, 3, 57]])
    ref = cm.fasterpam(str(paths["rows"]), 4, random_state=0)
    got = cm.fasterpam(str(paths["cols"]), 4, random_state=0)
    assert got.loss == ref.loss
    np.testing.assert_array_equal(got.medoids, ref.medoids)


def test_lost_column_chunk_is_named(tmp_path, layouts):
    D, paths = layouts
    p = tmp_path / "cols.zarr"
    shutil.copytree(paths["cols"], p)
    os.unlink(p / "c" / "0" / "3")
    with pytest.raises(StoreCorruptionError, match="columns 72:96 is missing"):
        cm.open_dissimilarity(str(p)).read_rows(70, 80)


def test_tiled_store_is_reported_once_with_its_cost(layouts, caplog):
    import logging

    from chunked_medoids.sources import zarr_store

    _, paths = layouts
    zarr_store._TILE_WARNED.discard(str(paths["tiles"]))
    with caplog.at_level(logging.WARNING, logger="chunked_medoids.sources.zarr_store"):
        cm.open_dissimilarity(str(paths["tiles"]))
        cm.open_dissimilarity(str(paths["tiles"]))
    msgs = [r.getMessage() for r in caplog.records if "tiles of 24 x 24" in r.getMessage()]
    assert len(msgs) == 1
    assert "100 chunks" in msgs[0] and "chunked-medoids rechunk" in msgs[0]


@pytest.mark.parametrize("name", ["tiles", "cols"])
def test_rechunk_writes_a_complete_row_striped_copy(tmp_path, layouts, name, capsys):
    import zarr

    D, paths = layouts
    out = tmp_path / "copy.zarr"
    rc, stdout, err = _cli(capsys, "rechunk", paths[name], "-o", out, "--memory-limit", "256KiB")
    assert rc == 0, err
    info = cm.store_info(str(out))
    assert info["complete"] and info["chunks"][1] == D.shape[0] and info["chunks"][0] < D.shape[0]
    np.testing.assert_array_equal(zarr.open_array(str(out), mode="r")[:], D)
    src = cm.open_dissimilarity(str(out))
    assert src.block_rows == info["chunks"][0]
    # a rerun finds the copy complete; the input itself can never be the output
    assert _cli(capsys, "rechunk", paths[name], "-o", out)[0] == 0
    rc, _, err = _cli(capsys, "rechunk", paths[name], "-o", paths[name], "--overwrite")
    assert rc == 2 and "overlaps the input" in err
    np.testing.assert_array_equal(zarr.open_array(str(paths[name]), mode="r")[:], D)


# ---------------------------------------------------------------------------------------
# leftovers: stale *.partial chunk files, a store replaced under a reader
# ---------------------------------------------------------------------------------------
def test_stale_partial_chunk_files_are_removed_by_the_next_build(tmp_path, X, built):
    import zarr

    stale = built / "c" / "1" / "0.0123456789abcdef.partial"  # zarr's temp name of a killed writer
    stale.write_bytes(b"torn")
    arr = zarr.open_array(str(built), mode="r+")
    arr.attrs["chunked_medoids"] = dict(arr.attrs["chunked_medoids"], complete=False)
    os.unlink(built / "c" / "2" / "0")
    src = cm.build_dissimilarity(X, str(built), block_rows=10)
    assert not stale.exists()
    np.testing.assert_array_equal(src.read_rows(0, src.n), cm.from_features(X).read_rows(0, len(X)))
    # a creation whose metadata never reached the disk (full disk) is not "foreign"
    p = tmp_path / "aborted.zarr"
    (p / "c" / "0").mkdir(parents=True)
    (p / "zarr.abcdef.partial").write_bytes(b"{")
    src = cm.build_dissimilarity(X, str(p), block_rows=10)
    assert src.n == len(X) and not (p / "zarr.abcdef.partial").exists()


def test_reader_notices_the_store_replaced_under_it(tmp_path, X, built):
    src = cm.open_dissimilarity(str(built))
    first = src.read_rows(0, 10)
    cm.build_dissimilarity(X * 2, str(built), block_rows=10, overwrite=True)  # a concurrent overwrite
    with pytest.raises(StoreCorruptionError, match="replaced or rewritten while it was being read"):
        src.read_rows(10, 20)
    assert first.shape == (10, len(X))


def test_hdf5_reader_notices_the_store_replaced_under_it(tmp_path, X):
    p = str(tmp_path / "D.h5")
    cm.build_dissimilarity(X, p, block_rows=10).close()
    src = cm.open_dissimilarity(p)
    first = src.read_rows(0, 10)
    cm.build_dissimilarity(X * 2, p, block_rows=10, overwrite=True)  # unlinks and recreates the file
    with pytest.raises(StoreCorruptionError, match=r"D.h5:.*dissimilarity was replaced .*file was replaced"):
        src.read_rows(10, 20)
    assert first.shape == (10, len(X))


def _overwrite_in_a_subprocess(X, npy, store, env=None):
    np.save(npy, X)
    return subprocess.run(
        [sys.executable, "-m", "chunked_medoids", "build", str(npy), "-o", str(store), "--metric", "euclidean",
         "--block-rows", "10", "--overwrite"], capture_output=True, text=True, timeout=120,
        env={**os.environ, **(env or {})})


def _pass_with_overwrite_after_first_block(tmp_path, X, env):
    """A pass (Engine.map_blocks, one thread) over an HDF5 store; while its first block is
    processed another process runs ``build --overwrite`` of the store."""
    p = tmp_path / "D.h5"
    cm.build_dissimilarity(X, str(p), block_rows=10).close()
    src = cm.open_dissimilarity(str(p))
    runs = []

    def rowsum(block, start, stop, state):
        if not runs:
            runs.append(_overwrite_in_a_subprocess(X * 2, tmp_path / "X2.npy", p, env))
        return block.sum(axis=1, dtype=np.float64)

    def run():
        with cm.Engine(num_workers=1, memory_limit="64MiB") as eng:
            return np.concatenate(eng.map_blocks(src, rowsum, blocks=[(0, 10), (10, 20), (20, 30), (30, 40)]))

    return p, src, runs, run


def test_hdf5_overwrite_is_refused_while_another_process_reads_the_store(tmp_path, X):
    p, src, runs, run = _pass_with_overwrite_after_first_block(tmp_path, X, None)
    sums = run()
    proc = runs[0]
    assert proc.returncode == 2, proc.stderr
    assert "cannot overwrite" in proc.stderr and "D.h5" in proc.stderr and "another process" in proc.stderr
    D = cm.from_features(X).read_rows(0, len(X))
    np.testing.assert_allclose(sums, D.sum(axis=1, dtype=np.float64), rtol=1e-6)  # the pass saw one matrix
    src.close()
    np.testing.assert_array_equal(cm.open_dissimilarity(str(p)).read_rows(0, len(X)), D)  # store unchanged


def test_hdf5_reader_notices_an_overwrite_where_file_locking_is_off(tmp_path, X):
    p, src, runs, run = _pass_with_overwrite_after_first_block(tmp_path, X, {"HDF5_USE_FILE_LOCKING": "FALSE"})
    with pytest.raises(StoreCorruptionError, match="was replaced or rewritten while it was being read"):
        run()
    assert runs[0].returncode == 0, runs[0].stderr  # nothing stopped the writer: the reader must notice


def test_hdf5_dataset_rebuilt_in_place_is_noticed_by_a_reopening_reader(tmp_path, X):
    import pickle

    import h5py

    p = str(tmp_path / "D.h5")
    with h5py.File(p, "w") as f:
        f["X"] = X  # another dataset: overwrite deletes and recreates only 'dissimilarity'
    cm.build_dissimilarity(X, p, block_rows=10).close()
    src = cm.open_dissimilarity(p)
    worker_copy = pickle.loads(pickle.dumps(src))  # what a Dask worker receives: opens by name
    cm.build_dissimilarity(X * 2, p, block_rows=10, overwrite=True)
    for reader in (src, worker_copy):
        with pytest.raises(StoreCorruptionError, match="dataset was rebuilt"):
            reader.read_rows(0, 10)


def test_lost_chunk_of_zero_fill_foreign_hdf5_dataset_is_detected(tmp_path, X):
    import h5py

    D = cm.from_features(X).read_rows(0, len(X))
    p = tmp_path / "Z.h5"
    with h5py.File(p, "w") as f:
        d = f.create_dataset("dissimilarity", shape=D.shape, chunks=(10, D.shape[1]), dtype="f4", fillvalue=0)
        for a in range(0, len(X), 10):
            if a != 20:  # this chunk is never written (lost)
                d[a:a + 10] = D[a:a + 10]
    with pytest.raises(StoreCorruptionError, match=r"Z.h5.*rows 20:30.*never written"):
        cm.fasterpam(str(p), 3, random_state=0)
    src = cm.open_dissimilarity(str(p), allow_incomplete=True, validate=False)
    assert (src.read_rows(20, 30) == 0).all()


def test_column_chunked_hdf5_dataset_is_read_by_columns(tmp_path, layouts):
    import h5py

    D, paths = layouts
    p = tmp_path / "cols.h5"
    with h5py.File(p, "w") as f:
        f.create_dataset("dissimilarity", data=D, chunks=(D.shape[0], 24))
    src = cm.open_dissimilarity(str(p))
    assert src.block_rows == 24
    np.testing.assert_array_equal(src.read_rows(0, src.n), D)
    np.testing.assert_array_equal(src.take_rows([5, 200, 5]), D[[5, 200, 5]])
    assert cm.fasterpam(str(p), 4, random_state=0).loss == cm.fasterpam(str(paths["rows"]), 4, random_state=0).loss



def test_tiled_hdf5_dataset_is_reported_once_with_its_cost(tmp_path, caplog):
    """Tiles of a foreign HDF5 dataset are reported like zarr tiles (once, with the cost and
    the rechunk command); a store built by build_dissimilarity (full-width stripes) is not."""
    import logging

    import h5py

    rng = np.random.default_rng(5)
    X = rng.normal(size=(240, 3))
    D = np.sqrt(((X[:, None] - X[None]) ** 2).sum(-1)).astype(np.float32)
    path = tmp_path / "tiles.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset("dist", data=D, chunks=(24, 24))
    built = tmp_path / "built.h5"
    cm.build_dissimilarity(X, str(built), metric="euclidean")
    with caplog.at_level(logging.WARNING, logger="chunked_medoids"):
        cm.open_dissimilarity(str(path), dataset="dist")
        cm.open_dissimilarity(str(path), dataset="dist")
        cm.open_dissimilarity(str(built))
    msgs = [r.getMessage() for r in caplog.records if "tiles of" in r.getMessage()]
    assert len(msgs) == 1, msgs
    assert "HDF5 dataset" in msgs[0] and "100 chunks" in msgs[0]
    assert f"chunked-medoids rechunk {path} --dataset dist -o COPY.h5" in msgs[0]
