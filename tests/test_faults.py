"""Fault injection: every fault is injected for real and nothing is lost or silently wrong.

* a zarr chunk file deleted -> StoreCorruptionError naming the store and the row range
  (never NaN / -1 / zeros handed to an algorithm); a rebuild repairs exactly that stripe;
* a zarr chunk overwritten / bit-flipped / truncated -> StoreCorruptionError naming the row
  range, the codec error chained;
* an HDF5 file truncated, a dataset missing, an HDF5 chunk damaged -> typed errors;
* disk full (ENOSPC) part way through a build (a zarr store wrapper whose writes fail) ->
  an OSError naming the store and the resume, the store stays incomplete, a rerun completes
  it to the identical matrix;
* two builder processes on one store -> the second is refused (flock), a SIGKILLed
  builder's stale lock does not block the rerun;
* a read-only store directory / checkpoint directory -> PermissionError before any work;
* a distributed worker SIGKILLed mid-fit -> identical result; the scheduler SIGKILLed
  mid-fit -> SchedulerLostError within seconds, and the checkpoint resumes to the
  identical result.
"""

import errno
import logging
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import builder
from chunked_medoids._errors import (
    IncompleteStoreError,
    InvalidParameterError,
    StoreCorruptionError,
    StoreLockedError,
    UnknownNameError,
)
from chunked_medoids._store_meta import read_meta
from chunked_medoids.engine import Engine, SchedulerLostError
from chunked_medoids.sources import open_dissimilarity
from chunked_medoids.sources.features import from_features
from chunked_medoids.sources.memory import NumpySource
from chunked_medoids.sources.zarr_store import ZarrSource
from tests._cluster import connect_process_cluster, start_process_cluster, stop_processes, sub_env

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def X():
    return np.random.default_rng(7).normal(size=(61, 3))


def _full(src):
    return src.read_rows(0, src.n)


def _zmeta(path):
    import zarr

    return read_meta(zarr.open_array(str(path), mode="r").attrs)


# ---------------------------------------------------------------------------------------
# missing and corrupted zarr chunks
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("dtype,metric", [("float32", "euclidean"), ("int32", "manhattan")])
def test_missing_zarr_chunk_is_detected_never_read_as_values(tmp_path, X, dtype, metric):
    Xi = np.round(X * 10) if dtype == "int32" else X
    path = tmp_path / "m.zarr"
    ref = _full(build_and_open(Xi, path, metric, dtype))
    os.remove(path / "c" / "3" / "0")  # the file of stripe 3 (rows 30:40) is lost
    src = open_dissimilarity(path)  # the metadata still claims completeness
    for read in (lambda: src.read_rows(0, src.n), lambda: src.read_rows(35, 36),
                 lambda: src.take_rows([3, 37, 55]), lambda: src.fingerprint()):
        with pytest.raises(StoreCorruptionError, match=r"rows 30:40 is missing") as info:
            read()
        assert str(path) in str(info.value) and "build_dissimilarity" in str(info.value)
    # rows of other chunks still read fine
    np.testing.assert_array_equal(src.read_rows(40, 61), ref[40:])
    # a streaming pass and a whole fit stop with the same error (no NaN / -1 reaches a kernel)
    with pytest.raises(StoreCorruptionError, match="rows 30:40"):
        list(Engine(block_rows=10).iter_blocks(src))
    with pytest.raises(StoreCorruptionError, match="rows 30:40"):
        cm.fasterpam(str(path), 3, random_state=0)
    # inspection mode shows the fill marker, never plausible values
    rows = open_dissimilarity(path, allow_incomplete=True).read_rows(30, 40)
    assert (np.isnan(rows).all() if dtype == "float32" else (rows == -1).all())
    # a rebuild with the same arguments repairs exactly that stripe
    np.testing.assert_array_equal(_full(build_and_open(Xi, path, metric, dtype)), ref)


def build_and_open(X, path, metric="euclidean", dtype="float32", **kw):
    return cm.build_dissimilarity(X, path, metric, dtype=dtype, block_rows=10, **kw)


