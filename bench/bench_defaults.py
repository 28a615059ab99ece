"""How the default repetition rules of `--repeat varied` were chosen (issue 22, item 4).

A library built only from half of the real photos (`data/halfA` → `data/libA`, 2,000 tiles)
and targets from the other half (`data/halfB`, never a source of the tiles): the targets are
split in two, the rules are chosen on the first half ("tune") and reported on the second
("report"). Every candidate rule — --min-distance R (1, 2, 3) × --max-uses of 4 × cells/photos,
of 1 % of the cells, or no cap — and `--repeat free` renders each target at 100 across, 32 px
tiles,
scored with mosaicdb/quality.py (ΔE2000 and SSIM at 400 and 1600 px wide).

A rule is acceptable up close when no photo touches itself (same-neighbour share 0: R ≥ 1)
and no photo fills more than 1 % of the cells; among those the default is the one with the
best mean rank over ΔE@400, SSIM@400 and SSIM@1600 on the tune half.

    python bench/bench_defaults.py [--across 100] [--targets N]
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import machine

import mosaicdb

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "data"
SHARED = ROOT.parent / "shared" / "bench"
FIRST = ("EveningGlow", "friends_by", "Kleiber")  # t1-t3: the quality bench's own targets


def halves():
    photos = sorted(
        p
        for p in (DATA / "photos").iterdir()
        if p.suffix.lower() in (".jpg", ".png") and not any(f in p.name for f in FIRST)
    )
    for name, part in (("halfA", photos[0::2]), ("halfB", photos[1::2])):
        d = DATA / name
        d.mkdir(exist_ok=True)
        for p in part:
            link = d / p.name
            if not link.exists():
                link.symlink_to(Path("..") / "photos" / p.name)
    return photos[0::2], photos[1::2]


def store():
    lib_dir, home = DATA / "libA", DATA / "storeA"
    if not (DATA / "photos").is_dir():
        subprocess.run(["bash", SHARED / "get_photos.sh", DATA / "photos", sys.prefix], check=True)
    halves()
    if not lib_dir.is_dir():
        subprocess.run(
            [sys.executable, SHARED / "make_dataset.py", DATA / "halfA", lib_dir, "-n", "2000"],
            check=True,
        )
    lib = mosaicdb.open(home)
    lib.index([lib_dir])
    return lib


def split(targets, limit=0):
    """(tune, report): alternate targets, the first `limit` of each half when given."""
    tune, report = targets[0::2], targets[1::2]
    return (tune[:limit], report[:limit]) if limit else (tune, report)


def configs(n_cells, n_photos):
    """The candidate rules: R × a cap of F × the even share (cells/photos) or of P % of the
    cells, or no cap."""
    out = {"free": dict(repeat="free")}
    for md in (1, 2, 3):
        for cap in ("4×", "1%", "-"):
            if cap.endswith("×"):
                mu = -(-int(cap[:-1]) * n_cells // n_photos)
            elif cap.endswith("%"):
                mu = max(1, -(-int(cap[:-1]) * n_cells // 100))
            else:
                mu = 0
            out[f"R{md} cap {cap}"] = dict(repeat="free", min_distance=md, max_uses=mu)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--across", type=int, default=100)
    ap.add_argument("--targets", type=int, default=0, help="use only the first N of each half")
    a = ap.parse_args()
    print(machine())
    lib = store()
    _, targets = halves()
    tune, report = split(targets, a.targets)
    n_photos = lib.stats()["photos"]
    results: dict[str, dict[str, list]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for half, group in (("tune", tune), ("report", report)):
            for t in group:
                for name, rules in configs_for(lib, t, a.across, n_photos).items():
                    r = lib.render(
                        t,
                        Path(tmp) / "m.jpg",
                        tiles_across=a.across,
                        tile_size=32,
                        score=True,
                        **rules,
                    )
                    row = results.setdefault(half, {}).setdefault(name, [])
                    row.append(
                        {
                            "target": t.name,
                            "de": r.mean_delta_e,
                            "de400": r.quality["400"]["delta_e"],
                            "s400": r.quality["400"]["ssim"],
                            "s1600": r.quality["1600"]["ssim"],
                            "max_share": r.max_reuse / r.cells,
                            "same": r.variety["same_neighbour_share"],
                            "used": r.variety["library_used"],
                            "seconds": r.seconds,
                        }
                    )
                print(f"  {half}: {t.name} done", flush=True)
    chosen = choose(results["tune"])
    for half in ("tune", "report"):
        print(
            f"\n{half} half ({len(tune if half == 'tune' else report)} targets, "
            f"{a.across} across, library of {n_photos:,} from the other photos): means"
        )
        table(results[half], chosen)
    print(f"\nchosen on the tune half: {chosen}")


def configs_for(lib, target, across, n_photos):
    import pyvips

    im = pyvips.Image.new_from_file(str(target))
    rows = max(1, round(across * im.height / im.width))
    return configs(rows * across, n_photos)


def choose(rows):
    ok = {
        k: v
        for k, v in rows.items()
        if max(x["same"] for x in v) == 0 and max(x["max_share"] for x in v) <= 0.01
    }
    ranks = {k: 0.0 for k in ok}
    for metric, sign in (("de400", 1), ("s400", -1), ("s1600", -1)):
        order = sorted(ok, key=lambda k: sign * statistics.mean(x[metric] for x in ok[k]))
        for i, k in enumerate(order):
            ranks[k] += i
    return min(ranks, key=lambda k: (ranks[k], k))


def table(rows, chosen):
    print(
        f"{'rule':<16} {'ΔE cells':>8} {'ΔE@400':>7} {'SSIM@400':>8} {'SSIM@1600':>9} "
        f"{'top photo':>9} {'same-nb':>7} {'lib used':>8} {'wall s':>6}"
    )
    for k, v in rows.items():

        def m(key, v=v):
            return statistics.mean(x[key] for x in v)

        mark = " *" if k == chosen else ""
        print(
            f"{k:<16} {m('de'):>8.2f} {m('de400'):>7.2f} {m('s400'):>8.3f} {m('s1600'):>9.3f} "
            f"{m('max_share'):>9.2%} {m('same'):>7.1%} {m('used'):>8.1%} "
            f"{m('seconds'):>6.1f}{mark}"
        )


if __name__ == "__main__":
    main()
