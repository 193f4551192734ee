"""The ``chunked-medoids`` command line.

Every subcommand is a thin layer over the public Python API: method, metric and init
choices come from the same registries (:data:`~chunked_medoids.METHODS`,
:data:`~chunked_medoids.METRICS`, :data:`~chunked_medoids.INITS`) that the library
dispatches on, and the clustering is done by the very functions a Python user calls.
Heavy modules (numba, dask, zarr, h5py, matplotlib) are imported only by the subcommand
that needs them, so ``--help`` and ``--version`` answer at once.

Layout: :mod:`._parser` (the declarative table of subcommands and options),
:mod:`._inputs` (is INPUT a matrix or features, CSV reading), :mod:`._outputs` (atomic
result files, summary, plots), :mod:`._messages` (API errors in command-line words),
:mod:`._common` (cluster, seeds, option plumbing) and one module per command
(``build``, ``info``, ``fit``, ``clara``, ``silhouette``, ``dynmsc``, ``demo``), each with a
``run(args) -> exit code``.

Exit codes: 0 success; 2 usage error or bad input (a one-line ``chunked-medoids: error:``
message on stderr, a traceback only with ``--debug``); 3 interrupted by SIGTERM/SIGUSR1
after a checkpoint (or, for ``build``, the completed stripes) was written -- rerun the
same command to resume.
"""

from __future__ import annotations

import importlib
import logging
import os
import sys

from ._common import EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, PROG, BuildInterrupted, UsageError
from ._inputs import read_csv
from ._outputs import write_outputs
from ._parser import build_parser

__all__ = ["main", "build_parser", "read_csv", "write_outputs", "UsageError",
           "EXIT_OK", "EXIT_USAGE", "EXIT_INTERRUPTED", "PROG"]


def _setup_logging(verbose: int):
    """Point the package logger at stderr for this command; returns the previous
    ``(handlers, level, propagate)`` so :func:`main` restores it (a caller running
    ``main`` in-process, e.g. a notebook or a test, keeps its own logging set-up)."""
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("chunked_medoids")
    saved = (list(root.handlers), root.level, root.propagate)
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False
    return saved


def _restore_logging(saved) -> None:
    root = logging.getLogger("chunked_medoids")
    root.handlers[:] = saved[0]
    root.setLevel(saved[1])
    root.propagate = saved[2]


def _error(message: str) -> int:
    first = " ".join(str(message).split())  # one line
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    """Run the command line; returns the exit code (see the module notes)."""
    parser = build_parser()
    from_command_line = argv is None
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _error(str(exc))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    debug = bool(getattr(args, "debug", False)) or debug
    saved = _setup_logging(getattr(args, "verbose", 0) or 0)
    try:
        return _dispatch(parser, args, debug, from_command_line)
    finally:
        _restore_logging(saved)


def _dispatch(parser, args, debug: bool, from_command_line: bool = False) -> int:

    from .._errors import ChunkedMedoidsError
    from ..checkpoint import CheckpointInterrupt
    from ._messages import cli_wording, option_flags
    from ._parser import subparser

    try:
        command = importlib.import_module(f"{__name__}.{args.command_module}")
        return command.run(args)
    except CheckpointInterrupt as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: interrupted by signal {exc.signum}; checkpoint saved to {exc.path!r}; "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except BuildInterrupted as exc:
        print(f"{PROG}: build interrupted by signal {exc.signum}; finished stripes are kept; "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except UsageError as exc:
        if debug:
            raise
        return _error(str(exc))
    except (ChunkedMedoidsError, ValueError, TypeError, LookupError, OSError, ImportError) as exc:
        if debug:
            raise
        msg = str(exc) or type(exc).__name__
        if isinstance(exc, OSError) and exc.filename and exc.filename not in msg:
            msg = f"{msg}: {exc.filename!r}"
        code = _error(cli_wording(msg, option_flags(subparser(parser, args.command))))
        if from_command_line and getattr(sys.modules.get("chunked_medoids.builder"), "HDF5_WRITE_FAILED", False):
            # HDF5 crashes at interpreter exit after a failed write: leave without its atexit
            sys.stdout.flush()
            sys.stderr.flush()
            os._exit(code)
        return code
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
