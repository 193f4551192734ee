"""Error messages in the command line's words.

The Python API raises typed errors whose messages name Python parameters and Python fixes
(``memory_limit``, ``pass overwrite=True``, ``rerun build_dissimilarity(...)``).  The CLI
keeps the API's wording (it names the rule and the value) and adds what a shell user needs:
the option that set the parameter and the command-line fix.  The Python API is unchanged.
"""

from __future__ import annotations

import re

#: Python keyword -> argparse ``dest`` where the names differ.
PARAM_DEST = {
    "random_state": "seed",
    "metric_params": "metric_param",
    "features_dataset": "dataset",
    "n_clusters": "k",
    "overwrite": "overwrite",
}

#: (pattern, replacement): Python fixes -> command-line fixes.
PHRASES = [
    (r"pass overwrite=True (to replace it|to rebuild)", r"pass --overwrite \1"),
    (r"with overwrite=True", "with --overwrite"),
    (r"or pass overwrite=True", "or pass --overwrite"),
    (r"or overwrite=True", "or --overwrite"),
    (r"fewer num_workers", "fewer --workers"),
    (r"rerun build_dissimilarity\(\.\.\.\) with the same arguments",
     "rerun the same 'chunked-medoids build' command"),
    (r", or pass allow_incomplete=True to inspect it", " ('chunked-medoids info STORE' shows its state)"),
    (r"rerun with a larger memory_limit", "rerun with a larger --memory-limit"),
    (r"Delete it or pass another checkpoint path", "Delete it or pass another --checkpoint FILE"),
    (r"pass precomputed=False", "pass --metric NAME"),
    (r"; supported: numpy \(.*$",
     ": INPUT must be a .npy file, a .zarr store or an .h5/.hdf5 file (--dataset NAME picks the array "
     "inside a store), or features with --metric NAME"),
    (r"; pass features through from_features\(X, metric=\.\.\.\) instead",
     "; if INPUT holds features (one row per point), pass --metric NAME instead of --precomputed"),
    (r"use metric='chebyshev'", "use --metric chebyshev"),
    (r"use dtype='float64'", "use --dtype float64"),
    (r"\(and use metric='gower' with categorical=\.\.\.\)", "(or use --metric gower: text columns of a CSV "
     "file are read as categories)"),
]

#: "<metric> parameter <name> ..." is about a --metric-param value.
_METRIC_PARAM = re.compile(r"^(?:metric )?'?[a-z_]+'? parameter [A-Za-z_]+\b")

#: Python parameter names that may open a message ("k must be ...", "memory_limit ...").
_LEAD = re.compile(r"^(?:(?:gower|metric) parameter )?([A-Za-z_][A-Za-z0-9_]*)\b")


def option_flags(subparser) -> dict:
    """``dest -> '-k/--n-clusters'`` for the options of one subcommand's parser."""
    flags = {}
    if subparser is None:
        return flags
    for action in subparser._actions:
        if action.option_strings and action.dest not in ("help",):
            flags.setdefault(action.dest, "/".join(action.option_strings))
    return flags


def cli_wording(message: str, flags: dict) -> str:
    """``message`` of a Python-API error, reworded for the command line."""
    message = re.sub(r"^\[Errno \d+\] ", "", message)
    for pattern, repl in PHRASES:
        message = re.sub(pattern, repl, message)
    if _METRIC_PARAM.match(message) and "metric_param" in flags:
        return f"{flags['metric_param']}: {message}"
    m = _LEAD.match(message)
    if m:
        name = m.group(1)
        dest = PARAM_DEST.get(name, name)
        flag = flags.get(dest)
        if flag and not message.startswith("-"):
            message = f"{flag}: {message}"
    return message
