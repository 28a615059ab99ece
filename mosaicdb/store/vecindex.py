"""The vector index: the only module that imports faiss.

The FAISS file is a cache of the catalog's feature vectors, keyed by photo id. Up to
COMPRESSED_MIN_TILES photos it is exact (`IndexIDMap2` over `IndexFlatL2`); above, a trained
compressed index (IVF with an 8-bit scalar quantizer, photo ids stored in the inverted lists),
built in shards that share one trained quantizer and are merged. It is written to a temporary
file and renamed, and never trusted blindly: the catalog records what the file should hold
(see store/vector_cache.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np

from mosaicdb.records import pid_running

# Exact search of 20 queries or more through BLAS (the distances as one matrix product), as
# FAISS did before 1.15 raised this to 128,000: 512 queries against 22,000 27-d vectors took
# 72 ms on FAISS's own SIMD path and 21 ms through BLAS; from ~8,000 queries on they are equal.
faiss.cvar.distance_compute_blas_threshold = 20


def new_index(dim: int):
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def read(path: Path):
    return faiss.read_index(str(path))


def read_mapped(path: Path):
    """Read-only view whose stored vectors stay mapped from the file (not read): for looking
    at the ids and counts only."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def write_atomic(index, path: Path) -> None:
    """Write to a temporary file named by this process, then rename. The temporary files of
    writers that died (kill -9; as large as the index) are removed first."""
    for old in path.parent.glob(f".{path.name}.*.tmp"):
        pid = old.name[len(path.name) + 2 : -len(".tmp")]
        if pid.isdigit() and not pid_running(int(pid)):
            old.unlink(missing_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        # through Python's file, not faiss's: faiss only prints a failed close (a full disk)
        # and carries on, so a partial file was renamed over the whole one
        with open(tmp, "wb") as f:
            faiss.write_index(index, faiss.PyCallbackIOWriter(f.write))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as e:  # the file the user knows, not the temporary one
        raise OSError(e.errno, e.strerror, str(path)) from None
    finally:
        if tmp.exists():
            tmp.unlink()


def ids_of(index) -> np.ndarray:
    if is_compressed(index):
        invlists = faiss.extract_index_ivf(index).invlists
        parts = []
        for lst in range(invlists.nlist):
            size = invlists.list_size(lst)
            if size:
                ptr = invlists.get_ids(lst)
                parts.append(faiss.rev_swig_ptr(ptr, size).copy())
                invlists.release_ids(lst, ptr)
        return np.concatenate(parts).astype(np.int64) if parts else np.empty(0, np.int64)
    return faiss.vector_to_array(index.id_map).astype(np.int64)


def add(index, ids, vectors: np.ndarray) -> None:
    if len(ids):
        index.add_with_ids(
            np.ascontiguousarray(vectors, dtype=np.float32), np.asarray(ids, np.int64)
        )


def remove(index, ids) -> int:
    ids = np.asarray(ids, dtype=np.int64)
    if not len(ids):
        return 0
    return index.remove_ids(faiss.IDSelectorBatch(ids))


def search(
    index, queries: np.ndarray, k: int, among: np.ndarray | None = None, excluding=None
) -> tuple[np.ndarray, np.ndarray]:
    """k nearest (squared L2 distances, photo ids) per query; id -1 marks an empty slot.
    For a compressed index, `among` restricts the answers to those photo ids, or `excluding`
    leaves those out (the cheaper one to pass is the shorter list)."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    k = min(k, max(1, index.ntotal))
    if among is None and excluding is None:
        return index.search(q, k)
    ivf = faiss.extract_index_ivf(index)
    if among is not None:
        inner = sel = faiss.IDSelectorBatch(np.ascontiguousarray(among, dtype=np.int64))
        share = len(among) / max(index.ntotal, 1)
    else:
        inner = faiss.IDSelectorBatch(np.ascontiguousarray(excluding, dtype=np.int64))
        sel = faiss.IDSelectorNot(inner)
        share = 1 - len(excluding) / max(index.ntotal, 1)
    # A few allowed photos are spread thinly over the lists: probe more of them, in proportion.
    nprobe = min(ivf.nlist, max(ivf.nprobe, int(np.ceil(ivf.nprobe / max(share, 1e-9)))))
    params = faiss.SearchParametersIVF(sel=sel, nprobe=nprobe)
    found = index.search(q, k, params=params)
    del inner  # the selectors must outlive the search (FAISS holds raw pointers)
    return found


# Above this many tiles render searches an HNSW graph (cached beside the exact index): at
# 100,000 cells it is 2.7–9.6× faster at recall@1 1.000 (bench/bench_placement.py, bench/README.md).
HNSW_MIN_TILES = 10_000
HNSW_EF_SEARCH = 24


def new_hnsw(dim: int, m: int = 32, ef_construction: int = 40):
    index = faiss.IndexHNSWFlat(dim, m)
    index.hnsw.efConstruction = ef_construction
    return faiss.IndexIDMap2(index)


def set_ef_search(index, ef: int) -> None:
    faiss.downcast_index(index.index).hnsw.efSearch = ef


def reconstruct(index, ids) -> np.ndarray:
    """Stored vectors of `ids` (IndexIDMap2 keeps the id → row map)."""
    return (
        np.vstack([index.reconstruct(int(i)) for i in ids])
        if len(ids)
        else np.empty((0, index.d), np.float32)
    )


def stored_vectors(index) -> np.ndarray:
    """All vectors of an IndexIDMap2(IndexFlat) in storage order (aligned with ids_of), as a
    read-only view of FAISS's own buffer: no copy."""
    flat = faiss.downcast_index(index.index)
    return faiss.rev_swig_ptr(flat.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


# -- the compressed index -------------------------------------------------------------------
# Above this many tiles the cache is an IVF index with 8-bit scalar-quantized residuals (27 B
# code + 8 B id per photo: 35 B, against 116 B exact plus 388 B for the HNSW graph render
# searches: over render's 1 GB at 2M). At 10M (bench/bench_vectors_scale.py, docs/SCALING.md):
# built in 154 s; 100,000 queries at nprobe 8 in 49 s, recall@1 0.980 (nprobe 4: 28 s, 0.934).
COMPRESSED_MIN_TILES = 2_000_000
IVF_NPROBE = 8
# k-means wants ≥ 39 training points per list; more only costs training time.
TRAIN_PER_LIST = 64
# Vectors per shard when building: bounds the build's memory (1M × 27 floats = 108 MB).
SHARD_VECTORS = 1_000_000


class MergeError(Exception):
    """Shards that must not be merged (their results would be silently wrong)."""


def ivf_nlist(n: int) -> int:
    """Inverted lists for n vectors: the power of two at or below 2.5·√n (2,048 lists of ~490
    at 1M, 4,096 of ~2,440 at 10M), at least 1 and never more than n / 39 so that training
    stays meaningful. 8,192 lists at 10M took minutes longer to train and fill here."""
    return 1 << max(0, int(np.log2(max(1.0, min(2.5 * np.sqrt(n), n / 39)))))


def is_compressed(index) -> bool:
    return isinstance(faiss.downcast_index(index), faiss.IndexIVF)


def train_compressed(sample: np.ndarray, nlist: int):
    """An empty IVF-SQ8 index trained on `sample`: the one quantizer every shard shares."""
    sample = np.ascontiguousarray(sample, dtype=np.float32)
    index = faiss.index_factory(sample.shape[1], f"IVF{nlist},SQ8")
    index.train(sample)
    faiss.extract_index_ivf(index).nprobe = IVF_NPROBE
    return index


def quantizer_fingerprint(index) -> str:
    """What a shard was trained with (coarse centroids + scalar quantizer ranges): shards can
    be merged only when theirs are equal. FAISS 1.15 compares the centroids itself, not the
    ranges."""
    import hashlib

    ivf = faiss.extract_index_ivf(index)
    coarse = faiss.downcast_index(ivf.quantizer)
    h = hashlib.sha1()
    h.update(faiss.rev_swig_ptr(coarse.get_xb(), coarse.ntotal * coarse.d).tobytes())
    h.update(faiss.vector_to_array(faiss.downcast_index(index).sq.trained).tobytes())
    return h.hexdigest()


def to_bytes(index) -> bytes:
    return faiss.serialize_index(index).tobytes()


def from_bytes(data: bytes):
    return faiss.deserialize_index(np.frombuffer(data, dtype=np.uint8))


def build_shard(trained: bytes, ids, vectors: np.ndarray) -> bytes:
    """One shard: the trained empty index (serialized) plus these vectors under their photo
    ids. Pure, so a process pool or a Dask worker can run it."""
    shard = from_bytes(trained)
    add(shard, ids, vectors)
    return to_bytes(shard)


def merge_shards(trained: bytes, shards) -> object:
    """Merge shards built from `trained` into one index. Refuses the merges that give wrong
    answers: a shard trained with another quantizer (its codes mean other vectors; FAISS would
    take one with the same centroids but other ranges) and shards whose ids overlap (e.g. added
    without ids, so each counted from 0: FAISS merges those silently)."""
    merged = from_bytes(trained)
    want = quantizer_fingerprint(merged)
    seen = 0
    for i, data in enumerate(shards):
        shard = from_bytes(data) if isinstance(data, (bytes, bytearray)) else data
        if quantizer_fingerprint(shard) != want:
            raise MergeError(f"shard {i} was trained with another quantizer")
        before, adding = merged.ntotal, shard.ntotal
        merged.merge_from(shard, 0)  # moves the shard's lists: it is empty afterwards
        seen += adding
        if merged.ntotal != before + adding:
            raise MergeError(f"shard {i}: merged count {merged.ntotal} ≠ {before} + {adding}")
    ids = ids_of(merged)
    if len(ids) != seen or len(np.unique(ids)) != len(ids):
        raise MergeError("shards share photo ids; each photo must be in exactly one shard")
    return merged


def hamming_within(queries: np.ndarray, base: np.ndarray, bits: int):
    """The rows of `base` within `bits` bits of each query (64-bit hashes as int64), by an
    exact binary FAISS search: (lims, distances, rows) as `range_search` returns them — the
    matches of query q are rows[lims[q]:lims[q + 1]]."""
    index = faiss.IndexBinaryFlat(64)
    if len(base):
        index.add(np.ascontiguousarray(base, dtype="<i8").view(np.uint8).reshape(-1, 8))
    q = np.ascontiguousarray(queries, dtype="<i8").view(np.uint8).reshape(-1, 8)
    lims, dist, rows = index.range_search(q, bits + 1)  # FAISS keeps distances < radius
    return lims, dist, rows
