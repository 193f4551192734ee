"""FasterPAM and FasterMSC walking on the workers of a real cluster (issue 18, part 1).

The distributed walk (``chunked_medoids/_dist_eager.py``) must give bitwise the result of
the local sequential walk -- medoids, labels, loss, loss history, swaps, passes -- for 1, 2
and 3 worker processes, both candidate orders, zarr / HDF5 stores and features computed on
the fly; also after a worker process is SIGKILLed mid-pass and after a checkpointed run is
interrupted and resumed (on the cluster or locally).  Real ``LocalCluster`` processes, no
mocks.
"""

import json
import logging
import math
import os
import signal

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids.checkpoint import CheckpointInterrupt, install_signal_handlers
from tests._cluster import (
    assert_same_fit,
    blobs,
    connect_process_cluster,
    local_process_cluster,
    start_process_cluster,
    stop_processes,
)

pytestmark = pytest.mark.distributed

N, K = 600, 6
ORDERS = ("natural", "shuffle")
KINDS = ("zarr", "hdf5", "features")


@pytest.fixture(scope="module")
def X():
    return blobs(N)


@pytest.fixture(scope="module")
def sources(X, tmp_path_factory):
    d = tmp_path_factory.mktemp("dist_eager")
    return {
        "zarr": cm.build_dissimilarity(X, str(d / "D.zarr"), metric="euclidean", memory_limit=2**18),
        "hdf5": cm.build_dissimilarity(X, str(d / "D.h5"), metric="euclidean", memory_limit=2**18),
        "features": cm.from_features(X, metric="euclidean", dtype="float32"),
    }


@pytest.fixture(scope="module", params=[1, 2, 3], ids=lambda w: f"W{w}")
def client(request):
    cluster, c = local_process_cluster(request.param)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize("order", ORDERS)
@pytest.mark.parametrize("kind", KINDS)
def test_fasterpam_on_workers_equals_sequential(kind, order, sources, client, monkeypatch):
    from chunked_medoids import _dist_eager

    if kind == "features":  # any worker walks any run: cut runs short so that the walk mixes both kinds
        monkeypatch.setattr(_dist_eager, "MAX_RUN", 100)
    # each actor holds its own granules, as on workers of several hosts (on one host they
    # share a raw store's rows: tests/test_dist_shared_rows.py)
    monkeypatch.setattr(_dist_eager, "SHARE_ROWS", False)
    src = sources[kind]
    ref = cm.fasterpam(src, K, random_state=1, order=order, num_workers=1)
    got = cm.fasterpam(src, K, random_state=1, order=order, client=client)
    assert_same_fit(got, ref)
    info = got.distributed
    assert info["workers"] == len(client.nthreads())
    assert info["rows"] == ("computed" if kind == "features" else "resident")
    # a raw zarr store's rows are mapped from the page cache (sources/_mapped.py), whole
    # chunks of them; HDF5 rows are read into the actors' buffers
    mapped = sum(a["mapped_bytes"] for a in info["actors"])
    if kind == "zarr":
        assert src.n * src.n * 4 <= mapped < (src.n + src.block_rows) * src.n * 4
    else:
        assert mapped == 0
    assert info["direct_calls"]  # the actor calls went straight to the workers
    assert sum(info["pass_round_trips"]) == info["round_trips"] and len(info["pass_round_trips"]) == got.n_iter
    assert info["sequential_runs"] + info["parallel_batches"] == info["round_trips"]
    if info["workers"] > 1:  # dense swaps walked in runs on one worker, the rest in batches on all
        assert info["sequential_runs"] > 0 and info["parallel_batches"] > 0, info
    assert ref.distributed is None


@pytest.mark.parametrize("kind", KINDS)
def test_fastermsc_on_workers_equals_sequential(kind, sources, client):
    src = sources[kind]
    ref = cm.fastermsc(src, K, random_state=2, num_workers=1)
    got = cm.fastermsc(src, K, random_state=2, client=client)
    assert_same_fit(got, ref)
    assert got.score == ref.score and got.score_history == ref.score_history
    assert got.distributed["rows"] == "resident"


