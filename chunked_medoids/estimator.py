"""scikit-learn estimator on top of the clustering drivers.

:class:`KMedoids` dispatches to any method of :data:`~chunked_medoids.METHODS` (the
registry is the single list of methods).  With a feature metric the dissimilarity is
computed on the fly (:func:`~chunked_medoids.from_features`, float64), so dask, zarr and
HDF5 feature arrays stay lazy; with ``metric="precomputed"`` any dissimilarity source,
store path or array is clustered directly.
"""

from __future__ import annotations

import inspect
import logging
import numbers
import os
from typing import Any, Self

import numpy as np
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.exceptions import NotFittedError as _SklearnNotFittedError
from sklearn.utils.validation import check_is_fitted, validate_data

from ._budget import predict_block_rows
from ._errors import ChunkedMedoidsError, InvalidParameterError, InvalidTypeError
from ._typing import (
    ClientLike,
    DissimilarityLike,
    FeaturesLike,
    InitLike,
    MemoryLimit,
    MetricLike,
    RandomStateLike,
    WeightsLike,
)
from ._util import check_weights

logger = logging.getLogger(__name__)

#: keyword arguments the estimator passes itself; ``method_params`` may not set them.
_RESERVED = ("init", "max_iter", "random_state", "weights", "memory_limit", "client", "progress")


def _is_lazy(X) -> bool:
    """Feature / dissimilarity containers that must not be converted with np.asarray
    (paths, sources, dask / zarr / h5py arrays: :func:`~chunked_medoids.sources.resolve_input`)."""
    from .sources.inputs import IN_MEMORY_KINDS, input_kind

    return input_kind(X) not in IN_MEMORY_KINDS


def _accepts(func, name: str) -> bool:
    params = inspect.signature(func).parameters
    return name in params or any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values())


def _check_n_clusters(n_clusters) -> int:
    if isinstance(n_clusters, bool) or not isinstance(n_clusters, numbers.Integral):
        raise InvalidTypeError(
            f"n_clusters must be an integer >= 1, got {type(n_clusters).__name__} {n_clusters!r}"
        )
    if n_clusters < 1:
        raise InvalidParameterError(f"n_clusters must be >= 1, got {n_clusters}")
    return int(n_clusters)


class NotFittedError(ChunkedMedoidsError, _SklearnNotFittedError):
    """predict / transform / score called before ``fit`` (also a scikit-learn
    :class:`~sklearn.exceptions.NotFittedError`, hence a ``ValueError``)."""


def _check_fitted(est) -> None:
    try:
        check_is_fitted(est, "medoid_indices_")
    except _SklearnNotFittedError as exc:
        raise NotFittedError(str(exc)) from None


def _validate(est, X, **kwargs):
    """``validate_data`` with its errors turned into our typed ones (message kept, X named)."""
    try:
        return validate_data(est, X, **kwargs)
    except ChunkedMedoidsError:
        raise
    except (ValueError, TypeError) as exc:
        msg = str(exc)
        if " X " not in f" {msg} ".replace(",", " ").replace(".", " "):
            msg = f"X: {msg}"
        cls = InvalidTypeError if isinstance(exc, TypeError) else InvalidParameterError
        raise cls(msg) from exc


def _precomputed_source(est, X):
    """The dissimilarity source of a ``metric="precomputed"`` fit input.

    Lazy inputs (dask/zarr/h5py arrays, paths, sources) are opened as they are; an in-memory
    array goes through scikit-learn's input checks, must be square, and is validated
    (NaN/inf, negative, diagonal, symmetry) before use.
    """
    from .sources import open_dissimilarity

    if _is_lazy(X):
        return open_dissimilarity(X)
    # NaN/inf are left to open_dissimilarity's validation, whose message names the position
    Xv = _validate(est, X, dtype=[np.float64, np.float32, np.int64, np.int32], ensure_min_samples=1,
                   ensure_all_finite=False)
    if Xv.shape[0] != Xv.shape[1]:
        raise InvalidParameterError(
            f"metric='precomputed' needs a square (n, n) dissimilarity matrix, got shape {Xv.shape}"
        )
    return open_dissimilarity(np.ascontiguousarray(Xv), validate=True)