def _damage(f, how):
    data = f.read_bytes()
    rng = np.random.default_rng(len(data))
    if how == "garbage":
        f.write_bytes(rng.integers(0, 256, len(data), dtype=np.uint8).tobytes())
    elif how == "flip":  # a few bytes in the middle: blosc-lz4 alone would still decode it
        b = bytearray(data)
        mid = len(b) // 2
        for i in range(mid, mid + 8):
            b[i] ^= 0x5A
        f.write_bytes(bytes(b))
    else:  # truncated
        f.write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("compressor", ["default", None, "zstd"])
@pytest.mark.parametrize("how", ["garbage", "flip", "truncated"])
def test_corrupted_zarr_chunk_names_row_range(tmp_path, X, compressor, how):
    path = tmp_path / "c.zarr"
    ref = _full(build_and_open(X, path, compressor=compressor))
    _damage(path / "c" / "4" / "0", how)
    src = open_dissimilarity(path)
    for read in (lambda: src.read_rows(0, src.n), lambda: src.take_rows([1, 44])):
        with pytest.raises(StoreCorruptionError, match=r"chunk holding rows 40:50 cannot be decoded") as info:
            read()
        assert str(path) in str(info.value)
        assert info.value.__cause__ is not None  # the codec's own error, chained
        assert type(info.value.__cause__).__name__ in str(info.value)
    np.testing.assert_array_equal(src.read_rows(0, 40), ref[:40])  # other chunks intact


def test_corrupted_chunk_of_foreign_zarr_store(tmp_path, X):
    """A store not written by the builder (no checksum): undecodable garbage is still named."""
    import zarr
    from zarr.codecs import BloscCodec

    D = from_features(X).read_rows(0, X.shape[0])
    path = tmp_path / "foreign.zarr"
    arr = zarr.create_array(store=str(path), shape=D.shape, chunks=(16, 61), dtype=D.dtype,
                            compressors=[BloscCodec(cname="zstd", clevel=3)], fill_value=0.0)
    arr[:] = D
    _damage(path / "c" / "1" / "0", "garbage")
    with pytest.raises(StoreCorruptionError, match=r"rows 16:32 cannot be decoded \(RuntimeError"):
        open_dissimilarity(path).read_rows(10, 40)


# ---------------------------------------------------------------------------------------
# HDF5
# ---------------------------------------------------------------------------------------
def test_hdf5_truncated_missing_dataset_and_damaged_chunk(tmp_path, X):
    import h5py

    path = tmp_path / "d.h5"
    ref = _full(cm.build_dissimilarity(X, path, block_rows=10))
    # missing dataset: the message lists what is there
    with pytest.raises(UnknownNameError, match=r"'other'.*does not exist.*dissimilarity \(61, 61\)"):
        open_dissimilarity(path, dataset="other")
    # a damaged chunk: the read names the chunk's rows, mid-stream too
    bad = tmp_path / "bad.h5"
    shutil.copy(path, bad)
    with h5py.File(bad, "r") as f:
        d = f["dissimilarity"]
        info = next(d.id.get_chunk_info(i) for i in range(d.id.get_num_chunks())
                    if d.id.get_chunk_info(i).chunk_offset[0] == 20)
    with open(bad, "r+b") as fh:
        fh.seek(info.byte_offset)
        fh.write(np.random.default_rng(0).integers(0, 256, info.size, dtype=np.uint8).tobytes())
    src = open_dissimilarity(bad)
    np.testing.assert_array_equal(src.read_rows(0, 20), ref[:20])
    with pytest.raises(StoreCorruptionError, match=r"d?bad\.h5'?:/?dissimilarity: cannot read the chunk holding rows 20:30"):
        for _ in Engine(block_rows=30).iter_blocks(src):
            pass
    src.close()
    # truncated file (a copy cut in half): refused at open, naming the file
    cut = tmp_path / "cut.h5"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(StoreCorruptionError, match=r"cut\.h5' cannot be opened: it is truncated"):
        open_dissimilarity(cut)
    with pytest.raises(StoreCorruptionError, match="truncated"):
        cm.fasterpam(str(cut), 2)
    # cut before the superblock: not recognisable as HDF5 at all
    empty = tmp_path / "empty.h5"
    empty.write_bytes(b"")
    with pytest.raises(InvalidParameterError, match=r"not an HDF5 file \(0 bytes"):
        open_dissimilarity(empty)


