"""A real full disk (issue 15, item 3): a small tmpfs mounted for the test (root only).

For zarr and HDF5 builds, checkpoints and the ``-o`` outputs of ``fit``: the CLI exits 2
with a message naming the path, nothing half-written is passed off as complete, and after
the file system grows (``mount -o remount,size=...``) a rerun of the same command
completes -- for ``-o``, from the finished checkpoint, without recomputing.
"""

import contextlib
import json
import os
import subprocess
import sys
import uuid

import numpy as np
import pytest

import chunked_medoids as cm

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@contextlib.contextmanager
def tmpfs(tmp_path, size):
    """Mount a tmpfs of ``size`` on a fresh directory; unmount it in any case."""
    if os.geteuid() != 0:
        pytest.skip("mounting a real small file system needs root (a tmpfs is mounted for the test)")
    mnt = tmp_path / f"fs-{uuid.uuid4().hex[:8]}"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here ({r.stderr.strip() or r.returncode})")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def grow(mnt, size):
    subprocess.run(["mount", "-o", f"remount,size={size}", str(mnt)], check=True)


def cli(*args, script=None, timeout=300):
    env = dict(os.environ, OMP_NUM_THREADS="1",
               PYTHONPATH=os.pathsep.join([ROOT, os.environ.get("PYTHONPATH", "")]))
    cmd = [sys.executable, "-m", "chunked_medoids", *map(str, args)] if script is None else \
        [sys.executable, "-c", script, *map(str, args)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)


@pytest.fixture(scope="module")
def features(tmp_path_factory):
    d = tmp_path_factory.mktemp("feat")
    X = np.random.default_rng(4).normal(size=(400, 3))
    np.save(d / "X.npy", X)
    return d / "X.npy", cm.from_features(X).read_rows(0, 400)


@pytest.mark.parametrize("suffix", ["zarr", "h5"])
def test_build_on_a_full_disk_exits_2_names_the_store_and_resumes(tmp_path, features, suffix):
    xpath, D = features
    with tmpfs(tmp_path, "200k") as mnt:  # the 640 KB matrix does not fit
        out = mnt / f"D.{suffix}"
        args = ("build", xpath, "-o", out, "--metric", "euclidean", "--compressor", "none", "--block-rows", 20)
        r = cli(*args)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])  # was SIGSEGV (139) for HDF5
        assert str(out) in r.stderr and "No space left on device" in r.stderr and "Errno" not in r.stderr
        assert "Traceback" not in r.stderr
        if out.exists():  # whatever was written is never complete
            info = cli("info", out, "--json")
            assert info.returncode != 0 or json.loads(info.stdout)["complete"] is False
        grow(mnt, "4m")
        r = cli(*args)
        assert r.returncode == 0, r.stderr[-2000:]
        src = cm.open_dissimilarity(str(out))
        np.testing.assert_array_equal(src.read_rows(0, src.n), D)
        src.close()


_NO_SPACE_CHECK = """
import sys
from chunked_medoids import builder
builder._check_free_space = lambda path, nbytes: None  # let HDF5 itself meet the full disk
from chunked_medoids.cli import main
sys.argv[0] = "chunked-medoids"
sys.exit(main())
"""


def test_hdf5_failing_mid_write_exits_2_not_sigsegv(tmp_path, features):
    xpath, D = features
    with tmpfs(tmp_path, "100k") as mnt:
        out = mnt / "D.h5"
        r = cli("build", xpath, "-o", out, "--metric", "euclidean", script=_NO_SPACE_CHECK)
        assert r.returncode == 2, (r.returncode, r.stderr[-2000:])
        assert str(out) in r.stderr and "No space left on device" in r.stderr
        assert "end this Python process" in r.stderr
        grow(mnt, "4m")
        r = cli("build", xpath, "-o", out, "--metric", "euclidean", "--overwrite")
        assert r.returncode == 0, r.stderr[-2000:]


def test_checkpoint_on_a_full_disk_names_the_file(tmp_path, features):
    xpath, _ = features
    with tmpfs(tmp_path, "8k") as mnt:
        ckpt = mnt / "run.npz"
        r = cli("fit", xpath, "--metric", "euclidean", "-k", 3, "--seed", 0, "--checkpoint", ckpt,
                "--checkpoint-interval", 0)
        assert r.returncode == 2, r.stderr[-2000:]
        assert str(ckpt) in r.stderr and "No space left on device" in r.stderr and "Errno" not in r.stderr
        assert not [f for f in os.listdir(mnt) if f.endswith(".part")]  # no torn temporary left


def test_full_disk_writing_outputs_keeps_the_result_in_the_checkpoint(tmp_path, features):
    xpath, _ = features
    ckpt = tmp_path / "run.npz"
    ref = tmp_path / "ref"
    assert cli("fit", xpath, "--metric", "euclidean", "-k", 3, "--seed", 0, "-o", ref).returncode == 0
    with tmpfs(tmp_path, "4k") as mnt:
        outdir = mnt / "out"
        args = ("fit", xpath, "--metric", "euclidean", "-k", 3, "--seed", 0, "--checkpoint", ckpt, "-o", outdir)
        r = cli(*args)
        assert r.returncode == 2, r.stderr[-2000:]
        assert str(outdir) in r.stderr and "No space left on device" in r.stderr
        assert str(ckpt) in r.stderr and "without recomputing" in r.stderr
        assert not (outdir / "summary.json").exists()  # no complete-looking partial outputs
        grow(mnt, "4m")
        r = cli(*args, "-v")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "resuming from checkpoint" in r.stderr
    # (the tmpfs is gone; the result was the same as a fresh run's)


def test_full_disk_outputs_without_checkpoint_print_the_medoids(tmp_path, features):
    xpath, _ = features
    with tmpfs(tmp_path, "4k") as mnt:
        r = cli("fit", xpath, "--metric", "euclidean", "-k", 3, "--seed", 0, "-o", mnt / "out")
        assert r.returncode == 2, r.stderr[-2000:]
        assert "medoids [" in r.stderr and "--checkpoint FILE" in r.stderr
