"""The one registry of clustering methods and initialisations.

It feeds dispatch (:class:`~chunked_medoids.KMedoids`, the CLI), validation messages,
documentation and test parametrisation.  Nothing lists the methods by hand elsewhere.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from .._errors import UnknownNameError


@dataclass(frozen=True)
class MethodSpec:
    """A registered clustering method.

    ``func(D, k, **options) -> MedoidsResult``.  ``family`` is ``"swap"`` for the exact
    full-data methods, ``"sampling"`` for CLARA/CLARANS-style ones.  ``default_init`` is the
    init used when the caller gives none (``None`` when the method takes no init).
    """

    name: str
    func: Callable
    family: str
    description: str
    default_init: str | None = "random"


@dataclass(frozen=True)
class InitSpec:
    """A registered initialisation: ``func(source, k, *, rng, engine, weights) -> medoids``.

    A ``resumable`` init also takes ``checkpoint=`` (saved into after each medoid, see
    :mod:`chunked_medoids._state`) and ``resume=`` (the state to continue from, or None).
    """

    name: str
    func: Callable
    description: str
    resumable: bool = False


METHODS: dict[str, MethodSpec] = {}
INITS: dict[str, InitSpec] = {}
#: alternative spellings accepted wherever a method name is (alias -> canonical name).
METHOD_ALIASES: dict[str, str] = {}


def register_method(name, func, *, family, description, default_init="random", aliases=()):
    METHODS[name] = MethodSpec(name, func, family, description, default_init)
    for alias in aliases:
        METHOD_ALIASES[alias] = name
    return func


def register_init(name, func, *, description, resumable=False):
    INITS[name] = InitSpec(name, func, description, resumable)
    return func


def get_method(name) -> MethodSpec:
    from . import _load_all  # make sure every algorithm module has registered itself

    _load_all()
    key = METHOD_ALIASES.get(name, name) if isinstance(name, str) else name
    if not isinstance(key, str) or key not in METHODS:
        raise UnknownNameError(
            f"method must be one of {sorted(METHODS) + sorted(METHOD_ALIASES)}, got {name!r}"
        )
    return METHODS[key]


def get_init(name) -> InitSpec:
    from . import _load_all

    _load_all()
    if not isinstance(name, str) or name not in INITS:
        raise UnknownNameError(
            f"init must be one of {sorted(INITS)} or an array of k distinct point indices, got {name!r}"
        )
    return INITS[name]