# ---------------------------------------------------------------------------------------
# disk full during a build
# ---------------------------------------------------------------------------------------
def _full_disk_after(n_writes, slow_last=False):
    """A replacement for builder._open_zarr_for_write whose store fails with ENOSPC once
    ``n_writes`` chunk files were written (across all stripe tasks)."""
    import asyncio

    import zarr
    from zarr.storage import LocalStore, WrapperStore

    lock = threading.Lock()
    written = []

    class DiskFullStore(WrapperStore):
        async def set(self, key, value):
            if key.startswith("c/"):
                with lock:
                    if len(written) >= n_writes:
                        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), key)
                    written.append(key)
                    last = len(written) == n_writes
                if last and slow_last:
                    # the last write that fits is slow (a loaded machine): the write failing after
                    # it must not end the build (release its lock, record its stripes) before it lands
                    await asyncio.sleep(0.5)
            await self._store.set(key, value)

    def open_for_write(path):
        return zarr.open_array(store=DiskFullStore(LocalStore(path)), mode="r+")

    return open_for_write, written


def test_disk_full_mid_build_keeps_store_incomplete_and_resumes(tmp_path, X, monkeypatch):
    path = tmp_path / "full.zarr"
    opener, written = _full_disk_after(4, slow_last=True)
    monkeypatch.setattr(builder, "_open_zarr_for_write", opener)
    with pytest.raises(OSError) as info:
        cm.build_dissimilarity(X, path, block_rows=5, num_workers=2)  # 13 stripes
    exc = info.value
    assert exc.errno == errno.ENOSPC and not isinstance(exc, StoreCorruptionError)
    assert str(path) in str(exc) and "rerun build_dissimilarity" in str(exc) and "free some space" in str(exc)
    meta = _zmeta(path)
    assert meta["complete"] is False
    present = builder._zarr_present(str(path), 13)
    assert len(present) == 4 == len(written) and sorted(meta["completed_stripes"]) == present
    with pytest.raises(IncompleteStoreError, match="9 of 13 row stripes"):
        open_dissimilarity(path)
    assert not os.path.exists(str(path) + ".lock")
    # space is back: the rerun computes only the 9 missing stripes, to the identical matrix
    monkeypatch.undo()
    calls = []
    orig = builder._write_zarr_stripe

    def counting(block, start, stop, state):
        calls.append(start)
        return orig(block, start, stop, state)

    monkeypatch.setattr(builder, "_write_zarr_stripe", counting)
    src = cm.build_dissimilarity(X, path, block_rows=5, num_workers=2)
    assert len(calls) == 9 and not set(c // 5 for c in calls) & set(present)
    fresh = cm.build_dissimilarity(X, tmp_path / "fresh.zarr", block_rows=5)
    np.testing.assert_array_equal(_full(src), _full(fresh))
    assert _zmeta(path)["complete"] is True


def test_disk_full_mid_hdf5_build_keeps_store_incomplete_and_resumes(tmp_path, X, monkeypatch):
    """HDF5 stripes are written by the driver (h5py ``write_direct``): fail the 3rd write."""
    import h5py

    path = tmp_path / "full.h5"
    orig = h5py.Dataset.write_direct
    calls = []

    def failing(self, *a, **k):
        calls.append(1)
        if len(calls) >= 3:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        return orig(self, *a, **k)

    monkeypatch.setattr(h5py.Dataset, "write_direct", failing)
    with pytest.raises(OSError) as info:
        cm.build_dissimilarity(X, path, block_rows=10, num_workers=1)
    assert info.value.errno == errno.ENOSPC
    assert f"{path}:dissimilarity" in str(info.value) and "rerun build_dissimilarity" in str(info.value)
    monkeypatch.undo()
    with pytest.raises(IncompleteStoreError, match="5 of 7 row stripes"):
        open_dissimilarity(path)
    src = cm.build_dissimilarity(X, path, block_rows=10)
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, X.shape[0]))


# ---------------------------------------------------------------------------------------
# two concurrent builds
# ---------------------------------------------------------------------------------------
_SLOW_BUILDER = textwrap.dedent("""
    import sys, time
    import numpy as np
    from chunked_medoids import builder
    orig_write, orig_prepare = builder._write_zarr_stripe, builder._prepare
    def prepare(*a, **k):
        print("LOCKED", flush=True)  # called inside the build lock
        return orig_prepare(*a, **k)
    def slow_write(block, start, stop, state):
        time.sleep(0.2)
        return orig_write(block, start, stop, state)
    builder._prepare, builder._write_zarr_stripe = prepare, slow_write
    X = np.load(sys.argv[1])
    builder.build_dissimilarity(X, sys.argv[2], block_rows=2, num_workers=1)
    print("DONE", flush=True)
""")

