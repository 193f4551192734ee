"""FasterPAM on a zarr matrix 8x larger than its memory budget stays within the budget.

The store (n = 8000 float32 = 256 MB, stripes of 250 rows) is written stripe by stripe with
zarr directly; FasterPAM runs in a fresh interpreter (tests/_memtools.py) with
memory_limit = 32 MiB.  Its peak RSS must stay below

    RSS after imports + memory_limit + n·k·8 (medoid table + caches, generously) + overhead

with overhead 150 MB, for the same reasons as in tests/test_memory_build.py: the default
glibc allocator keeps freed stripe buffers mapped in per-thread arenas (up to ~110 MB above
the live data measured there), plus thread stacks and zarr's codec threads.  The bound
(~190 MB above baseline) is below the matrix size (256 MB), so materialising D, or
holding many more stripes than planned, fails the test.  The medoids must equal those of the
same run on the in-memory matrix.
"""

import json

import numpy as np
import pytest

from ._memtools import run_and_measure

# subprocesses measuring peak RSS on stores larger than the budget
pytestmark = pytest.mark.slow

N, K = 8000, 10
STRIPE = 250
LIMIT = 32 * 2**20
OVERHEAD = 150 * 10**6

SNIPPET = """
import json
import numpy as np
import zarr
import chunked_medoids as cm
from chunked_medoids.algorithms import fasterpam as fp
cm.fasterpam(np.zeros((4, 4), np.float32), 2, init=[0, 1])   # numba kernels loaded
mark_baseline()
r = cm.fasterpam({path!r}, {k}, init={init}, memory_limit={limit}, max_iter=3, num_workers=1)
print(json.dumps({{"medoids": r.medoids.tolist(), "loss": r.loss, "n_iter": r.n_iter}}))
"""


def _features(n):
    return np.random.default_rng(5).random((n, 3))


def _stripe(X, a, b):
    return np.sqrt(((X[a:b, None, :] - X[None, :, :]) ** 2).sum(-1)).astype(np.float32)


def test_fasterpam_zarr_within_budget(tmp_path):
    zarr = pytest.importorskip("zarr")
    import chunked_medoids as cm

    X = _features(N)
    path = str(tmp_path / "D.zarr")
    arr = zarr.create_array(store=path, shape=(N, N), chunks=(STRIPE, N), dtype="float32")
    for a in range(0, N, STRIPE):
        arr[a:a + STRIPE] = _stripe(X, a, min(a + STRIPE, N))
    assert N * N * 4 >= 4 * LIMIT
    init = np.random.default_rng(1).choice(N, K, replace=False).tolist()
    out = run_and_measure(SNIPPET.format(path=path, k=K, init=init, limit=LIMIT), timeout=300,
                          env={"OMP_NUM_THREADS": "1"})
    res = out["result"]
    used = out["peak_rss"] - out["baseline_rss"]
    bound = LIMIT + N * K * 8 + OVERHEAD
    assert N * N * 4 > bound  # the bound catches a materialised matrix
    assert used <= bound, f"peak {used / 1e6:.1f} MB above baseline > bound {bound / 1e6:.1f} MB"
    # same result as on the in-memory matrix
    D = np.concatenate([_stripe(X, a, min(a + STRIPE, N)) for a in range(0, N, STRIPE)])
    ref = cm.fasterpam(D, K, init=init, max_iter=3)
    assert res["medoids"] == ref.medoids.tolist() and res["n_iter"] == ref.n_iter
    assert res["loss"] == ref.loss
    print(json.dumps({"peak_above_baseline_MB": used / 1e6, "bound_MB": bound / 1e6}))
