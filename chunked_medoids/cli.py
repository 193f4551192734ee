"""The ``chunked-medoids`` command line.

Every subcommand is a thin layer over the public Python API: method, metric and init
choices come from the same registries (:data:`~chunked_medoids.METHODS`,
:data:`~chunked_medoids.METRICS`, :data:`~chunked_medoids.INITS`) that the library
dispatches on, and the clustering is done by the very functions a Python user calls.
Heavy modules (numba, dask, zarr, h5py, matplotlib) are imported only by the subcommand
that needs them, so ``--help`` and ``--version`` answer at once.

Exit codes: 0 success; 2 usage error or bad input (a one-line ``chunked-medoids: error:``
message on stderr, a traceback only with ``--debug``); 3 interrupted by SIGTERM/SIGUSR1
after a checkpoint (or, for ``build``, the completed stripes) was written -- rerun the
same command to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import logging
import os
import signal
import sys
import time

from ._errors import MissingFileError, ReadOnlyLocationError

PROG = "chunked-medoids"
EXIT_OK = 0
EXIT_USAGE = 2
EXIT_INTERRUPTED = 3  # == chunked_medoids.checkpoint.EXIT_INTERRUPTED (checked by a test)

logger = logging.getLogger(__name__)

_EPILOG = """\
exit codes:
  0  success
  2  usage error or bad input (one-line message on stderr; --debug shows the traceback)
  3  interrupted by SIGTERM/SIGUSR1 after the checkpoint (fit/clara/dynmsc with
     --checkpoint) or the finished stripes (build) were saved: rerun the same command
     to resume (SLURM: #SBATCH --signal=B:USR1@300 and requeue on exit code 3)

Run 'chunked-medoids COMMAND --help' for the options and examples of each command.
"""


class UsageError(Exception):
    """Bad command-line usage (exit code 2)."""


class _BuildInterrupted(KeyboardInterrupt):
    """SIGTERM/SIGUSR1 during ``build``: stop; the builder records the finished stripes."""

    def __init__(self, signum):
        super().__init__(signum)
        self.signum = signum


class _Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become :class:`UsageError` (one-line message, exit 2)."""

    def error(self, message):  # noqa: D401 - argparse hook
        raise UsageError(f"{self.prog.split(' ', 1)[-1] + ': ' if ' ' in self.prog else ''}{message} "
                         f"(see '{self.prog} --help')")


class _Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34, width=100)


class _RegistryChoices:
    """Choices read from a registry on first use (keeps parser construction free of numba)."""

    def __init__(self, loader):
        self._loader = loader
        self._names = None

    def _get(self):
        if self._names is None:
            self._names = list(self._loader())
        return self._names

    def __contains__(self, item):
        return item in self._get()

    def __iter__(self):
        return iter(self._get())

    def __len__(self):
        return len(self._get())


def _method_names():
    from .algorithms import METHOD_ALIASES, METHODS, _load_all

    _load_all()
    return sorted(METHODS) + sorted(METHOD_ALIASES)


def _init_names():
    from .algorithms import INITS, _load_all

    _load_all()
    return sorted(INITS)


def _clara_variants():
    from .algorithms.clara import VARIANTS

    return list(VARIANTS)


def _metric_names():
    from .metrics import metric_names

    return metric_names(aliases=True)


# ---------------------------------------------------------------------------------------
# parser
# ---------------------------------------------------------------------------------------
def _add_common(p, *, cluster=True):
    g = p.add_argument_group("general")
    g.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                   help="show full tracebacks on errors")
    g.add_argument("-v", "--verbose", action="count", default=argparse.SUPPRESS,
                   help="log progress to stderr (-v INFO, -vv DEBUG)")
    if cluster:
        c = g.add_mutually_exclusive_group()
        c.add_argument("--scheduler-file", metavar="FILE",
                       help="connect to a running Dask cluster through its scheduler file "
                            "(dask-mpi, dask-jobqueue, 'dask scheduler --scheduler-file')")
        c.add_argument("--scheduler-address", metavar="ADDR",
                       help="connect to a running Dask scheduler, e.g. tcp://host:8786")
        c.add_argument("--workers", type=int, metavar="N",
                       help="start a local distributed cluster of N worker processes "
                            "(1 thread each) for this command; closed at exit")


def _add_memory(p):
    p.add_argument("--memory-limit", metavar="SIZE", default=None,
                   help="budget for matrix row blocks held at once, e.g. 512MiB, 4GiB "
                        "(default: the library default, 1GiB)")


def _add_progress(p):
    p.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                   help="show progress bars on stderr (default: when stderr is a terminal)")


def _add_input(p):
    p.add_argument("input", metavar="INPUT",
                   help="features (.npy, .csv, .zarr, .h5/.hdf5 with --dataset) used with --metric, or a "
                        "square dissimilarity matrix (.zarr/.h5 store written by 'build' -- detected "
                        "automatically -- or any .npy/.zarr/.h5 matrix with --precomputed)")
    src = p.add_mutually_exclusive_group()
    src.add_argument("--metric", metavar="NAME", choices=_RegistryChoices(_metric_names),
                     help="INPUT holds features; compute dissimilarities on the fly with this metric "
                          "(one of: %(choices)s)")
    src.add_argument("--precomputed", action="store_true",
                     help="INPUT is a square n×n dissimilarity matrix")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset/array name inside an HDF5 file or zarr group INPUT")
    p.add_argument("--metric-param", metavar="KEY=VALUE", action="append", default=[],
                   help="metric parameter (value parsed as JSON), e.g. --metric-param p=3; repeatable")
    p.add_argument("--dtype", default=None, choices=["float32", "float64", "int32", "int64"],
                   help="element type of on-the-fly dissimilarities (with --metric; default float32)")
    p.add_argument("--validate", action=argparse.BooleanOptionalAction, default=None,
                   help="check a precomputed matrix (NaN/inf, negative, diagonal, symmetry) while the "
                        "first pass streams it, no extra pass (default: on; stores written by 'build' "
                        "are valid by construction); --no-validate skips it")


