"""Atomic checkpoint / resume of driver state, and the run-scoped stop request.

A checkpoint is one ``.npz`` file holding a driver's typed state (a
:class:`~chunked_medoids._state.RunState`: numpy arrays + a JSON header).  The state
classes of :mod:`chunked_medoids._state` *are* the format; the header records their
``kind`` and :data:`~chunked_medoids._state.STATE_FORMAT`.  The file is written
atomically: to a temporary file in the same directory, flushed and fsync'ed, then moved
over the old one with ``os.replace`` and the directory fsync'ed, so a crash (SIGKILL
included) leaves either the previous or the new checkpoint, never a torn one.

The header also records the algorithm, the source fingerprint and every parameter that
affects the result.  :meth:`Checkpoint.load` refuses (``CheckpointMismatchError``) a
checkpoint written for another matrix, algorithm or parameters, and
(``CheckpointFormatError``) one of another format version; it is never silently reused.

Stopping
--------
Drivers call :meth:`Checkpoint.step` at block boundaries and ``step(..., force=True)`` at
pass ends.  ``step`` saves when the interval has elapsed, when forced, or when the run's
:class:`StopRequest` was set; in the last case it raises :class:`CheckpointInterrupt`
after saving, which the CLI turns into exit code 3.

The stop request belongs to one run (one :func:`~chunked_medoids.algorithms._common.driver_scope`):
a later run in the same process starts with a fresh one.  Signals reach it only while a run
with a checkpoint is active and only when the process opted in with
:func:`install_signal_handlers` (the CLI does): the run installs its SIGTERM / SIGUSR1
handlers when its checkpoint is opened (:func:`signal_scope`) and restores the previous
handlers when it ends, so outside such a run (or in a run without a checkpoint) the
signals keep their previous meaning (by default: terminate the process).
"""

from __future__ import annotations

import contextlib
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
    CheckpointCorruptError,
    CheckpointFormatError,
    CheckpointMismatchError,
    ChunkedMedoidsError,
    InvalidParameterError,
    MissingFileError,
    ReadOnlyLocationError,
)
from ._state import (
    STATE_FORMAT,
    STATE_KINDS,
    RunState,
    StateContext,
    StateFieldError,
    state_from_file,
    validate_state,
)
from ._util import jsonable

logger = logging.getLogger(__name__)

#: exit code of the CLI when a run stopped on a signal after writing its checkpoint.
EXIT_INTERRUPTED = 3
#: the signals checkpointed runs listen to once :func:`install_signal_handlers` was called
#: (process configuration, not run state; empty: runs install no handler).
_OPTED_IN_SIGNALS: tuple[int, ...] = ()


class CheckpointInterrupt(ChunkedMedoidsError, KeyboardInterrupt):
    """Raised after a checkpoint was written because SIGTERM/SIGUSR1 arrived."""

    def __init__(self, path, signum):
        super().__init__(f"interrupted by signal {signum}; checkpoint written to {path!r}")
        self.path = path
        self.signum = signum


class StopRequest:
    """A run-scoped request to checkpoint and stop at the next block boundary.

    Set by the run's signal handlers (or by :meth:`request` directly, e.g. in tests); read
    by :meth:`Checkpoint.step` and by the engine between blocks.  Thread-safe.
    """

    def __init__(self):
        self._event = threading.Event()
        self.signum: int | None = None

    def request(self, signum: int = signal.SIGTERM) -> None:
        """Ask the run to stop (``signum`` is reported in :class:`CheckpointInterrupt`)."""
        self.signum = int(signum)
        self._event.set()

    def is_set(self) -> bool:
        """Whether a stop was requested."""
        return self._event.is_set()

    __call__ = is_set


def install_signal_handlers(signals=(signal.SIGTERM, signal.SIGUSR1)) -> None:
    """Opt in: checkpointed runs of this process stop cleanly on ``signals``.

    From now on every run given a checkpoint installs handlers for ``signals`` while it
    runs (from the main thread only): a signal then requests that run to save its
    checkpoint at the next block boundary and raise :class:`CheckpointInterrupt`.  The
    previous handlers are restored when the run ends, so runs without a checkpoint and the
    time between runs keep the previous behaviour.  The CLI calls this; library users who
    want the same behaviour call it once themselves.

    Parameters
    ----------
    signals : iterable of int, default (SIGTERM, SIGUSR1)
        The signals to listen to (an empty tuple opts out again).
    """
    global _OPTED_IN_SIGNALS
    _OPTED_IN_SIGNALS = tuple(int(s) for s in signals)


