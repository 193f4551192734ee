"""Hostile files and real faults (issue 15): no input destroyed, no hang, no silent wrong answer.

* an output that overlaps its input is refused (API and CLI, with or without overwrite);
* metadata sizes (n_stripes, shape) are bounded by the array and the memory budget;
* a foreign zarr store whose fill value is a plausible distance: a lost chunk is detected;
* the checkpoint fingerprint covers the data (an in-place edit refuses the checkpoint);
* every entry point, the registry's CLARA entries included, reads a square matrix as one;
* messages: ``--labels DIR``, stripe counts, ANSI escapes in ``info``, the layout warning.
"""

import os

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import cli
from chunked_medoids._errors import OutputOverlapsInputError


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
