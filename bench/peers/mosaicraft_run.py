"""mosaicraft (PyPI) as a peer for bench_quality.py, in its own venv (never a mosaicdb
dependency).

    python mosaicraft_run.py setup VENV
        create VENV and `pip install "mosaicraft[faiss]==0.4.2"` unless it is there; prints
        the version; exit 3 (one line on stderr) if it cannot be installed
    VENV/bin/python mosaicraft_run.py prepare LIBDIR CACHE PX
        = `mosaicraft cache -t CACHE/tiles -c CACHE -s PX`, after linking every *.jpg under
        LIBDIR into the flat folder CACHE/tiles (mosaicraft reads one folder, no subfolders)
    VENV/bin/python mosaicraft_run.py render CACHE TARGET OUT PX COLS ROWS [--preset P|auto]
        = `mosaicraft generate PREP.png -c CACHE -o OUT -n COLS*ROWS -s PX --preset P`

mosaicraft picks its own grid from -n and the target's aspect (rows = int(sqrt(n·H/W)),
cols = int(rows·W/H)), then resizes (squashes) the target to cols·PX × rows·PX. To get the
same grid as the other tools, `render` first centre-crops TARGET to the COLS:ROWS aspect and
resizes it to exactly COLS·PX × ROWS·PX with the resize mosaicraft itself uses (OpenCV
Lanczos-4), into a temporary PNG (counted in the render time); mosaicraft's own resize is then
the identity. The output is COLS·PX × ROWS·PX.

Its default preset ("vivid") places tiles 1:1 with the Hungarian algorithm (every cell a
different tile, after its 4× augmentation: original, mirrored, ±10 % brightness), so it needs a
pool of at least COLS·ROWS tiles; mosaicraft refuses otherwise and suggests --preset fast
(FAISS nearest tile + error diffusion, repeats allowed). `--preset auto` (the default here)
takes the default preset when the pool is big enough and "fast" when it is not.

`render` prints one JSON line: preset, placement, pool, cells, distinct_photos, max_reuse,
width, height, stages (mosaicraft's own stage timers, s), warnings, command.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from venv_setup import ensure

VERSION = "0.4.2"
PIN = f"mosaicraft[faiss]=={VERSION}"


def setup(venv: Path) -> None:
    # the distribution's version: 0.4.2's mosaicraft.__version__ still says 0.3.2
    probe = "import importlib.metadata as m, faiss, mosaicraft; print(m.version('mosaicraft'))"
    ensure(venv, "mosaicraft", PIN, VERSION, probe)


def prepare(libdir: Path, cache: Path, px: int) -> None:
    from mosaicraft.cli import main as cli

    if cache.exists():
        sys.exit(f"{cache} exists: remove it to prepare again")
    flat = cache / "tiles"
    flat.mkdir(parents=True)
    n = 0
    for p in sorted(libdir.rglob("*")):
        if p.suffix.lower() in (".jpg", ".jpeg") and p.is_file():
            rel = p.relative_to(libdir).as_posix().replace("/", "__")
            os.symlink(p.resolve(), flat / rel)
            n += 1
    rc = cli(["cache", "-t", str(flat), "-c", str(cache), "-s", str(px)])
    if rc:
        sys.exit(f"mosaicraft cache failed ({rc})")
    thumbs = sum(1 for _ in (cache / "thumbs").glob("*.jpg"))
    print(f"linked {n} photos, cached {thumbs} thumbnails, features at {px} px")


class _Log(logging.Handler):
    """Collects mosaicraft's stage timers and warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.stages: dict[str, float] = {}
        self.warnings: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if record.levelno >= logging.WARNING:
            self.warnings.append(msg)
        elif " done in " in msg and msg.endswith("s"):
            name, secs = msg.rsplit(" done in ", 1)
            self.stages[name] = float(secs[:-1])


def render(
    cache: Path, target: Path, out: Path, px: int, cols: int, rows: int, preset: str
) -> None:
    import cv2
    import numpy as np
    from mosaicraft import MosaicGenerator
    from mosaicraft.presets import PRESETS
    from mosaicraft.utils import calc_grid, configure_logging, logger

    configure_logging()
    log = _Log()
    logger.addHandler(log)
    t0 = time.perf_counter()
    img = cv2.imread(str(target))
    if img is None:
        sys.exit(f"cannot read {target}")
    h, w = img.shape[:2]
    if w * rows > h * cols:  # too wide: crop the sides
        cw = round(h * cols / rows)
        img = img[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    else:
        ch = round(w * rows / cols)
        img = img[(h - ch) // 2 : (h - ch) // 2 + ch]
    img = cv2.resize(img, (cols * px, rows * px), interpolation=cv2.INTER_LANCZOS4)
    n = cols * rows
    if calc_grid(n, cols * px, rows * px)[:2] != (cols, rows):
        sys.exit(f"mosaicraft would not pick {cols}x{rows} for -n {n}")

    npz = np.load(cache / f"features_{px}.npz")
    pool, n_orig = len(npz["features"]), int(npz["n_orig"][0])
    default = "vivid"  # mosaicraft generate's default preset
    if preset == "auto":
        hungarian = PRESETS[default]["placement"] == "hungarian"
        preset = default if not hungarian or pool >= n else "fast"
    with tempfile.TemporaryDirectory() as tmp:
        prep = Path(tmp) / "target.png"
        cv2.imwrite(str(prep), img)
        del img
        gen = MosaicGenerator(cache_dir=cache, preset=preset)  # the CLI's defaults
        res = gen.generate(prep, out, target_tiles=n, tile_size=px)
    photos = np.asarray(res.placement).ravel() % n_orig  # augmented copies → their photo
    counts = np.bincount(photos)
    cmd = f"mosaicraft generate PREP.png -c {cache} -o {out} -n {n} -s {px}"
    print(
        json.dumps(
            {
                "preset": preset,
                "placement": gen.profile["placement"],
                "pool": pool,
                "cells": n,
                "distinct_photos": int((counts > 0).sum()),
                "max_reuse": int(counts.max()),
                "width": int(res.image.shape[1]),
                "height": int(res.image.shape[0]),
                "seconds": round(time.perf_counter() - t0, 3),
                "stages": log.stages,
                "warnings": log.warnings,
                "command": cmd + ("" if preset == default else f" --preset {preset}"),
            }
        )
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = ap.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("setup")
    s.add_argument("venv", type=Path)
    p = sub.add_parser("prepare")
    p.add_argument("libdir", type=Path)
    p.add_argument("cache", type=Path)
    p.add_argument("px", type=int)
    r = sub.add_parser("render")
    r.add_argument("cache", type=Path)
    r.add_argument("target", type=Path)
    r.add_argument("out", type=Path)
    r.add_argument("px", type=int)
    r.add_argument("cols", type=int)
    r.add_argument("rows", type=int)
    r.add_argument("--preset", default="auto")
    a = ap.parse_args()
    if a.cmd == "setup":
        setup(a.venv)
    elif a.cmd == "prepare":
        prepare(a.libdir, a.cache, a.px)
    else:
        render(a.cache, a.target, a.out, a.px, a.cols, a.rows, a.preset)


if __name__ == "__main__":
    main()