def _check_extra_params(params: dict, func, what: str, reserved=()) -> None:
    """Refuse keys of ``params`` that ``func`` (after its two positional arguments) does not take."""
    sig = inspect.signature(func).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in sig.values()):
        return  # a wrapper forwarding **options: the callee checks
    accepted = [name for name in list(sig)[2:] if name not in reserved]
    unknown = sorted(str(key) for key in params if key not in accepted)
    if unknown:
        raise InvalidParameterError(
            f"{what} holds {unknown}, which {getattr(func, '__name__', func)!r} does not take; "
            f"accepted keys: {accepted}"
        )


#: scikit-learn estimator checks a randomised fit cannot pass, with the reason.
_RANDOM_INIT_XFAIL = {
    "check_sample_weight_equivalence_on_dense_data": (
        "k-medoids picks medoids among the data points and a random init (or CLARA's random "
        "samples) draws from the points given: with zero weights the weighted fit draws from "
        "points its repeated-data counterpart does not have, so the random start, hence the "
        "local optimum, differs (a deterministic init, init='build', passes this check)"
    ),
}


def expected_failed_checks(estimator) -> dict:
    """The scikit-learn estimator checks ``estimator`` may fail by design, with the reason.

    scikit-learn's own mechanism for declaring them (scikit-learn >= 1.6 has no estimator
    tag for it): pass the result to
    ``sklearn.utils.estimator_checks.check_estimator(est, expected_failed_checks=...)``, or
    this function itself to ``parametrize_with_checks(..., expected_failed_checks=...)``;
    scikit-learn then reports those checks as expected failures ("xfail").

    Parameters
    ----------
    estimator : KMedoids or CLARA

    Returns
    -------
    dict
        ``{check name: reason}``: the sample-weight equivalence check when the fit starts
        from a random init (KMedoids' default init of a method that takes one, ``"random"``,
        ``"lab"``) or draws random samples (CLARA); empty otherwise.
    """
    if isinstance(estimator, CLARA):
        return dict(_RANDOM_INIT_XFAIL)
    if isinstance(estimator, KMedoids):
        from .algorithms import get_method

        try:
            spec = get_method(estimator.method)
        except Exception:  # an invalid method: fit reports it; nothing expected to fail
            return {}
        init = estimator.init if estimator.init is not None else spec.default_init
        if isinstance(init, str) and init in ("random", "lab"):
            return dict(_RANDOM_INIT_XFAIL)
        if spec.family == "sampling":
            return dict(_RANDOM_INIT_XFAIL)
    return {}


