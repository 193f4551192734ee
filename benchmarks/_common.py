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

__all__ = ["PASS_CHILD", "PeakRSS", "current_rss", "emit", "hubble_pixels", "machine", "ru_maxrss_bytes",
           "run_pass_child", "timer"]


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


#: The child process of the cold-disk benchmarks (bench_cold_disk.py, bench_larger_than_ram.py):
#: FasterPAM (random init) on a store with ``memory_limit``, optionally the medoid silhouette,
#: and where the time went.  ``spec`` (JSON, argv[1]): store, k, memory_limit, max_iter,
#: silhouette.  Prints one JSON line: pass times (from the pass log lines), loss, medoids,
#: peak RSS, the engine's read_stats and, per pass (first block read to the pass log line),
#: ``cpu_per_pass``: wall, process user/sys CPU seconds, CPU seconds inside the reads (reader
#: threads: preadv's copy out of the page cache, checksum, checks; ``compute_cpu_s`` is the
#: rest: kernels and glue), wall seconds inside ``os.preadv`` and the checksum summed over
#: threads, the kernel's wait for blocks, the machine's busy CPU seconds (all processes, from
#: /proc/stat: the load; ``machine_cores`` x wall is all of it) and the store device's busy
#: seconds and bytes read (/proc/diskstats; every process on the device).
PASS_CHILD = r"""
import json, logging, os, re, resource, sys, threading, time
import chunked_medoids as cm
spec = json.loads(sys.argv[1])
passes = []
class H(logging.Handler):
    def emit(self, rec):
        m = re.search(r"pass (\d+): .* ([0-9.]+)s read", rec.getMessage())
        if m:
            passes.append(float(m.group(2)))
logging.getLogger("chunked_medoids").addHandler(H())
logging.getLogger("chunked_medoids").setLevel(logging.INFO)

def machine_cpu():
    with open("/proc/stat") as f:
        v = [int(x) for x in f.readline().split()[1:]]
    tck = os.sysconf("SC_CLK_TCK")
    return (sum(v) - v[3] - v[4]) / tck, v[4] / tck  # busy, iowait

def device_of(path):
    st = os.stat(path)
    return os.major(st.st_dev), os.minor(st.st_dev)

def disk_busy(dev):
    with open("/proc/diskstats") as f:
        for line in f:
            p = line.split()
            if (int(p[0]), int(p[1])) == dev:
                return int(p[12]) / 1000.0, int(p[5]) * 512  # io_ticks (s), bytes read
    return 0.0, 0

acc = {"read_cpu_s": 0.0, "preadv_s": 0.0, "crc_s": 0.0, "reads": 0}
lock = threading.Lock()
def timed(fn, key):
    def wrap(*a, **kw):
        t = time.perf_counter()
        try:
            return fn(*a, **kw)
        finally:
            dt = time.perf_counter() - t
            with lock:
                acc[key] += dt
    return wrap
os.preadv = timed(os.preadv, "preadv_s")
try:
    import google_crc32c
    google_crc32c.extend = timed(google_crc32c.extend, "crc_s")
except ImportError:
    pass
opts = {"direct_io": spec["direct_io"]} if spec.get("direct_io") is not None else {}
src = cm.open_dissimilarity(spec["store"], **opts)
eng = cm.Engine(memory_limit=spec["memory_limit"])
dev = device_of(spec["store"])
marks = []  # counters at the start of the first pass and at the end of each pass
def mark(first=False):
    with lock:
        if first and marks:
            return
        t, p, m, d = time.perf_counter(), os.times(), machine_cpu(), disk_busy(dev)
        marks.append(dict(acc, wall=t, user=p.user, sys=p.system, busy=m[0], iowait=m[1], disk=d[0],
                          disk_bytes=d[1], wait=eng.read_stats["wait_s"]))
class Marker(logging.Handler):
    def emit(self, rec):
        if re.search(r"pass (\d+): .*s read", rec.getMessage()):
            mark()
logging.getLogger("chunked_medoids").addHandler(Marker())
real_read, real_inner = src.read_rows, src._read_rows
tl = threading.local()
def read_rows(a, b, real=real_read):
    if getattr(tl, "inside", False):  # _read_rows inside read_rows: counted by the outer call
        return real(a, b)
    if not marks:
        mark(first=True)
    c = time.thread_time()
    tl.inside = True
    try:
        return real(a, b)
    finally:
        tl.inside = False
        dc = time.thread_time() - c
        with lock:
            acc["read_cpu_s"] += dc
            acc["reads"] += 1
src.read_rows = read_rows
# float16 passes read the stored rows straight through _read_rows (sources/base.py StoredRows)
src._read_rows = lambda a, b: read_rows(a, b, real=real_inner)
t0 = time.perf_counter()
res = cm.fasterpam(src, spec["k"], init="random", random_state=0, max_iter=spec["max_iter"], engine=eng)
t1 = time.perf_counter()
cpu = []
for a, b in zip(marks, marks[1:]):
    d = {key: b[key] - a[key] for key in a}
    cpu.append({"wall_s": d["wall"], "user_s": d["user"], "sys_s": d["sys"],
                "read_cpu_s": d["read_cpu_s"], "compute_cpu_s": d["user"] + d["sys"] - d["read_cpu_s"],
                "preadv_wall_s": d["preadv_s"], "crc_wall_s": d["crc_s"], "reads": d["reads"],
                "kernel_wait_s": d["wait"], "machine_busy_cpu_s": d["busy"], "machine_iowait_s": d["iowait"],
                "machine_cores": os.cpu_count(), "disk_busy_s": d["disk"], "disk_read_bytes": d["disk_bytes"]})
out = {"fasterpam_s": t1 - t0, "pass_s": passes, "passes": res.n_iter, "swaps": res.n_swap, "loss": res.loss,
       "medoids": res.medoids.tolist(), "read_stats": eng.read_stats,
       "peak_rss": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024, "cpu_per_pass": cpu}
if spec.get("silhouette"):
    sil = cm.medoid_silhouette(src, res.medoids)  # k medoid rows: no budget needed
    out.update(medoid_silhouette=float(sil), silhouette_s=time.perf_counter() - t1)
print(json.dumps(out))
"""


def run_pass_child(store: str, *, k: int, memory_limit: str, max_iter: int = 1, silhouette: bool = False,
                   tree: str | None = None, direct_io=None) -> dict:
    """Run :data:`PASS_CHILD` in a fresh interpreter and return its JSON result.

    ``tree``: run another checkout's package (its directory goes first on ``PYTHONPATH``);
    ``direct_io``: passed to ``open_dissimilarity`` unless None.
    """
    import subprocess

    spec = json.dumps({"store": store, "k": k, "memory_limit": memory_limit, "max_iter": max_iter,
                       "silhouette": silhouette, "direct_io": direct_io})
    env = dict(os.environ)
    if tree is not None:
        env["PYTHONPATH"] = tree
    proc = subprocess.run([sys.executable, "-c", PASS_CHILD, spec], capture_output=True, text=True,
                          env=env, cwd=tree or None)
    if proc.returncode:
        raise RuntimeError(f"pass child failed ({proc.returncode}):\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])
