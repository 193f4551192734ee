"""CLARA, FastCLARA and FasterCLARA: k-medoids on samples, scored on the full data.

Each sample of ``sample_size`` points is clustered on its small in-memory dissimilarity
matrix by an exact swap method (PAM, FastPAM2 or FasterPAM); its medoids are then scored on
the FULL data by a streaming, block-parallel pass, and the medoids with the lowest
full-data loss win (``docs/architecture.rst`` §4).

Inputs: features or a dissimilarity
-----------------------------------
``X_or_D`` is either an (n, d) feature array used with ``metric`` or a dissimilarity
matrix.  The rule (first match wins):

1. ``metric="precomputed"`` or ``precomputed=True``: a dissimilarity (anything
   :func:`~chunked_medoids.open_dissimilarity` accepts).  ``precomputed=False``: features.
2. A :class:`~chunked_medoids.DissimilaritySource`: a dissimilarity (also a
   ``from_features`` source: its rows are computed on demand, so sample gathering costs
   s·n distances per sample -- pass the feature array itself for the streaming feature
   mode).
3. A zarr / HDF5 store (path or object) written by
   :func:`~chunked_medoids.build_dissimilarity` (it carries the ``chunked_medoids``
   metadata attribute): a dissimilarity.
4. Anything else (numpy, memmap, dask, zarr or HDF5 arrays, ``.npy``/``.zarr``/``.h5``
   paths): features.  A square in-memory matrix therefore needs ``metric="precomputed"``.

Features are read in row blocks (whole storage chunks when possible): a feature array on
disk is never loaded whole.  Sample rows are gathered during the streaming passes.

Waves and determinism
---------------------
Samples run in *waves* of ``wave_size`` (default 4, a constant: it never depends on the
number of workers).  The samples of one wave are independent Dask tasks; every sample of
wave ``w > 0`` contains the best medoids found in waves ``0..w-1`` (``include_best``).
All random draws (the sample points, the seed of each sample's inner run) are made by the
driver in a fixed order, full-data losses are summed exactly (correctly rounded, see
:mod:`chunked_medoids._kernels.clara`), and the best sample is chosen in sample order
(ties: earliest sample).  Hence results for a seed are identical whatever the scheduler
(threads, one worker, a distributed cluster), the memory limit or the chunking of the data.
``wave_size=1`` is the strictly sequential classic CLARA.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from .. import _budget
from .._errors import InvalidParameterError, InvalidTypeError
from .._kernels.clara import PARTIALS, score_dist_block, score_rows, symmetrize_upper
from .._result import ClaraResult, LargeClaraResult
from .._state import ClaraState
from .._typing import (
    ClientLike,
    DissimilarityLike,
    FeaturesLike,
    MemoryLimit,
    MetricLike,
    PathLike,
    RandomStateLike,
    WeightsLike,
)
from .._util import check_choice, check_int, check_k, check_random_state, check_weights, parse_memory_limit
from ..engine import Engine, PassStopped, phase
from ..sources import open_dissimilarity, resolve_input
from ._common import driver_scope, kernel_weights, seed_param, weights_hash
from ._registry import register_method

logger = logging.getLogger(__name__)

#: the CLARA variants and their inner optimisers.
VARIANTS = ("fasterclara", "fastclara", "clara")
#: the features-only variant of :mod:`.clara_large` (default for feature inputs of n >= LARGE_N)
LARGE_VARIANT = "largeclara"
#: every ``variant=`` that :func:`clara` accepts (the CLI's ``--variant`` choices).
ALL_VARIANTS = (*VARIANTS, LARGE_VARIANT)
#: samples per wave (fixed so that results never depend on the number of workers).
DEFAULT_WAVE_SIZE = 4
#: largest default sample of the fast variants.
MAX_DEFAULT_SAMPLE = 10000
#: share of memory_limit the s×s float64 sample matrix may take (default sample size); see
#: chunked_medoids._budget (CLARA_SAMPLE_SHARE, CLARA_TASK_SHARE) for all of CLARA's sizes.
SAMPLE_MEMORY_SHARE = _budget.CLARA_SAMPLE_SHARE
#: the fast variants draw enough samples to cover min(n, this many) points in total ...
TARGET_SAMPLED_POINTS = 50000
#: ... using at least / at most this many samples.
MIN_DEFAULT_SAMPLES, MAX_DEFAULT_SAMPLES = 3, 50
#: relative swap tolerance of the inner optimisers: 0, i.e. the exact optimisers' strict
#: rule (rounding noise on exact ties -- duplicate points, frequent in image data -- is
#: refused by :func:`~chunked_medoids._kernels.swap.accept_swap`).
INNER_TOL = 0.0
#: classic CLARA's number of samples (Kaufman & Rousseeuw).
CLASSIC_SAMPLES = 5


# ---------------------------------------------------------------------------------------
# task functions (module level: picklable; run by Engine.map_tasks)
# ---------------------------------------------------------------------------------------
def _feature_pass_task(rows, st):
    """Rows ``(start, stop)`` of X: gather the requested feature rows and score medoid sets."""
    start, stop = rows
    block = st["features"].read(start, stop)
    out = {}
    idx = st.get("gather")
    if idx is not None:
        lo, hi = np.searchsorted(idx, [start, stop])
        out["rows"] = np.ascontiguousarray(block[idx[lo:hi] - start])
    C = st.get("C")
    if C is not None:
        medoids = st["medoids"]
        W, k = medoids.shape
        dist = np.empty((block.shape[0], W * k), dtype=np.float64)
        st["metric"].pairwise(block, C, dist)
        partials = np.zeros((W, PARTIALS), dtype=np.float64)
        counts = np.zeros(W, dtype=np.int64)
        want = bool(st.get("labels", False))
        labels = np.empty(block.shape[0] if want else 0, dtype=np.int32)
        score_dist_block(dist, k, start, medoids, st["w"], st["weighted"], partials, counts, labels, want)
        out["partials"] = [partials[q, :counts[q]] if counts[q] >= 0 else None for q in range(W)]
        if want:
            out["labels"] = labels
    return out


def _gather_submatrix(source, sample, budget):
    """``D[sample][:, sample]`` in the source dtype, reading ``sample`` rows in bounded groups."""
    s = sample.shape[0]
    S = np.empty((s, s), dtype=source.dtype)
    per = _budget.gather_rows(budget, source.n, source.dtype.itemsize)
    for a in range(0, s, per):
        b = min(a + per, s)
        S[a:b] = source.take_rows(sample[a:b])[:, sample]
    return S


def _sample_task(task, st):
    """Cluster one sample on its in-memory matrix (the ``_single`` step of this family);
    returns (global medoids, n_iter, n_swap, sample loss)."""
    sample = task["sample"]
    k = st["k"]
    if st["mode"] == "features":
        Xs = task["X"]
        S = np.empty((Xs.shape[0], Xs.shape[0]), dtype=np.float64)
        st["metric"].pairwise(Xs, Xs, S)
        symmetrize_upper(S)
    else:
        S = _gather_submatrix(st["source"], sample, st["gather_bytes"])
    res = _run_inner(st["variant"], S, k, task["seed"], task["weights"], st["memory_limit"])
    return (sample[res.medoids], int(res.n_iter), int(res.n_swap), float(res.loss))


def _run_inner(variant, S, k, seed, weights, memory_limit):
    """The inner optimiser of a variant on one sample matrix (one thread, no checkpoint)."""
    opts = dict(weights=weights, memory_limit=memory_limit, num_workers=1, tol=INNER_TOL)
    # its rows were validated as they were read from D (global positions named), or D was
    # opened with validate=False; features samples are valid by construction
    S = open_dissimilarity(S, validate=False)
    if variant == "fasterclara":
        from .fasterpam import fasterpam

        return fasterpam(S, k, init="random", random_state=seed, **opts)
    from .pam import fastpam2, pam

    if variant == "fastclara":
        return fastpam2(S, k, init="lab", random_state=seed, **opts)
    return pam(S, k, init="build", **opts)


# ---------------------------------------------------------------------------------------
# input resolution and defaults
# ---------------------------------------------------------------------------------------
def _resolve_input(X, metric, metric_params, precomputed, memory_limit, validate=True):
    """``("matrix", source, None)`` or ``("features", _FeatureInput, metric)``."""
    if precomputed is not None and not isinstance(precomputed, (bool, np.bool_)):
        raise InvalidTypeError(f"precomputed must be None, True or False, got {precomputed!r}")
    is_pre_metric = isinstance(metric, str) and metric.strip().lower() == "precomputed"
    if precomputed is False and is_pre_metric:
        raise InvalidParameterError("precomputed=False contradicts metric='precomputed'; drop one of them")
    matrix = None
    if precomputed or is_pre_metric:
        matrix = open_dissimilarity(X, validate=validate)
    elif precomputed is None and resolve_input(X).role == "matrix":  # a source or a built store
        matrix = open_dissimilarity(X, validate=validate)
    if matrix is not None:
        default_metric = metric is None or is_pre_metric or (isinstance(metric, str) and metric == "euclidean")
        if not default_metric or metric_params:
            raise InvalidParameterError(
                f"metric={metric!r} / metric_params={metric_params!r} apply to feature inputs only, but "
                f"X_or_D is a dissimilarity matrix ({matrix!r}); drop them (or pass precomputed=False "
                "if X_or_D really holds features)"
            )
        return "matrix", matrix, None
    if metric_params is not None and not isinstance(metric_params, dict):
        raise InvalidTypeError(f"metric_params must be a dict or None, got {type(metric_params).__name__}")
    src = _FeatureInput(X, metric, metric_params or {}, memory_limit)
    return "features", src, src.metric


class _FeatureInput:
    """Feature rows + metric for CLARA, validated in one memory-bounded streaming pass.

    ``fingerprint()`` (for checkpoints) is the SHA-256 of the feature bytes (independent
    of block sizes) and the metric; :meth:`dissimilarity` builds the float64
    :func:`~chunked_medoids.from_features` source (only needed by ``polish``).
    """

    def __init__(self, X, metric, metric_params, memory_limit):
        import hashlib

        from ..metrics import resolve_metric
        from ..sources.features import FeatureArray

        self.X, self.metric_arg, self.metric_params = X, metric, metric_params
        self.features = FeatureArray(X)
        self.n, self.d = self.features.n, self.features.d
        metric = resolve_metric(metric, **metric_params)
        rows = _budget.clara_scan_rows(self.n, self.d, memory_limit, self.features.chunk_rows)
        h = hashlib.sha256(f"{self.n}|{self.d}|{self.features.dtype.str}|".encode())
        for start, _stop, block in self.features.iter_blocks(rows):
            if not np.isfinite(block).all():
                r, c = np.argwhere(~np.isfinite(block))[0]
                raise InvalidParameterError(
                    f"X ({self.features.describe()}) contains {block[r, c]!r} at X[{start + r}, {c}]; "
                    "features must be finite: impute or drop missing values first"
                )
            h.update(memoryview(np.ascontiguousarray(block)).cast("B"))
        if metric.needs_fit:
            feats = self.features
            metric = metric.fit(lambda: (blk for _, _, blk in feats.iter_blocks(rows)))
        self.metric = metric
        self._hash = h.hexdigest()

    def fingerprint(self) -> str:
        import hashlib
        import json

        return hashlib.sha256((self._hash + json.dumps(self.metric.describe(), sort_keys=True,
                                                        default=str)).encode()).hexdigest()[:32]

    def dissimilarity(self):
        from ..sources.features import from_features

        return from_features(self.X, self.metric, dtype="float64")


def default_sample_size(variant, n, k, memory_limit) -> int:
    """The default sample size (see :func:`clara`, parameter ``sample_size``)."""
    if variant == "clara":
        return int(min(n, 40 + 2 * k))
    by_memory = _budget.clara_sample_cap(memory_limit)
    s = min(n, MAX_DEFAULT_SAMPLE, by_memory)
    return int(max(s, min(n, 80 + 4 * k)))


def default_n_samples(variant, n, sample_size) -> int:
    """The default number of samples (see :func:`clara`, parameter ``n_samples``)."""
    if variant == "clara":
        return CLASSIC_SAMPLES
    need = math.ceil(min(n, TARGET_SAMPLED_POINTS) / sample_size)
    return int(min(MAX_DEFAULT_SAMPLES, max(MIN_DEFAULT_SAMPLES, need)))


def _metric_param(metric):
    return None if metric is None else metric.describe()


# ---------------------------------------------------------------------------------------
# the driver
# ---------------------------------------------------------------------------------------
class _Run:
    """State of one CLARA run (kept small: O(n_samples·s) indices + O(k·d) features)."""

    def __init__(self, mode, src, metric, k, w, eng, memory_limit, variant, should_stop=None):
        self.mode, self.src, self.metric, self.k, self.w = mode, src, metric, k, w
        self.eng, self.memory_limit, self.variant = eng, memory_limit, variant
        self.n = src.n
        self.kw, self.weighted = kernel_weights(w)
        self.should_stop = should_stop

    # -- feature passes ---------------------------------------------------------------
    def feature_blocks(self, cols):
        """Row blocks for a feature pass whose work buffer has ``cols`` float64 columns."""
        feats = self.src.features
        threads = self.eng.parallelism if self.eng.client is None else 1
        per = _budget.clara_feature_block_rows(self.n, feats.d, cols, self.memory_limit, threads,
                                               feats.chunk_rows)
        return [(a, min(a + per, self.n)) for a in range(0, self.n, per)]

    def feature_pass(self, gather=None, medoid_sets=None, C=None, labels=False, desc="clara"):
        """One streaming pass over X: gather rows ``gather`` (sorted unique) and/or score the
        medoid sets (W, k) whose stacked features are ``C`` (W·k, d).  Returns
        ``(gathered rows or None, losses list, labels or None)``."""
        st = {"features": self.src.features}
        cols = 0
        if gather is not None:
            st["gather"] = gather
        if medoid_sets is not None:
            st.update(C=np.ascontiguousarray(C, dtype=np.float64), medoids=medoid_sets,
                      metric=self.metric, w=self.kw, weighted=self.weighted, labels=labels)
            cols = medoid_sets.size
        blocks = self.feature_blocks(cols)
        res = self.eng.map_tasks(_feature_pass_task, blocks, st, desc=desc, should_stop=self.should_stop)
        rows = None
        if gather is not None:
            parts = [r["rows"] for r in res]
            rows = np.concatenate(parts, axis=0) if parts else np.empty((0, self.src.features.d))
        losses, lab = [], None
        if medoid_sets is not None:
            for q in range(medoid_sets.shape[0]):
                bad = any(r["partials"][q] is None for r in res)
                if bad:
                    losses.append(math.inf)
                else:
                    losses.append(math.fsum(np.concatenate([r["partials"][q] for r in res]).tolist()))
            if labels:
                lab = np.concatenate([r["labels"] for r in res]).astype(np.int32, copy=False)
        return rows, losses, lab

    # -- matrix scoring -----------------------------------------------------------------
    def score_matrix(self, medoids, want_labels=False):
        rows = self.src.take_rows(medoids)
        partials = np.zeros(PARTIALS, dtype=np.float64)
        labels = np.empty(self.n if want_labels else 0, dtype=np.int32)
        cnt = score_rows(rows, np.arange(self.k, dtype=np.int64), medoids, self.kw, self.weighted,
                         partials, labels, want_labels)
        loss = math.inf if cnt < 0 else math.fsum(partials[:cnt].tolist())
        return loss, (labels if want_labels else None)

    # -- sample tasks -------------------------------------------------------------------
    def run_samples(self, tasks, s, on_result=None):
        """Run the sample tasks, at most a memory-bounded number at once (never changes results).

        ``on_result(q, result)`` is called as task ``q`` finishes (to checkpoint per sample).
        """
        conc, gather_bytes = _budget.clara_sample_batch(s, self.k, self.memory_limit, self.eng.parallelism)
        st = {"k": self.k, "mode": self.mode, "variant": self.variant,
              "metric": self.metric, "memory_limit": self.memory_limit,
              "source": self.src if self.mode == "matrix" else None, "gather_bytes": gather_bytes}
        return self.eng.map_tasks(_sample_task, tasks, st, max_concurrency=conc,
                                  desc=f"{self.variant} samples", on_result=on_result,
                                  should_stop=self.should_stop)


def _check_bool(value, name):
    if not isinstance(value, (bool, np.bool_)):
        raise InvalidTypeError(f"{name} must be True or False, got {type(value).__name__} {value!r}")
    return bool(value)


def clara(X_or_D: FeaturesLike | DissimilarityLike, k: int, *, variant: str | None = None,
          n_samples: int | None = None, sample_size: int | None = None, include_best: bool = True,
          metric: MetricLike = "euclidean", metric_params: Mapping[str, Any] | None = None,
          random_state: RandomStateLike = None, weights: WeightsLike = None, client: ClientLike = None,
          memory_limit: MemoryLimit = "1GiB", polish: bool = False, progress: bool = False,
          num_workers: int | None = None, checkpoint: PathLike | None = None, precomputed: bool | None = None,
          wave_size: int = DEFAULT_WAVE_SIZE, engine: Engine | None = None,
          validate: bool = True) -> ClaraResult | LargeClaraResult:
    """CLARA-family k-medoids for very large n: optimise on samples, keep the best on all data.

    Parameters
    ----------
    X_or_D : array of shape (n, d), path, or dissimilarity
        Features used with ``metric`` (numpy, memmap, dask, zarr, h5py, or a ``.npy`` /
        ``.zarr`` / ``.h5`` path), or a dissimilarity matrix.  How the two are told apart
        is described in the module notes: a :class:`~chunked_medoids.DissimilaritySource`
        or a store written by :func:`~chunked_medoids.build_dissimilarity` is a matrix,
        ``metric="precomputed"`` / ``precomputed=True`` force matrix mode,
        ``precomputed=False`` forces feature mode, everything else is features.
    k : int
        Number of medoids, 1 <= k <= n.
    variant : {"fasterclara", "fastclara", "clara", "largeclara"}, optional
        Inner optimiser on each sample: FasterPAM from a random init ("fasterclara"),
        FastPAM2 from a LAB init ("fastclara"), PAM from BUILD ("clara", classic), each
        with its default strict swap rule.  "largeclara" (features only) is
        :func:`~chunked_medoids.largeclara`: FasterPAM on four samples of 10000 points with
        on-the-fly distances, exact scoring and an exact polish; for it ``sample_size``,
        ``n_samples``, ``polish`` and the run options apply, ``include_best`` and
        ``wave_size`` do not.  Default: "largeclara" for feature inputs with n >= 100000
        (the README's "CLARA for large n" has the measurements), else "fasterclara".
    n_samples : int, optional
        Number of samples.  Default: 5 for "clara" (classic; known to be too few for small
        samples); for the fast variants ``ceil(min(n, 50000) / sample_size)`` clipped to
        [3, 50], so that the samples together cover about min(n, 50000) points.
    sample_size : int, optional
        Points per sample, k <= sample_size <= n.  Default: ``min(n, 40 + 2k)`` for
        "clara"; for the fast variants the largest s whose s×s float64 matrix takes at most
        an eighth of ``memory_limit``, capped at min(n, 10000), and at least
        min(n, 80 + 4k).  ``sample_size=80 + 4*k`` reproduces the paper's FastCLARA setting.
    include_best : bool, default True
        Every sample of a later wave contains the best medoids so far (the rest is drawn
        uniformly without replacement from the other points).
    metric : str or numba function, default "euclidean"
        Metric for feature inputs (see :data:`~chunked_medoids.METRICS`); "precomputed"
        means ``X_or_D`` is a dissimilarity.
    metric_params : dict, optional
        Metric parameters (e.g. ``{"p": 3}``); feature inputs only.
    random_state : None, int, SeedSequence or Generator
        Drives the sample draws and the inner runs' inits.
    weights : (n,) array, optional
        Non-negative point weights: the full-data loss is Σ w·d(o, medoid); each sample is
        clustered with its points' weights (unweighted if they are all zero).
    client : distributed.Client, optional
        Run sample tasks and block passes on this cluster.
    memory_limit : int or str, default "1GiB"
        Budget for sample matrices and feature/row blocks in flight; also sets the default
        sample size.
    polish : bool, default False
        Run FasterPAM on the full data from the CLARA medoids afterwards (features: on the
        dissimilarity computed on the fly, float64).  Costs one O(n²) pass per FasterPAM
        pass; not checkpointed.
    progress : bool, default False
    num_workers : int, optional
        Threads of the local scheduler (default: number of cores).
    checkpoint : path, optional
        Save the state after every sample (its inner result) and every wave (scored); a
        rerun with the same path and parameters resumes and returns the identical result.
        SIGTERM / SIGUSR1 (see :func:`~chunked_medoids.checkpoint.install_signal_handlers`)
        stop the run once the running samples finished.
    precomputed : bool, optional
        Force matrix (True) or feature (False) interpretation of ``X_or_D``.
    wave_size : int, default 4
        Samples per wave (run in parallel); a later wave's samples include the best
        medoids of the earlier waves.  Fixed (never derived from the worker count) so
        results do not depend on the scheduler; 1 = classic sequential CLARA.
    engine : Engine, optional
        Reuse an existing engine (then ``client``/``num_workers`` must be None).
    validate : bool, default True
        Check a dissimilarity input (see
        :func:`~chunked_medoids.algorithms._common.driver_scope`); feature inputs are
        always checked for non-finite values.

    Returns
    -------
    ClaraResult or LargeClaraResult
        Medoids (global indices), full-data ``labels`` and ``loss`` (correctly rounded
        float64 sum Σ w·d; after ``polish`` the loss reported by FasterPAM), ``n_iter`` =
        samples run, ``n_swap`` = swaps of the winning sample's inner run (+ polish swaps),
        ``loss_history`` = best full-data loss after each sample (non-increasing).
        ``extra``: ``sample_losses`` (full-data loss of every sample's medoids, in sample
        order), ``sample_size``, ``n_samples``, ``variant``, ``best_sample``,
        ``include_best``, ``wave_size``, ``mode`` ("features"/"matrix"), ``clara_loss``
        (before polish), ``polished``.
        With variant "largeclara" (or its large-n default) the
        :class:`~chunked_medoids._result.LargeClaraResult` of
        :func:`~chunked_medoids.largeclara`.

    Notes
    -----
    Memory: per running sample an s×s float64 matrix (source dtype in matrix mode) plus
    O(s·k); the driver keeps O(n_samples·s) sample indices, the gathered feature rows of one
    wave (wave_size·s·d floats) and, at the end, the n labels.  Feature blocks are sized
    from ``memory_limit``.

    I/O, feature mode: one streaming pass over X to validate/fingerprint it, then one pass
    per wave (scoring the previous wave and gathering the next wave's rows) plus one to
    gather the first wave and one for the final labels.  Matrix mode: each sample reads
    its s rows of D (in bounded groups, keeping only the sample's columns) and each
    sample's scoring reads its k medoid rows.

    Raises
    ------
    InvalidParameterError
        Bad ``k``, ``sample_size`` (< k or > n), ``n_samples`` (< 1), ``wave_size``, or
        metric options with a dissimilarity input.
    UnknownNameError
        Unknown ``variant`` or metric.
    """
    if variant is not None:
        variant = check_choice(variant, "variant", ALL_VARIANTS)
    include_best = _check_bool(include_best, "include_best")
    polish = _check_bool(polish, "polish")
    wave_size = check_int(wave_size, "wave_size", minimum=1)
    ml = parse_memory_limit(memory_limit)
    mode, src, metric_b = _resolve_input(X_or_D, metric, metric_params, precomputed, ml, validate)
    n = src.n
    k = check_k(k, n)
    from .clara_large import LARGE_N, run_largeclara

    if variant == LARGE_VARIANT or (variant is None and mode == "features" and n >= LARGE_N):
        if mode != "features":
            raise InvalidParameterError("variant='largeclara' needs feature rows, not a dissimilarity matrix; "
                                        "use variant='fasterclara'")
        return run_largeclara(src, metric_b, k, ml, n_samples=n_samples, sample_size=sample_size,
                              random_state=random_state, weights=weights, client=client, progress=progress,
                              num_workers=num_workers, checkpoint=checkpoint, engine=engine, full_polish=polish)
    variant = variant or "fasterclara"
    if sample_size is None:
        s = default_sample_size(variant, n, k, ml)
    else:
        s = check_int(sample_size, "sample_size")
        if s < k or s > n:
            raise InvalidParameterError(
                f"sample_size must satisfy k <= sample_size <= n (k = {k}, n = {n}), got {s}; "
                f"e.g. sample_size={min(n, 80 + 4 * k)} (the paper's 80 + 4k)"
            )
    if n_samples is None:
        n_samples = default_n_samples(variant, n, s)
    else:
        n_samples = check_int(n_samples, "n_samples", minimum=1)
    w = check_weights(weights, n)
    rng = check_random_state(random_state)
    with driver_scope(None, None, memory_limit=ml, client=client, progress=progress, num_workers=num_workers,
                      engine=engine, validate=validate, open_source=False) as scope:
        return _clara(scope, mode, src, metric_b, k, variant, s, n_samples, include_best, w, rng, ml,
                      polish, checkpoint, wave_size, random_state)


def draw_samples(rng, n, n_samples, s):
    """Every sample draw of a CLARA-family run, up front in a fixed order: ``(draws, seeds)``,
    ``n_samples`` uniform draws of ``s`` distinct points, then one inner seed per sample."""
    draws = np.empty((n_samples, s), dtype=np.int64)
    for i in range(n_samples):
        draws[i] = rng.choice(n, size=s, replace=False)
    seeds = rng.integers(0, 2**63 - 1, size=n_samples, dtype=np.int64)
    return draws, seeds


def sample_weights(w, points):
    """The weights of ``points`` for an inner run, or None (unweighted, or all zero there)."""
    if w is None:
        return None
    ws = w[points]
    return ws if (ws > 0).any() else None


def _compose(sample_draw, best, s):
    """Sorted sample: the best medoids (if any) then drawn points not among them, s in all."""
    if best is None:
        return np.sort(sample_draw[:s])
    rest = sample_draw[~np.isin(sample_draw, best)][: s - best.shape[0]]
    return np.sort(np.concatenate([best, rest]))


def _clara(scope, mode, src, metric, k, variant, s, n_samples, include_best, w, rng, ml, polish,
           checkpoint, wave_size, random_state):
    n = src.n
    eng = scope.engine
    t0 = time.perf_counter()
    params = {"variant": variant, "k": k, "sample_size": s, "n_samples": n_samples,
              "include_best": include_best, "wave_size": wave_size, "mode": mode,
              "metric": _metric_param(metric), "seed": seed_param(random_state),
              "weights": weights_hash(w)}
    ckpt = scope.open_checkpoint(checkpoint, algorithm="clara", params=params, source=src)
    run = _Run(mode, src, metric, k, w, eng, ml, variant,
               should_stop=ckpt.stop.is_set if ckpt.enabled else None)
    state = ckpt.load()
    if state is None:
        # every draw of the run, made up front in a fixed order (s points per sample: enough
        # for the s - k non-best points even when all k best medoids are among them)
        draws, seeds = draw_samples(rng, n, n_samples, s)
        state = ClaraState(draws=draws, seeds=seeds)
    try:
        _clara_samples(run, state, s, n_samples, include_best, wave_size, ckpt)
        # final labels of the winner
        best = state.best_medoids
        if mode == "features":
            _, losses, labels = run.feature_pass(medoid_sets=best[None, :], C=state.best_X, labels=True,
                                                 desc="clara labels")
            loss = losses[0]
        else:
            loss, labels = run.score_matrix(best, want_labels=True)
    except PassStopped:
        ckpt.step(lambda: state, force=True)  # saves what is done, raises CheckpointInterrupt
        raise
    best_sample = state.best_sample
    history = list(state.loss_history)
    details = dict(sample_losses=list(state.sample_losses), sample_size=int(s), n_samples=int(n_samples),
                   variant=variant, best_sample=int(best_sample), include_best=include_best,
                   wave_size=int(wave_size), mode=mode, clara_loss=float(loss))
    n_swap = state.sample_swaps[best_sample] if best_sample >= 0 else 0
    result = ClaraResult(medoids=best.copy(), labels=labels, loss=float(loss), n_iter=len(state.sample_losses),
                         n_swap=int(n_swap), loss_history=history, algorithm=variant, polished=False, **details)
    ckpt.complete(state)
    if polish:
        from .fasterpam import fasterpam

        dis = src.dissimilarity() if mode == "features" else src
        pol = fasterpam(dis, k, init=best, weights=w, engine=eng)
        result = ClaraResult(medoids=pol.medoids, labels=pol.labels, loss=float(pol.loss),
                             n_iter=result.n_iter, n_swap=result.n_swap + int(pol.n_swap),
                             loss_history=history + [float(pol.loss)], algorithm=variant,
                             polished=True, polish_n_iter=int(pol.n_iter), **details)
    logger.info("%s: k=%d n=%d s=%d samples=%d loss=%.10g in %.2fs", variant, k, n, s, n_samples,
                result.loss, time.perf_counter() - t0)
    return result


def _clara_samples(run, state, s, n_samples, include_best, wave_size, ckpt):
    """Run and score the samples not done yet, wave by wave, continuing ``state``.

    Each finished sample's inner result is saved at once (``state.pending``); a wave's
    samples are scored together on the full data, then the wave counts as done.
    """
    mode, w = run.mode, run.w
    draws, seeds = state.draws, state.seeds
    waves = [(a, min(a + wave_size, n_samples)) for a in range(0, n_samples, wave_size)]
    waves = [wv for wv in waves if wv[0] >= state.samples_done]
    gathered = None  # features mode: (sorted unique indices, rows) of the current wave
    if mode == "features" and waves:
        a, b = waves[0]
        idx = np.unique(draws[a:b])
        rows, _, _ = run.feature_pass(gather=idx, desc="clara gather")
        gathered = (idx, rows)
    with phase(run.eng, f"{run.variant} samples scored", n_samples, "sample", initial=state.samples_done) as ph:
        for wi, (a, b) in enumerate(waves):
            tw = time.perf_counter()
            best, best_X = state.best_medoids, state.best_X
            inc = best if include_best else None
            tasks = []
            for i in range(a, b):
                sample = _compose(draws[i], inc, s)
                task = {"sample": sample, "seed": int(seeds[i]), "weights": sample_weights(w, sample)}
                if mode == "features":
                    task["X"] = _sample_features(sample, gathered, best, best_X)
                tasks.append(task)
            todo = [i for i in range(a, b) if i not in state.pending]

            def record(q, result, todo=todo):
                state.pending[todo[q]] = result
                ckpt.save(state)  # per sample: an interruption loses only the running samples

            if todo:
                for i, r in zip(todo, run.run_samples([tasks[i - a] for i in todo], s, on_result=record)):
                    state.pending[i] = r
            results = [state.pending[i] for i in range(a, b)]
            medoid_sets = np.stack([r[0] for r in results]).astype(np.int64)
            nxt = waves[wi + 1] if wi + 1 < len(waves) else None
            if mode == "features":
                C = np.concatenate([_rows_of(t["sample"], t["X"], m) for t, m in zip(tasks, medoid_sets)])
                gidx = np.unique(draws[nxt[0]:nxt[1]]) if nxt is not None else None
                rows, losses, _ = run.feature_pass(gather=gidx, medoid_sets=medoid_sets, C=C,
                                                   desc=f"clara wave {wi}")
                new_gathered = (gidx, rows) if nxt is not None else None
            else:
                losses = [run.score_matrix(m)[0] for m in medoid_sets]
                new_gathered = None
            for q, (i, loss) in enumerate(zip(range(a, b), losses)):
                state.sample_losses.append(float(loss))
                state.sample_swaps.append(int(results[q][2]))
                if loss < state.best_loss:
                    state.best_loss, state.best_medoids, state.best_sample = float(loss), medoid_sets[q].copy(), i
                    if mode == "features":
                        state.best_X = _rows_of(tasks[q]["sample"], tasks[q]["X"], state.best_medoids)
                state.loss_history.append(state.best_loss)
            if state.best_medoids is None:  # every loss was non-finite: keep the first sample's medoids
                state.best_medoids, state.best_sample = medoid_sets[0].copy(), a
                if mode == "features":
                    state.best_X = _rows_of(tasks[0]["sample"], tasks[0]["X"], state.best_medoids)
            gathered = new_gathered
            state.samples_done = b
            state.pending.clear()
            ph.update(b - a)
            logger.info("%s wave %d (samples %d-%d): losses %s, best %.10g (%.2fs)", run.variant, wi, a, b - 1,
                        [f"{x:.6g}" for x in losses], state.best_loss, time.perf_counter() - tw)
            ckpt.step(lambda: state, force=True)


def _rows_of(sample, Xs, points):
    """Feature rows of ``points`` (all members of the sorted ``sample`` whose rows are Xs)."""
    return Xs[np.searchsorted(sample, points)]


def _sample_features(sample, gathered, best, best_X):
    """Feature rows (s, d) float64 of the sorted ``sample`` from the gathered rows and the
    best medoids' rows."""
    idx, rows = gathered
    d = rows.shape[1]
    out = np.empty((sample.shape[0], d), dtype=np.float64)
    pos = np.searchsorted(idx, sample)
    pos_c = np.minimum(pos, max(idx.shape[0] - 1, 0))
    if idx.shape[0]:
        hit = idx[pos_c] == sample
    else:
        hit = np.zeros(sample.shape[0], dtype=bool)
    out[hit] = rows[pos_c[hit]]
    if (~hit).any():
        if best is None:
            raise RuntimeError("internal error: sample point without gathered features")  # pragma: no cover
        order = np.argsort(best)
        bpos = np.searchsorted(best[order], sample[~hit])
        out[~hit] = best_X[order][bpos]
    return out


# -- registered thin wrappers ------------------------------------------------------------------
def _square_undecided(X) -> bool:
    """Whether ``X`` is square and :func:`~chunked_medoids.sources.resolve_input` leaves its
    role undecided (an array, or a store without build metadata): the registry entries read
    it as the dissimilarity every METHODS entry takes."""
    r = resolve_input(X)
    if r.decided:
        return False
    shape = getattr(X, "shape", None)
    if shape is None and not r.lazy:
        shape = np.shape(X)
    if shape is None:  # a path: the array's shape from its header (no values read)
        from ..sources.features import FeatureArray

        try:
            fa = FeatureArray(X)
        except Exception:  # noqa: BLE001 - clara() itself reports what is wrong with X
            return False
        shape = (fa.n, fa.d)
    return len(shape) == 2 and int(shape[0]) == int(shape[1])


def _variant_func(name):
    import inspect

    sig = inspect.signature(clara)
    sig = sig.replace(parameters=[p for p in sig.parameters.values() if p.name != "variant"])
    accepted = set(sig.parameters)

    def method(X_or_D, k, **options):
        if "variant" in options:
            raise InvalidParameterError(f"method {name!r} fixes variant={name!r}; use method='clara' with variant=")
        unknown = sorted(set(options) - accepted)
        if unknown:
            raise InvalidParameterError(
                f"method {name!r} does not take {unknown}; accepted options: {sorted(accepted - {'X_or_D', 'k'})}"
            )
        if "precomputed" not in options and "metric" not in options and _square_undecided(X_or_D):
            # a METHODS entry takes a dissimilarity D, like every other method: a square input
            # that nothing marks as features is a matrix here (features need metric= or
            # precomputed=False); a non-square one can only be features
            options["precomputed"] = True
        return clara(X_or_D, k, variant=name, **options)

    method.__name__ = name
    method.__qualname__ = name
    method.__signature__ = sig  # what the CLI and KMedoids check options against
    method.__doc__ = (
        f"``clara(X_or_D, k, variant={name!r}, ...)``; see :func:`clara` for the options.  As a "
        ":data:`~chunked_medoids.METHODS` entry it takes a dissimilarity like every method: "
        "without ``metric=`` or ``precomputed=``, a square input is a matrix "
        "(``precomputed=True``) and a non-square one features; with ``metric=`` or "
        "``precomputed=`` it follows :func:`clara`'s rule."
    )
    return method


fastclara = _variant_func("fastclara")
fasterclara = _variant_func("fasterclara")
classic_clara = _variant_func("clara")

register_method("clara", classic_clara, family="sampling", default_init=None,
                description="CLARA: PAM+BUILD on samples of 40+2k, best full-data loss (classic; variant= selects others)")
register_method("fastclara", fastclara, family="sampling", default_init=None,
                description="FastCLARA: FastPAM2+LAB on samples sized from the memory budget")
register_method("fasterclara", fasterclara, family="sampling", default_init=None,
                description="FasterCLARA: FasterPAM on samples sized from the memory budget")
