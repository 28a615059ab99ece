"""PostgreSQL catalog and Dask executor, measured side by side in one run.

1. Bulk writes: rows/s of index results (photo row + ~12 KB thumbnail + 27-d vector) through
   Catalog.write_results in batches of 200: SQLite (WAL, synchronous=NORMAL) vs PostgreSQL
   (COPY into a staging table + upsert; durable defaults: fsync on), and PostgreSQL with two
   writer processes at once. Goal: PostgreSQL >= 0.5x SQLite, and more with more writers.
2. Indexing the 2,000 real photos (data/lib2k), each run into a new catalog, wall of the whole
   `mosaicdb index` command: local pool -j2 on SQLite (the baseline), Dask LocalCluster of 2
   workers on SQLite (default shard size: at most 10,000 files, fewer so that each worker gets
   several shards), local pool -j2 on PostgreSQL, and two `mosaicdb index -j1` at once into
   one PostgreSQL catalog vs one. Goal: Dask >= 0.8x the local pool.

The PostgreSQL server is a throwaway cluster (tests/pg_cluster.py; Debian package
`postgresql`). Usage: .venv/bin/python bench/bench_postgres.py [--rows N] [--skip-index]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from multiprocessing import get_context
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
import pg_cluster
from _common import ensure_lib2k
from sqlalchemy import select

from mosaicdb.records import PhotoResult
from mosaicdb.store import catalog as db
from mosaicdb.store import migrate, schema


def fake_results(start: int, n: int, rng_seed: int = 0) -> list[PhotoResult]:
    import numpy as np

    rng = np.random.default_rng(rng_seed + start)
    thumb = rng.integers(0, 256, 12_000, dtype=np.uint8).tobytes()  # JPEG-like: incompressible
    out = []
    for i in range(start, start + n):
        vec = rng.random(27, dtype=np.float32).tobytes()
        out.append(
            PhotoResult(
                f"/photos/d{i // 1000:05d}/p{i:08d}.jpg".encode(),
                3_000_000 + i,
                1_700_000_000_000_000_000 + i,
                "ok",
                width=4000,
                height=3000,
                format="jpeg",
                thumb=thumb[: 11_000 + i % 1000],
                thumb_w=341,
                thumb_h=256,
                thumb_codec="jpeg",
                vector=vec,
                mean=(50.0, 1.0, -1.0),
            )
        )
    return out


def write_rows(url: str, start: int, n: int, batch: int = 200, barrier=None) -> tuple:
    """Write n fake results (paths start..start+n) in batches; return (start, end) wall
    clock times of the writing alone (data made and connection opened before)."""
    engine = schema.make_engine(url)
    cat = db.Catalog(engine)
    with engine.begin() as c:
        rid = c.execute(select(schema.roots.c.id).where(schema.roots.c.path == b"/photos")).scalar()
    batches = [fake_results(s, min(batch, start + n - s)) for s in range(start, start + n, batch)]
    if barrier is not None:
        barrier.wait()  # every writer starts together
    t0 = time.time()
    for res in batches:
        cat.write_results(res, {r.path: rid for r in res}, {}, "lab3v1")
    t1 = time.time()
    engine.dispose()
    return t0, t1


def fresh_catalog(url: str) -> None:
    engine = schema.make_engine(url)
    migrate.ensure_schema(engine)
    db.Catalog(engine).add_root(b"/photos")
    engine.dispose()


def bench_writes(cluster, rows: int) -> dict:
    tmp = Path(tempfile.mkdtemp())
    out = {}
    sq = f"sqlite:///{tmp / 'w.sqlite'}"
    fresh_catalog(sq)
    t0, t1 = write_rows(sq, 0, rows)
    out["sqlite_1"] = rows / (t1 - t0)
    pg1 = cluster.create_database()
    fresh_catalog(pg1)
    t0, t1 = write_rows(pg1, 0, rows)
    out["postgres_1"] = rows / (t1 - t0)
    pg2 = cluster.create_database()
    fresh_catalog(pg2)
    ctx = get_context("spawn")
    with ctx.Manager() as m, ctx.Pool(2) as pool:
        barrier = m.Barrier(2)
        half = rows // 2
        spans = pool.starmap(
            write_rows, [(pg2, 0, half, 200, barrier), (pg2, half, rows - half, 200, barrier)]
        )
    out["postgres_2_writers"] = rows / (max(e for _, e in spans) - min(s for s, _ in spans))
    return out


def index_run(args: list[str], env: dict, n: int = 1) -> tuple[float, list[dict]]:
    cmd = [sys.executable, "-m", "mosaicdb", "index", *args, "--json", "-q"]
    t0 = time.perf_counter()
    procs = [
        subprocess.Popen(
            cmd,
            env={**os.environ, **env, "MOSAICDB_HOME": tempfile.mkdtemp()},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(n)
    ]
    outs = [p.communicate() for p in procs]
    dt = time.perf_counter() - t0
    for p, (o, e) in zip(procs, outs, strict=True):
        if p.returncode:
            sys.exit(f"index failed: {e}\n{o}")
    return dt, [json.loads(o) for o, _ in outs]


def bench_index(cluster) -> dict:
    lib, _ = ensure_lib2k()
    n = sum(1 for _ in lib.rglob("*.jpg"))
    out = {"files": n}

    def rate(label, args, env, k=1, db_url=None):
        if db_url:  # schema first, so the runs time indexing only
            fresh_catalog(db_url)
        dt, sums = index_run([str(lib), *args], env, k)
        added = sum(s["added"] for s in sums)
        assert added == n, (label, sums)
        out[label] = {
            "seconds": round(dt, 2),
            "files_per_s": round(n / dt, 1),
            "added_each": [s["added"] for s in sums],
        }
        print(f"  {label:28s} {dt:7.2f} s  {n / dt:7.1f} files/s  {out[label]['added_each']}")

    rate("local_pool_j2_sqlite", ["-j", "2"], {"MOSAICDB_DB": ""})
    rate("dask_local_2_sqlite", ["-j", "2", "--executor", "dask"], {"MOSAICDB_DB": ""})
    url = cluster.create_database()
    rate("local_pool_j2_postgres", ["-j", "2"], {"MOSAICDB_DB": url}, db_url=url)
    url = cluster.create_database()
    rate(
        "dask_local_2_postgres",
        ["-j", "2", "--executor", "dask"],
        {"MOSAICDB_DB": url},
        db_url=url,
    )
    url = cluster.create_database()
    rate("two_indexers_j1_postgres", ["-j", "1"], {"MOSAICDB_DB": url}, k=2, db_url=url)
    url = cluster.create_database()
    rate("one_indexer_j1_postgres", ["-j", "1"], {"MOSAICDB_DB": url}, db_url=url)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=20_000)
    ap.add_argument("--skip-index", action="store_true")
    a = ap.parse_args()
    reason = pg_cluster.unavailable_reason()
    if reason:
        sys.exit(reason)
    os.environ.pop("MOSAICDB_DB", None)
    cluster = pg_cluster.Cluster(durable=True).start()
    try:
        print(f"bulk writes, {a.rows:,} rows (thumbnail ~11.5 KB + 27-d vector), batches of 200")
        w = bench_writes(cluster, a.rows)
        for k, v in w.items():
            print(f"  {k:28s} {v:10,.0f} rows/s")
        print(
            f"  ratio PostgreSQL/SQLite (1 writer):  {w['postgres_1'] / w['sqlite_1']:.2f}  "
            "(goal >= 0.5)"
        )
        scale = w["postgres_2_writers"] / w["postgres_1"]
        print(f"  ratio PostgreSQL 2 writers/1 writer: {scale:.2f}")
        if a.skip_index:
            return
        print("indexing data/lib2k (whole command wall, new catalog each run)")
        r = bench_index(cluster)
        base = r["local_pool_j2_sqlite"]["files_per_s"]
        print(
            f"  ratio Dask LocalCluster(2) / local pool -j2:  "
            f"{r['dask_local_2_sqlite']['files_per_s'] / base:.2f}  (goal >= 0.8)"
        )
        pg = r["local_pool_j2_postgres"]["files_per_s"]
        print(
            "  ratio Dask LocalCluster(2) / local pool -j2, PostgreSQL catalog:  "
            f"{r['dask_local_2_postgres']['files_per_s'] / pg:.2f}"
        )
        print(
            f"  ratio PostgreSQL / SQLite, local pool -j2:    "
            f"{r['local_pool_j2_postgres']['files_per_s'] / base:.2f}"
        )
        two = r["two_indexers_j1_postgres"]["files_per_s"]
        one = r["one_indexer_j1_postgres"]["files_per_s"]
        print(f"  ratio two indexers -j1 / one indexer -j1 (PostgreSQL): {two / one:.2f}")
    finally:
        cluster.stop()


if __name__ == "__main__":
    main()
