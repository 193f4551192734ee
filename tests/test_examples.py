"""Every example runs to completion in a fresh subprocess, within a time limit."""

import os
import pathlib
import re
import shutil
import subprocess
import sys

import pytest

EXAMPLES = pathlib.Path(__file__).resolve().parents[1] / "examples"
#: the examples promise < 60 s on 2 cores; the limit leaves room for a loaded CI machine.
TIMEOUT = 120
SCRIPTS = sorted(EXAMPLES.glob("*.py"))


def test_expected_examples_exist():
    names = {p.name for p in SCRIPTS}
    assert {"quickstart.py", "out_of_core_zarr.py", "hdf5_matrix.py", "distributed_localcluster.py"} <= names
    assert (EXAMPLES / "slurm_job.sh").exists()


@pytest.mark.slow  # each example runs in a subprocess on real data
@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_example_runs(script, tmp_path):
    env = dict(os.environ, OMP_NUM_THREADS="1", MPLBACKEND="Agg")
    proc = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True,
                          text=True, timeout=TIMEOUT)
    assert proc.returncode == 0, f"{script.name} failed:\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    assert proc.stdout.strip(), f"{script.name} printed nothing"
    assert "Traceback" not in proc.stderr


def test_slurm_script_syntax_and_flags():
    script = EXAMPLES / "slurm_job.sh"
    bash = shutil.which("bash")
    assert bash is not None
    proc = subprocess.run([bash, "-n", str(script)], capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    text = script.read_text()
    directives = re.findall(r"^#SBATCH\s+(\S+)", text, flags=re.M)
    assert "--signal=B:USR1@300" in directives and "--requeue" in directives
    assert re.search(r"dask-mpi .*--scheduler-file", text)
    # the fit command (with its continuation lines) uses the cluster and the checkpoint
    fit = re.search(r"^chunked-medoids\b[^\n]*\bfit\b(?:[^\n]*\\\n)*[^\n]*", text, flags=re.M)
    assert fit is not None
    assert "--scheduler-file" in fit.group(0) and "--checkpoint " in fit.group(0)
    assert re.search(r"^\s*3\)\s.*\n?.*scontrol requeue", text, flags=re.M)  # exit code 3 -> requeue
    assert re.search(r"trap .*kill -USR1", text)  # the batch shell forwards the signal