@contextlib.contextmanager
def signal_scope(stop: StopRequest, enabled: bool = True):
    """Route the opted-in signals to ``stop`` while the block runs; restore them after.

    Does nothing when ``enabled`` is false, when no signal was opted in
    (:func:`install_signal_handlers`) or outside the main thread (Python only delivers
    signals there).
    """
    if not (enabled and _OPTED_IN_SIGNALS and threading.current_thread() is threading.main_thread()):
        yield
        return

    def handler(signum, frame):
        stop.request(signum)

    previous = {}
    try:
        for s in _OPTED_IN_SIGNALS:
            previous[s] = signal.signal(s, handler)
        yield
    finally:
        for s, h in previous.items():
            signal.signal(s, h if h is not None else signal.SIG_DFL)


def _legacy_params(saved):
    """Saved header params as this version writes them: files of format 2 written before the
    one converter (``_util.jsonable``) spelled a Python float NaN ``"nan"``; it is ``null`` now."""
    if isinstance(saved, dict):
        return {k: _legacy_params(v) for k, v in saved.items()}
    if isinstance(saved, list):
        return [_legacy_params(v) for v in saved]
    return None if saved == "nan" else saved


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
            js[key] = jsonable(value, sort_keys=True)
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


def _umask() -> int:
    """The process umask (read from /proc where possible: setting it to query it races)."""
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _temp_prefix(path: str) -> str:
    return f".tmp-{os.path.basename(path)}."


def named_write_error(path: str, exc: OSError) -> OSError:
    """An OSError of the same errno (so the same subclass) whose message names ``path``: a
    full disk says ``[Errno 28] No space left on device`` and nothing else otherwise."""
    import errno as _errno

    reason = exc.strerror or str(exc) or type(exc).__name__
    hint = "; free some space" if exc.errno in (_errno.ENOSPC, _errno.EDQUOT) else ""
    msg = f"writing {os.fspath(path)!r} failed: {reason}{hint}; its previous contents, if any, are unchanged"
    return OSError(exc.errno, msg) if exc.errno is not None else OSError(msg)


def atomic_write_bytes(path: str, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + fsync + rename + dir fsync).

    The file gets the mode a plain ``open(path, "w")`` would give (0666 minus the umask),
    not the 0600 of the temporary file, so group members can read results on shared storage.

    The temporary file is ``.tmp-<name>.<random>.part`` next to ``path``, locked
    (``flock``) while it is written, so :func:`clean_stale_temps` can tell a file left by a
    killed writer from one being written.
    """
    directory = os.path.dirname(os.path.abspath(path)) or "."
    fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(path), suffix=".part", dir=directory)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as fh:
            _try_lock(fh.fileno())
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError) and not isinstance(exc, ChunkedMedoidsError):
            raise named_write_error(path, exc) from exc
        raise
    try:
        dfd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dfd)
        finally:
            os.close(dfd)
    except OSError:  # pragma: no cover - some filesystems refuse directory fsync
        pass


def _try_lock(fd) -> bool:
    """Take an exclusive non-blocking ``flock`` on ``fd``; False when another process holds it."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - not POSIX
        return True
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        return False
    return True