_PLAIN_BUILDER = textwrap.dedent("""
    import sys
    import numpy as np
    from chunked_medoids import build_dissimilarity, StoreLockedError
    try:
        build_dissimilarity(np.load(sys.argv[1]), sys.argv[2], block_rows=2)
    except StoreLockedError as exc:
        print("REFUSED", exc, flush=True)
        sys.exit(7)
    print("BUILT", flush=True)
""")


@pytest.mark.slow
def test_concurrent_builds_are_refused_and_a_killed_builders_lock_does_not_block(tmp_path, X):
    np.save(tmp_path / "X.npy", X)
    path = tmp_path / "shared.zarr"
    env = sub_env()
    first = subprocess.Popen([sys.executable, "-c", _SLOW_BUILDER, str(tmp_path / "X.npy"), str(path)],
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert first.stdout.readline().strip() == "LOCKED"
        # a second process is refused while the first one builds
        second = subprocess.run([sys.executable, "-c", _PLAIN_BUILDER, str(tmp_path / "X.npy"), str(path)],
                                capture_output=True, text=True, env=env, timeout=60)
        assert second.returncode == 7, second.stderr
        assert "REFUSED" in second.stdout and str(path) in second.stdout and "another process" in second.stdout
        # so is this process
        with pytest.raises(StoreLockedError, match="lock .* is held"):
            cm.build_dissimilarity(X, path, block_rows=2)
        assert first.poll() is None  # the first build was still running all along
        # the first builder dies without cleaning up: its lock file stays, the flock goes
        first.send_signal(signal.SIGKILL)
        first.wait(timeout=30)
    finally:
        if first.poll() is None:
            first.kill()
            first.wait()
    assert os.path.exists(str(path) + ".lock")
    assert not _zmeta(path)["complete"]
    src = cm.build_dissimilarity(X, path, block_rows=2)  # resumes, not blocked
    np.testing.assert_array_equal(_full(src), from_features(X).read_rows(0, X.shape[0]))
    assert not os.path.exists(str(path) + ".lock")


# ---------------------------------------------------------------------------------------
# read-only locations
# ---------------------------------------------------------------------------------------
@pytest.fixture
def make_read_only():
    """Make a directory really read-only, also for root (chmod is ignored for root: use the
    immutable attribute then).  Undone at teardown."""
    undo = []

    def make(path):
        path = str(path)
        os.chmod(path, 0o555)
        undo.append(lambda: os.chmod(path, 0o755))
        if os.access(path, os.W_OK):  # root: permission bits do not apply
            if shutil.which("chattr") is None or subprocess.run(
                    ["chattr", "+i", path], capture_output=True).returncode != 0:
                pytest.skip("cannot make a directory read-only for this user on this file system")
            undo.append(lambda: subprocess.run(["chattr", "-i", path], capture_output=True))
        assert not os.access(path, os.W_OK)
        with pytest.raises(OSError):
            open(os.path.join(path, "probe"), "w").close()

    yield make
    for fn in reversed(undo):
        fn()


def test_read_only_store_location_fails_before_any_work(tmp_path, X, monkeypatch, make_read_only):
    from chunked_medoids.sources import features

    peeks = []
    orig = features.FeatureArray

    def counting(*a, **k):
        peeks.append(1)
        return orig(*a, **k)

    monkeypatch.setattr(features, "FeatureArray", counting)
    ro = tmp_path / "ro"
    ro.mkdir()
    make_read_only(ro)
    for name in ("new.zarr", "new.h5"):
        with pytest.raises(PermissionError, match=r"ro' is not writable; nothing was computed"):
            cm.build_dissimilarity(X, ro / name)
    assert peeks == [] and os.listdir(ro) == []  # X was never even looked at
    # an unfinished store that became read-only: resuming is refused up front as well
    monkeypatch.setattr(features, "FeatureArray", orig)
    path = tmp_path / "half.zarr"
    opener, _ = _full_disk_after(2)
    with monkeypatch.context() as m:
        m.setattr(builder, "_open_zarr_for_write", opener)
        with pytest.raises(OSError):
            cm.build_dissimilarity(X, path, block_rows=10, num_workers=1)
    make_read_only(path)
    monkeypatch.setattr(features, "FeatureArray", counting)
    with pytest.raises(PermissionError, match=r"half\.zarr' is not writable"):
        cm.build_dissimilarity(X, path, block_rows=10)
    assert peeks == []


def test_read_only_complete_store_is_still_clustered(tmp_path, X, make_read_only):
    path = tmp_path / "done.zarr"
    D = _full(cm.build_dissimilarity(X, path, block_rows=10))
    make_read_only(path)
    make_read_only(path / "c")
    ref = cm.fasterpam(D, 3, random_state=1)
    got = cm.fasterpam(str(path), 3, random_state=1)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    assert got.loss == ref.loss


class CountingSource(NumpySource):
    """An in-memory source that counts the rows read through it."""

    def __init__(self, D):
        super().__init__(D)
        self.rows_read = 0

    def _read_rows(self, start, stop):
        self.rows_read += stop - start
        return super()._read_rows(start, stop)


@pytest.mark.parametrize("method", ["fasterpam", "pam", "fastpam2"])
def test_read_only_checkpoint_directory_fails_before_any_pass(tmp_path, X, make_read_only, method):
    ro = tmp_path / "ckpt"
    ro.mkdir()
    make_read_only(ro)
    src = CountingSource(from_features(X).read_rows(0, X.shape[0]))
    with pytest.raises(PermissionError, match=r"ckpt' is not writable"):
        getattr(cm, method)(src, 3, random_state=0, checkpoint=ro / "run.npz", checkpoint_interval=0)
    assert src.rows_read <= 3  # at most the fingerprint's sample rows: no pass, no init
    assert os.listdir(ro) == []


# ---------------------------------------------------------------------------------------
# distributed: a worker dies, the scheduler dies
# ---------------------------------------------------------------------------------------
class SlowZarrSource(ZarrSource):
    """A zarr source whose reads take a little longer, so faults land mid-pass.  Module
    level (picklable by reference): worker processes import it from tests.test_faults."""

    delay = 0.03

    def _read_rows(self, start, stop):
        time.sleep(self.delay)
        return super()._read_rows(start, stop)


@pytest.fixture(scope="module")
def dstore(tmp_path_factory):
    d = tmp_path_factory.mktemp("dist")
    X = np.random.default_rng(3).normal(size=(400, 4))
    path = d / "D.zarr"
    cm.build_dissimilarity(X, path, block_rows=20)
    return path


@pytest.mark.distributed
def test_worker_killed_mid_fit_gives_identical_result(tmp_path, dstore):
    from distributed import Client, LocalCluster

    src = SlowZarrSource(str(dstore))
    ref = cm.fastpam2(src, 8, random_state=5, block_rows=20, num_workers=2)
    assert ref.n_iter >= 4  # iterations 2.. run after the kill
    with LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                      dashboard_address=":0", silence_logs=50) as cluster, Client(cluster) as client:
        pids = list(client.run(os.getpid).values())
        killed = []

        class KillAfterFirstIteration(logging.Handler):
            """Kill worker 0 shortly after iteration 1 ends, i.e. during iteration 2's pass."""

            def emit(self, record):
                if not killed and "iteration 1:" in record.getMessage():
                    killed.append(threading.Timer(0.1, os.kill, args=(pids[0], signal.SIGKILL)))
                    killed[0].start()

        log = logging.getLogger("chunked_medoids.algorithms.pam")
        handler, level = KillAfterFirstIteration(), log.level
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        try:
            got = cm.fastpam2(src, 8, random_state=5, block_rows=20, client=client)
        finally:
            log.removeHandler(handler)
            log.setLevel(level)
        assert killed
        killed[0].join()
        assert pids[0] not in client.run(os.getpid).values()  # it really died
        # a lost chunk met by a worker process reaches the caller as the same typed error
        lost = tmp_path / "lost.zarr"
        shutil.copytree(dstore, lost)
        os.remove(lost / "c" / "7" / "0")
        with pytest.raises(StoreCorruptionError, match=r"lost\.zarr'.*rows 140:160 is missing"):
            cm.fastpam2(SlowZarrSource(str(lost)), 8, random_state=5, block_rows=20, client=client)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    assert got.loss == ref.loss and got.loss_history == ref.loss_history


