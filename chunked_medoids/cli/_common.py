"""Pieces every command shares: exit codes, usage errors, the cluster context, option
plumbing into the Python API, seeds, the printed result and stderr notices.

Only the standard library is imported here; numpy, dask, numba... are imported inside the
functions that need them, so the parser stays cheap (``--version`` answers at once).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys

PROG = "chunked-medoids"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 3  # == chunked_medoids.checkpoint.EXIT_INTERRUPTED (checked by a test)

logger = logging.getLogger("chunked_medoids.cli")

#: the flags of the cluster options, as named in messages.
CLUSTER_FLAGS = "--workers/--scheduler-file/--scheduler-address"


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class BuildInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGUSR1 during ``build``: stop; the builder records the finished stripes."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


def metric_params(items) -> dict:
    """``--metric-param KEY=VALUE`` items as a dict (values parsed as JSON when they parse)."""
    out = {}
    for item in items or ():
        if "=" not in item:
            raise UsageError(f"--metric-param must look like KEY=VALUE, got {item!r}")
        key, value = item.split("=", 1)
        try:
            out[key.strip()] = json.loads(value)
        except json.JSONDecodeError:
            out[key.strip()] = value
    return out


def progress(args) -> bool:
    """Whether to show progress bars: ``--progress/--no-progress``, else when stderr is a tty."""
    if getattr(args, "progress", None) is None:
        return sys.stderr.isatty()
    return bool(args.progress)


def notice(message: str) -> None:
    """One ``chunked-medoids: note: ...`` line on stderr."""
    print(f"{PROG}: note: {message}", file=sys.stderr, flush=True)


def warn(message: str) -> None:
    """One ``chunked-medoids: warning: ...`` line on stderr."""
    print(f"{PROG}: warning: {message}", file=sys.stderr, flush=True)


_compile_listener = None


def announce_compilation(args) -> None:
    """Print one line when numba has to compile a kernel (its cache is cold).

    numba emits a ``numba:compile`` event only on a cache miss (a cached kernel is loaded
    silently), so the line appears on the first run after an install or an upgrade and never
    again.  Shown with the other status output: when progress bars are on (a terminal, or
    ``--progress``) or with ``-v``.
    """
    global _compile_listener
    if not (progress(args) or getattr(args, "verbose", 0)):
        return
    if _compile_listener is not None:
        return
    from numba.core import event

    class _Once(event.Listener):
        said = False

        def on_start(self, ev):
            if not self.said:
                self.said = True
                notice("compiling the numba kernels (the first run after an install or upgrade; "
                       "cached for later runs) -- this takes a few seconds")

        def on_end(self, ev):
            pass

    _compile_listener = _Once()
    event.register("numba:compile", _compile_listener)


@contextlib.contextmanager
def cluster(args):
    """The distributed client chosen by --workers / --scheduler-file / --scheduler-address.

    Closed cleanly at exit: the client first (it tells the scheduler it leaves, so the
    scheduler logs no ``CommClosedError``), then the local cluster it started, if any.
    """
    from .. import engine

    workers = getattr(args, "workers", None)
    sfile = getattr(args, "scheduler_file", None)
    saddr = getattr(args, "scheduler_address", None)
    if workers is not None:
        if workers < 1:
            raise UsageError(f"--workers must be >= 1, got {workers}")
        client = engine.start_local_cluster(workers, threads_per_worker=1)
        try:
            yield client
        finally:
            _close_client(client, own_cluster=True)
        return
    if sfile is not None or saddr is not None:
        client, owned = engine.connect_client(None, saddr, sfile)
        try:
            yield client
        finally:
            if owned:
                _close_client(client, own_cluster=False)
        return
    yield None


def _close_client(client, *, own_cluster: bool) -> None:
    cluster_obj = getattr(client, "cluster", None) if own_cluster else None
    with contextlib.suppress(Exception):
        client.close(timeout=30)
    if cluster_obj is not None:
        with contextlib.suppress(Exception):
            cluster_obj.close(timeout=30)


def accepted(func):
    """Keyword names ``func`` accepts (None: it takes ``**kwargs``, so anything)."""
    import inspect

    sig = inspect.signature(func)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None
    return set(sig.parameters)


def call(func, name, positional, given, optional):
    """Call ``func(*positional, **given, **optional)``.

    ``given`` maps keyword -> (value, flag) for options the user set explicitly: an option the
    function does not take is an error (never silently dropped).  ``optional`` are passed only
    when the function takes them.
    """
    acc = accepted(func)
    kwargs = {}
    for key, (value, flag) in given.items():
        if value is None:
            continue
        if acc is not None and key not in acc:
            raise UsageError(f"{flag} does not apply to {name!r}")
        kwargs[key] = value
    for key, value in optional.items():
        if acc is None or key in acc:
            kwargs[key] = value
    return func(*positional, **kwargs)


def resident_given(args) -> dict:
    """The ``given`` entry of --resident (auto / yes / no -> "auto" / True / False)."""
    value = {None: None, "auto": "auto", "yes": True, "no": False}[getattr(args, "resident", None)]
    return {"resident": (value, "--resident")}


def checkpoint_given(args) -> dict:
    """The ``given`` entries of the --checkpoint / --checkpoint-interval options."""
    if args.checkpoint_interval is not None and args.checkpoint is None:
        raise UsageError("--checkpoint-interval needs --checkpoint FILE")
    return {"checkpoint": (args.checkpoint, "--checkpoint"),
            "checkpoint_interval": (args.checkpoint_interval, "--checkpoint-interval")}


def with_checkpoint_signals(args) -> None:
    """Install the SIGTERM/SIGUSR1 checkpoint handlers when a checkpoint is in play."""
    if getattr(args, "checkpoint", None) is not None:
        from ..checkpoint import install_signal_handlers

        install_signal_handlers()


# ---------------------------------------------------------------------------------------
# seeds
# ---------------------------------------------------------------------------------------
def recorded_seed(checkpoint_path):
    """The seed recorded in an existing checkpoint file, or None."""
    if checkpoint_path is None or not os.path.isfile(checkpoint_path):
        return None
    try:
        import numpy as np

        with np.load(checkpoint_path, allow_pickle=False) as npz:
            header = json.loads(str(npz["__header__"]))
    except Exception:  # noqa: BLE001 - unreadable: the driver reports it properly
        return None
    params = header.get("params") or {}
    for key in ("seed", "random_state"):
        value = params.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    return None


def resolve_seed(args):
    """``(seed, how)``: ``--seed`` when given (``how="given"``); else the seed recorded in
    ``--checkpoint`` (``"checkpoint"``: a rerun resumes the same run); else a fresh random
    32-bit seed (``"drawn"``).

    The seed is passed to the method and recorded in ``summary.json`` (and, through the
    method's parameters, in the checkpoint), so ``--seed <recorded>`` reproduces the run.
    """
    if getattr(args, "seed", None) is not None:
        return args.seed, "given"
    seed = recorded_seed(getattr(args, "checkpoint", None))
    if seed is not None:
        return seed, "checkpoint"
    import secrets

    return secrets.randbits(32), "drawn"


# ---------------------------------------------------------------------------------------
# output on stdout
# ---------------------------------------------------------------------------------------
def print_result(result, seconds, out=None) -> None:
    out = out or sys.stdout
    print(f"method:   {result.algorithm}", file=out)
    print(f"n, k:     {result.n}, {result.k}", file=out)
    print(f"loss:     {result.loss:.10g}", file=out)
    print(f"passes:   {result.n_iter}   swaps: {result.n_swap}", file=out)
    med = ", ".join(str(int(m)) for m in result.medoids[:20]) + (", ..." if result.k > 20 else "")
    print(f"medoids:  [{med}]", file=out)
    print(f"time:     {seconds:.3f} s", file=out)
