"""The public API is documented and typed: numpydoc sections, ``py.typed`` (PEP 561)."""

import inspect
import pathlib
import tomllib

import pytest

import chunked_medoids as cm

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBLIC_FUNCTIONS = sorted(name for name in cm.__all__ if inspect.isfunction(getattr(cm, name)))


def test_there_are_public_functions_to_check():
    assert {"fasterpam", "open_dissimilarity", "build_dissimilarity"} <= set(PUBLIC_FUNCTIONS)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_has_numpydoc_sections(name):
    doc = inspect.getdoc(getattr(cm, name)) or ""
    for section in ("Parameters\n----------", "Returns\n-------"):
        assert section in doc, f"chunked_medoids.{name}: docstring lacks a numpydoc {section.splitlines()[0]!r} section"


def test_py_typed_is_shipped_as_package_data():
    assert (ROOT / "chunked_medoids" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["chunked_medoids"]
