"""Sphinx configuration of the chunked_medoids documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` (``pip install -e ".[docs]"``).
The build documents the source tree it sits in (the repository root goes first on
``sys.path``), generates the CLI reference and the plot gallery on the fly, and checks that
every name in ``chunked_medoids.__all__`` is documented somewhere.
"""

from __future__ import annotations

import os
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

import chunked_medoids  # noqa: E402

project = "chunked_medoids"
author = "chunked_medoids developers"
copyright = "chunked_medoids developers"  # noqa: A001 - Sphinx's name
release = chunked_medoids.__version__
version = ".".join(release.split(".")[:2])

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "numpydoc",
]

# generated fragments (_*.rst) are included by other pages, not pages of their own
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store", "_*.rst", "**/_*.rst"]
templates_path: list[str] = []

# -- autodoc / numpydoc -----------------------------------------------------------------------
autodoc_member_order = "bysource"
autodoc_preserve_defaults = True
autodoc_typehints = "signature"
# members are listed by autodoc itself; numpydoc must not add autosummary tables of them
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False
numpydoc_xref_param_type = False

# -- HTML -------------------------------------------------------------------------------------
html_theme = "furo"
html_title = f"chunked_medoids {release}"
html_static_path: list[str] = []
html_show_sourcelink = False

# the docs are built offline: no intersphinx inventories, no remote images
suppress_warnings: list[str] = []


def _generate(app):
    """Write the generated pages (CLI help, plot gallery) before Sphinx reads the sources."""
    import _generate as gen
    from sphinx.util import logging

    logger = logging.getLogger("chunked_medoids.docs")
    gen.cli_reference(os.path.join(HERE, "guide", "_cli_help.rst"))
    gen.registries(os.path.join(HERE, "_registries.rst"))
    gen.gallery(os.path.join(HERE, "gallery", "_images"), warn=logger.warning)


def _check_public_api(app, env):
    """Warn (an error under ``-W``) for a public name documented nowhere."""
    from sphinx.util import logging

    logger = logging.getLogger("chunked_medoids.docs")
    objects = env.get_domain("py").objects
    missing = []
    for name in chunked_medoids.__all__:
        if name.startswith("__"):
            continue
        obj = getattr(chunked_medoids, name)
        candidates = {f"chunked_medoids.{name}"}
        for home in (getattr(obj, "__module__", None), getattr(chunked_medoids, "_LAZY", {}).get(name)):
            if home:
                candidates.add(f"{home}.{name}")
        if not candidates & set(objects):
            missing.append(name)
    if missing:
        logger.warning("public names of chunked_medoids.__all__ documented nowhere in docs/api: %s",
                       ", ".join(sorted(missing)))


def setup(app):
    app.connect("builder-inited", _generate)
    app.connect("env-check-consistency", _check_public_api)
    return {"parallel_read_safe": True}
