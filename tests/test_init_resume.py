"""In-process stop / resume of the initialisations, CLARA's samples and DynMSC's k-steps
(issue 12): a stop requested at a milestone saves the state, a rerun continues to the
result of an uninterrupted run, bit for bit."""

import signal

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import checkpoint as ck
from chunked_medoids._state import BuildState, ClaraState, LabState


def _euclid(n, seed=0, d=3):
    X = np.random.default_rng(seed).normal(size=(n, d))
    return X, np.sqrt(((X[:, None, :] - X[None, :, :]) ** 2).sum(-1))


def _same(a, b):
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss and a.loss_history == b.loss_history
    assert (a.n_iter, a.n_swap) == (b.n_iter, b.n_swap)


def _stop_at(monkeypatch, method, nth, kind=None):
    """Request a stop inside the ``nth`` call of ``Checkpoint.<method>`` (of state ``kind``)."""
    orig = getattr(ck.Checkpoint, method)
    calls = {"n": 0}

    def patched(self, state_fn, *a, **kw):
        if kind is None or isinstance(state_fn(), kind):
            calls["n"] += 1
            if calls["n"] == nth:
                self.stop.request(signal.SIGTERM)
        return orig(self, state_fn, *a, **kw)

    monkeypatch.setattr(ck.Checkpoint, method, patched)
    return lambda: monkeypatch.setattr(ck.Checkpoint, method, orig)


@pytest.mark.parametrize("init,kind", [("build", BuildState), ("lab", LabState)])
@pytest.mark.parametrize("method", ["fasterpam", "fastpam2", "alternating", "fastermsc"])
def test_init_stop_then_resume(init, kind, method, tmp_path, monkeypatch):
    _, D = _euclid(150)
    f = getattr(cm, method)
    kw = dict(init=init, random_state=4, block_rows=16, checkpoint_interval=0.0)
    full = f(D, 6, **kw)
    path = tmp_path / "c.ckpt"
    restore = _stop_at(monkeypatch, "milestone", 3)
    with pytest.raises(ck.CheckpointInterrupt):
        f(D, 6, checkpoint=path, **kw)
    restore()
    import json

    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
    assert header["kind"] == kind.kind
    saved = ck.state_from_file(header["kind"], ck._join_state(header["state"], dict(np.load(path))))
    assert len(saved.medoids) == 3  # stopped right after the third medoid
    resumed = f(D, 6, checkpoint=path, **kw)
    _same(full, resumed)
    if method == "fastermsc":
        assert resumed.score == full.score


def test_build_stop_inside_a_pass(tmp_path, monkeypatch):
    """A stop during a BUILD pass ends the pass at the next block and keeps the finished medoids."""
    _, D = _euclid(200)
    kw = dict(init="build", random_state=0, block_rows=10, checkpoint_interval=0.0, num_workers=1)
    full = cm.fasterpam(D, 5, **kw)
    from chunked_medoids.algorithms import init as init_mod

    real = init_mod._gain_block
    seen = {"n": 0}

    def gain_block(block, start, stop, state):
        seen["n"] += 1
        if seen["n"] == 25:  # inside the pass for the third medoid (20 blocks per pass)
            ck_obj["c"].stop.request(signal.SIGUSR1)
        return real(block, start, stop, state)

    ck_obj = {}
    orig_init = ck.Checkpoint.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        ck_obj["c"] = self

    monkeypatch.setattr(ck.Checkpoint, "__init__", init)
    monkeypatch.setattr(init_mod, "_gain_block", gain_block)
    with pytest.raises(ck.CheckpointInterrupt) as info:
        cm.fasterpam(D, 5, checkpoint=tmp_path / "b.ckpt", **kw)
    assert info.value.signum == signal.SIGUSR1
    assert seen["n"] < 40  # the pass did not run to its end
    monkeypatch.setattr(init_mod, "_gain_block", real)
    _same(full, cm.fasterpam(D, 5, checkpoint=tmp_path / "b.ckpt", **kw))


@pytest.mark.parametrize("mode", ["features", "matrix"])
def test_clara_stop_per_sample_then_resume(mode, tmp_path, monkeypatch):
    X, D = _euclid(400, seed=2, d=2)
    data = X if mode == "features" else D
    kw = dict(sample_size=40, n_samples=7, wave_size=3, random_state=5, num_workers=2)
    if mode == "matrix":
        kw["metric"] = "precomputed"
    full = cm.clara(data, 4, **kw)
    path = tmp_path / "c.ckpt"
    from chunked_medoids.algorithms import clara as mod

    real = mod._Run.run_samples

    def run_samples(self, tasks, s, on_result=None):
        calls.append(len(tasks))
        if len(calls) != 2:
            return real(self, tasks, s, on_result=on_result)

        def record(q, r):  # the first finished sample of the second wave asks to stop
            on_result(q, r)
            self_stop[0].request()

        return real(self, tasks, s, on_result=record)

    calls, self_stop = [], [None]
    orig_init = ck.Checkpoint.__init__

    def init(self, *a, **k):
        orig_init(self, *a, **k)
        self_stop[0] = self.stop

    monkeypatch.setattr(ck.Checkpoint, "__init__", init)
    monkeypatch.setattr(mod._Run, "run_samples", run_samples)
    with pytest.raises(ck.CheckpointInterrupt):
        cm.clara(data, 4, checkpoint=path, **kw)
    monkeypatch.setattr(mod._Run, "run_samples", real)
    import json

    with np.load(path, allow_pickle=False) as z:
        header = json.loads(str(z["__header__"]))
    st = header["state"]
    assert header["kind"] == ClaraState.kind and st["samples_done"] == 3
    assert 1 <= len(st["pending_loss"]) <= 3  # the finished samples of wave 2 were kept
    r = cm.clara(data, 4, checkpoint=path, **kw)
    _same(full, r)
    assert r.sample_losses == full.sample_losses


def test_dynmsc_stop_between_k_steps_then_resume(tmp_path, monkeypatch):
    _, D = _euclid(160, seed=3)
    kw = dict(kmin=2, random_state=1, block_rows=20, checkpoint_interval=0.0)
    full = cm.dynmsc(D, 6, **kw)
    from chunked_medoids._state import DynMSCState

    restore = _stop_at(monkeypatch, "step", 9, kind=DynMSCState)
    with pytest.raises(ck.CheckpointInterrupt):
        cm.dynmsc(D, 6, checkpoint=tmp_path / "d.ckpt", **kw)
    restore()
    r = cm.dynmsc(D, 6, checkpoint=tmp_path / "d.ckpt", **kw)
    _same(full, r)
    assert r.scores == full.scores and r.score == full.score
