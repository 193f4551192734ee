"""Every memory-size decision of the library: block heights, stripe heights, batch sizes.

``memory_limit`` (parsed by :func:`chunked_medoids._util.parse_memory_limit`) is the one
budget a user gives.  Everything that turns it -- or a fixed target -- into a number of
rows, tasks or bytes is a function of this module, so the factors below are the whole
accounting and are explained once, here.  The functions are pure integer arithmetic on
``n`` (points), ``itemsize`` (bytes per stored element), ``d`` (features) and thread
counts; they import nothing from the package, so every layer (engine, sources, builder,
drivers, estimator) may call them.

Results never depend on these sizes (every reduction is done in a fixed order), only
memory use and speed do.  Changing a factor changes no result, but it does change the
block heights the memory tests (``tests/test_memory_*.py``) measure against.

Factors
-------
:data:`DECODE_FACTOR` = 5
    Bytes of working memory per stored byte of a row block while it is being read.
    Measured on a blosc-compressed zarr store (``benchmarks/bench_scaling.py``): the
    compressed chunk bytes, the checksum-stripped copy, the decoded chunk and the output
    array are alive together, about 3.9x the block for a one-chunk read; one more block's
    worth covers what the allocator keeps mapped after concurrent decodes (seen as RSS
    above the live data).  Used by :func:`block_rows` (engine passes),
    :func:`read_concurrency` and :func:`plan_stripes` (a built store's stripes must be
    readable as one block by a reader with the same budget).
:data:`VALIDATE_WORK_FACTOR` = 4
    Working bytes per stored byte of a block in
    :func:`~chunked_medoids.sources.validate.validate_source`: the block, boolean masks and
    float64 temporaries.
:data:`WRITE_FACTOR` = 3
    A stripe being written by the builder: the output plus two more ``m x n`` buffers
    (zarr's write path holds a chunk copy and the encoded chunk beside the array --
    measured with zarr 3.1; the HDF5 driver holds the wave's outputs and small per-chunk
    buffers).

Fixed targets (not derived from ``memory_limit``)
-------------------------------------------------
:data:`NATURAL_BLOCK_BYTES` = 64 MiB
    Natural row-block height of sources without storage chunks (numpy arrays, contiguous
    HDF5 datasets, on-the-fly feature sources): :func:`natural_block_rows`.  Engines align
    their blocks to it; it is not a memory bound by itself.
:data:`FEATURE_WORK_BYTES` = 32 MiB
    float64 work buffer of a feature source computing a row block (column chunks of
    :func:`feature_block_rows` points), and the row blocks of its creation scan
    (:func:`feature_scan_rows`).
:data:`PREDICT_BLOCK_BYTES` = 32 MiB
    float64 rows of new data handled at once by the estimators' ``predict`` /
    ``transform`` / ``score`` (:func:`predict_block_rows`).
:data:`MAX_STRIPE_BYTES` = 16 MiB
    Largest row stripe (= zarr chunk) of a built store whatever the budget: keeps chunks
    readable by smaller-budget readers, resumption fine-grained, and far from codec size
    limits.  It also bounds the cost of fetching scattered rows (the k medoid rows decode
    k whole chunks): at 16 MiB, 10 medoid rows of a 30000-point float32 store decode 4% of
    a pass.
:data:`HDF5_CHUNK_BYTES` = 4 MiB
    Target HDF5 chunk of a built store (single rows read cheaply); stripes are whole
    multiples of it.
:data:`MIN_BALANCED_STRIPE_BYTES` = 4 MiB and :data:`STRIPES_PER_THREAD` = 4
    Load balance of a build: at least 4 stripes per thread, unless that makes stripes
    smaller than 4 MiB of rows.
:data:`HDF5_MIN_CACHE_BYTES` = 1 MiB
    Floor of the HDF5 chunk cache of a build (:func:`hdf5_cache_bytes`, else two stripes).
:data:`MIN_MEMORY_LIMIT` = 64 KiB
    Smallest ``memory_limit`` accepted; below this nothing useful fits.

CLARA and CLARANS
-----------------
:data:`CLARA_SAMPLE_SHARE` = 0.125
    Share of ``memory_limit`` the s x s float64 matrix of a default-sized sample may take
    (:func:`clara_sample_cap`); a running sample needs about twice that (matrix + inner
    optimiser) ...
:data:`CLARA_TASK_SHARE` = 0.75
    ... and up to 0.75 x ``memory_limit`` of samples run at once (:func:`clara_sample_batch`,
    which also gives each running sample 1/8 of the budget, at least 64 KiB, to gather its
    matrix rows from a dissimilarity source: :data:`CLARA_GATHER_SHARE`,
    :data:`CLARA_MIN_GATHER_BYTES`).
:data:`CLARA_SCAN_SHARE` = 32
    CLARA's validating scan of a feature array reads blocks of ``memory_limit / 32`` bytes
    of float64 rows (:func:`clara_scan_rows`).
:data:`CLARA_FEATURE_SHARE` = 4
    A streaming CLARA feature pass holds, per thread plus one read ahead, blocks of at most
    ``memory_limit / 4`` (:func:`clara_feature_block_rows`).
:data:`CLARANS_FETCH_SHARE` = 4
    Each of CLARANS's concurrent local searches fetches candidate rows in batches of at
    most ``memory_limit / (4 x searches)`` bytes (:func:`clarans_fetch_rows`).

Resident stripes
----------------
:data:`RESIDENT_SHARE` = 0.5
    ``resident="auto"`` holds the matrix once read when it takes at most half of the budget
    (locally ``memory_limit``; on a cluster the workers' summed memory limits), so the
    blocks in flight of the first pass keep the other half (:func:`resident_plan`);
    ``resident=True`` holds it whenever it fits the whole budget.  While it is held, block
    sizes come from what it leaves (:func:`stream_budget`).

State arrays (the n x k medoid table, O(n) caches) come on top of every budget above and
are not counted against it.
"""