def clean_stale_temps(path) -> list[str]:
    """Remove the temporary files a killed writer of ``path`` left behind.

    Only files named like our own (``.tmp-<name of path>.<random>.part``, in the directory
    of ``path``) are considered, and of those only the ones no live process holds locked (a
    writer keeps its temp file locked until it renames it; a SIGKILL releases the lock).
    Returns the removed paths.
    """
    path = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(path)) or "."
    prefix = _temp_prefix(path)
    removed = []
    try:
        names = os.listdir(directory)
    except OSError:
        return removed
    for name in names:
        if not (name.startswith(prefix) and name.endswith(".part")) or "/" in name[len(prefix):]:
            continue
        full = os.path.join(directory, name)
        try:
            fd = os.open(full, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError:
            continue
        try:
            import stat

            if not stat.S_ISREG(os.fstat(fd).st_mode) or not _try_lock(fd):
                continue
            os.unlink(full)
            removed.append(full)
        except OSError:
            continue
        finally:
            os.close(fd)
    if removed:
        logger.info("removed %d temporary file(s) left by an interrupted write of %s", len(removed), path)
    return removed


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
    stop : StopRequest, optional
        The run's stop request (a fresh one by default).

    Attributes
    ----------
    stop : StopRequest
        Checked by :meth:`step`; set by the run's signal handlers.
    """

    enabled = True

    def __init__(self, path, *, algorithm: str, fingerprint: str, params: dict, interval: float = 60.0,
                 stop: StopRequest | None = None, source=None):
        self.path = os.fspath(path)
        self.source = source
        if not (isinstance(interval, (int, float)) and interval >= 0):
            raise InvalidParameterError(f"checkpoint_interval must be a number of seconds >= 0, got {interval!r}")
        directory = os.path.dirname(os.path.abspath(self.path)) or "."
        if not os.path.isdir(directory):
            raise MissingFileError(f"checkpoint directory {directory!r} does not exist; create it first")
        if not os.access(directory, os.W_OK):
            raise ReadOnlyLocationError(f"checkpoint directory {directory!r} is not writable; choose another checkpoint path")
        if os.path.exists(self.path) and not os.access(self.path, os.W_OK):
            raise ReadOnlyLocationError(f"checkpoint file {self.path!r} is read-only; it could not be updated")
        if os.path.isdir(self.path):
            raise CheckpointCorruptError(
                f"checkpoint {self.path!r} is not a readable checkpoint: it is a directory; pass a file path "
                "(e.g. run.ckpt) or remove the directory"
            )
        clean_stale_temps(self.path)
        self.algorithm = algorithm
        self.fingerprint = fingerprint
        self.params = jsonable(params, sort_keys=True)
        self.interval = float(interval)
        self.stop = StopRequest() if stop is None else stop
        self._last = time.monotonic()

    # -- reading --------------------------------------------------------------------------
    def load(self) -> RunState | None:
        """The saved typed state, or None when there is no checkpoint yet.

        Raises
        ------
        CheckpointFormatError
            The file was written in another format version (another chunked_medoids).
        CheckpointMismatchError
            The file belongs to another matrix, algorithm or parameters, or is unreadable.
        """
        if not os.path.exists(self.path):
            return None
        header, arrays = self._read()
        fmt = header.get("format")
        if fmt != STATE_FORMAT or header.get("kind") not in STATE_KINDS:
            raise CheckpointFormatError(
                f"checkpoint {self.path!r} was written in checkpoint format {fmt!r} "
                f"(state kind {header.get('kind')!r}), but this chunked_medoids reads format "
                f"{STATE_FORMAT}; finish the run with the version that wrote it, or delete the file "
                "(or pass another checkpoint path) to start over"
            )
        problems = []
        if header.get("algorithm") != self.algorithm:
            problems.append(f"algorithm {header.get('algorithm')!r} != {self.algorithm!r}")
        if header.get("fingerprint") != self.fingerprint:
            problems.append("it was written for another dissimilarity matrix / input data "
                            f"(fingerprint {header.get('fingerprint')!r} != {self.fingerprint!r})")
        saved = _legacy_params(header.get("params"))
        if saved != self.params:
            saved = saved if isinstance(saved, dict) else {}
            diff = sorted(k for k in set(saved) | set(self.params) if saved.get(k) != self.params.get(k))
            problems.append(f"parameters differ: {', '.join(f'{k}: saved {saved.get(k)!r} vs now {self.params.get(k)!r}' for k in diff)}")
        if problems:
            raise CheckpointMismatchError(
                f"checkpoint {self.path!r} does not match this run: " + "; ".join(problems)
                + ". Delete it or pass another checkpoint path."
            )
        if not isinstance(header.get("state"), dict):
            raise self._corrupt("field 'state' is missing from the header")
        try:
            state = state_from_file(header["kind"], _join_state(header["state"], arrays))
            validate_state(state, StateContext(n=getattr(self.source, "n", None), params=self.params,
                                               source=self.source))
        except StateFieldError as exc:
            raise self._corrupt(str(exc)) from exc
        except (KeyError, TypeError, ValueError, IndexError, AttributeError, OverflowError) as exc:
            what = f"field {exc.args[0]!r} is missing" if isinstance(exc, KeyError) else f"{type(exc).__name__}: {exc}"
            raise self._corrupt(f"its {header['kind']} state is malformed ({what})") from exc
        logger.info("resuming from checkpoint %s (%s state)", self.path, header["kind"])
        return state

    def _corrupt(self, problem: str, unreadable: bool = False, fix: str | None = None) -> CheckpointCorruptError:
        what = "is not a readable chunked_medoids checkpoint" if unreadable else "is damaged or was edited"
        fix = fix or "delete it (or pass another checkpoint path) to start over"
        return CheckpointCorruptError(f"checkpoint {self.path!r} {what}: {problem}; {fix}")

    def _read(self):
        """(header dict, {name: array}) of the file, or a typed error naming the file."""
        try:
            size = os.path.getsize(self.path)
        except OSError as exc:
            raise self._corrupt(f"it cannot be read ({exc.strerror or exc})", unreadable=True) from exc
        if size == 0:
            raise self._corrupt("the file is empty (0 bytes)", unreadable=True)
        try:
            loaded = np.load(self.path, allow_pickle=False)
        except Exception as exc:  # noqa: BLE001 - numpy / zipfile raise many types on damage
            raise self._corrupt(f"it is not an .npz file ({type(exc).__name__}: {exc})", unreadable=True) from exc
        if not isinstance(loaded, np.lib.npyio.NpzFile):
            raise self._corrupt(
                f"it is a plain {'.npy array' if isinstance(loaded, np.ndarray) else type(loaded).__name__}, "
                "not a checkpoint (a data file given as the checkpoint?)", unreadable=True,
                fix="pass a new file path as the checkpoint (this file was not changed)")
        try:
            with loaded as npz:
                if "__header__" not in npz.files:
                    raise self._corrupt("it has no chunked_medoids header (an .npz data file?)", unreadable=True,
                                       fix="pass a new file path as the checkpoint (this file was not changed)")
                header = json.loads(str(npz["__header__"]))
                arrays = {k: npz[k] for k in npz.files if k != "__header__"}
        except CheckpointCorruptError:
            raise
        except Exception as exc:  # noqa: BLE001 - truncated / flipped bytes: BadZipFile, zlib, ValueError...
            raise self._corrupt(f"its contents cannot be read ({type(exc).__name__}: {exc})",
                                unreadable=True) from exc
        if not isinstance(header, dict):
            raise self._corrupt(f"its header is a JSON {type(header).__name__}, not an object", unreadable=True)
        return header, arrays

    # -- writing --------------------------------------------------------------------------
    def save(self, state: RunState, *, complete: bool = False) -> None:
        """Write ``state`` atomically (see the module notes)."""
        js, arrays = _split_state(state.to_state())
        header = {
            "format": STATE_FORMAT,
            "kind": state.kind,
            "algorithm": self.algorithm,
            "fingerprint": self.fingerprint,
            "params": self.params,
            "state": js,
            "complete": bool(complete),
            "saved_at": time.time(),
        }
        buf = io.BytesIO()
        np.savez(buf, __header__=np.array(json.dumps(header)), **arrays)
        try:
            atomic_write_bytes(self.path, buf.getvalue())
        except OSError as exc:
            if isinstance(exc, ChunkedMedoidsError):
                raise
            raise OSError(exc.errno, f"checkpoint: {exc.strerror or exc}; a rerun of the same command resumes "
                          "from the last checkpoint saved") from exc
        self._last = time.monotonic()
        logger.debug("checkpoint saved to %s", self.path)

    def step(self, state_fn, force: bool = False) -> None:
        """Save ``state_fn()`` if forced, due, or a stop was requested (then raise).

        Raises
        ------
        CheckpointInterrupt
            After saving, when the run's stop request is set.
        """
        stop = self.stop.is_set()
        if force or stop or (time.monotonic() - self._last) >= self.interval:
            self.save(state_fn())
        if stop:
            raise CheckpointInterrupt(self.path, int(self.stop.signum or signal.SIGTERM))

    def milestone(self, state_fn) -> None:
        """Save ``state_fn()`` now (a unit of work finished: an init medoid), then raise
        :class:`CheckpointInterrupt` if a stop was requested."""
        self.save(state_fn())
        if self.stop.is_set():
            raise CheckpointInterrupt(self.path, int(self.stop.signum or signal.SIGTERM))

    def complete(self, state: RunState) -> None:
        """Record the final state (a rerun returns it without recomputing)."""
        self.save(state, complete=True)


class NullCheckpoint:
    """Stand-in when no checkpoint path was given: nothing is saved or loaded.

    Its :attr:`stop` is never set by a signal (no handler is installed for such a run).
    """

    enabled = False
    path = None

    def __init__(self, stop: StopRequest | None = None):
        self.stop = StopRequest() if stop is None else stop

    def load(self):
        return None

    def save(self, state, *, complete=False):
        return None

    def step(self, state_fn, force=False):
        if self.stop.is_set():
            raise CheckpointInterrupt(None, int(self.stop.signum or signal.SIGTERM))

    milestone = step

    def complete(self, state):
        return None


def open_checkpoint(path, *, algorithm: str, source=None, fingerprint: str | None = None,
                    params: dict | None = None, interval: float = 60.0, stop: StopRequest | None = None):
    """Return a :class:`Checkpoint` for ``path``, or a :class:`NullCheckpoint` if path is None.

    ``source`` (anything with ``.fingerprint()``) or ``fingerprint`` identifies the data;
    ``stop`` is the run's :class:`StopRequest` (drivers get it from their driver scope).
    """
    if path is None:
        return NullCheckpoint(stop)
    if not isinstance(path, (str, os.PathLike)):
        from ._errors import InvalidTypeError

        raise InvalidTypeError(f"checkpoint must be a file path or None, got {type(path).__name__}")
    if fingerprint is None:
        if source is None:
            raise InvalidParameterError("open_checkpoint needs source= or fingerprint=")
        fingerprint = source.fingerprint()
    return Checkpoint(path, algorithm=algorithm, fingerprint=fingerprint, params=params or {}, interval=interval,
                      stop=stop, source=source)
