"""Every public function of ``chunked_medoids`` is fully annotated, and the annotations resolve.

"Fully" means every parameter (``*args`` / ``**kwargs`` included) and the return value; "resolve"
means :func:`typing.get_type_hints` evaluates them at run time without extra namespaces, so
documentation tools and runtime type checkers see real types rather than strings.
"""

import inspect
import typing

import pytest

import chunked_medoids as cm

PUBLIC_FUNCTIONS = sorted(name for name in cm.__all__ if inspect.isfunction(getattr(cm, name)))


def _missing_annotations(func):
    sig = inspect.signature(func)
    missing = [p.name for p in sig.parameters.values() if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    return missing


def test_the_list_covers_the_public_functions():
    # the parametrisation below reads __all__; make sure it is not silently empty or partial
    expected = {"open_dissimilarity", "from_features", "validate_source", "resolve_metric",
                "build_dissimilarity", "store_info", "pam", "fasterpam", "build", "lab", "clara",
                "largeclara", "clarans", "fastclarans", "silhouette", "dynmsc"}
    assert expected <= set(PUBLIC_FUNCTIONS)


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_function_is_fully_annotated(name):
    missing = _missing_annotations(getattr(cm, name))
    assert not missing, f"chunked_medoids.{name}: no annotation on {', '.join(missing)}"


@pytest.mark.parametrize("name", PUBLIC_FUNCTIONS)
def test_public_annotations_resolve_at_run_time(name):
    func = getattr(cm, name)
    hints = typing.get_type_hints(func)  # NameError here: an alias imported only under TYPE_CHECKING
    assert set(hints) == set(inspect.signature(func).parameters) | {"return"}


#: public classes whose own public methods (and ``__init__``) are checked too.
ANNOTATED_CLASSES = ("KMedoids", "CLARA", "Engine", "DissimilaritySource")
#: the classes that are scikit-learn estimators (checked for the estimator API below).
ESTIMATORS = ("KMedoids", "CLARA")


def _own_public_methods(cls):
    """``(qualname, function)`` of the methods the package defines on ``cls`` (MRO included,
    scikit-learn's own left out): public names and ``__init__``."""
    out = {}
    for klass in reversed(cls.__mro__):
        if not klass.__module__.startswith("chunked_medoids"):
            continue
        for name, member in vars(klass).items():
            if (name.startswith("_") and name != "__init__") or not inspect.isfunction(member):
                continue
            out[name] = member
    return sorted((f"{cls.__name__}.{name}", func) for name, func in out.items())


METHODS_CHECKED = [item for cname in ANNOTATED_CLASSES for item in _own_public_methods(getattr(cm, cname))]


def test_the_methods_checked_include_the_estimator_api():
    names = {q for q, _ in METHODS_CHECKED}
    for cname in ESTIMATORS:
        assert {f"{cname}.{m}" for m in ("__init__", "fit", "predict", "transform", "score")} <= names
    assert {"Engine.__init__", "Engine.map_blocks", "Engine.map_tasks", "Engine.iter_blocks",
            "DissimilaritySource.read_rows", "DissimilaritySource.take_rows"} <= names


@pytest.mark.parametrize(("qualname", "func"), METHODS_CHECKED, ids=[q for q, _ in METHODS_CHECKED])
def test_public_method_is_fully_annotated_and_resolves(qualname, func):
    sig = inspect.signature(func)
    params = list(sig.parameters.values())[1:]  # self
    missing = [p.name for p in params if p.annotation is inspect.Parameter.empty]
    if sig.return_annotation is inspect.Signature.empty:
        missing.append("return")
    assert not missing, f"chunked_medoids.{qualname}: no annotation on {', '.join(missing)}"
    hints = typing.get_type_hints(func)
    assert set(hints) == {p.name for p in params} | {"return"}


def test_the_check_catches_a_missing_annotation():
    def half(a: int, b, *, c: int = 0):
        return a

    assert _missing_annotations(half) == ["b", "return"]