from __future__ import annotations

import math

DECODE_FACTOR = 5
VALIDATE_WORK_FACTOR = 4
WRITE_FACTOR = 3

NATURAL_BLOCK_BYTES = 64 << 20
FEATURE_WORK_BYTES = 32 << 20
#: largest metric-prepared feature copy (float64, transposed: n·d·8 bytes) a features source
#: keeps for the fused row kernels; larger X is prepared column chunk by column chunk.
FEATURE_PREP_BYTES = 256 << 20
PREDICT_BLOCK_BYTES = 32 << 20
MAX_STRIPE_BYTES = 16 << 20
HDF5_CHUNK_BYTES = 4 << 20
MIN_BALANCED_STRIPE_BYTES = 4 << 20
STRIPES_PER_THREAD = 4
HDF5_MIN_CACHE_BYTES = 1 << 20
MIN_MEMORY_LIMIT = 1 << 16

CLARA_SAMPLE_SHARE = 0.125
CLARA_TASK_SHARE = 0.75
CLARA_GATHER_SHARE = 8
CLARA_MIN_GATHER_BYTES = 1 << 16
CLARA_SCAN_SHARE = 32
CLARA_FEATURE_SHARE = 4
CLARANS_FETCH_SHARE = 4
RESIDENT_SHARE = 0.5

#: float64, the work dtype of every feature computation.
_F8 = 8


