"""Hostile checkpoints and parameters (issue 15, items 2 and 8, the checkpoint messages and the
leftover temp files): every edited, damaged or foreign checkpoint is refused with a typed
error naming the file and the field before any kernel sees it; bad weights are refused."""

import json
import os
import signal
import subprocess
import sys

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import checkpoint as ck
from chunked_medoids._errors import CheckpointCorruptError, CheckpointMismatchError
from chunked_medoids._state import BuildState, LabState

N = 60


def _euclid(n=N, seed=0, d=3):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))


D = _euclid()


def _read(path):
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
        arrays = {k: z[k] for k in z.files if k != "__header__"}
    return header, arrays


def _write(path, header, arrays):
    np.savez(open(path, "wb"), __header__=np.array(json.dumps(header)), **arrays)


def _stop_at_milestone(monkeypatch, nth, kind):
    orig = ck.Checkpoint.milestone
    calls = {"n": 0}

    def patched(self, state_fn):
        if isinstance(state_fn(), kind):
            calls["n"] += 1
            if calls["n"] == nth:
                self.stop.request(signal.SIGTERM)
        return orig(self, state_fn)

    monkeypatch.setattr(ck.Checkpoint, "milestone", patched)
    return lambda: monkeypatch.setattr(ck.Checkpoint, "milestone", orig)


# every driver family: (how to run it, how to produce its checkpoint)
def _run_fasterpam(path):
    return cm.fasterpam(D, 4, random_state=0, checkpoint=path)


def _run_fastpam2(path):
    return cm.fastpam2(D, 4, random_state=0, checkpoint=path)


def _run_msc(path):
    return cm.fastermsc(D, 4, random_state=0, checkpoint=path)


def _run_dynmsc(path):
    return cm.dynmsc(D, 5, random_state=0, checkpoint=path)


def _run_clarans(path):
    return cm.clarans(D, 4, numlocal=2, random_state=0, checkpoint=path)


def _run_clara(path):
    return cm.clara(D, 4, precomputed=True, n_samples=3, sample_size=20, random_state=0, checkpoint=path)


def _run_build(path):
    return cm.fasterpam(D, 4, init="build", random_state=0, checkpoint=path)


def _run_lab(path):
    return cm.fasterpam(D, 4, init="lab", random_state=0, checkpoint=path)


def _make(run, path, monkeypatch, init_kind=None):
    """A real checkpoint of ``run`` (finished, or stopped after 2 init medoids)."""
    if init_kind is None:
        run(path)
    else:
        restore = _stop_at_milestone(monkeypatch, 2, init_kind)
        with pytest.raises(ck.CheckpointInterrupt):
            run(path)
        restore()
    return _read(path)


def _set(key, fn):
    def edit(header, arrays):
        arrays[key] = fn(arrays[key])
    return edit


def _const(key, value, index=0):
    def fn(a):
        a = a.copy()
        a.reshape(-1)[index] = value
        return a
    return _set(key, fn)


def _dup(key):
    def fn(a):
        a = a.copy()
        flat = a.reshape(-1)
        flat[1] = flat[0]
        return a
    return _set(key, fn)


