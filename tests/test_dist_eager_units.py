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
