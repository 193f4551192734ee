"""``chunked-medoids info``: describe a dissimilarity store without reading its values."""

from __future__ import annotations

import json

from ._common import EXIT_OK
from ._inputs import require_exists
from ._outputs import jsonable


def printable(text) -> str:
    """``text`` with control characters (ANSI escape sequences, newlines...) shown escaped
    (``\\x1b``): metadata strings come from the file and must not drive the terminal."""
    text = str(text)
    return "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)


def run(args) -> int:
    from .._util import format_bytes
    from ..builder import store_info

    require_exists(args.store, "STORE")
    info = store_info(args.store, args.dataset)
    if args.json:
        print(json.dumps(jsonable(info), indent=2))
        return EXIT_OK
    shape = info["shape"]
    lines = [
        ("path", info["path"]),
        ("format", info["format"] + (f"  dataset {info['dataset']}" if info.get("dataset") else "")),
        ("shape", " × ".join(str(s) for s in shape)),
        ("dtype", info["dtype"] + (f"  (scale {info['scale']!r}: stored = distance × scale; read as "
                                   f"{info['values_dtype']})" if info.get("scale") is not None else "")),
        ("chunks", " × ".join(str(c) for c in info["chunks"]) if info.get("chunks") else "contiguous"),
        ("metric", "unknown (not written by chunked-medoids build)" if not info.get("managed")
         else f"{info.get('metric')}" + (f" {json.dumps(info['metric_params'])}" if info.get("metric_params") else "")),
        ("complete", ("yes" if info.get("complete") else "NO") + (
            f"  ({info['completed_stripes']} of {info['n_stripes']} stripes)" if info.get("n_stripes") else "")),
        ("size", f"{format_bytes(info.get('nbytes') or 0)} uncompressed, "
                 f"{format_bytes(info.get('size_on_disk') or 0)} on disk"
         + (f" (ratio {info['compression_ratio']:.2f})" if info.get("compression_ratio") else "")),
    ]
    if info.get("chunks_total") is not None and info.get("chunks_stored") != info["chunks_total"]:
        lines.append(("stored", f"{info['chunks_stored']} of {info['chunks_total']} chunks "
                                f"({info['chunks_total'] - info['chunks_stored']} missing)"))
    if info.get("version"):
        lines.append(("built by", f"chunked_medoids {info['version']}"))
    width = max(len(k) for k, _ in lines)
    for key, value in lines:
        print(f"{key:<{width}}  {printable(value)}")
    return EXIT_OK
