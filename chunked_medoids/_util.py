"""Small validated helpers shared by every layer above the kernels."""

from __future__ import annotations

import numbers
import re

import numpy as np

from ._budget import MIN_MEMORY_LIMIT
from ._errors import InvalidParameterError, InvalidTypeError

_UNITS = {
    "": 1,
    "b": 1,
    "k": 10**3,
    "kb": 10**3,
    "m": 10**6,
    "mb": 10**6,
    "g": 10**9,
    "gb": 10**9,
    "t": 10**12,
    "tb": 10**12,
    "kib": 2**10,
    "mib": 2**20,
    "gib": 2**30,
    "tib": 2**40,
}
_MEM_RE = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][+-]?[0-9]+)?)\s*([a-zA-Z]*)\s*$")


def parse_memory_limit(value, name: str = "memory_limit") -> int:
    """Parse a memory budget such as ``"1GiB"``, ``"512 MB"``, ``2**30`` into bytes.

    Accepts an int/float number of bytes or a string with an optional unit
    (B, kB, MB, GB, TB decimal; KiB, MiB, GiB, TiB binary; case-insensitive).
    """
    if isinstance(value, bool):
        raise InvalidTypeError(f"{name} must be a number of bytes or a string like '1GiB', got bool {value!r}")
    if isinstance(value, numbers.Real):
        if not np.isfinite(value) or value < MIN_MEMORY_LIMIT:
            raise InvalidParameterError(
                f"{name} must be a finite number of bytes >= {MIN_MEMORY_LIMIT}, got {value!r}"
            )
        return int(value)
    if isinstance(value, str):
        m = _MEM_RE.match(value)
        if m is None or m.group(2).lower() not in _UNITS:
            raise InvalidParameterError(
                f"{name} could not be parsed: {value!r}; use a number of bytes or a size "
                "such as '512MiB', '1GiB', '2GB'"
            )
        nbytes = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
        if nbytes < MIN_MEMORY_LIMIT:
            raise InvalidParameterError(f"{name} must be at least {MIN_MEMORY_LIMIT} bytes, got {value!r}")
        return nbytes
    raise InvalidTypeError(
        f"{name} must be a number of bytes or a string like '1GiB', got {type(value).__name__} {value!r}"
    )


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(n) < 1024 or unit == "TiB":
            return f"{n:.1f} {unit}" if unit != "B" else f"{int(n)} B"
        n /= 1024.0
    return f"{n} B"  # pragma: no cover


def check_random_state(random_state) -> np.random.Generator:
    """Turn ``None``, an int seed, a SeedSequence or a Generator into a Generator.

    The Generator is made once by the public function and passed down explicitly; nothing
    here touches numpy's global RandomState.
    """
    if random_state is None:
        return np.random.default_rng()
    if isinstance(random_state, np.random.Generator):
        return random_state
    if isinstance(random_state, np.random.SeedSequence):
        return np.random.default_rng(random_state)
    if isinstance(random_state, numbers.Integral) and not isinstance(random_state, bool):
        if random_state < 0:
            raise InvalidParameterError(f"random_state must be a non-negative integer seed, got {random_state!r}")
        return np.random.default_rng(int(random_state))
    if isinstance(random_state, np.random.RandomState):
        return np.random.default_rng(random_state.randint(0, 2**31 - 1))
    raise InvalidTypeError(
        "random_state must be None, a non-negative int, a numpy SeedSequence or Generator, "
        f"got {type(random_state).__name__} {random_state!r}"
    )


def check_int(value, name: str, *, minimum: int | None = None, maximum: int | None = None) -> int:
    """Validate an integer parameter (numpy integers accepted, bool and float refused)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise InvalidTypeError(f"{name} must be an integer, got {type(value).__name__} {value!r}")
    value = int(value)
    if minimum is not None and value < minimum:
        raise InvalidParameterError(f"{name} must be >= {minimum}, got {value}")
    if maximum is not None and value > maximum:
        raise InvalidParameterError(f"{name} must be <= {maximum}, got {value}")
    return value


def check_k(k, n: int, name: str = "k") -> int:
    """Validate the number of medoids: an integer with 1 <= k <= n."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):
        raise InvalidTypeError(f"{name} (number of medoids) must be an integer, got {type(k).__name__} {k!r}")
    k = int(k)
    if k < 1 or k > n:
        raise InvalidParameterError(
            f"{name} (number of medoids) must satisfy 1 <= {name} <= n = {n}, got {k}"
        )
    return k


