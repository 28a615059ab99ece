"""How varied a plan is (the report's and --json's `variety` object)."""

from __future__ import annotations

import numpy as np


def variety(plan: np.ndarray, rows: int, cols: int, n_library: int) -> dict:
    """How varied a plan is: distinct photos, the share of the library's photos it uses, the
    most cells one photo fills, the smallest distance (in cells, Chebyshev: what
    --min-distance R keeps above R) between two cells of one photo (None: no photo repeats),
    and the share of cells with the same photo as a 4-neighbour."""
    grid = np.asarray(plan, np.int64).reshape(rows, cols)
    uniq, counts = np.unique(grid, return_counts=True)
    same = np.zeros((rows, cols), bool)
    h = grid[:, 1:] == grid[:, :-1]
    v = grid[1:, :] == grid[:-1, :]
    same[:, 1:] |= h
    same[:, :-1] |= h
    same[1:, :] |= v
    same[:-1, :] |= v
    return {
        "distinct_photos": int(len(uniq)),
        "library_used": round(len(uniq) / n_library, 4) if n_library else 0.0,
        "max_uses": int(counts.max()),
        "min_repeat_distance": _min_repeat_distance(grid) if counts.max() > 1 else None,
        "same_neighbour_share": round(float(same.mean()), 4),
    }


def _min_repeat_distance(grid: np.ndarray) -> int:
    rows, cols = grid.shape
    for d in range(1, min(8, max(rows, cols) - 1) + 1):  # shifted copies: cheap and exact
        for dr in range(0, d + 1):
            for dc in range(-d, d + 1):
                if max(dr, abs(dc)) != d or (dr == 0 and dc < 0) or dr >= rows:
                    continue
                if abs(dc) >= cols:
                    continue
                # the cell (r, c) against (r + dr, c + dc)
                a = grid[: rows - dr, max(0, -dc) : cols - max(0, dc)]
                b = grid[dr:, max(0, dc) : cols - max(0, -dc)]
                if (a == b).any():
                    return d
    # farther apart: per photo, the closest pair of its cells
    flat = grid.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    best = max(rows, cols)
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        if e - s < 2:
            continue
        r, c = np.divmod(order[s:e], cols)
        for i in range(0, e - s, 1024):
            dd = np.maximum(abs(r[i : i + 1024, None] - r), abs(c[i : i + 1024, None] - c))
            dd[dd == 0] = best
            best = min(best, int(dd.min()))
    return best
