"""Checkpoint headers are written with the one JSON converter (``_util.jsonable``), and the
files written before it (NaN spelled ``"nan"``) still read back."""

import json

import numpy as np

import chunked_medoids as cm
from chunked_medoids import checkpoint as ck
from chunked_medoids._util import jsonable

D = np.sqrt(((lambda X: (X[:, None, :] - X[None, :, :]) ** 2)(np.random.default_rng(3).normal(size=(40, 2)))).sum(-1))


def _header(path):
    with np.load(path, allow_pickle=False) as z:
        return json.loads(str(z["__header__"])), {k: z[k] for k in z.files if k != "__header__"}


def _rewrite(path, header, arrays):
    with open(path, "wb") as fh:
        np.savez(fh, __header__=np.array(json.dumps(header)), **arrays)


def _checkpoint_like(path, header, params):
    return ck.Checkpoint(path, algorithm=header["algorithm"], fingerprint=header["fingerprint"], params=params)


def test_header_params_are_the_one_converters_output(tmp_path):
    params = {"b": (np.int64(2), np.float32(0.5)), "a": {"z": np.arange(2), "y": float("nan")},
              "tol": np.float64("nan")}
    c = ck.Checkpoint(tmp_path / "c.ckpt", algorithm="x", fingerprint="f", params=params)
    assert c.params == jsonable(params, sort_keys=True)
    assert c.params == {"a": {"y": None, "z": [0, 1]}, "b": [2, 0.5], "tol": None}
    assert list(c.params) == ["a", "b", "tol"] and list(c.params["a"]) == ["y", "z"]


def test_nan_params_round_trip(tmp_path):
    """NaN params (Python or numpy) compare equal after a save (a numpy NaN never did: NaN != NaN)."""
    path = tmp_path / "f.ckpt"
    cm.fasterpam(D, 3, random_state=0, checkpoint=path)
    header, _ = _header(path)
    params = dict(header["params"], extra=np.float64("nan"), other=[float("nan"), 1.0])
    state = _checkpoint_like(path, header, header["params"]).load()
    _checkpoint_like(path, header, params).save(state, complete=True)
    saved, _ = _header(path)
    assert saved["params"]["extra"] is None and saved["params"]["other"] == [None, 1.0]
    assert type(_checkpoint_like(path, header, params).load()) is type(state)


def test_legacy_nan_spelling_still_reads_back(tmp_path):
    """A checkpoint written before the one converter spelled a Python NaN "nan": it still resumes,
    and the run it resumes is bitwise the uninterrupted one."""
    path = tmp_path / "legacy.ckpt"
    ref = cm.fasterpam(D, 3, random_state=0, checkpoint=path)
    header, arrays = _header(path)
    header["params"] = dict(header["params"], extra="nan", nested={"v": ["nan", 2]})
    _rewrite(path, header, arrays)
    params = dict(header["params"], extra=float("nan"), nested={"v": [float("nan"), 2]})
    state = _checkpoint_like(path, header, params).load()
    np.testing.assert_array_equal(state.medoids, ref.medoids)
    # a different value is still a mismatch, not swallowed by the compatibility rule
    import pytest

    with pytest.raises(cm.CheckpointMismatchError, match="extra"):
        _checkpoint_like(path, header, dict(params, extra=0.5)).load()
