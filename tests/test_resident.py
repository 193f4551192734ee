"""Resident row stripes (``Engine(resident=...)``, every driver's ``resident=``).

A store that fits the budget is read from storage once per run, not once per pass, locally
and on a cluster; results are identical with and without; a worker that dies loses only
time.  Storage reads are counted at the source (every row a read returns), and on a
cluster by the worker processes' own I/O counters (``/proc/PID/io``).
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import Engine, InvalidParameterError
from chunked_medoids.sources.zarr_store import ZarrSource


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    rng = np.random.default_rng(7)
    X = np.concatenate([rng.normal(c, 0.6, size=(150, 3)) for c in range(4)])
    path = str(tmp_path_factory.mktemp("resident") / "D.zarr")
    cm.build_dissimilarity(X, path, metric="euclidean", memory_limit="1MiB")  # several stripes
    return path


class _Counting:
    """Count the bytes every storage read of ZarrSource returns (all instances)."""

    def __init__(self, monkeypatch):
        self.nbytes = 0
        lock = threading.Lock()
        orig_read, orig_take = ZarrSource._read_rows, ZarrSource._take_rows

        def read(src, a, b):
            out = orig_read(src, a, b)
            with lock:
                self.nbytes += out.nbytes
            return out

        def take(src, idx):
            out = orig_take(src, idx)
            with lock:
                self.nbytes += out.nbytes
            return out

        monkeypatch.setattr(ZarrSource, "_read_rows", read)
        monkeypatch.setattr(ZarrSource, "_take_rows", take)


RUNS = {
    "pam": lambda D, **kw: cm.pam(D, 4, max_iter=3, **kw),
    "fastpam1": lambda D, **kw: cm.fastpam1(D, 4, init="build", max_iter=5, **kw),
    "fastpam2": lambda D, **kw: cm.fastpam2(D, 4, init="build", max_iter=5, **kw),
    "alternating": lambda D, **kw: cm.alternating(D, 4, init="build", **kw),
    "build": lambda D, **kw: cm.build(D, 4, **kw),
    "lab": lambda D, **kw: cm.lab(D, 4, random_state=3, **kw),
    "dynmsc": lambda D, **kw: cm.dynmsc(D, 5, kmin=2, **kw),
}


def _same(a, b):
    if isinstance(a, np.ndarray):
        np.testing.assert_array_equal(a, b)
        return
    np.testing.assert_array_equal(a.medoids, b.medoids)
    np.testing.assert_array_equal(a.labels, b.labels)
    assert a.loss == b.loss


@pytest.mark.parametrize("name", sorted(RUNS))
def test_results_identical_resident_or_streamed(store, name):
    D = np.asarray(cm.open_dissimilarity(store).read_rows(0, 600))
    want = RUNS[name](D)
    for resident in ("auto", True, False):
        _same(RUNS[name](store, resident=resident, memory_limit="16MiB"), want)


def test_silhouette_identical_resident_or_streamed(store):
    labels = cm.fastpam2(store, 4, init="build").labels
    ref = cm.silhouette(store, labels, resident=False)
    assert cm.silhouette(store, labels, resident=True) == ref


def test_build_and_fastpam2_read_the_store_once(store, monkeypatch):
    """BUILD + 5 FastPAM2 iterations: the store is read once (plus the swapped-in rows)
    with resident stripes, and once per pass without."""
    nbytes = cm.open_dissimilarity(store).nbytes
    counts = {}
    for resident in (True, False):
        c = _Counting(monkeypatch)
        res = cm.fastpam2(store, 4, init="build", max_iter=5, resident=resident, memory_limit="16MiB")
        counts[resident] = c.nbytes
        monkeypatch.undo()
    assert res.n_iter >= 2
    assert counts[True] <= 1.5 * nbytes, counts
    # streamed: BUILD's k passes and one per iteration
    assert counts[False] >= (4 + res.n_iter) * nbytes, counts


def test_auto_holds_only_what_fits_half_the_budget(store, caplog):
    import logging

    src = cm.open_dissimilarity(store)
    with caplog.at_level(logging.INFO, logger="chunked_medoids"):
        small = Engine(memory_limit=4 * src.nbytes)
        assert small.residency(src).held
        tight = Engine(memory_limit=int(1.5 * src.nbytes))
        assert not tight.residency(src).held
    msgs = " ".join(r.getMessage() for r in caplog.records)
    assert "read once and held for the run" in msgs and "streamed from storage each pass" in msgs
    assert "exceeds half the budget" in msgs
    # True holds up to the whole budget
    assert Engine(memory_limit=int(1.5 * src.nbytes), resident=True).residency(src).held


def test_in_memory_and_features_sources_hold_nothing(rng):
    D = np.abs(rng.normal(size=(30, 30)))
    D = D + D.T
    np.fill_diagonal(D, 0)
    eng = Engine(resident=True)
    assert not eng.residency(cm.open_dissimilarity(D)).held
    assert not eng.residency(cm.from_features(rng.normal(size=(30, 2)))).held


def test_memmap_is_held(tmp_path, rng):
    D = np.abs(rng.normal(size=(40, 40)))
    D = D + D.T
    np.fill_diagonal(D, 0)
    path = tmp_path / "D.npy"
    np.save(path, D)
    mm = np.load(path, mmap_mode="r")
    assert Engine().residency(cm.open_dissimilarity(mm)).held


def test_resident_true_that_cannot_fit_is_refused(store):
    with pytest.raises(InvalidParameterError, match="memory_limit"):
        cm.fastpam2(store, 3, resident=True, memory_limit="64KiB")


@pytest.mark.parametrize("bad", ["yes", 1, None, "Auto"])
def test_bad_resident_value(store, bad):
    with pytest.raises(InvalidParameterError, match="resident must be"):
        cm.fastpam1(store, 3, resident=bad)


def test_resident_with_engine_is_an_error(store):
    with pytest.raises(InvalidParameterError, match="resident"):
        cm.fastpam1(store, 3, engine=Engine(), resident=False)


def _rchar(pid):
    with open(f"/proc/{pid}/io") as fh:
        for line in fh:
            if line.startswith("rchar:"):
                return int(line.split()[1])
    raise AssertionError("no rchar")


def _store_bytes(path):
    return sum(os.path.getsize(os.path.join(d, f)) for d, _, fs in os.walk(path) for f in fs)


@pytest.mark.distributed
@pytest.mark.skipif(not os.path.exists("/proc/self/io"), reason="needs Linux /proc/PID/io")
def test_cluster_reads_each_stripe_once_and_survives_a_killed_worker(store):
    """On a 2-worker cluster BUILD + FastPAM2 read the store about once with resident
    stripes (the workers' own read counters), far more without; a worker SIGKILLed
    mid-run loses its stripes, which are re-read elsewhere, with identical results."""
    from distributed import Client, LocalCluster

    D = np.asarray(cm.open_dissimilarity(store).read_rows(0, 600))
    want = cm.fastpam2(D, 4, init="build", max_iter=5)
    on_disk = _store_bytes(store)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        cm.fastpam2(store, 4, init="build", max_iter=1, client=client, resident=False)  # warm-up:
        read = {}  # imports and numba caches are read by the workers' first run
        for resident in (True, False):
            pids = list(client.run(os.getpid).values())
            before = sum(_rchar(p) for p in pids)
            got = cm.fastpam2(store, 4, init="build", max_iter=5, client=client, resident=resident)
            read[resident] = sum(_rchar(p) for p in pids) - before
            _same(got, want)
        assert read[True] <= 1.5 * on_disk + (4 << 20), (read, on_disk)  # + imports, logs
        assert read[False] >= 4 * on_disk, (read, on_disk)

        pids = list(client.run(os.getpid).values())
        killer = threading.Timer(1.0, os.kill, args=(pids[0], signal.SIGKILL))
        killer.start()
        got = cm.fastpam2(store, 4, init="build", max_iter=5, client=client, resident=True)
        killer.join()
        _same(got, want)


def test_cli_resident_flag(store, tmp_path, capsys):
    from chunked_medoids import cli

    outs = {}
    for flag in ("yes", "no", "auto"):
        out = tmp_path / flag
        assert cli.main(["fit", store, "--precomputed", "-k", "3", "--method", "fastpam2", "--init", "build",
                         "--resident", flag, "-o", str(out), "-v"]) == 0
        err = capsys.readouterr().err
        assert ("streamed from storage each pass" in err) == (flag == "no"), err
        outs[flag] = np.load(out / "medoids.npy")
    np.testing.assert_array_equal(outs["yes"], outs["no"])
    np.testing.assert_array_equal(outs["auto"], outs["no"])
    assert cli.main(["dynmsc", store, "--precomputed", "--kmax", "4", "--resident", "no"]) == 0
    assert cli.main(["clara", store, "--precomputed", "-k", "3", "--resident", "no"]) == 2  # not a clara option
    assert "--resident" in capsys.readouterr().err


def test_walk_actors_take_the_stripes_build_held(tmp_path):
    """FasterPAM after a BUILD init on a 2-worker cluster: the walk's actors copy their rows
    from the stripes BUILD left on the workers (Engine.held_stripes) instead of reading the
    store again -- the workers read the store about once in all -- with the identical
    result; a raw zarr store's actors map their rows instead (no copy at all)."""
    from distributed import Client, LocalCluster

    rng = np.random.default_rng(8)
    X = np.concatenate([rng.normal(c, 0.6, size=(150, 3)) for c in range(4)])
    h5 = cm.build_dissimilarity(X, str(tmp_path / "D.h5"), metric="euclidean", memory_limit="1MiB")
    raw = cm.build_dissimilarity(X, str(tmp_path / "D.zarr"), metric="euclidean", memory_limit="1MiB")
    n = X.shape[0]
    want = cm.fasterpam(h5, 4, init="build", num_workers=1)
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=":0",
                      silence_logs=50) as cluster, Client(cluster) as client:
        cm.fasterpam(h5, 4, init="build", client=client)  # warm-up: imports, numba caches
        pids = list(client.run(os.getpid).values())
        before = sum(_rchar(p) for p in pids)
        got = cm.fasterpam(h5, 4, init="build", client=client)
        read = sum(_rchar(p) for p in pids) - before
        _same(got, want)
        info = got.distributed
        assert info["held_bytes"] == n * n * 4, info["held_bytes"]  # every row handed over
        assert sum(a["held_bytes_in"] for a in info["actors"]) == n * n * 4
        assert read <= 1.5 * os.path.getsize(tmp_path / "D.h5") + (4 << 20), read  # BUILD's read only
        got = cm.fasterpam(raw, 4, init="build", client=client)
        _same(got, want)
        assert got.distributed["held_bytes"] == 0
        assert sum(a["mapped_bytes"] for a in got.distributed["actors"]) >= n * n * 4
