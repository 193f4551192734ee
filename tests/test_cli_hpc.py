"""The command line as an HPC user meets it (issue 14): file modes under the umask, a drawn
and recorded seed, refusal to overwrite results, errors in command-line words, the build
and compile notices, the DynMSC boundary warning, gower on CSV categories, plots."""

import json
import os
import stat
import subprocess
import sys

import numpy as np
import pytest

import chunked_medoids as cm
from tests.test_cli import assert_usage_error, ok, run_cli


def run_umask(mask, *args, env=None, timeout=120):
    """``python -m chunked_medoids ARGS`` in a process with umask ``mask``."""
    env = dict(os.environ, OMP_NUM_THREADS="1", **(env or {}))
    return subprocess.run([sys.executable, "-m", "chunked_medoids", *map(str, args)], env=env,
                          capture_output=True, text=True, timeout=timeout,
                          preexec_fn=lambda: os.umask(mask))


@pytest.fixture(scope="module")
def data(tmp_path_factory):
    """Three blobs X (n=90, d=3) as .npy, their euclidean matrix as a built zarr store."""
    d = tmp_path_factory.mktemp("hpc")
    rng = np.random.default_rng(3)
    X = np.concatenate([c + rng.normal(size=(30, 3)) for c in 10.0 * np.eye(3)])
    np.save(d / "X.npy", X)
    cm.build_dissimilarity(X, str(d / "D.zarr"), "euclidean")
    return d, X


def _mode(path):
    return stat.S_IMODE(os.stat(path).st_mode)


# ---------------------------------------------------------------------------------------
# files and reproducibility
# ---------------------------------------------------------------------------------------
@pytest.mark.parametrize(("mask", "expected"), [(0o022, 0o644), (0o027, 0o640)])
def test_result_and_checkpoint_modes_follow_the_umask(data, tmp_path, mask, expected):
    d, X = data
    out, ckpt, plots = tmp_path / "out", tmp_path / "run.ckpt", tmp_path / "plots"
    ok(run_umask(mask, "fit", d / "D.zarr", "-k", 3, "--seed", 1, "-o", out, "--checkpoint", ckpt,
                 "--plots", plots))
    for path in [out / name for name in ("labels.npy", "medoids.npy", "summary.json")] + [ckpt]:
        assert _mode(path) == expected, (path, oct(_mode(path)))
    for name in os.listdir(plots):
        assert _mode(plots / name) == expected, (name, oct(_mode(plots / name)))


def test_atomic_write_bytes_honours_the_umask(tmp_path):
    from chunked_medoids.checkpoint import atomic_write_bytes

    old = os.umask(0o002)
    try:
        atomic_write_bytes(str(tmp_path / "a.bin"), b"x")
    finally:
        os.umask(old)
    assert _mode(tmp_path / "a.bin") == 0o664
    assert (tmp_path / "a.bin").read_bytes() == b"x"


def test_unseeded_fit_records_a_seed_that_reproduces_it(data, tmp_path):
    d, X = data
    first = tmp_path / "first"
    ok(run_cli("fit", d / "D.zarr", "-k", 3, "--init", "random", "-o", first, "--checkpoint",
               tmp_path / "a.ckpt"))
    summary = json.loads((first / "summary.json").read_text())
    seed = summary["seed"]
    assert isinstance(seed, int) and summary["seed_drawn"] is True
    assert summary["parameters"]["random_state"] == seed
    # the checkpoint records the same seed
    with np.load(tmp_path / "a.ckpt") as npz:
        header = json.loads(str(npz["__header__"]))
    assert seed in {header["params"].get("seed"), header["params"].get("random_state")}
    again = tmp_path / "again"
    ok(run_cli("fit", d / "D.zarr", "-k", 3, "--init", "random", "--seed", seed, "-o", again))
    for name in ("labels.npy", "medoids.npy"):
        assert np.array_equal(np.load(first / name), np.load(again / name))
    rerun = json.loads((again / "summary.json").read_text())
    assert rerun["loss"] == summary["loss"] and rerun["loss_history"] == summary["loss_history"]
    assert rerun["seed"] == seed and rerun["seed_drawn"] is False
    ref = cm.fasterpam(str(d / "D.zarr"), 3, init="random", random_state=seed)
    assert np.array_equal(np.load(first / "medoids.npy"), ref.medoids)


