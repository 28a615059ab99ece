"""Query benchmark (issue 6): `stats`, `ls --near` and `check` on a store of 1,000,000 photos.

The store is synthetic (rows written through the same Catalog.write_results the indexer
uses, a tiny real JPEG as every thumbnail, Lab-like random vectors; the files do not exist, so
`check` runs with --no-files: comparing a million files on disk is the one part exempt from the
goal). Goal: each command ≤ 2 s, wall of the whole CLI process: the fastest of 5 runs (the
machine is shared and noisy), with their median beside it. Beside them, in the same run:
`ls --near` with a narrow `--path` (1,000 of the 1M photos), and the floor under `check`,
SQLite's own quick_check of the file alone in a process, with check's ratio to it.

    python bench/bench_queries.py [--photos 1000000]
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, VENV_BIN, machine, mb, run_measured  # noqa: E402


def build(home: Path, n: int, first: int = 0, sync: bool = True, seed: int = 0) -> None:
    """n synthetic photos numbered from `first`, written into the store at `home`."""
    import numpy as np
    import pyvips

    import mosaicdb
    from mosaicdb.records import PhotoResult

    thumb = pyvips.Image.black(16, 16, bands=3).copy(interpretation="srgb").jpegsave_buffer()
    rng = np.random.default_rng(seed)
    t = time.perf_counter()
    with mosaicdb.open(home) as lib:
        root = b"/synthetic/photos"
        rid = lib.catalog.add_root(root)
        batch = 20_000
        for start in range(first, first + n, batch):
            m = min(batch, first + n - start)
            base = np.column_stack(
                [rng.uniform(0, 100, m), rng.uniform(-60, 60, m), rng.uniform(-60, 60, m)]
            )
            vecs = (np.repeat(base[:, None, :], 9, 1) + rng.normal(0, 5, (m, 9, 3))).astype(
                np.float32
            )
            results, root_of = [], {}
            for i in range(m):
                p = b"%s/d%04d/p%07d.jpg" % (root, (start + i) // 1000, start + i)
                root_of[p] = rid
                v = vecs[i]
                mean = v.mean(axis=0)
                results.append(
                    PhotoResult(
                        p,
                        1000 + i,
                        1,
                        "ok",
                        width=640,
                        height=480,
                        format="jpeg",
                        thumb=thumb,
                        thumb_w=16,
                        thumb_h=16,
                        thumb_codec="jpeg",
                        vector=v.tobytes(),
                        mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                    )
                )
            lib.catalog.write_results(results, root_of, {}, lib.spec.key)
        if sync:
            lib.sync_vectors()
    print(
        f"built a {n:,}-photo store in {time.perf_counter() - t:.0f} s "
        f"({sum(f.stat().st_size for f in home.iterdir()) / 2**20:,.0f} MB)"
    )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=int, default=1_000_000)
    a = ap.parse_args()
    print(machine())
    home = DATA / f"store-synthetic-{a.photos}"
    if not (home / "catalog.sqlite").exists():
        shutil.rmtree(home, ignore_errors=True)
        build(home, a.photos)
    mosaic = [str(VENV_BIN / "mosaicdb"), "--home", str(home)]
    # the floor under `check`: SQLite's own page check of the file, alone in a process
    floor = [
        str(VENV_BIN / "python"),
        "-c",
        "import sqlite3, sys; "
        "sqlite3.connect(sys.argv[1]).execute('PRAGMA quick_check').fetchall()",
        str(home / "catalog.sqlite"),
    ]
    print(f"{'command':<48} {'wall s':>7} {'median':>7} {'peak RSS':>9}  (goal ≤ 2 s; 5 runs)")
    walls = {}
    for name, cmd in (
        ("stats --json", mosaic + ["stats", "--json"]),
        (
            "ls --near #1e3a5f --limit 20 --json",
            mosaic + ["ls", "--near", "#1e3a5f", "--limit", "20", "--json"],
        ),
        (
            "ls --near #1e3a5f --path */d0999/* --json",
            mosaic + ["ls", "--near", "#1e3a5f", "--path", "*/d0999/*", "--limit", "20", "--json"],
        ),
        ("check --no-files --json", mosaic + ["check", "--no-files", "--json"]),
        ("--help", mosaic + ["--help"]),
        ("(floor) PRAGMA quick_check alone", floor),
    ):
        runs = []
        for _ in range(5):
            wall, rss, out = run_measured(cmd, tree=False)  # each is one process
            runs.append((wall, rss))
        if name.startswith("ls"):
            assert len(json.loads(out)) == 20
        wall = walls[name] = min(w for w, _ in runs)
        median = sorted(w for w, _ in runs)[len(runs) // 2]
        print(
            f"{'mosaicdb ' * (name[0] != '(') + name:<48} {wall:>7.2f} {median:>7.2f} "
            f"{mb(max(r for _, r in runs)):>9}  ratio to goal {wall / 2:.2f}"
        )
    check, floor_s = walls["check --no-files --json"], walls["(floor) PRAGMA quick_check alone"]
    print(f"check / its floor: {check / floor_s:.2f}")


if __name__ == "__main__":
    main()
