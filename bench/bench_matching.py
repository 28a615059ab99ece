"""How render matches, chosen across many targets (issue 22, item 5): the re-rank grid, the
weight of lightness in it, chroma compressed as CIEDE2000 weighs it, the spacing solver's
smoothing term, and how many candidates each cell re-ranks.

The library and targets of bench_defaults.py: `data/libA` (2,000 tiles cut from half of the
real photos) and the other half's photos as targets, never a source of the tiles, split in a
tune half and a report half. Every configuration renders every tune target (32 px tiles)
under the rules of `--rules`: `default` (`--repeat varied`) or `spacing` (`--min-distance 5
--max-uses 0`, metapixel's own rule `-d 5`), scored with mosaicdb/quality.py (ΔE2000 and SSIM
at 400 and 1600 px wide). Under `spacing` the configuration with the most (target, number)
wins over metapixel on the tune half is chosen (ties: the best mean rank over the four
numbers); under `default` the best mean rank. The chosen one is then rendered on the report
half beside today's default and metapixel (its defaults, same grid and tile size), and each
is counted as a win where it has the lower ΔE or the higher SSIM than metapixel on a target.

    python bench/bench_matching.py [--rules default|spacing] [--across 100] [--targets N]
                                   [--only NAME ...] [--skip-metapixel]
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
from mosaicdb.render.placement import spread

HERE = Path(__file__).parent
MP_RUN = HERE / "metapixel_run.sh"
METRICS = (("de400", 1), ("s400", -1), ("de1600", 1), ("s1600", -1))


RULES = {
    "default": {},  # --repeat varied
    "spacing": {"min_distance": 5, "max_uses": 0},  # metapixel's own rule, -d 5
}


def configs(rules):
    """name → (render options, knobs: the render constants set for the run)."""
    base = {
        "RERANK_L_WEIGHT": stage.RERANK_L_WEIGHT,
        "RERANK_CHROMA": stage.RERANK_CHROMA,
        "SPREAD_SMOOTH": spread.SPREAD_SMOOTH,
    }
    out = {"default": ({}, base)}

    def add(name, options=None, **knobs):
        if options or {**base, **knobs} != base:  # today's default is listed once
            out[name] = (options or {}, {**base, **knobs})

    if rules == "default":
        add("no rerank", {"rerank": 0})
        for grid in (4, 6, 8):
            for w in (1.0, 3.0, 6.0):
                add(f"rerank {grid}, L×{w:g}", {"rerank": grid}, RERANK_L_WEIGHT=w)
        for grid in (10, 12):  # finer than the target resolves at 200 across (12.8 px a cell)
            add(f"rerank {grid}", {"rerank": grid})
        for k in (16, 64):
            add(f"{k} candidates", {"candidates": k})
    for c in (0.0, 0.045):
        for w in (3.0, 4.5, 6.0):
            for lam in (0.0, 0.3, 0.5):
                add(
                    f"L×{w:g}, chroma {c:g}, smooth {lam:g}",
                    None,
                    RERANK_L_WEIGHT=w,
                    RERANK_CHROMA=c,
                    SPREAD_SMOOTH=lam,
                )
    if rules == "spacing":
        add(
            "L×4.5, chroma 0.045, smooth 0.3, 256 candidates",
            {"candidates": 256},
            RERANK_L_WEIGHT=4.5,
            RERANK_CHROMA=0.045,
            SPREAD_SMOOTH=0.3,
        )
    return out


def render(lib, target, out, across, options, knobs, rules):
    mods = {"RERANK_L_WEIGHT": stage, "RERANK_CHROMA": stage, "SPREAD_SMOOTH": spread}
    saved = {k: getattr(mods[k], k) for k in knobs}
    for k, v in knobs.items():  # constants of render, not options
        setattr(mods[k], k, v)
    try:
        t = time.perf_counter()
        r = lib.render(
            target, out, tiles_across=across, tile_size=32, score=True, **RULES[rules], **options
        )
        wall = time.perf_counter() - t
    finally:
        for k, v in saved.items():
            setattr(mods[k], k, v)
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


def wins(rows, mp):
    """(target, metric) pairs where `rows` beat metapixel's."""
    return sum(
        sign * (x[key] - y[key]) < 0 for x, y in zip(rows, mp, strict=True) for key, sign in METRICS
    )