def test_unseeded_clara_records_a_seed_that_reproduces_it(data, tmp_path):
    d, X = data
    ok(run_cli("clara", d / "X.npy", "--metric", "euclidean", "-k", 3, "--n-samples", 2,
               "--sample-size", 40, "-o", tmp_path / "a"))
    seed = json.loads((tmp_path / "a" / "summary.json").read_text())["seed"]
    ref = cm.clara(str(d / "X.npy"), 3, metric="euclidean", n_samples=2, sample_size=40, random_state=seed)
    assert np.array_equal(np.load(tmp_path / "a" / "medoids.npy"), ref.medoids)


def test_existing_results_in_output_are_refused_without_overwrite(data, tmp_path):
    d, X = data
    out = tmp_path / "out"
    ok(run_cli("fit", d / "D.zarr", "-k", 3, "--seed", 0, "-o", out))
    before = (out / "summary.json").read_bytes()
    proc = run_cli("fit", d / "D.zarr", "-k", 2, "--seed", 0, "-o", out)
    assert_usage_error(proc, "-o/--output", "already holds results", "--overwrite")
    assert (out / "summary.json").read_bytes() == before  # untouched
    ok(run_cli("fit", d / "D.zarr", "-k", 2, "--seed", 0, "-o", out, "--overwrite"))
    assert json.loads((out / "summary.json").read_text())["k"] == 2
    # the same for dynmsc
    assert_usage_error(run_cli("dynmsc", d / "D.zarr", "--kmax", 3, "-o", out), "--overwrite")


def test_rerun_with_its_checkpoint_may_write_into_its_output(data, tmp_path):
    """The rerun of a checkpointed command (resume after an interruption) is not refused."""
    d, X = data
    out, ckpt = tmp_path / "out", tmp_path / "c.ckpt"
    args = ("fit", d / "D.zarr", "-k", 3, "--seed", 2, "--checkpoint", ckpt, "-o", out)
    first = ok(run_cli(*args))
    again = ok(run_cli(*args))
    assert first.stdout.split("time:")[0] == again.stdout.split("time:")[0]


# ---------------------------------------------------------------------------------------
# messages in the command line's words
# ---------------------------------------------------------------------------------------
def test_build_over_another_store_names_the_overwrite_flag(data, tmp_path):
    d, X = data
    proc = run_cli("build", d / "X.npy", "-o", d / "D.zarr", "--metric", "manhattan")
    assert_usage_error(proc, "--overwrite")
    assert "overwrite=True" not in proc.stderr


def test_rebuilding_a_complete_store_says_already_complete(data, tmp_path):
    d, X = data
    store = tmp_path / "B.zarr"
    assert "built " in ok(run_cli("build", d / "X.npy", "-o", store, "--metric", "euclidean")).stdout
    proc = ok(run_cli("build", d / "X.npy", "-o", store, "--metric", "euclidean"))
    assert proc.stdout.startswith("already complete: ") and "nothing was computed" in proc.stdout


def test_incomplete_store_message_names_the_cli_fix(data, tmp_path):
    d, X = data
    store = tmp_path / "I.zarr"
    cm.build_dissimilarity(X, str(store), "euclidean", block_rows=30)
    import zarr

    arr = zarr.open_array(str(store), mode="r+")  # an unfinished build, as the builder leaves it
    meta = dict(arr.attrs["chunked_medoids"])
    meta.update(complete=False, completed_stripes=[0])
    arr.attrs["chunked_medoids"] = meta
    proc = run_cli("fit", store, "-k", 3)
    assert_usage_error(proc, "incomplete", "chunked-medoids build")
    assert "build_dissimilarity(" not in proc.stderr and "allow_incomplete" not in proc.stderr


def test_csv_with_precomputed_says_use_metric(tmp_path):
    p = tmp_path / "wine.csv"
    p.write_text("a,b\n1,2\n3,4\n")
    proc = run_cli("fit", p, "--precomputed", "-k", 2)
    assert_usage_error(proc, "--precomputed", "wine.csv", "--metric NAME")
    assert "source kind" not in proc.stderr.lower() and "kind=" not in proc.stderr


def test_output_that_is_a_file_names_the_option(data, tmp_path):
    d, X = data
    proc = run_cli("fit", d / "D.zarr", "-k", 3, "-o", d / "X.npy")
    assert_usage_error(proc, "-o/--output", "X.npy", "not a directory")
    assert "Errno" not in proc.stderr