class _MedoidsEstimator(ClusterMixin, TransformerMixin, BaseEstimator):
    """Fitted-state handling, predict / transform / score shared by the estimators."""

    # -- tags ---------------------------------------------------------------------------
    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.pairwise = isinstance(self.metric, str) and self.metric == "precomputed"
        return tags

    @property
    def _precomputed(self) -> bool:
        return isinstance(self.metric, str) and self.metric == "precomputed"

    def _set_fitted(self, result, centers_from, metric):
        self.result_ = result
        self.labels_ = np.asarray(result.labels, dtype=np.int32)
        self.medoid_indices_ = np.asarray(result.medoids, dtype=np.int64)
        if centers_from is None:
            self.cluster_centers_ = None
            self._metric_ = None
        else:
            if isinstance(centers_from, np.ndarray):
                self.cluster_centers_ = centers_from[self.medoid_indices_]
            else:
                self.cluster_centers_ = np.concatenate(
                    [centers_from.read(int(m), int(m) + 1) for m in self.medoid_indices_])
            self._metric_ = metric
        self.inertia_ = float(result.loss)
        self.n_iter_ = int(result.n_iter)
        self.n_swap_ = int(result.n_swap)
        self.loss_history_ = list(result.loss_history)
        return self

    def _check_sample_weight(self, sample_weight, n):
        if sample_weight is None:
            return None
        sw = np.asarray(sample_weight)
        if sw.dtype != object and sw.size and np.issubdtype(sw.dtype, np.number) and not np.any(sw):
            raise InvalidParameterError(
                "sample_weight must not be all zero: at least one point needs a positive weight"
            )
        return check_weights(sw, n, name="sample_weight")

    # -- using the fit ------------------------------------------------------------------
    def _iter_distance_blocks(self, X):
        """Yield (n_rows, k) float64 distance blocks of new points to the medoids."""
        _check_fitted(self)
        med = self.medoid_indices_
        if self._precomputed:
            if _is_lazy(X):
                from .sources import DissimilaritySource

                if isinstance(X, DissimilaritySource) or isinstance(X, (str, os.PathLike)):
                    from .sources import open_dissimilarity

                    src = open_dissimilarity(X)
                    if src.n != self.n_features_in_:
                        raise InvalidParameterError(
                            f"X has {src.n} columns, but {type(self).__name__} is expecting {self.n_features_in_} "
                            "(distances to every training point)"
                        )
                    # a training-size square source: by symmetry the medoid rows are columns
                    yield np.ascontiguousarray(src.take_rows(med).T, dtype=np.float64)
                    return
                shape = tuple(X.shape)
                if len(shape) != 2 or shape[1] != self.n_features_in_:
                    raise InvalidParameterError(
                        f"X must have shape (n_new, {self.n_features_in_}) (distances to every training "
                        f"point), got shape {shape}"
                    )
                rows = predict_block_rows(shape[1])
                for a in range(0, shape[0], rows):
                    blk = np.asarray(X[a:min(a + rows, shape[0])])
                    yield np.ascontiguousarray(blk[:, med], dtype=np.float64)
                return
            Xv = _validate(self, X, dtype=[np.float64, np.float32, np.int64, np.int32], reset=False)
            yield np.ascontiguousarray(Xv[:, med], dtype=np.float64)
            return
        metric = self._metric_
        centers = np.ascontiguousarray(self.cluster_centers_, dtype=np.float64)
        k = centers.shape[0]
        if _is_lazy(X):
            from .sources.features import FeatureArray

            feats = FeatureArray(X)
            if feats.d != self.n_features_in_:
                raise InvalidParameterError(
                    f"X has {feats.d} features, but {type(self).__name__} is expecting "
                    f"{self.n_features_in_} features as input"
                )
            rows = predict_block_rows(max(k, feats.d))
            for a, b, blk in feats.iter_blocks(rows):
                if not np.isfinite(blk).all():
                    raise InvalidParameterError("X contains NaN or infinity")
                out = np.empty((b - a, k), dtype=np.float64)
                metric.pairwise(blk, centers, out)
                yield out
            return
        Xv = _validate(self, X, dtype=[np.float64, np.float32], reset=False)
        rows = predict_block_rows(max(k, Xv.shape[1]))
        for a in range(0, Xv.shape[0], rows):
            blk = np.ascontiguousarray(Xv[a:a + rows], dtype=np.float64)
            out = np.empty((blk.shape[0], k), dtype=np.float64)
            metric.pairwise(blk, centers, out)
            yield out

    def transform(self, X: FeaturesLike | DissimilarityLike) -> np.ndarray:
        """Distances of X to the medoids.

        Parameters
        ----------
        X : array of shape (n_new, n_features), or with ``metric="precomputed"`` the
            (n_new, n_samples_train) distances to the training points (any array with row
            slicing: numpy, dask, zarr, h5py -- read in row blocks).  A
            :class:`~chunked_medoids.DissimilaritySource` or store path is taken as a square
            matrix over the training points (only its k medoid rows are read).

        Returns
        -------
        ndarray of float64, shape (n_new, n_clusters)
        """
        parts = list(self._iter_distance_blocks(X))
        return np.concatenate(parts) if parts else np.empty((0, self.medoid_indices_.shape[0]))

    def predict(self, X: FeaturesLike | DissimilarityLike) -> np.ndarray:
        """Index of the nearest medoid of each row of X (lowest index on ties).

        Parameters
        ----------
        X : as in :meth:`transform`.

        Returns
        -------
        ndarray of int32, shape (n_new,)
        """
        parts = [np.argmin(d, axis=1).astype(np.int32) for d in self._iter_distance_blocks(X)]
        return np.concatenate(parts) if parts else np.empty(0, dtype=np.int32)

    def score(self, X: FeaturesLike | DissimilarityLike, y: Any = None,
              sample_weight: WeightsLike = None) -> float:
        """Opposite of the (weighted) total distance of X to its nearest medoids.

        Parameters
        ----------
        X : as in :meth:`transform`.
        y : ignored
        sample_weight : array of shape (n_new,), optional

        Returns
        -------
        float
        """
        dmin = np.concatenate([d.min(axis=1) for d in self._iter_distance_blocks(X)])
        if sample_weight is not None:
            w = check_weights(sample_weight, dmin.shape[0], name="sample_weight")
            return -float(np.dot(w, dmin))
        return -float(np.sum(dmin))



