"""LargeCLARA: exact losses, local optimality, polish, determinism, clara()'s default, errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

from chunked_medoids import InvalidParameterError
from chunked_medoids._kernels.clara import PARTIALS
from chunked_medoids._kernels.clara_large import add_cell_sums, group_by_label
from chunked_medoids.algorithms import clara_large as cl
from chunked_medoids.algorithms import get_method
from chunked_medoids.algorithms.clara import clara
from chunked_medoids.algorithms.clara_large import LARGE_N, largeclara
from chunked_medoids.metrics import resolve_metric


def blobs(n, rng, centers=6, d=3, spread=1.0):
    c = rng.normal(scale=6.0, size=(centers, d))
    return c[rng.integers(0, centers, size=n)] + rng.normal(scale=spread, size=(n, d))


def exact_loss(X, medoids, weights=None):
    """Σ_o w_o·min_s d(o, medoid s), correctly rounded, and the labels (lowest slot on ties,
    a medoid in its own slot)."""
    D = resolve_metric("euclidean").pairwise_new(X, X[medoids])
    labels = np.argmin(D, axis=1)
    for s, m in enumerate(medoids):
        labels[m] = s
    dn = D[np.arange(X.shape[0]), labels]
    w = np.ones(X.shape[0]) if weights is None else weights
    return math.fsum((w * dn).tolist()), labels


SMALL = dict(sample_size=600, init_size=150, random_state=7)


# -- kernels ----------------------------------------------------------------------------------
def test_group_by_label_is_a_stable_counting_sort(rng):
    lab = rng.integers(0, 5, size=200).astype(np.int32)
    lab[lab == 3] = 4  # an empty group
    order = np.empty(200, dtype=np.int64)
    starts = np.empty(6, dtype=np.int64)
    group_by_label(lab, 5, order, starts)
    np.testing.assert_array_equal(order, np.argsort(lab, kind="stable"))
    np.testing.assert_array_equal(starts, np.concatenate([[0], np.cumsum(np.bincount(lab, minlength=5))]))


def test_add_cell_sums_is_exact_and_marks_non_finite(rng):
    dist = rng.random((300, 4)) * 10.0 ** rng.integers(-8, 8, size=(300, 4))
    dist[5, 2] = np.inf
    w = rng.random(1000)
    rows = rng.choice(1000, size=300, replace=False).astype(np.int64)
    partials = np.zeros((4, PARTIALS))
    counts = np.zeros(4, dtype=np.int64)
    # two halves (two "blocks") into the same expansions
    add_cell_sums(dist[:150], rows[:150], w, True, partials, counts)
    add_cell_sums(dist[150:], rows[150:], w, True, partials, counts)
    for col in (0, 1, 3):
        assert math.fsum(partials[col, :counts[col]].tolist()) == math.fsum((w[rows] * dist[:, col]).tolist())
    assert counts[2] == -1


# -- results ----------------------------------------------------------------------------------
def test_loss_and_labels_are_exact_on_all_points(rng):
    X = blobs(3000, rng)
    r = largeclara(X, 6, **SMALL)
    loss, labels = exact_loss(X, r.medoids)
    assert r.loss == loss
    np.testing.assert_array_equal(r.labels, labels)
    assert r.algorithm == "largeclara" and len(set(r.medoids.tolist())) == 6
    # every sample's full-data loss is exact too, and the winner is the best of them
    for m_loss in r.extra["sample_losses"]:
        assert m_loss >= r.extra["sample_losses"][r.extra["best_sample"]]
    assert r.loss_history[0] == min(r.extra["sample_losses"])
    assert all(b <= a for a, b in zip(r.loss_history, r.loss_history[1:]))


def test_whole_data_sample_is_a_fasterpam_local_optimum(rng):
    """sample_size = n and unbounded passes, no polish or refinement: no single swap improves
    the loss."""
    X = blobs(400, rng, centers=4)
    r = largeclara(X, 4, sample_size=400, init_size=60, n_samples=1, max_passes=100, polish_iter=0,
                   refine_distinct=0, random_state=2)
    D = resolve_metric("euclidean").pairwise_new(X, X)
    base = D[:, r.medoids].min(axis=1).sum()
    assert math.isclose(base, r.loss, rel_tol=1e-12)
    for s in range(4):
        for j in range(400):
            if j in r.medoids:
                continue
            m = r.medoids.copy()
            m[s] = j
            assert D[:, m].min(axis=1).sum() >= base * (1 - 1e-12)


def test_polish_never_increases_the_loss_and_can_improve_it(rng):
    X = blobs(4000, rng, centers=8, spread=2.0)
    improved = 0
    for seed in range(4):
        # the polish alone (the exact refinement after it, on these 4000 distinct rows, is off)
        base = largeclara(X, 8, sample_size=300, init_size=100, polish_iter=0, refine_distinct=0, random_state=seed)
        pol = largeclara(X, 8, sample_size=300, init_size=100, polish_iter=3, refine_distinct=0, random_state=seed)
        assert pol.loss <= base.loss
        assert pol.loss_history[0] == base.loss
        assert pol.loss == exact_loss(X, pol.medoids)[0]
        improved += pol.loss < base.loss
    assert improved >= 1  # small samples leave room: the polish finds exact improvements


def test_weights_give_the_exact_weighted_loss(rng):
    X = blobs(2000, rng)
    w = rng.random(2000) * 3
    r = largeclara(X, 5, weights=w, **SMALL)
    assert r.loss == exact_loss(X, r.medoids, w)[0]
    # zero weight on a far-away group: it gets no medoid of its own
    X2 = np.vstack([X, np.full((50, 3), 1e4)])
    w2 = np.concatenate([np.ones(2000), np.zeros(50)])
    r2 = largeclara(X2, 5, weights=w2, **SMALL)
    assert (r2.medoids < 2000).all()


# -- determinism ------------------------------------------------------------------------------
def test_same_result_for_any_threads_and_block_size(rng):
    X = blobs(5000, rng)
    ref = largeclara(X, 6, num_workers=1, **SMALL)
    for opts in (dict(num_workers=2), dict(num_workers=2, memory_limit="8MiB"),
                 dict(num_workers=1, memory_limit="1MiB")):
        r = largeclara(X, 6, **opts, **SMALL)
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        np.testing.assert_array_equal(r.labels, ref.labels)
        assert r.loss == ref.loss and r.extra["sample_losses"] == ref.extra["sample_losses"]
        assert r.extra["polish_losses"] == ref.extra["polish_losses"]


def test_same_result_for_a_chunked_zarr_input_and_a_distributed_cluster(local_cluster, rng, tmp_path):
    zarr = pytest.importorskip("zarr")
    X = blobs(3000, rng)
    z = zarr.create_array(str(tmp_path / "x.zarr"), shape=X.shape, chunks=(256, 3), dtype="float64")
    z[:] = X
    ref = largeclara(X, 5, num_workers=1, **SMALL)
    for r in (largeclara(str(tmp_path / "x.zarr"), 5, num_workers=2, **SMALL),
              largeclara(str(tmp_path / "x.zarr"), 5, client=local_cluster, **SMALL)):
        np.testing.assert_array_equal(r.medoids, ref.medoids)
        np.testing.assert_array_equal(r.labels, ref.labels)
        assert r.loss == ref.loss


def test_seed_changes_the_samples(rng):
    X = blobs(3000, rng)
    a = largeclara(X, 5, sample_size=600, init_size=150, random_state=1)
    b = largeclara(X, 5, sample_size=600, init_size=150, random_state=2)
    assert a.extra["sample_losses"] != b.extra["sample_losses"]


# -- checkpoint -------------------------------------------------------------------------------
def test_checkpoint_resumes_after_an_interrupted_polish(rng, tmp_path, monkeypatch):
    X = blobs(3000, rng, centers=8, spread=2.0)
    kw = dict(sample_size=300, init_size=100, polish_iter=3, random_state=0)
    ref = largeclara(X, 8, **kw)
    assert ref.extra["polish_changed"] > 0  # the polish really runs (else this test is vacuous)
    path = tmp_path / "ck.npz"
    real = cl._Passes.cell_costs
    calls = {"n": 0}

    def failing(self, assign, CC):
        calls["n"] += 1
        if calls["n"] == 2:
            raise RuntimeError("killed")
        return real(self, assign, CC)

    monkeypatch.setattr(cl._Passes, "cell_costs", failing)
    with pytest.raises(RuntimeError, match="killed"):
        largeclara(X, 8, checkpoint=str(path), **kw)
    monkeypatch.setattr(cl._Passes, "cell_costs", real)
    ran = {"samples": 0}
    real_task = cl._sample_task

    def counting(task, st):
        ran["samples"] += 1
        return real_task(task, st)

    monkeypatch.setattr(cl, "_sample_task", counting)
    r = largeclara(X, 8, checkpoint=str(path), **kw)
    assert ran["samples"] == 0  # resumed after the samples stage
    np.testing.assert_array_equal(r.medoids, ref.medoids)
    assert r.loss == ref.loss and r.loss_history == ref.loss_history


# -- clara() default and registry ----------------------------------------------------------------
def test_clara_default_is_largeclara_for_large_feature_inputs(rng):
    X = blobs(LARGE_N, rng)
    r = clara(X, 4, sample_size=800, n_samples=2, random_state=0)
    assert r.algorithm == "largeclara" and r.extra["sample_size"] == 800
    ref = largeclara(X, 4, sample_size=800, n_samples=2, random_state=0)
    np.testing.assert_array_equal(r.medoids, ref.medoids)
    assert r.loss == ref.loss
    # the previous variant stays selectable
    assert clara(X, 4, variant="fasterclara", sample_size=300, n_samples=2, random_state=0).algorithm == "fasterclara"


def test_clara_default_below_large_n_is_unchanged_fasterclara(rng):
    X = blobs(3000, rng)
    a = clara(X, 4, random_state=5)
    b = clara(X, 4, variant="fasterclara", random_state=5)
    assert a.algorithm == "fasterclara"
    np.testing.assert_array_equal(a.medoids, b.medoids)
    assert a.loss == b.loss


def test_registered_and_selectable_through_clara(rng):
    assert get_method("largeclara").func is largeclara
    X = blobs(2000, rng)
    a = clara(X, 4, variant="largeclara", sample_size=500, random_state=3)
    b = largeclara(X, 4, sample_size=500, random_state=3)
    np.testing.assert_array_equal(a.medoids, b.medoids)


def test_matrix_input_runs_fasterclara_and_a_features_source_its_features(rng):
    import chunked_medoids as cm

    X = blobs(1500, rng)
    D = resolve_metric("euclidean").pairwise_new(X, X)
    a = largeclara(D, 4, precomputed=True, sample_size=300, random_state=1)
    b = clara(D, 4, variant="fasterclara", precomputed=True, sample_size=300, random_state=1)
    assert a.algorithm == "fasterclara"
    np.testing.assert_array_equal(a.medoids, b.medoids)
    src = cm.from_features(X, metric="euclidean", dtype="float32")
    c = largeclara(src, 4, sample_size=300, init_size=100, random_state=1)
    d = largeclara(X, 4, sample_size=300, init_size=100, random_state=1)
    assert c.algorithm == "largeclara"
    np.testing.assert_array_equal(c.medoids, d.medoids)
    assert c.loss == d.loss


# -- errors -----------------------------------------------------------------------------------
def test_bad_input_is_refused_with_a_typed_error(rng):
    X = blobs(500, rng)
    D = resolve_metric("euclidean").pairwise_new(X, X)
    with pytest.raises(InvalidParameterError, match="dissimilarity matrix"):
        largeclara(D, 3, precomputed=True, polish_iter=3)
    with pytest.raises(InvalidParameterError, match="needs feature rows"):
        clara(D, 3, variant="largeclara", precomputed=True)
    with pytest.raises(InvalidParameterError, match="sample_size"):
        largeclara(X, 3, sample_size=2)
    with pytest.raises(InvalidParameterError, match="sample_size"):
        largeclara(X, 3, sample_size=501)
    with pytest.raises(InvalidParameterError, match="init_size"):
        largeclara(X, 3, sample_size=100, init_size=200)
    with pytest.raises(InvalidParameterError, match="n_samples"):
        largeclara(X, 3, n_samples=0)


# -- command line -------------------------------------------------------------------------------
def test_cli_clara_variant_largeclara_matches_the_api(rng, tmp_path, capsys):
    import json
    import logging

    from chunked_medoids import cli
    from chunked_medoids.algorithms.clara import ALL_VARIANTS

    log = logging.getLogger("chunked_medoids")
    saved = (list(log.handlers), log.level, log.propagate)
    X = blobs(1500, rng)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "D.npy", resolve_metric("euclidean").pairwise_new(X, X))
    try:
        assert cli.main(["clara", "--help"]) == 0
        helptext = " ".join(capsys.readouterr().out.split())
        assert "largeclara" in helptext and f"{LARGE_N}" in helptext  # the default rule, as the code has it
        assert set(cli._parser.VARIANTS) == set(ALL_VARIANTS)
        out = tmp_path / "out"
        code = cli.main(["clara", str(tmp_path / "X.npy"), "--metric", "euclidean", "-k", "4", "--variant",
                         "largeclara", "--n-samples", "2", "--sample-size", "400", "--seed", "3",
                         "--no-progress", "-o", str(out)])
        assert code == 0, capsys.readouterr().err
        ref = clara(X, 4, variant="largeclara", n_samples=2, sample_size=400, random_state=3)
        assert ref.algorithm == "largeclara"
        np.testing.assert_array_equal(np.load(out / "medoids.npy"), ref.medoids)
        np.testing.assert_array_equal(np.load(out / "labels.npy"), ref.labels)
        assert json.loads((out / "summary.json").read_text())["loss"] == ref.loss
        # a matrix cannot run largeclara: a one-line usage error, exit code 2
        capsys.readouterr()
        code = cli.main(["clara", str(tmp_path / "D.npy"), "--precomputed", "-k", "4", "--variant", "largeclara",
                         "--no-progress", "-o", str(tmp_path / "out2")])
        assert code == 2 and "needs feature rows" in capsys.readouterr().err
    finally:
        log.handlers[:], log.level, log.propagate = saved


# -- typed result and state ---------------------------------------------------------------------
def test_typed_result_mirrors_extra_and_clara_polish_extends_it(rng):
    import dataclasses

    from chunked_medoids._result import LargeClaraResult

    X = blobs(1500, rng)
    r = largeclara(X, 4, sample_size=300, init_size=100, random_state=2)
    assert type(r) is LargeClaraResult and repr(r).startswith("LargeClaraResult(")
    names = [f.name for f in dataclasses.fields(LargeClaraResult)][8:]  # after MedoidsResult's fields
    # extra: the typed attributes that are set, in field order (what the untyped result held)
    assert list(r.extra) == [n for n in names if getattr(r, n) is not None]
    for name in r.extra:
        a, b = r.extra[name], getattr(r, name)
        assert np.array_equal(a, b) if isinstance(b, np.ndarray) else a == b
    assert r.sample_medoids.shape == (4, 4) and r.polished is None and "polished" not in r.extra
    assert r.loss == min(r.sample_losses) if not r.polish_changed else r.loss < min(r.sample_losses)
    p = clara(X, 4, variant="largeclara", sample_size=300, polish=True, random_state=2)
    assert type(p) is LargeClaraResult and p.polished is True and p.clara_loss == r.loss
    assert list(p.extra)[-3:] == ["polished", "polish_n_iter", "clara_loss"]
    assert p.loss_history[:-1] == r.loss_history and p.sample_losses == r.sample_losses


def test_state_lives_with_the_other_typed_states():
    from chunked_medoids import _state

    assert cl.LargeClaraState is _state.LargeClaraState
    assert _state.STATE_KINDS["largeclara"] is _state.LargeClaraState
    st = _state.LargeClaraState(draws=np.arange(6).reshape(2, 3), seeds=np.arange(2), extra_pool=np.zeros(0, np.int64),
                                stage=2, medoids=np.array([1, 4]), loss=3.5, history=np.array([4.0, 3.5]))
    back = _state.state_from_file("largeclara", st.to_state())
    assert back.stage == 2 and back.loss == 3.5 and back.medoids.dtype == np.int64
    np.testing.assert_array_equal(back.draws, st.draws)
    ctx = _state.StateContext(n=6, params={"k": 2})
    _state.validate_state(back, ctx)  # the registered field checks run
    with pytest.raises(_state.StateFieldError, match="draws"):
        _state.validate_state(_state.LargeClaraState(draws=np.array([[0, 9]]), seeds=np.arange(1),
                                                     extra_pool=np.zeros(0, np.int64)), ctx)


# -- the OneBatchPAM comparison benchmark --------------------------------------------------------
def _bench_clara():
    import importlib.util
    import pathlib

    path = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "bench_clara.py"
    spec = importlib.util.spec_from_file_location("bench_clara_under_test", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_bench_clara_skips_onebatch_when_its_default_batch_matrix_exceeds_the_cap():
    pytest.importorskip("skimage")
    bench = _bench_clara()
    # OneBatchPAM's default batch, 100·ln(n·k) columns: about 6.2 GB of float64 at n = 500k, k = 10
    # (it runs), 27 GB at n = 2M (it is skipped under the default 8 GB cap)
    assert bench.onebatch_batch(500_000, 10) == int(100 * math.log(5_000_000))
    assert bench.onebatch_matrix_bytes(500_000, 10) < 8e9 < bench.onebatch_matrix_bytes(2_000_000, 10)
    assert bench.onebatch_batch(50, 10) == 50  # never more columns than points
    args = bench.argparse.Namespace(k=10, n=2000, methods="onebatch", datasets="astronaut+coffee+rocket",
                                    onebatch_max_gb=0.0)
    out = bench.compare(args)
    entry = out["datasets"]["astronaut+coffee+rocket"]
    assert entry["n"] == 2000
    assert "skipped" in entry["results"]["onebatch"] and "GB" in entry["results"]["onebatch"]["skipped"]
    assert "loss_ratio" not in entry
