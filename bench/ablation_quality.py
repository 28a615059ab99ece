"""Quality ablation (issue 7, part 3): each lever of mosaicdb's matching, measured on the real
2,000-photo library before it becomes a default.

For every variant (a list of extra `mosaicdb render` options) × target × grid, the render runs
with `--score` (mean ΔE2000 and SSIM on L* at 400 and 1600 px wide, `mosaicdb/quality.py`) and
the table prints the scores, the render's own seconds and the whole command's wall time.
Variants run interleaved per target and grid, so a busy machine moves them all alike.

    python bench/ablation_quality.py [--across 100 200] [--tile 32] [--variant "--grid 5" ...]
"""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, VENV_BIN, ensure_lib2k, machine  # noqa: E402

DEFAULT_VARIANTS = ["", "--grid 1", "--grid 4", "--grid 5", "--grid 6"]


def ensure_store(store: Path, lib: Path) -> None:
    if not (store / "catalog.sqlite").exists():
        subprocess.run(
            [str(VENV_BIN / "mosaicdb"), "--home", str(store), "index", str(lib), "--quiet"],
            check=True,
        )


def render(store: Path, target: Path, out: Path, across: int, tile: int, extra: str) -> dict:
    cmd = [str(VENV_BIN / "mosaicdb"), "--home", str(store), "render", str(target)]
    cmd += ["-o", str(out), "--tiles-across", str(across), "--tile-size", str(tile)]
    cmd += ["--score", "--json", "--quiet", *shlex.split(extra)]
    t = time.perf_counter()
    p = subprocess.run(cmd, capture_output=True, text=True)
    wall = time.perf_counter() - t
    if p.returncode:
        return {"error": p.stderr.strip().splitlines()[-1] if p.stderr.strip() else "failed"}
    r = json.loads(p.stdout)
    r["wall"] = wall
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--store", type=Path, default=DATA / "store2k")
    ap.add_argument("--targets", nargs="+", default=["t1_eveningglow.jpg", "t2_friends.jpg"])
    ap.add_argument("--across", nargs="+", type=int, default=[100, 200])
    ap.add_argument("--tile", type=int, default=32)
    ap.add_argument("--variant", action="append", help="extra render options (repeatable)")
    ap.add_argument("--warm", action="store_true", help="render each variant once untimed first")
    a = ap.parse_args()
    variants = a.variant or DEFAULT_VARIANTS
    lib, targets = ensure_lib2k()
    ensure_store(a.store, lib)
    print(f"# quality ablation — {machine()}")
    print(f"store {a.store} (2,000 real photos), tiles {a.tile} px, default options otherwise\n")
    head = (
        f"{'target':<20} {'across':>6} {'variant':<28} {'ΔE@400':>7} {'SSIM@400':>8} "
        f"{'ΔE@1600':>8} {'SSIM@1600':>9} {'render s':>8} {'wall s':>7}"
    )
    print(head)
    print("-" * len(head))
    with tempfile.TemporaryDirectory(prefix="mosaicdb-ablation-") as tmp:
        for name in a.targets:
            target = targets / name
            for across in a.across:
                if a.warm:  # derive any new feature specs before the timed runs
                    for v in variants:
                        render(a.store, target, Path(tmp) / "warm.jpg", across, a.tile, v)
                for v in variants:
                    r = render(a.store, target, Path(tmp) / "out.jpg", across, a.tile, v)
                    label = v or "(default)"
                    if "error" in r:
                        print(f"{name:<20} {across:>6} {label:<28} {r['error']}")
                        continue
                    q = r["quality"]
                    print(
                        f"{name:<20} {across:>6} {label:<28} {q['400']['delta_e']:>7.2f} "
                        f"{q['400']['ssim']:>8.3f} {q['1600']['delta_e']:>8.2f} "
                        f"{q['1600']['ssim']:>9.3f} {r['seconds']:>8.2f} {r['wall']:>7.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
