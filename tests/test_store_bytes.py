"""Built stores are byte-for-byte what the builder wrote before its StoreWriter refactor.

The expected digests were computed on main at e2f9921 (before ``builder.py`` was split into a
driver over zarr / HDF5 writers) by this same hashing code.  Each digest covers

* the stored chunk bytes, exactly as on disk (zarr: every chunk file; HDF5: every chunk read
  raw with ``read_direct_chunk``, with its filter mask), i.e. values, compressor and checksum;
* the array layout (shape, chunks, dtype, fill value, codecs / filters);
* the ``chunked_medoids`` metadata, restricted to the keys of format 1 (see
  :mod:`chunked_medoids._store_meta`) minus ``version`` (the library version is not a
  property of the store bytes).  Keys added later (e.g. a record of validation) are allowed;
  every format-1 key must still be present with the same value.

The digests depend on the codec libraries (blosc, zlib, lzf) producing the same bytes; they
do for the versions pinned by the test environment.
"""

import hashlib
import json
import os

import h5py
import numpy as np
import pytest
import zarr

from chunked_medoids import build_dissimilarity
from chunked_medoids._store_meta import ATTR

#: the metadata keys of store format 1 that the digest covers.
FORMAT1_KEYS = ("format", "n", "dtype", "metric", "metric_params", "features_fingerprint",
                "stripe_rows", "n_stripes", "completed_stripes", "complete", "compressor",
                "features_shape")


def _meta_part(meta):
    missing = [k for k in FORMAT1_KEYS if k not in meta]
    assert not missing, f"metadata lost keys {missing}"
    return json.dumps({k: meta[k] for k in FORMAT1_KEYS}, sort_keys=True)


def _scalar_repr(v) -> str:
    """``repr`` of a fill value in numpy >= 2's form (``np.float32(nan)``) whatever the
    installed numpy: numpy 1.x prints a scalar bare (``nan``), which would change the digest
    of the same store bytes."""
    if isinstance(v, np.generic):
        return f"np.{type(v).__name__}({v!s})"
    return repr(v)


def zarr_digest(path) -> str:
    h = hashlib.sha256()
    arr = zarr.open_array(str(path), mode="r")
    h.update(json.dumps([list(arr.shape), list(arr.chunks), str(arr.dtype), _scalar_repr(arr.fill_value),
                         [c.to_dict() for c in arr.compressors]], sort_keys=True, default=str).encode())
    h.update(_meta_part(dict(arr.attrs[ATTR])).encode())
    chunk_dir = os.path.join(str(path), "c")
    for dp, _, files in sorted(os.walk(chunk_dir)):
        for fn in sorted(files):
            full = os.path.join(dp, fn)
            h.update(os.path.relpath(full, str(path)).encode())
            with open(full, "rb") as fh:
                h.update(fh.read())
    return h.hexdigest()


def hdf5_digest(path, dataset="dissimilarity") -> str:
    h = hashlib.sha256()
    with h5py.File(str(path), "r") as f:
        d = f[dataset]
        h.update(json.dumps([list(d.shape), list(d.chunks), str(d.dtype), _scalar_repr(d.fillvalue),
                             d.compression, repr(d.compression_opts), bool(d.shuffle)],
                            sort_keys=True).encode())
        h.update(_meta_part(json.loads(d.attrs[ATTR])).encode())
        for r0 in range(0, d.shape[0], d.chunks[0]):
            mask, data = d.id.read_direct_chunk((r0, 0))
            h.update(f"{r0}:{mask}:".encode())
            h.update(data)
    return h.hexdigest()


def _X():
    return np.random.default_rng(20261201).normal(size=(53, 5))


#: (suffix, build keywords) -> digest on main at e2f9921.
EXPECTED = {
    # the zarr default was lz4 until issue 17 (now raw chunks): same bytes, explicit name
    'zarr-compressor=lz4': 'b13cc7347b407d9ab8e0b8cddae0f01c8eda65e16d3901fb991d4c3678e13f99',
    'zarr-compressor=None-dtype=float64': '297e7d6f04f5c3d0d0cd22477d5abcc2886aef394a23007ebb4b74b437d0b2a9',
    'zarr-block_rows=7-compressor=zstd-metric=manhattan': '9b87fee888666e6af49f3cd40c343fe17102bd0678439de9cf3bc5c68e2362b8',
    'zarr-compressor=lz4-memory_limit=96KiB-num_workers=2': '28ef7a321f5d7909c51bab224230bef532826af2b7e1650d7b8e7f1514a3a3f6',
    'h5-default': '8e0182e8b44235abeb0db7d4a4d216782044ce984110e9a245c7d8a0295a3980',
    'h5-block_rows=8-compressor=gzip': '5b82ca5fb94ce2ed19c59b652b3782f36d0096f2f2835f4ca7586f097f3c489c',
    'h5-compressor=None-dtype=float64-metric=cosine': '51e948b3733adeac474b1c351dc82682b0bc0ad12f538ce646ef58b0ecb6fa4b',
    'h5-compressor=gzip-memory_limit=96KiB-num_workers=2': 'eb7ed97d11dbb2686178f47a5a55145ceaf6c1710a6b0cd76f5dc176d80ae246',
}

CASES = [
    (".zarr", {"compressor": "lz4"}),
    (".zarr", {"compressor": None, "dtype": "float64"}),
    (".zarr", {"compressor": "zstd", "metric": "manhattan", "block_rows": 7}),
    (".zarr", {"memory_limit": "96KiB", "num_workers": 2, "compressor": "lz4"}),
    (".h5", {}),
    (".h5", {"compressor": "gzip", "block_rows": 8}),
    (".h5", {"compressor": None, "dtype": "float64", "metric": "cosine"}),
    (".h5", {"memory_limit": "96KiB", "num_workers": 2, "compressor": "gzip"}),
]


def _case_id(case):
    suffix, kw = case
    return suffix[1:] + ("-" + "-".join(f"{k}={v}" for k, v in sorted(kw.items())) if kw else "-default")


@pytest.mark.parametrize("case", CASES, ids=[_case_id(c) for c in CASES])
def test_built_store_bytes_unchanged(tmp_path, case):
    suffix, kw = case
    kw = dict(kw)
    metric = kw.pop("metric", "euclidean")
    path = tmp_path / f"D{suffix}"
    src = build_dissimilarity(_X(), path, metric, **kw)
    src.close()
    digest = zarr_digest(path) if suffix == ".zarr" else hdf5_digest(path)
    assert digest == EXPECTED[_case_id(case)]


if __name__ == "__main__":  # print the digests of the current code (to fill EXPECTED)
    import tempfile

    for case in CASES:
        with tempfile.TemporaryDirectory() as tmp:
            suffix, kw = case
            kw = dict(kw)
            metric = kw.pop("metric", "euclidean")
            path = os.path.join(tmp, f"D{suffix}")
            build_dissimilarity(_X(), path, metric, **kw).close()
            digest = zarr_digest(path) if suffix == ".zarr" else hdf5_digest(path)
            print(f"    {_case_id(case)!r}: {digest!r},")
