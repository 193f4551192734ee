"""Layer rules of docs/architecture.rst §2, enforced on the source text."""

import ast
import pathlib

import pytest

PKG = pathlib.Path(__file__).resolve().parents[1] / "chunked_medoids"
FORBIDDEN_IN_KERNELS = {"dask", "distributed", "zarr", "h5py", "chunked_medoids"}


def _imports(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name.split(".")[0], node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:  # relative import: leaves _kernels?
                mod = node.module or ""
                if node.level >= 2 or (node.level == 1 and mod and not (PKG / "_kernels" / f"{mod.split('.')[0]}.py").exists()):
                    yield "chunked_medoids", node.lineno
            elif node.module:
                yield node.module.split(".")[0], node.lineno


KERNEL_FILES = sorted((PKG / "_kernels").glob("*.py"))


@pytest.mark.parametrize("path", KERNEL_FILES, ids=lambda p: p.name)
def test_kernels_import_no_dask_storage_or_package(path):
    bad = [(name, line) for name, line in _imports(path) if name in FORBIDDEN_IN_KERNELS]
    assert not bad, f"{path.name} imports {bad}: kernels must be pure numba/numpy"


def test_kernels_exist():
    # the parametrised test above must have something to check
    assert len(KERNEL_FILES) >= 3


def test_only_engine_and_builder_talk_to_dask():
    allowed = {"engine.py", "_dist_eager.py"}  # _dist_eager: the engine's distributed eager walk
    offenders = []
    for path in PKG.rglob("*.py"):
        rel = path.relative_to(PKG)
        if rel.name in allowed or rel.parts[0] == "sources":
            # sources wrap dask arrays as a storage kind; that is reading data, not scheduling
            continue
        for name, line in _imports(path):
            if name in ("dask", "distributed"):
                offenders.append(f"{rel}:{line}")
    assert not offenders, f"only engine.py may import dask/distributed: {offenders}"


def test_no_global_seeding():
    offenders = []
    for root in (PKG, PKG.parent / "tests"):
        for path in root.rglob("*.py"):
            text = path.read_text()
            for needle in ("np.random.seed(", "random.seed(", "np.random.rand(", "np.random.randn(", "np.random.randint("):
                if needle in text and path.name != "test_layers.py":
                    offenders.append(f"{path.name}: {needle}")
    assert not offenders, offenders


def test_distributed_eager_walk_is_engine_layer():
    """``_dist_eager.py`` belongs to the engine layer: kernels below it, never a driver."""
    path = PKG / "_dist_eager.py"
    tree = ast.parse(path.read_text())
    rel = [node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.level]
    assert rel and not [m for m in rel if m and m.split(".")[0] in ("algorithms", "cli", "estimator", "builder")]
