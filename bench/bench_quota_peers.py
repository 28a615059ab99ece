"""The quota rule, tool against tool (issue 22, item 6): mosaicdb `--max-uses N --min-distance 0`
against phomo `-n N` (PyPI 1.2.0, its own venv: bench/peers/phomo_run.py; Hungarian over the
cells × tiles·N distance matrix, the exact optimum of its own RGB metric), same library
(data/lib2k), target, grid and tile size, both written as PNG and scored with
mosaicdb/quality.py (ΔE2000 and SSIM at 400 and 1600 px wide).

phomo computes its dense distance matrix one cell at a time (~21 ms a cell here) and holds it
N times over: 100 across is its practical limit on these machines (200 across did not finish
in 12 minutes), so the cases are 100 across.

    python bench/bench_quota_peers.py [--targets t1 t2] [--across 100] [--max-uses 8]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, VENV_BIN, ensure_lib2k, machine, mb, run_measured

from mosaicdb.quality import score

HERE = Path(__file__).parent
PHOMO = HERE / "peers" / "phomo_run.py"
PHOMO_VENV = DATA / "phomo-venv"
TARGETS = {"t1": "t1_eveningglow.jpg", "t2": "t2_friends.jpg", "t3": "t3_kleiber.jpg"}
PX = 32


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--targets", nargs="+", default=["t1", "t2"], choices=sorted(TARGETS))
    ap.add_argument("--across", type=int, default=100)
    ap.add_argument("--max-uses", type=int, default=8)
    a = ap.parse_args()
    import pyvips

    print(machine())
    lib, tdir = ensure_lib2k()
    store = DATA / "store-quota"
    if not (store / "catalog.sqlite").exists():
        subprocess.run(
            [str(VENV_BIN / "mosaicdb"), "--home", str(store), "index", str(lib), "--quiet"],
            check=True,
        )
    setup = subprocess.run(
        [sys.executable, str(PHOMO), "setup", str(PHOMO_VENV)], capture_output=True, text=True
    )
    phomo = setup.returncode == 0
    if not phomo:
        print(f"phomo skipped: {setup.stderr.strip()}")
    n = a.max_uses
    print(
        f"\nquota rule: each photo at most {n} times; {a.across} across, {PX} px tiles, "
        f"library {lib} (2,000 photos)\n"
    )
    print(
        f"{'target':<6} {'tool':<40} {'wall':>7} {'peak RSS':>9} {'ΔE@400':>7} "
        f"{'SSIM@400':>8} {'ΔE@1600':>8} {'SSIM@1600':>9} {'photos (max uses)':>18}"
    )
    with tempfile.TemporaryDirectory(dir=DATA) as tmp:
        for tk in a.targets:
            target = tdir / TARGETS[tk]
            head = pyvips.Image.new_from_file(str(target))
            rows = max(1, round(a.across * head.height / head.width))
            out = Path(tmp) / f"{tk}-mosaicdb.png"
            cmd = [
                str(VENV_BIN / "mosaicdb"),
                "--home",
                str(store),
                "render",
                str(target),
                "-o",
                str(out),
                "--tiles-across",
                str(a.across),
                "--tile-size",
                str(PX),
                "--max-uses",
                str(n),
                "--min-distance",
                "0",
                "--json",
            ]
            wall, rss, stdout = run_measured(cmd)
            r = json.loads(stdout)
            v = r["variety"]
            line(
                tk,
                f"mosaicdb --max-uses {n} --min-distance 0",
                wall,
                rss,
                score(out, target),
                f"{v['distinct_photos']:,} ({v['max_uses']})",
            )
            if phomo:
                out = Path(tmp) / f"{tk}-phomo.png"
                cmd = [
                    str(PHOMO_VENV / "bin" / "python"),
                    str(PHOMO),
                    "render",
                    str(lib),
                    str(target),
                    str(out),
                    str(PX),
                    str(a.across),
                    str(rows),
                    "--max-uses",
                    str(n),
                ]
                wall, rss, stdout = run_measured(cmd)
                p = json.loads(stdout.strip().splitlines()[-1])
                size = pyvips.Image.new_from_file(str(out))
                assert (size.width, size.height) == (a.across * PX, rows * PX), p
                line(
                    tk,
                    f"phomo -n {n}",
                    wall,
                    rss,
                    score(out, target),
                    f"{p['distinct_photos']:,} ({p['max_reuse']})",
                )


def line(tk, tool, wall, rss, s, used):
    print(
        f"{tk:<6} {tool:<40} {wall:>6.1f}s {mb(rss):>9} {s[400]['delta_e']:>7.2f} "
        f"{s[400]['ssim']:>8.3f} {s[1600]['delta_e']:>8.2f} {s[1600]['ssim']:>9.3f} "
        f"{used:>18}",
        flush=True,
    )


if __name__ == "__main__":
    main()
