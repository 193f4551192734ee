"""Atomic checkpoint / resume of driver state.

A checkpoint is one ``.npz`` file holding the driver's state (numpy arrays + a JSON
header).  It is written atomically: to a temporary file in the same directory, flushed and
fsync'ed, then moved over the old one with ``os.replace`` and the directory fsync'ed, so a crash
(SIGKILL included) leaves either the previous or the new checkpoint, never a torn one.

The header records the algorithm, the source fingerprint and every parameter that affects
the result.  :meth:`Checkpoint.load` refuses (``CheckpointMismatchError``) a checkpoint
written for another matrix, algorithm or parameters; it is never silently reused.

Drivers call :meth:`Checkpoint.step` at block boundaries and ``step(..., force=True)`` at
pass ends.  ``step`` saves when the interval has elapsed, when forced, or when SIGTERM /
SIGUSR1 arrived (the signals SLURM sends before the walltime, see
:func:`install_signal_handlers`); in the signal case it raises :class:`CheckpointInterrupt`
after saving, which the CLI turns into exit code 3.
"""

from __future__ import annotations

import io
import json
import logging
import os
import signal
import tempfile
import threading
import time

import numpy as np

from ._errors import (
    CheckpointMismatchError,
    ChunkedMedoidsError,
    InvalidParameterError,
    MissingFileError,
    ReadOnlyLocationError,
)

logger = logging.getLogger(__name__)

FORMAT = 1
#: exit code of the CLI when a run stopped on a signal after writing its checkpoint.
EXIT_INTERRUPTED = 3

_signal_event = threading.Event()
_signal_received: list[int] = []


class CheckpointInterrupt(ChunkedMedoidsError, KeyboardInterrupt):
    """Raised after a checkpoint was written because SIGTERM/SIGUSR1 arrived."""

    def __init__(self, path, signum):
        super().__init__(f"interrupted by signal {signum}; checkpoint written to {path!r}")
        self.path = path
        self.signum = signum


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGUSR1)) -> None:
    """Make SIGTERM / SIGUSR1 request a checkpoint-and-stop at the next block boundary.

    Only possible from the main thread; the CLI calls it.  Library users who want the same
    behaviour call it once themselves.
    """
    def handler(signum, frame):
        _signal_received.append(signum)
        _signal_event.set()

    for s in signals:
        signal.signal(s, handler)


def interrupt_requested() -> bool:
    return _signal_event.is_set()


def clear_interrupt() -> None:
    _signal_event.clear()
    _signal_received.clear()


def _jsonable(obj):
    """Normalise params for comparison: tuples->lists, numpy scalars->python, arrays->lists."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in sorted(obj.items(), key=lambda kv: str(kv[0]))}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _jsonable(obj.tolist())
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return "nan"
    return obj


def _split_state(state: dict, prefix: str = ""):
    """Split a nested state dict into (json part, {key: array})."""
    js, arrays = {}, {}
    for key, value in state.items():
        full = f"{prefix}{key}"
        if isinstance(value, np.ndarray):
            arrays[full] = value
            js[key] = {"__array__": full}
        elif isinstance(value, dict):
            sub_js, sub_arr = _split_state(value, prefix=f"{full}/")
            js[key] = sub_js
            arrays.update(sub_arr)
        else:
            js[key] = _jsonable(value)
    return js, arrays


def _join_state(js, arrays):
    out = {}
    for key, value in js.items():
        if isinstance(value, dict) and set(value) == {"__array__"}:
            out[key] = arrays[value["__array__"]]
        elif isinstance(value, dict):
            out[key] = _join_state(value, arrays)
        else:
            out[key] = value
    return out


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + dir fsync)."""
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", suffix=".part", dir=directory)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