def test_unwritable_plots_directory_names_the_option(data):
    d, X = data
    proc = run_cli("fit", d / "D.zarr", "-k", 3, "--plots", "/proc/plots")
    assert_usage_error(proc, "--plots", "/proc/plots", "cannot create")
    assert "Errno" not in proc.stderr


@pytest.mark.parametrize(("args", "flag", "python_name"), [
    (["--memory-limit", "lots"], "--memory-limit", "memory_limit"),
    (["--max-iter", "-1"], "--max-iter", "max_iter"),
    (["--seed", "-1"], "--seed", "random_state"),
])
def test_api_errors_lead_with_the_option(data, args, flag, python_name):
    d, X = data
    proc = run_cli("fit", d / "D.zarr", "-k", 3, *args)
    assert_usage_error(proc, python_name)
    assert proc.stderr.startswith(f"chunked-medoids: error: {flag}")


def test_cli_wording_keeps_the_api_message():
    from chunked_medoids.cli._messages import cli_wording

    flags = {"memory_limit": "--memory-limit", "k": "-k/--n-clusters", "overwrite": "--overwrite"}
    assert cli_wording("k must be >= 1, got 0", flags) == "-k/--n-clusters: k must be >= 1, got 0"
    assert cli_wording("store 'x' exists; pass overwrite=True to replace it", flags) == \
        "store 'x' exists; pass --overwrite to replace it"
    assert cli_wording("[Errno 17] File exists: 'a'", {}) == "File exists: 'a'"


def test_python_api_keeps_its_wording(data, tmp_path):
    d, X = data
    with pytest.raises(cm.StoreExistsError, match=r"overwrite=True"):
        cm.build_dissimilarity(X, str(d / "D.zarr"), "manhattan")


# ---------------------------------------------------------------------------------------
# notices and warnings
# ---------------------------------------------------------------------------------------
@pytest.mark.slow  # compiles the kernels a build needs from scratch
def test_cold_numba_cache_prints_one_notice(data, tmp_path):
    d, X = data
    env = {"NUMBA_CACHE_DIR": str(tmp_path / "numba")}
    args = ("build", d / "X.npy", "--metric", "cityblock", "--progress")
    cold = ok(run_umask(0o022, *args, "-o", tmp_path / "a.zarr", env=env, timeout=300))
    notes = [line for line in cold.stderr.splitlines() if "compiling the numba kernels" in line]
    assert len(notes) == 1, cold.stderr
    warm = ok(run_umask(0o022, *args, "-o", tmp_path / "b.zarr", env=env, timeout=300))
    assert "compiling" not in warm.stderr


def test_dynmsc_warns_when_the_best_k_is_kmax(data, tmp_path):
    d, X = data
    proc = ok(run_cli("dynmsc", d / "D.zarr", "--kmin", 2, "--kmax", 3, "--plots", tmp_path / "p",
                      "-o", tmp_path / "o"))
    assert "best k:   3" in proc.stdout
    warnings = [line for line in proc.stderr.splitlines() if line.startswith("chunked-medoids: warning:")]
    assert len(warnings) == 1 and "--kmax" in warnings[0]
    assert json.loads((tmp_path / "o" / "summary.json").read_text())["warning"] == \
        warnings[0].split("warning: ", 1)[1]
    assert (tmp_path / "p" / "scores.png").read_bytes()[:4] == b"\x89PNG"
    # inside the range: no warning
    proc = ok(run_cli("dynmsc", d / "D.zarr", "--kmin", 2, "--kmax", 5))
    assert "best k:   3" in proc.stdout and "warning" not in proc.stderr


def test_dynmsc_boundary_messages():
    from chunked_medoids.cli.dynmsc import boundary_warning

    assert "--kmax" in boundary_warning(8, 2, 8)
    assert "--kmin" in boundary_warning(4, 4, 8)
    assert "no clear cluster structure" in boundary_warning(2, 2, 8)
    assert boundary_warning(5, 2, 8) is None and boundary_warning(3, 3, 3) is None


def test_choose_k_example_warns_at_the_boundary():
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(__file__)), "examples"))
    try:
        import choose_k
    finally:
        sys.path.pop(0)
    with pytest.warns(UserWarning, match=r"is km(in|ax)") as record:
        res = choose_k.choose_k(kmax=3, kmin=2, n_samples=300, verbose=False)
    assert res.k in (2, 3)  # with only two k tried, the best is always at an edge
    assert ("is kmax" if res.k == 3 else "is kmin") in str(record[0].message)


