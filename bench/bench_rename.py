"""Rename benchmark (issue 19 §2): renaming a folder of 10,000 indexed photos, then `index`,
goal ≤ 3 s and 0 decodes; side by side in the same run, a no-op `index` of the same library
(the walk alone) and the fresh `index` that read the photos.

The library is 10,000 distinct JPEGs, 640×480, made here (seeded noise, resized: ~50–100 KB,
no two alike), in 100 sub-folders of one folder `2019/` under the root, plus 200 photos beside
it that do not move. Rounds alternate: rename `2019` → `2019 Italy` and index, no-op index,
rename back and index, ... (each the fastest and median of 3). Also the root itself renamed
and indexed under its new path.

    python bench/bench_rename.py [-n 10000]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, VENV_BIN, machine, mb, run_measured  # noqa: E402


def make_library(root: Path, n: int) -> None:
    import numpy as np
    import pyvips

    done = root / ".done"
    if done.exists() and done.read_text() == str(n):
        return
    shutil.rmtree(root, ignore_errors=True)
    rng = np.random.default_rng(19)
    for i in range(n + 200):
        folder = root / ("2019" if i < n else "other") / f"d{i % 100:02d}"
        folder.mkdir(parents=True, exist_ok=True)
        base = rng.integers(0, 255, size=(480 // 32, 640 // 32, 3), dtype=np.uint8)
        im = pyvips.Image.new_from_array(base).copy(interpretation="srgb").resize(32)
        im.write_to_file(str(folder / f"IMG_{i:05d}.jpg"), Q=int(rng.integers(80, 95)))
    done.write_text(str(n))


def index(store: Path, *paths: Path) -> tuple[float, int, dict]:
    cmd = [str(VENV_BIN / "mosaicdb"), "--home", str(store), "index", *map(str, paths)]
    wall, rss, out = run_measured([*cmd, "--workers", "2", "--json"])
    return wall, rss, json.loads(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("-n", type=int, default=10_000, help="photos in the renamed folder")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    base = DATA / f"rename{a.n}"
    print(f"making the library in {base} ...", file=sys.stderr)
    make_library(base, a.n)
    for p in base.rglob("*.jpg"):
        p.read_bytes()  # warm the page cache: every run reads from memory
    work = Path(tempfile.mkdtemp(prefix="mosaicdb-rename-"))
    try:
        root = work / "Pictures"
        shutil.copytree(base, root, copy_function=os.link)  # hard links: same bytes, no copy
        store = work / "store"
        fresh, fresh_rss, s = index(store, root)
        assert s["added"] == a.n + 200, s
        names = [root / "2019", root / "2019 Italy"]
        renames, noops = [], []
        for r in range(a.rounds):
            names[r % 2].rename(names[(r + 1) % 2])
            renames.append(index(store))
            noops.append(index(store))
        root2 = work / "Photos"
        root.rename(root2)
        moved_root = index(store, root2)
    finally:
        shutil.rmtree(work)

    def row(label, runs, goal=None):
        walls = [w for w, _, _ in runs]
        s = runs[-1][2]
        decodes = sum(x[2]["added"] + x[2]["updated"] for x in runs)
        moved = [x[2]["moved"] for x in runs]
        line = (
            f"{label:<44} {min(walls):7.2f} {statistics.median(walls):7.2f} "
            f"{mb(max(x for _, x, _ in runs)):>9}  moved {moved}  decodes {decodes}"
            f"  removed {sum(x[2]['removed'] for x in runs)}"
        )
        if goal:
            line += f"  ratio to goal {min(walls) / goal:.2f}"
        print(line)
        return s

    print(f"rename benchmark: {a.n:,} photos in the renamed folder (+200 unmoved); {machine()}")
    print(f"{'command':<44} {'wall s':>7} {'median':>7} {'peak RSS':>9}")
    print(f"{'fresh index (reads every photo)':<44} {fresh:7.2f} {fresh:7.2f} {mb(fresh_rss):>9}")
    row("index after renaming the folder (goal ≤ 3 s)", renames, 3.0)
    row("no-op index (the walk alone)", noops)
    row("index of the renamed root, new path", [moved_root])
    print(
        f"rename / no-op: {min(w for w, _, _ in renames) / min(w for w, _, _ in noops):.2f}   "
        f"rename / fresh: {min(w for w, _, _ in renames) / fresh:.3f}"
    )


if __name__ == "__main__":
    main()
