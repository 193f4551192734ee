"""Diagnostic plots of a k-medoids result (matplotlib, imported lazily).

Install matplotlib with the ``plot`` extra: ``pip install 'chunked-medoids[plot]'``.
Every function draws into ``ax`` (a new figure's axes when None) and returns the axes; none
calls ``plt.show()``.  For files without a display use the Agg backend
(``matplotlib.use("Agg")``), as the CLI does.
"""

from __future__ import annotations

import numpy as np

from ._errors import InvalidParameterError, InvalidTypeError

__all__ = ["plot_convergence", "plot_silhouette", "plot_cluster_sizes", "plot_projection", "plot_scores",
           "medoid_silhouette_samples"]

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


def _sample_losses(result):
    """Per-sample full-data losses of a CLARA-family result (None for other methods)."""
    values = getattr(result, "sample_losses", None)
    if values is None:
        values = (getattr(result, "extra", None) or {}).get("sample_losses")
    return None if values is None else np.asarray(values, dtype=np.float64)


def plot_convergence(result, ax=None):
    """How the loss improved: per pass for the swap methods, per sample for CLARA.

    Parameters
    ----------
    result : MedoidsResult
        Uses ``result.loss_history`` (length n_iter + 1 for the swap methods) or, for a
        CLARA-family result, the full-data loss of every sample's medoids
        (``sample_losses``).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes

    Notes
    -----
    Swap methods: the loss after the initialisation and after each pass (``ax.lines[0]``,
    left axis) and, as bars on a second, logarithmic axis, the relative improvement of each
    pass ``(L[i-1] - L[i]) / L[i-1]`` -- on a linear loss axis the gains after the first pass
    are invisible.  CLARA: each sample's loss on the full data against the sample number
    (``ax.lines[0]``) and the best loss so far (``ax.lines[1]``).
    """
    samples = _sample_losses(result)
    name = getattr(result, "algorithm", "") or "k-medoids"
    if samples is not None and samples.size:
        ax = _axes(ax)
        x = np.arange(1, samples.size + 1)
        ax.plot(x, samples, marker="o", lw=0, label="loss of the sample's medoids on the full data")
        ax.step(x, np.minimum.accumulate(samples), where="post", color="tab:red", label="best so far")
        ax.set_xlabel("sample number")
        ax.set_ylabel("loss on the full data (total deviation)")
        ax.set_title(f"{name}: best loss {float(result.loss):.6g} after {samples.size} sample(s)")
        ax.set_xticks(x if samples.size <= 20 else np.linspace(1, samples.size, 11).round())
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
        return ax
    history = np.asarray(getattr(result, "loss_history", None) or [], dtype=np.float64)
    if history.size == 0:
        raise InvalidParameterError("plot_convergence needs result.loss_history with at least one loss")
    ax = _axes(ax)
    x = np.arange(history.size)
    ax.plot(x, history, marker="o", lw=1.5, color="tab:blue", label="loss")
    ax.set_xlabel("pass (0 = after initialisation)")
    ax.set_ylabel("loss (total deviation)", color="tab:blue")
    ax.set_title(f"{name}: loss {history[-1]:.6g} after {history.size - 1} pass(es), "
                 f"{getattr(result, 'n_swap', 0)} swap(s)")
    if history.size > 1:
        ax.set_xticks(x if history.size <= 20 else np.linspace(0, history.size - 1, 11).round())
        prev = history[:-1]
        with np.errstate(divide="ignore", invalid="ignore"):
            rel = np.where(prev > 0, (prev - history[1:]) / prev, 0.0)
        twin = ax.twinx()
        shown = np.where(rel > 0, rel, np.nan)
        twin.bar(x[1:], shown, width=0.4, color="tab:orange", alpha=0.5, label="relative improvement")
        if np.any(rel > 0):
            twin.set_yscale("log")
            pos = rel[rel > 0]
            twin.set_ylim(float(pos.min()) / 10, min(1.0, float(pos.max()) * 3))
        for xi, r in zip(x[1:], rel):
            if r > 0:
                twin.annotate(f"{100 * r:.2g}%", (xi, r), xytext=(0, 3), textcoords="offset points",
                              ha="center", fontsize=8, color="tab:orange")
            else:
                twin.text(xi, 0.02, "no gain", transform=twin.get_xaxis_transform(), ha="center",
                          fontsize=8, color="tab:orange")
        twin.set_ylabel("relative improvement of the pass", color="tab:orange")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
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


#: above this many clusters the silhouette plot labels only some of them (evenly spread).
MAX_LABELLED_CLUSTERS = 20

_SILHOUETTE_KINDS = {
    "medoid": "medoid silhouette 1 - d(nearest medoid) / d(second nearest medoid)",
    "classic": "silhouette (b - a) / max(a, b)  (Rousseeuw 1987)",
}


