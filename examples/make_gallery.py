"""Regenerate the plot gallery: every plot the library draws, on scikit-learn's digits.

Run::

    python examples/make_gallery.py --output docs/_static/gallery

Writes (PNG, 100 dpi) into ``--output`` (default ``./gallery``):

* ``medoids.png`` -- the 10 FasterPAM medoids of the digits as images (as ``chunked-medoids demo``);
* ``convergence.png`` -- loss per pass and the relative improvement of each pass;
* ``convergence_clara.png`` -- CLARA: each sample's loss on the full data, best so far;
* ``silhouette.png`` / ``silhouette_classic.png`` -- the medoid and the classic silhouette;
* ``silhouette_k100.png`` -- the silhouette plot at k = 100 (quantile bands, some clusters named);
* ``cluster_sizes.png`` -- points per cluster;
* ``projection.png`` -- the digits in 2-D (principal components) with the medoids marked;
* ``scores.png`` -- DynMSC: average medoid silhouette against k, the best k marked.

The same functions draw the plots of ``chunked-medoids fit --plots`` and ``dynmsc --plots``.
"""

from __future__ import annotations

import argparse
import os


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", default="gallery", help="directory for the PNG files (default ./gallery)")
    parser.add_argument("--kmax", type=int, default=12, help="largest k of the DynMSC scores plot")
    args = parser.parse_args(argv)

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np
    from sklearn.datasets import load_digits

    import chunked_medoids as cm
    from chunked_medoids import plotting

    os.makedirs(args.output, exist_ok=True)
    X, y = load_digits(return_X_y=True)
    D = cm.from_features(X, "euclidean")
    res = cm.fasterpam(D, 10, init="random", random_state=0)
    written = []

    def save(fig, name):
        fig.tight_layout()
        path = os.path.join(args.output, name)
        fig.savefig(path, dpi=100)
        plt.close(fig)
        written.append(path)

    fig, axes = plt.subplots(2, 5, figsize=(8, 4.4))
    for ax, slot in zip(axes.ravel(), range(res.k)):
        m = int(res.medoids[slot])
        ax.imshow(X[m].reshape(8, 8), cmap="gray_r", interpolation="nearest")
        ax.set_title(f"cluster {slot}: digit {int(y[m])}\n{int(np.sum(res.labels == slot))} points", fontsize=9)
        ax.set_axis_off()
    fig.suptitle("FasterPAM medoids of the digits (k=10)")
    save(fig, "medoids.png")

    for name, draw, size in [
        ("convergence.png", lambda ax: plotting.plot_convergence(res, ax=ax), (7, 4.5)),
        ("silhouette.png", lambda ax: plotting.plot_silhouette(D, res, ax=ax), (7, 4.5)),
        ("silhouette_classic.png", lambda ax: plotting.plot_silhouette(D, res, ax=ax, kind="classic"), (7, 4.5)),
        ("cluster_sizes.png", lambda ax: plotting.plot_cluster_sizes(res, ax=ax), (7, 4.5)),
        ("projection.png", lambda ax: plotting.plot_projection(X, res, ax=ax), (6, 5.5)),
    ]:
        fig, ax = plt.subplots(figsize=size)
        draw(ax)
        save(fig, name)

    clara = cm.clara(X, 10, metric="euclidean", n_samples=8, sample_size=100, random_state=0)
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotting.plot_convergence(clara, ax=ax)
    save(fig, "convergence_clara.png")

    many = cm.fasterpam(D, 100, init="random", random_state=0, max_iter=2)
    fig, ax = plt.subplots(figsize=(7, 6))
    plotting.plot_silhouette(D, many, ax=ax)
    save(fig, "silhouette_k100.png")

    dyn = cm.dynmsc(D, args.kmax, kmin=2, init="build")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    plotting.plot_scores(dyn.scores, best_k=int(dyn.k), ax=ax)
    save(fig, "scores.png")

    for path in written:
        print(path)
    return written


if __name__ == "__main__":
    main()
