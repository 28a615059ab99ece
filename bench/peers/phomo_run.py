"""phomo (PyPI) as a peer for bench_quality.py, in its own venv (never a mosaicdb dependency).

    python phomo_run.py setup VENV
        create VENV and `pip install phomo==1.2.0` unless it is there; prints the version;
        exit 3 (one line on stderr) if it cannot be installed
    VENV/bin/python phomo_run.py render LIBDIR TARGET OUT PX COLS ROWS --max-uses N [--greedy]
        = `phomo TARGET TILES -o OUT -c COLS/ROWS -s COLS*PX ROWS*PX -C 1 -S PX PX -n N`
        (TILES: every *.jpg under LIBDIR; phomo's CLI reads one flat folder, so this runner
        hands the list to phomo's own `Pool.from_files` instead, the same loader)

phomo has no prepare step: every render loads the whole library (PIL decode, EXIF transpose,
centre-crop to a square with -C 1, PIL resize to PX × PX) and keeps the tiles' pixels in RAM.
The target is centre-cropped to the COLS:ROWS aspect and resized to exactly COLS·PX × ROWS·PX
by phomo itself (`Master.from_file(crop_ratio=, img_size=)`, PIL's default resampling), so
its grid is exactly COLS × ROWS cells of PX × PX and the output exactly COLS·PX × ROWS·PX.

Metric: phomo's default "norm": the Euclidean norm of the RGB difference over all PX·PX
pixels of a cell and a tile (float64; no colour space, no down-sampling), one row per cell
(`Mosaic.d_matrix`, serial: the CLI's default `-j 1`). Placement: phomo's default
`Mosaic.build`, `scipy.optimize.linear_sum_assignment` (sum of those norms minimised) over the
distance matrix tiled N times, a dense cells × (tiles·N) float64 matrix: each tile appears
at most N times. There is no unlimited mode: with N = 0 phomo does not tile the matrix (each
tile at most once, as N = 1), so `--max-uses 0` is refused here unless --greedy. When
cells > tiles·N the assignment covers only tiles·N cells and phomo leaves the others black;
the JSON counts them (black_cells) and warns.
--greedy: phomo's `build_greedy` (-G is the GPU flag; the CLI calls it --greedy): cells take
their nearest tile in order of distance over the whole matrix, each tile until it has been
placed N times; N = 0 is unlimited there (phomo only closes a tile when its count equals N).

distinct_photos and max_reuse come from phomo's own assignment: `Mosaic.build` does not return
it, so the runner wraps `linear_sum_assignment` as phomo.mosaic calls it and keeps the
result (the tile of column c is c mod tiles, as in build); for --greedy, from matching every
cell of the output back to the tiles (exact pixel equality; phomo writes tiles unchanged).

The output is saved as phomo's CLI saves it (`Image.save(OUT)`, PIL defaults: JPEG quality 75).
`render` prints one JSON line: cells, width, height, distinct_photos, max_reuse, seconds (the
whole render: tile loading, target, distance matrix, assignment, assembly, save), command,
metric, warnings, and beside them pool, placement, assignment_source, black_cells, stages (s),
peak_rss_mb (this process, getrusage).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from venv_setup import ensure

VERSION = "1.2.0"
PIN = f"phomo=={VERSION}"


def setup(venv: Path) -> None:
    probe = "import importlib.metadata as m, phomo; print(m.version('phomo'))"
    ensure(venv, "phomo", PIN, VERSION, probe)


def render(
    libdir: Path,
    target: Path,
    out: Path,
    px: int,
    cols: int,
    rows: int,
    max_uses: int,
    greedy: bool,
    verbose: bool,
) -> None:
    os.environ.setdefault("TQDM_DISABLE", "1")  # phomo's progress bars (read at tqdm import)
    import numpy as np
    import phomo.mosaic as pm
    from phomo import Master, Mosaic, Pool

    if max_uses < 0 or (max_uses == 0 and not greedy):
        sys.exit(
            "phomo_run: phomo's assignment has no unlimited mode (n_appearances 0 = each tile "
            "at most once): give --max-uses N ≥ 1, or --greedy for 0 = unlimited"
        )
    t0 = time.perf_counter()
    stages: dict[str, float] = {}
    last = [t0]

    def stage(name: str) -> None:
        now = time.perf_counter()
        stages[name] = round(now - last[0], 3)
        last[0] = now
        if verbose:
            print(f"phomo_run: {name} {stages[name]:.1f} s", file=sys.stderr, flush=True)

    files = sorted(p for p in libdir.rglob("*.jpg") if p.is_file())
    if not files:
        sys.exit(f"phomo_run: no *.jpg under {libdir}")
    pool = Pool.from_files(files, crop_ratio=1, tile_size=(px, px))
    stage("load tiles")
    master = Master.from_file(target, crop_ratio=cols / rows, img_size=(cols * px, rows * px))
    mosaic = Mosaic(master, pool, n_appearances=max_uses)
    cells, tiles = len(mosaic.grid.slices), len(pool)
    if (cells, mosaic.size) != (cols * rows, (cols * px, rows * px)):
        sys.exit(f"phomo_run: phomo made {cells} cells of {mosaic.size}, not {cols}x{rows}")
    stage("target")
    d = mosaic.d_matrix()  # metric "norm", workers 1: the CLI's defaults
    stage("distance matrix")

    kept: list = []
    lsa = pm.linear_sum_assignment

    def recording_lsa(cost, *args, **kwargs):
        if verbose:
            gb = cost.nbytes / 2**30
            print(f"phomo_run: assignment over {cost.shape} ({gb:.2f} GiB)", file=sys.stderr)
        t = time.perf_counter()
        res = lsa(cost, *args, **kwargs)
        stages["linear_sum_assignment"] = round(time.perf_counter() - t, 3)
        kept.append(res)
        return res

    warnings: list[str] = []
    if greedy:
        img = mosaic.build_greedy(d)
    else:
        pm.linear_sum_assignment = recording_lsa
        try:
            img = mosaic.build(d)
        finally:
            pm.linear_sum_assignment = lsa
    del d
    stage("assignment + assembly")  # the two together (the first inside it for Hungarian)
    img.save(out)  # as phomo's CLI does
    stage("save")

    if greedy:
        source = "matched back: each output cell equal to a tile's pixels"
        arr = np.asarray(img)
        flat = pool.array.reshape(tiles, -1)
        index = {flat[i].tobytes(): i for i in range(tiles)}
        photo = np.full(cells, -1)
        for k, (ys, xs) in enumerate(mosaic.grid.slices):
            photo[k] = index.get(arr[ys, xs].tobytes(), -1)
        assigned = photo[photo >= 0]
        black = int((photo < 0).sum())
    else:
        source = "phomo's assignment (linear_sum_assignment as Mosaic.build calls it)"
        row_ind, col_ind = kept[-1]
        assigned = np.asarray(col_ind) % tiles
        black = cells - len(row_ind)
    if black:
        cap = "unlimited" if max_uses == 0 else tiles * max_uses
        warnings.append(
            f"{black} of {cells} cells left black: phomo places at most tiles × N "
            f"= {cap} cells" + (" (or a cell matched no tile)" if greedy else "")
        )
    counts = np.bincount(assigned, minlength=tiles)
    n_arg = f" -n {max_uses}" + (" --greedy" if greedy else "")
    cmd = (
        f"phomo {target} TILES -o {out} -c {cols / rows!r} -s {cols * px} {rows * px} "
        f"-C 1 -S {px} {px}{n_arg}"
    )
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        json.dumps(
            {
                "cells": cells,
                "width": img.width,
                "height": img.height,
                "distinct_photos": int((counts > 0).sum()),
                "max_reuse": int(counts.max()),
                "seconds": round(time.perf_counter() - t0, 3),
                "command": cmd,
                "metric": "norm (L2 of the RGB difference over the PX×PX pixels, float64)",
                "warnings": warnings,
                "pool": tiles,
                "placement": "greedy" if greedy else "hungarian (scipy linear_sum_assignment)",
                "assignment_source": source,
                "black_cells": black,
                "stages": stages,
                "peak_rss_mb": round(rss),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("venv", type=Path)
    r = sub.add_parser("render")
    r.add_argument("libdir", type=Path)
    r.add_argument("target", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("px", type=int)
    r.add_argument("cols", type=int)
    r.add_argument("rows", type=int)
    r.add_argument("--max-uses", type=int, required=True, help="phomo's -n (≥ 1; 0 only greedy)")
    r.add_argument("--greedy", action="store_true", help="phomo's build_greedy placement")
    r.add_argument("-v", "--verbose", action="store_true", help="stage times on stderr")
    a = ap.parse_args()
    if a.cmd == "setup":
        setup(a.venv)
    else:
        render(
            a.libdir,
            a.target,
            a.out,
            a.px,
            a.cols,
            a.rows,
            a.max_uses,
            a.greedy,
            a.verbose,
        )


if __name__ == "__main__":
    main()