# ---------------------------------------------------------------------------------------
# row blocks of a dissimilarity source
# ---------------------------------------------------------------------------------------
def natural_block_rows(n: int, itemsize: int) -> int:
    """Natural block height of a source without storage chunks.

    Parameters
    ----------
    n : int
        Points (the matrix is n x n).
    itemsize : int
        Bytes per stored element.

    Returns
    -------
    int
        ``NATURAL_BLOCK_BYTES`` of rows, between 1 and ``n``.
    """
    return max(1, min(n, NATURAL_BLOCK_BYTES // max(1, n * itemsize)))


def reader_bytes(itemsize: int, storage_itemsize: int | None = None) -> int:
    """Working bytes per element of a block being read: :data:`DECODE_FACTOR` x the stored
    bytes, plus the dequantised output when the stored type is narrower than the values
    (float16 stores read as float32: 5 x 2 + 4 = 14 bytes instead of 5 x 4 = 20)."""
    st = itemsize if storage_itemsize is None else int(storage_itemsize)
    return DECODE_FACTOR * st + (itemsize if st != itemsize else 0)


def block_rows(n: int, itemsize: int, memory_limit: int, natural_rows: int, *,
               readers: int, held: int = 0, storage_itemsize: int | None = None) -> int:
    """Rows per block so that the blocks in flight of an engine pass fit ``memory_limit``.

    ``readers`` blocks may be decoding at once (:data:`DECODE_FACTOR` x the block each) and
    ``held`` more are held decoded (1 x each).  A parallel map over row blocks
    (``Engine.map_blocks``) has ``readers`` = worker threads (1 per task on a distributed
    worker) and ``held=0``; sequential streaming (``Engine.iter_blocks``) with ``b`` blocks
    in flight has one reader and ``b - 1`` held (the one processed, the one read ahead).

    Parameters
    ----------
    n, itemsize : int
        Points and bytes per stored element.
    memory_limit : int
        Budget in bytes.
    natural_rows : int
        The source's storage chunk height (``source.block_rows``).
    readers : int
        Blocks being decoded at once.
    held : int, default 0
        Decoded blocks held besides.
    storage_itemsize : int, optional
        Bytes per element as stored, when narrower than ``itemsize`` (float16 stores):
        a reader then costs :func:`reader_bytes` per element (the 2-byte chunks decoded,
        plus the float32 block they are converted into).

    Returns
    -------
    int
        Between 1 and ``n``; a multiple of ``natural_rows`` when at least one chunk fits
        (so every stored chunk is decoded exactly once per pass).
    """
    per_elem = reader_bytes(itemsize, storage_itemsize) * readers + itemsize * held
    rows = max(1, memory_limit // (n * per_elem))
    natural = max(1, int(natural_rows))
    if rows >= natural:
        rows = (rows // natural) * natural
    return int(min(rows, n))


#: reader threads of a sequential stream (``Engine.iter_blocks``) over a chunked store: a
#: disk (and a network file system even more) delivers more with several requests in
#: flight (issue 17: one reader 17.3 s, 8 readers 10.4 s for the same cold files).
STREAM_READERS = 4


def stream_plan(n: int, itemsize: int, memory_limit: int, natural_rows: int, *, held: int = 2,
                readers: int = STREAM_READERS, storage_itemsize: int | None = None) -> tuple[int, int, int]:
    """``(rows per unit, reader threads, units read ahead)`` of a sequential stream.

    A stream that consumes one unit at a time (an eager pass) holds ``held`` decoded units
    (the one processed and the next one ready) while ``readers`` threads decode the next
    ones (:func:`reader_bytes` per element each).  The unit is the tallest multiple of
    the chunk height with ``readers`` decoding and ``held`` held within ``memory_limit``;
    whatever the budget leaves is spent on more finished units read ahead, so the disk
    never waits for the kernel: ``ahead = readers + extra held - 1``.  When not even one
    chunk fits that way, one reader with :func:`block_rows` (``readers=1``) and one unit
    ahead, as before.
    """
    natural = max(1, int(natural_rows))
    rb = reader_bytes(itemsize, storage_itemsize)
    row = n  # elements per row
    r = max(1, int(readers))
    unit = memory_limit // (row * (r * rb + held * itemsize))
    if r > 1 and unit >= natural:
        unit = min(n, (unit // natural) * natural)
        hold = (memory_limit // (row * unit) - r * rb) // itemsize
        ahead = max(1, r + int(hold) - 1)
        return int(unit), r, int(min(ahead, -(-n // unit)))
    rows = block_rows(n, itemsize, memory_limit, natural, readers=1, held=held,
                      storage_itemsize=storage_itemsize)
    return rows, 1, 1


#: units read ahead by a stream of single chunks read with ``O_DIRECT``
#: (:func:`direct_stream_plan`): enough to keep the disk busy while the kernel has a slow
#: moment, without filling the budget with buffers.  Every buffer is memory touched for the
#: first time in a pass (the pool lets idle buffers go at the end of a stream), and fresh
#: pages cost the kernel (and a virtual machine's host) their zeroing: 512 MB took 0.3-1.2
#: CPU seconds on the 2-core benchmark machine, as much as reading a 7 GB float16 pass.
DIRECT_AHEAD = 8


def direct_stream_plan(plan: tuple[int, int, int], chunk_rows: int | None) -> tuple[int, int, int]:
    """A :func:`stream_plan` ``(unit, readers, ahead)`` for a source whose chunks are read
    straight into their buffers only one chunk per unit (``chunk_rows``:
    ``ZarrSource.direct_unit_rows``, None when that does not apply).

    The unit becomes one chunk and the read-ahead at most :data:`DIRECT_AHEAD` units, never
    more bytes than the plan it replaces (``ahead * unit`` does not grow); plans with one
    reader (a forced block height, a budget below one chunk per reader) are kept.
    """
    unit, readers, ahead = (int(v) for v in plan)
    if chunk_rows is None or readers <= 1 or unit <= int(chunk_rows):
        return unit, readers, ahead
    c = int(chunk_rows)
    return c, readers, max(1, min(DIRECT_AHEAD, ahead * unit // c))


def chunk_decode_bytes(natural_rows: int, n: int, itemsize: int, storage_itemsize: int | None = None) -> int:
    """Bytes needed to decode one storage chunk of ``natural_rows`` rows."""
    return max(1, int(natural_rows)) * n * reader_bytes(itemsize, storage_itemsize)


def run_floor_bytes(n: int, k: int, itemsize: int, stripe_rows: int) -> tuple[int, int]:
    """``(state bytes, read bytes)``: the least memory a clustering run of ``k`` medoids on
    an n×n matrix needs, whatever ``memory_limit`` says.

    The state is the n×k medoid table twice (it is built by transposing the k medoid rows)
    and the per-point caches: nearest / second-nearest distances (2 × itemsize), their slots
    (2 × int32) and two float64 work arrays, so ``n · (2·k·itemsize + 2·itemsize + 24)``.
    The read is one grid row of storage chunks decoded (``stripe_rows`` rows of n,
    :data:`DECODE_FACTOR` × their bytes): a read of a single row decodes every chunk it
    touches.  Used to refuse a matrix whose size (read from a file) cannot fit the
    machine before anything is allocated.
    """
    n, k, itemsize = int(n), int(k), int(itemsize)
    state = n * (2 * k * itemsize + 2 * itemsize + 24)
    read = max(1, int(stripe_rows)) * n * itemsize * DECODE_FACTOR
    return state, read


def read_concurrency(height: int, n: int, itemsize: int, natural_rows: int,
                     memory_limit: int, threads: int, storage_itemsize: int | None = None) -> int:
    """Threads that may read blocks of ``height`` rows at once within ``memory_limit``.

    A read decodes whole storage chunks even for a partial stripe, so a block shorter than
    the chunk height costs a full chunk; each read costs :data:`DECODE_FACTOR` x the
    chunks it touches.

    Returns
    -------
    int
        Between 1 and ``threads``.
    """
    natural = max(1, int(natural_rows))
    if height % natural:
        height = -(-height // natural) * natural
    cost = height * n * reader_bytes(itemsize, storage_itemsize)
    return int(max(1, min(threads, memory_limit // max(cost, 1))))


def validate_block_rows(n: int, itemsize: int, memory_limit: int, natural_rows: int) -> int:
    """Block height of :func:`~chunked_medoids.sources.validate.validate_source`.

    :data:`VALIDATE_WORK_FACTOR` bytes per stored byte; a multiple of ``natural_rows``
    when at least one chunk fits.
    """
    h = max(1, min(n, memory_limit // (n * itemsize * VALIDATE_WORK_FACTOR)))
    natural = max(1, int(natural_rows))
    if h >= natural:
        h -= h % natural
    return int(h)


# ---------------------------------------------------------------------------------------
# feature arrays
# ---------------------------------------------------------------------------------------
def feature_block_rows(n: int, d: int, block_rows: int, chunk_rows: int) -> int:
    """Default feature rows per column chunk of a feature source.

    The float64 work buffer of a row block of height ``block_rows`` against a column chunk
    is at most :data:`FEATURE_WORK_BYTES`; whole storage chunks of X (``chunk_rows``) when
    more than one fits.
    """
    fbr = max(1, FEATURE_WORK_BYTES // (_F8 * max(d, block_rows)))
    if chunk_rows > 1 and fbr > chunk_rows:
        fbr -= fbr % chunk_rows
    return int(min(n, fbr))


def feature_scan_rows(n: int, d: int) -> int:
    """Rows per block of a feature source's creation scan (finite check, hash, metric fit)."""
    return int(max(1, min(n, FEATURE_WORK_BYTES // (_F8 * d))))


def predict_block_rows(width: int) -> int:
    """Rows of new data per block in the estimators (``width`` float64 columns)."""
    return int(max(1, PREDICT_BLOCK_BYTES // (_F8 * max(1, width))))


# ---------------------------------------------------------------------------------------
# building a store
# ---------------------------------------------------------------------------------------
def plan_stripes(n: int, d: int, itemsize: int, memory_limit: int, parallelism: int,
                 block_rows: int | None = None, fmt: str = "zarr") -> dict:
    """Choose the stripe height (rows) and feature work-block size for a build.

    The stripe height ``m`` is the largest one for which ``parallelism`` stripes in flight
    fit in ``memory_limit``, each needing the larger of

    * its compute phase: the ``m x n`` output, float64 buffers of ``m x m`` (diagonal
      square) and ``m x f`` (``f = max(256, n // 4)`` feature rows per column chunk), and
      ``(m + f) x d`` float64 features;
    * its write phase: :data:`WRITE_FACTOR` x the output.

    It is also no taller than what a reader with the same budget and thread count reads as
    one block (``memory_limit / (DECODE_FACTOR x row bytes x (parallelism + 1))``, so such
    a reader decodes every chunk once), than :data:`MAX_STRIPE_BYTES`, and than
    ``ceil(n / (STRIPES_PER_THREAD x parallelism))`` rows unless that is under
    :data:`MIN_BALANCED_STRIPE_BYTES` of rows.  At least 1.  An explicit ``block_rows``
    wins over all of this (capped at ``n``).  For HDF5 the stripe is a multiple of the
    chunk height (:data:`HDF5_CHUNK_BYTES` of rows).

    Parameters
    ----------
    n, d : int
        Points and features.
    itemsize : int
        Bytes per stored element.
    memory_limit : int
        Budget in bytes.
    parallelism : int
        Stripes computed at once.
    block_rows : int, optional
        Forced stripe height.
    fmt : {"zarr", "hdf5"}, default "zarr"

    Returns
    -------
    dict
        ``stripe_rows``, ``feature_block_rows``, ``n_stripes``, ``max_rows`` (largest stripe
        the budget allows, ignoring the chunk cap), ``h5_chunk_rows`` and
        ``estimated_peak`` (bytes of the accounting above), ``fits`` (whether that is
        within ``memory_limit``; False when even one-row stripes do not fit, or an explicit
        ``block_rows`` is too tall) and ``parallelism``.
    """
    row = n * itemsize
    f = min(n, max(256, n // 4))
    p = max(1, int(parallelism))

    def cost(m):
        compute = m * row + _F8 * m * m + _F8 * m * f + _F8 * (m + f) * d
        return p * max(compute, WRITE_FACTOR * m * row)

    lo, hi = 1, n
    while lo < hi:  # largest m with cost(m) <= memory_limit
        mid = (lo + hi + 1) // 2
        if cost(mid) <= memory_limit:
            lo = mid
        else:
            hi = mid - 1
    max_rows = lo
    read_rows = max(1, memory_limit // (row * DECODE_FACTOR * (p + 1)))
    max_rows = max(1, min(max_rows, read_rows))
    if block_rows is not None:
        m = min(int(block_rows), n)
    else:
        balance = max(-(-n // (STRIPES_PER_THREAD * p)), MIN_BALANCED_STRIPE_BYTES // row)
        m = max(1, min(max_rows, MAX_STRIPE_BYTES // row, balance, n))
    h5_rows = max(1, min(m, HDF5_CHUNK_BYTES // row))
    if fmt == "hdf5" and block_rows is None:
        m = max(h5_rows, (m // h5_rows) * h5_rows)
    elif fmt == "hdf5":
        # explicit stripe height: chunk height must divide it
        while m % h5_rows:
            h5_rows -= 1
    return {
        "parallelism": p,
        "fits": bool(cost(m) <= memory_limit),
        "stripe_rows": int(m),
        "feature_block_rows": int(f),
        "n_stripes": int(-(-n // m)),
        "max_rows": int(max_rows),
        "h5_chunk_rows": int(h5_rows),
        "estimated_peak": int(cost(m)),
    }


def rechunk_plan(stripe_rows: int, natural_rows: int, n: int, itemsize: int) -> dict:
    """Input chunking of ``chunked-medoids rechunk`` (``dask.array.rechunk`` from the input's
    read unit to the output's stripes, which :func:`plan_stripes` sized for the budget).

    ``input_rows``: the input's natural block height (a stored row stripe, the width of a
    column stripe, the height of a band of tiles), but no taller than an output stripe, so
    that one output stripe in flight holds at most its stripe plus the input chunks that
    overlap it (``stripe + 2 x input_rows`` rows); ``block_size_limit``: the bytes of one
    output stripe, the largest chunk the rechunk may create.
    """
    m = max(1, int(stripe_rows))
    return {"input_rows": max(1, min(int(natural_rows), m)), "block_size_limit": m * int(n) * int(itemsize)}


def hdf5_cache_bytes(stripe_rows: int, row_bytes: int) -> int:
    """HDF5 chunk cache of a build: two stripes, at least :data:`HDF5_MIN_CACHE_BYTES`."""
    return max(HDF5_MIN_CACHE_BYTES, 2 * stripe_rows * row_bytes)


# ---------------------------------------------------------------------------------------
# CLARA / CLARANS
# ---------------------------------------------------------------------------------------
def clara_sample_cap(memory_limit: int) -> int:
    """Largest default CLARA sample whose s x s float64 matrix is ``CLARA_SAMPLE_SHARE``
    of ``memory_limit``."""
    return int(math.isqrt(int(memory_limit * CLARA_SAMPLE_SHARE) // _F8))


def clara_sample_batch(s: int, k: int, memory_limit: int, parallelism: int) -> tuple[int, int]:
    """``(concurrent samples, gather bytes per sample)`` for CLARA samples of size ``s``.

    A running sample holds two s x s float64 matrices and ``64 x s x k`` bytes of swap
    state; at most :data:`CLARA_TASK_SHARE` of the budget runs at once (at least one
    sample, at most ``parallelism``).  Each gathers its matrix rows from a dissimilarity
    source in reads of ``memory_limit / (CLARA_GATHER_SHARE x concurrent)`` bytes, at least
    :data:`CLARA_MIN_GATHER_BYTES`.
    """
    task_bytes = 2 * _F8 * s * s + 64 * s * max(1, k)
    conc = max(1, min(parallelism, int(CLARA_TASK_SHARE * memory_limit // task_bytes)))
    gather = max(CLARA_MIN_GATHER_BYTES, memory_limit // (CLARA_GATHER_SHARE * conc))
    return int(conc), int(gather)


def gather_rows(budget: int, n: int, itemsize: int) -> int:
    """Rows of an n x n source read per ``take_rows`` call within ``budget`` bytes (>= 1)."""
    return int(max(1, int(budget // max(1, n * itemsize))))


def clara_scan_rows(n: int, d: int, memory_limit: int, chunk_rows: int) -> int:
    """Rows per block of CLARA's validating scan of a feature array.

    ``memory_limit / CLARA_SCAN_SHARE`` bytes of float64 rows, whole storage chunks of X
    (``chunk_rows``) when more than one fits.
    """
    rows = max(1, min(n, int(memory_limit // (CLARA_SCAN_SHARE * _F8 * d))))
    cr = int(chunk_rows)
    if cr > 1 and rows > cr:
        rows -= rows % cr
    return int(rows)


def clara_feature_block_rows(n: int, d: int, cols: int, memory_limit: int, threads: int,
                             chunk_rows: int) -> int:
    """Rows per block of a streaming CLARA feature pass.

    A row costs three float64 copies of its features, ``cols`` float64 distance columns and
    64 bytes of bookkeeping; ``threads + 1`` blocks (one per thread, one read ahead) use at
    most ``memory_limit / CLARA_FEATURE_SHARE``.  Whole storage chunks of X when at least
    one fits that, or when ``threads + 1`` chunks fit half the budget.
    """
    row_bytes = d * _F8 * 3 + cols * _F8 + 64
    per = max(1, int(memory_limit // (CLARA_FEATURE_SHARE * (threads + 1) * row_bytes)))
    cr = max(1, int(chunk_rows))
    if cr > 1:
        if per >= cr:
            per -= per % cr
        elif cr * row_bytes * (threads + 1) <= memory_limit // 2:
            per = cr  # whole storage chunks when they fit
    return int(min(per, n))


def largeclara_sample_batch(s: int, s0: int, k: int, d: int, n_samples: int, memory_limit: int,
                            parallelism: int) -> tuple[int, int]:
    """``(concurrent samples, memory_limit of each)`` for LargeCLARA's sample tasks.

    A running sample holds its first-level ``s0 x s0`` float64 matrix twice, 16 bytes per
    sample point and medoid (+ 8 spare) of swap state, its ``s x d`` float64 feature rows
    and 64 MiB of row blocks; at most :data:`CLARA_TASK_SHARE` of the budget runs at once
    (at least one sample, at most ``parallelism`` and ``n_samples``).  Each task gets an
    equal part of that share, at least 32 MiB.  Results do not depend on either number.
    """
    task_bytes = 2 * _F8 * s0 * s0 + 2 * _F8 * s * (k + 8) + _F8 * s * d + (64 << 20)
    conc = max(1, min(parallelism, n_samples, int(CLARA_TASK_SHARE * memory_limit // task_bytes)))
    return int(conc), int(max(32 << 20, int(CLARA_TASK_SHARE * memory_limit) // conc))


def largeclara_sample_rows(s: int, memory_limit: int) -> int:
    """Rows per block of a LargeCLARA sample's on-the-fly ``s x s`` float64 matrix: eight
    blocks (those in flight and their decode copies) within the task's ``memory_limit``."""
    return max(1, int(memory_limit // (8 * _F8 * s)))


def largeclara_candidate_rows(pool: int) -> int:
    """Medoids whose float64 distances to the ``pool`` gathered points LargeCLARA's polish
    computes at once when it picks candidates: about 8 MiB of distances (at least one row).
    A fixed target, not derived from ``memory_limit``; results do not depend on it."""
    return max(1, (8 << 20) // (_F8 * max(1, pool)))


def clarans_fetch_rows(memory_limit: int, searches: int, n: int, itemsize: int, cap: int) -> int:
    """Candidate rows each of ``searches`` concurrent CLARANS searches fetches at once.

    ``memory_limit / (CLARANS_FETCH_SHARE x searches)`` bytes of rows, between 1 and
    ``cap`` (the draw chunk).
    """
    share = memory_limit // (CLARANS_FETCH_SHARE * searches)
    return int(max(1, min(cap, share // max(1, n * itemsize))))


__all__ = [
    "CLARANS_FETCH_SHARE",
    "CLARA_FEATURE_SHARE",
    "CLARA_GATHER_SHARE",
    "CLARA_MIN_GATHER_BYTES",
    "CLARA_SAMPLE_SHARE",
    "CLARA_SCAN_SHARE",
    "CLARA_TASK_SHARE",
    "DECODE_FACTOR",
    "FEATURE_WORK_BYTES",
    "FEATURE_PREP_BYTES",
    "HDF5_CHUNK_BYTES",
    "HDF5_MIN_CACHE_BYTES",
    "MAX_STRIPE_BYTES",
    "MIN_BALANCED_STRIPE_BYTES",
    "MIN_MEMORY_LIMIT",
    "NATURAL_BLOCK_BYTES",
    "PREDICT_BLOCK_BYTES",
    "STREAM_READERS",
    "STRIPES_PER_THREAD",
    "VALIDATE_WORK_FACTOR",
    "WRITE_FACTOR",
    "block_rows",
    "chunk_decode_bytes",
    "run_floor_bytes",
    "clara_feature_block_rows",
    "clara_sample_batch",
    "clara_sample_cap",
    "clara_scan_rows",
    "clarans_fetch_rows",
    "feature_block_rows",
    "feature_scan_rows",
    "gather_rows",
    "largeclara_candidate_rows",
    "largeclara_sample_batch",
    "largeclara_sample_rows",
    "hdf5_cache_bytes",
    "natural_block_rows",
    "plan_stripes",
    "predict_block_rows",
    "read_concurrency",
    "reader_bytes",
    "stream_plan",
    "validate_block_rows",
]


def resident_plan(nbytes: int, budget: int, resident) -> tuple[bool, int]:
    """Whether a matrix of ``nbytes`` is held resident under ``budget`` bytes, and the share
    of the budget it was compared with.

    ``resident`` is ``"auto"`` (half the budget, :data:`RESIDENT_SHARE`), True (the whole
    budget; larger matrices are refused by the caller) or False (never).
    """
    if resident is False:
        return False, 0
    share = int(budget) if resident is True else int(RESIDENT_SHARE * budget)
    return int(nbytes) <= share, share


def stream_budget(memory_limit: int, held_bytes: int) -> int:
    """Budget left for blocks in flight while ``held_bytes`` are held resident (at least
    :data:`MIN_MEMORY_LIMIT`)."""
    return max(MIN_MEMORY_LIMIT, int(memory_limit) - int(held_bytes))