def _add_outputs(p):
    p.add_argument("-o", "--output", metavar="DIR",
                   help="write DIR/labels.npy (int32, n), DIR/medoids.npy (int64, k) and "
                        "DIR/summary.json (written last, atomically)")


def _add_checkpoint(p):
    p.add_argument("--checkpoint", metavar="FILE",
                   help="save the run's state to FILE (atomically) and resume from it when it exists; "
                        "SIGTERM/SIGUSR1 save it and exit with code 3")
    p.add_argument("--checkpoint-interval", type=float, default=None, metavar="SEC",
                   help="seconds between checkpoint saves inside a pass (default: the method's, 60; "
                        "0 = at every block boundary)")


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``chunked-medoids`` (cheap: registries load on first use)."""
    from ._version import __version__

    parser = _Parser(
        prog=PROG, formatter_class=_Formatter, epilog=_EPILOG,
        description="Exact k-medoids clustering (PAM, FastPAM, FasterPAM, CLARA, CLARANS, DynMSC) of "
                    "dissimilarity matrices larger than memory, streamed from zarr/HDF5 stores or "
                    "computed on the fly from features, in parallel with Dask.",
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress to stderr (-v INFO, -vv DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # -- build ------------------------------------------------------------------------
    p = sub.add_parser(
        "build", formatter_class=_Formatter, epilog=_EPILOG,
        help="compute the n×n dissimilarity of a feature file into a chunked .zarr/.h5 store",
        description="Compute the full n×n dissimilarity matrix of FEATURES into a chunked store "
                    "(zarr directory or HDF5 file), in parallel and within --memory-limit.  The build "
                    "is resumable: rerunning the same command after an interruption computes only "
                    "the missing row stripes.\n\nexamples:\n"
                    "  chunked-medoids build X.npy -o D.zarr --metric euclidean --memory-limit 2GiB\n"
                    "  chunked-medoids build data.csv -o D.h5 --metric manhattan --output-dataset dist\n"
                    "  chunked-medoids build X.h5 --dataset features -o D.zarr --metric cosine --workers 4",
    )
    p.add_argument("features", metavar="FEATURES",
                   help="feature rows: .npy, .csv (numeric, header auto-detected), .zarr or .h5/.hdf5")
    p.add_argument("-o", "--output", metavar="STORE", required=True,
                   help="output store: *.zarr (zarr v3 directory) or *.h5 / *.hdf5 (HDF5 file)")
    p.add_argument("--metric", metavar="NAME", required=True, choices=_RegistryChoices(_metric_names),
                   help="dissimilarity metric (one of: %(choices)s)")
    p.add_argument("--metric-param", metavar="KEY=VALUE", action="append", default=[],
                   help="metric parameter (value parsed as JSON), e.g. --metric-param p=3; repeatable")
    p.add_argument("--dataset", metavar="NAME",
                   help="dataset/array name of the features inside an HDF5 file or zarr group")
    p.add_argument("--output-dataset", metavar="NAME", default="dissimilarity",
                   help="dataset name of the matrix in an HDF5 STORE (default: dissimilarity)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64", "int32", "int64"],
                   help="element type stored (default float32)")
    p.add_argument("--compressor", default="default",
                   help="'default' (zarr: blosc-lz4, HDF5: lzf), lz4, zstd, blosc-zstd, gzip, lzf, none")
    p.add_argument("--block-rows", type=int, metavar="ROWS",
                   help="force the row-stripe height instead of deriving it from --memory-limit")
    p.add_argument("--overwrite", action="store_true", help="replace an existing STORE")
    _add_memory(p)
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_build)

    # -- info -------------------------------------------------------------------------
    p = sub.add_parser(
        "info", formatter_class=_Formatter, epilog=_EPILOG,
        help="describe a dissimilarity store (shape, dtype, chunks, metric, completeness, size)",
        description="Describe a .zarr or .h5 dissimilarity store without reading its values.\n\n"
                    "examples:\n  chunked-medoids info D.zarr\n  chunked-medoids info D.h5 --dataset dist --json",
    )
    p.add_argument("store", metavar="STORE", help="*.zarr directory or *.h5/*.hdf5 file")
    p.add_argument("--dataset", metavar="NAME", help="dataset / array name inside the store")
    p.add_argument("--json", action="store_true", help="print the full description as JSON")
    _add_common(p, cluster=False)
    p.set_defaults(func=cmd_info)

    # -- fit --------------------------------------------------------------------------
    p = sub.add_parser(
        "fit", formatter_class=_Formatter, epilog=_EPILOG,
        help="k-medoids clustering with any registered method (default fasterpam)",
        description="Cluster INPUT into k clusters with a registered k-medoids method and write "
                    "labels, medoids and a JSON summary.\n\nexamples:\n"
                    "  chunked-medoids fit D.zarr -k 10 -o out/\n"
                    "  chunked-medoids fit X.npy --metric euclidean -k 10 --method fastpam2 --init build -o out/\n"
                    "  chunked-medoids fit D.h5 -k 50 --checkpoint run.ckpt --scheduler-file sched.json -o out/\n"
                    "  chunked-medoids fit D.zarr -k 10 -o out/ --plots out/plots",
    )
    _add_input(p)
    p.add_argument("-k", "--n-clusters", dest="k", type=int, required=True, metavar="K",
                   help="number of medoids (1 <= K <= n)")
    p.add_argument("--method", default="fasterpam", metavar="NAME", choices=_RegistryChoices(_method_names),
                   help="clustering method (default fasterpam; one of: %(choices)s)")
    p.add_argument("--init", metavar="NAME", choices=_RegistryChoices(_init_names),
                   help="initialisation (default: the method's own; one of: %(choices)s)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed (random/LAB init, sampling methods)")
    p.add_argument("--max-iter", type=int, metavar="N", help="maximum number of iterations / passes")
    _add_memory(p)
    _add_checkpoint(p)
    _add_outputs(p)
    p.add_argument("--plots", metavar="DIR",
                   help="write convergence.png, silhouette.png and cluster_sizes.png to DIR (matplotlib)")
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_fit)

    # -- clara ------------------------------------------------------------------------
    p = sub.add_parser(
        "clara", formatter_class=_Formatter, epilog=_EPILOG,
        help="CLARA-family clustering on samples, scored on the full data",
        description="CLARA / FastCLARA: cluster random samples, keep the medoids with the best loss "
                    "on the full data; same outputs as 'fit'.\n\nexamples:\n"
                    "  chunked-medoids clara X.npy --metric euclidean -k 20 --seed 0 -o out/\n"
                    "  chunked-medoids clara D.zarr -k 20 --n-samples 10 --sample-size 2000 -o out/",
    )
    _add_input(p)
    p.add_argument("-k", "--n-clusters", dest="k", type=int, required=True, metavar="K",
                   help="number of medoids")
    p.add_argument("--variant", metavar="NAME", choices=_RegistryChoices(_clara_variants),
                   help="inner optimiser on each sample (default fasterclara; one of: %(choices)s)")
    p.add_argument("--n-samples", type=int, metavar="N", help="number of samples")
    p.add_argument("--sample-size", type=int, metavar="M", help="points per sample")
    p.add_argument("--seed", type=int, metavar="S", help="random seed")
    _add_memory(p)
    _add_checkpoint(p)
    _add_outputs(p)
    p.add_argument("--plots", metavar="DIR", help="write plots to DIR (matplotlib)")
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_clara)

    # -- silhouette -------------------------------------------------------------------
    p = sub.add_parser(
        "silhouette", formatter_class=_Formatter, epilog=_EPILOG,
        help="silhouette of given labels, or medoid silhouette of given medoids",
        description="Print the average silhouette of a labelling (one streaming pass over D) or the "
                    "average medoid silhouette of a set of medoids (reads only the k medoid rows).\n\n"
                    "examples:\n"
                    "  chunked-medoids silhouette D.zarr --labels out/labels.npy\n"
                    "  chunked-medoids silhouette D.zarr --medoids out/medoids.npy --samples-out s.npy",
    )
    _add_input(p)
    g = p.add_mutually_exclusive_group(required=True)
    g.add_argument("--labels", metavar="FILE", help=".npy (or text) file of n integer labels")
    g.add_argument("--medoids", metavar="FILE", help=".npy (or text) file of k medoid indices")
    p.add_argument("--samples-out", metavar="FILE", help="also write the per-point values to FILE (.npy)")
    _add_memory(p)
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_silhouette)

    # -- dynmsc -----------------------------------------------------------------------
    p = sub.add_parser(
        "dynmsc", formatter_class=_Formatter, epilog=_EPILOG,
        help="choose k by the best average medoid silhouette (DynMSC)",
        description="Run DynMSC for k = KMIN..KMAX and print the best k, its average medoid "
                    "silhouette and the score of every k.\n\nexamples:\n"
                    "  chunked-medoids dynmsc D.zarr --kmax 20\n"
                    "  chunked-medoids dynmsc X.npy --metric euclidean --kmin 3 --kmax 12 -o out/\n"
                    "  chunked-medoids dynmsc D.h5 --kmax 30 --checkpoint dyn.ckpt -o out/",
    )
    _add_input(p)
    p.add_argument("--kmax", type=int, required=True, metavar="K", help="largest k tried")
    p.add_argument("--kmin", type=int, default=None, metavar="K", help="smallest k tried (default 2)")
    p.add_argument("--init", metavar="NAME", choices=_RegistryChoices(_init_names),
                   help="initialisation (one of: %(choices)s; default build)")
    p.add_argument("--seed", type=int, metavar="S", help="random seed")
    p.add_argument("--max-iter", type=int, metavar="N", help="maximum number of passes")
    _add_memory(p)
    _add_checkpoint(p)
    _add_outputs(p)
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_dynmsc)

    # -- demo -------------------------------------------------------------------------
    p = sub.add_parser(
        "demo", formatter_class=_Formatter, epilog=_EPILOG,
        help="end-to-end demo on scikit-learn's digits (build, FasterPAM, ARI, plots)",
        description="Cluster scikit-learn's 1797 handwritten digits end to end: build a zarr "
                    "matrix, run FasterPAM with k=10, print the loss and the adjusted Rand index "
                    "against the true digits, and (with matplotlib) write medoids.png, "
                    "convergence.png and silhouette.png.\n\nexamples:\n"
                    "  chunked-medoids demo\n  chunked-medoids demo --output demo_out --workers 2",
    )
    p.add_argument("-o", "--output", metavar="DIR", default="chunked-medoids-demo",
                   help="directory for the store, outputs and plots (default ./chunked-medoids-demo)")
    p.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    _add_progress(p)
    _add_common(p)
    p.set_defaults(func=cmd_demo)
    return parser


# ---------------------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------------------
def _metric_params(items) -> dict:
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


def _progress(args) -> bool:
    if getattr(args, "progress", None) is None:
        return sys.stderr.isatty()
    return bool(args.progress)


def _suffix(path) -> str:
    low = os.fspath(path).rstrip("/\\").lower()
    for suf in (".npy", ".csv", ".zarr", ".h5", ".hdf5", ".txt", ".tsv"):
        if low.endswith(suf):
            return suf
    return os.path.splitext(low)[1]


def _require_exists(path, what):
    if not os.path.exists(path):
        raise MissingFileError(f"{what} {path!r} does not exist")


def read_csv(path, *, chunk_rows: int = 65536):
    """Read a numeric CSV file into a float64 array of shape (n, d), in chunks.

    The delimiter (``,``, ``;``, tab or blank) is sniffed; a first line that does not parse
    as numbers is taken as a header.  Memory: the result plus one chunk of text rows.
    """
    import csv

    import numpy as np

    from ._errors import InvalidParameterError

    with open(path, newline="") as fh:
        sample = fh.read(65536)
        fh.seek(0)
        try:
            dialect = csv.Sniffer().sniff(sample, delimiters=",;\t ")
            delim = dialect.delimiter
        except csv.Error:
            delim = ","
        reader = csv.reader(fh, delimiter=delim, skipinitialspace=True)
        chunks, rows, d, first = [], [], None, True
        for lineno, row in enumerate(reader, start=1):
            if delim == " ":
                row = [c for c in row if c != ""]
            if not row or all(not c.strip() for c in row):
                continue
            if first:
                first = False
                try:
                    [float(c) for c in row]
                except ValueError:
                    logger.info("%s: first line taken as a header: %s", path, row)
                    d = len(row)
                    continue
            if d is None:
                d = len(row)
            if len(row) != d:
                raise InvalidParameterError(
                    f"CSV file {path!r} line {lineno} has {len(row)} fields, expected {d}; every row "
                    "must have the same number of numeric columns")
            rows.append(row)
            if len(rows) >= chunk_rows:
                chunks.append(_csv_chunk(rows, path, lineno - len(rows) + 1))
                rows = []
        if rows:
            chunks.append(_csv_chunk(rows, path, None))
    if not chunks:
        raise InvalidParameterError(f"CSV file {path!r} holds no numeric rows")
    return np.concatenate(chunks) if len(chunks) > 1 else chunks[0]


def _csv_chunk(rows, path, first_line):
    import numpy as np

    from ._errors import InvalidParameterError

    try:
        return np.array(rows, dtype=np.float64)
    except ValueError:
        for i, row in enumerate(rows):
            for j, cell in enumerate(row):
                try:
                    float(cell)
                except ValueError:
                    raise InvalidParameterError(
                        f"CSV file {path!r}: non-numeric value {cell!r} in data row {i + 1 if first_line is None else first_line + i}"
                        f", column {j + 1}; the file must hold numbers only (plus an optional header)"
                    ) from None
        raise


def _features_arg(path, dataset):
    """What from_features / build_dissimilarity get for a features file."""
    suf = _suffix(path)
    if suf in (".csv", ".tsv", ".txt"):
        if dataset is not None:
            raise UsageError(f"--dataset applies to .zarr/.h5 feature files, not to the text file {path!r}")
        return read_csv(path), None
    if suf in (".npy", ".zarr", ".h5", ".hdf5"):
        return path, dataset
    from ._errors import InvalidParameterError

    raise InvalidParameterError(
        f"features file {path!r} has an unsupported suffix; use .npy, .csv, .zarr or .h5/.hdf5")


def _is_managed_store(path, dataset):
    """store_info of a .zarr/.h5 written by build_dissimilarity, else None."""
    if _suffix(path) not in (".zarr", ".h5", ".hdf5"):
        return None
    from .builder import store_info

    try:
        info = store_info(path, dataset)
    except Exception:  # a features file, a group with several arrays...: not our matrix
        logger.debug("store_info(%r) failed", path, exc_info=True)
        return None
    return info if info.get("managed") else None


def _open_input(args, *, memory_limit=None):
    """``(source, description)`` for INPUT (precomputed matrix or on-the-fly features)."""
    from ._errors import InvalidParameterError

    path = args.input
    _require_exists(path, "INPUT")
    dataset = args.dataset
    managed = _is_managed_store(path, dataset)
    metric = args.metric
    mparams = _metric_params(args.metric_param)
    desc = {"path": os.path.abspath(path), "dataset": dataset}
    if metric is not None and managed is not None:
        raise InvalidParameterError(
            f"INPUT {path!r} is a dissimilarity store written by 'build' (metric {managed.get('metric')!r}); "
            "drop --metric (it applies to feature files)")
    if metric is None and (args.precomputed or managed is not None):
        if mparams or args.dtype is not None:
            raise UsageError("--metric-param and --dtype need --metric (INPUT is a precomputed matrix)")
        from .sources import open_dissimilarity

        opts = {"dataset": dataset} if dataset is not None else {}
        if dataset is not None and _suffix(path) not in (".zarr", ".h5", ".hdf5"):
            raise UsageError(f"--dataset applies to .zarr/.h5 inputs, not {path!r}")
        # validated while the command's own first pass streams it (no extra pass); stores
        # written by 'build' record that they are valid and are not re-checked
        validate = args.validate if args.validate is not None else True
        source = open_dissimilarity(path, validate=validate, **opts)
        desc.update(kind="precomputed", source_kind=source.kind,
                    metric=None if managed is None else managed.get("metric"))
        return source, desc
    if metric is None:
        raise InvalidParameterError(
            f"cannot tell whether INPUT {path!r} holds features or a dissimilarity matrix: pass "
            "--metric NAME (features; see --help for the names) or --precomputed (a square n×n matrix)")
    if args.validate:
        raise UsageError("--validate applies to precomputed matrices, not to features with --metric")
    from .sources.features import from_features

    X, fdataset = _features_arg(path, dataset)
    dtype = args.dtype or "float32"
    source = from_features(X, metric, dtype=dtype, dataset=fdataset, **mparams)
    desc.update(kind="features", metric=metric, metric_params=mparams, dtype=dtype,
                _features=(X, fdataset))
    return source, desc


@contextlib.contextmanager
def _cluster(args):
    """The distributed client chosen by --workers / --scheduler-file / --scheduler-address."""
    from . import engine

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
            cluster = getattr(client, "cluster", None)
            client.close()
            if cluster is not None:
                cluster.close()
        return
    if sfile is not None or saddr is not None:
        client, owned = engine.connect_client(None, saddr, sfile)
        try:
            yield client
        finally:
            if owned:
                client.close()
        return
    yield None


def _accepted(func):
    import inspect

    sig = inspect.signature(func)
    if any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values()):
        return None  # accepts anything
    return set(sig.parameters)


def _call(func, name, positional, given, optional):
    """Call ``func(*positional, **given, **optional)``.

    ``given`` are options the user set explicitly: an option the function does not take is an
    error (never silently dropped).  ``optional`` are passed only when the function takes them.
    """
    accepted = _accepted(func)
    kwargs = {}
    for key, (value, flag) in given.items():
        if value is None:
            continue
        if accepted is not None and key not in accepted:
            raise UsageError(f"{flag} does not apply to {name!r}")
        kwargs[key] = value
    for key, value in optional.items():
        if accepted is None or key in accepted:
            kwargs[key] = value
    return func(*positional, **kwargs)


def _atomic_npy(path, array):
    import numpy as np

    from .checkpoint import atomic_write_bytes

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    atomic_write_bytes(path, buf.getvalue())


def _jsonable(obj):
    import numpy as np

    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist() if obj.size <= 10000 else f"<array shape {list(obj.shape)}>"
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, float) and obj != obj:
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)


def write_outputs(outdir, result, summary: dict) -> None:
    """Write ``labels.npy``, ``medoids.npy`` then ``summary.json`` atomically into ``outdir``.

    Every file goes through a temporary file + rename; ``summary.json`` is written last, so
    a complete summary means complete outputs.
    """
    import numpy as np

    from .checkpoint import atomic_write_bytes

    os.makedirs(outdir, exist_ok=True)
    _atomic_npy(os.path.join(outdir, "labels.npy"), np.asarray(result.labels, dtype=np.int32))
    _atomic_npy(os.path.join(outdir, "medoids.npy"), np.asarray(result.medoids, dtype=np.int64))
    text = json.dumps(_jsonable(summary), indent=2, sort_keys=False) + "\n"
    atomic_write_bytes(os.path.join(outdir, "summary.json"), text.encode())


def _summary(result, *, command, method, source, desc, params, seconds):
    from ._version import __version__

    extra = {k: v for k, v in getattr(result, "extra", {}).items()}
    return {
        "command": command,
        "method": method,
        "algorithm": result.algorithm,
        "k": int(result.k),
        "n": int(result.n),
        "loss": float(result.loss),
        "medoids": [int(m) for m in result.medoids],
        "n_iter": int(result.n_iter),
        "n_swap": int(result.n_swap),
        "loss_history": [float(x) for x in result.loss_history],
        "seconds": round(float(seconds), 6),
        "input": dict({k: v for k, v in desc.items() if not k.startswith("_")}, n=int(source.n), dtype=str(source.dtype), fingerprint=source.fingerprint()),
        "parameters": params,
        "extra": extra,
        "version": __version__,
    }


def _check_plots_available(plots_dir):
    if plots_dir is None:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plots needs matplotlib; install it with: pip install 'chunked-medoids[plot]'") from None


def _check_output_dirs(*dirs):
    """Create the output directories up front, so a long run cannot fail at its very end."""
    for d in dirs:
        if d is None:
            continue
        os.makedirs(d, exist_ok=True)
        if not os.access(d, os.W_OK):
            raise ReadOnlyLocationError(f"output directory {d!r} is not writable")


def _write_plots(plots_dir, result, source):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    os.makedirs(plots_dir, exist_ok=True)
    written = []
    for name, fn, arg in (("convergence.png", plotting.plot_convergence, None),
                          ("silhouette.png", plotting.plot_silhouette, source),
                          ("cluster_sizes.png", plotting.plot_cluster_sizes, None)):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        if arg is None:
            fn(result, ax=ax)
        else:
            fn(arg, result, ax=ax)
        fig.tight_layout()
        out = os.path.join(plots_dir, name)
        fig.savefig(out, dpi=100)
        plt.close(fig)
        written.append(out)
    return written


def _print_result(result, seconds, out=None):
    out = out or sys.stdout
    print(f"method:   {result.algorithm}", file=out)
    print(f"n, k:     {result.n}, {result.k}", file=out)
    print(f"loss:     {result.loss:.10g}", file=out)
    print(f"passes:   {result.n_iter}   swaps: {result.n_swap}", file=out)
    med = ", ".join(str(int(m)) for m in result.medoids[:20]) + (", ..." if result.k > 20 else "")
    print(f"medoids:  [{med}]", file=out)
    print(f"time:     {seconds:.3f} s", file=out)


def _checkpoint_given(args) -> dict:
    """The ``given`` entries of the --checkpoint / --checkpoint-interval options (see _add_checkpoint)."""
    if args.checkpoint_interval is not None and args.checkpoint is None:
        raise UsageError("--checkpoint-interval needs --checkpoint FILE")
    return {"checkpoint": (args.checkpoint, "--checkpoint"),
            "checkpoint_interval": (args.checkpoint_interval, "--checkpoint-interval")}


def _with_checkpoint_signals(args):
    """Install the SIGTERM/SIGUSR1 checkpoint handlers when a checkpoint is in play."""
    if getattr(args, "checkpoint", None) is not None:
        from .checkpoint import install_signal_handlers

        install_signal_handlers()


# ---------------------------------------------------------------------------------------
# commands
# ---------------------------------------------------------------------------------------
def cmd_build(args) -> int:
    from .builder import build_dissimilarity, store_info

    _require_exists(args.features, "FEATURES")
    X, fdataset = _features_arg(args.features, args.dataset)
    mparams = _metric_params(args.metric_param)

    def on_signal(signum, frame):
        raise _BuildInterrupted(signum)

    old = {s: signal.signal(s, on_signal) for s in (signal.SIGTERM, signal.SIGUSR1)}
    t0 = time.perf_counter()
    try:
        with _cluster(args) as client:
            opts = {}
            if args.memory_limit is not None:
                opts["memory_limit"] = args.memory_limit
            build_dissimilarity(
                X, args.output, args.metric, dtype=args.dtype, block_rows=args.block_rows,
                compressor=None if args.compressor == "none" else args.compressor,
                overwrite=args.overwrite, client=client, progress=_progress(args),
                dataset=args.output_dataset if _suffix(args.output) in (".h5", ".hdf5") else "dissimilarity",
                features_dataset=fdataset, **opts, **mparams)
    finally:
        for s, h in old.items():
            signal.signal(s, h)
    seconds = time.perf_counter() - t0
    info = store_info(args.output, args.output_dataset if _suffix(args.output) in (".h5", ".hdf5") else None)
    print(f"built {info['path']}: {info['shape'][0]}×{info['shape'][1]} {info['dtype']}, metric "
          f"{info.get('metric')}, {_human(info.get('size_on_disk', 0))} on disk, {seconds:.2f} s")
    return EXIT_OK


def _human(n):
    from ._util import format_bytes

    return format_bytes(n or 0)


def cmd_info(args) -> int:
    from .builder import store_info

    _require_exists(args.store, "STORE")
    info = store_info(args.store, args.dataset)
    if args.json:
        print(json.dumps(_jsonable(info), indent=2))
        return EXIT_OK
    shape = info["shape"]
    lines = [
        ("path", info["path"]),
        ("format", info["format"] + (f"  dataset {info['dataset']}" if info.get("dataset") else "")),
        ("shape", " × ".join(str(s) for s in shape)),
        ("dtype", info["dtype"]),
        ("chunks", " × ".join(str(c) for c in info["chunks"]) if info.get("chunks") else "contiguous"),
        ("metric", "unknown (not written by chunked-medoids build)" if not info.get("managed")
         else f"{info.get('metric')}" + (f" {json.dumps(info['metric_params'])}" if info.get("metric_params") else "")),
        ("complete", ("yes" if info.get("complete") else "NO") + (
            f"  ({info['completed_stripes']} of {info['n_stripes']} stripes)" if info.get("n_stripes") else "")),
        ("size", f"{_human(info.get('nbytes'))} uncompressed, {_human(info.get('size_on_disk'))} on disk"
         + (f" (ratio {info['compression_ratio']:.2f})" if info.get("compression_ratio") else "")),
    ]
    if info.get("version"):
        lines.append(("built by", f"chunked_medoids {info['version']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {value}")
    return EXIT_OK


def _run_clustering(args, *, command, method_name, func, positional_extra, given, source_factory=None):
    """Shared body of fit / clara: open, cluster, print, write outputs and plots."""
    _check_plots_available(getattr(args, "plots", None))
    _check_output_dirs(args.output, getattr(args, "plots", None))
    _with_checkpoint_signals(args)
    with _cluster(args) as client:
        source, desc = _open_input(args, memory_limit=args.memory_limit)
        t0 = time.perf_counter()
        first, fixed = (source, {}) if source_factory is None else source_factory(source, desc, func)
        optional = {"progress": _progress(args), **fixed}
        given = dict(given)
        given["client"] = (client, "--workers/--scheduler-file/--scheduler-address")
        result = _call(func, method_name, (first, args.k, *positional_extra), given, optional)
        seconds = time.perf_counter() - t0
        params = {"k": args.k, **{key: value for key, (value, _) in given.items()
                                  if value is not None and key != "client"}}
        if client is not None:
            params["scheduler"] = str(getattr(client, "scheduler_info", lambda: {})().get("address", "distributed"))
        summary = _summary(result, command=command, method=method_name, source=source, desc=desc,
                           params=params, seconds=seconds)
        _print_result(result, seconds)
        if args.output:
            write_outputs(args.output, result, summary)
            print(f"outputs:  {os.path.abspath(args.output)}")
        if getattr(args, "plots", None):
            for path in _write_plots(args.plots, result, source):
                print(f"plot:     {path}")
    return EXIT_OK


def _sampling_features(source, desc, func):
    """CLARA-style methods work on the features themselves (cheaper than on-the-fly rows):
    hand them X, the metric and precomputed=False when INPUT holds features."""
    if desc.get("kind") != "features":
        return source, {}
    accepted = _accepted(func)
    if accepted is not None and not {"metric", "precomputed"} <= accepted:
        return source, {}
    X, fdataset = desc["_features"]
    if fdataset is not None:  # clara() reads feature files without a dataset name
        return source, {}
    extra = {"metric": desc["metric"], "precomputed": False}
    if desc.get("metric_params"):
        extra["metric_params"] = desc["metric_params"]
    return X, extra


def cmd_fit(args) -> int:
    from .algorithms import get_method

    spec = get_method(args.method)
    given = {
        "init": (args.init, "--init"),
        "random_state": (args.seed, "--seed"),
        "max_iter": (args.max_iter, "--max-iter"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **_checkpoint_given(args),
    }
    factory = _sampling_features if spec.family == "sampling" else None
    return _run_clustering(args, command="fit", method_name=spec.name, func=spec.func,
                           positional_extra=(), given=given, source_factory=factory)


def cmd_clara(args) -> int:
    from .algorithms.clara import clara

    given = {
        "variant": (args.variant, "--variant"),
        "n_samples": (args.n_samples, "--n-samples"),
        "sample_size": (args.sample_size, "--sample-size"),
        "random_state": (args.seed, "--seed"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **_checkpoint_given(args),
    }
    return _run_clustering(args, command="clara", method_name="clara", func=clara,
                           positional_extra=(), given=given, source_factory=_sampling_features)


def _load_index_file(path, what):
    import numpy as np

    from ._errors import InvalidParameterError

    _require_exists(path, what)
    if _suffix(path) == ".npy":
        arr = np.load(path, allow_pickle=False)
    else:
        try:
            arr = np.loadtxt(path, dtype=np.float64, ndmin=1, delimiter=None)
        except ValueError as exc:
            raise InvalidParameterError(f"{what} file {path!r} is not a list of integers: {exc}") from None
    arr = np.asarray(arr)
    if arr.ndim != 1:
        raise InvalidParameterError(f"{what} file {path!r} must hold a 1-D array, got shape {arr.shape}")
    if arr.dtype.kind == "f":
        if not np.all(np.isfinite(arr)) or not np.all(arr == np.round(arr)):
            raise InvalidParameterError(f"{what} file {path!r} must hold integers")
        arr = arr.astype(np.int64)
    return arr


def cmd_silhouette(args) -> int:
    import numpy as np

    import chunked_medoids as cm

    if args.medoids is not None:
        for flag, value in (("--memory-limit", args.memory_limit), ("--workers", args.workers),
                            ("--scheduler-file", args.scheduler_file),
                            ("--scheduler-address", args.scheduler_address)):
            if value is not None:
                raise UsageError(f"{flag} does not apply to --medoids (the medoid silhouette reads only "
                                 "the k medoid rows, in this process)")
    with _cluster(args) as client:
        source, _ = _open_input(args, memory_limit=args.memory_limit)
        want = args.samples_out is not None
        optional = {"progress": _progress(args)}
        given = {"memory_limit": (args.memory_limit, "--memory-limit"),
                 "client": (client, "--workers/--scheduler-file/--scheduler-address")}
        if args.labels is not None:
            labels = _load_index_file(args.labels, "--labels")
            values = _call(cm.silhouette, "silhouette", (source, labels), dict(given, samples=(True, "")),
                           optional)
            score = float(np.mean(values))  # exactly what silhouette(samples=False) returns
            what = "silhouette"
        else:
            medoids = _load_index_file(args.medoids, "--medoids")
            score = float(cm.medoid_silhouette(source, medoids))  # k medoid rows only: cheap
            values = cm.medoid_silhouette(source, medoids, samples=True) if want else None
            what = "medoid silhouette"
        print(f"{what}: {score:.10g}")
        if want:
            _atomic_npy(args.samples_out, np.asarray(values, dtype=np.float64))
            print(f"samples:  {os.path.abspath(args.samples_out)}")
    return EXIT_OK


def cmd_dynmsc(args) -> int:
    import chunked_medoids as cm

    given = {
        "kmin": (args.kmin, "--kmin"),
        "init": (args.init, "--init"),
        "random_state": (args.seed, "--seed"),
        "max_iter": (args.max_iter, "--max-iter"),
        "memory_limit": (args.memory_limit, "--memory-limit"),
        **_checkpoint_given(args),
    }
    _check_output_dirs(args.output)
    _with_checkpoint_signals(args)
    with _cluster(args) as client:
        source, desc = _open_input(args, memory_limit=args.memory_limit)
        given["client"] = (client, "--workers/--scheduler-file/--scheduler-address")
        t0 = time.perf_counter()
        res = _call(cm.dynmsc, "dynmsc", (source, args.kmax), given, {"progress": _progress(args)})
        seconds = time.perf_counter() - t0
        scores = _scores_by_k(res, args.kmin if args.kmin is not None else 2)
        print(f"best k:   {int(res.k)}")
        print(f"score:    {float(res.score):.10g}  (average medoid silhouette)")
        print("scores:   " + "  ".join(f"k={k}: {s:.6g}" for k, s in scores.items()))
        print(f"time:     {seconds:.3f} s")
        if args.output:
            params = {"kmax": args.kmax, **{key: value for key, (value, _) in given.items()
                                            if value is not None and key != "client"}}
            summary = _summary(res, command="dynmsc", method="dynmsc", source=source, desc=desc,
                               params=params, seconds=seconds)
            summary["score"] = float(res.score)
            summary["scores"] = {str(k): float(v) for k, v in scores.items()}
            summary["extra"] = {k: v for k, v in summary["extra"].items() if k not in ("scores", "score")}
            write_outputs(args.output, res, summary)
            print(f"outputs:  {os.path.abspath(args.output)}")
    return EXIT_OK


def _scores_by_k(res, kmin):
    import numpy as np

    scores = getattr(res, "scores", None)
    if scores is None:
        return {}
    if isinstance(scores, dict):
        return {int(k): float(v) for k, v in sorted(scores.items())}
    arr = np.asarray(scores, dtype=np.float64)
    ks = getattr(res, "ks", None)
    if ks is None:
        ks = range(kmin, kmin + arr.shape[0])
    return {int(k): float(v) for k, v in zip(ks, arr)}


def cmd_demo(args) -> int:
    import numpy as np

    import chunked_medoids as cm

    try:
        from sklearn.datasets import load_digits
        from sklearn.metrics import adjusted_rand_score
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise UsageError("the demo needs scikit-learn (pip install scikit-learn)") from None
    out = args.output
    os.makedirs(out, exist_ok=True)
    digits = load_digits()
    X, y = digits.data.astype(np.float64), digits.target
    print(f"digits:   {X.shape[0]} images of 8×8 pixels, 10 classes")
    store = os.path.join(out, "digits.zarr")
    with _cluster(args) as client:
        t0 = time.perf_counter()
        D = cm.build_dissimilarity(X, store, "euclidean", memory_limit="64MiB", client=client,
                                   progress=_progress(args))
        t1 = time.perf_counter()
        print(f"matrix:   {store} ({D.n}×{D.n} float32, built in {t1 - t0:.2f} s)")
        result = cm.fasterpam(D, 10, init="build", random_state=args.seed, client=client,
                              progress=_progress(args))
        t2 = time.perf_counter()
    ari = adjusted_rand_score(y, result.labels)
    _print_result(result, t2 - t1)
    print(f"ARI:      {ari:.4f} (adjusted Rand index against the true digits)")
    print(f"medoid digits: {[int(y[m]) for m in result.medoids]}")
    summary = _summary(result, command="demo", method="fasterpam", source=D,
                       desc={"path": os.path.abspath(store), "kind": "precomputed", "metric": "euclidean"},
                       params={"k": 10, "init": "build", "seed": args.seed}, seconds=t2 - t1)
    summary["ari"] = float(ari)
    write_outputs(out, result, summary)
    try:
        import matplotlib
    except ImportError:
        print("note:     matplotlib is not installed; plots skipped (pip install 'chunked-medoids[plot]')")
        return EXIT_OK
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from . import plotting

    fig, axes = plt.subplots(2, 5, figsize=(8, 4.4))
    for ax, slot in zip(axes.ravel(), range(result.k)):
        m = int(result.medoids[slot])
        ax.imshow(X[m].reshape(8, 8), cmap="gray_r", interpolation="nearest")
        size = int(np.sum(result.labels == slot))
        ax.set_title(f"digit {int(y[m])}: {size} pts", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"FasterPAM medoids of the digits (k=10, ARI {ari:.3f})")
    fig.tight_layout()
    paths = [os.path.join(out, "medoids.png")]
    fig.savefig(paths[0], dpi=100)
    plt.close(fig)
    for name, fn, extra in (("convergence.png", plotting.plot_convergence, ()),
                            ("silhouette.png", plotting.plot_silhouette, (D,))):
        fig, ax = plt.subplots(figsize=(7, 4.5))
        fn(*extra, result, ax=ax)
        fig.tight_layout()
        paths.append(os.path.join(out, name))
        fig.savefig(paths[-1], dpi=100)
        plt.close(fig)
    for p in paths:
        print(f"plot:     {p}")
    return EXIT_OK


# ---------------------------------------------------------------------------------------
# entry point
# ---------------------------------------------------------------------------------------
def _setup_logging(verbose: int) -> None:
    level = logging.WARNING if not verbose else (logging.INFO if verbose == 1 else logging.DEBUG)
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s: %(message)s", "%H:%M:%S"))
    root = logging.getLogger("chunked_medoids")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def _error(message: str) -> int:
    first = " ".join(str(message).split())  # one line
    print(f"{PROG}: error: {first}", file=sys.stderr)
    return EXIT_USAGE


def main(argv=None) -> int:
    """Run the command line; returns the exit code (see the module notes)."""
    parser = build_parser()
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    try:
        args = parser.parse_args(argv)
    except UsageError as exc:
        return _error(str(exc))
    except SystemExit as exc:  # --help / --version
        return int(exc.code or 0)
    debug = bool(getattr(args, "debug", False)) or debug
    _setup_logging(getattr(args, "verbose", 0) or 0)

    from ._errors import ChunkedMedoidsError
    from .checkpoint import CheckpointInterrupt

    try:
        return args.func(args)
    except CheckpointInterrupt as exc:
        if debug:
            import traceback

            traceback.print_exc()
        print(f"{PROG}: interrupted by signal {exc.signum}; checkpoint saved to {exc.path!r}; "
              "rerun the same command to resume", file=sys.stderr)
        return EXIT_INTERRUPTED
    except _BuildInterrupted as exc:
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
        return _error(msg)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
