"""The budget module reproduces every size decision the library made before it existed.

``tests/make_size_golden.py`` evaluated, on main at e2f9921, every memory-size decision
(engine block heights and read concurrency, build stripe plans, natural block heights,
feature work blocks, validation blocks, predict blocks, CLARA / CLARANS batches, the HDF5
build cache) on a grid of inputs and printed one SHA-256 per section.  Here the same grids
are rebuilt through :mod:`chunked_medoids._budget` (and the engine / builder APIs, which now
call it) and must hash the same: same block rows, hence the same results and memory.
"""

import hashlib
import json
import logging

import numpy as np
import pytest

from chunked_medoids import _budget
from chunked_medoids.builder import plan_stripes
from chunked_medoids.engine import DECODE_FACTOR
from tests.make_size_golden import DS, ITEMS, LIMITS, NATURALS, NS, THREADS, engine_cases, plan_cases

GOLDEN = {
    'engine': 'c2be312a5c3f546628cea48db577a9b92bbe83216104ab8ca4106424594aefc1',
    'plan_stripes': 'fbcc822e25dbd593b2e9eaaa1976e40a43c7d3bdd43ab70acbcd49f373e15791',
    'natural': '420e819d20dc2998fcedc0dff8deaab322604017e1d40a2cdf59210ae6f99b4a',
    'features': '408bc274c82fbe69ead5fb10d572f468f66fa4cc5da623b198ac81bdacec552f',
    'validate': 'bbb7d84eacfc6c1e765dc7923d464d83420c978b42191c4feef9a4cdd2b20cae',
    'predict': '6b6f204d196bad86d20e9177b8b0fa7bb156a497a5727e6821ad363fe8fc2c47',
    'clara': '85f18c0cba85ffa181ad1109def6035447c68a663634ff51955bfcadda4c20c6',
    'clarans': 'd08a0c11dbeb608f0be8ea94310ac628ec71f2a745c0ee5269d1ace3fd0c5f0b',
    'h5cache': '7f578cbea4b8c5a1436897d9104291214cd992492fa111394cd3deabab9cb1d7',
}


def _digest(value) -> str:
    return hashlib.sha256(json.dumps(value, separators=(",", ":"), sort_keys=True).encode()).hexdigest()


@pytest.fixture(autouse=True)
def _quiet():
    logging.disable(logging.WARNING)  # the grid includes chunks larger than the budget
    yield
    logging.disable(logging.NOTSET)


def test_engine_sizes_unchanged():
    # the recorder calls the public Engine API, so its grid is this test's grid
    assert _digest(engine_cases()) == GOLDEN["engine"]


def test_plan_stripes_unchanged():
    assert _digest(plan_cases()) == GOLDEN["plan_stripes"]  # the builder's public plan_stripes
    assert plan_stripes is _budget.plan_stripes  # the builder's public name is the same function


def test_source_and_feature_sizes_unchanged():
    assert _digest([[n, it, _budget.natural_block_rows(n, it)] for n in NS for it in ITEMS]) == GOLDEN["natural"]
    out = []
    for n in NS:
        for d in DS:
            for br in (1, 7, 1000):
                for cr in (1, 5, 64, 100000):
                    out.append([n, d, br, cr, _budget.feature_block_rows(n, d, min(br, n), cr),
                                _budget.feature_scan_rows(n, d)])
    assert _digest(out) == GOLDEN["features"]
    out = [[n, it, lim, nat, _budget.validate_block_rows(n, it, lim, max(1, min(nat, n)))]
           for n in NS for it in ITEMS for lim in LIMITS for nat in NATURALS]
    assert _digest(out) == GOLDEN["validate"]
    out = [[w, _budget.predict_block_rows(w)] for w in (0, 1, 3, 64, 784, 10**6, 10**8)]
    assert _digest(out) == GOLDEN["predict"]
    out = [[m, row, _budget.hdf5_cache_bytes(m, row)] for m in (1, 7, 1000) for row in (4, 4000, 10**6)]
    assert _digest(out) == GOLDEN["h5cache"]