@pytest.mark.parametrize("kind", KINDS)
def test_dynmsc_k_steps_on_workers_equal_sequential(kind, sources, client):
    """DynMSC's FasterMSC walk of every k runs on the workers (the actors keep their rows
    and get the (k-1)-medoid state between steps): bitwise the local sequential run."""
    src = sources[kind]
    ref = cm.dynmsc(src, 6, kmin=2, num_workers=1)
    got = cm.dynmsc(src, 6, kmin=2, client=client)
    assert_same_fit(got, ref)
    assert got.scores == ref.scores and got.losses == ref.losses and got.score == ref.score
    for kk, med in ref.medoids_by_k.items():
        np.testing.assert_array_equal(got.medoids_by_k[kk], med)
    info = got.distributed
    assert ref.distributed is None and info["workers"] == len(client.nthreads())
    assert info["rows"] == "resident"
    # every k-step (k = 6..2) walked on the workers: each ends after n refused candidates
    assert len(info["pass_round_trips"]) == got.n_iter >= 5
    assert sum(a["evaluated"] for a in info["actors"]) >= 5 * N


def test_engine_log_says_the_actors_hold_the_rows(sources, client, caplog):
    """The engine does not claim to hold the stripes the walk's actors hold (after BUILD's
    held stripes are released for the walk)."""
    with caplog.at_level(logging.INFO, logger="chunked_medoids"):
        cm.fasterpam(sources["zarr"], K, init="build", client=client, resident=True)
    lines = [r.getMessage() for r in caplog.records]
    walk = next(i for i, m in enumerate(lines) if m.startswith("fasterpam on "))
    after = [m for m in lines[walk:] if m.startswith("row stripes of the zarr source")]
    assert all("not held by the engine: the eager walk's actors" in m for m in after), after
    assert not any("read once and held" in m for m in lines[walk:])
    assert "resident rows" in lines[walk]


def test_streaming_rows_weights_and_build_init_equal(sources, client):
    """resident=False with a cache of one granule (rows re-read as the walk needs them), a
    weighted run from BUILD: still bitwise the sequential walk."""
    src = sources["zarr"]
    w = np.random.default_rng(0).uniform(0.5, 2.0, N)
    for order in ORDERS:
        ref = cm.fasterpam(src, K, init="build", weights=w, order=order, random_state=4, num_workers=1)
        got = cm.fasterpam(src, K, init="build", weights=w, order=order, random_state=4, client=client,
                           resident=False, memory_limit=2**16)
        assert_same_fit(got, ref)
        assert got.distributed["rows"] == "streamed"


def test_round_trips_follow_swaps_not_n(X, client):
    """A pass costs about one round trip per swap plus log2(n) growing batches."""
    last = {}
    for n in (300, 1200):
        src = cm.from_features(np.tile(X, (2, 1))[:n], metric="euclidean", dtype="float32")
        res = cm.fasterpam(src, K, random_state=0, client=client)
        rts = res.distributed["pass_round_trips"]
        assert res.extra["converged"] and len(rts) == res.n_iter
        bound = (res.n_swap + res.n_iter) * (math.log2(n) + 3)
        assert res.distributed["round_trips"] <= bound, (rts, res.n_swap)
        last[n] = rts[-1]  # the converged pass: no swap
    assert last[1200] <= last[300] + 3 and last[1200] <= 16, last


class _OnSwap(logging.Handler):
    """Calls ``action()`` when the distributed walk logs its ``at``-th swap."""

    def __init__(self, at, action, method="fasterpam"):
        super().__init__(logging.DEBUG)
        self.at, self.action, self.fired, self.method = at, action, False, method

    def emit(self, record):
        if not self.fired and record.getMessage().startswith(f"{self.method} swap {self.at}:"):
            self.fired = True
            self.action()


