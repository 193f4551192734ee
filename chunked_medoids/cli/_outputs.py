"""Output writing of the command line: ``labels.npy``, ``medoids.npy``, ``summary.json``
(atomically, summary last) and the plots.  The demo uses the same functions.
"""

from __future__ import annotations

import io
import json
import os

from ._common import UsageError

#: the result files of fit / clara / dynmsc / demo in ``-o DIR``.
RESULT_FILES = ("labels.npy", "medoids.npy", "summary.json")


def atomic_npy(path, array) -> None:
    import numpy as np

    from .. import checkpoint

    buf = io.BytesIO()
    np.save(buf, array, allow_pickle=False)
    checkpoint.atomic_write_bytes(path, buf.getvalue())


#: arrays with more elements are summarised in summary.json / info --json.
SUMMARY_ARRAY_SIZE = 10000


def jsonable(obj):
    """``obj`` as plain JSON data: the library's one converter (``_util.jsonable``; NaN
    becomes null), arrays of more than :data:`SUMMARY_ARRAY_SIZE` elements a short description."""
    from .._util import jsonable as convert

    return convert(obj, max_array_size=SUMMARY_ARRAY_SIZE)


def write_outputs(outdir, result, summary: dict) -> None:
    """Write ``labels.npy``, ``medoids.npy`` then ``summary.json`` atomically into ``outdir``.

    Every file goes through a temporary file + rename (mode from the umask); ``summary.json``
    is written last, so a complete summary means complete outputs.
    """
    import numpy as np

    from .. import checkpoint

    os.makedirs(outdir, exist_ok=True)
    atomic_npy(os.path.join(outdir, "labels.npy"), np.asarray(result.labels, dtype=np.int32))
    atomic_npy(os.path.join(outdir, "medoids.npy"), np.asarray(result.medoids, dtype=np.int64))
    text = json.dumps(jsonable(summary), indent=2, sort_keys=False) + "\n"
    checkpoint.atomic_write_bytes(os.path.join(outdir, "summary.json"), text.encode())


def summary(result, *, command, method, source, desc, params, seconds, seed=None, seed_drawn=False):
    """The ``summary.json`` document of a run."""
    from .._version import __version__

    extra = dict(getattr(result, "extra", {}) or {})
    doc = {
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
        "input": dict({k: v for k, v in desc.items() if not k.startswith("_")}, n=int(source.n),
                      dtype=str(source.dtype), fingerprint=source.fingerprint()),
        "parameters": params,
        "extra": extra,
        "version": __version__,
    }
    if seed is not None:
        # rerunning with --seed <seed> (and the same other options) reproduces this run
        doc["seed"] = int(seed)
        doc["seed_drawn"] = bool(seed_drawn)
    return doc


def check_plots_available(plots_dir) -> None:
    if plots_dir is None:
        return
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        raise UsageError("--plots needs matplotlib; install it with: pip install 'chunked-medoids[plot]'") from None


def _make_dir(path, flag) -> None:
    if os.path.exists(path) and not os.path.isdir(path):
        raise UsageError(f"{flag} {path!r} is an existing file, not a directory; {flag} names the directory "
                         "that receives the outputs: choose a directory path")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as exc:
        raise UsageError(f"{flag} {path!r}: cannot create the directory ({exc.strerror or exc}); "
                         f"choose a writable location for {flag}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise UsageError(f"{flag} {path!r} is not writable; choose a writable directory for {flag}")


def check_output_dirs(output=None, plots=None, *, overwrite=False, resuming=False) -> None:
    """Check -o DIR and --plots DIR before any work, so a long run cannot fail at its end.

    ``-o DIR`` that already holds results is refused unless ``overwrite`` (``--overwrite``) or
    ``resuming`` (``--checkpoint`` names an existing checkpoint: the rerun of the same command
    writes the results of that very run; the checkpoint itself refuses another run).
    """
    if output is not None:
        if os.path.isdir(output) and not (overwrite or resuming):
            present = [f for f in RESULT_FILES if os.path.exists(os.path.join(output, f))]
            if present:
                raise UsageError(
                    f"-o/--output {output!r} already holds results ({', '.join(present)}); pass --overwrite "
                    "to replace them, or choose another directory")
        _make_dir(output, "-o/--output")
    if plots is not None:
        _make_dir(plots, "--plots")


def save_figure(fig, path) -> str:
    """Save ``fig`` as PNG to ``path`` atomically (mode from the umask) and close it."""
    from .. import checkpoint

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    import matplotlib.pyplot as plt

    plt.close(fig)
    checkpoint.atomic_write_bytes(path, buf.getvalue())
    return path


def pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def write_plots(plots_dir, result, source, *, features=None, silhouette="medoid", engine_opts=None):
    """The plots of a clustering result into ``plots_dir``; returns the paths written.

    convergence.png, silhouette.png (the medoid silhouette: k medoid rows read) and/or
    silhouette_classic.png (the classic silhouette: one streaming pass over D) as
    ``silhouette`` says (``"medoid"``, ``"classic"`` or ``"both"``), cluster_sizes.png and, for
    feature data, projection.png (a 2-D projection with the medoids marked).
    """
    from .. import plotting

    plt = pyplot()
    os.makedirs(plots_dir, exist_ok=True)
    written = []

    def one(name, draw, figsize=(7, 4.5)):
        fig, ax = plt.subplots(figsize=figsize)
        draw(ax)
        fig.tight_layout()
        written.append(save_figure(fig, os.path.join(plots_dir, name)))

    one("convergence.png", lambda ax: plotting.plot_convergence(result, ax=ax))
    if silhouette in ("medoid", "both"):
        one("silhouette.png", lambda ax: plotting.plot_silhouette(source, result, ax=ax))
    if silhouette in ("classic", "both"):
        one("silhouette_classic.png",
            lambda ax: plotting.plot_silhouette(source, result, ax=ax, kind="classic",
                                               silhouette_options=engine_opts))
    one("cluster_sizes.png", lambda ax: plotting.plot_cluster_sizes(result, ax=ax))
    if features is not None:
        one("projection.png", lambda ax: plotting.plot_projection(features, result, ax=ax), figsize=(6, 5.5))
    return written
