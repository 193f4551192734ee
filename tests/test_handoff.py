"""The spin hand-off of speculative batches (``_kernels/handoff.py``): a batch posted with a
release store is seen whole by the helper's acquire load, every generation is served
exactly once and in order, and every wait is bounded."""

from __future__ import annotations

import threading

import numpy as np
from numba import njit

from chunked_medoids._kernels.handoff import STOP, all_done, finish, next_batch, post


@njit(nogil=True)
def _consumer(ctl, done, payload, seen, me, spins):
    """A helper serving batches: records ``payload[lo] * 3 + hi`` for each generation, in
    the order served; returns 1 on STOP, 0 after ``spins`` idle checks."""
    gen = done[me]
    while True:
        g = next_batch(ctl, gen, spins)
        if g == gen:
            return 0
        if g < 0:
            return 1
        seen[g] = payload[ctl[1]] * 3 + ctl[2]
        gen = g
        finish(done, me, g)


def _serve(ctl, done, payload, seen, me, spins, idle):
    while _consumer(ctl, done, payload, seen, me, spins) == 0:
        idle.append(1)


def test_every_batch_is_served_once_in_order_with_its_payload():
    batches = 3000
    ctl = np.zeros(3, np.int64)
    done = np.zeros(3, np.int64)
    payload = np.zeros(batches + 1, np.int64)
    seen = [np.full(batches + 1, -1, np.int64) for _ in range(3)]
    idle = []
    threads = [threading.Thread(target=_serve, args=(ctl, done, payload, seen[t], t, 1 << 10, idle))
               for t in (1, 2)]
    for th in threads:
        th.start()
    try:
        for g in range(1, batches + 1):
            payload[g] = 1000 + g  # written before the release store of the generation
            post(ctl, g, 7 * g, g)
            while not all_done(done, g, 1 << 10):
                pass
            for t in (1, 2):  # both helpers finished g, and saw its payload
                assert done[t] == g and seen[t][g] == (1000 + g) * 3 + 7 * g
    finally:
        post(ctl, 0, 0, STOP)
        for th in threads:
            th.join(10)
    assert not any(th.is_alive() for th in threads)
    for t in (1, 2):
        np.testing.assert_array_equal(seen[t][1:], (1000 + np.arange(1, batches + 1)) * 3 + 7 * np.arange(1, batches + 1))


def test_waits_are_bounded():
    ctl = np.zeros(3, np.int64)
    done = np.zeros(2, np.int64)
    assert next_batch_call(ctl, 0, 50) == 0  # nothing posted: back after the spins
    post(ctl, 4, 9, 1)
    assert next_batch_call(ctl, 0, 50) == 1 and ctl.tolist() == [1, 4, 9]
    assert not all_done(done, 1, 50)  # the helper has not finished generation 1
    done[1] = 1
    assert all_done(done, 1, 50)
    assert all_done(np.zeros(1, np.int64), 5, 1)  # no helpers: nothing to wait for
    post(ctl, 0, 0, STOP)
    assert next_batch_call(ctl, 1, 50) == STOP


@njit
def next_batch_call(ctl, gen, spins):
    return next_batch(ctl, gen, spins)
