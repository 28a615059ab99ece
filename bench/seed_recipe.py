"""Baseline: the classic pyvips photomosaic recipe, kept deliberately simple (no tile cache, no
strip assembly, no feature grid) — it is what mosaicdb is compared against.

1. prepare: thumbnail every photo under LIBDIR (recursive *.jpg) to a PX×PX centre crop, held
   in memory; mean RGB of each tile; a scipy cKDTree on the means.
2. render: reduce the target so each cell is one pixel (cols = N, rows = round(N * H / W)),
   nearest tile per cell, ONE `pyvips.Image.arrayjoin(cells, across=N)`, write (JPEG).

Output is exactly N*PX × rows*PX. Prints one JSON line:
{"prepare_s", "render_s", "width", "height", "tiles", "cols", "rows", "distinct_tiles"}

    python bench/seed_recipe.py LIBDIR TARGET OUT.jpg --tiles-across 200 --tile-size 64
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def prepare(libdir: Path, px: int):
    """Thumbnail every JPEG into memory; return (tiles, cKDTree on mean RGB)."""
    import numpy as np
    import pyvips
    from scipy.spatial import cKDTree

    paths = sorted(p for p in libdir.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg"))
    tiles, means = [], []
    for p in paths:
        try:
            t = pyvips.Image.thumbnail(str(p), px, height=px, crop="centre")
        except pyvips.Error:
            continue  # unreadable file: skip it, as the simple recipe would
        if t.bands < 3:
            t = t.colourspace("srgb")
        if t.bands > 3:
            t = t.extract_band(0, n=3)
        t = t.copy_memory()  # decoded once, kept in RAM
        tiles.append(t)
        means.append(t.numpy().reshape(-1, 3).mean(axis=0))
    if not tiles:
        raise SystemExit(f"no readable *.jpg under {libdir}")
    return tiles, cKDTree(np.asarray(means, dtype=np.float64))


def render(tiles, tree, target: Path, out: Path, across: int, px: int) -> dict:
    """Nearest tile (mean RGB) per target cell, one arrayjoin, write; return the layout."""
    import pyvips

    head = pyvips.Image.new_from_file(str(target))
    cols = across
    rows = max(1, round(across * head.height / head.width))
    small = pyvips.Image.thumbnail(str(target), cols, height=rows, size="force")
    if small.bands < 3:
        small = small.colourspace("srgb")
    cells = small.extract_band(0, n=3).numpy().reshape(-1, 3)
    _, idx = tree.query(cells)
    mosaic = pyvips.Image.arrayjoin([tiles[i] for i in idx], across=cols)
    mosaic.write_to_file(str(out))
    return {
        "width": mosaic.width,
        "height": mosaic.height,
        "cols": cols,
        "rows": rows,
        "distinct_tiles": len(set(idx.tolist())),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("libdir", type=Path)
    ap.add_argument("target", type=Path)
    ap.add_argument("out", type=Path)
    ap.add_argument("--tiles-across", type=int, default=200)
    ap.add_argument("--tile-size", type=int, default=64)
    a = ap.parse_args()

    t0 = time.perf_counter()
    tiles, tree = prepare(a.libdir, a.tile_size)
    t1 = time.perf_counter()
    info = render(tiles, tree, a.target, a.out, a.tiles_across, a.tile_size)
    t2 = time.perf_counter()
    assert (info["width"], info["height"]) == (
        info["cols"] * a.tile_size,
        info["rows"] * a.tile_size,
    ), info
    print(
        json.dumps(
            {
                "prepare_s": round(t1 - t0, 3),
                "render_s": round(t2 - t1, 3),
                **info,
                "tiles": len(tiles),
            }
        )
    )


if __name__ == "__main__":
    main()
