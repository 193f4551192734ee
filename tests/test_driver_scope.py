"""Driver plumbing: the run-scoped stop request and signal handlers, the typed checkpoint
format (versioned), typed results, and ``Engine.map_tasks``."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import checkpoint as ck
from chunked_medoids._errors import CheckpointFormatError, CheckpointMismatchError
from chunked_medoids._state import STATE_FORMAT, STATE_KINDS, BuildState, ClaraState, SwapState
from chunked_medoids.engine import Engine, PassStopped


def _euclid(n, seed=0, d=3):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))


@pytest.fixture
def opted_in():
    """Opt in to checkpoint signals for one test (and out again afterwards)."""
    before = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    ck.install_signal_handlers()
    try:
        yield before
    finally:
        ck.install_signal_handlers(())
        for s, h in before.items():
            signal.signal(s, h)


# -- stop request and handlers ------------------------------------------------------------
def test_stop_is_run_scoped_and_handlers_restored(tmp_path, monkeypatch, opted_in):
    D = _euclid(200)
    kw = dict(random_state=1, block_rows=20, checkpoint_interval=0.0)
    full = cm.fasterpam(D, 4, **kw)
    orig = ck.Checkpoint.step
    calls = {"n": 0}
    seen = {}

    def step(self, state_fn, force=False):
        calls["n"] += 1
        if calls["n"] == 3:
            seen["handler"] = signal.getsignal(signal.SIGTERM)
            os.kill(os.getpid(), signal.SIGTERM)  # a real signal: the run's handler takes it
            time.sleep(0.05)
        return orig(self, state_fn, force)

    monkeypatch.setattr(ck.Checkpoint, "step", step)
    with pytest.raises(ck.CheckpointInterrupt) as info:
        cm.fasterpam(D, 4, checkpoint=tmp_path / "a.ckpt", **kw)
    assert info.value.signum == signal.SIGTERM
    # the run installed its own handler, and restored the previous one when it ended
    assert seen["handler"] not in (opted_in[signal.SIGTERM], signal.SIG_DFL)
    assert signal.getsignal(signal.SIGTERM) == opted_in[signal.SIGTERM]
    monkeypatch.setattr(ck.Checkpoint, "step", orig)
    # the next run of this process does not inherit the stop: it runs to the end
    other = cm.fasterpam(D, 4, checkpoint=tmp_path / "b.ckpt", **kw)
    np.testing.assert_array_equal(other.medoids, full.medoids)
    assert other.loss == full.loss
    resumed = cm.fasterpam(D, 4, checkpoint=tmp_path / "a.ckpt", **kw)
    np.testing.assert_array_equal(resumed.medoids, full.medoids)
    assert resumed.loss_history == full.loss_history


def test_run_without_checkpoint_installs_nothing(opted_in):
    D = _euclid(60)
    seen = []
    real = Engine.iter_blocks

    def spy(self, *a, **k):
        seen.append(signal.getsignal(signal.SIGTERM))
        return real(self, *a, **k)

    Engine.iter_blocks = spy
    try:
        cm.fasterpam(D, 3, random_state=0)
    finally:
        Engine.iter_blocks = real
    assert seen and all(h == opted_in[signal.SIGTERM] for h in seen)


_NO_CKPT_CHILD = textwrap.dedent("""
    import signal, sys
    import numpy as np
    import chunked_medoids as cm
    from chunked_medoids.checkpoint import install_signal_handlers
    install_signal_handlers()
    X = np.random.default_rng(0).normal(size=(300, 3))
    D = np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))
    cm.fasterpam(D, 3, random_state=0, checkpoint=sys.argv[1])   # a checkpointed run first
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL, signal.getsignal(signal.SIGTERM)
    print("READY", flush=True)
    while True:                                                  # then runs without one
        cm.fasterpam(D, 3, random_state=0, block_rows=10)
