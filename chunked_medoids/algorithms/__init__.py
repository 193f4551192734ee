"""Clustering drivers.  Each module registers its methods/inits in :mod:`._registry`."""

from __future__ import annotations

import importlib

from ._registry import INITS, METHOD_ALIASES, METHODS, get_init, get_method, register_init, register_method

#: modules that register methods or inits; imported on first registry lookup.
_ALGORITHM_MODULES = (
    "init",
    "pam",
    "fasterpam",
    "alternating",
    "clara",
    "clara_large",
    "clarans",
    "msc",
)
_loaded = False


def _load_all():
    global _loaded
    if _loaded:
        return
    for mod in _ALGORITHM_MODULES:
        importlib.import_module(f"{__name__}.{mod}")
    _loaded = True


__all__ = ["INITS", "METHODS", "METHOD_ALIASES", "get_init", "get_method", "register_init", "register_method"]
