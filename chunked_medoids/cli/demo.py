"""``chunked-medoids demo``: end to end on scikit-learn's digits (build, FasterPAM, ARI, plots).

Uses the same output writing as ``fit`` (:mod:`._outputs`).
"""

from __future__ import annotations

import os
import time

from ._common import EXIT_OK, UsageError, announce_compilation, cluster, print_result, progress
from ._outputs import check_output_dirs, save_figure, summary, write_outputs, write_plots


def plot_digit_medoids(X, y, result, ari, ax_grid=None):
    """The 10 medoid images of the digits demo (a 2×5 grid); returns the figure."""
    import numpy as np

    from ._outputs import pyplot

    plt = pyplot()
    fig, axes = plt.subplots(2, 5, figsize=(8, 4.4))
    for ax, slot in zip(axes.ravel(), range(result.k)):
        m = int(result.medoids[slot])
        ax.imshow(X[m].reshape(8, 8), cmap="gray_r", interpolation="nearest")
        size = int(np.sum(result.labels == slot))
        ax.set_title(f"cluster {slot}: digit {int(y[m])}\n{size} points", fontsize=9)
        ax.set_axis_off()
    fig.suptitle(f"FasterPAM medoids of the digits (k=10, ARI {ari:.3f})")
    fig.tight_layout()
    return fig


def run(args) -> int:
    import numpy as np

    import chunked_medoids as cm

    try:
        from sklearn.datasets import load_digits
        from sklearn.metrics import adjusted_rand_score
    except ImportError:  # pragma: no cover - scikit-learn is a dependency
        raise UsageError("the demo needs scikit-learn (pip install scikit-learn)") from None
    out = args.output
    check_output_dirs(out, overwrite=args.overwrite)
    digits = load_digits()
    X, y = digits.data.astype(np.float64), digits.target
    print(f"digits:   {X.shape[0]} images of 8×8 pixels, 10 classes")
    store = os.path.join(out, "digits.zarr")
    announce_compilation(args)
    with cluster(args) as client:
        t0 = time.perf_counter()
        D = cm.build_dissimilarity(X, store, "euclidean", memory_limit="64MiB", client=client,
                                   progress=progress(args), overwrite=args.overwrite)
        t1 = time.perf_counter()
        print(f"matrix:   {store} ({D.n}×{D.n} float32, built in {t1 - t0:.2f} s)")
        result = cm.fasterpam(D, 10, init="build", random_state=args.seed, client=client,
                              progress=progress(args))
        t2 = time.perf_counter()
    ari = adjusted_rand_score(y, result.labels)
    print_result(result, t2 - t1)
    print(f"ARI:      {ari:.4f} (adjusted Rand index against the true digits)")
    print(f"medoid digits: {[int(y[m]) for m in result.medoids]}")
    doc = summary(result, command="demo", method="fasterpam", source=D,
                  desc={"path": os.path.abspath(store), "kind": "precomputed", "metric": "euclidean"},
                  params={"k": 10, "init": "build", "seed": args.seed}, seconds=t2 - t1, seed=args.seed)
    doc["ari"] = float(ari)
    write_outputs(out, result, doc)
    try:
        import matplotlib  # noqa: F401
    except ImportError:
        print("note:     matplotlib is not installed; plots skipped (pip install 'chunked-medoids[plot]')")
        return EXIT_OK
    paths = [save_figure(plot_digit_medoids(X, y, result, ari), os.path.join(out, "medoids.png"))]
    paths += write_plots(out, result, D)
    for p in paths:
        print(f"plot:     {p}")
    return EXIT_OK
