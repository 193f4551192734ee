"""Distance metrics on feature vectors: the one registry :data:`METRICS` and :func:`resolve_metric`.

A metric turns feature rows into dissimilarities.  :func:`resolve_metric` validates a metric
name (or a user ``numba.njit`` function) and its parameters and returns a
:class:`BoundMetric`, which fills row blocks of the dissimilarity matrix with a numba kernel::

    >>> m = resolve_metric("minkowski", p=3)
    >>> D = m.pairwise_new(X, X)           # (len(X), len(X)) float64

Every built-in kernel is bitwise symmetric (``d(x, y)`` and ``d(y, x)`` are the same
floating-point operations), gives exactly 0 for identical rows, computes each entry from its
two rows only (results never depend on how the data is split into blocks) and never returns
NaN for finite input.  Conventions where scipy would return NaN:

* ``cosine`` / ``correlation``: two zero vectors (two constant vectors for correlation) are at
  distance 0; a zero (constant) vector and any other vector are at distance 1.
* ``canberra``: terms with ``|x_i| + |y_i| = 0`` contribute 0 (as in scipy).
* ``braycurtis``: two all-zero rows are at distance 0.
* ``jaccard``: two rows without any nonzero entry are at distance 0 (as in scipy).

Kernels are compiled lazily (on first use, then cached on disk by numba), so importing this
module compiles nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ._errors import InvalidParameterError, InvalidTypeError, UnknownNameError
from ._typing import MetricLike
from ._util import jsonable as _jsonable


def _kernels():
    """The numba kernel module, imported on first use (keeps ``import`` free of numba)."""
    from ._kernels import metrics as kernels

    return kernels

__all__ = ["METRICS", "METRIC_ALIASES", "MetricSpec", "BoundMetric", "resolve_metric", "metric_names"]


# ---------------------------------------------------------------------------------------
# parameter validation / kernel-argument preparation (module level: picklable)
# ---------------------------------------------------------------------------------------


def _check_p(p) -> float:
    if isinstance(p, bool) or not isinstance(p, numbers.Real):
        raise InvalidTypeError(f"minkowski parameter p must be a real number >= 1, got {type(p).__name__} {p!r}")
    p = float(p)
    if math.isnan(p) or p < 1.0:
        raise InvalidParameterError(
            f"minkowski parameter p must be >= 1 (p < 1 is not a metric), got p={p!r}"
        )
    if math.isinf(p):
        raise InvalidParameterError("minkowski parameter p must be finite, got p=inf; use metric='chebyshev'")
    return p


def _validate_minkowski(params: dict) -> dict:
    return {"p": _check_p(params["p"])}


def _categorical_indices(categorical) -> tuple[list[int], int | None]:
    """Normalise ``categorical`` to (sorted column indices, mask length or None)."""
    if categorical is None:
        return [], None
    arr = np.asarray(categorical)
    if arr.dtype == bool:
        if arr.ndim != 1:
            raise InvalidParameterError(
                f"gower parameter categorical must be a 1-D boolean mask or a list of column indices, got shape {arr.shape}"
            )
        return [int(i) for i in np.flatnonzero(arr)], int(arr.shape[0])
    if arr.size == 0:
        return [], None
    if arr.ndim != 1 or not (np.issubdtype(arr.dtype, np.integer)):
        raise InvalidTypeError(
            "gower parameter categorical must be a boolean mask of length d or a list of integer "
            f"column indices, got {categorical!r}"
        )
    if (arr < 0).any():
        raise InvalidParameterError(
            f"gower parameter categorical holds negative column indices {arr[arr < 0].tolist()}; use indices in [0, d)"
        )
    idx = sorted({int(i) for i in arr})
    if len(idx) != arr.shape[0]:
        raise InvalidParameterError(f"gower parameter categorical holds duplicate column indices: {arr.tolist()}")
    return idx, None


def _validate_gower(params: dict) -> dict:
    cat, mask_len = _categorical_indices(params["categorical"])
    ranges = params["ranges"]
    n_features = params.get("n_features")
    if n_features is not None:
        if isinstance(n_features, bool) or not isinstance(n_features, numbers.Integral) or n_features < 1:
            raise InvalidParameterError(f"gower parameter n_features must be a positive integer, got {n_features!r}")
        n_features = int(n_features)
    if mask_len is not None:
        if n_features is not None and n_features != mask_len:
            raise InvalidParameterError(
                f"gower parameter categorical is a mask of length {mask_len} but n_features={n_features}"
            )
        n_features = mask_len
    if ranges is not None:
        r = np.asarray(ranges, dtype=np.float64) if not isinstance(ranges, str) else None
        if r is None or r.ndim != 1 or r.shape[0] < 1:
            raise InvalidParameterError(
                f"gower parameter ranges must be a 1-D sequence of d non-negative finite numbers, got {ranges!r}"
            )
        if not np.all(np.isfinite(r)) or (r < 0).any():
            raise InvalidParameterError(
                f"gower parameter ranges must be finite and >= 0 (one per column), got {r.tolist()}"
            )
        if n_features is not None and r.shape[0] != n_features:
            raise InvalidParameterError(
                f"gower parameter ranges has length {r.shape[0]} but the data has d={n_features} columns"
            )
        n_features = int(r.shape[0])
        r = r.copy()
        r[[i for i in cat if i < n_features]] = 0.0  # ignored for categorical columns: canonical form
        ranges = [float(v) for v in r]
    if n_features is not None and cat and cat[-1] >= n_features:
        raise InvalidParameterError(
            f"gower parameter categorical holds column index {cat[-1]} but the data has d={n_features} columns"
        )
    return {"categorical": cat, "ranges": ranges, "n_features": n_features}


def _gower_args(params: dict, d: int) -> tuple:
    if params["ranges"] is None:
        raise InvalidParameterError(
            "metric 'gower' needs the numeric column ranges before computing distances: call "
            ".fit(iter_blocks) on the bound metric or pass ranges=[...] (one value per column)"
        )
    if params["n_features"] != d:
        raise InvalidParameterError(
            f"metric 'gower' was fitted/configured for d={params['n_features']} columns, got data with d={d}"
        )
    cat = np.zeros(d, dtype=np.bool_)
    cat[params["categorical"]] = True
    return cat, np.asarray(params["ranges"], dtype=np.float64)


def _gower_needs_fit(params: dict) -> bool:
    return params["ranges"] is None


def _gower_fit(params: dict, iter_blocks: Callable[[], Iterator[np.ndarray]]) -> dict:
    lo = hi = None
    nrows = 0
    for block in iter_blocks():
        X = _as_rows(block, "fit block")
        if lo is None:
            d = X.shape[1]
            if params["n_features"] is not None and params["n_features"] != d:
                raise InvalidParameterError(
                    f"metric 'gower' was configured for d={params['n_features']} columns, got data with d={d}"
                )
            lo = np.full(d, np.inf)
            hi = np.full(d, -np.inf)
        elif X.shape[1] != lo.shape[0]:
            raise InvalidParameterError(
                f"fit blocks have inconsistent column counts: {lo.shape[0]} then {X.shape[1]}"
            )
        if X.shape[0] == 0:
            continue
        if not _kernels().update_minmax(X, lo, hi):
            raise InvalidParameterError(
                "metric 'gower' cannot be fitted: the feature data contains NaN or infinite values"
            )
        nrows += X.shape[0]
    if nrows == 0:
        raise InvalidParameterError("metric 'gower' cannot be fitted: iter_blocks() yielded no rows")
    ranges = hi - lo
    if not np.all(np.isfinite(ranges)):
        raise InvalidParameterError(
            "metric 'gower' cannot be fitted: a column range max - min overflows float64; "
            "rescale the features"
        )
    return _validate_gower({"categorical": params["categorical"], "ranges": ranges.tolist(), "n_features": lo.shape[0]})


def _no_args(params: dict, d: int) -> tuple:
    return ()


def _minkowski_args(params: dict, d: int) -> tuple:
    return (float(params["p"]),)


def _never(params: dict) -> bool:
    return False


# ---------------------------------------------------------------------------------------
# the registry
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MetricSpec:
    """A registered metric.

    Attributes
    ----------
    name : str
        Canonical name.
    kernel_name : str
        Name of the block kernel in ``chunked_medoids._kernels.metrics``; the kernel itself
        (a numba dispatcher ``kernel(XA, XB, out, *args)`` filling ``out[i, j] = d(XA[i],
        XB[j])``) is the :attr:`kernel` property, so that the registry loads without numba.
    params : mapping
        Parameter names and their defaults (empty when the metric takes none).
    needs_fit : bool
        True if the metric, with default parameters, must see the data (``fit``) before use.
    description : str
        One line for documentation and ``--help``.
    aliases : tuple of str
        Other names accepted by :func:`resolve_metric`.
    scipy_name : str or None
        Name of the same metric in :func:`scipy.spatial.distance.cdist` (None if none).
    """

    name: str
    kernel_name: str
    params: Mapping[str, Any]
    needs_fit: bool
    description: str
    aliases: tuple[str, ...] = ()
    scipy_name: str | None = None
    # internal hooks (module-level functions, so that everything pickles)
    validate: Callable[[dict], dict] | None = field(default=None, repr=False)
    kernel_args: Callable[[dict, int], tuple] = field(default=_no_args, repr=False)
    params_need_fit: Callable[[dict], bool] = field(default=_never, repr=False)
    fit_params: Callable | None = field(default=None, repr=False)

    @property
    def kernel(self) -> Callable:
        """The numba block kernel (importing the kernel module on first access)."""
        return getattr(_kernels(), self.kernel_name)


METRICS: dict[str, MetricSpec] = {}


def _register(spec: MetricSpec) -> None:
    METRICS[spec.name] = spec


_register(MetricSpec("euclidean", "euclidean_block", {}, False,
                     "Euclidean (L2) distance sqrt(sum (x_i - y_i)^2).", ("l2",), "euclidean"))
_register(MetricSpec("sqeuclidean", "sqeuclidean_block", {}, False,
                     "Squared Euclidean distance sum (x_i - y_i)^2 (not a metric: no triangle inequality).",
                     (), "sqeuclidean"))
_register(MetricSpec("manhattan", "manhattan_block", {}, False,
                     "Manhattan (L1, city block) distance sum |x_i - y_i|.", ("cityblock", "l1"), "cityblock"))
_register(MetricSpec("chebyshev", "chebyshev_block", {}, False,
                     "Chebyshev (L-infinity) distance max |x_i - y_i|.", (), "chebyshev"))
_register(MetricSpec("minkowski", "minkowski_block", {"p": 2.0}, False,
                     "Minkowski distance (sum |x_i - y_i|^p)^(1/p), finite p >= 1 (default 2).",
                     (), "minkowski", validate=_validate_minkowski, kernel_args=_minkowski_args))
_register(MetricSpec("cosine", "cosine_block", {}, False,
                     "Cosine distance 1 - x.y / (|x| |y|); zero vectors: 0 to each other, 1 to anything else.",
                     (), "cosine"))
_register(MetricSpec("correlation", "correlation_block", {}, False,
                     "Correlation distance (cosine distance of the mean-centred rows); constant rows: "
                     "0 to each other, 1 to anything else.", (), "correlation"))
_register(MetricSpec("canberra", "canberra_block", {}, False,
                     "Canberra distance sum |x_i - y_i| / (|x_i| + |y_i|); 0/0 terms count 0.", (), "canberra"))
_register(MetricSpec("braycurtis", "braycurtis_block", {}, False,
                     "Bray-Curtis dissimilarity sum |x_i - y_i| / sum |x_i + y_i| (non-negative data); "
                     "two all-zero rows: 0.", (), "braycurtis"))
_register(MetricSpec("hamming", "hamming_block", {}, False,
                     "Hamming distance: fraction of coordinates that differ.", (), "hamming"))
_register(MetricSpec("jaccard", "jaccard_block", {}, False,
                     "Jaccard distance of boolean rows (nonzero = True); two all-False rows: 0.",
                     (), "jaccard"))
_register(MetricSpec("gower", "gower_block", {"categorical": None, "ranges": None, "n_features": None}, True,
                     "Gower distance for mixed columns: mean over columns of |x_i - y_i| / range_i "
                     "(numeric; range-0 columns count 0) or [x_i != y_i] (categorical); ranges are "
                     "fitted from the data in one streaming pass unless given.",
                     (), None, validate=_validate_gower, kernel_args=_gower_args,
                     params_need_fit=_gower_needs_fit, fit_params=_gower_fit))

#: alias -> canonical name, derived from :data:`METRICS` (not a second list).
METRIC_ALIASES: dict[str, str] = {a: spec.name for spec in METRICS.values() for a in spec.aliases}


def metric_names(aliases: bool = True) -> list[str]:
    """Sorted accepted metric names (canonical names, plus aliases if ``aliases``)."""
    names = set(METRICS)
    if aliases:
        names |= set(METRIC_ALIASES)
    return sorted(names)


# ---------------------------------------------------------------------------------------
# bound metric
# ---------------------------------------------------------------------------------------


def _as_rows(X, what: str) -> np.ndarray:
    """float64 C-contiguous 2-D view/copy of ``X`` (no copy when already so)."""
    arr = np.asarray(X)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == bool):
        raise InvalidTypeError(f"{what} must be a numeric array, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise InvalidTypeError(f"{what} must be real-valued, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise InvalidParameterError(f"{what} must be a 2-D array (rows, features), got shape {arr.shape}")
    return np.ascontiguousarray(arr, dtype=np.float64)


class BoundMetric:
    """A metric with validated parameters, ready to compute distance blocks.

    Made by :func:`resolve_metric`; do not construct directly.

    Attributes
    ----------
    name : str
        Canonical metric name (``"custom:<module>.<qualname>"`` for a user function).
    params : dict
        JSON-able parameters, including fitted ones (gower ``ranges``); for a user function
        ``{"code_hash": ...}``, a hash of its bytecode (it cannot be passed back).
    needs_fit : bool
        True while the metric still has to see the data (gower without ranges).
    spec : MetricSpec or None
        The registry entry (None for a user function).
    func : numba dispatcher or None
        The user function (None for a registered metric).
    """

    __slots__ = ("name", "params", "spec", "func")

    def __init__(self, name: str, params: dict, spec: MetricSpec | None = None, func=None):
        self.name = name
        self.params = params
        self.spec = spec
        self.func = func

    # -- state -------------------------------------------------------------------------
    @property
    def needs_fit(self) -> bool:
        return self.spec is not None and self.spec.params_need_fit(self.params)

    def describe(self) -> dict:
        """JSON-able ``{"metric": name, "params": {...}}`` (store metadata, fingerprints)."""
        return {"metric": self.name, "params": _jsonable(self.params)}

    def fit(self, iter_blocks) -> BoundMetric:
        """Return a new metric with data-dependent parameters computed from the data.

        Parameters
        ----------
        iter_blocks : callable
            Zero-argument callable returning an iterator over float64 ``(rows, d)`` blocks of
            the feature data (an array is accepted too and treated as one block).  Called at
            most once; the blocks are streamed, only O(d) state is kept.

        Returns
        -------
        BoundMetric
            ``self`` when nothing needs fitting (no data is read), otherwise a fitted copy.
        """
        if not self.needs_fit:
            return self
        if not callable(iter_blocks):
            if isinstance(iter_blocks, np.ndarray) or hasattr(iter_blocks, "__array__"):
                arr = iter_blocks
                iter_blocks = lambda: iter((arr,))  # noqa: E731
            else:
                raise InvalidTypeError(
                    "fit(iter_blocks): iter_blocks must be a zero-argument callable returning an "
                    f"iterator of (rows, d) blocks, got {type(iter_blocks).__name__}"
                )
        new_params = self.spec.fit_params(self.params, iter_blocks)
        return BoundMetric(self.name, new_params, self.spec, None)

    # -- computing ---------------------------------------------------------------------
    def _check_blocks(self, XA, XB):
        XA = _as_rows(XA, "XA")
        XB = _as_rows(XB, "XB")
        if XA.shape[1] != XB.shape[1]:
            raise InvalidParameterError(
                f"XA and XB must have the same number of columns, got {XA.shape[1]} and {XB.shape[1]}"
            )
        if XA.shape[1] < 1:
            raise InvalidParameterError("feature rows must have at least one column, got d=0")
        return XA, XB

    def kernel_args(self, d: int) -> tuple:
        """Extra arguments of the block kernel for data with ``d`` columns."""
        if self.spec is None:
            return ()
        return self.spec.kernel_args(self.params, d)

    def fused_args(self, d: int):
        """``(code, p, categorical, ranges)`` for the fused row kernels
        (:func:`chunked_medoids._kernels.metrics.dist_rows`), or None for a user function.

        ``code`` is the kernel's metric code (minkowski with p = 1 or 2 maps to manhattan /
        euclidean exactly as its block kernel dispatches); the others are the kernel's
        parameter arguments (placeholders when the metric takes none).
        """
        if self.spec is None:
            return None
        km = _kernels()
        code = km.FUSED_CODES.get(self.spec.kernel_name)
        if code is None:
            return None
        p = 0.0
        categorical = np.zeros(d, dtype=np.bool_)
        ranges = np.zeros(d, dtype=np.float64)
        if code == km.M_MINKOWSKI:
            p = float(self.params["p"])
            if p == 1.0:
                code = km.M_MANHATTAN
            elif p == 2.0:
                code = km.M_EUCLIDEAN
        elif code == km.M_GOWER:
            categorical, ranges = self.spec.kernel_args(self.params, d)
        return code, p, categorical, ranges

    def pairwise(self, XA, XB, out, *, check_finite: bool = False) -> np.ndarray:
        """Fill ``out[i, j] = d(XA[i], XB[j])`` with the numba kernel (GIL released).

        Parameters
        ----------
        XA : ndarray, shape (a, d)
        XB : ndarray, shape (b, d)
            Feature rows; float64 C-contiguous arrays are used as they are, anything else is
            converted (a copy).
        out : ndarray, shape (a, b), float64, C-contiguous, writeable
            Filled in place (no allocation besides O((a + b) d) row scratch for cosine /
            correlation).
        check_finite : bool, default False
            Raise :class:`InvalidParameterError` if ``XA`` or ``XB`` holds NaN or inf.  Off by
            default because callers validate the features once (an O((a + b) d) check per
            block is wasted work then); with non-finite input the result is unspecified.

        Returns
        -------
        out : ndarray
            The ``out`` argument.  For finite input no entry is NaN (an entry may be +inf if
            the distance overflows float64).
        """
        XA, XB = self._check_blocks(XA, XB)
        if check_finite:
            for what, X in (("XA", XA), ("XB", XB)):
                if not np.isfinite(X).all():
                    raise InvalidParameterError(
                        f"{what} holds NaN or infinite feature values; remove or impute them first"
                    )
        if (
            not isinstance(out, np.ndarray)
            or out.dtype != np.float64
            or out.shape != (XA.shape[0], XB.shape[0])
            or not out.flags.c_contiguous
            or not out.flags.writeable
        ):
            raise InvalidParameterError(
                f"out must be a writeable C-contiguous float64 array of shape {(XA.shape[0], XB.shape[0])}, got "
                + (f"{out.dtype} {out.shape}" if isinstance(out, np.ndarray) else type(out).__name__)
            )
        if XA.shape[0] == 0 or XB.shape[0] == 0:
            return out
        if self.spec is None:
            from numba.core.errors import TypingError

            try:
                _kernels().custom_block(self.func, XA, XB, out)
            except TypingError as exc:
                raise InvalidTypeError(
                    f"custom metric {self.name!r} could not be compiled as f(x, y) -> float for two "
                    f"1-D float64 rows; numba reported: {str(exc).splitlines()[0] if str(exc) else exc!r}"
                ) from exc
        else:
            self.spec.kernel(XA, XB, out, *self.spec.kernel_args(self.params, XA.shape[1]))
        return out

    def pairwise_new(self, XA, XB, *, check_finite: bool = False) -> np.ndarray:
        """Return a new float64 ``(len(XA), len(XB))`` array of distances (see :meth:`pairwise`).

        Allocates the ``len(XA) * len(XB) * 8`` bytes of the result.
        """
        XA, XB = self._check_blocks(XA, XB)
        out = np.empty((XA.shape[0], XB.shape[0]), dtype=np.float64)
        return self.pairwise(XA, XB, out, check_finite=check_finite)

    # -- dunder ------------------------------------------------------------------------
    def __reduce__(self):
        if self.spec is None:
            return (_rebuild_custom, (self.func,))
        return (_rebuild, (self.name, self.params))

    def __eq__(self, other):
        if not isinstance(other, BoundMetric):
            return NotImplemented
        if self.spec is None or other.spec is None:
            return self.func is other.func and self.name == other.name
        return self.describe() == other.describe()

    def __hash__(self):
        return hash(self.name)

    def __repr__(self):
        ps = ", ".join(f"{k}={v!r}" for k, v in self.params.items() if v is not None and v != [])
        return f"BoundMetric({self.name!r}{', ' + ps if ps else ''})"


def _rebuild(name: str, params: dict) -> BoundMetric:
    spec = METRICS[name]
    return BoundMetric(name, dict(params), spec, None)


def _rebuild_custom(func) -> BoundMetric:
    return _bind_custom(func)


def _custom_name(func) -> str:
    py = getattr(func, "py_func", func)
    mod = getattr(py, "__module__", None) or "?"
    qual = getattr(py, "__qualname__", None) or getattr(py, "__name__", "?")
    return f"custom:{mod}.{qual}"


def _is_numba_dispatcher(obj) -> bool:
    try:
        from numba.core.dispatcher import Dispatcher
    except ImportError:  # pragma: no cover - very old numba
        from numba.dispatcher import Dispatcher  # type: ignore
    return isinstance(obj, Dispatcher)


def _code_hash(func) -> str:
    """Short hash of a user function's bytecode, constants and names (fingerprints)."""
    import hashlib

    code = getattr(getattr(func, "py_func", func), "__code__", None)
    if code is None:  # pragma: no cover - dispatchers always wrap a Python function
        return ""
    h = hashlib.sha256()
    h.update(code.co_code)
    h.update(repr(code.co_consts).encode())
    h.update(repr(code.co_names).encode())
    return h.hexdigest()[:16]


