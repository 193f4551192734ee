"""The distributed walk's actors sharing a raw zarr store's rows when their workers share one
host (``SHARE_ROWS`` in ``chunked_medoids/_dist_eager.py``, issue 18): each maps every chunk
from the one page cache and checks only its own share, any actor walks any position (the
dense-swap runs of a first pass are not cut at every granule), and swaps travel without
their rows.  The result stays bitwise the local sequential one; a store one worker cannot
map falls back to owned granules, with the read path's typed error for a damaged chunk.
Real ``LocalCluster`` processes, no mocks."""

import os

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import _dist_eager
from chunked_medoids._errors import StoreCorruptionError
from tests._cluster import assert_same_fit, blobs, local_process_cluster

pytestmark = pytest.mark.distributed

N, K = 600, 6


@pytest.fixture(scope="module")
def X():
    return blobs(N)


@pytest.fixture(scope="module")
def store(X, tmp_path_factory):
    d = tmp_path_factory.mktemp("shared_rows")
    return cm.build_dissimilarity(X, str(d / "D.zarr"), metric="euclidean", memory_limit=2**18)


@pytest.fixture(scope="module", params=[2, 3], ids=lambda w: f"W{w}")
def client(request):
    cluster, c = local_process_cluster(request.param)
    try:
        yield c
    finally:
        c.close()
        cluster.close()


@pytest.mark.parametrize("method", ["fasterpam", "fastermsc"])
@pytest.mark.parametrize("order", ["natural", "shuffle"])
def test_shared_rows_equal_sequential_and_owned(method, order, store, client, monkeypatch):
    func = getattr(cm, method)
    opts = {"order": order} if method == "fasterpam" else {}
    ref = func(store, K, random_state=1, num_workers=1, **opts)
    got = func(store, K, random_state=1, client=client, **opts)
    assert_same_fit(got, ref)
    info = got.distributed
    W = info["workers"]
    # parallel batches keep the ownership granules (each actor's checked rows)
    assert info["shared_rows"] and info["rows"] == "resident"
    assert info["granule"] == _dist_eager.ownership_granule(store, W)
    row_bytes = store.n * 4
    for a in info["actors"]:  # every actor maps every row (whole chunks) ...
        assert store.n * row_bytes <= a["mapped_bytes"] < (store.n + store.block_rows) * row_bytes
        assert a["rows_in_bytes"] == 0  # ... so swaps reach it without their rows
    # the first pass's dense swaps: runs of up to MAX_RUN positions, not cut at each granule
    monkeypatch.setattr(_dist_eager, "SHARE_ROWS", False)
    owned = func(store, K, random_state=1, client=client, **opts)
    assert_same_fit(owned, ref)
    assert not owned.distributed["shared_rows"] and owned.distributed["granule"] == info["granule"]
    assert sum(a["mapped_bytes"] for a in owned.distributed["actors"]) < (store.n + store.block_rows) * row_bytes
    if order == "natural" and method == "fasterpam":
        assert info["pass_round_trips"][0] < owned.distributed["pass_round_trips"][0], (info, W)


def test_a_store_a_worker_cannot_map_falls_back_to_owned_rows(X, client, tmp_path):
    """A damaged chunk is refused by the actor checking it; the walk falls back to owned
    granules and the owner's read raises the local read's typed error (not taken for a lost
    worker)."""
    src = cm.build_dissimilarity(X, str(tmp_path / "D.zarr"), metric="euclidean", memory_limit=2**18)
    chunk = os.path.join(str(tmp_path / "D.zarr"), "c", "1", "0")
    with open(chunk, "r+b") as fh:
        fh.seek(100)
        b = fh.read(1)
        fh.seek(100)
        fh.write(bytes([b[0] ^ 0xFF]))
    with pytest.raises(StoreCorruptionError) as local:
        cm.fasterpam(src, K, init=np.arange(K), num_workers=1)
    ref_err = str(local.value)
    with pytest.raises(StoreCorruptionError) as dist:
        cm.fasterpam(src, K, init=np.arange(K), client=client)
    assert str(dist.value) == ref_err  # the same chunk named, the same fix


def test_rows_not_shared_across_hosts_or_when_off():
    """The decision alone: several workers on one host holding a raw store's rows share
    them; workers on two hosts, one worker, streamed rows or ``SHARE_ROWS = False`` do not."""

    class Raw:
        def raw_chunk_files(self):
            return (10, True, str)

    walk = object.__new__(_dist_eager.DistributedEagerWalk)
    walk.source, walk.fused, walk.resident, walk.W = Raw(), False, True, 2
    one = {"a": (1, 0, "10.0.0.1"), "b": (1, 0, "10.0.0.1")}
    two = {"a": (1, 0, "10.0.0.1"), "b": (1, 0, "10.0.0.2")}
    assert walk._share(one) and not walk._share(two)
    walk.resident = False
    assert not walk._share(one)
    walk.resident, walk.W = True, 1
    assert not walk._share({"a": (1, 0, "10.0.0.1")})
    walk.W = 2
    walk.source = type("Compressed", (), {"raw_chunk_files": lambda self: None})()
    assert not walk._share(one)
    walk.source = Raw()
    old = _dist_eager.SHARE_ROWS
    try:
        _dist_eager.SHARE_ROWS = False
        assert not walk._share(one)
    finally:
        _dist_eager.SHARE_ROWS = old
