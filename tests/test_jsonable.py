"""_util.jsonable: the one JSON converter (metric parameters, checkpoints, CLI summaries)."""

import json
import math

import numpy as np

from chunked_medoids._util import jsonable
from chunked_medoids.metrics import resolve_metric


def test_types_become_json_types():
    obj = {1: (np.int64(3), np.float32(0.5), np.bool_(True)), "a": np.arange(3), "b": None,
           "c": [np.array([[1.0, 2.0]])], "d": "s"}
    out = jsonable(obj)
    assert out == {"1": [3, 0.5, True], "a": [0, 1, 2], "b": None, "c": [[[1.0, 2.0]]], "d": "s"}
    assert type(out["1"][0]) is int and type(out["1"][2]) is bool
    assert jsonable(object) == repr(object)


def test_nan_becomes_null_and_round_trips():
    obj = {"x": float("nan"), "y": np.float64("nan"), "z": np.array([1.0, np.nan]), "w": [np.float32("nan")]}
    out = jsonable(obj)
    assert out == {"x": None, "y": None, "z": [1.0, None], "w": [None]}
    text = json.dumps(out, allow_nan=False)  # strict JSON: no NaN token needed
    assert json.loads(text) == out


def test_infinity_is_kept():
    out = jsonable({"loss": math.inf, "a": np.array([-np.inf])})
    assert out == {"loss": math.inf, "a": [-math.inf]}
    assert json.loads(json.dumps(out)) == out


def test_sort_keys_and_array_summaries():
    assert list(jsonable({"b": 1, "a": {"d": 2, "c": 3}}, sort_keys=True)) == ["a", "b"]
    assert list(jsonable({"b": 1, "a": {"d": 2, "c": 3}}, sort_keys=True)["a"]) == ["c", "d"]
    assert list(jsonable({"b": 1, "a": 2})) == ["b", "a"]  # insertion order otherwise
    assert jsonable({"a": np.zeros((3, 4))}, max_array_size=10) == {"a": "<array shape [3, 4]>"}
    assert jsonable({"a": np.zeros(10)}, max_array_size=10) == {"a": [0.0] * 10}


def test_metric_descriptions_use_it():
    m = resolve_metric("minkowski", p=np.float64(3))
    d = m.describe()
    assert d == {"metric": "minkowski", "params": {"p": 3.0}} and type(d["params"]["p"]) is float
