"""The vector index: the only module that imports faiss.

The FAISS file is a cache of the catalog's feature vectors, keyed by photo id
(`IndexIDMap2` over an exact `IndexFlatL2`). It is written to a temporary file and renamed, and
never trusted blindly: the catalog records what the file should hold (see library.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import faiss
import numpy as np


def new_index(dim: int):
    return faiss.IndexIDMap2(faiss.IndexFlatL2(dim))


def read(path: Path):
    return faiss.read_index(str(path))


def read_mapped(path: Path):
    """Read-only view whose stored vectors stay mapped from the file (not read): for looking
    at the ids and counts only."""
    return faiss.read_index(str(path), faiss.IO_FLAG_MMAP_IFC | faiss.IO_FLAG_READ_ONLY)


def write_atomic(index, path: Path) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        faiss.write_index(index, str(tmp))
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def ids_of(index) -> np.ndarray:
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


def search(index, queries: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """k nearest (squared L2 distances, photo ids) per query; id -1 marks an empty slot."""
    q = np.ascontiguousarray(queries, dtype=np.float32)
    return index.search(q, min(k, max(1, index.ntotal)))


# Above this many tiles, render searches an HNSW graph instead of the exact index. Measured in
# bench/bench_placement.py for 100,000 cells: exact 3.8 s at 10k tiles, 25.5 s at 100k;
# HNSW 2.3 s and 6.2 s (recall@1 1.000), its graph built once (5 s at 100k) and cached.
HNSW_MIN_TILES = 50_000
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