@pytest.fixture
def on_swap():
    lg = logging.getLogger("chunked_medoids._dist_eager")
    handlers, level = [], lg.level

    def attach(at, action):
        h = _OnSwap(at, action)
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
        handlers.append(h)
        return h

    yield attach
    for h in handlers:
        lg.removeHandler(h)
    lg.setLevel(level)


@pytest.mark.parametrize("kind,order", [("zarr", "natural"), ("features", "shuffle")])
def test_worker_killed_mid_pass_result_identical(kind, order, sources, on_swap):
    """SIGKILL a worker process in the middle of the first pass: its actor is recreated on a
    live worker from the client's replica, and the result is identical."""
    src = sources[kind]
    ref = cm.fasterpam(src, K, random_state=5, order=order, num_workers=1)
    cluster, client = local_process_cluster(3)
    try:
        pids = list(client.run(os.getpid).values())
        h = on_swap(3, lambda: os.kill(pids[0], signal.SIGKILL))
        got = cm.fasterpam(src, K, random_state=5, order=order, client=client)
        assert h.fired
        assert pids[0] not in client.run(os.getpid).values()
    finally:
        client.close()
        cluster.close()
    assert_same_fit(got, ref)
    assert got.distributed["recoveries"] >= 1


@pytest.mark.parametrize("order", ORDERS)
def test_checkpoint_interrupt_resume_distributed_or_local(order, sources, client, on_swap, tmp_path):
    """SIGUSR1 mid-pass on the cluster saves the same RunState the local walk writes; resuming
    on the cluster and resuming locally both give the uninterrupted local result."""
    src = sources["hdf5"]
    opts = dict(random_state=7, order=order, checkpoint_interval=1e9)
    ref = cm.fasterpam(src, K, num_workers=1, **opts)
    install_signal_handlers()
    try:
        ck = tmp_path / "run.ckpt.npz"
        on_swap(4, lambda: os.kill(os.getpid(), signal.SIGUSR1))
        with pytest.raises(CheckpointInterrupt):
            cm.fasterpam(src, K, client=client, checkpoint=ck, **opts)
        with np.load(ck, allow_pickle=False) as z:
            saved = json.loads(str(z["__header__"]))
        copy = tmp_path / "copy.ckpt.npz"
        copy.write_bytes(ck.read_bytes())
        dist = cm.fasterpam(src, K, client=client, checkpoint=ck, **opts)
        local = cm.fasterpam(src, K, num_workers=1, checkpoint=copy, **opts)
    finally:
        install_signal_handlers(())
    assert saved["state"]["pos"] > 0 and not saved["complete"]  # stopped mid-pass
    assert_same_fit(dist, ref)
    assert_same_fit(local, ref)


def test_order_granule_matches_the_shuffled_order():
    from chunked_medoids import _dist_eager
    from chunked_medoids.algorithms import _eager

    assert _dist_eager.ORDER_GRANULE == _eager.GRANULE


@pytest.mark.parametrize("granule", [7, 64, 1000])
def test_result_independent_of_ownership_granule(granule, sources, client, monkeypatch):
    """Any ownership granule (here not multiples of the shuffle granule: runs are short and
    the walk mixes sequential runs and parallel batches differently) gives the same walk."""
    from chunked_medoids import _dist_eager

    monkeypatch.setattr(_dist_eager, "_granule_override", granule)
    for kind, order in (("zarr", "shuffle"), ("features", "natural")):
        ref = cm.fasterpam(sources[kind], K, random_state=8, order=order, num_workers=1)
        got = cm.fasterpam(sources[kind], K, random_state=8, order=order, client=client)
        assert_same_fit(got, ref)
        assert got.distributed["granule"] == granule


