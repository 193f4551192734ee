"""The ``chunked-medoids`` command line: round trips in real subprocesses, equality with the
Python API, exit codes and messages, help texts, plots."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

import chunked_medoids as cm
from chunked_medoids import cli

TIMEOUT = 120


def run_cli(*args, cwd=None, timeout=TIMEOUT):
    """Run ``python -m chunked_medoids ARGS``; returns the CompletedProcess (text mode)."""
    env = dict(os.environ, OMP_NUM_THREADS="1")
    return subprocess.run([sys.executable, "-m", "chunked_medoids", *map(str, args)], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=timeout)


def ok(proc):
    assert proc.returncode == 0, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    return proc


def assert_usage_error(proc, *needles):
    assert proc.returncode == 2, f"rc={proc.returncode}\nstdout:\n{proc.stdout}\nstderr:\n{proc.stderr}"
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, f"expected a one-line message, got:\n{proc.stderr}"
    assert lines[0].startswith("chunked-medoids: error: "), lines[0]
    assert "Traceback" not in proc.stderr
    for needle in needles:
        assert needle in lines[0], f"{needle!r} not in {lines[0]!r}"


@pytest.fixture(scope="module")
def work(tmp_path_factory):
    """Features X (n=300, d=4) as .npy and .csv, and a zarr matrix built by the CLI."""
    d = tmp_path_factory.mktemp("cli")
    rng = np.random.default_rng(7)
    centers = 12.0 * np.eye(4)
    X = np.concatenate([c + rng.normal(size=(75, 4)) for c in centers])
    np.save(d / "X.npy", X)
    with open(d / "X.csv", "w") as fh:
        fh.write("a,b,c,d\n")
        for row in X:
            fh.write(",".join(repr(float(v)) for v in row) + "\n")
    proc = ok(run_cli("build", d / "X.npy", "-o", d / "D.zarr", "--metric", "euclidean",
                      "--memory-limit", "256KiB"))
    assert "300×300" in proc.stdout
    return d, X


# ---------------------------------------------------------------------------------------
# version, help
# ---------------------------------------------------------------------------------------
def test_version_and_top_level_help():
    proc = ok(run_cli("--version"))
    assert proc.stdout.strip() == f"chunked-medoids {cm.__version__}"
    proc = ok(run_cli("--help"))
    assert "exit codes:" in proc.stdout and "3  interrupted" in proc.stdout
    for name in _subcommands():
        assert f"    {name} " in proc.stdout


def test_console_script_entry_point_is_main():
    from importlib.metadata import entry_points

    eps = [ep for ep in entry_points(group="console_scripts") if ep.name == "chunked-medoids"]
    assert eps and eps[0].value == "chunked_medoids.cli:main"


def _subcommands():
    parser = cli.build_parser()
    action = next(a for a in parser._actions if isinstance(a, __import__("argparse")._SubParsersAction))
    return list(action.choices)


@pytest.mark.parametrize("command", _subcommands())
def test_every_subcommand_has_help_with_examples(command, capsys):
    assert cli.main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: chunked-medoids {command}")
    assert "examples:" in out and "exit codes:" in out


def test_choices_come_from_the_registries(capsys):
    assert cli.main(["fit", "--help"]) == 0
    out = " ".join(capsys.readouterr().out.split())
    for name in cm.METHODS:
        assert name in out
    for name in cm.INITS:
        assert name in out
    for name in cm.METRICS:
        assert name in out


def test_exit_code_constant_matches_checkpoint():
    from chunked_medoids.checkpoint import EXIT_INTERRUPTED

    assert cli.EXIT_INTERRUPTED == EXIT_INTERRUPTED == 3


def test_help_does_not_import_numba_or_dask():
    code = ("import sys; from chunked_medoids.cli import main\n"
            "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print(sorted(m for m in ('numba', 'dask', 'zarr', 'h5py', 'matplotlib') if m in sys.modules))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().splitlines()[-1] == "[]"


# ---------------------------------------------------------------------------------------
# round trip: build -> info -> fit -> silhouette -> dynmsc, clara
# ---------------------------------------------------------------------------------------
def test_info(work):
    d, X = work
    proc = ok(run_cli("info", d / "D.zarr"))
    assert "300 × 300" in proc.stdout and "float32" in proc.stdout and "euclidean" in proc.stdout
    assert "complete  yes" in proc.stdout
    info = json.loads(ok(run_cli("info", d / "D.zarr", "--json")).stdout)
    from chunked_medoids.builder import store_info

    ref = store_info(d / "D.zarr")
    assert info["shape"] == [300, 300] and info["complete"] is True
    assert info["chunks"] == ref["chunks"] and info["metric"] == "euclidean"
    assert info["chunks"][0] < 300  # the small memory limit gave several stripes


def test_built_store_equals_features(work):
    d, X = work
    D = cm.open_dissimilarity(str(d / "D.zarr"))
    assert np.array_equal(D.read_rows(0, 300), cm.from_features(X, "euclidean").read_rows(0, 300))


def test_fit_outputs_and_summary_match_api(work):
    d, X = work
    out = d / "fit_out"
    proc = ok(run_cli("fit", d / "D.zarr", "-k", 4, "--seed", 3, "--method", "fasterpam", "-o", out))
    assert "loss:" in proc.stdout
    ref = cm.fasterpam(str(d / "D.zarr"), 4, random_state=3)
    labels = np.load(out / "labels.npy")
    medoids = np.load(out / "medoids.npy")
    assert labels.dtype == np.int32 and medoids.dtype == np.int64
    assert np.array_equal(labels, ref.labels) and np.array_equal(medoids, ref.medoids)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == ref.loss
    assert summary["medoids"] == ref.medoids.tolist()
    assert summary["k"] == 4 and summary["n"] == 300 and summary["method"] == "fasterpam"
    assert summary["n_iter"] == ref.n_iter and summary["n_swap"] == ref.n_swap
    assert summary["loss_history"] == ref.loss_history
    assert summary["seconds"] > 0
    assert summary["input"]["fingerprint"] == cm.open_dissimilarity(str(d / "D.zarr")).fingerprint()
    assert summary["input"]["kind"] == "precomputed"
    assert summary["parameters"] == {"k": 4, "random_state": 3}
    # no temporary files left behind
    assert sorted(os.listdir(out)) == ["labels.npy", "medoids.npy", "summary.json"]


@pytest.mark.parametrize("fname", ["X.npy", "X.csv"])
def test_fit_on_features_matches_api(work, fname):
    d, X = work
    out = d / f"feat_{fname}"
    ok(run_cli("fit", d / fname, "--metric", "euclidean", "-k", 4, "--method", "fastpam2", "--init", "build",
               "-o", out))
    ref = cm.fastpam2(cm.from_features(X, "euclidean"), 4, init="build")
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert np.array_equal(np.load(out / "labels.npy"), ref.labels)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == ref.loss and summary["input"]["kind"] == "features"


def test_silhouette_commands_match_api(work):
    d, X = work
    out = d / "sil"
    ok(run_cli("fit", d / "D.zarr", "-k", 4, "--seed", 1, "-o", out))
    labels = np.load(out / "labels.npy")
    medoids = np.load(out / "medoids.npy")
    proc = ok(run_cli("silhouette", d / "D.zarr", "--labels", out / "labels.npy", "--samples-out", out / "s.npy"))
    score = float(proc.stdout.split("silhouette:")[1].split()[0])
    ref = cm.silhouette(str(d / "D.zarr"), labels)
    assert score == pytest.approx(ref, rel=1e-9)
    assert np.allclose(np.load(out / "s.npy"), cm.silhouette(str(d / "D.zarr"), labels, samples=True))
    proc = ok(run_cli("silhouette", d / "D.zarr", "--medoids", out / "medoids.npy"))
    score = float(proc.stdout.split("medoid silhouette:")[1].split()[0])
    assert score == pytest.approx(cm.medoid_silhouette(str(d / "D.zarr"), medoids), rel=1e-9)


def test_dynmsc_command(work):
    d, X = work
    out = d / "dyn"
    proc = ok(run_cli("dynmsc", d / "D.zarr", "--kmin", 2, "--kmax", 6, "-o", out))
    ref = cm.dynmsc(str(d / "D.zarr"), 6, kmin=2)
    assert f"best k:   {ref.k}" in proc.stdout
    summary = json.loads((out / "summary.json").read_text())
    assert summary["k"] == ref.k and summary["score"] == pytest.approx(float(ref.score))
    assert sorted(int(k) for k in summary["scores"]) == [2, 3, 4, 5, 6]
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert ref.k == 4  # four well separated blobs


def _result_lines(stdout):
    return [line for line in stdout.splitlines() if not line.startswith(("time:", "outputs:"))]


def test_dynmsc_checkpoint_and_resume(work, tmp_path):
    d, X = work
    ckpt = tmp_path / "dyn.ckpt"
    args = ("dynmsc", d / "D.zarr", "--kmin", 2, "--kmax", 5, "--seed", 1, "--init", "random")
    first = ok(run_cli(*args, "--checkpoint", ckpt, "--checkpoint-interval", 0, "-o", tmp_path / "a"))
    assert ckpt.exists()
    again = ok(run_cli(*args, "--checkpoint", ckpt, "-o", tmp_path / "b"))  # finished checkpoint
    assert _result_lines(first.stdout) == _result_lines(again.stdout)
    for name in ("medoids.npy", "labels.npy"):
        assert np.array_equal(np.load(tmp_path / "a" / name), np.load(tmp_path / "b" / name))
    ref = cm.dynmsc(str(d / "D.zarr"), 5, kmin=2, random_state=1, init="random")
    assert np.array_equal(np.load(tmp_path / "a" / "medoids.npy"), ref.medoids)
    proc = run_cli(*args[:-2], "--checkpoint", ckpt)  # other parameters (init): refused
    assert proc.returncode == 2 and "does not match" in proc.stderr
    assert_usage_error(run_cli("dynmsc", d / "D.zarr", "--kmax", 3, "--checkpoint-interval", 1),
                       "--checkpoint-interval needs --checkpoint")


def test_dynmsc_checkpoint_interrupt_exit_3_then_resume(work, tmp_path, monkeypatch, capsys):
    """A stop signal during dynmsc saves the checkpoint and exits 3; the rerun resumes and
    prints exactly what an uninterrupted run prints (in-process, signal simulated)."""
    import logging
    import signal

    from chunked_medoids import checkpoint as ck

    d, X = work
    sigs = {s: signal.getsignal(s) for s in (signal.SIGTERM, signal.SIGUSR1)}
    log = logging.getLogger("chunked_medoids")
    saved_log = (list(log.handlers), log.level, log.propagate)
    ckpt = tmp_path / "dyn.ckpt"
    args = ["dynmsc", str(d / "D.zarr"), "--kmin", "2", "--kmax", "5", "--memory-limit", "256KiB",
            "--no-progress"]
    try:
        assert cli.main(args) == 0
        full = _result_lines(capsys.readouterr().out)
        calls = {"n": 0}
        orig = ck.Checkpoint.step

        def step(self, state_fn, force=False):
            calls["n"] += 1
            if calls["n"] == 4:
                self.stop.request(signal.SIGTERM)
            return orig(self, state_fn, force)

        monkeypatch.setattr(ck.Checkpoint, "step", step)
        assert cli.main(args + ["--checkpoint", str(ckpt), "--checkpoint-interval", "0"]) == 3
        assert "interrupted by signal" in capsys.readouterr().err and ckpt.exists()
        monkeypatch.setattr(ck.Checkpoint, "step", orig)
        assert cli.main(args + ["--checkpoint", str(ckpt), "--checkpoint-interval", "0"]) == 0
        assert _result_lines(capsys.readouterr().out) == full
    finally:
        for s, h in sigs.items():
            signal.signal(s, h)
        log.handlers[:], log.level, log.propagate = saved_log


@pytest.mark.parametrize("method", ["fastclarans", "clarans"])
def test_fit_clarans_checkpoint(work, tmp_path, method):
    d, X = work
    ckpt = tmp_path / "c.ckpt"
    args = ("fit", d / "D.zarr", "-k", 4, "--method", method, "--seed", 5, "--checkpoint", ckpt)
    ok(run_cli(*args, "-o", tmp_path / "a"))
    assert ckpt.exists()
    ok(run_cli(*args, "-o", tmp_path / "b"))
    ref = getattr(cm, method)(str(d / "D.zarr"), 4, random_state=5)
    for out in ("a", "b"):
        assert np.array_equal(np.load(tmp_path / out / "medoids.npy"), ref.medoids)
        assert np.array_equal(np.load(tmp_path / out / "labels.npy"), ref.labels)
        assert json.loads((tmp_path / out / "summary.json").read_text())["loss"] == ref.loss
    proc = run_cli(*args[:-4], "--seed", 6, "--checkpoint", ckpt)
    assert proc.returncode == 2 and "does not match" in proc.stderr


def test_clara_command_matches_api(work):
    d, X = work
    out = d / "clara"
    ok(run_cli("clara", d / "X.npy", "--metric", "euclidean", "-k", 4, "--seed", 5, "--n-samples", 3,
               "--sample-size", 60, "-o", out))
    ref = cm.clara(str(d / "X.npy"), 4, metric="euclidean", random_state=5, n_samples=3, sample_size=60)
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert np.array_equal(np.load(out / "labels.npy"), ref.labels)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["loss"] == ref.loss and summary["command"] == "clara"


def test_hdf5_store_with_custom_dataset(work, tmp_path):
    d, X = work
    h5 = tmp_path / "D.h5"
    ok(run_cli("build", d / "X.csv", "-o", h5, "--metric", "manhattan", "--output-dataset", "dist/l1"))
    info = json.loads(ok(run_cli("info", h5, "--dataset", "dist/l1", "--json")).stdout)
    assert info["shape"] == [300, 300] and info["metric"] == "manhattan" and info["complete"] is True
    out = tmp_path / "out"
    ok(run_cli("fit", h5, "--dataset", "dist/l1", "-k", 4, "--method", "pam", "-o", out))
    D = cm.open_dissimilarity(str(h5), dataset="dist/l1")
    assert np.array_equal(D.read_rows(0, 300), cm.from_features(X, "manhattan").read_rows(0, 300))
    ref = cm.pam(D, 4)
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert json.loads((out / "summary.json").read_text())["input"]["dataset"] == "dist/l1"


def test_fit_precomputed_npy_is_validated(work, tmp_path):
    d, X = work
    D = cm.from_features(X, "euclidean").read_rows(0, 300)
    np.save(tmp_path / "D.npy", D)
    out = tmp_path / "out"
    ok(run_cli("fit", tmp_path / "D.npy", "--precomputed", "-k", 4, "--method", "alternating", "--seed", 2,
               "-o", out))
    ref = cm.alternating(D, 4, random_state=2)
    assert np.array_equal(np.load(out / "labels.npy"), ref.labels)
    bad = D.copy()
    bad[3, 7] += 1.0  # asymmetric
    np.save(tmp_path / "bad.npy", bad)
    assert_usage_error(run_cli("fit", tmp_path / "bad.npy", "--precomputed", "-k", 4), "symmetri")


def test_fit_with_scheduler_file_matches_threads(work, local_cluster, tmp_path):
    d, X = work
    sched = tmp_path / "scheduler.json"
    local_cluster.write_scheduler_file(str(sched))
    out = tmp_path / "dist"
    ok(run_cli("fit", d / "D.zarr", "-k", 4, "--method", "fastpam1", "--init", "build",
               "--scheduler-file", sched, "-o", out))
    ref = cm.fastpam1(str(d / "D.zarr"), 4, init="build")
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert json.loads((out / "summary.json").read_text())["loss"] == ref.loss


def test_fit_with_local_workers_matches_threads(work, tmp_path):
    d, X = work
    out = tmp_path / "workers"
    ok(run_cli("fit", d / "D.zarr", "-k", 4, "--method", "fastpam2", "--init", "build", "--workers", 2,
               "-o", out))
    ref = cm.fastpam2(str(d / "D.zarr"), 4, init="build")
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)


def test_fit_plots(work, tmp_path):
    d, X = work
    plots = tmp_path / "plots"
    ok(run_cli("fit", d / "D.zarr", "-k", 4, "--seed", 0, "--plots", plots))
    names = sorted(os.listdir(plots))
    assert names == ["cluster_sizes.png", "convergence.png", "silhouette.png"]
    for name in names:
        assert (plots / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_demo(tmp_path):
    proc = ok(run_cli("demo", "--output", tmp_path / "demo", timeout=60))
    ari = float(proc.stdout.split("ARI:")[1].split()[0])
    assert ari > 0.5
    for name in ("labels.npy", "medoids.npy", "summary.json", "medoids.png", "convergence.png", "silhouette.png"):
        assert (tmp_path / "demo" / name).exists(), name
    assert json.loads((tmp_path / "demo" / "summary.json").read_text())["k"] == 10


# ---------------------------------------------------------------------------------------
# errors: exit code 2 with a one-line message
# ---------------------------------------------------------------------------------------
ERROR_CASES = {
    "missing-file": (["fit", "{d}/nope.zarr", "-k", "3"], ["nope.zarr", "does not exist"]),
    "k-zero": (["fit", "{d}/D.zarr", "-k", "0"], ["k", "got 0"]),
    "k-too-large": (["fit", "{d}/D.zarr", "-k", "301"], ["n = 300", "got 301"]),
    "k-not-int": (["fit", "{d}/D.zarr", "-k", "three"], ["-k", "three"]),
    "unknown-method": (["fit", "{d}/D.zarr", "-k", "3", "--method", "kmeans"],
                       ["--method", "kmeans", "fasterpam", "pam", "alternating"]),
    "bad-metric": (["fit", "{d}/X.npy", "-k", "3", "--metric", "euclidian"], ["--metric", "euclidian", "manhattan"]),
    "features-without-metric": (["fit", "{d}/X.npy", "-k", "3"], ["--metric", "--precomputed"]),
    "not-square": (["fit", "{d}/X.npy", "-k", "3", "--precomputed"], ["square"]),
    "option-not-taken": (["fit", "{d}/D.zarr", "-k", "3", "--method", "clarans", "--max-iter", "3"],
                         ["--max-iter", "clarans"]),
    "bad-memory-limit": (["fit", "{d}/D.zarr", "-k", "3", "--memory-limit", "lots"], ["memory_limit", "lots"]),
    "build-bad-suffix": (["build", "{d}/X.npy", "-o", "{d}/D.txt", "--metric", "euclidean"], [".zarr", ".h5"]),
    "build-exists": (["build", "{d}/X.npy", "-o", "{d}/D.zarr", "--metric", "manhattan"], ["overwrite"]),
    "info-missing": (["info", "{d}/missing.zarr"], ["missing.zarr"]),
    "silhouette-both": (["silhouette", "{d}/D.zarr", "--labels", "a.npy", "--medoids", "b.npy"], ["--medoids"]),
}


@pytest.mark.parametrize("case", sorted(ERROR_CASES))
def test_bad_input_exit_code_2(work, case):
    d, X = work
    args, needles = ERROR_CASES[case]
    proc = run_cli(*[a.format(d=d) for a in args])
    assert_usage_error(proc, *needles)


def test_debug_shows_traceback(work):
    d, X = work
    proc = run_cli("--debug", "fit", d / "D.zarr", "-k", "0")
    assert proc.returncode != 0 and "Traceback" in proc.stderr


# ---------------------------------------------------------------------------------------
# pieces, in process
# ---------------------------------------------------------------------------------------
def test_read_csv_header_and_delimiters(tmp_path):
    p = tmp_path / "a.csv"
    p.write_text("x;y\n1;2\n3.5;-4e2\n\n")
    assert np.array_equal(cli.read_csv(p), [[1, 2], [3.5, -400]])
    p.write_text("1\t2\t3\n4\t5\t6\n")
    assert np.array_equal(cli.read_csv(p), [[1, 2, 3], [4, 5, 6]])
    p.write_text("1,2\n3,oops\n")
    with pytest.raises(ValueError, match="oops"):
        cli.read_csv(p)
    p.write_text("1,2\n3,4,5\n")
    with pytest.raises(ValueError, match="line 2"):
        cli.read_csv(p)
    # chunked reading gives the same array
    rng = np.random.default_rng(0)
    X = rng.normal(size=(50, 3))
    np.savetxt(p, X, delimiter=",")
    assert np.array_equal(cli.read_csv(p, chunk_rows=7), cli.read_csv(p))
    assert np.allclose(cli.read_csv(p), X)


def test_write_outputs_is_atomic_and_summary_last(tmp_path, monkeypatch):
    from chunked_medoids import checkpoint

    res = cm.MedoidsResult(medoids=np.array([0, 2]), labels=np.array([0, 0, 1], dtype=np.int32), loss=1.0)
    order = []
    real = checkpoint.atomic_write_bytes

    def spy(path, data):
        order.append(os.path.basename(path))
        real(path, data)

    monkeypatch.setattr(checkpoint, "atomic_write_bytes", spy)
    cli.write_outputs(tmp_path / "o", res, {"loss": 1.0})
    assert order == ["labels.npy", "medoids.npy", "summary.json"]


def test_plotting_functions(work):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from chunked_medoids import plotting

    d, X = work
    D = cm.open_dissimilarity(str(d / "D.zarr"))
    res = cm.fasterpam(D, 4, init="build")
    fig, axes = plt.subplots(1, 3)
    ax = plotting.plot_convergence(res, ax=axes[0])
    assert np.allclose(ax.lines[0].get_ydata(), res.loss_history)
    ax = plotting.plot_cluster_sizes(res, ax=axes[1])
    assert [p.get_height() for p in ax.patches] == np.bincount(res.labels, minlength=4).tolist()
    ax = plotting.plot_silhouette(D, res, ax=axes[2])
    assert ax.collections  # one band per cluster
    plt.close(fig)
    s, labels = plotting.medoid_silhouette_samples(D, res.medoids)
    assert np.allclose(s, cm.medoid_silhouette(D, res.medoids, samples=True))
    assert np.array_equal(labels, res.labels)
    # the medoid table gives the same values
    M = D.take_rows(res.medoids).T.copy()
    assert np.allclose(plotting.medoid_silhouette_samples(M, res.medoids)[0], s)


def test_plotting_without_matplotlib_names_the_extra(monkeypatch):
    from chunked_medoids import plotting

    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    res = cm.MedoidsResult(medoids=np.array([0]), labels=np.zeros(3, dtype=np.int32), loss=0.0,
                           loss_history=[1.0, 0.0])
    with pytest.raises(ImportError, match=r"chunked-medoids\[plot\]"):
        plotting.plot_convergence(res)


def test_main_restores_the_callers_logging(tmp_path, capsys):
    """Running the CLI in-process (a notebook, a test) leaves the package logger as it was:
    handlers, level and propagation (so e.g. pytest's caplog still sees the records)."""
    import logging

    log = logging.getLogger("chunked_medoids")
    before = (list(log.handlers), log.level, log.propagate)
    D = np.abs(np.subtract.outer(np.arange(12.0), np.arange(12.0)))
    np.save(tmp_path / "D.npy", D)
    assert cli.main(["fit", str(tmp_path / "D.npy"), "--precomputed", "-k", "2", "-v"]) == 0
    assert cli.main(["fit", str(tmp_path / "missing.npy"), "--precomputed", "-k", "2"]) == 2
    assert (list(log.handlers), log.level, log.propagate) == before
