"""Full passes over a features source through the fused kernels (issue 16).

A block-parallel pass normally maps a block function over the row blocks of D
(:meth:`~chunked_medoids.Engine.map_blocks`: each task reads ``D[start:stop]`` and reduces
it).  When D is computed on the fly from features held in memory (the source offers a
``fused_bundle()``), reading the rows would compute them into blocks only for the kernel to
read them again; the fused kernels of :mod:`chunked_medoids._kernels.fused_passes` compute
each row tile by tile and consume it in the same loop.  :func:`fused_pass` runs such a pass:
the same blocks, as independent tasks (:meth:`~chunked_medoids.Engine.map_tasks`, results
in block order), each task calling ``kernel_fn(F, S, start, stop, state)`` with the bundle
and its own scratch.  The results are bitwise those of the stored pass.

Drivers call :func:`fused_ok` to choose (the source's ``prefer_fused()``: it has a bundle and
its features are narrow enough for the fused kernels to win).  On a ``distributed`` client the tasks run on the
workers: the source travels in the task state (X pickles with it) and each worker prepares
its features once per pass.
"""

from __future__ import annotations

from .._errors import DissimilarityError
from .._kernels.fused import make_scratch, make_thresholds


def fused_ok(source, engine, *, cluster: bool = True) -> bool:
    """Whether the passes over ``source`` can run fused on ``engine`` (``cluster=False``:
    only on local threads)."""
    if not cluster and getattr(engine, "client", None) is not None:
        return False
    prefer = getattr(source, "prefer_fused", None)
    return prefer is not None and bool(prefer())


def thresholds(source, values):
    """The monotone-metric thresholds of ``values`` (``ds`` or ``dn``) for the fused kernels."""
    return make_thresholds(source.fused_bundle(), values)


def report_bad_rows(source, start, stop):
    """A fused kernel met a non-finite distance in the rows ``start..stop-1``: let the source
    raise its own error naming the entry (the rows are recomputed one by one)."""
    for j in range(start, stop):
        source.read_rows(j, j + 1)
    raise DissimilarityError(f"a distance computed on the fly is not finite (rows {start}..{stop - 1})")


def _task(item, state):
    start, stop = item
    source = state["_source"]
    F = source.fused_bundle()
    S = make_scratch(source.n, source.dtype, F[6])
    result = state["_kernel"](F, S, start, stop, state)
    if S[5][0]:
        report_bad_rows(source, start, stop)
    return result


def fused_pass(engine, source, kernel_fn, state, *, desc, blocks=None, should_stop=None):
    """``kernel_fn(F, S, start, stop, state)`` over the row blocks, results in block order.

    Parameters
    ----------
    engine : Engine
    source : FeatureSource
        A source with :func:`fused_ok`.
    kernel_fn : callable
        Module-level function calling a fused kernel for the candidates ``start..stop-1``.
    state : dict
        Broadcast state (passed by reference to the threads).
    desc : str
        Name of the pass.
    blocks : list of (start, stop), optional
        Default: ``engine.blocks(source)`` (the blocks :meth:`~chunked_medoids.Engine.map_blocks`
        would read).
    should_stop : callable, optional
        As for :meth:`~chunked_medoids.Engine.map_tasks` (raises ``PassStopped``).

    Returns
    -------
    list
    """
    blocks = engine.blocks(source) if blocks is None else blocks
    st = dict(state)
    st["_source"] = source
    st["_kernel"] = kernel_fn
    return engine.map_tasks(_task, [(int(a), int(b)) for a, b in blocks], st, desc=desc,
                            should_stop=should_stop)


def msc_evaluator(source, engine, st, tol, eps_abs, P, loss_box):
    """FasterMSC's ``evaluate`` for :func:`~chunked_medoids.algorithms._eager.eager_passes`
    with ``rows=False`` on the caches ``st`` (``_MSCState``), or None when the walk must
    stream rows (see :func:`fused_ok`)."""
    if not fused_ok(source, engine, cluster=False):  # a cluster's eager walk is the engine's
        return None
    from .._kernels.fused_passes import fastermsc_fused, msc_thresholds

    F = source.fused_bundle()
    S = make_scratch(source.n, source.dtype, F[6])
    H = msc_thresholds(F, st.d3, source.dtype)

    def evaluate(block, start, visit, cand, counters):
        stop = start + cand.shape[0]
        consumed = fastermsc_fused(F, S, H, start, stop, st.M, st.medoids, st.is_medoid, st.d1, st.d2, st.d3,
                                   st.n1, st.n2, st.n3, st.R, st.w, st.weighted, tol, eps_abs, P, counters,
                                   loss_box)
        if S[5][0]:
            report_bad_rows(source, start, stop)
        st.L = float(loss_box[0])
        return consumed

    return evaluate