def plot_silhouette(D_or_M, result, ax=None, *, kind="medoid", samples=None, silhouette_options=None):
    """Silhouette plot: per cluster, its points' silhouette values sorted decreasingly.

    Parameters
    ----------
    D_or_M : dissimilarity or (n, k) medoid table
        See :func:`medoid_silhouette_samples` (for ``kind="medoid"`` only the k medoid rows
        of D are read; ``kind="classic"`` needs D itself and streams it once).
    result : MedoidsResult or (k,) array of medoid indices
        A bare medoid array is accepted for ``kind="medoid"`` (the labels are recomputed).
    ax : matplotlib Axes, optional
    kind : {"medoid", "classic"}, default "medoid"
        The medoid silhouette (what ``chunked-medoids silhouette --medoids`` and DynMSC
        report) or the classic silhouette of Rousseeuw (``--labels``).  The x label and the
        title say which one is drawn.
    samples : (n,) array, optional
        Precomputed per-point values of that kind (skips the computation).
    silhouette_options : dict, optional
        Keyword arguments of :func:`~chunked_medoids.silhouette` for ``kind="classic"``
        (e.g. ``memory_limit``, ``client``).

    Returns
    -------
    matplotlib Axes

    Notes
    -----
    Each cluster is a band of horizontal bars (one per point, sorted decreasingly; above
    :data:`MAX_SILHOUETTE_POINTS` points, 200 quantiles per cluster), clusters sorted by
    their mean value, best on top.  Clusters are named ``cluster <slot> (n=<size>)`` on the
    y axis; above :data:`MAX_LABELLED_CLUSTERS` clusters only that many evenly spread
    clusters are named, so the labels stay readable at any k.  The dashed line is the
    average.
    """
    if kind not in _SILHOUETTE_KINDS:
        raise InvalidParameterError(f"kind must be 'medoid' or 'classic', got {kind!r}")
    medoids = np.asarray(result.medoids if hasattr(result, "medoids") else result)
    k = int(medoids.shape[0])
    if kind == "medoid":
        s, labels = medoid_silhouette_samples(D_or_M, medoids) if samples is None else (
            np.asarray(samples, dtype=np.float64), np.asarray(result.labels))
    else:
        _check_result(result, "plot_silhouette(kind='classic')")
        labels = np.asarray(result.labels)
        if samples is None:
            from .algorithms.silhouette import silhouette

            samples = silhouette(D_or_M, labels, samples=True, **(silhouette_options or {}))
        s = np.asarray(samples, dtype=np.float64)
    ax = _axes(ax)
    n = s.shape[0]
    thin = n > MAX_SILHOUETTE_POINTS
    per = 200 if thin else None
    if k > MAX_LABELLED_CLUSTERS and n > 50 * k:
        per = 50  # many clusters: a band of quantiles per cluster is all the eye can see
    y0 = 0
    gap = max(1, (n if per is None else per * k) // (5 * max(k, 10)))
    cmap = _pyplot().get_cmap("tab10" if k <= 10 else "viridis")
    means = {c: float(np.mean(s[labels == c])) for c in range(k) if np.any(labels == c)}
    order = sorted(means, key=lambda c: -means[c])
    label_every = max(1, -(-len(order) // MAX_LABELLED_CLUSTERS))
    ticks, names = [], []
    for i, c in enumerate(order):
        vals = np.sort(s[labels == c])[::-1]
        size = vals.shape[0]
        if per is not None and size > per:
            vals = np.quantile(vals, np.linspace(1, 0, per))
        y = np.arange(y0, y0 + vals.shape[0])
        color = cmap(i % 10 if k <= 10 else i / max(1, k - 1))
        ax.fill_betweenx(-y, 0, vals, color=color, alpha=0.8, lw=0)
        if i % label_every == 0:
            ticks.append(-(y0 + vals.shape[0] / 2))
            names.append(f"cluster {c} (n={size})")
        y0 += vals.shape[0] + gap
    avg = float(np.mean(s))
    what = "medoid silhouette" if kind == "medoid" else "silhouette (classic)"
    ax.axvline(avg, color="k", ls="--", lw=1, label=f"average {avg:.4f}")
    ax.set_xlim(min(-0.1, float(s.min()) - 0.05), 1.0)
    ax.set_ylim(-y0, gap)
    ax.set_yticks(ticks)
    ax.set_yticklabels(names, fontsize=8 if len(names) <= 12 else 7)
    ax.set_xlabel(_SILHOUETTE_KINDS[kind])
    shown = "" if label_every == 1 else f", every {label_every}th named"
    ax.set_ylabel(f"clusters by mean value, best on top{shown}")
    ax.set_title(f"{what}: average {avg:.4f} (k={k}, n={n})")
    ax.legend(loc="lower right", fontsize=8)
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
    if k <= 20:
        ax.set_xticks(x)
        ax.set_xticklabels([f"{s}\n#{int(m)}" for s, m in zip(x, medoids)], fontsize=10)
        ax.set_xlabel("cluster slot (#medoid point index)", fontsize=11)
    else:
        ax.set_xlabel("cluster slot", fontsize=11)
    ax.tick_params(axis="both", labelsize=10)
    ax.set_ylabel("points", fontsize=11)
    ax.set_title(f"cluster sizes (n={int(sizes.sum())}, k={k}, min {int(sizes.min())}, max {int(sizes.max())})")
    return ax


#: at most this many points are drawn by :func:`plot_projection` (a seeded subsample).
MAX_PROJECTION_POINTS = 20000


def plot_projection(X, result, ax=None, *, max_points=MAX_PROJECTION_POINTS, random_state=0):
    """The points in 2-D (their first two principal components) coloured by cluster, with
    the medoids marked.

    Parameters
    ----------
    X : (n, d) array-like of features
        The data that was clustered (with d = 2 the axes are the features themselves).
    result : MedoidsResult
    ax : matplotlib Axes, optional
    max_points : int, default 20000
        Above this many points a seeded random subsample is drawn (the medoids always are).
    random_state : int, default 0
        Seed of that subsample.

    Returns
    -------
    matplotlib Axes

    Notes
    -----
    The projection is fitted on the (subsampled) points; the medoids are the last
    collection of the axes (``ax.collections[-1]``), drawn as black-edged stars.
    """
    _check_result(result, "plot_projection")
    X = np.asarray(X)
    if X.ndim != 2 or X.shape[0] != np.asarray(result.labels).shape[0]:
        raise InvalidParameterError(
            f"plot_projection needs the (n, d) features of the clustering (n = {np.asarray(result.labels).shape[0]}), "
            f"got shape {X.shape}")
    n, d = X.shape
    labels = np.asarray(result.labels)
    medoids = np.asarray(result.medoids, dtype=np.int64)
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(random_state).choice(n, max_points, replace=False))
    P = np.asarray(X[rows], dtype=np.float64)
    M = np.asarray(X[medoids], dtype=np.float64)
    if d == 1:
        P, M = np.column_stack([P[:, 0], np.zeros(len(P))]), np.column_stack([M[:, 0], np.zeros(len(M))])
        axes_names = ("feature 0", "")
    elif d == 2:
        axes_names = ("feature 0", "feature 1")
    else:
        mean = P.mean(axis=0)
        _, sv, vt = np.linalg.svd(P - mean, full_matrices=False)
        W = vt[:2].T
        var = sv[:2] ** 2 / max(float(np.sum(sv ** 2)), 1e-300)
        P, M = (P - mean) @ W, (M - mean) @ W
        axes_names = (f"PC 1 ({100 * var[0]:.0f}% of variance)", f"PC 2 ({100 * var[1]:.0f}% of variance)")
    k = medoids.shape[0]
    ax = _axes(ax)
    cmap = _pyplot().get_cmap("tab10" if k <= 10 else "viridis")
    colors = labels[rows] % 10 if k <= 10 else labels[rows] / max(1, k - 1)
    ax.scatter(P[:, 0], P[:, 1], c=cmap(colors), s=6 if len(rows) > 2000 else 12, alpha=0.6, lw=0)
    ax.scatter(M[:, 0], M[:, 1], marker="*", s=220, c="gold", edgecolors="k", linewidths=1.0,
               label="medoids", zorder=3)
    ax.set_xlabel(axes_names[0])
    ax.set_ylabel(axes_names[1])
    sub = "" if len(rows) == n else f", {len(rows)} of {n} points shown"
    ax.set_title(f"clusters in 2-D (k={k}{sub})")
    ax.legend(loc="best", fontsize=8)
    return ax


def plot_scores(scores, best_k=None, ax=None):
    """Average medoid silhouette against k (a DynMSC run), the best k marked.

    Parameters
    ----------
    scores : dict k -> score, or a DynMSC result (its ``scores``)
    best_k : int, optional
        The chosen k (default: the k of the best score).
    ax : matplotlib Axes, optional

    Returns
    -------
    matplotlib Axes
    """
    if not isinstance(scores, dict):
        best_k = getattr(scores, "k", None) if best_k is None else best_k
        scores = getattr(scores, "scores", None)
    if not scores:
        raise InvalidParameterError("plot_scores needs a non-empty dict k -> score (or a DynMSC result)")
    ks = np.array(sorted(int(k) for k in scores))
    vals = np.array([float(scores[k]) for k in ks])
    if best_k is None:
        best_k = int(ks[int(np.argmax(vals))])
    ax = _axes(ax)
    ax.plot(ks, vals, marker="o", lw=1.5)
    best = float(scores[best_k])
    ax.plot([best_k], [best], marker="*", ms=16, color="tab:red", lw=0, label=f"best k = {best_k}")
    ax.set_xlabel("k (number of clusters)")
    ax.set_ylabel("average medoid silhouette")
    edge = " -- at the edge of the range tried" if best_k in (ks[0], ks[-1]) and ks.size > 1 else ""
    ax.set_title(f"DynMSC: best k = {best_k} (score {best:.4f}){edge}")
    if ks.size <= 30:
        ax.set_xticks(ks)
    ax.legend(fontsize=8)
    ax.grid(True, alpha=0.3)
    return ax
