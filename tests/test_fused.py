"""Fused on-the-fly distance kernels (issue 16): values, symmetry and results unchanged.

The fixture hashes in ``tests/data/fused_fixture_hashes.json`` were computed with the code
before the fused kernels existed (``tests/data/make_fused_fixture.py``); the rows that
``from_features(...).read_rows`` returns and the stores ``build_dissimilarity`` writes must
still hash to them bit for bit.
"""

import hashlib
import json
import os

import numpy as np
import pytest

from chunked_medoids import build_dissimilarity, from_features

DATA = os.path.join(os.path.dirname(__file__), "data")
with open(os.path.join(DATA, "fused_fixture_hashes.json")) as _f:
    CASES = json.load(_f)
with np.load(os.path.join(DATA, "fused_fixture.npz")) as _z:
    XS = {name: _z[name] for name in _z.files}


def _sha(a):
    return hashlib.sha256(np.ascontiguousarray(a).tobytes()).hexdigest()


def _case_id(c):
    return f"{c['X']}-{c['metric']}{c['params'] or ''}-{c['dtype']}{c.get('store', '')}"


@pytest.mark.parametrize("case", [c for c in CASES if "store" not in c], ids=_case_id)
def test_rows_match_pre_change_hash(case):
    X = XS[case["X"]]
    src = from_features(X, case["metric"], dtype=case["dtype"], **case["params"])
    assert _sha(src.read_rows(0, src.n)) == case["sha256"]


@pytest.mark.parametrize("case", [c for c in CASES if "store" in c], ids=_case_id)
def test_builder_output_matches_pre_change_hash(tmp_path, case):
    X = XS[case["X"]]
    src = build_dissimilarity(X, tmp_path / f"s{case['store']}", case["metric"], dtype=case["dtype"],
                              block_rows=case["block_rows"], **case["params"])
    assert _sha(src.read_rows(0, src.n)) == case["sha256"]