# ---------------------------------------------------------------------------------------
# gower on CSV categories
# ---------------------------------------------------------------------------------------
def test_gower_reads_text_columns_of_a_csv_as_categories(tmp_path):
    rng = np.random.default_rng(0)
    num = rng.normal(size=(40, 2))
    colour = rng.choice(["red", "green", "blue"], size=40)
    p = tmp_path / "mixed.csv"
    with open(p, "w") as fh:
        fh.write("x,colour,y\n")
        for (a, b), c in zip(num, colour):
            fh.write(f"{float(a)!r},{c},{float(b)!r}\n")
    out = tmp_path / "out"
    ok(run_cli("fit", p, "--metric", "gower", "-k", 3, "--init", "build", "-o", out))
    codes = {c: i for i, c in enumerate(dict.fromkeys(colour))}
    X = np.column_stack([num[:, 0], [codes[c] for c in colour], num[:, 1]])
    ref = cm.fasterpam(cm.from_features(X, "gower", categorical=[1]), 3, init="build")
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)
    assert json.loads((out / "summary.json").read_text())["input"]["metric_params"]["categorical"] == [1]
    # other metrics still refuse text, and say what to do
    assert_usage_error(run_cli("fit", p, "--metric", "euclidean", "-k", 3), f"'{colour[0]}'", "--metric gower")


def test_read_csv_categories_in_process(tmp_path):
    from chunked_medoids import cli

    p = tmp_path / "c.csv"
    p.write_text("a,b\n1,x\n2,y\n3,x\n")
    X, cat = cli.read_csv(p, categories=True)
    assert cat == [1] and np.array_equal(X, [[1, 0], [2, 1], [3, 0]])
    p.write_text("x,1\ny,2\n")  # no header: text in a categorical column is data
    X, cat = cli.read_csv(p, categories=True)
    assert cat == [0] and X.shape == (2, 2)


# ---------------------------------------------------------------------------------------
# cluster client
# ---------------------------------------------------------------------------------------
@pytest.mark.distributed  # (hence slow) starts a scheduler and a worker process
def test_scheduler_log_has_no_comm_closed_error(data, tmp_path):
    """The CLI's client leaves the scheduler cleanly: no CommClosedError in its log."""
    d, X = data
    sched = tmp_path / "sched.json"
    log = open(tmp_path / "scheduler.log", "w")
    scheduler = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_scheduler", "--no-dashboard",
                                  "--scheduler-file", str(sched), "--host", "127.0.0.1"],
                                 stdout=log, stderr=subprocess.STDOUT)
    worker = None
    try:
        import time

        t0 = time.monotonic()
        while not sched.exists() and time.monotonic() - t0 < 60:
            time.sleep(0.2)
        worker = subprocess.Popen([sys.executable, "-m", "distributed.cli.dask_worker", "--scheduler-file",
                                   str(sched), "--nthreads", "1", "--no-dashboard"],
                                  stdout=log, stderr=subprocess.STDOUT)
        ok(run_cli("fit", d / "D.zarr", "-k", 3, "--seed", 0, "--scheduler-file", sched, timeout=180))
        time.sleep(1.0)
    finally:
        for proc in (worker, scheduler):
            if proc is not None:
                proc.terminate()
                proc.wait(timeout=60)
        log.close()
    text = (tmp_path / "scheduler.log").read_text()
    assert "Receive client connection" in text or "Remove client" in text, text
    assert "CommClosedError" not in text, text


# ---------------------------------------------------------------------------------------
# plots: what is drawn and how it is labelled (matplotlib artists, not pixels)
# ---------------------------------------------------------------------------------------
@pytest.fixture
def plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    yield plt
    plt.close("all")


def test_silhouette_plot_says_which_silhouette(data, plt):
    from chunked_medoids import plotting

    d, X = data
    D = cm.open_dissimilarity(str(d / "D.zarr"))
    res = cm.fasterpam(D, 3, init="build")
    ax = plotting.plot_silhouette(D, res, ax=plt.subplots()[1])
    assert "medoid silhouette" in ax.get_title() and "medoid" in ax.get_xlabel()
    avg = float(cm.medoid_silhouette(D, res.medoids))
    assert ax.lines[0].get_xdata()[0] == pytest.approx(avg)
    ax = plotting.plot_silhouette(D, res, ax=plt.subplots()[1], kind="classic")
    assert "silhouette (classic)" in ax.get_title() and "medoid" not in ax.get_xlabel()
    assert ax.lines[0].get_xdata()[0] == pytest.approx(cm.silhouette(D, res.labels))
    # y labels name the clusters unambiguously (not bare slot numbers)
    names = [t.get_text() for t in ax.get_yticklabels()]
    sizes = np.bincount(res.labels, minlength=3)
    assert sorted(names) == sorted(f"cluster {c} (n={sizes[c]})" for c in range(3))
    with pytest.raises(cm.ChunkedMedoidsError, match="kind"):
        plotting.plot_silhouette(D, res, kind="mean")