def choose(results, mp=None):
    """The best mean rank over the four numbers; with metapixel's rows (the same rule), the
    most wins over it first."""
    ranks = dict.fromkeys(results, 0.0)
    for key, sign in METRICS:
        for i, name in enumerate(sorted(results, key=lambda k: sign * mean(results[k], key))):
            ranks[name] += i
    if mp:
        return min(ranks, key=lambda k: (-wins(results[k], mp), ranks[k], k)), ranks
    return min(ranks, key=lambda k: (ranks[k], k)), ranks


def table(results, ranks=None, mp=None):
    print(
        f"{'matching':<48} {'ΔE@400':>7} {'SSIM@400':>8} {'ΔE@1600':>8} {'SSIM@1600':>9} "
        f"{'top photo':>9} {'wall s':>6}"
        + ("  rank sum" if ranks else "")
        + (f"  wins/{4 * len(mp)}" if mp else "")
    )
    for name, rows in results.items():
        extra = f"  {ranks[name]:>8.0f}" if ranks else ""
        extra += f"  {wins(rows, mp):>7}" if mp else ""
        print(
            f"{name:<48} {mean(rows, 'de400'):>7.2f} {mean(rows, 's400'):>8.3f} "
            f"{mean(rows, 'de1600'):>8.2f} {mean(rows, 's1600'):>9.3f} "
            f"{mean(rows, 'top'):>9.2%} {mean(rows, 'seconds'):>6.1f}{extra}"
        )


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--across", type=int, default=100)
    ap.add_argument("--targets", type=int, default=0, help="use only the first N of each half")
    ap.add_argument("--rules", choices=sorted(RULES), default="default")
    ap.add_argument("--only", action="append", default=[], help="configurations to run (repeat)")
    ap.add_argument("--skip-metapixel", action="store_true")
    a = ap.parse_args()
    print(machine())
    lib = store()
    _, targets = halves()
    tune, report = split(targets, a.targets)
    cfg = configs(a.rules)
    if a.only:
        cfg = {k: v for k, v in cfg.items() if k == "default" or k in a.only}
    use_mp = not a.skip_metapixel
    if use_mp:
        chk = subprocess.run(["bash", str(MP_RUN), "check"], capture_output=True, text=True)
        if chk.returncode:
            print(f"metapixel skipped: {chk.stderr.strip()}")
            use_mp = False
    given = ", ".join(f"{k}={v}" for k, v in RULES[a.rules].items()) or "--repeat varied"
    rules = f"{a.rules} rules ({given})"
    with tempfile.TemporaryDirectory() as tmp:
        work, out = Path(tmp), Path(tmp) / "m.jpg"
        mp_out = work / "mp.png"
        mp_tune = (
            [metapixel(DATA / "libA", work, t, mp_out, a.across) for t in tune] if use_mp else None
        )
        tuned = {
            name: [render(lib, t, out, a.across, o, k, a.rules) for t in tune]
            for name, (o, k) in cfg.items()
        }
        # metapixel's rule is -d 5: a matched rule only under --rules spacing
        chosen, ranks = choose(tuned, mp_tune if a.rules == "spacing" else None)
        print(f"\ntune half: {len(tune)} targets, {a.across} across, {rules}; means")
        table(tuned, ranks, mp_tune)
        if mp_tune:
            table({"metapixel (-d 5)": mp_tune})
        print(f"chosen on the tune half: {chosen}")
        # with --only, every configuration asked for is reported too
        names = dict.fromkeys(["default", chosen, *(cfg if a.only else ())])
        reported = {
            n: [render(lib, t, out, a.across, *cfg[n], a.rules) for t in report] for n in names
        }
        mp = (
            [metapixel(DATA / "libA", work, t, mp_out, a.across) for t in report]
            if use_mp
            else None
        )
    print(f"\nreport half: {len(report)} targets (not used to choose); {rules}; means")
    table(reported, None, mp)
    if mp:
        table({"metapixel (-d 5)": mp})
        for name in names:
            w = {
                key: sum(
                    sign * (x[key] - y[key]) < 0 for x, y in zip(reported[name], mp, strict=True)
                )
                for key, sign in METRICS
            }
            print(
                f"{name} beats metapixel on "
                + ", ".join(f"{key} {v}/{len(report)}" for key, v in w.items())
            )


if __name__ == "__main__":
    main()
