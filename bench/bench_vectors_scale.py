"""Vector index at scale (issue 9, item 4): 10,000,000 synthetic 27-d vectors.

The catalog is a synthetic store (bench_queries.build: the indexer's own write path, Lab-like
random vectors, a tiny thumbnail per photo), built once into data/ and reused. Measured in
one run, all through the product's own code:
- build: `Library.sync_vectors(rebuild=True)` on the catalog: a training sample read from the
  catalog, one quantizer trained, shards of vecindex.SHARD_VECTORS built with it, merged, written;
- bytes per vector of the file on disk (goal ≤ 40);
- 100,000 queries (k = 16) at nprobe = IVF_NPROBE and its neighbours, and recall@1 against an
  exact IndexFlatL2 over the same vectors on a sample of queries (goal ≥ 0.9);
- incremental refresh: 1,000 photos written to the catalog, then `sync_vectors()` (goal ≤ 5 s),
  and the same after deleting them again.

    python bench/bench_vectors_scale.py [--photos 10000000] [--sample 500]
"""

from __future__ import annotations

import argparse
import shutil
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, machine  # noqa: E402
from bench_placement import lab_like  # noqa: E402
from bench_queries import build  # noqa: E402


def main():
    from mosaicdb.store import vecindex as V

    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=10_000_000)
    ap.add_argument("--queries", type=int, default=100_000)
    ap.add_argument("--sample", type=int, default=500, help="queries checked against exact")
    ap.add_argument(
        "--refresh-only", action="store_true", help="only the refresh part (index file kept)"
    )
    a = ap.parse_args()
    print(machine())
    home = DATA / f"store-synthetic-{a.photos}"
    if not (home / "catalog.sqlite").exists():
        shutil.rmtree(home, ignore_errors=True)
        build(home, a.photos, sync=False)
    n = a.photos
    assert n >= V.COMPRESSED_MIN_TILES, "below the threshold the index is exact"

    if not a.refresh_only:
        build_and_query(home, a, n)
    refresh(home, n)


def build_and_query(home: Path, a, n: int) -> None:
    import faiss

    import mosaicdb
    from mosaicdb.store import vecindex as V

    with mosaicdb.open(home) as lib:
        spec = lib.spec
        t = time.perf_counter()
        assert lib.sync_vectors(rebuild=True)["action"] == "rebuilt"
        build_s = time.perf_counter() - t
        path = lib.vector_path()
        size = path.stat().st_size
        index = V.read(path)
        assert V.is_compressed(index) and index.ntotal == n
        ivf = faiss.extract_index_ivf(index)
        print(
            f"\n{n:,} vectors, {spec.dim}-d: IVF{ivf.nlist},SQ8 trained on "
            f"{ivf.nlist * V.TRAIN_PER_LIST:,} sampled vectors, built in shards of "
            f"{V.SHARD_VECTORS:,} and merged"
        )
        print(f"build from the catalog (sample, train, shards, merge, write): {build_s:.1f} s")
        print(
            f"file {size / 2**20:,.0f} MB = {size / n:.1f} B/vector (goal ≤ 40; the exact "
            f"file is {4 * spec.dim + 8} B/vector)"
        )

        rng = np.random.default_rng(1)
        queries = lab_like(a.queries, spec.dim, rng)
        sample = rng.choice(a.queries, a.sample, replace=False)
        t = time.perf_counter()
        exact = faiss.IndexFlatL2(spec.dim)
        id_parts = []
        for ids, blobs in lib.catalog.iter_vectors(spec.key, chunk=1_000_000):
            exact.add(np.frombuffer(b"".join(blobs), np.float32).reshape(-1, spec.dim))
            id_parts.append(np.asarray(ids, np.int64))
        ids_all = np.concatenate(id_parts)
        _, gt_rows = exact.search(queries[sample], 1)
        gt = ids_all[gt_rows[:, 0]]
        exact_s = time.perf_counter() - t
        del exact
        print(f"exact ground truth for {a.sample} queries: {exact_s:.1f} s (load + search)")
        print(f"{'nprobe':>6} {f'{a.queries:,} queries s':>18} {'recall@1':>9} {'in top 16':>10}")
        for nprobe in sorted({max(1, V.IVF_NPROBE // 2), V.IVF_NPROBE, 2 * V.IVF_NPROBE}):
            ivf.nprobe = nprobe
            t = time.perf_counter()
            _, found = V.search(index, queries, 16)
            q_s = time.perf_counter() - t
            r1 = float((found[sample, 0] == gt).mean())
            r16 = float((found[sample] == gt[:, None]).any(axis=1).mean())
            mark = "  ← default" if nprobe == V.IVF_NPROBE else ""
            print(f"{nprobe:>6} {q_s:>18.1f} {r1:>9.3f} {r16:>10.3f}{mark}")
        del index


def refresh(home: Path, n: int) -> None:
    """Incremental refresh: 1,000 photos in, then out again."""
    import mosaicdb

    build(home, 1_000, first=n, sync=False, seed=2)
    with mosaicdb.open(home) as lib:
        t = time.perf_counter()
        r = lib.sync_vectors()
        add_s = time.perf_counter() - t
        assert r == {"action": "updated", "count": n + 1_000}, r
        new = sorted(lib.catalog.feature_ids(lib.spec.key))[-1_000:]
        lib.catalog.delete_photos(new)
        t = time.perf_counter()
        r = lib.sync_vectors()
        del_s = time.perf_counter() - t
        assert r == {"action": "updated", "count": n}, r
    print(f"\nrefresh after adding 1,000 photos: {add_s:.2f} s (goal ≤ 5 s)")
    print(f"refresh after deleting them again: {del_s:.2f} s (from the deletion log)")


if __name__ == "__main__":
    main()
