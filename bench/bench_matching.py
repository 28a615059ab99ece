"""How render matches, chosen across many targets (issue 22, item 5): the re-rank grid, the
weight of lightness in it, and how many candidates each cell re-ranks.

The library and targets of bench_defaults.py: `data/libA` (2,000 tiles cut from half of the
real photos) and the other half's photos as targets, never a source of the tiles, split in a
tune half and a report half. Every configuration renders every tune target at 100 across,
32 px tiles, under the default rules (`--repeat varied`), scored with mosaicdb/quality.py
(ΔE2000 and SSIM at 400 and 1600 px wide). The one with the best mean rank over the four
numbers on the tune half is then rendered on the report half beside today's default and
metapixel (its defaults, min distance 5, same grid and tile size), and each is counted as a
win where it has the lower ΔE or the higher SSIM than metapixel on a target.

    python bench/bench_matching.py [--across 100] [--targets N] [--skip-metapixel]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine
from bench_defaults import DATA, halves, split, store
from bench_quality import run_metapixel

from mosaicdb.quality import score
from mosaicdb.render import stage

HERE = Path(__file__).parent
MP_RUN = HERE / "metapixel_run.sh"
METRICS = (("de400", 1), ("s400", -1), ("de1600", 1), ("s1600", -1))


def configs():
    """name → (render options, the re-rank lightness weight)."""
    out = {"default (rerank 6, L×3)": ({}, stage.RERANK_L_WEIGHT)}
    out["no rerank"] = ({"rerank": 0}, stage.RERANK_L_WEIGHT)
    for grid in (4, 6, 8):
        for w in (1.0, 3.0, 6.0):
            if (grid, w) != (6, stage.RERANK_L_WEIGHT):
                out[f"rerank {grid}, L×{w:g}"] = ({"rerank": grid}, w)
    for k in (16, 64):
        out[f"rerank 6, L×3, {k} candidates"] = ({"candidates": k}, stage.RERANK_L_WEIGHT)
    return out


def render(lib, target, out, across, options, weight):
    saved = stage.RERANK_L_WEIGHT
    stage.RERANK_L_WEIGHT = weight  # the weight is a constant of render, not an option
    try:
        t = time.perf_counter()
        r = lib.render(target, out, tiles_across=across, tile_size=32, score=True, **options)
        wall = time.perf_counter() - t
    finally:
        stage.RERANK_L_WEIGHT = saved
    q = r.quality
    return {
        "target": target.name,
        "de400": q["400"]["delta_e"],
        "s400": q["400"]["ssim"],
        "de1600": q["1600"]["delta_e"],
        "s1600": q["1600"]["ssim"],
        "seconds": wall,
        "top": r.max_reuse / r.cells,
        "same": r.variety["same_neighbour_share"],
    }


def metapixel(lib_dir: Path, work: Path, target: Path, out: Path, across: int):
    import pyvips

    mp = work / "metapixel-32"
    if not (mp / "tables.mxt").exists():
        subprocess.run(
            ["bash", str(MP_RUN), "prepare", str(lib_dir), str(mp), "32"],
            check=True,
            capture_output=True,
        )
    im = pyvips.Image.new_from_file(str(target))
    width = im.width  # the original's: run_metapixel's scale
    target_in = target
    if im.bands != 3:  # metapixel reads 3-band PNG only (a grey or alpha target aborts it)
        if im.hasalpha():
            im = im.flatten(background=255)
        target_in = out.with_name("target-rgb.png")
        im.colourspace("srgb").write_to_file(str(target_in))
    wall = run_metapixel({"dir": mp}, target_in, out, across, 32, width)["render_wall"]
    q = score(out, target)
    return {
        "target": target.name,
        "de400": q[400]["delta_e"],
        "s400": q[400]["ssim"],
        "de1600": q[1600]["delta_e"],
        "s1600": q[1600]["ssim"],
        "seconds": wall,
        "top": float("nan"),
        "same": float("nan"),
    }


def mean(rows, key):
    return statistics.mean(x[key] for x in rows)


def choose(results):
    ranks = dict.fromkeys(results, 0.0)
    for key, sign in METRICS:
        for i, name in enumerate(sorted(results, key=lambda k: sign * mean(results[k], key))):
            ranks[name] += i
    return min(ranks, key=lambda k: (ranks[k], k)), ranks


def table(results, ranks=None):
    print(
        f"{'matching':<32} {'ΔE@400':>7} {'SSIM@400':>8} {'ΔE@1600':>8} {'SSIM@1600':>9} "
        f"{'top photo':>9} {'wall s':>6}" + ("  rank sum" if ranks else "")
    )
    for name, rows in results.items():
        extra = f"  {ranks[name]:>8.0f}" if ranks else ""
        print(
            f"{name:<32} {mean(rows, 'de400'):>7.2f} {mean(rows, 's400'):>8.3f} "
            f"{mean(rows, 'de1600'):>8.2f} {mean(rows, 's1600'):>9.3f} "
            f"{mean(rows, 'top'):>9.2%} {mean(rows, 'seconds'):>6.1f}{extra}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--across", type=int, default=100)
    ap.add_argument("--targets", type=int, default=0, help="use only the first N of each half")
    ap.add_argument("--skip-metapixel", action="store_true")
    a = ap.parse_args()
    print(machine())
    lib = store()
    _, targets = halves()
    tune, report = split(targets, a.targets)
    cfg = configs()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "m.jpg"
        tuned = {
            name: [render(lib, t, out, a.across, o, w) for t in tune]
            for name, (o, w) in cfg.items()
        }
        chosen, ranks = choose(tuned)
        print(f"\ntune half: {len(tune)} targets, {a.across} across, default rules; means")
        table(tuned, ranks)
        print(f"chosen on the tune half: {chosen}")
        names = dict.fromkeys(["default (rerank 6, L×3)", chosen])
        reported = {n: [render(lib, t, out, a.across, *cfg[n]) for t in report] for n in names}
        if not a.skip_metapixel:
            chk = subprocess.run(["bash", str(MP_RUN), "check"], capture_output=True, text=True)
            if chk.returncode == 0:
                work = Path(tmp)
                reported["metapixel (-d 5)"] = [
                    metapixel(DATA / "libA", work, t, Path(tmp) / "mp.png", a.across)
                    for t in report
                ]
            else:
                print(f"metapixel skipped: {chk.stderr.strip()}")
    print(f"\nreport half: {len(report)} targets (not used to choose); means")
    table(reported)
    mp = reported.get("metapixel (-d 5)")
    if mp:
        for name in names:
            wins = {
                key: sum(
                    (sign * (x[key] - y[key]) < 0) for x, y in zip(reported[name], mp, strict=True)
                )
                for key, sign in METRICS
            }
            print(
                f"{name} beats metapixel on "
                + ", ".join(f"{key} {v}/{len(report)}" for key, v in wins.items())
            )


if __name__ == "__main__":
    main()