def _bind_custom(func) -> BoundMetric:
    # params hold only the code hash (so fingerprints tell two same-named functions apart)
    return BoundMetric(_custom_name(func), {"code_hash": _code_hash(func)}, None, func)


def resolve_metric(metric: MetricLike, **params: Any) -> BoundMetric:
    """Validate a metric and its parameters.

    Parameters
    ----------
    metric : str, numba-jitted function or BoundMetric
        A name from :data:`METRICS` or one of its aliases (see :func:`metric_names`), or a
        ``numba.njit`` function ``f(x, y) -> float`` taking two 1-D float64 rows.  A user
        function should be symmetric, non-negative and 0 on identical rows; the system
        relies on that (the dissimilarity checks of the sources will catch violations).
        A :class:`BoundMetric` is returned unchanged (no parameters allowed then).
    **params
        Metric parameters, e.g. ``p`` for ``minkowski``; ``categorical`` (boolean mask of
        length d or list of column indices), ``ranges`` (one non-negative value per column)
        and ``n_features`` for ``gower``.  Unknown or invalid parameters are refused.

    Returns
    -------
    BoundMetric

    Raises
    ------
    UnknownNameError
        Unknown metric name (the message lists the valid names).
    InvalidTypeError
        ``metric`` is a plain Python callable (decorate it with ``numba.njit``) or another type.
    InvalidParameterError
        A parameter the metric does not take, or an invalid value.
    """
    if isinstance(metric, BoundMetric):
        if params:
            raise InvalidParameterError(
                f"metric is already a bound metric {metric!r}; parameters {sorted(params)} cannot be added"
            )
        return metric
    if isinstance(metric, str):
        key = metric.strip().lower()
        key = METRIC_ALIASES.get(key, key)
        spec = METRICS.get(key)
        if spec is None:
            raise UnknownNameError(
                f"metric must be one of {metric_names()} or a numba.njit function f(x, y) -> float, got {metric!r}"
            )
        unknown = sorted(set(params) - set(spec.params))
        if unknown:
            accepted = sorted(spec.params) if spec.params else "no parameters"
            raise InvalidParameterError(
                f"metric {spec.name!r} does not take parameter(s) {unknown}; it accepts {accepted}"
            )
        full = dict(spec.params)
        full.update(params)
        if spec.validate is not None:
            full = spec.validate(full)
        return BoundMetric(spec.name, full, spec, None)
    if _is_numba_dispatcher(metric):
        if params:
            raise InvalidParameterError(
                f"a custom metric function takes no parameters here, got {sorted(params)}; bind "
                "constants inside the jitted function instead"
            )
        return _bind_custom(metric)
    if callable(metric):
        name = getattr(metric, "__name__", type(metric).__name__)
        raise InvalidTypeError(
            f"metric {name!r} is a plain Python callable; custom metrics must be compiled with numba: "
            "decorate it with @numba.njit (signature f(x, y) -> float on 1-D float64 arrays), "
            f"or use one of the built-in metrics {metric_names()}"
        )
    raise InvalidTypeError(
        f"metric must be a metric name (one of {metric_names()}) or a numba.njit function, "
        f"got {type(metric).__name__} {metric!r}"
    )