def test_silhouette_plot_stays_readable_at_k_100(plt):
    from chunked_medoids import plotting

    rng = np.random.default_rng(1)
    X = rng.normal(size=(6000, 2))
    D = cm.from_features(X, "euclidean")
    res = cm.fasterpam(D, 100, init="random", random_state=0, max_iter=1)
    ax = plotting.plot_silhouette(D, res, ax=plt.subplots()[1])
    names = [t.get_text() for t in ax.get_yticklabels()]
    assert 0 < len(names) <= plotting.MAX_LABELLED_CLUSTERS
    assert all(name.startswith("cluster ") for name in names)
    assert len(ax.collections) == len(np.unique(res.labels))  # every cluster still drawn
    # ~60 points per cluster: each band is drawn from 50 quantiles, not from every point
    assert max(len(c.get_paths()[0].vertices) for c in ax.collections) <= 2 * 50 + 5


def test_convergence_plot_shows_relative_improvement_per_pass(data, plt):
    from chunked_medoids import plotting

    d, X = data
    res = cm.fasterpam(str(d / "D.zarr"), 3, init="random", random_state=4)
    fig, ax = plt.subplots()
    plotting.plot_convergence(res, ax=ax)
    assert np.allclose(ax.lines[0].get_ydata(), res.loss_history)
    twin = [a for a in fig.axes if a is not ax]
    assert len(twin) == 1 and "relative improvement" in twin[0].get_ylabel()
    h = np.asarray(res.loss_history)
    rel = (h[:-1] - h[1:]) / h[:-1]
    heights = np.array([p.get_height() for p in twin[0].patches], dtype=float)
    assert np.allclose(np.nan_to_num(heights), np.where(rel > 0, rel, 0.0))


def test_convergence_plot_of_clara_is_loss_per_sample(data, plt):
    from chunked_medoids import plotting

    d, X = data
    res = cm.clara(X, 3, n_samples=4, sample_size=30, random_state=1)
    ax = plotting.plot_convergence(res, ax=plt.subplots()[1])
    samples = res.extra["sample_losses"] if hasattr(res, "extra") and "sample_losses" in res.extra \
        else res.sample_losses
    assert ax.get_xlabel() == "sample number" and "pass" not in ax.get_title()
    assert np.allclose(ax.lines[0].get_ydata(), samples)
    assert np.allclose(ax.lines[0].get_xdata(), np.arange(1, len(samples) + 1))
    assert "4 sample(s)" in ax.get_title() and f"{res.loss:.6g}" in ax.get_title()


def test_cluster_size_ticks_are_readable(data, plt):
    from chunked_medoids import plotting

    d, X = data
    res = cm.fasterpam(str(d / "D.zarr"), 3, init="build")
    ax = plotting.plot_cluster_sizes(res, ax=plt.subplots()[1])
    ax.figure.canvas.draw()
    assert min(t.get_fontsize() for t in ax.get_xticklabels() + ax.get_yticklabels()) >= 10


def test_projection_plot_marks_the_medoids(data, plt):
    from chunked_medoids import plotting

    d, X = data
    res = cm.fasterpam(cm.from_features(X, "euclidean"), 3, init="build")
    ax = plotting.plot_projection(X, res, ax=plt.subplots()[1])
    points, medoids = ax.collections[0], ax.collections[-1]
    assert len(points.get_offsets()) == X.shape[0] and len(medoids.get_offsets()) == 3
    # the medoid markers sit on the projected medoid points
    offs = np.asarray(points.get_offsets())
    assert np.allclose(np.asarray(medoids.get_offsets()), offs[res.medoids])
    assert ax.get_xlabel().startswith("PC 1") and ax.get_legend().get_texts()[0].get_text() == "medoids"


def test_scores_plot_marks_the_best_k(plt):
    from chunked_medoids import plotting

    ax = plotting.plot_scores({2: 0.5, 3: 0.7, 4: 0.6}, ax=plt.subplots()[1])
    assert list(ax.lines[0].get_xdata()) == [2, 3, 4]
    assert list(ax.lines[1].get_xdata()) == [3] and "best k = 3" in ax.get_title()
    assert ax.get_ylabel() == "average medoid silhouette"