def _row_count(block, start, stop, state):
    return block.shape[0]


@pytest.mark.distributed
def test_scheduler_lost_mid_fit_errors_clearly_and_checkpoint_resumes(tmp_path, dstore):

    src = SlowZarrSource(str(dstore))
    ref_engine = Engine(block_rows=20, num_workers=2, resident=False)
    ref = cm.pam(src, 6, init="random", random_state=2, engine=ref_engine)
    assert ref.n_iter >= 3
    ckpt = tmp_path / "pam.npz"
    sf, sched, workers = start_process_cluster(tmp_path)
    try:
        client = connect_process_cluster(sf, sched)
        outcome = {}

        def fit():
            try:
                outcome["result"] = cm.pam(src, 6, init="random", random_state=2, client=client,
                                           block_rows=20, checkpoint=ckpt, checkpoint_interval=0)
            except BaseException as exc:  # noqa: BLE001 - handed to the test thread
                outcome["error"] = exc

        runner = threading.Thread(target=fit, daemon=True)
        runner.start()
        t0 = time.monotonic()
        while not ckpt.exists():  # the first iteration finished and was saved
            assert runner.is_alive() and time.monotonic() - t0 < 60
            time.sleep(0.01)
        time.sleep(0.2)  # into the second pass
        sched.send_signal(signal.SIGKILL)
        t_kill = time.monotonic()
        runner.join(timeout=25)
        assert not runner.is_alive(), "the fit hung after the scheduler died"
        waited = time.monotonic() - t_kill
        # any later pass on the disconnected client fails at once (no 30 s reconnect wait)
        t1 = time.monotonic()
        with pytest.raises(SchedulerLostError, match="lost the Dask scheduler"):
            Engine(client=client, block_rows=100).map_blocks(src, _row_count, {})
        assert time.monotonic() - t1 < 5
        client.close(timeout=5)
    finally:
        stop_processes(sched, workers)
    exc = outcome.get("error")
    assert isinstance(exc, SchedulerLostError) and isinstance(exc, ConnectionError), outcome
    assert "scheduler at tcp://127.0.0.1:" in str(exc) and "checkpoint" in str(exc)
    assert waited < 20
    print(f"scheduler lost -> error after {waited:.2f}s: {exc}")
    # resume on local threads from the checkpoint: identical to the uninterrupted run
    with np.load(ckpt, allow_pickle=False) as z:
        import json

        saved_iter = json.loads(str(z["__header__"]))["state"]["n_iter"]
    assert 1 <= saved_iter < ref.n_iter
    engine = Engine(block_rows=20, num_workers=2, resident=False)  # count every pass's reads
    got = cm.pam(src, 6, init="random", random_state=2, engine=engine, checkpoint=ckpt,
                 checkpoint_interval=0)
    assert engine.bytes_read < ref_engine.bytes_read  # resumed, not started over
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    assert got.loss == ref.loss and got.loss_history == ref.loss_history and got.n_iter == ref.n_iter


def test_hdf5_never_written_chunk_is_detected_not_read_as_fill(tmp_path):
    """HDF5 reads an unallocated chunk as the fill value: with a NaN fill it must be reported."""
    import h5py

    import chunked_medoids as cm

    X = np.random.default_rng(3).normal(size=(60, 3))
    D = cm.from_features(X).read_rows(0, 60)
    path = tmp_path / "F.h5"
    with h5py.File(path, "w") as f:
        ds = f.create_dataset("dissimilarity", shape=(60, 60), dtype="f4", chunks=(10, 60),
                              fillvalue=np.nan)
        ds[:30] = D[:30]
        ds[40:] = D[40:]  # rows 30:40 never written
    src = cm.open_dissimilarity(path)
    np.testing.assert_array_equal(src.read_rows(0, 30), D[:30])
    with pytest.raises(cm.StoreCorruptionError, match=r"rows 30:40.*fill value NaN"):
        src.read_rows(25, 45)
    with pytest.raises(cm.StoreCorruptionError, match=r"rows 30:40"):
        cm.fasterpam(path, 3, random_state=0)
