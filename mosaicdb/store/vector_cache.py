"""The vector cache: this machine's FAISS files of a store, kept in step with the catalog.

The catalog is the truth; the vector files (`vectors-SPEC.faiss`, and an HNSW graph beside the
exact file for mid-size stores) are a local cache of it, checked on every use by the change
counter and updated in place or rebuilt. faiss itself stays in vecindex.py."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


class VectorCache:
    """The vector files of the store `ctx` (its home, catalog and progress)."""

    def __init__(self, ctx: Context):
        self.ctx = ctx

    def path(self, spec=None) -> Path:
        return self.ctx.home / f"vectors-{(spec or self.ctx.spec).key}.faiss"

    def sync(self, spec=None, rebuild: bool = False) -> dict:
        """Bring the FAISS file in line with the catalog: unchanged, updated in place from the
        catalog's change counter, or rebuilt when it is missing, disagrees, or (compressed
        kind) the store has grown or shrunk twofold since its quantizer was trained."""
        import numpy as np

        from mosaicdb.store import vecindex as V

        spec = spec or self.ctx.spec
        path = self.path(spec)
        key = self.cache_key(f"vectors.{spec.key}")
        raw = self.ctx.catalog.get_meta(key)
        state = json.loads(raw) if raw else None
        fst = path.stat() if path.exists() else None

        def kind_of(count: int) -> str:
            return "compressed" if count >= V.COMPRESSED_MIN_TILES else "flat"

        # the file on disk is the one last written, and may be kept
        recorded = (
            not rebuild
            and state
            and fst
            and state.get("size") == fst.st_size
            and state.get("mtime_ns") == fst.st_mtime_ns
        )
        # Every write and deletion of a vector moves the change counter (logged deletions
        # since schema 0006; states recorded since then say fp 2): when it and the file are as
        # recorded, nothing changed, and counting the vectors (a scan: ~0.4 s at 1M, ~2 s at
        # 10M) is left to `check`, which compares file and catalog in full.
        if (
            recorded
            and state.get("fp") == 2
            and state.get("kind", "flat") == kind_of(state["count"])
            and state.get("seq") == self.ctx.catalog.change_counter(spec.key)
        ):
            return {"action": "unchanged", "count": state["count"]}
        n, idsum, maxseq = self.ctx.catalog.feature_state(spec.key)
        kind = kind_of(n)
        want = {"count": n, "idsum": idsum, "seq": maxseq}
        usable = (
            not rebuild
            and state
            and fst
            and state.get("kind", "flat") == kind
            and (kind == "flat" or state["trained"] <= 2 * n <= 4 * state["trained"])
        )
        if usable and recorded and {k: state.get(k) for k in want} == want:
            if state.get("fp") != 2:  # counted and found equal: the counter can say so next time
                self.ctx.catalog.set_meta({key: json.dumps({**state, "fp": 2})})
            return {"action": "unchanged", "count": n}

        from mosaicdb.features import unpack_vectors

        def vecs(blobs):
            return unpack_vectors(blobs, spec.dim)

        def agrees(index) -> bool:
            ids = V.ids_of(index)
            return len(ids) == n and int(ids.sum()) == idsum

        index, action, trained = None, "rebuilt", n
        if usable:
            try:
                index = V.read(path)
            except Exception:
                index = None
            if index is not None and (index.ntotal != state.get("count") or index.d != spec.dim):
                index = None
            if index is not None:
                V.remove(index, self.ctx.catalog.deleted_since(state["seq"]))
                for ids, blobs in self.ctx.catalog.iter_vectors(spec.key, since_seq=state["seq"]):
                    V.remove(index, ids)
                    V.add(index, ids, vecs(blobs))
                # A catalog written before deletions were logged (or edited by hand) can still
                # disagree: then the whole id list is compared (10M ids cost seconds).
                if not agrees(index):
                    gone = np.setdiff1d(  # both id lists are unique: 50× faster at 10M
                        V.ids_of(index),
                        np.asarray(self.ctx.catalog.feature_ids(spec.key)),
                        assume_unique=True,
                    )
                    V.remove(index, gone)
                if agrees(index):
                    action, trained = "updated", state.get("trained", n)
                else:
                    index = None
        if index is None:
            index = (
                self._build_compressed(spec, n, vecs)
                if kind == "compressed"
                else self._build_flat(spec, vecs)
            )
        V.write_atomic(index, path)
        fst = path.stat()
        self.ctx.catalog.set_meta(
            {
                key: json.dumps(
                    {
                        **want,
                        "fp": 2,
                        "kind": kind,
                        "trained": trained,
                        "size": fst.st_size,
                        "mtime_ns": fst.st_mtime_ns,
                    }
                )
            }
        )
        return {"action": action, "count": n}

    def _build_flat(self, spec, vecs):
        from mosaicdb.store import vecindex as V

        index = V.new_index(spec.dim)
        for ids, blobs in self.ctx.catalog.iter_vectors(spec.key):
            V.add(index, ids, vecs(blobs))
        return index

    def _build_compressed(self, spec, n: int, vecs):
        """Train one quantizer on a sample of the catalog, build shards of SHARD_VECTORS with
        it (build_shard is pure: a pool or Dask could run them) and merge them."""
        from mosaicdb.store import vecindex as V

        nlist = V.ivf_nlist(n)
        with self.ctx.progress.task("Building compressed vector index", total=n) as t:
            step = max(1, n // (nlist * V.TRAIN_PER_LIST))
            _, sample = self.ctx.catalog.sample_vectors(spec.key, step)
            trained = V.to_bytes(V.train_compressed(vecs(sample), nlist))

            def shards():
                for ids, blobs in self.ctx.catalog.iter_vectors(spec.key, chunk=V.SHARD_VECTORS):
                    yield V.build_shard(trained, ids, vecs(blobs))
                    t.advance(len(ids))

            return V.merge_shards(trained, shards())

    def kind(self, spec=None) -> str | None:
        """What this machine's vector file of `spec` is, as last written: "exact" or
        "compressed" (None before the first one)."""
        spec = spec or self.ctx.spec
        raw = self.ctx.catalog.get_meta(self.cache_key(f"vectors.{spec.key}"))
        if not raw:
            return None
        return "exact" if json.loads(raw).get("kind", "flat") == "flat" else "compressed"

    def cache_key(self, name: str) -> str:
        """The meta key recording the state of a local vector file. A shared catalog serves
        many machines, each with its own cache file: their keys must not collide."""
        if not self.ctx.catalog.shared:
            return name
        import hashlib
        import socket

        where = f"{socket.gethostname()}:{os.path.realpath(self.ctx.home)}".encode()
        return f"{name}@{hashlib.sha1(where).hexdigest()[:16]}"

    def index(self, spec=None):
        """The FAISS index of `spec` (exact, or compressed for big stores), checked against
        the catalog (updated or rebuilt if stale)."""
        from mosaicdb.store import vecindex as V

        self.sync(spec)
        return V.read(self.path(spec))

    def search_index(self, spec, exact):
        """What render searches: the exact index for small stores, an HNSW graph (cached on
        disk next to the exact file, rebuilt when the catalog changed) above
        vecindex.HNSW_MIN_TILES tiles, the compressed index itself above
        vecindex.COMPRESSED_MIN_TILES."""
        from mosaicdb.store import vecindex as V

        if exact.ntotal < V.HNSW_MIN_TILES or V.is_compressed(exact):
            return exact
        path = self.ctx.home / f"vectors-{spec.key}.hnsw.faiss"
        key = self.cache_key(f"hnsw.{spec.key}")
        want = self.ctx.catalog.get_meta(self.cache_key(f"vectors.{spec.key}"))
        if path.exists() and self.ctx.catalog.get_meta(key) == want:
            index = V.read(path)
        else:
            with self.ctx.progress.task("Building HNSW graph", total=None):
                index = V.new_hnsw(exact.d)
                V.add(index, V.ids_of(exact), exact.index.reconstruct_n(0, exact.ntotal))
            V.write_atomic(index, path)
            self.ctx.catalog.set_meta({key: want})
        V.set_ef_search(index, V.HNSW_EF_SEARCH)
        return index