# (family, runner, init kind, edit id, edit, field named in the message)
CASES = [
    ("fasterpam", _run_fasterpam, None, "nn-2e9", _const("caches/nn", 2_000_000_000, 5), "caches/nn"),
    ("fasterpam", _run_fasterpam, None, "nn-minus5", _const("caches/nn", -5, 5), "caches/nn"),
    ("fasterpam", _run_fasterpam, None, "sn-2e9", _const("caches/sn", 2_000_000_000, 7), "caches/sn"),
    ("fasterpam", _run_fasterpam, None, "fewer-medoids", _set("medoids", lambda a: a[:3]), "medoids"),
    ("fasterpam", _run_fasterpam, None, "dup-medoids", _dup("medoids"), "medoids"),
    ("fasterpam", _run_fasterpam, None, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("fasterpam", _run_fasterpam, None, "short-dn", _set("caches/dn", lambda a: a[:-1]), "caches/dn"),
    ("fasterpam", _run_fasterpam, None, "dtype-dn", _set("caches/dn", lambda a: a.astype(np.float32)),
     "caches/dn"),
    ("fasterpam", _run_fasterpam, None, "dtype-nn", _set("caches/nn", lambda a: a.astype(np.float64)),
     "caches/nn"),
    ("fasterpam", _run_fasterpam, None, "dtype-medoids", _set("medoids", lambda a: a + 0.5), "medoids"),
    ("fasterpam", _run_fasterpam, None, "dn-inconsistent", _const("caches/dn", 123.0, 0), "caches/dn"),
    ("fastpam2", _run_fastpam2, None, "nn-2e9", _const("caches/nn", 2_000_000_000, 5), "caches/nn"),
    ("fastpam2", _run_fastpam2, None, "fewer-medoids", _set("medoids", lambda a: a[:3]), "medoids"),
    ("fastermsc", _run_msc, None, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("fastermsc", _run_msc, None, "medoid-minus5", _const("medoids", -5), "medoids"),
    ("fastermsc", _run_msc, None, "fewer-medoids", _set("medoids", lambda a: a[:3]), "medoids"),
    ("fastermsc", _run_msc, None, "dup-medoids", _dup("medoids"), "medoids"),
    ("fastermsc", _run_msc, None, "dtype-medoids", _set("medoids", lambda a: a.astype(np.float64)), "medoids"),
    ("dynmsc", _run_dynmsc, None, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("dynmsc", _run_dynmsc, None, "medoid-minus5", _const("medoids", -5), "medoids"),
    ("dynmsc", _run_dynmsc, None, "dup-medoids", _dup("medoids"), "medoids"),
    ("dynmsc", _run_dynmsc, None, "too-few-medoids", _set("medoids", lambda a: a[:1]), "medoids"),
    ("clarans", _run_clarans, None, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("clarans", _run_clarans, None, "medoid-minus5", _const("medoids", -5), "medoids"),
    ("clarans", _run_clarans, None, "fewer-medoids", _set("medoids", lambda a: a[:, :3]), "medoids"),
    ("clarans", _run_clarans, None, "dup-medoids", _dup("medoids"), "medoids"),
    ("clarans", _run_clarans, None, "short-seeds", _set("seeds", lambda a: a[:1]), "seeds"),
    ("clara", _run_clara, None, "best-2e9", _const("best_medoids", 2_000_000_000), "best_medoids"),
    ("clara", _run_clara, None, "best-minus5", _const("best_medoids", -5), "best_medoids"),
    ("clara", _run_clara, None, "fewer-best", _set("best_medoids", lambda a: a[:3]), "best_medoids"),
    ("clara", _run_clara, None, "dup-best", _dup("best_medoids"), "best_medoids"),
    ("clara", _run_clara, None, "draw-2e9", _const("draws", 2_000_000_000, 3), "draws"),
    ("clara", _run_clara, None, "short-draws", _set("draws", lambda a: a[:, :-1]), "draws"),
    ("clara", _run_clara, None, "dtype-draws", _set("draws", lambda a: a.astype(np.float32)), "draws"),
    ("build", _run_build, BuildState, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("build", _run_build, BuildState, "medoid-minus5", _const("medoids", -5), "medoids"),
    ("build", _run_build, BuildState, "dup-medoids", _dup("medoids"), "medoids"),
    ("build", _run_build, BuildState, "too-many-medoids", _set("medoids", lambda a: np.arange(5)), "medoids"),
    ("build", _run_build, BuildState, "short-dn", _set("dn", lambda a: a[:-1]), "dn"),
    ("build", _run_build, BuildState, "dtype-dn", _set("dn", lambda a: a.astype(np.float32)), "dn"),
    ("build", _run_build, BuildState, "dn-inconsistent", _const("dn", 0.0, 0), "dn"),
    ("lab", _run_lab, LabState, "medoid-2e9", _const("medoids", 2_000_000_000), "medoids"),
    ("lab", _run_lab, LabState, "medoid-minus5", _const("medoids", -5), "medoids"),
    ("lab", _run_lab, LabState, "dup-medoids", _dup("medoids"), "medoids"),
]


@pytest.fixture(scope="module")
def originals(tmp_path_factory):
    """One real checkpoint per family, made once (header, arrays)."""
    mp = pytest.MonkeyPatch()
    out = {}
    try:
        for family, run, kind in {(c[0], c[1], c[2]) for c in CASES}:
            path = tmp_path_factory.mktemp(family) / "run.ckpt"
            out[family] = _make(run, path, mp, kind)
    finally:
        mp.undo()
    return out


@pytest.mark.parametrize("family,run,kind,cid,edit,field", CASES, ids=[f"{c[0]}-{c[3]}" for c in CASES])
def test_edited_checkpoint_is_refused(family, run, kind, cid, edit, field, originals, tmp_path):
    header, arrays = originals[family]
    header, arrays = json.loads(json.dumps(header)), {k: v.copy() for k, v in arrays.items()}
    if kind is not None:
        assert header["kind"] == kind.kind
    edit(header, arrays)
    path = tmp_path / "edited.ckpt"
    _write(path, header, arrays)
    with pytest.raises(CheckpointCorruptError) as info:
        run(path)
    msg = str(info.value)
    assert "edited.ckpt" in msg and f"field '{field}" in msg, msg
    assert isinstance(info.value, CheckpointMismatchError)  # the CLI maps it to exit 2


@pytest.mark.parametrize("family", sorted({c[0] for c in CASES}))
def test_unedited_checkpoint_still_resumes(family, originals, tmp_path):
    """The checks refuse nothing a real run wrote: the rewritten original resumes."""
    run = next(c[1] for c in CASES if c[0] == family)
    header, arrays = originals[family]
    path = tmp_path / "same.ckpt"
    _write(path, header, arrays)
    fresh = run(None)
    resumed = run(path)
    np.testing.assert_array_equal(fresh.medoids, resumed.medoids)
    assert fresh.loss == resumed.loss


def test_edited_dn_would_have_given_a_wrong_answer(originals, tmp_path):
    """Sanity of the test above: the cache edit is one the driver would otherwise use."""
    header, arrays = originals["fasterpam"]
    assert arrays["caches/dn"].dtype == D.dtype and arrays["caches/nn"].dtype == np.int32
    assert header["state"]["caches"]["dn"] == {"__array__": "caches/dn"}


# -- damaged files and foreign files --------------------------------------------------------------
def _good(tmp_path):
    path = tmp_path / "good.ckpt"
    _run_fasterpam(path)
    return path


def _damage(kind, tmp_path):
    good = _good(tmp_path)
    data = good.read_bytes()
    path = tmp_path / f"{kind}.ckpt"
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(data[: len(data) // 2])
    elif kind == "flipped":
        header, arrays = _read(good)
        raw = bytearray(data)
        # flip a byte inside the nn array's data: the zip CRC no longer matches
        start = bytes(raw).index(arrays["caches/nn"].tobytes()[:16])
        raw[start + 3] ^= 0xFF
        path.write_bytes(bytes(raw))
    elif kind == "no-state":
        header, arrays = _read(good)
        del header["state"]
        _write(path, header, arrays)
    elif kind == "header-list":
        _, arrays = _read(good)
        np.savez(open(path, "wb"), __header__=np.array(json.dumps([1, 2])), **arrays)
    elif kind == "header-bad-json":
        _, arrays = _read(good)
        np.savez(open(path, "wb"), __header__=np.array("{not json"), **arrays)
    elif kind == "npy":
        path = tmp_path / "X.npy"
        np.save(path, D)
    elif kind == "npz-data":
        path = tmp_path / "data.npz"
        np.savez(path, D=D)
    return path


DAMAGE = {"empty": "empty", "truncated": "not an .npz", "flipped": "cannot be read",
          "no-state": "'state'", "header-list": "JSON list", "header-bad-json": "cannot be read",
          "npy": "plain .npy", "npz-data": "no chunked_medoids header"}


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_api(kind, tmp_path):
    path = _damage(kind, tmp_path)
    before = path.read_bytes()
    with pytest.raises(CheckpointCorruptError) as info:
        _run_fasterpam(path)
    msg = str(info.value)
    assert os.path.basename(path) in msg and DAMAGE[kind] in msg, msg
    assert "pass" in msg  # names the fix
    assert path.read_bytes() == before  # a refused file is never overwritten


def _cli(*args):
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "chunked_medoids", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=180)


@pytest.mark.slow
@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_checkpoint_cli(kind, tmp_path):
    path = _damage(kind, tmp_path)
    np.save(tmp_path / "D.npy", D)
    proc = _cli("fit", tmp_path / "D.npy", "--precomputed", "-k", 4, "--seed", 0, "--checkpoint", path)
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert os.path.basename(path) in lines[0] and DAMAGE[kind] in lines[0], lines[0]


@pytest.mark.slow
def test_edited_checkpoint_cli(tmp_path):
    np.save(tmp_path / "D.npy", D)
    path = tmp_path / "run.ckpt"
    args = ("fit", tmp_path / "D.npy", "--precomputed", "-k", 4, "--seed", 0, "--method", "fasterpam",
            "--checkpoint", path)
    assert _cli(*args).returncode == 0
    header, arrays = _read(path)
    arrays["caches/nn"][5] = 2_000_000_000
    _write(path, header, arrays)
    proc = _cli(*args)
    assert proc.returncode == 2, proc.stderr
    assert "run.ckpt" in proc.stderr and "'caches/nn'" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_checkpoint_directory_is_refused(tmp_path):
    (tmp_path / "dir.ckpt").mkdir()
    with pytest.raises(CheckpointCorruptError, match=r"dir\.ckpt.*directory"):
        _run_fasterpam(tmp_path / "dir.ckpt")


# -- k=None -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["fasterpam", "pam", "fastpam1", "fastpam2", "alternating", "clarans",
                                    "fastclarans", "fastermsc", "clara", "build", "lab"])
def test_k_none_is_a_typed_error(method):
    f = getattr(cm, method)
    kw = {"precomputed": True} if method == "clara" else {}
    with pytest.raises(cm.InvalidTypeError, match=r"\bk\b.*None"):
        f(D, None, **kw)


# -- weights (item 8) -----------------------------------------------------------------------------
def test_complex_weights_refused():
    w = np.ones(N, dtype=complex)
    with pytest.raises(cm.InvalidTypeError, match=r"weights.*complex"):
        cm.fasterpam(D, 3, weights=w)
    w[3] = 1 + 2j
    with pytest.raises(cm.InvalidTypeError, match=r"weights.*complex"):
        cm.fasterpam(D, 3, weights=w)


@pytest.mark.parametrize("dtype", [object, "U3", "datetime64[s]", "timedelta64[s]"])
def test_non_numeric_weights_refused(dtype):
    w = np.array([1.0] * N, dtype=object) if dtype is object else np.ones(N).astype(dtype)
    with pytest.raises(cm.InvalidTypeError, match=r"weights"):
        cm.fasterpam(D, 3, weights=w)


def test_weight_total_overflow_refused():
    w = np.full(N, 1e308)
    with pytest.raises(cm.InvalidParameterError, match=r"weights.*overflow"):
        cm.fasterpam(D, 3, weights=w)


@pytest.mark.parametrize("method", ["fasterpam", "fastpam2", "alternating", "fastermsc", "dynmsc", "clarans",
                                    "clara"])
def test_weighted_loss_overflow_refused(method):
    """One weight of 1e308: the weight total is finite, the weighted loss is not."""
    w = np.ones(N)
    w[7] = 1e308
    kw = {"precomputed": True} if method == "clara" else {}
    with pytest.raises(cm.InvalidParameterError, match=r"weight.*overflow"):
        getattr(cm, method)(D, 3, weights=w, random_state=0, **kw)


def test_large_but_safe_weights_still_work():
    w = np.full(N, 1e300)
    r = cm.fasterpam(D, 3, weights=w, random_state=0)
    ref = cm.fasterpam(D, 3, random_state=0)
    assert np.isfinite(r.loss)
    np.testing.assert_array_equal(np.sort(r.medoids), np.sort(ref.medoids))


def test_check_weights_bound():
    from chunked_medoids._util import check_weights

    w = np.ones(4)
    w[0] = 1e308
    assert check_weights(w, 4) is not None
    with pytest.raises(cm.InvalidParameterError, match=r"overflow"):
        check_weights(w, 4, dmax=10.0)
    assert check_weights(np.ones(4), 4, dmax=1e300) is not None


# -- leftover temp files ----------------------------------------------------------------------------
def test_stale_temp_file_is_cleaned(tmp_path):
    path = tmp_path / "run.ckpt"
    stale = tmp_path / ".tmp-run.ckpt.abc123.part"
    stale.write_bytes(b"half a checkpoint")
    other = tmp_path / ".tmp-other.ckpt.abc123.part"   # another checkpoint's: left alone
    other.write_bytes(b"x")
    foreign = tmp_path / ".tmp-run.ckpt.abc123.txt"    # not our pattern: left alone
    foreign.write_bytes(b"x")
    _run_fasterpam(path)
    assert not stale.exists()
    assert other.exists() and foreign.exists()


def test_locked_temp_file_is_kept(tmp_path):
    """A temp file another live process is writing (holds locked) is not removed."""
    import fcntl

    path = tmp_path / "run.ckpt"
    live = tmp_path / ".tmp-run.ckpt.live.part"
    live.write_bytes(b"being written")
    code = ("import fcntl, sys, time; f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX); "
            "print('locked', flush=True); time.sleep(60)")
    proc = subprocess.Popen([sys.executable, "-c", code, str(live)], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "locked"
        assert ck.clean_stale_temps(path) == []
        assert live.exists()
    finally:
        proc.kill()
        proc.wait()
    assert ck.clean_stale_temps(path) == [str(live)]  # the writer died: now it is stale
    assert not live.exists()
    assert fcntl is not None


@pytest.mark.slow
def test_temp_file_left_by_sigkill_is_cleaned(tmp_path):
    """A writer SIGKILLed in the middle of a checkpoint write leaves its temp file; the next
    run of the same checkpoint removes it."""
    path = tmp_path / "run.ckpt"
    code = f"""
import os, signal, sys
sys.path.insert(0, {os.getcwd()!r})
from chunked_medoids import checkpoint as ck
real = os.fsync
def fsync(fd):
    if os.path.basename(os.readlink(f"/proc/self/fd/{{fd}}")).endswith(".part"):
        os.kill(os.getpid(), signal.SIGKILL)
    return real(fd)
os.fsync = fsync
ck.atomic_write_bytes({str(path)!r}, b"x" * 1000)
"""
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, timeout=60)
    assert proc.returncode == -signal.SIGKILL
    left = [p for p in os.listdir(tmp_path) if p.endswith(".part")]
    assert len(left) == 1 and left[0].startswith(".tmp-run.ckpt.")
    _run_fasterpam(path)
    assert [p for p in os.listdir(tmp_path) if p.endswith(".part")] == []
