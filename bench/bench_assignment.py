"""Placement under repetition rules (issue 22): the solver choice, the gap to an exact dense
solver, and 100,000 cells × 100,000 photos under --max-uses 1.

Three parts, measured in one run on synthetic Lab-like vectors (bench_placement.lab_like):

1. solvers: the sparse min-cost flow mosaicdb uses (OR-Tools SimpleMinCostFlow, through
   placement.place) against scipy's min_weight_full_bipartite_matching on the same k-nearest
   graph with each photo copied N times; wall and total cost side by side.
2. gap: total cost of place() on instances ≤ 5,000 cells, with the candidate count a render
   uses (RenderOptions.candidates_per_cell), against scipy's dense linear_sum_assignment over
   N copies of the full cells × photos matrix. Goal ≤ 0.5 %.
3. scale: 100,000 cells × 100,000 photos, --max-uses 1, HNSW search + placement as render runs
   them, in a child process for its own peak RSS. Goal ≤ 20 s and ≤ 1 GB.

    python bench/bench_assignment.py [--quick]
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from bench_placement import lab_like

from mosaicdb.render.placement import Space, place
from mosaicdb.render.stage import RenderOptions
from mosaicdb.store import vecindex as V

DIM = 48  # a 4×4 Lab grid, the default feature spec


def instance(n_cells, n_photos, seed):
    rng = np.random.default_rng(seed)
    photos = lab_like(n_photos, DIM, rng)
    cells = lab_like(n_cells, DIM, rng)
    return cells, photos, np.arange(1, n_photos + 1, dtype=np.int64)


def callbacks(cells, photos, ids, index):
    """place()'s widen and near_cells, searching exactly as render does; `ids` sorted."""
    dim = cells.shape[1]

    def widen(which, allowed, kk):
        if allowed.all():
            return V.search(index, cells[which], kk)
        sub = V.new_index(dim)
        V.add(sub, ids[allowed], photos[allowed])
        return V.search(sub, cells[which], kk)

    def near_cells(photo_ids, _allowed, kk):
        grid = V.new_index(dim)
        V.add(grid, np.arange(len(cells), dtype=np.int64), cells)
        return V.search(grid, photos[np.searchsorted(ids, photo_ids)], kk)

    return widen, near_cells


def cost(cells, photos, plan):
    return float(np.sqrt(((cells - photos[plan - 1]) ** 2).sum(1)).sum())