def check_medoids(medoids, n: int, k: int | None = None, name: str = "init") -> np.ndarray:
    """Validate an explicit medoid index array: integers in [0, n), distinct, length k."""
    arr = np.asarray(medoids)
    if arr.ndim != 1:
        shown = repr(medoids) if arr.size <= 10 else f"an array of {arr.size} elements"
        raise InvalidParameterError(
            f"{name} must be a 1-D array of point indices, got shape {arr.shape}: {shown}"
        )
    if arr.size and not np.issubdtype(arr.dtype, np.integer):
        if np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise InvalidTypeError(
                f"{name} must hold integer point indices, got dtype {arr.dtype}: {arr[:5].tolist()}"
                + (" ..." if arr.size > 5 else "")
            )
    arr = arr.astype(np.int64, copy=True)
    if k is not None and arr.shape[0] != k:
        raise InvalidParameterError(f"{name} must have length k = {k}, got length {arr.shape[0]}")
    if arr.size == 0:
        raise InvalidParameterError(f"{name} must contain at least one medoid index")
    bad = (arr < 0) | (arr >= n)
    if bad.any():
        raise InvalidParameterError(
            f"{name} holds indices out of range [0, {n}): {arr[bad][:5].tolist()}"
        )
    uniq, counts = np.unique(arr, return_counts=True)
    if (counts > 1).any():
        raise InvalidParameterError(
            f"{name} must hold distinct medoid indices; duplicates: {uniq[counts > 1][:5].tolist()}"
        )
    return arr


def check_weights(weights, n: int, name: str = "weights") -> np.ndarray | None:
    """Validate per-point weights: None, or a finite, non-negative float64 array of length n."""
    if weights is None:
        return None
    w = np.asarray(weights)
    if w.dtype == object or not (np.issubdtype(w.dtype, np.number) or w.dtype == bool):
        raise InvalidTypeError(f"{name} must be a numeric array, got dtype {w.dtype}")
    w = w.astype(np.float64)
    if w.ndim != 1 or w.shape[0] != n:
        raise InvalidParameterError(f"{name} must have shape (n,) = ({n},), got shape {w.shape}")
    finite = np.isfinite(w)
    if not finite.all():
        i = int(np.flatnonzero(~finite)[0])
        raise InvalidParameterError(
            f"{name} must be finite; found {w[i].item()!r} at {name}[{i}] "
            f"({int((~finite).sum())} non-finite entries)"
        )
    if (w < 0).any():
        i = int(np.flatnonzero(w < 0)[0])
        raise InvalidParameterError(
            f"{name} must be non-negative; found {w[i].item()!r} at {name}[{i}] "
            f"({int((w < 0).sum())} negative entries)"
        )
    if not (w > 0).any():
        raise InvalidParameterError(
            f"{name} must have at least one positive entry, got all {n} weights equal to 0"
        )
    return w


def check_choice(value, name: str, choices) -> str:
    if not isinstance(value, str) or value not in choices:
        from ._errors import UnknownNameError

        raise UnknownNameError(f"{name} must be one of {sorted(choices)}, got {value!r}")
    return value


def jsonable(obj, *, sort_keys: bool = False, max_array_size: int | None = None):
    """A copy of ``obj`` made of JSON types only (dict, list, str, int, float, bool, None).

    The one converter for everything the library writes as JSON or compares as JSON
    (metric parameters, checkpoint headers, CLI summaries).

    Parameters
    ----------
    obj : object
        Nested dicts, lists, tuples, numpy arrays and scalars, Python scalars.
    sort_keys : bool, default False
        Return dicts with their keys in sorted order (for stable comparison and output).
    max_array_size : int, optional
        Arrays with more elements are replaced by the string ``"<array shape [...]>"``
        (for human-facing summaries); by default every array is converted.

    Returns
    -------
    object
        Dict keys become ``str``; tuples and arrays become lists; numpy scalars become
        Python scalars; other objects become their ``repr``.

    Notes
    -----
    NaN rule: a float NaN (Python or numpy) becomes ``None``, i.e. JSON ``null``: standard
    JSON has no NaN, and ``null`` reads back (``json.loads``) as ``None`` in every parser,
    whereas Python's default ``NaN`` token is rejected by strict parsers and a ``"nan"``
    string reads back as a string.  Infinities are kept as floats (Python's ``json`` writes
    and reads them as ``Infinity``), since an infinite loss is a meaningful value.
    """
    if isinstance(obj, dict):
        items = sorted(obj.items(), key=lambda kv: str(kv[0])) if sort_keys else obj.items()
        return {str(k): jsonable(v, sort_keys=sort_keys, max_array_size=max_array_size) for k, v in items}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v, sort_keys=sort_keys, max_array_size=max_array_size) for v in obj]
    if isinstance(obj, np.ndarray):
        if max_array_size is not None and obj.size > max_array_size:
            return f"<array shape {list(obj.shape)}>"
        return jsonable(obj.tolist(), sort_keys=sort_keys)
    if isinstance(obj, np.generic):
        return jsonable(obj.item(), sort_keys=sort_keys)
    if isinstance(obj, float) and obj != obj:
        return None
    if obj is None or isinstance(obj, (str, int, float, bool)):
        return obj
    return repr(obj)