def test_fit_plots_on_features_include_the_projection_and_both_silhouettes(data, tmp_path):
    d, X = data
    plots = tmp_path / "plots"
    ok(run_cli("fit", d / "X.npy", "--metric", "euclidean", "-k", 3, "--seed", 0, "--plots", plots,
               "--plot-silhouette", "both"))
    assert sorted(os.listdir(plots)) == ["cluster_sizes.png", "convergence.png", "projection.png",
                                         "silhouette.png", "silhouette_classic.png"]


def test_matrix_errors_name_the_cli_fix(data, tmp_path):
    d, X = data
    (tmp_path / "plain").mkdir()
    proc = run_cli("fit", tmp_path / "plain", "--precomputed", "-k", 3)
    assert_usage_error(proc, "cannot open", "plain", ".npy file", "--metric NAME")
    assert "kind=" not in proc.stderr and "in-memory numpy array" not in proc.stderr
    proc = run_cli("fit", d / "X.npy", "--precomputed", "-k", 3)
    assert_usage_error(proc, "square", "--metric NAME instead of --precomputed")
    assert "from_features" not in proc.stderr
    proc = run_cli("fit", d / "X.npy", "--metric", "minkowski", "--metric-param", "p=0.5", "-k", 3)
    assert_usage_error(proc, "--metric-param", "0.5")


def test_no_validate_skips_the_matrix_check(data, tmp_path):
    """--no-validate: a matrix the user vouches for is not checked (neither by the CLI nor by
    the method, which gets validate=False when it takes that keyword)."""
    d, X = data
    D = cm.from_features(X, "euclidean").read_rows(0, X.shape[0]).astype(np.float64)
    D[3, 7] += 1e-3  # slightly asymmetric: refused by the check
    np.save(tmp_path / "D.npy", D)
    assert_usage_error(run_cli("fit", tmp_path / "D.npy", "--precomputed", "-k", 3), "symmetri")
    out = tmp_path / "out"
    ok(run_cli("fit", tmp_path / "D.npy", "--precomputed", "-k", 3, "--init", "build", "--no-validate", "-o", out))
    import inspect

    trust = {"validate": False} if "validate" in inspect.signature(cm.fasterpam).parameters else {}
    ref = cm.fasterpam(D, 3, init="build", **trust)
    assert np.array_equal(np.load(out / "medoids.npy"), ref.medoids)


def test_projection_plot_for_features_in_a_zarr_store(data, tmp_path):
    import zarr

    d, X = data
    zarr.save_array(str(tmp_path / "F.zarr"), X)
    plots = tmp_path / "plots"
    ok(run_cli("fit", tmp_path / "F.zarr", "--metric", "euclidean", "-k", 3, "--seed", 0, "--plots", plots))
    assert "projection.png" in os.listdir(plots)


# ---------------------------------------------------------------------------------------
# progress: one bar per phase in its own unit, and -v log lines for every phase
# ---------------------------------------------------------------------------------------
def test_build_init_shows_one_bar_counting_medoids(data):
    d, X = data
    proc = ok(run_cli("fit", d / "D.zarr", "-k", 3, "--init", "build", "--method", "fasterpam", "--progress",
                      "-v", "--memory-limit", "256KiB"))
    err = proc.stderr
    assert "BUILD: 3/3 medoid" in err  # the bar, at its end, in medoids
    assert "BUILD 2" not in err and "BUILD 3" not in err  # no restarting per-pass bars
    assert "BUILD: 1/3 medoids" in err.replace("\r", "\n")  # -v log line per medoid
    assert "pass 1" in err  # the swap passes keep their block bars / log lines


def test_lab_and_clara_phases_are_counted(data):
    d, X = data
    proc = ok(run_cli("fit", d / "D.zarr", "-k", 3, "--init", "lab", "--seed", 0, "--progress", "-v"))
    assert "LAB: 3/3 medoid" in proc.stderr
    proc = ok(run_cli("clara", d / "X.npy", "--metric", "euclidean", "-k", 3, "--n-samples", 3,
                      "--sample-size", 40, "--seed", 0, "--progress", "-v"))
    assert "samples scored: 3/3 sample" in proc.stderr
    assert "samples scored: 3 samples to go (of 3)" in proc.stderr  # the -v line at the start