def test_workers_with_two_threads_equal_sequential(sources):
    """An actor on a 2-thread worker splits its candidates of a batch over its threads
    (earliest accepted wins): still the sequential walk."""
    from distributed import Client, LocalCluster

    with LocalCluster(n_workers=2, threads_per_worker=2, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        for kind in ("zarr", "features"):
            for order in ORDERS:
                ref = cm.fasterpam(sources[kind], K, random_state=9, order=order, num_workers=1)
                got = cm.fasterpam(sources[kind], K, random_state=9, order=order, client=client)
                assert_same_fit(got, ref)
            ref = cm.fastermsc(sources[kind], K, random_state=9, num_workers=1)
            assert_same_fit(cm.fastermsc(sources[kind], K, random_state=9, client=client), ref)


@pytest.mark.parametrize("method", ["fasterpam", "fastermsc"])
def test_scheduler_lost_mid_walk_typed_error_checkpoint_resumes(method, sources, on_swap, tmp_path, monkeypatch):
    """SIGKILL the scheduler in the middle of a walk on the workers: a SchedulerLostError
    naming the checkpoint comes promptly, the checkpoint saved before is intact, and
    resuming from it (locally) gives the uninterrupted local result."""
    import threading
    import time

    from chunked_medoids import _dist_eager

    # short runs: the walk has round trips left after the kill (the workers of one host
    # share the rows, so a run could otherwise walk the whole first pass at once)
    monkeypatch.setattr(_dist_eager, "MAX_RUN", 50)


    func = getattr(cm, method)
    src = sources["zarr"]
    opts = dict(random_state=11, checkpoint_interval=0)
    ref = func(src, K, num_workers=1, random_state=11)
    sf, sched, workers = start_process_cluster(tmp_path)
    ck = tmp_path / "run.ckpt.npz"
    try:
        client = connect_process_cluster(sf, sched)
        lg = logging.getLogger("chunked_medoids._dist_eager")
        h = _OnSwap(6, lambda: sched.send_signal(signal.SIGKILL), method)
        lg.addHandler(h)
        lg.setLevel(logging.DEBUG)
        outcome = {}

        def fit():
            try:
                outcome["result"] = func(src, K, client=client, checkpoint=ck, **opts)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        runner = threading.Thread(target=fit, daemon=True)
        t_start = time.monotonic()
        runner.start()
        runner.join(timeout=120)
        assert not runner.is_alive(), "the walk hung after the scheduler died"
        lg.removeHandler(h)
        assert h.fired
        waited = time.monotonic() - t_start
        client.close(timeout=5)
    finally:
        stop_processes(sched, workers)
    exc = outcome.get("error")
    assert isinstance(exc, cm.SchedulerLostError), outcome
    assert "lost the Dask scheduler" in str(exc) and "checkpoint" in str(exc)
    assert waited < 90
    print(f"{method}: scheduler lost -> {type(exc).__name__} after {waited:.2f}s")
    with np.load(ck, allow_pickle=False) as z:  # intact: a complete, loadable save of the walk so far
        saved = json.loads(str(z["__header__"]))
    walk = saved["state"] if method == "fasterpam" else saved["state"]["run"]["walk"]
    assert not saved["complete"] and walk["n_swap"] >= 1  # saved mid-walk, after swaps
    got = func(src, K, num_workers=1, checkpoint=ck, **opts)
    assert_same_fit(got, ref)


@pytest.mark.parametrize("method", ["fasterpam", "fastermsc"])
@pytest.mark.parametrize("kind", KINDS)
def test_result_independent_of_run_or_batch_choices(method, kind, sources, client, monkeypatch):
    """Whether a round trip is a sequential run or a parallel batch is chosen from measured
    timings (so it differs from run to run under load): any sequence of choices, here
    seeded random ones, gives bitwise the sequential result."""
    from chunked_medoids import _dist_eager

    src = sources[kind]
    func = getattr(cm, method)
    ref = func(src, K, random_state=2, num_workers=1)
    for seed in (0, 1):
        rng = np.random.default_rng(seed)
        monkeypatch.setattr(_dist_eager.DistributedEagerWalk, "_sequential",
                            lambda self, rng=rng: self.W == 1 or bool(rng.random() < 0.5))
        got = func(src, K, random_state=2, client=client)
        assert_same_fit(got, ref)
