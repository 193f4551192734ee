"""Batch-run robustness of the CLI: SIGKILL / SIGTERM mid-run, resume, identical results.

``fit --checkpoint F --checkpoint-interval 0`` saves at every block boundary; killing the
process at (seeded) random moments and rerunning the same command must give exactly the
medoids, labels and loss of an uninterrupted run.  ``build`` resumes from the stripes on
disk and must give a bit-identical matrix.  SIGTERM saves and exits with code 3; a
checkpoint of another k or other data is refused with exit code 2.
"""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

import chunked_medoids as cm

pytestmark = pytest.mark.slow  # every test here drives CLI subprocesses and signals

N, K, SEED = 2000, 20, 3
BUDGET = "3MiB"  # small blocks: many block boundaries, hence many checkpoints per pass


def cli_cmd(*args):
    return [sys.executable, "-m", "chunked_medoids", *map(str, args)]


def popen(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen(cli_cmd(*args), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def run(*args, timeout=120):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run(cli_cmd(*args), capture_output=True, text=True, timeout=timeout, env=env)


def wait_for(pred, proc, timeout=60.0):
    """Poll ``pred()`` until true; False if the process ended first."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout:
        if pred():
            return True
        if proc.poll() is not None:
            return pred()
        time.sleep(0.01)
    raise AssertionError("timed out waiting for the subprocess")


def ckpt_header(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["__header__"]))


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    d = tmp_path_factory.mktemp("kill")
    rng = np.random.default_rng(11)
    X = rng.normal(size=(N, 6))
    np.save(d / "X.npy", X)
    path = d / "D.zarr"
    cm.build_dissimilarity(X, str(path), "euclidean", memory_limit="8MiB")
    ref = cm.fasterpam(str(path), K, random_state=SEED, memory_limit=BUDGET)
    return d, path, ref


def fit_args(path, ckpt, out, k=K):
    return ("fit", path, "-k", k, "--seed", SEED, "--memory-limit", BUDGET, "--checkpoint", ckpt,
            "--checkpoint-interval", 0, "-o", out, "--no-progress")


def assert_same_as(out, ref):
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert np.array_equal(np.load(out / "labels.npy"), ref.labels)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == ref.loss
    assert summary["loss_history"] == ref.loss_history
    assert summary["n_swap"] == ref.n_swap and summary["n_iter"] == ref.n_iter


def count_saves(ckpt, proc, target):
    """Wait until ``ckpt`` was rewritten ``target`` times (distinct mtimes seen) or proc ended."""
    seen, last = 0, os.stat(ckpt).st_mtime_ns if ckpt.exists() else None
    while seen < target and proc.poll() is None:
        now = os.stat(ckpt).st_mtime_ns if ckpt.exists() else None
        if now != last:
            seen, last = seen + 1, now
        time.sleep(0.003)
    return seen


def test_fit_sigkill_resume_identical(store, tmp_path):
    d, path, ref = store
    ckpt, out = tmp_path / "fit.ckpt", tmp_path / "out"
    rng = np.random.default_rng(2024)
    interrupted_states = []
    for _ in range(3):
        proc = popen(*fit_args(path, ckpt, out))
        # kill after a seeded number of checkpoint saves (progress, not wall time, so the
        # moments do not depend on the machine's speed) plus a seeded sub-block delay
        count_saves(ckpt, proc, int(rng.integers(1, 30)))
        time.sleep(float(rng.uniform(0.0, 0.02)))
        if proc.poll() is not None:
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        assert proc.returncode == -signal.SIGKILL
        header = ckpt_header(ckpt)
        interrupted_states.append((header["complete"], header["state"]["n_iter"], header["state"]["pos"]))
        if (out / "summary.json").exists():  # killed after it had finished its work
            assert header["complete"]
            break
    # at least one kill interrupted a run that had made progress but was not finished
    assert any(not complete and (n_iter, pos) != (0, 0) for complete, n_iter, pos in interrupted_states), \
        interrupted_states
    proc = run(*fit_args(path, ckpt, out))
    assert proc.returncode == 0, proc.stderr
    assert_same_as(out, ref)
    assert ckpt_header(ckpt)["complete"] is True


def test_fit_sigterm_exit_3_then_resume(store, tmp_path):
    d, path, ref = store
    ckpt, out = tmp_path / "fit.ckpt", tmp_path / "out"
    proc = popen(*fit_args(path, ckpt, out))
    assert wait_for(ckpt.exists, proc), "finished before writing a checkpoint"
    proc.send_signal(signal.SIGTERM)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 3, stderr
    assert "checkpoint" in stderr and str(ckpt) in stderr and "Traceback" not in stderr
    assert ckpt_header(ckpt)["complete"] is False
    assert not out.exists() or not (out / "summary.json").exists()
    proc = run(*fit_args(path, ckpt, out))
    assert proc.returncode == 0, proc.stderr
    assert_same_as(out, ref)

    # the finished checkpoint belongs to this run: other k / other data are refused
    proc = run(*fit_args(path, ckpt, tmp_path / "other", k=K - 5))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("chunked-medoids: error: ")
    assert "does not match" in lines[0] and "k" in lines[0]

    other = d / "D_other.zarr"
    if not other.exists():
        X = np.load(d / "X.npy")[: N // 2]
        cm.build_dissimilarity(X, str(other), "euclidean", memory_limit="8MiB")
    proc = run(*fit_args(other, ckpt, tmp_path / "other2"))
    assert proc.returncode == 2
    assert "another dissimilarity matrix" in proc.stderr and len(proc.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "other2" / "summary.json").exists()


def _chunks(path):
    c = path / "c"
    return len(os.listdir(c)) if c.is_dir() else 0


def test_build_kill_resume_bit_identical(store, tmp_path):
    d, _, _ = store
    X = np.load(d / "X.npy")
    store_path = tmp_path / "B.zarr"
    args = ("build", d / "X.npy", "-o", store_path, "--metric", "manhattan", "--memory-limit", "512KiB",
            "--no-progress")
    rng = np.random.default_rng(7)
    incomplete_seen = 0
    for sig, expected in ((signal.SIGKILL, -signal.SIGKILL), (signal.SIGTERM, 3)):
        start = _chunks(store_path)
        proc = popen(*args)
        target = start + int(rng.integers(3, 20))
        wait_for(lambda: _chunks(store_path) >= target, proc)
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == expected, stderr
        if sig == signal.SIGTERM:
            assert "rerun" in stderr and "Traceback" not in stderr
        info = run("info", store_path, "--json")
        assert info.returncode == 0, info.stderr
        meta = json.loads(info.stdout)
        if not meta["complete"]:
            incomplete_seen += 1
            assert 0 < meta["completed_stripes"] < meta["n_stripes"]
            # an incomplete store is refused for clustering with a clear message
            refused = run("fit", store_path, "-k", 3)
            assert refused.returncode == 2 and "complete" in refused.stderr.lower()
    assert incomplete_seen >= 1
    proc = run(*args)
    assert proc.returncode == 0, proc.stderr
    fresh = tmp_path / "fresh.zarr"
    cm.build_dissimilarity(X, str(fresh), "manhattan", memory_limit="64MiB")
    a = cm.open_dissimilarity(str(store_path))
    b = cm.open_dissimilarity(str(fresh))
    ra, rb = a.read_rows(0, a.n), b.read_rows(0, b.n)
    assert ra.dtype == rb.dtype and ra.tobytes() == rb.tobytes()


# ---------------------------------------------------------------------------------------
# interruptible, resumable initialisation and k-steps (issue 12)
# ---------------------------------------------------------------------------------------
KB = 40  # BUILD medoids: 40 passes over D, long enough to be interrupted


@pytest.fixture(scope="module")
def build_ref(store):
    _, path, _ = store
    medoids = cm.build(str(path), KB, memory_limit=BUDGET)
    res = cm.fasterpam(str(path), KB, init="build", random_state=SEED, memory_limit=BUDGET)
    return medoids, res


def build_args(path, ckpt, out):
    return fit_args(path, ckpt, out, k=KB) + ("--init", "build")


def ckpt_kind(path):
    try:
        return ckpt_header(path)["kind"]
    except (OSError, ValueError, KeyError):  # not written yet
        return None


def saved_medoids(path):
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
        return z[header["state"]["medoids"]["__array__"]]


def test_build_init_sigterm_exit_3_within_a_block_then_resume(store, build_ref, tmp_path):
    _, path, _ = store
    ref_build, ref = build_ref
    ckpt, out = tmp_path / "b.ckpt", tmp_path / "out"
    proc = popen(*build_args(path, ckpt, out))
    assert wait_for(lambda: ckpt_kind(ckpt) == "init-build" and len(saved_medoids(ckpt)) >= 3, proc)
    t0 = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    latency = time.monotonic() - t0
    assert proc.returncode == 3, stderr
    assert "checkpoint" in stderr and "Traceback" not in stderr
    header = ckpt_header(ckpt)
    assert header["kind"] == "init-build" and header["complete"] is False
    m = saved_medoids(ckpt)
    assert 3 <= len(m) < KB
    np.testing.assert_array_equal(m, ref_build[: len(m)])  # exactly BUILD's first medoids
    assert latency < 10.0, latency  # one block of a 2000-point store, not the rest of BUILD
    proc = run(*build_args(path, ckpt, out))
    assert proc.returncode == 0, proc.stderr
    assert_same_as(out, ref)


def test_build_init_sigkill_loses_at_most_one_medoid(store, build_ref, tmp_path):
    _, path, _ = store
    ref_build, ref = build_ref
    ckpt, out = tmp_path / "b.ckpt", tmp_path / "out"
    rng = np.random.default_rng(5)
    counts = []
    for _ in range(2):
        before = len(saved_medoids(ckpt)) if ckpt_kind(ckpt) == "init-build" else 0
        proc = popen(*build_args(path, ckpt, out))
        saves = count_saves(ckpt, proc, int(rng.integers(2, 8)))
        if proc.poll() is not None or ckpt_kind(ckpt) != "init-build":
            proc.kill()
            proc.wait()
            break
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        m = saved_medoids(ckpt)
        np.testing.assert_array_equal(m, ref_build[: len(m)])
        # the state is saved after every medoid: each observed save is one more medoid kept
        assert len(m) >= before + saves
        counts.append(len(m))
    assert counts and 0 < counts[0] < KB
    proc = run(*build_args(path, ckpt, out))
    assert proc.returncode == 0, proc.stderr
    assert_same_as(out, ref)


def dyn_args(path, ckpt, out):
    return ("dynmsc", path, "--kmin", 2, "--kmax", 8, "--seed", SEED, "--memory-limit", BUDGET,
            "--checkpoint", ckpt, "--checkpoint-interval", 0, "-o", out, "--no-progress")


def assert_same_dyn(out, ref):
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert np.array_equal(np.load(out / "labels.npy"), ref.labels)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == ref.loss and summary["score"] == ref.score
    assert summary["loss_history"] == ref.loss_history


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["sigterm", "sigkill"])
def test_dynmsc_interrupt_during_init_and_k_steps_then_resume(store, tmp_path, sig):
    _, path, _ = store
    ref = cm.dynmsc(str(path), 8, kmin=2, random_state=SEED, memory_limit=BUDGET)
    ckpt, out = tmp_path / "d.ckpt", tmp_path / "out"
    kinds = []
    # first during the BUILD of the kmax medoids, then during the k-steps
    for want in ("init-build", "dynmsc"):
        proc = popen(*dyn_args(path, ckpt, out))
        if not wait_for(lambda: ckpt_kind(ckpt) == want, proc, timeout=120):  # noqa: B023
            break
        if want == "dynmsc":
            count_saves(ckpt, proc, 3)
        if proc.poll() is not None:
            break
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == (3 if sig == signal.SIGTERM else -signal.SIGKILL), stderr
        kinds.append(ckpt_kind(ckpt))
        assert ckpt_header(ckpt)["complete"] is False
    assert "init-build" in kinds, kinds
    proc = run(*dyn_args(path, ckpt, out))
    assert proc.returncode == 0, proc.stderr
    assert_same_dyn(out, ref)


# -- LAB and CLARA samples: a child process whose row reads are slowed down, so that the
# short phases last long enough to be hit by a signal (the results do not change)
_CHILD = """
import sys, time
import numpy as np
import chunked_medoids as cm
from chunked_medoids.checkpoint import CheckpointInterrupt, install_signal_handlers

path, what, ckpt, out = sys.argv[1:5]
src = cm.open_dissimilarity(path)
cls = type(src)
orig = cls.take_rows
def take_rows(self, idx):
    time.sleep(0.02)
    return orig(self, idx)
cls.take_rows = take_rows
install_signal_handlers()
try:
    if what == "lab":
        res = cm.fasterpam(src, 60, init="lab", random_state=3, memory_limit="3MiB", checkpoint=ckpt,
                           checkpoint_interval=0)
    else:
        res = cm.clara(src, 5, n_samples=10, sample_size=150, random_state=3, memory_limit="3MiB",
                       checkpoint=ckpt, num_workers=2)
except CheckpointInterrupt:
    sys.exit(3)
np.savez(out, medoids=res.medoids, labels=res.labels, loss=res.loss, history=res.loss_history)
"""


def child(path, what, ckpt, out, tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.Popen([sys.executable, str(script), str(path), what, str(ckpt), str(out)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


@pytest.mark.parametrize("what", ["lab", "clara"])
def test_lab_and_clara_samples_sigterm_sigkill_resume(store, tmp_path, what):
    _, path, _ = store
    if what == "lab":
        ref = cm.fasterpam(str(path), 60, init="lab", random_state=3, memory_limit="3MiB")
        want = "init-lab"
    else:
        ref = cm.clara(str(path), 5, n_samples=10, sample_size=150, random_state=3, memory_limit="3MiB",
                       num_workers=2)
        want = "clara"
    ckpt, out = tmp_path / "c.ckpt", tmp_path / "res.npz"
    hits = []
    for sig in (signal.SIGKILL, signal.SIGTERM):
        proc = child(path, what, ckpt, out, tmp_path)
        if not wait_for(lambda: ckpt_kind(ckpt) == want, proc, timeout=120):
            break
        count_saves(ckpt, proc, 2)
        if proc.poll() is not None:
            break
        state_before = ckpt_header(ckpt)["state"]
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=60)
        assert proc.returncode == (3 if sig == signal.SIGTERM else -signal.SIGKILL), stderr
        header = ckpt_header(ckpt)
        if header["kind"] == want and not header["complete"]:
            hits.append(sig)
            if what == "lab":
                assert len(saved_medoids(ckpt)) >= 1
            else:  # saved per sample: finished samples of the current wave are kept
                st = header["state"]
                assert len(st["pending_loss"]) + len(st["sample_losses"]) >= 1
                assert len(st["sample_losses"]) >= len(state_before["sample_losses"])
    assert hits, "no signal arrived during the phase under test"
    proc = child(path, what, ckpt, out, tmp_path)
    _, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 0, stderr
    with np.load(out) as z:
        np.testing.assert_array_equal(z["medoids"], ref.medoids)
        np.testing.assert_array_equal(z["labels"], ref.labels)
        assert float(z["loss"]) == ref.loss and z["history"].tolist() == ref.loss_history
