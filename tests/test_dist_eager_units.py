"""Unit checks of the distributed eager walk that need no cluster (``_dist_eager.py``)."""

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import _dist_eager
from chunked_medoids._dist_eager import ORDER_GRANULE, check_resident, ownership_granule

from .conftest import random_symmetric


class _Src:
    def __init__(self, n, kind, block_rows):
        self.n, self.kind, self.block_rows = n, kind, block_rows


@pytest.mark.parametrize("value,expected", [("auto", "auto"), (True, True), (False, False),
                                            (np.bool_(True), True)])
def test_check_resident_accepts(value, expected):
    assert check_resident(value) == expected


@pytest.mark.parametrize("value,error", [("yes", cm.InvalidParameterError), (1, cm.InvalidParameterError),
                                         (None, cm.InvalidParameterError)])
def test_bad_resident_is_a_typed_error_naming_it(value, error, rng):
    D = random_symmetric(20, rng)
    for func in (cm.fasterpam, cm.fastermsc):
        with pytest.raises(error, match="resident"):
            func(D, 3, resident=value)


def test_resident_never_changes_the_local_result(rng, tmp_path):
    D = cm.build_dissimilarity(rng.normal(size=(90, 2)), str(tmp_path / "D.zarr"), metric="euclidean")
    ref = cm.fasterpam(D, 4, random_state=0)
    for resident in ("auto", True, False):
        got = cm.fasterpam(D, 4, random_state=0, resident=resident)
        np.testing.assert_array_equal(got.medoids, ref.medoids)
        assert got.loss == ref.loss and got.distributed is None


@pytest.mark.parametrize("n,workers", [(600, 1), (600, 3), (24000, 2), (10**6, 256), (300, 8)])
@pytest.mark.parametrize("kind,chunk", [("zarr", 174), ("hdf5", 43), ("zarr", 4000), ("numpy", 699),
                                        ("features", 64)])
