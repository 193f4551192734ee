"""Diagnostic plots of a k-medoids result (matplotlib, imported lazily).

Install matplotlib with the ``plot`` extra: ``pip install 'chunked-medoids[plot]'``.
Every function draws into ``ax`` (a new figure's axes when None) and returns the axes; none
calls ``plt.show()``.  For files without a display use the Agg backend
(``matplotlib.use("Agg")``), as the CLI does.
"""

from __future__ import annotations

import numpy as np

from ._errors import InvalidParameterError, InvalidTypeError

__all__ = ["plot_convergence", "plot_silhouette", "plot_cluster_sizes", "medoid_silhouette_samples"]

#: above this many points the silhouette plot draws per-cluster quantiles, not every point.
MAX_SILHOUETTE_POINTS = 20000


def _pyplot():
    try:
        import matplotlib.pyplot as plt
    except ImportError as exc:
        raise ImportError(
            "chunked_medoids.plotting needs matplotlib; install it with the 'plot' extra: "
            "pip install 'chunked-medoids[plot]'"
        ) from exc
    return plt


def _axes(ax):
    if ax is not None:
        return ax
    plt = _pyplot()
    _, ax = plt.subplots()
    return ax


def _check_result(result, what):
    for attr in ("medoids", "labels"):
        if not hasattr(result, attr):
            raise InvalidTypeError(
                f"{what} needs a MedoidsResult (or an object with .medoids and .labels), got "
                f"{type(result).__name__}")


