"""Shared helpers of the benchmarks: peak-RSS measurement, scikit-image pixel data, JSON output.

Every benchmark prints one JSON document on stdout (logs go to stderr), so results can be
collected with ``python benchmarks/bench_x.py ... > result.json``.
"""

from __future__ import annotations

import json
import os
import resource
import sys
import threading
import time

import numpy as np

__all__ = ["PeakRSS", "current_rss", "ru_maxrss_bytes", "hubble_pixels", "emit", "timer", "machine"]


def current_rss() -> int:
    """Resident set size of this process now, in bytes."""
    import psutil

    return int(psutil.Process().memory_info().rss)


def ru_maxrss_bytes() -> int:
    """Lifetime peak RSS of this process (``getrusage``), in bytes (Linux reports KiB)."""
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return int(r if sys.platform == "darwin" else r * 1024)


class PeakRSS:
    """Context manager sampling this process's RSS in a background thread.

    ``peak`` is the largest RSS seen (bytes) between ``__enter__`` and ``__exit__``, and
    ``start`` the RSS at entry.  Sampling every ``interval`` seconds can miss a spike
    shorter than that; :func:`ru_maxrss_bytes` gives the exact lifetime maximum (but cannot
    be reset, so it only describes the first phase of a run).

    Examples
    --------
    >>> with PeakRSS() as m:
    ...     work()
    >>> m.peak, m.start
    """

    def __init__(self, interval: float = 0.01):
        self.interval = float(interval)
        self.peak = 0
        self.start = 0
        self._stop = threading.Event()
        self._thread = None

    def _run(self):
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            rss = proc.memory_info().rss
            if rss > self.peak:
                self.peak = rss
            self._stop.wait(self.interval)

    def __enter__(self):
        self.start = current_rss()
        self.peak = self.start
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, current_rss())
        return False


def hubble_pixels(n: int | None = None) -> np.ndarray:
    """The pixels of scikit-image's ``hubble_deep_field`` as float64 RGB vectors.

    Returns the first ``n`` pixels (row-major) as a C-contiguous (n, 3) float64 array with
    values 0..255 (all 872 000 pixels when ``n`` is None).
    """
    from skimage import data

    img = data.hubble_deep_field()
    pix = img.reshape(-1, img.shape[-1])
    if n is not None:
        if n > pix.shape[0]:
            raise ValueError(f"hubble_deep_field has only {pix.shape[0]} pixels, asked for n={n}")
        pix = pix[:n]
    return np.ascontiguousarray(pix, dtype=np.float64)


class timer:
    """``with timer() as t: ...`` then ``t.seconds``."""

    def __enter__(self):
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False


def emit(result: dict) -> None:
    """Print ``result`` as one JSON document on stdout (numpy scalars converted)."""

    def default(o):
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
        return str(o)

    sys.stdout.write(json.dumps(result, indent=2, default=default) + "\n")
    sys.stdout.flush()


def machine() -> dict:
    """A few facts about the machine the benchmark ran on."""
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover
        cores = os.cpu_count()
    import platform

    return {"cores": cores, "python": platform.python_version(), "platform": platform.platform()}
