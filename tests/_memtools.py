"""Run a Python snippet in a fresh interpreter and measure its peak resident memory.

Memory-bound tests must not measure inside the pytest process (its RSS carries every test
that ran before).  :func:`run_and_measure` starts ``sys.executable`` on the snippet and
returns the child's peak RSS, the RSS at a baseline point the snippet chooses, and the JSON
document the snippet printed.

Example
-------
>>> out = run_and_measure('''
... import numpy as np, json
... import chunked_medoids            # imports first ...
... mark_baseline()                  # ... then record the baseline RSS
... a = np.ones(10_000_000)          # 80 MB
... print(json.dumps({"sum": float(a.sum())}))
... ''')
>>> out["peak_rss"] - out["baseline_rss"] >= 80e6
True
>>> out["result"]
{'sum': 10000000.0}
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time

__all__ = ["run_and_measure", "MARKER"]

#: prefix of the line the wrapper prints with its measurements (kept off the snippet's JSON).
MARKER = "__MEMTOOLS__"

_PRELUDE = r'''
import json as _mt_json, os as _mt_os, resource as _mt_resource, sys as _mt_sys

def _mt_status(key):
    # VmHWM / VmRSS of the current address space (Linux); exact and reset by exec, unlike
    # getrusage's ru_maxrss, which may carry the forking parent's peak.
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                if line.startswith(key + ":"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None

def _mt_rss():
    v = _mt_status("VmRSS")
    if v is None:
        import psutil
        v = psutil.Process().memory_info().rss
    return v

def _mt_peak():
    v = _mt_status("VmHWM")
    if v is None:
        r = _mt_resource.getrusage(_mt_resource.RUSAGE_SELF).ru_maxrss
        v = r if _mt_sys.platform == "darwin" else r * 1024
    return v

_MT_BASELINE = [None]

def mark_baseline():
    """Record the current RSS as the snippet's baseline (call it after the imports)."""
    _MT_BASELINE[0] = _mt_rss()
    return _MT_BASELINE[0]

def current_rss():
    """Current RSS in bytes."""
    return _mt_rss()

def peak_rss():
    """Peak RSS so far in bytes."""
    return _mt_peak()
'''

_EPILOGUE = rf'''
_mt_sys.stdout.flush()
print("{MARKER}" + _mt_json.dumps({{"peak_rss": _mt_peak(), "baseline_rss": _MT_BASELINE[0],
                             "final_rss": _mt_rss()}}), flush=True)
'''


def run_and_measure(code: str, timeout: float = 300, *, env: dict | None = None,
                    cwd: str | None = None) -> dict:
    """Run ``code`` in a new Python interpreter; return its peak RSS and printed JSON.

    Parameters
    ----------
    code : str
        Python source (dedented automatically).  Inside it, ``mark_baseline()`` records the
        current RSS as the baseline (call it after imports and warm-up), ``current_rss()``
        and ``peak_rss()`` return bytes.  To hand results back, print one JSON document as
        the last line of stdout (anything printed before is kept in ``stdout``).
    timeout : float, default 300
        Seconds before the child is killed (``subprocess.TimeoutExpired`` is raised).
    env : dict, optional
        Extra environment variables (merged into ``os.environ``).  The repository root is
        prepended to ``PYTHONPATH`` so ``tests._memtools``-style imports work in the child.
    cwd : str, optional
        Working directory of the child.

    Returns
    -------
    dict
        ``peak_rss`` (int, bytes: the child's lifetime peak RSS, ``VmHWM`` on Linux),
        ``baseline_rss`` (int bytes or None if ``mark_baseline`` was not called),
        ``final_rss`` (bytes at exit), ``result`` (the parsed JSON of the snippet's last
        stdout line, or None), ``stdout``, ``stderr``, ``seconds`` (wall time).

    Raises
    ------
    RuntimeError
        The child exited with a non-zero status (its stderr is included).
    """
    src = _PRELUDE + "\n" + textwrap.dedent(code) + "\n" + _EPILOGUE
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    child_env = dict(os.environ)
    child_env.update(env or {})
    child_env["PYTHONPATH"] = os.pathsep.join(
        [root] + [p for p in child_env.get("PYTHONPATH", "").split(os.pathsep) if p]
    )
    t0 = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", src], capture_output=True, text=True,
                          timeout=timeout, env=child_env, cwd=cwd)
    seconds = time.perf_counter() - t0
    if proc.returncode != 0:
        raise RuntimeError(
            f"snippet exited with status {proc.returncode}\n--- stderr ---\n{proc.stderr[-4000:]}"
            f"\n--- stdout ---\n{proc.stdout[-2000:]}"
        )
    measured = None
    result = None
    lines = proc.stdout.splitlines()
    rest = []
    for line in lines:
        if line.startswith(MARKER):
            measured = json.loads(line[len(MARKER):])
        else:
            rest.append(line)
    for line in reversed(rest):
        if line.strip():
            try:
                result = json.loads(line)
            except ValueError:
                result = None
            break
    if measured is None:  # pragma: no cover - the epilogue always prints
        raise RuntimeError(f"no measurements from the snippet; stdout was:\n{proc.stdout[-2000:]}")
    return {
        "peak_rss": int(measured["peak_rss"]),
        "baseline_rss": measured["baseline_rss"],
        "final_rss": int(measured["final_rss"]),
        "result": result,
        "stdout": "\n".join(rest),
        "stderr": proc.stderr,
        "seconds": seconds,
    }