def plot_convergence(result, ax=None):
    """Loss after the initialisation and after each pass / iteration.

    Parameters
    ----------
    result : MedoidsResult
        Uses ``result.loss_history`` (length n_iter + 1 for the swap methods).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    history = np.asarray(getattr(result, "loss_history", None) or [], dtype=np.float64)
    if history.size == 0:
        raise InvalidParameterError("plot_convergence needs result.loss_history with at least one loss")
    ax = _axes(ax)
    x = np.arange(history.size)
    ax.plot(x, history, marker="o", lw=1.5)
    ax.set_xlabel("pass (0 = after initialisation)")
    ax.set_ylabel("loss (total deviation)")
    name = getattr(result, "algorithm", "") or "k-medoids"
    ax.set_title(f"{name}: loss {history[-1]:.6g} after {history.size - 1} pass(es), "
                 f"{getattr(result, 'n_swap', 0)} swap(s)")
    if history.size > 1:
        ax.set_xticks(x if history.size <= 20 else np.linspace(0, history.size - 1, 11).round())
    ax.grid(True, alpha=0.3)
    return ax


def medoid_silhouette_samples(D_or_M, medoids):
    """Per-point medoid silhouette ``s(o) = 1 - dn(o) / ds(o)`` and the labels.

    Parameters
    ----------
    D_or_M : dissimilarity (anything :func:`~chunked_medoids.open_dissimilarity` accepts) or
        the (n, k) medoid table ``M[o, s] = D[o, medoids[s]]``
        A 2-D array with k columns and n != k rows is taken as ``M``; anything else as D, of
        which only the k medoid rows are read.
    medoids : (k,) int array

    Returns
    -------
    s : (n,) float64
        As :func:`~chunked_medoids.medoid_silhouette` with ``samples=True`` (1 where the
        second-nearest distance is 0); 0 for every point when k = 1 (no second medoid).
    labels : (n,) int32
        Nearest medoid slot (lowest slot on ties; a medoid in its own slot).

    Notes
    -----
    Memory: the n×k medoid table.  I/O: k rows of D.
    """
    from .algorithms._common import assign_table, medoid_table
    from .sources import open_dissimilarity

    medoids = np.asarray(medoids, dtype=np.int64)
    if medoids.ndim != 1 or medoids.size == 0:
        raise InvalidParameterError(f"medoids must be a non-empty 1-D index array, got shape {medoids.shape}")
    k = medoids.shape[0]
    if isinstance(D_or_M, np.ndarray) and D_or_M.ndim == 2 and D_or_M.shape[1] == k and D_or_M.shape[0] != k:
        M = np.ascontiguousarray(D_or_M)
    else:
        source = open_dissimilarity(D_or_M)
        M = medoid_table(source, medoids)
    labels = assign_table(M, medoids)[0]
    if k == 1:
        return np.zeros(M.shape[0]), labels
    from ._kernels.silhouette import medoid_silhouette_values  # the library's own definition

    s = np.empty(M.shape[0], dtype=np.float64)
    medoid_silhouette_values(M, s)
    return s, labels


def plot_silhouette(D_or_M, result, ax=None):
    """Silhouette plot of the medoid silhouette: per cluster, its points' values sorted.

    Parameters
    ----------
    D_or_M : dissimilarity or (n, k) medoid table
        See :func:`medoid_silhouette_samples` (only the k medoid rows of D are read).
    result : MedoidsResult or (k,) array of medoid indices
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Notes
    -----
    Each cluster is a band of horizontal bars (one per point, sorted decreasingly; above
    :data:`MAX_SILHOUETTE_POINTS` points, 200 quantiles per cluster), labelled with its slot
    and size; the dashed line is the average medoid silhouette.
    """
    medoids = result.medoids if hasattr(result, "medoids") else result
    s, labels = medoid_silhouette_samples(D_or_M, medoids)
    k = int(np.asarray(medoids).shape[0])
    ax = _axes(ax)
    n = s.shape[0]
    thin = n > MAX_SILHOUETTE_POINTS
    y0 = 0
    gap = max(1, (n if not thin else 200 * k) // 50)
    cmap = _pyplot().get_cmap("tab10" if k <= 10 else "viridis")
    order = sorted(range(k), key=lambda c: -float(np.mean(s[labels == c])) if np.any(labels == c) else 0.0)
    for i, c in enumerate(order):
        vals = np.sort(s[labels == c])[::-1]
        size = vals.shape[0]
        if size == 0:
            continue
        if thin and size > 200:
            vals = np.quantile(vals, np.linspace(1, 0, 200))
        y = np.arange(y0, y0 + vals.shape[0])
        color = cmap(i % 10 if k <= 10 else i / max(1, k - 1))
        ax.fill_betweenx(y, 0, vals, color=color, alpha=0.8, lw=0)
        ax.text(-0.02, y0 + vals.shape[0] / 2, f"{c} ({size})", ha="right", va="center", fontsize=7)
        y0 += vals.shape[0] + gap
    avg = float(np.mean(s))
    ax.axvline(avg, color="k", ls="--", lw=1)
    ax.set_xlim(min(-0.1, float(s.min()) - 0.05), 1.0)
    ax.set_yticks([])
    ax.set_xlabel("medoid silhouette 1 - d(nearest) / d(second nearest)")
    ax.set_ylabel("clusters (slot, size), best first")
    ax.set_title(f"medoid silhouette: average {avg:.4f} (k={k}, n={n})")
    return ax


def plot_cluster_sizes(result, ax=None):
    """Bar chart of the number of points per cluster (slot order, medoid index on each bar).

    Parameters
    ----------
    result : MedoidsResult
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    _check_result(result, "plot_cluster_sizes")
    medoids = np.asarray(result.medoids)
    k = medoids.shape[0]
    sizes = np.bincount(np.asarray(result.labels, dtype=np.int64), minlength=k)
    ax = _axes(ax)
    x = np.arange(k)
    ax.bar(x, sizes, color="tab:blue")
    if k <= 30:
        ax.set_xticks(x)
        ax.set_xticklabels([f"{s}\n#{int(m)}" for s, m in zip(x, medoids)], fontsize=7)
    ax.set_xlabel("cluster slot (medoid index)" if k <= 30 else "cluster slot")
    ax.set_ylabel("points")
    ax.set_title(f"cluster sizes (n={int(sizes.sum())}, k={k}, min {int(sizes.min())}, max {int(sizes.max())})")
    return ax
