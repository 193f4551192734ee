"""CLARA on a 10^6 × 8 float32 zarr feature store stays within its memory limit.

Scaled-down version of "10^7 rows × 8 features within 1 GiB" (see benchmarks/bench_clara.py
and examples/clara_millions.py for the full size).  Peak RSS is measured in a fresh
interpreter (tests/_memtools.py) relative to a baseline taken after imports and a warm-up
run (numba kernels loaded).
"""

from __future__ import annotations

import numpy as np
import pytest

from tests._memtools import run_and_measure

# subprocesses measuring peak RSS on stores larger than the budget
pytestmark = pytest.mark.slow

N = 1_000_000
MiB = 2**20


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    zarr = pytest.importorskip("zarr")
    path = str(tmp_path_factory.mktemp("clara_mem") / "x.zarr")
    z = zarr.create_array(path, shape=(N, 8), chunks=(65536, 8), dtype="float32")
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=5.0, size=(10, 8))
    for a in range(0, N, 250_000):
        b = min(N, a + 250_000)
        z[a:b] = (centers[rng.integers(0, 10, b - a)] + rng.normal(size=(b - a, 8))).astype("float32")
    return path


CODE = '''
import json
import numpy as np
from chunked_medoids.algorithms.clara import clara
X = np.random.default_rng(0).normal(size=(3000, 8)).astype("float32")
clara(X, 10, variant={variant!r}, sample_size=300, n_samples=3, random_state=0)  # warm-up
mark_baseline()
r = clara({path!r}, 10, variant={variant!r}, memory_limit={limit!r}, random_state=0)
print(json.dumps({{"loss": r.loss, "n": int(r.labels.shape[0]), "k": len(set(r.medoids.tolist())),
                  "s": r.sample_size, "samples": r.n_samples,
                  "labels_ok": bool(r.labels.min() >= 0 and r.labels.max() < 10)}}))
'''


@pytest.mark.parametrize("variant, limit, bound", [
    ("fasterclara", "128MiB", 128 * MiB),
    # 32 MiB: far below the 64 MB a float64 copy of X would take -> X is streamed
    ("clara", "32MiB", 48 * MiB),
])
def test_zarr_features_within_memory_limit(store, variant, limit, bound):
    out = run_and_measure(CODE.format(variant=variant, path=store, limit=limit), timeout=300)
    res = out["result"]
    assert res["n"] == N and res["k"] == 10 and res["labels_ok"]
    assert np.isfinite(res["loss"]) and res["loss"] > 0
    grown = out["peak_rss"] - out["baseline_rss"]
    assert grown < bound, f"{variant}: peak grew by {grown / MiB:.1f} MiB (limit {limit})"