def test_clara_and_clarans_sizes_unchanged():
    feats, samples, scan, gather, cap = [], [], [], [], []
    for n in NS:
        for d in DS:
            for lim in LIMITS:
                for cr in (1, 5, 64, 100000):
                    scan.append([n, d, lim, cr, _budget.clara_scan_rows(n, d, lim, cr)])
                    for cols in (0, 10, 400):
                        for threads in (1, 2, 5):
                            per = _budget.clara_feature_block_rows(n, d, cols, lim, threads, cr)
                            feats.append([n, d, lim, cr, cols, threads, per])
    for s in (2, 80, 1000, 10000):
        for k in (1, 5, 100):
            for lim in LIMITS:
                for par in (1, 2, 8):
                    samples.append([s, k, lim, par, *_budget.clara_sample_batch(s, k, lim, par)])
    for budget in (1, 1 << 16, 10**6, 1 << 30):
        for n in NS:
            for it in ITEMS:
                gather.append([budget, n, it, _budget.gather_rows(budget, n, it)])
    for lim in LIMITS:
        cap.append([lim, _budget.clara_sample_cap(lim)])
    got = {"feature_blocks": feats, "samples": samples, "scan_rows": scan, "gather": gather,
           "sample_cap": cap}
    assert _digest(got) == GOLDEN["clara"]
    out = [[lim, conc, n, it, c, _budget.clarans_fetch_rows(lim, conc, n, it, c)]
           for lim in LIMITS for conc in (1, 2, 8) for n in NS for it in ITEMS for c in (1, 64, 1000)]
    assert _digest(out) == GOLDEN["clarans"]


def test_engine_reexports_the_decode_factor():
    assert DECODE_FACTOR == _budget.DECODE_FACTOR == 5


def test_block_rows_bounds():
    # the accounting the docstring states: readers x DECODE_FACTOR + held blocks fit
    for n, it, lim, readers, held in [(1000, 4, 2**20, 2, 0), (1000, 8, 2**22, 1, 2), (77, 4, 2**16, 3, 1)]:
        rows = _budget.block_rows(n, it, lim, 1, readers=readers, held=held)
        assert 1 <= rows <= n
        if rows > 1:
            assert rows * n * it * (readers * _budget.DECODE_FACTOR + held) <= lim
    # aligned to the storage chunks when one fits
    assert _budget.block_rows(1000, 4, 2**24, 30, readers=1) % 30 == 0


def test_source_natural_heights_come_from_the_budget(tmp_path):
    import h5py

    from chunked_medoids import from_features, open_dissimilarity

    D = np.zeros((300, 300), dtype=np.float32)
    assert open_dissimilarity(D).block_rows == _budget.natural_block_rows(300, 4)
    with h5py.File(tmp_path / "c.h5", "w") as f:
        f.create_dataset("dissimilarity", data=D)  # contiguous: no chunks
    src = open_dissimilarity(tmp_path / "c.h5")
    assert src.block_rows == _budget.natural_block_rows(300, 4)
    src.close()
    X = np.random.default_rng(0).normal(size=(300, 3))
    fs = from_features(X, dtype="float64")
    assert fs.block_rows == _budget.natural_block_rows(300, 8)
    assert fs.feature_block_rows == _budget.feature_block_rows(300, 3, fs.block_rows, 1)


def test_largeclara_sample_sizes_unchanged():
    """The LargeCLARA sample batch and sample blocks equal the expressions clara_large.py held
    inline before they moved into the budget module (copied verbatim here)."""
    for s in (5, 300, 10_000, 40_000):
        for s0 in sorted({min(s, 5), min(s, 3000)}):
            for k in (1, 10, 100):
                for d in (2, 64, 784):
                    for n_samples in (1, 4, 9):
                        for ml in LIMITS:
                            for par in THREADS:
                                task_bytes = 2 * 8 * s0 * s0 + 16 * s * (k + 8) + 8 * s * d + (64 << 20)
                                conc = max(1, min(par, n_samples, int(0.75 * ml // task_bytes)))
                                task_memory = max(32 << 20, int(0.75 * ml) // conc)
                                assert _budget.largeclara_sample_batch(s, s0, k, d, n_samples, ml, par) == \
                                    (conc, task_memory)
                                assert _budget.largeclara_sample_rows(s, task_memory) == \
                                    max(1, int(task_memory // (8 * 8 * s)))

    for pool in (1, 7, 1000, 100_000, 1 << 24):
        assert _budget.largeclara_candidate_rows(pool) == max(1, (8 << 20) // (8 * pool))