class KMedoids(_MedoidsEstimator):
    """k-medoids clustering (PAM family) for data whose dissimilarity matrix may not fit in RAM.

    Parameters
    ----------
    n_clusters : int, default 8
        Number of medoids k (``1 <= k <= n_samples``).
    metric : str or numba.njit function, default "euclidean"
        A metric of :data:`chunked_medoids.METRICS` (distances computed on the fly from the
        feature rows, in float64), a jitted ``f(x, y) -> float``, or ``"precomputed"``: ``X``
        is then the n×n dissimilarity itself (array, dask/zarr/HDF5 array, store path or
        :class:`~chunked_medoids.DissimilaritySource`).
    method : str, default "fasterpam"
        Any method of :data:`chunked_medoids.METHODS` (or an alias).  Note that
        ``"fastermsc"`` maximises the medoid silhouette (and needs ``n_clusters >= 2``).
    init : str, array of n_clusters indices, or None, default None
        Initialisation; None uses the method's registered default (``"random"`` for
        FasterPAM, ``"build"`` for PAM).  Methods without an init (CLARA) refuse a
        non-None value.
    max_iter : int or None, default None
        Bound on passes/iterations; None uses the method's default.
    random_state : None, int, numpy Generator or RandomState, default None
    memory_limit : int or str, default "1GiB"
        Budget for row blocks of D held at once (see :class:`~chunked_medoids.Engine`).
    client : distributed.Client, optional
        Run block work on a Dask cluster.
    progress : bool, default False
        Show progress bars.
    metric_params : dict, optional
        Metric parameters (e.g. ``{"p": 3}`` for minkowski); not allowed with
        ``metric="precomputed"``.
    method_params : dict, optional
        Further keyword arguments of the method (e.g. ``{"tol": 1e-4}``).

    Attributes
    ----------
    labels_ : ndarray of int32, shape (n_samples,)
        Cluster (slot) of every training point.
    medoid_indices_ : ndarray of int64, shape (n_clusters,)
        Row indices of the medoids in the training data.
    cluster_centers_ : ndarray of shape (n_clusters, n_features) or None
        The medoids' feature rows (None with ``metric="precomputed"``, as in
        scikit-learn-extra).
    inertia_ : float
        Total (weighted) distance of the points to their medoid.
    n_iter_, n_swap_ : int
        Passes/iterations and swaps of the method.
    loss_history_ : list of float
        Loss after initialisation and after each pass/iteration.
    n_features_in_ : int
        Number of features (``n_samples`` for precomputed input).
    feature_names_in_ : ndarray of str
        Column names, when X is a DataFrame with string column names.
    result_ : MedoidsResult
        The full result of the method.

    Notes
    -----
    Memory: the method's O(n·k) state plus row blocks of D within ``memory_limit``; numpy
    feature arrays are used in place, dask/zarr/HDF5 feature arrays are read in blocks and
    never loaded whole.  ``predict``/``transform`` compute distances to the k medoids in row
    blocks of the new data.
    """

    def __init__(self, n_clusters: int = 8, *, metric: MetricLike = "euclidean", method: str = "fasterpam",
                 init: InitLike | None = None, max_iter: int | None = None,
                 random_state: RandomStateLike | np.random.RandomState = None, memory_limit: MemoryLimit = "1GiB",
                 client: ClientLike = None, progress: bool = False, metric_params: dict[str, Any] | None = None,
                 method_params: dict[str, Any] | None = None) -> None:
        self.n_clusters = n_clusters
        self.metric = metric
        self.method = method
        self.init = init
        self.max_iter = max_iter
        self.random_state = random_state
        self.memory_limit = memory_limit
        self.client = client
        self.progress = progress
        self.metric_params = metric_params
        self.method_params = method_params

    # -- fitting ------------------------------------------------------------------------
    def _method_kwargs(self, spec, weights):
        func = spec.func
        mp = {} if self.method_params is None else self.method_params
        if not isinstance(mp, dict):
            raise InvalidTypeError(f"method_params must be a dict or None, got {type(mp).__name__}")
        clash = sorted(set(mp) & set(_RESERVED))
        if clash:
            raise InvalidParameterError(
                f"method_params may not set {clash}: use the estimator's own parameters "
                "(init=, max_iter=, random_state=, memory_limit=, client=, progress=, sample_weight in fit)"
            )
        _check_extra_params(mp, func, "method_params")
        kwargs = dict(mp)
        if self.init is not None:
            if spec.default_init is None or not _accepts(func, "init"):
                raise InvalidParameterError(
                    f"method {spec.name!r} takes no init; leave init=None (got {self.init!r})"
                )
            kwargs["init"] = self.init
        if self.max_iter is not None:
            if not _accepts(func, "max_iter"):
                raise InvalidParameterError(
                    f"method {spec.name!r} takes no max_iter; leave max_iter=None (got {self.max_iter!r})"
                )
            kwargs["max_iter"] = self.max_iter
        if weights is not None:
            if not _accepts(func, "weights"):
                raise InvalidParameterError(f"method {spec.name!r} does not support sample_weight")
            kwargs["weights"] = weights
        kwargs.update(random_state=self.random_state, memory_limit=self.memory_limit,
                      client=self.client, progress=self.progress)
        return kwargs

    def fit(self, X: FeaturesLike | DissimilarityLike, y: Any = None,
            sample_weight: WeightsLike = None) -> Self:
        """Cluster X.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or the (n, n) dissimilarity
            Feature rows (numpy array, array-like, dask array, zarr array, h5py dataset or a
            path to a ``.npy``/``.zarr``/``.h5`` file), or, with
            ``metric="precomputed"``, the dissimilarity (anything
            :func:`~chunked_medoids.open_dissimilarity` accepts).
        y : ignored
        sample_weight : array of shape (n_samples,), optional
            Non-negative point weights: the loss is Σ w·d(point, medoid).

        Returns
        -------
        self
        """
        from .algorithms import get_method
        from .sources.features import from_features

        k = _check_n_clusters(self.n_clusters)
        spec = get_method(self.method)
        metric_params = {} if self.metric_params is None else self.metric_params
        if not isinstance(metric_params, dict):
            raise InvalidTypeError(f"metric_params must be a dict or None, got {type(metric_params).__name__}")
        centers_from = None
        if self._precomputed:
            if metric_params:
                raise InvalidParameterError("metric_params cannot be used with metric='precomputed'")
            source = _precomputed_source(self, X)
            self.n_features_in_ = source.n
        else:
            if _is_lazy(X):
                source = from_features(X, self.metric, dtype="float64", **metric_params)
                centers_from = source.features
                self.n_features_in_ = source.features.d
            else:
                Xv = _validate(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
                source = from_features(Xv, self.metric, dtype="float64", **metric_params)
                centers_from = Xv
        n = source.n
        if n < k:
            raise InvalidParameterError(f"n_samples={n} should be >= n_clusters={k}.")
        w = self._check_sample_weight(sample_weight, n)
        result = spec.func(source, k, **self._method_kwargs(spec, w))
        return self._set_fitted(result, centers_from, None if centers_from is None else source.metric)


#: keyword arguments CLARA passes itself; ``clara_params`` may not set them.
_CLARA_RESERVED = ("variant", "n_samples", "sample_size", "include_best", "polish", "metric",
                   "metric_params", "precomputed", "random_state", "weights", "memory_limit", "client",
                   "progress")


class CLARA(_MedoidsEstimator):
    """CLARA-family k-medoids (samples optimised exactly, scored on all data), scikit-learn style.

    A thin estimator over :func:`chunked_medoids.clara`: each sample is clustered on its
    small in-memory matrix, the medoids are scored on the full data in streaming passes,
    and the best by full-data loss win.  For very large n where even one O(n²) pass per
    iteration of :class:`KMedoids` is too much.

    Parameters
    ----------
    n_clusters : int, default 8
    metric : str or numba.njit function, default "euclidean"
        A metric of :data:`chunked_medoids.METRICS`, a jitted ``f(x, y) -> float``, or
        ``"precomputed"`` (X is the n×n dissimilarity: array, store path, source).
    variant : {"fasterclara", "fastclara", "clara", "largeclara"}, optional
        Inner optimiser on each sample (see :func:`~chunked_medoids.clara`).  Default:
        "largeclara" for feature inputs of n >= 100000 points, else "fasterclara".
    n_samples, sample_size : int or None, default None
        Number and size of the samples (None: the defaults of
        :func:`~chunked_medoids.clara`, sized from n, k and ``memory_limit``).
    include_best : bool, default True
        Later samples contain the best medoids so far.
    polish : bool, default False
        Finish with FasterPAM on the full data.
    random_state : None, int, numpy Generator or RandomState, default None
    memory_limit : int or str, default "1GiB"
    client : distributed.Client, optional
        Run the samples as tasks on a Dask cluster.
    progress : bool, default False
    metric_params : dict, optional
        Metric parameters (features only).
    clara_params : dict, optional
        Further keyword arguments of :func:`~chunked_medoids.clara` (e.g. ``wave_size``).

    Attributes
    ----------
    labels_, medoid_indices_, cluster_centers_, inertia_, n_iter_, n_swap_, loss_history_,
    n_features_in_, result_
        As in :class:`KMedoids` (``n_iter_`` / ``n_swap_`` as reported by
        :func:`~chunked_medoids.clara`; ``result_.sample_losses`` holds the full-data loss
        of every sample).

    Notes
    -----
    Feature inputs (numpy, dask, zarr, HDF5, paths) are passed to
    :func:`~chunked_medoids.clara` as features, which reads them in row blocks; the full
    n×n matrix is never formed.
    """

    def __init__(self, n_clusters: int = 8, *, metric: MetricLike = "euclidean", variant: str | None = None,
                 n_samples: int | None = None, sample_size: int | None = None, include_best: bool = True,
                 polish: bool = False, random_state: RandomStateLike | np.random.RandomState = None,
                 memory_limit: MemoryLimit = "1GiB", client: ClientLike = None, progress: bool = False,
                 metric_params: dict[str, Any] | None = None, clara_params: dict[str, Any] | None = None) -> None:
        self.n_clusters = n_clusters
        self.metric = metric
        self.variant = variant
        self.n_samples = n_samples
        self.sample_size = sample_size
        self.include_best = include_best
        self.polish = polish
        self.random_state = random_state
        self.memory_limit = memory_limit
        self.client = client
        self.progress = progress
        self.metric_params = metric_params
        self.clara_params = clara_params

    def fit(self, X: FeaturesLike | DissimilarityLike, y: Any = None,
            sample_weight: WeightsLike = None) -> Self:
        """Cluster X (see :meth:`KMedoids.fit` for the accepted inputs).

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or the (n, n) dissimilarity
        y : ignored
        sample_weight : array of shape (n_samples,), optional

        Returns
        -------
        self
        """
        from .algorithms.clara import clara
        from .metrics import resolve_metric
        from .sources.features import FeatureArray

        k = _check_n_clusters(self.n_clusters)
        metric_params = {} if self.metric_params is None else self.metric_params
        if not isinstance(metric_params, dict):
            raise InvalidTypeError(f"metric_params must be a dict or None, got {type(metric_params).__name__}")
        cp = {} if self.clara_params is None else self.clara_params
        if not isinstance(cp, dict):
            raise InvalidTypeError(f"clara_params must be a dict or None, got {type(cp).__name__}")
        clash = sorted(set(cp) & set(_CLARA_RESERVED))
        if clash:
            raise InvalidParameterError(f"clara_params may not set {clash}: use the estimator's own parameters")
        from .algorithms.clara import clara as _clara

        _check_extra_params(cp, _clara, "clara_params")
        centers_from = metric = None
        if self._precomputed:
            if metric_params:
                raise InvalidParameterError("metric_params cannot be used with metric='precomputed'")
            data = _precomputed_source(self, X)
            n = self.n_features_in_ = data.n
        else:
            if _is_lazy(X):
                feats = FeatureArray(X)
                n, self.n_features_in_ = feats.n, feats.d
                data = centers_from = X
                blocks = lambda: (b for _, _, b in feats.iter_blocks(predict_block_rows(feats.d)))  # noqa: E731
            else:
                data = centers_from = _validate(self, X, dtype=[np.float64, np.float32], ensure_min_samples=1)
                n = data.shape[0]
                blocks = data
            metric = resolve_metric(self.metric, **metric_params)
            if metric.needs_fit:
                metric = metric.fit(blocks)
            if not isinstance(centers_from, np.ndarray):
                centers_from = feats
        if n < k:
            raise InvalidParameterError(f"n_samples={n} should be >= n_clusters={k}.")
        w = self._check_sample_weight(sample_weight, n)
        kwargs = dict(cp)
        kwargs.update(variant=self.variant, n_samples=self.n_samples, sample_size=self.sample_size,
                      include_best=self.include_best, polish=self.polish, random_state=self.random_state,
                      weights=w, memory_limit=self.memory_limit, client=self.client, progress=self.progress)
        if self._precomputed:
            result = clara(data, k, precomputed=True, **kwargs)
        else:
            result = clara(data, k, metric=self.metric, metric_params=metric_params or None,
                           precomputed=False, **kwargs)
        return self._set_fitted(result, centers_from, metric)


__all__ = ["CLARA", "KMedoids", "NotFittedError"]
