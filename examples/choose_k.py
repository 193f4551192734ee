"""Choose the number of clusters of the handwritten digits with DynMSC.

DynMSC (Lenssen & Schubert 2024) starts from ``kmax`` medoids, optimises the average
medoid silhouette with FasterMSC, removes the least useful medoid, re-optimises, and so on
down to ``kmin``; the k with the best average medoid silhouette wins.  The distances are
computed on the fly from the feature rows (no n×n matrix is stored).

Run::

    python examples/choose_k.py [--kmax 15] [--kmin 2]

Prints the average medoid silhouette for every k, the chosen k, and for comparison the
classic silhouette of the chosen clustering (one streaming pass over D) and its agreement
with the true digit labels.  When the best k is ``kmin`` or ``kmax`` it warns: the range
tried may be too narrow (the best k could lie outside it).
"""

from __future__ import annotations

import argparse
import time
import warnings


def boundary_warning(best_k, kmin, kmax):
    """The warning for a best k at the edge of the range tried (None inside it)."""
    if kmin == kmax:
        return None
    if best_k == kmax:
        return f"the best k ({best_k}) is kmax: a larger k may score better; rerun with a larger --kmax"
    if best_k == kmin:
        return (f"the best k ({best_k}) is kmin: a smaller k may score better"
                + ("; rerun with a smaller --kmin (>= 2)" if kmin > 2 else
                   " (k = 1 has no silhouette); the data may have no clear cluster structure"))
    return None


def choose_k(kmax=15, kmin=2, n_samples=None, random_state=0, verbose=True):
    """Run DynMSC on sklearn's digits; returns the DynMSC result (a MedoidsResult).

    ``n_samples`` limits the data to its first rows (None: all 1797 digits).
    """
    from sklearn.datasets import load_digits
    from sklearn.metrics import adjusted_rand_score

    import chunked_medoids as cm

    X, y = load_digits(return_X_y=True)
    if n_samples is not None:
        X, y = X[:n_samples], y[:n_samples]
    D = cm.from_features(X, "euclidean", dtype="float32")
    t0 = time.perf_counter()
    res = cm.dynmsc(D, kmax, kmin=kmin, init="build", random_state=random_state)
    elapsed = time.perf_counter() - t0
    message = boundary_warning(int(res.k), min(res.scores), max(res.scores))
    if message:
        warnings.warn(message, UserWarning, stacklevel=2)
    if verbose:
        print(f"digits: n={X.shape[0]}, d={X.shape[1]}; DynMSC k={kmax}..{kmin} in {elapsed:.1f}s")
        print(" k  average medoid silhouette")
        for k, score in res.scores.items():
            mark = "  <- best" if k == res.k else ""
            print(f"{k:2d}  {score:.4f}{mark}")
        sil = cm.silhouette(D, res.labels)
        print(f"chosen k = {res.k}: average medoid silhouette {res.score:.4f}, "
              f"silhouette {sil:.4f}, ARI vs. digit labels {adjusted_rand_score(y, res.labels):.3f}")
    return res


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kmax", type=int, default=15)
    parser.add_argument("--kmin", type=int, default=2)
    parser.add_argument("--n-samples", type=int, default=None)
    args = parser.parse_args(argv)
    choose_k(args.kmax, args.kmin, args.n_samples)


if __name__ == "__main__":
    main()
