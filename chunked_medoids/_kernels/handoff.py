"""Spin hand-off of the speculative FasterPAM batches between the threads of one walk.

Pure numba, numpy in / numpy out.

A batch of the interleaved speculation (``algorithms/fasterpam.py``, ``_Speculator``) is
short: at k = 100 on n = 20000 points there are hundreds per pass, each a few hundred
microseconds of work per thread.  Handing each to a pool thread through a future costs
about 100 µs of wake-ups (a sleeping thread is woken by the kernel, on a VM through the
hypervisor), as much as the batch itself.  So for the whole of a walk's block each helper
thread stays inside one numba call (its *serve loop*: :func:`~.swap.strided_helper` and its
float16 and fused twins), spinning on a shared control array until the calling thread
posts the next batch, and the calling thread spins until every helper has finished it.

``ctl`` (int64, 3): ``[generation, lo, hi]``; the batch's loss is ``tdbox[0]`` (float64).
``done`` (int64, one entry per thread): the last generation each helper finished.

* The caller writes ``lo, hi`` (and the loss, the shared ``hits``) and publishes the batch
  with a release store of its generation (:func:`post`), or :data:`STOP`.
* A helper's acquire load that reads the new generation (:func:`next_batch`) therefore
  sees those writes, and the caches the caller changed since the previous batch (a swap
  is only ever applied while every helper is between batches).
* The helper evaluates its share, then release-stores the generation into its ``done``
  entry (:func:`finish`); the caller's acquire loads (:func:`all_done`) see its results.

Every wait is bounded: after ``spins`` checks without news a helper returns to Python
(which naps briefly and calls it again, so a helper does not burn its core through a
long sequential stretch of the walk), and :func:`all_done` returns False (so the caller
can notice a helper that failed).
"""

from __future__ import annotations

from numba import njit

from .simd import load_acquire, spin_pause, store_release

#: the generation that tells the helpers to return.
STOP = -1
#: checks of the control array between returns to Python (with :func:`~.simd.spin_pause`
#: between checks: 3 ms of idle spinning at 12.6 ns per check measured here, more where
#: ``pause`` is slower).
SPINS = 1 << 18
#: the bound when a walk has more threads than usable cores: a spinning thread would hold a
#: core another thread of the walk needs, so the waits give up almost at once (the helpers
#: nap, the caller yields) and the hand-off costs about what a future's did.
OVERSUBSCRIBED_SPINS = 64


@njit(nogil=True, cache=True)
def post(ctl, lo, hi, gen):
    """Publish batch ``[lo, hi)`` as generation ``gen`` (or :data:`STOP`)."""
    ctl[1] = lo
    ctl[2] = hi
    store_release(ctl, 0, gen)


@njit(nogil=True, cache=True, inline="always")
def next_batch(ctl, gen, spins):
    """The generation in ``ctl`` once it differs from ``gen`` (a new batch or
    :data:`STOP`), or ``gen`` after ``spins`` checks without a change."""
    for _ in range(spins):
        g = load_acquire(ctl, 0)
        if g != gen:
            return g
        spin_pause()
    return gen


@njit(nogil=True, cache=True, inline="always")
def finish(done, me, gen):
    """Helper ``me`` has finished generation ``gen``: its results are published."""
    store_release(done, me, gen)


@njit(nogil=True, cache=True)
def all_done(done, gen, spins):
    """Whether every helper (``done[1:]``) finished generation ``gen``, waiting up to
    ``spins`` checks per helper."""
    for t in range(1, done.shape[0]):
        ok = False
        for _ in range(spins):
            if load_acquire(done, t) == gen:
                ok = True
                break
            spin_pause()
        if not ok:
            return False
    return True
