"""Test parametrisation read from the library's registries, never listed by hand.

A method registered tomorrow is tested by every suite that parametrises over these
(docs/architecture.rst §2: one registry per concept).
"""

from __future__ import annotations

from chunked_medoids.algorithms import METHODS, _load_all

_load_all()

#: the module whose methods optimise the medoid silhouette rather than the loss TD.
_MSC_MODULE = "chunked_medoids.algorithms.msc"


def methods(family: str | None = None, *, module: str | None = None) -> list[str]:
    """Registered method names (registry order), optionally of one family or driver module."""
    return [name for name, spec in METHODS.items()
            if (family is None or spec.family == family)
            and (module is None or spec.func.__module__ == f"chunked_medoids.algorithms.{module}")]


#: the exact full-data swap methods that minimise TD = Σ w·d(o, medoid(o)) (the PAM family
#: and alternating): every "swap" method except those of the medoid-silhouette module.
TD_SWAP_METHODS = [name for name in methods("swap") if METHODS[name].func.__module__ != _MSC_MODULE]
