"""SIGTERM latency of checkpointed runs, and resume equality (issue "safe by default").

For every job below the benchmark first runs the command to the end (the reference result
and its duration ``T``), then runs it again with a fresh checkpoint, sends SIGTERM at
``--at`` × T after the start, and measures the time from the signal to the process exit
(which must be exit code 3, "checkpoint saved").  The same command is then rerun to resume;
its medoids must equal the reference's.

Jobs (on a zarr store of ``--n`` real pixels of scikit-image's ``hubble_deep_field``,
Euclidean, built by ``chunked-medoids build`` first):

* ``build``: the store build itself (SIGTERM mid-build; the rerun resumes the stripes and
  the store must equal a store built in one go, byte for byte in its chunks),
* ``fit-build``: ``fit --init build -k 30`` (BUILD dominates the run),
* ``fit-lab``: ``fit --init lab -k 60``,
* ``clara``: ``clara -k 30 --n-samples 10`` on the store,
* ``dynmsc``: ``dynmsc --kmin 2 --kmax 12`` on the store.

Run (not in CI; about 5-10 minutes at the default size)::

    python benchmarks/bench_sigterm.py --n 15000 > sigterm.json

Prints one JSON document: per job the reference duration, the signal time, the latency,
the exit code and whether the resumed result equals the reference.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import emit, hubble_pixels, machine  # noqa: E402

CLI = [sys.executable, "-m", "chunked_medoids"]


def _run(args, timeout=3600):
    t0 = time.perf_counter()
    p = subprocess.run(CLI + args, capture_output=True, text=True, timeout=timeout)
    return p.returncode, time.perf_counter() - t0, p.stderr


def _interrupt(args, at):
    """Start ``args``, SIGTERM after ``at`` seconds; (exit code, latency s, stderr)."""
    p = subprocess.Popen(CLI + args, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    time.sleep(at)
    if p.poll() is not None:
        return p.returncode, None, p.stderr.read()
    t_sig = time.perf_counter()
    p.send_signal(signal.SIGTERM)
    p.wait()
    return p.returncode, time.perf_counter() - t_sig, p.stderr.read()


def _chunk_digest(store):
    h = hashlib.sha256()
    for path in sorted(Path(store).rglob("*")):
        if path.is_file() and path.name != "zarr.json":
            h.update(str(path.relative_to(store)).encode())
            h.update(path.read_bytes())
    return h.hexdigest()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=15000)
    ap.add_argument("--at", type=float, default=0.3, help="signal at this fraction of the reference time")
    ap.add_argument("--memory-limit", default="1GiB")
    ap.add_argument("--jobs", default="build,fit-build,fit-lab,clara,dynmsc")
    ap.add_argument("--workdir", default=None)
    args = ap.parse_args(argv)
    work = Path(args.workdir or tempfile.mkdtemp(prefix="bench_sigterm_"))
    work.mkdir(parents=True, exist_ok=True)
    X = hubble_pixels(args.n).astype(np.float32)
    feats = work / "X.npy"
    np.save(feats, X)
    mem = ["--memory-limit", args.memory_limit]
    store = work / "D.zarr"
    out = {"n": args.n, "at": args.at, "memory_limit": args.memory_limit, "machine": machine(), "jobs": {}}
    jobs = args.jobs.split(",")

    # the store (reference build, timed); the build job interrupts a second build
    rc, t_build, err = _run(["build", str(feats), "-o", str(store), "--metric", "euclidean", "--overwrite", *mem])
    assert rc == 0, err
    if "build" in jobs:
        store2 = work / "D2.zarr"
        rc_i, lat, err_i = _interrupt(["build", str(feats), "-o", str(store2), "--metric", "euclidean", *mem],
                                      args.at * t_build)
        rc_r, t_res, err_r = _run(["build", str(feats), "-o", str(store2), "--metric", "euclidean", *mem])
        out["jobs"]["build"] = {"reference_s": t_build, "signal_at_s": args.at * t_build, "exit": rc_i,
                                "latency_s": lat, "resume_exit": rc_r, "resume_s": t_res,
                                "identical": rc_r == 0 and _chunk_digest(store) == _chunk_digest(store2)}
        shutil.rmtree(store2, ignore_errors=True)
        print(f"build: {out['jobs']['build']}", file=sys.stderr)

    common = [str(store), "--precomputed", "--seed", "1", *mem]
    specs = {
        "fit-build": ["fit", *common, "-k", "30", "--init", "build"],
        "fit-lab": ["fit", *common, "-k", "60", "--init", "lab"],
        "clara": ["clara", *common, "-k", "30", "--n-samples", "10"],
        "dynmsc": ["dynmsc", *common, "--kmin", "2", "--kmax", "12"],
    }
    for name, cmd in specs.items():
        if name not in jobs:
            continue
        ref_dir, run_dir = work / f"{name}-ref", work / f"{name}-run"
        ck_ref, ck = work / f"{name}-ref.ckpt", work / f"{name}.ckpt"
        for p in (ck_ref, ck):
            p.unlink(missing_ok=True)
        rc, t_ref, err = _run([*cmd, "--checkpoint", str(ck_ref), "-o", str(ref_dir), "--overwrite"])
        assert rc == 0, (name, err)
        rc_i, lat, err_i = _interrupt([*cmd, "--checkpoint", str(ck), "-o", str(run_dir), "--overwrite"],
                                      args.at * t_ref)
        rc_r, t_res, err_r = _run([*cmd, "--checkpoint", str(ck), "-o", str(run_dir), "--overwrite"])
        same = (rc_r == 0 and np.array_equal(np.load(ref_dir / "medoids.npy"), np.load(run_dir / "medoids.npy"))
                and np.array_equal(np.load(ref_dir / "labels.npy"), np.load(run_dir / "labels.npy")))
        out["jobs"][name] = {"reference_s": t_ref, "signal_at_s": args.at * t_ref, "exit": rc_i,
                             "latency_s": lat, "resume_exit": rc_r, "resume_s": t_res, "identical": bool(same),
                             "stderr_tail": err_i.strip().splitlines()[-1:] if rc_i != 3 else None}
        print(f"{name}: {out['jobs'][name]}", file=sys.stderr)
    out["build_s"] = t_build
    if not args.workdir:
        shutil.rmtree(work, ignore_errors=True)
    emit(out)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    main()