class Checkpoint:
    """Checkpoint file bound to one (algorithm, source, params) run.

    Parameters
    ----------
    path : str or os.PathLike
        The checkpoint file (``.npz`` content; any name).  Its directory must exist and be
        writable; this is checked up front so a read-only location fails before any work.
    algorithm : str
        Name of the algorithm writing it.
    fingerprint : str
        Fingerprint of the input data (``source.fingerprint()``).
    params : dict
        Every parameter that affects the result (JSON-able; arrays allowed).
    interval : float, default 60.0
        Seconds between saves inside a pass.
    """

    enabled = True

    def __init__(self, path, *, algorithm: str, fingerprint: str, params: dict, interval: float = 60.0):
        self.path = os.fspath(path)
        if not (isinstance(interval, (int, float)) and interval >= 0):
            raise InvalidParameterError(f"checkpoint_interval must be a number of seconds >= 0, got {interval!r}")
        directory = os.path.dirname(os.path.abspath(self.path)) or "."
        if not os.path.isdir(directory):
            raise MissingFileError(f"checkpoint directory {directory!r} does not exist; create it first")
        if not os.access(directory, os.W_OK):
            raise ReadOnlyLocationError(f"checkpoint directory {directory!r} is not writable; choose another checkpoint path")
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            raise ReadOnlyLocationError(f"checkpoint file {self.path!r} is read-only; it could not be updated")
        self.algorithm = algorithm
        self.fingerprint = fingerprint
        self.params = _jsonable(params)
        self.interval = float(interval)
        self._last = time.monotonic()
        self.n_saves = 0

    # -- reading --------------------------------------------------------------------------
    def load(self) -> dict | None:
        """The saved state, or None when there is no checkpoint yet.

        Raises CheckpointMismatchError when the file belongs to another matrix, algorithm or
        parameters, and ValueError subclasses when it is unreadable.
        """
        if not os.path.exists(self.path):
            return None
        try:
            with np.load(self.path, allow_pickle=False) as npz:
                header = json.loads(str(npz["__header__"]))
                arrays = {k: npz[k] for k in npz.files if k != "__header__"}
        except (OSError, ValueError, KeyError) as exc:
            raise CheckpointMismatchError(
                f"checkpoint {self.path!r} is not a readable chunked_medoids checkpoint ({exc}); "
                "delete it or choose another path"
            ) from exc
        problems = []
        if header.get("format") != FORMAT:
            problems.append(f"format {header.get('format')!r} != {FORMAT}")
        if header.get("algorithm") != self.algorithm:
            problems.append(f"algorithm {header.get('algorithm')!r} != {self.algorithm!r}")
        if header.get("fingerprint") != self.fingerprint:
            problems.append("it was written for another dissimilarity matrix / input data "
                            f"(fingerprint {header.get('fingerprint')!r} != {self.fingerprint!r})")
        if header.get("params") != self.params:
            saved = header.get("params") or {}
            diff = sorted(k for k in set(saved) | set(self.params) if saved.get(k) != self.params.get(k))
            problems.append(f"parameters differ: {', '.join(f'{k}: saved {saved.get(k)!r} vs now {self.params.get(k)!r}' for k in diff)}")
        if problems:
            raise CheckpointMismatchError(
                f"checkpoint {self.path!r} does not match this run: " + "; ".join(problems)
                + ". Delete it or pass another checkpoint path."
            )
        state = _join_state(header["state"], arrays)
        state["__complete__"] = bool(header.get("complete", False))
        logger.info("resuming from checkpoint %s", self.path)
        return state

    # -- writing --------------------------------------------------------------------------
    def save(self, state: dict, *, complete: bool = False) -> None:
        js, arrays = _split_state(state)
        header = {
            "format": FORMAT,
            "algorithm": self.algorithm,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "state": js,
            "complete": bool(complete),
            "saved_at": time.time(),
        }
        buf = io.BytesIO()
        np.savez(buf, __header__=np.array(json.dumps(header)), **arrays)
        atomic_write_bytes(self.path, buf.getvalue())
        self._last = time.monotonic()
        self.n_saves += 1
        logger.debug("checkpoint saved to %s", self.path)

    def step(self, state_fn, force: bool = False) -> None:
        """Save ``state_fn()`` if forced, due, or a stop signal arrived (then raise)."""
        stop = interrupt_requested()
        if force or stop or (time.monotonic() - self._last) >= self.interval:
            self.save(state_fn())
        if stop:
            signum = _signal_received[-1] if _signal_received else signal.SIGTERM
            raise CheckpointInterrupt(self.path, int(signum))

    def complete(self, state: dict) -> None:
        """Record the final state (a rerun returns it without recomputing)."""
        self.save(state, complete=True)


class NullCheckpoint:
    """Stand-in when no checkpoint path was given: nothing is saved or loaded."""

    enabled = False
    path = None

    def load(self):
        return None

    def save(self, state, *, complete=False):
        return None

    def step(self, state_fn, force=False):
        return None

    def complete(self, state):
        return None


def open_checkpoint(path, *, algorithm: str, source=None, fingerprint: str | None = None,
                    params: dict | None = None, interval: float = 60.0):
    """Return a :class:`Checkpoint` for ``path``, or a :class:`NullCheckpoint` if path is None.

    ``source`` (anything with ``.fingerprint()``) or ``fingerprint`` identifies the data.
    """
    if path is None:
        return NullCheckpoint()
    if not isinstance(path, (str, os.PathLike)):
        from ._errors import InvalidTypeError

        raise InvalidTypeError(f"checkpoint must be a file path or None, got {type(path).__name__}")
    if fingerprint is None:
        if source is None:
            raise InvalidParameterError("open_checkpoint needs source= or fingerprint=")
        fingerprint = source.fingerprint()
    return Checkpoint(path, algorithm=algorithm, fingerprint=fingerprint, params=params or {}, interval=interval)
