"""Placement benchmark (issue 5, item 4): 100,000 cells against 1,000,000 synthetic tiles.

Measures, in one run: exact (IndexFlatL2) and HNSW search of the cells, recall@1 of HNSW
against exact (on a 2,000-cell sample, exact for all 100k would take ~1 min), and placement
with and without repetition rules. Also times exact vs HNSW at smaller store sizes, which is
where vecindex.HNSW_MIN_TILES comes from. Goal: search + placement ≤ 10 s, recall@1 ≥ 0.95.

    python bench/bench_placement.py [--tiles 1000000] [--cells 100000]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine  # noqa: E402

from mosaicdb.render.placement import place  # noqa: E402
from mosaicdb.store import vecindex as V  # noqa: E402


def lab_like(n: int, dim: int, rng) -> np.ndarray:
    """Vectors that look like k×k Lab grids: a base colour per photo plus smaller per-cell
    variation (uniform L 0–100, a/b ±60)."""
    base = np.column_stack(
        [rng.uniform(0, 100, n), rng.uniform(-60, 60, n), rng.uniform(-60, 60, n)]
    )
    cells = dim // 3
    v = np.repeat(base[:, None, :], cells, axis=1) + rng.normal(0, 6, (n, cells, 3))
    return v.reshape(n, dim).astype(np.float32)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--tiles", type=int, default=1_000_000)
    ap.add_argument("--cells", type=int, default=100_000)
    ap.add_argument("--dim", type=int, default=27)
    a = ap.parse_args()
    print(machine())
    rng = np.random.default_rng(0)
    tiles = lab_like(a.tiles, a.dim, rng)
    cells = lab_like(a.cells, a.dim, rng)
    ids = np.arange(1, a.tiles + 1, dtype=np.int64)
    rows = int(np.sqrt(a.cells * 2 / 3))
    cols = a.cells // rows
    n = rows * cols
    cells = cells[:n]
    k = 16

    print(
        f"\nexact vs HNSW (M=32, efSearch={V.HNSW_EF_SEARCH}) search of {n:,} cells, k={k}, "
        "by store size"
    )
    print(f"{'tiles':>10} {'exact s':>8} {'hnsw build s':>12} {'hnsw s':>7} {'recall@1':>9}")
    sample = rng.choice(n, 2000, replace=False)
    for size in (10_000, 100_000, a.tiles):
        if size > a.tiles:
            continue
        flat = V.new_index(a.dim)
        V.add(flat, ids[:size], tiles[:size])
        t = time.perf_counter()
        if size <= 100_000:
            _, ex = V.search(flat, cells, k)
            t_exact = time.perf_counter() - t
            ex1 = ex[sample, 0]
        else:  # exact on a sample, scaled up
            _, ex = V.search(flat, cells[sample], k)
            t_exact = (time.perf_counter() - t) * n / len(sample)
            ex1 = ex[:, 0]
        t = time.perf_counter()
        h = V.new_hnsw(a.dim)
        V.add(h, ids[:size], tiles[:size])
        t_build = time.perf_counter() - t
        V.set_ef_search(h, V.HNSW_EF_SEARCH)
        t = time.perf_counter()
        hd, hi = V.search(h, cells, k)
        t_hnsw = time.perf_counter() - t
        recall = float((hi[sample, 0] == ex1).mean())
        est = "~" if size > 100_000 else " "
        print(f"{size:>10,} {est}{t_exact:>7.2f} {t_build:>12.2f} {t_hnsw:>7.2f} {recall:>9.3f}")
    print(f"(exact times marked ~ are extrapolated from {len(sample):,} cells)")

    print(f"\nplacement of {rows}×{cols} = {n:,} cells on the HNSW candidates of {a.tiles:,} tiles")

    def widen(which, allowed, kk):
        if allowed.all():
            return V.search(h, cells[which], kk)
        sub = V.new_index(a.dim)
        V.add(sub, ids[allowed], tiles[allowed])
        return V.search(sub, cells[which], kk)

    for mu, md in ((0, 0), (3, 0), (0, 2), (3, 2)):
        t = time.perf_counter()
        plan = place(
            hi, hd, rows, cols, max_uses=mu, min_distance=md, seed=0, widen=widen, all_ids=ids
        )
        dt = time.perf_counter() - t
        top1 = float((plan == hi[:, 0]).mean())
        print(
            f"  --max-uses {mu} --min-distance {md}: placement {dt:5.2f} s, search+placement "
            f"{dt + t_hnsw:5.2f} s (goal ≤ 10 s), {top1:.1%} of cells got their nearest tile"
        )


if __name__ == "__main__":
    main()