""")


@pytest.mark.slow
def test_run_without_checkpoint_still_dies_on_sigterm(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(_NO_CKPT_CHILD)
    proc = subprocess.Popen([sys.executable, str(script), str(tmp_path / "c.ckpt")], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout.readline().strip() == "READY", proc.stderr.read()
        time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGTERM


def test_stop_request_object():
    stop = ck.StopRequest()
    assert not stop.is_set() and not stop()
    stop.request(signal.SIGUSR1)
    assert stop.is_set() and stop.signum == signal.SIGUSR1


# -- typed, versioned checkpoint format -------------------------------------------------------
def test_checkpoint_is_the_typed_state(tmp_path):
    D = _euclid(80)
    path = tmp_path / "f.ckpt"
    res = cm.fasterpam(D, 3, random_state=0, checkpoint=path)
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
    assert header["format"] == STATE_FORMAT and header["kind"] == "swap" and header["complete"] is True
    c = ck.Checkpoint(path, algorithm="fasterpam", fingerprint=header["fingerprint"], params=header["params"])
    state = c.load()
    assert isinstance(state, SwapState) and state.done
    np.testing.assert_array_equal(state.medoids, res.medoids)
    assert state.loss_history == res.loss_history
    # every state kind round-trips through to_state / from_state
    assert set(STATE_KINDS) >= {"swap", "fastermsc", "dynmsc", "clarans", "clara", "init-build", "init-lab"}
    b = BuildState(medoids=np.array([3, 1]), dn=np.arange(5, dtype=np.float32))
    b2 = BuildState.from_state(b.to_state())
    np.testing.assert_array_equal(b2.medoids, b.medoids)
    assert b2.dn.dtype == np.float32 and b2.dn.tobytes() == b.dn.tobytes()
    cs = ClaraState(draws=np.zeros((2, 3), dtype=np.int64), seeds=np.arange(2), pending={1: (np.array([4]), 2, 1, 0.5)})
    cs2 = ClaraState.from_state(cs.to_state())
    assert list(cs2.pending) == [1] and cs2.pending[1][1:] == (2, 1, 0.5)


def test_checkpoint_of_other_format_refused(tmp_path):
    D = _euclid(60)
    path = tmp_path / "old.ckpt"
    cm.fasterpam(D, 3, random_state=0, checkpoint=path)
    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
        arrays = {k: z[k] for k in z.files if k != "__header__"}
    header["format"] = 1  # what chunked_medoids 0.1 wrote
    del header["kind"]
    np.savez(path, __header__=np.array(json.dumps(header)), **arrays)
    os.replace(str(path) + ".npz", path)
    with pytest.raises(CheckpointFormatError) as info:
        cm.fasterpam(D, 3, random_state=0, checkpoint=path)
    msg = str(info.value)
    assert str(path) in msg and "format 1" in msg and "delete" in msg
    assert isinstance(info.value, CheckpointMismatchError)  # the CLI's exit code 2 path


# -- typed results --------------------------------------------------------------------------
def test_typed_results():
    D = _euclid(60)
    dyn = cm.dynmsc(D, 4, random_state=0)
    assert isinstance(dyn, cm.DynMSCResult) and isinstance(dyn, cm.MedoidsResult)
    assert dyn.k in dyn.scores and dyn.score == max(dyn.scores.values())
    assert dyn.extra["kmax"] == 4 and dyn.kmin == 2
    cl = cm.clara(D, 3, metric="precomputed", random_state=0, n_samples=3, sample_size=30)
    assert isinstance(cl, cm.ClaraResult) and len(cl.sample_losses) == 3
    assert cl.extra["sample_losses"] == cl.sample_losses
    fp = cm.fasterpam(D, 3, random_state=0)
    assert fp.converged is True and fp.order == "natural"
    with pytest.raises(AttributeError):
        fp.score  # noqa: B018 - no attribute served from a dict any more
    assert repr(fp).startswith("SwapResult(")


# -- Engine.map_tasks -----------------------------------------------------------------------
def _square(item, state):
    time.sleep(0.002 * ((item * 7) % 5))  # finish out of order
    return item * item + state.get("offset", 0)


@pytest.mark.parametrize("workers", [1, 2, 3])
def test_map_tasks_item_order(workers):
    eng = Engine(num_workers=workers)
    got = []
    res = eng.map_tasks(_square, range(20), {"offset": 1}, on_result=lambda i, r: got.append((i, r)))
    assert res == [i * i + 1 for i in range(20)]
    assert sorted(got) == [(i, i * i + 1) for i in range(20)]
    assert eng.map_tasks(_square, [], {}) == []
    eng.close()


def test_map_tasks_stop():
    eng = Engine(num_workers=2)
    stop = ck.StopRequest()
    done = []

    def on_result(i, r):
        done.append(i)
        if len(done) == 3:
            stop.request()

    with pytest.raises(PassStopped):
        eng.map_tasks(_square, range(50), {}, max_concurrency=2, on_result=on_result, should_stop=stop)
    assert 3 <= len(done) < 50  # the running tasks finished, no new one started
    eng.close()


def test_map_blocks_stop():
    src = cm.open_dissimilarity(_euclid(100).astype(np.float32))
    eng = Engine(num_workers=2, block_rows=5)
    stop = ck.StopRequest()
    stop.request()
    with pytest.raises(PassStopped):
        eng.map_blocks(src, _rows, {}, should_stop=stop)
    eng.close()


def _rows(block, start, stop, state):
    return block.shape[0]


@pytest.mark.distributed
def test_map_tasks_distributed(local_cluster):
    eng = Engine(client=local_cluster)
    got = []
    res = eng.map_tasks(_square, range(12), {"offset": 2}, max_concurrency=2,
                        on_result=lambda i, r: got.append(i))
    assert res == [i * i + 2 for i in range(12)] and sorted(got) == list(range(12))