def solvers(n_cells, n_photos, cap, k=16):
    from scipy.sparse import csr_matrix
    from scipy.sparse.csgraph import min_weight_full_bipartite_matching

    cells, photos, ids = instance(n_cells, n_photos, 1)
    index = V.new_index(DIM)
    V.add(index, ids, photos)
    d, i = V.search(index, cells, k)
    side = int(np.sqrt(n_cells))
    rows, cols = side, n_cells // side
    n = rows * cols
    cells, d, i = cells[:n], d[:n], i[:n]
    widen, near = callbacks(cells, photos, ids, index)
    t = time.perf_counter()
    plan = place(i, d, rows, cols, max_uses=cap, widen=widen, near_cells=near, all_ids=ids)
    t_flow = time.perf_counter() - t
    # scipy: the same arcs, every photo copied cap times (column j*cap + u)
    t = time.perf_counter()
    w = np.sqrt(np.maximum(d, 0)).astype(np.float64) + 1e-9  # explicit zeros are no arc
    r = np.repeat(np.arange(n), k * cap)
    c = ((i - 1)[:, :, None] * cap + np.arange(cap)).reshape(-1)
    m = csr_matrix((np.repeat(w.reshape(-1), cap), (r, c)), shape=(n, n_photos * cap))
    try:
        _, col = min_weight_full_bipartite_matching(m)
        sp_cost = cost(cells, photos, col // cap + 1)
        note = ""
    except ValueError as e:  # no full matching on the sparse graph: scipy has no repair
        sp_cost, note = float("nan"), f" ({e})"
    t_scipy = time.perf_counter() - t
    fc = cost(cells, photos, plan)
    print(
        f"{n:>7,} cells × {n_photos:>6,} photos cap {cap:>2}: OR-Tools flow {t_flow:6.2f} s "
        f"cost {fc:,.0f} | scipy {t_scipy:6.2f} s cost {sp_cost:,.0f}{note} | "
        f"wall ratio scipy/flow {t_scipy / t_flow:.2f}"
    )


def gap(rows, cols, n_photos, cap, seed):
    from scipy.optimize import linear_sum_assignment

    n = rows * cols
    cells, photos, ids = instance(n, n_photos, seed)
    k = min(RenderOptions(max_uses=cap, min_distance=0).candidates_per_cell(n), n_photos)
    index = V.new_index(DIM)
    V.add(index, ids, photos)
    d, i = V.search(index, cells, k)
    widen, near = callbacks(cells, photos, ids, index)
    space = Space(cells, lambda: photos)  # as render gives it: routing under a tight cap
    t = time.perf_counter()
    plan = place(
        i, d, rows, cols, max_uses=cap, widen=widen, near_cells=near, all_ids=ids, space=space
    )
    t_flow = time.perf_counter() - t
    lists = place(i, d, rows, cols, max_uses=cap, widen=widen, near_cells=near, all_ids=ids)
    t = time.perf_counter()
    dense = np.sqrt(((cells[:, None, :] - photos[None]) ** 2).sum(-1))
    dense = np.tile(dense, (1, cap))
    r, c = linear_sum_assignment(dense)
    best = float(dense[r, c].sum())
    t_dense = time.perf_counter() - t
    got = cost(cells, photos, plan)
    print(
        f"{n:>6,} cells × {n_photos:>5,} photos cap {cap}, k={k:>3}: flow {t_flow:5.2f} s, "
        f"dense exact {t_dense:6.2f} s, gap {got / best - 1:+.3%} (goal ≤ 0.5 %; the "
        f"candidate lists alone, no routing: {cost(cells, photos, lists) / best - 1:+.3%})"
    )


def peak_rss_mb() -> float:
    """This process's peak RSS. VmHWM, not getrusage: ru_maxrss survives the exec that
    started this child, so it reported the parent's peak (2 GB from part 2's dense solver)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def scale_child(n, n_photos):
    cells, photos, ids = instance(n, n_photos, 2)
    side = int(np.sqrt(n * 2 / 3))
    rows, cols = side, n // side
    n = rows * cols
    cells = cells[:n]
    t0 = time.perf_counter()
    h = V.new_hnsw(DIM)
    V.add(h, ids, photos)
    V.set_ef_search(h, V.HNSW_EF_SEARCH)
    t_build = time.perf_counter() - t0
    k = RenderOptions(max_uses=1, min_distance=0).candidates_per_cell(n)
    t = time.perf_counter()
    d, i = V.search(h, cells, k)
    t_search = time.perf_counter() - t
    widen, near = callbacks(cells, photos, ids, h)
    t = time.perf_counter()
    space = Space(cells, lambda: photos)
    plan = place(
        i, d, rows, cols, max_uses=1, widen=widen, near_cells=near, all_ids=ids, space=space
    )
    t_place = time.perf_counter() - t
    top1 = float((plan == i[:, 0]).mean())
    print(
        json.dumps(
            {
                "cells": n,
                "photos": n_photos,
                "k": k,
                "build": t_build,
                "search": t_search,
                "placement": t_place,
                "cost": cost(cells, photos, plan) / n,
                "distinct": int(len(np.unique(plan))),
                "top1": top1,
                "peak_rss_mb": peak_rss_mb(),
            }
        )
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true", help="smaller instances")
    ap.add_argument("--scale-child", nargs=2, type=int, help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.scale_child:
        scale_child(*a.scale_child)
        return
    print(machine())
    print("\n1. solvers on the k=16 nearest graph")
    solvers(20_000, 2_000, 12)
    if not a.quick:
        solvers(64_000, 22_000, 3)
    print("\n2. gap to the exact dense optimum (scipy linear_sum_assignment)")
    for rows, cols, n_photos, cap, seed in (
        (40, 50, 2_000, 1, 3),
        (50, 60, 2_000, 2, 4),
        (60, 80, 2_000, 3, 5),
        (50, 100, 1_000, 8, 6),
    ):
        if a.quick and rows * cols > 2_000:
            continue
        gap(rows, cols, n_photos, cap, seed)
    n = 20_000 if a.quick else 100_000
    print(f"\n3. {n:,} cells × {n:,} photos, --max-uses 1 (HNSW search + placement)")
    out = subprocess.run(
        [sys.executable, __file__, "--scale-child", str(n), str(n)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    r = json.loads(out.strip().splitlines()[-1])
    total = r["search"] + r["placement"]
    print(
        f"{r['cells']:,} cells, k={r['k']}: HNSW build {r['build']:.1f} s (the store's, "
        f"kept on disk), search {r['search']:.1f} s, placement {r['placement']:.1f} s, "
        f"search+placement {total:.1f} s (goal ≤ 20 s), peak RSS {r['peak_rss_mb']:.0f} MB "
        f"(goal ≤ 1024), {r['distinct']:,} distinct photos, {r['top1']:.1%} of cells got "
        "their nearest photo"
    )


if __name__ == "__main__":
    main()
