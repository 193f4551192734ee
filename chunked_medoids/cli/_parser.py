"""The parser of ``chunked-medoids``, built from a declarative table.

:data:`COMMANDS` lists every subcommand: its help line, its description with examples, the
module that runs it (``chunked_medoids.cli.<module>.run``, imported only when the command
runs) and its options.  An option is an :func:`opt` (the arguments of
``add_argument``), a shared block of options named by a string (see :data:`BLOCKS`), an
:class:`Exclusive` group or a titled :class:`Group`.

Choices that come from the library's registries (methods, inits, metrics, CLARA variants)
are read on first use, so building the parser imports neither numba nor dask.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field

from ..sources.inputs import FEATURES, MATRIX, WRITABLE_KINDS, describe_suffixes
from ._common import PROG, UsageError

EPILOG = """\
exit codes:
  0  success
  2  usage error or bad input (one-line message on stderr; --debug shows the traceback)
  3  interrupted by SIGTERM/SIGUSR1 after the checkpoint (fit/clara/dynmsc with
     --checkpoint) or the finished stripes (build) were saved: rerun the same command
     to resume (SLURM: #SBATCH --signal=B:USR1@300 and requeue on exit code 3)

Run 'chunked-medoids COMMAND --help' for the options and examples of each command.
"""

DESCRIPTION = ("Exact k-medoids clustering (PAM, FastPAM, FasterPAM, CLARA, CLARANS, DynMSC) of "
               "dissimilarity matrices larger than memory, streamed from zarr/HDF5 stores or "
               "computed on the fly from features, in parallel with Dask.")

DTYPES = ["float32", "float64", "int32", "int64", "float16"]

# the suffixes the help names, from the library's one table (sources/inputs.py)
_FEATURE_SUFFIXES = describe_suffixes(role=FEATURES)
_MATRIX_SUFFIXES = describe_suffixes(role=MATRIX)
_STORE_SUFFIXES = describe_suffixes(WRITABLE_KINDS)


class Parser(argparse.ArgumentParser):
    """ArgumentParser whose errors become :class:`UsageError` (one-line message, exit 2)."""

    def error(self, message):  # noqa: D401 - argparse hook
        raise UsageError(f"{self.prog.split(' ', 1)[-1] + ': ' if ' ' in self.prog else ''}{message} "
                         f"(see '{self.prog} --help')")


class Formatter(argparse.RawDescriptionHelpFormatter):
    def __init__(self, prog):
        super().__init__(prog, max_help_position=34, width=100)


class RegistryChoices:
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
    from ..algorithms import METHOD_ALIASES, METHODS, _load_all

    _load_all()
    return sorted(METHODS) + sorted(METHOD_ALIASES)


def _init_names():
    from ..algorithms import INITS, _load_all

    _load_all()
    return sorted(INITS)


def _clara_variants():
    from ..algorithms.clara import ALL_VARIANTS

    return list(ALL_VARIANTS)


def _metric_names():
    from ..metrics import metric_names

    return metric_names(aliases=True)


METRICS = RegistryChoices(_metric_names)
METHODS = RegistryChoices(_method_names)
INITS = RegistryChoices(_init_names)
VARIANTS = RegistryChoices(_clara_variants)


# ---------------------------------------------------------------------------------------
# the table's vocabulary
# ---------------------------------------------------------------------------------------
def opt(*flags, **kwargs):
    """One ``add_argument(*flags, **kwargs)``."""
    return (flags, kwargs)


@dataclass
class Exclusive:
    """A mutually exclusive group of options."""

    options: list
    required: bool = False


@dataclass
class Group:
    """A titled argument group (shown as its own section of --help)."""

    title: str
    options: list


@dataclass
class Command:
    name: str
    help: str
    description: str
    module: str
    options: list = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# shared blocks of options
# ---------------------------------------------------------------------------------------
_CLUSTER = Exclusive([
    opt("--scheduler-file", metavar="FILE",
        help="connect to a running Dask cluster through its scheduler file "
             "(dask-mpi, dask-jobqueue, 'dask scheduler --scheduler-file')"),
    opt("--scheduler-address", metavar="ADDR", help="connect to a running Dask scheduler, e.g. tcp://host:8786"),
    opt("--workers", type=int, metavar="N",
        help="start a local distributed cluster of N worker processes (1 thread each) for this "
             "command; closed at exit"),
])
_GENERAL = [
    opt("--debug", action="store_true", default=argparse.SUPPRESS, help="show full tracebacks on errors"),
    opt("-v", "--verbose", action="count", default=argparse.SUPPRESS,
        help="log progress to stderr (-v INFO, -vv DEBUG)"),
]

BLOCKS = {
    "general": [Group("general", _GENERAL + [_CLUSTER])],
    "general-local": [Group("general", _GENERAL)],
    "memory": [opt("--memory-limit", metavar="SIZE", default=None,
                   help="budget for matrix row blocks held at once, e.g. 512MiB, 4GiB "
                        "(default: the library default, 1GiB)")],
    "resident": [opt("--resident", choices=("auto", "yes", "no"), default=None,
                     help="hold the matrix's row stripes for the run once read from storage, so a "
                          "store is read once instead of once per pass: auto (default) when it fits "
                          "half of --memory-limit (on a cluster: half of the workers' memory limits, the "
                          "stripes held on the workers), yes whenever it fits, no never")],
    "progress": [opt("--progress", action=argparse.BooleanOptionalAction, default=None,
                     help="show one progress bar per phase on stderr, and a note when numba compiles "
                          "its kernels (default: when stderr is a terminal)")],
    "input": [
        opt("input", metavar="INPUT",
            help=f"features ({_FEATURE_SUFFIXES}; a store's array named with --dataset) used with "
                 "--metric, or a square dissimilarity matrix (a store written by 'build' -- detected "
                 f"automatically -- or any {_MATRIX_SUFFIXES} matrix with --precomputed)"),
        Exclusive([
            opt("--metric", metavar="NAME", choices=METRICS,
                help="INPUT holds features; compute dissimilarities on the fly with this metric "
                     "(one of: %(choices)s; with gower the text columns of a CSV file are categories)"),
            opt("--precomputed", action="store_true", help="INPUT is a square n×n dissimilarity matrix"),
        ]),
        opt("--dataset", metavar="NAME", help="dataset/array name inside an HDF5 file or zarr group INPUT"),
        opt("--metric-param", metavar="KEY=VALUE", action="append", default=[],
            help="metric parameter (value parsed as JSON), e.g. --metric-param p=3; repeatable"),
        opt("--dtype", default=None, choices=DTYPES,
            help="element type of on-the-fly dissimilarities (with --metric; default float32)"),
        opt("--validate", action=argparse.BooleanOptionalAction, default=None,
            help="check a precomputed matrix (NaN/inf, negative, diagonal, symmetry) while the first "
                 "pass streams it, no extra pass (default: on; stores written by 'build' are valid by "
                 "construction); --no-validate skips the check (for a matrix you trust)"),
    ],
    "outputs": [
        opt("-o", "--output", metavar="DIR",
            help="write DIR/labels.npy (int32, n), DIR/medoids.npy (int64, k) and DIR/summary.json "
                 "(written last, atomically); a DIR that already holds results is refused unless "
                 "--overwrite (or --checkpoint names this run's existing checkpoint)"),
        opt("--overwrite", action="store_true", help="replace results already in -o DIR"),
    ],
    "checkpoint": [
        opt("--checkpoint", metavar="FILE",
            help="save the run's state to FILE (atomically) and resume from it when it exists; "
                 "SIGTERM/SIGUSR1 save it and exit with code 3"),
        opt("--checkpoint-interval", type=float, default=None, metavar="SEC",
            help="seconds between checkpoint saves inside a pass (default: the method's, 60; "
                 "0 = at every block boundary)"),
    ],
    "seed": [opt("--seed", type=int, metavar="S",
                 help="random seed (random/LAB init, sampling methods); without it a seed is drawn "
                      "and recorded in summary.json and the checkpoint, so --seed <recorded> "
                      "reproduces the run")],
    "plots": [
        opt("--plots", metavar="DIR",
            help="write convergence.png, silhouette.png, cluster_sizes.png and, for feature "
                 "input, projection.png (a 2-D projection with the medoids marked) to DIR (matplotlib)"),
        opt("--plot-silhouette", choices=["medoid", "classic", "both"], default="medoid",
            help="with --plots: the medoid silhouette (silhouette.png, reads k rows of D), the classic "
                 "silhouette (silhouette_classic.png, one pass over D) or both (default medoid)"),
    ],
}


# ---------------------------------------------------------------------------------------
# the subcommands
# ---------------------------------------------------------------------------------------
COMMANDS = [
    Command(
        "build", module="build",
        help="compute the n×n dissimilarity of a feature file into a chunked .zarr/.h5 store",
        description="Compute the full n×n dissimilarity matrix of FEATURES into a chunked store "
                    "(zarr directory or HDF5 file), in parallel and within --memory-limit.  The build "
                    "is resumable: rerunning the same command after an interruption computes only "
                    "the missing row stripes.\n\nexamples:\n"
                    "  chunked-medoids build X.npy -o D.zarr --metric euclidean --memory-limit 2GiB\n"
                    "  chunked-medoids build data.csv -o D.h5 --metric manhattan --output-dataset dist\n"
                    "  chunked-medoids build X.h5 --dataset features -o D.zarr --metric cosine --workers 4",
        options=[
            opt("features", metavar="FEATURES",
                help=f"feature rows: {_FEATURE_SUFFIXES} (text files: numeric, header auto-detected; "
                     "text columns are categories with --metric gower)"),
            opt("-o", "--output", metavar="STORE", required=True,
                help=f"output store: {_STORE_SUFFIXES} (a zarr v3 directory or an HDF5 file)"),
            opt("--metric", metavar="NAME", required=True, choices=METRICS,
                help="dissimilarity metric (one of: %(choices)s)"),
            opt("--metric-param", metavar="KEY=VALUE", action="append", default=[],
                help="metric parameter (value parsed as JSON), e.g. --metric-param p=3; repeatable"),
            opt("--dataset", metavar="NAME",
                help="dataset/array name of the features inside an HDF5 file or zarr group"),
            opt("--output-dataset", metavar="NAME", default="dissimilarity",
                help="dataset name of the matrix in an HDF5 STORE (default: dissimilarity)"),
            opt("--dtype", default="float32", choices=DTYPES,
                help="element type stored (default float32); float16 halves the bytes on disk and per "
                     "pass: distances x scale rounded to float16 (relative error <= 2**-11), read as float32"),
            opt("--scale", type=float, metavar="S",
                help="with --dtype float16: the scale (a power of two; stored = distance x S); default "
                     "chosen from the data so that nothing overflows float16"),
            opt("--compressor", default="default",
                help="'default' (zarr: none, i.e. raw chunks + crc32c, fastest passes; HDF5: lzf), lz4, "
                     "zstd (smallest: for network file systems), blosc-zstd, gzip, lzf, none"),
            opt("--block-rows", type=int, metavar="ROWS",
                help="force the row-stripe height instead of deriving it from --memory-limit"),
            opt("--overwrite", action="store_true", help="replace an existing STORE"),
            "memory", "progress", "general",
        ],
    ),
    Command(
        "rechunk", module="rechunk",
        help="write a row-striped copy of a dissimilarity store chunked in tiles or columns",
        description="Copy the square dissimilarity matrix INPUT (.zarr / .h5 / .npy) into a store of "
                    "row stripes, the layout every pass streams fastest, within --memory-limit.  The "
                    "input is read once (a column-striped store of a symmetric matrix as row stripes "
                    "transposed); the copy is resumable and marked complete only when every stripe "
                    "is written.\n\nexamples:\n"
                    "  chunked-medoids rechunk tiles.zarr -o D.zarr --memory-limit 2GiB\n"
                    "  chunked-medoids rechunk foreign.h5 --dataset dist -o D.zarr",
        options=[
            opt("input", metavar="INPUT", help="square dissimilarity matrix: .zarr, .h5/.hdf5 or .npy"),
            opt("-o", "--output", metavar="STORE", required=True,
                help="output store: *.zarr (zarr v3 directory) or *.h5 / *.hdf5 (HDF5 file)"),
            opt("--dataset", metavar="NAME", help="array / dataset name of INPUT inside a zarr group or HDF5 file"),
            opt("--output-dataset", metavar="NAME", default="dissimilarity",
                help="dataset name of the copy in an HDF5 STORE (default: dissimilarity)"),
            opt("--compressor", default="default",
                help="'default' (zarr: blosc-lz4, HDF5: lzf), lz4, zstd, blosc-zstd, gzip, lzf, none"),
            opt("--block-rows", type=int, metavar="ROWS",
                help="force the row-stripe height instead of deriving it from --memory-limit"),
            opt("--validate", action=argparse.BooleanOptionalAction, default=True,
                help="check INPUT (NaN/inf, negative, diagonal, symmetry) as it streams (default: on)"),
            opt("--overwrite", action="store_true", help="replace an existing STORE (never INPUT)"),
            "memory", "progress", "general",
        ],
    ),
    Command(
        "info", module="info",
        help="describe a dissimilarity store (shape, dtype, chunks, metric, completeness, size)",
        description="Describe a .zarr or .h5 dissimilarity store without reading its values.\n\n"
                    "examples:\n  chunked-medoids info D.zarr\n  chunked-medoids info D.h5 --dataset dist --json",
        options=[
            opt("store", metavar="STORE", help=f"a {_STORE_SUFFIXES} store (zarr directory or HDF5 file)"),
            opt("--dataset", metavar="NAME", help="dataset / array name inside the store"),
            opt("--json", action="store_true", help="print the full description as JSON"),
            "general-local",
        ],
    ),
    Command(
        "fit", module="fit",
        help="k-medoids clustering with any registered method (default fasterpam)",
        description="Cluster INPUT into k clusters with a registered k-medoids method and write "
                    "labels, medoids and a JSON summary.\n\nexamples:\n"
                    "  chunked-medoids fit D.zarr -k 10 -o out/\n"
                    "  chunked-medoids fit X.npy --metric euclidean -k 10 --method fastpam2 --init build -o out/\n"
                    "  chunked-medoids fit D.h5 -k 50 --checkpoint run.ckpt --scheduler-file sched.json -o out/\n"
                    "  chunked-medoids fit D.zarr -k 10 -o out/ --plots out/plots",
        options=[
            "input",
            opt("-k", "--n-clusters", dest="k", type=int, required=True, metavar="K",
                help="number of medoids (1 <= K <= n)"),
            opt("--method", default="fasterpam", metavar="NAME", choices=METHODS,
                help="clustering method (default fasterpam; one of: %(choices)s)"),
            opt("--init", metavar="NAME", choices=INITS,
                help="initialisation (default: the method's own; one of: %(choices)s). On a stored "
                     "matrix larger than RAM use lab (its subsample rows in one read) or random; build "
                     "reads the whole matrix once per medoid"),
            "seed",
            opt("--max-iter", type=int, metavar="N", help="maximum number of iterations / passes"),
            "memory", "resident", "checkpoint", "outputs", "plots", "progress", "general",
        ],
    ),
    Command(
        "clara", module="clara",
        help="CLARA-family clustering on samples, scored on the full data",
        description="CLARA / FastCLARA: cluster random samples, keep the medoids with the best loss "
                    "on the full data; same outputs as 'fit'.\n\nexamples:\n"
                    "  chunked-medoids clara X.npy --metric euclidean -k 20 --seed 0 -o out/\n"
                    "  chunked-medoids clara D.zarr -k 20 --n-samples 10 --sample-size 2000 -o out/",
        options=[
            "input",
            opt("-k", "--n-clusters", dest="k", type=int, required=True, metavar="K", help="number of medoids"),
            opt("--variant", metavar="NAME", choices=VARIANTS,
                help="inner optimiser on each sample; largeclara (feature files only) is FasterPAM on "
                     "large samples plus a polish on the full data (default: largeclara for feature files "
                     "of at least 100000 rows, else fasterclara; one of: %(choices)s)"),
            opt("--n-samples", type=int, metavar="N", help="number of samples"),
            opt("--sample-size", type=int, metavar="M", help="points per sample"),
            "seed", "memory", "checkpoint", "outputs", "plots", "progress", "general",
        ],
    ),
    Command(
        "silhouette", module="silhouette",
        help="silhouette of given labels, or medoid silhouette of given medoids",
        description="Print the average silhouette of a labelling (one streaming pass over D) or the "
                    "average medoid silhouette of a set of medoids (reads only the k medoid rows).\n\n"
                    "examples:\n"
                    "  chunked-medoids silhouette D.zarr --labels out/labels.npy\n"
                    "  chunked-medoids silhouette D.zarr --medoids out/medoids.npy --samples-out s.npy",
        options=[
            "input",
            Exclusive([
                opt("--labels", metavar="FILE", help=".npy (or text) file of n integer labels"),
                opt("--medoids", metavar="FILE", help=".npy (or text) file of k medoid indices"),
            ], required=True),
            opt("--samples-out", metavar="FILE", help="also write the per-point values to FILE (.npy)"),
            "memory", "resident", "progress", "general",
        ],
    ),
    Command(
        "dynmsc", module="dynmsc",
        help="choose k by the best average medoid silhouette (DynMSC)",
        description="Run DynMSC for k = KMIN..KMAX and print the best k, its average medoid "
                    "silhouette and the score of every k.  A best k at KMIN or KMAX is reported "
                    "with a warning: the range may be too narrow.\n\nexamples:\n"
                    "  chunked-medoids dynmsc D.zarr --kmax 20\n"
                    "  chunked-medoids dynmsc X.npy --metric euclidean --kmin 3 --kmax 12 -o out/\n"
                    "  chunked-medoids dynmsc D.h5 --kmax 30 --checkpoint dyn.ckpt -o out/ --plots out/plots",
        options=[
            "input",
            opt("--kmax", type=int, required=True, metavar="K", help="largest k tried"),
            opt("--kmin", type=int, default=None, metavar="K", help="smallest k tried (default 2)"),
            opt("--init", metavar="NAME", choices=INITS,
                help="initialisation (one of: %(choices)s; default build; out of core prefer lab: one "
                     "read of its subsample rows instead of one full pass per medoid)"),
            "seed",
            opt("--max-iter", type=int, metavar="N", help="maximum number of passes"),
            "memory", "resident", "checkpoint", "outputs",
            opt("--plots", metavar="DIR",
                help="write scores.png (average medoid silhouette against k, best k marked) and the "
                     "plots of the best clustering (as 'fit --plots') to DIR (matplotlib)"),
            "progress", "general",
        ],
    ),
    Command(
        "demo", module="demo",
        help="end-to-end demo on scikit-learn's digits (build, FasterPAM, ARI, plots)",
        description="Cluster scikit-learn's 1797 handwritten digits end to end: build a zarr "
                    "matrix, run FasterPAM with k=10, print the loss and the adjusted Rand index "
                    "against the true digits, and (with matplotlib) write medoids.png, "
                    "convergence.png, silhouette.png and cluster_sizes.png.\n\nexamples:\n"
                    "  chunked-medoids demo\n  chunked-medoids demo --output demo_out --workers 2",
        options=[
            opt("-o", "--output", metavar="DIR", default="chunked-medoids-demo",
                help="directory for the store, outputs and plots (default ./chunked-medoids-demo)"),
            opt("--overwrite", action="store_true", help="replace results already in the output directory"),
            opt("--seed", type=int, default=0, metavar="S", help="random seed (default 0)"),
            "progress", "general",
        ],
    ),
]


# ---------------------------------------------------------------------------------------
# building the parser from the table
# ---------------------------------------------------------------------------------------
def _add(target, item, parser):
    if isinstance(item, str):
        for sub in BLOCKS[item]:
            _add(target, sub, parser)
    elif isinstance(item, Group):
        group = parser.add_argument_group(item.title)
        for sub in item.options:
            _add(group, sub, parser)
    elif isinstance(item, Exclusive):
        group = target.add_mutually_exclusive_group(required=item.required)
        for sub in item.options:
            _add(group, sub, parser)
    else:
        flags, kwargs = item
        target.add_argument(*flags, **kwargs)


def build_parser() -> argparse.ArgumentParser:
    """The argparse parser of ``chunked-medoids`` (cheap: registries load on first use)."""
    from .._version import __version__

    parser = Parser(prog=PROG, formatter_class=Formatter, epilog=EPILOG, description=DESCRIPTION)
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("-v", "--verbose", action="count", default=0,
                        help="log progress to stderr (-v INFO, -vv DEBUG)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        p = sub.add_parser(command.name, formatter_class=Formatter, epilog=EPILOG, help=command.help,
                           description=command.description)
        for item in command.options:
            _add(p, item, p)
        p.set_defaults(command_module=command.module)
    return parser


def subparser(parser, name):
    """The parser of subcommand ``name`` (None when unknown)."""
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            return action.choices.get(name)
    return None