def test_ownership_granule_rules(n, workers, kind, chunk):
    g = ownership_granule(_Src(n, kind, chunk), workers)
    assert g >= 1
    if kind in _dist_eager.CHUNKED_KINDS:
        assert g % chunk == 0  # every chunk decoded by exactly one worker
        assert g <= max(chunk, _dist_eager.GRANULE_CAP)
    else:
        assert g % ORDER_GRANULE == 0 and g <= _dist_eager.GRANULE_CAP
    if g > (chunk if kind in _dist_eager.CHUNKED_KINDS else ORDER_GRANULE):
        assert -(-n // g) >= 4 * workers  # grown only while every worker keeps four granules


def _actor_payload(src, st, order, workers=2):
    from chunked_medoids.algorithms.fasterpam import _replica

    return {"method": "fasterpam", "source": src, "order": order, "granule": 64, "granules": np.arange(0, 11, 2),
            "state": _replica(st), "params": {"tol": 0.0, "w": st.w, "weighted": st.weighted, "fused": True,
                                              "applied": 0},
            "resident": False, "budget": 1 << 26, "threads": 1, "workers": workers}


@pytest.mark.parametrize("shuffled", [False, True])
def test_prefetched_rows_walk_a_run_bitwise_like_the_fused_kernel(shuffled):
    """An actor that computed a run's rows ahead (``prefetch``, while another actor walked)
    evaluates them with the stored kernel: the same swaps, positions and replica as the
    fused kernel computing them on the fly."""
    from chunked_medoids._dist_eager import EagerActor
    from chunked_medoids.algorithms._common import SwapCaches

    X = np.random.default_rng(3).normal(size=(700, 3))
    src = cm.from_features(X, metric="euclidean", dtype="float32")
    st = SwapCaches(src, np.array([1, 2, 3, 4, 5]), None)
    order = np.random.default_rng(0).permutation(700) if shuffled else None
    fused, pre = EagerActor(_actor_payload(src, st, order)), EagerActor(_actor_payload(src, st, order))
    pre.prefetch(100, 700)
    pre._pre_thread.join()
    a, b = fused.step([], 50, 700, 0), pre.step([], 50, 700, 0)
    assert pre.stats["prefetched_rows"] == 600 and pre.stats["evaluated_prefetched"] > 500
    assert fused.stats["evaluated_prefetched"] == 0
    assert len(a[0]) >= 5 and [h[:3] for h in a[0]] == [h[:3] for h in b[0]]
    assert a[1:4] == b[1:4]
    for key, value in fused.state().items():
        np.testing.assert_array_equal(pre.state()[key], value)


def test_stop_flag_cuts_a_parallel_batch_after_the_front():
    """``stop_at(batch, p)`` (an async actor method) ends the batch ``batch`` at the actor's
    first look at the flag (every CHECK candidates) from a position >= p, reporting that
    position as ``end`` (all its candidates before it evaluated); a stop for another batch
    is ignored."""
    import asyncio

    from chunked_medoids import _dist_eager
    from chunked_medoids._dist_eager import CHECK, EagerActor
    from chunked_medoids.algorithms._common import SwapCaches

    X = np.random.default_rng(4).normal(size=(700, 3))
    src = cm.from_features(X, metric="euclidean", dtype="float32")
    med = cm.fasterpam(src, 5, random_state=0).medoids  # converged: no candidate is accepted
    full = EagerActor(_actor_payload(src, SwapCaches(src, med, None), None))
    ref = full.step([], 0, 700, None, 7)
    assert ref[0] == [] and ref[1] == 700 and ref[5] == full.own_pos.shape[0]
    cut = EagerActor(_actor_payload(src, SwapCaches(src, med, None), None))
    asyncio.run(cut.stop_at(3, 1))  # another batch: ignored
    asyncio.run(cut.stop_at(7, 300))
    got = cut.step([], 0, 700, None, 7)
    own = cut.own_pos
    looked = -(-int(np.searchsorted(own, 300)) // CHECK) * CHECK  # the first look from a position >= 300
    assert 0 < looked < own.shape[0] and _dist_eager.CHECK == CHECK
    assert got[0] == [] and got[1] == int(own[looked]) and got[5] == looked
    assert cut.stats["stopped"] == 1 and full.stats["stopped"] == 0


@pytest.mark.skipif(not __import__("sys").platform.startswith("linux"), reason="mapping is Linux-only")
def test_shared_rows_actor_walks_any_run_and_quiet_ends_it(tmp_path):
    """An actor sharing a raw store's rows (``shared``: every chunk mapped, only its own
    checked) walks a run across every granule; ``quiet=q`` ends a run once q positions passed
    without a swap, and walking on from there gives the same swaps, positions and replica as
    the uncut run; swaps reach it without rows."""
    from chunked_medoids._dist_eager import EagerActor
    from chunked_medoids.algorithms._common import SwapCaches
    from chunked_medoids.algorithms.fasterpam import _replica

    X = np.random.default_rng(5).normal(size=(500, 3))
    src = cm.build_dissimilarity(X, str(tmp_path / "D.zarr"), metric="euclidean", block_rows=50)

    def actor(med, a=0):
        st = SwapCaches(src, np.asarray(med), None)
        return EagerActor({"method": "fasterpam", "source": src, "order": None, "granule": 100,
                           "granules": np.arange(a, 5, 2), "state": _replica(st),
                           "params": {"tol": 0.0, "w": st.w, "weighted": st.weighted, "fused": False, "applied": 0},
                           "resident": True, "budget": 1 << 26, "threads": 1, "workers": 2, "shared": True,
                           "verify": [(g * 100, g * 100 + 100) for g in range(a, 5, 2)]})

    whole, cut = actor([1, 2, 3, 4, 5]), actor([1, 2, 3, 4, 5])
    for act in (whole, cut):
        nbytes, _, ok = act.load()
        assert ok and (act.vrow >= 0).all() and nbytes == 300 * 500 * 4  # 3 granules of 100 rows checked
    ref = whole.step([], 0, 500, 0)
    assert len(ref[0]) >= 3 and ref[1] == 500  # every position walked, the other actor's granules too
    hits, i, since, q, calls = [], 0, 0, 30, 0
    while i < 500:
        h, end, since, *_ = cut.step([], i, 500, since, -1, q)
        hits += h
        assert end == 500 or since >= q  # cut only after q quiet positions
        i, calls = end, calls + 1
    assert calls > 1
    assert [x[:3] for x in hits] == [x[:3] for x in ref[0]] and since == ref[2]
    for key, value in whole.state().items():
        np.testing.assert_array_equal(cut.state()[key], value)
    # the other actor gets those swaps without rows and ends with the same replica
    other = actor([1, 2, 3, 4, 5], a=1)
    other.load()
    other.step([(s + 1, x[1], x[2], None) for s, x in enumerate(ref[0])], 0, 0, None, 1)
    for key, value in whole.state().items():
        np.testing.assert_array_equal(other.state()[key], value)
