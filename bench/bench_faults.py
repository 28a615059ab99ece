"""Fault soak (issue 20; `make bench-faults`): N kill/restart cycles of `index`, `render` and
`check --repair` at random points, with random seeds, on a generated library; after each
kill the command is run again and the store is checked. Prints a table and writes it to
bench/results/faults.md.

Per fault, summed over its trials:
- lost: index / check --repair: files on disk with no row after the re-run, or rows of files
  on disk that changed id; render: outputs that were neither the old file nor a whole new one
- duplicated: paths with more than one row, or a vector file that disagrees with the catalog
  (count or ids) after the re-run
- orphans: processes of the killed command still alive 5 s after it ended
- temp files left: temporary files (`.*tmp*`) in the store or the output folder after the
  re-run
- verdict: pass when all of these are 0 and `check --deep` is clean after every re-run

Only the venv is needed (the library is generated with pyvips and numpy, the catalog read
with the standard library's sqlite3, processes found in /proc).

    python bench/bench_faults.py [-n 50] [--seed 0] [--out bench/results/faults.md]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from contextlib import closing
from pathlib import Path

MOSAICDB = [sys.executable, "-m", "mosaicdb"]
N_FILES = 48
ROOT = Path(__file__).resolve().parent.parent


def noise_jpeg(path: Path, seed: int, size=(320, 240)) -> None:
    import numpy as np
    import pyvips

    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    im = pyvips.Image.new_from_array(base).copy(interpretation="srgb").resize(16, kernel="linear")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.crop(0, 0, w, h).write_to_file(str(path), Q=85)


def descendants(pid: int) -> set[int]:
    children: dict[int, list[int]] = defaultdict(list)
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    children[int(f.read().rsplit(")", 1)[1].split()[1])].append(int(d))
            except (OSError, ValueError, IndexError):
                pass
    out, todo = set(), [pid]
    while todo:
        for c in children.get(todo.pop(), []):
            if c not in out:
                out.add(c)
                todo.append(c)
    return out


def alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


def kill_at(args, after: float, sig, env=None, ready=None) -> tuple[int, bool]:
    """Run the command, send `sig` `after` s after `ready()` holds (or after the start);
    returns (how many of its processes are alive 5 s after it ended, whether the signal
    reached it before it ended by itself)."""
    p = subprocess.Popen(
        [*MOSAICDB, *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: set[int] = set()
    if ready is not None:
        deadline = time.monotonic() + 120
        while p.poll() is None and not ready() and time.monotonic() < deadline:
            seen |= descendants(p.pid)
            time.sleep(0.01)
    end = time.monotonic() + after
    while time.monotonic() < end and p.poll() is None:
        seen |= descendants(p.pid)
        time.sleep(0.01)
    killed = p.poll() is None
    if killed:
        seen |= descendants(p.pid)
        p.send_signal(sig)
    p.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(q) for q in seen):
        time.sleep(0.05)
    return sum(alive(q) for q in seen), killed


def cli(home, *args) -> tuple[int, dict]:
    r = subprocess.run(
        [*MOSAICDB, "--home", str(home), *map(str, args), "--json"], capture_output=True, text=True
    )
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {"stderr": r.stderr}


def photo_rows(home: Path) -> list[tuple[int, str, str]]:
    # closed, not only committed: a connection left to the cycle collector deletes the -wal
    # and -shm files whenever it is freed, under a copy of the store or a command's run
    try:
        with closing(sqlite3.connect(home / "catalog.sqlite")) as c, c:
            return [
                (i, os.fsdecode(p), s)
                for i, p, s in c.execute("SELECT id, path, status FROM photos")
            ]
    except sqlite3.Error:
        return []


def temps(*folders: Path) -> int:
    return sum(1 for d in folders if d.exists() for _ in d.glob(".*tmp*"))


def store_verdict(home: Path, files: set[str], ids: dict[str, int] | None = None) -> dict:
    """lost / duplicated / clean of a store after the re-run."""
    got = photo_rows(home)
    paths = [p for _, p, _ in got]
    lost = len(files - set(paths))
    if ids:
        lost += sum(1 for i, p, _ in got if p in ids and ids[p] != i)
    dup = len(paths) - len(set(paths))
    rc, report = cli(home, "check", "--deep")
    vec = report.get("vectors", {})
    if vec.get("file_vectors") != vec.get("catalog_vectors"):
        dup += 1
    return {"lost": lost, "dup": dup, "clean": rc == 0 and bool(report.get("ok"))}


class Soak:
    def __init__(self, work: Path):
        self.work = work
        self.lib = work / "photos"
        for i in range(N_FILES):
            noise_jpeg(self.lib / f"d{i % 4}" / f"p{i:02d}.jpg", seed=i)
        self.files = {str(p) for p in self.lib.rglob("*.jpg")}
        self.store = work / "indexed"
        rc, s = cli(self.store, "index", self.lib, "--workers", "0")
        assert rc == 0, s
        self.targets = sorted(self.lib.rglob("*.jpg"))
        self.outputs: dict[str, tuple[Path, float]] = {}
        self._damaged: tuple | None = None

    def index(self, rng: random.Random, sig) -> dict:
        home = self.work / f"index-{rng.random():.12f}"
        args = ["--home", home, "index", self.lib, "--workers", "2", "--batch-size", "4", "-q"]
        orphans, killed = kill_at(args, rng.uniform(0.2, 2.5), sig, {"MOSAICDB_TEST_SLOW": "0.06"})
        rc, s = cli(home, "index", self.lib, "--workers", "2")
        v = store_verdict(home, self.files)
        v.update(orphans=orphans, temps=temps(home), clean=v["clean"] and rc == 0, killed=killed)
        shutil.rmtree(home, ignore_errors=True)
        return v

    def render(self, rng: random.Random, sig) -> dict:
        ext = rng.choice([".jpg", ".png", ".tif", ".webp", ".dz"])
        folder = self.work / "out"
        folder.mkdir(exist_ok=True)
        out = folder / f"mosaic{ext}"
        target = rng.choice(self.targets)
        args = ["render", target, "-o", out, "--tiles-across", "100", "--tile-size", "40"]
        args += ["--repeat", rng.choice(["free", "varied"])]
        if ext not in self.outputs:  # the old output, and how long a render takes
            t0 = time.monotonic()
            rc, r = cli(self.store, *args)
            assert rc == 0, r
            self.outputs[ext] = (Path(r["output"]), time.monotonic() - t0)
        written, wall = self.outputs[ext]
        before = contents(written)
        orphans, killed = kill_at(["--home", self.store, *args], rng.uniform(0.3, wall), sig)
        now = contents(written)
        broken = int(now is None or (now != before and not whole(written)))
        rc, r = cli(self.store, *args)
        ok = rc == 0 and whole(written)
        return {
            "lost": broken,
            "dup": 0,
            "orphans": orphans,
            "temps": temps(folder),
            "clean": ok,
            "killed": killed,
        }

    def damaged(self) -> tuple[Path, Path, dict[str, int], set[str]]:
        """A store with something for every repair (built once, copied for each trial)."""
        if self._damaged is None:
            lib, home = self.work / "repair-photos", self.work / "repair-store"
            shutil.copytree(self.lib, lib)
            rc, s = cli(home, "index", lib, "--workers", "0")
            assert rc == 0, s
            ids = {p: i for i, p, _ in photo_rows(home)}
            files = sorted(ids)
            for p in files[:3]:
                os.unlink(p)
            with closing(sqlite3.connect(home / "catalog.sqlite")) as c, c:
                c.execute(
                    "INSERT INTO thumbnails SELECT 999999, width, height, codec, data "
                    "FROM thumbnails WHERE photo_id = ?",
                    (ids[files[-1]],),
                )
                for p in files[3:5]:
                    c.execute(
                        "UPDATE thumbnails SET data = ? WHERE photo_id = ?", (b"\xff\xd8", ids[p])
                    )
                c.executemany(
                    "DELETE FROM features WHERE photo_id = ?", [(ids[p],) for p in files[5:8]]
                )
            (home / f".vectors-lab3v1.faiss.{2**22 + 7}.tmp").write_bytes(b"x" * 5000)
            self._damaged = (lib, home, ids, set(files[3:]))
        return self._damaged

    def repair(self, rng: random.Random, sig) -> dict:
        _, template, ids, kept = self.damaged()
        home = self.work / f"repair-{rng.random():.12f}"
        shutil.copytree(template, home)

        def repairing() -> bool:
            try:
                with closing(sqlite3.connect(home / "catalog.sqlite")) as c, c:
                    q = "SELECT 1 FROM thumbnails WHERE photo_id = 999999"
                    return not c.execute(q).fetchall()
            except sqlite3.Error:
                return False

        orphans, killed = kill_at(
            ["--home", home, "check", "--repair"],
            rng.uniform(0, 2.0),
            sig,
            {"MOSAICDB_TEST_SLOW_REPAIR": "0.25"},
            ready=repairing,
        )
        rc, report = cli(home, "check", "--repair", "--deep")
        v = store_verdict(home, kept, ids)
        v.update(orphans=orphans, temps=temps(home), clean=v["clean"] and rc == 0, killed=killed)
        shutil.rmtree(home, ignore_errors=True)
        return v


def contents(path: Path) -> bytes | None:
    import hashlib

    if not path.exists():
        return None
    h = hashlib.blake2b(path.read_bytes())
    if path.suffix == ".dzi":
        for f in sorted(path.with_name(path.stem + "_files").rglob("*")):
            h.update(str(f).encode() + (f.read_bytes() if f.is_file() else b""))
    return h.digest()


def whole(path: Path) -> bool:
    """The output decodes to its last pixel (Deep Zoom: its deepest level's last tile)."""
    import pyvips

    try:
        if path.suffix == ".dzi":
            files = path.with_name(path.stem + "_files")
            top = max(int(d.name) for d in files.iterdir() if d.name.isdigit())
            last = max(
                (files / str(top)).iterdir(), key=lambda f: tuple(map(int, f.stem.split("_")))
            )
            pyvips.Image.new_from_file(str(last), fail=True).avg()
            return True
        pyvips.Image.new_from_file(str(path), fail=True).avg()
        return True
    except (pyvips.Error, OSError, ValueError):
        return False


FAULTS = [
    ("index, SIGKILL at a random point", "index", signal.SIGKILL),
    ("index, SIGTERM at a random point", "index", signal.SIGTERM),
    ("render (jpg/png/tif/webp/dz), SIGKILL mid-render", "render", signal.SIGKILL),
    ("render (jpg/png/tif/webp/dz), SIGTERM mid-render", "render", signal.SIGTERM),
    ("check --repair, SIGKILL mid-repair", "repair", signal.SIGKILL),
    ("check --repair, SIGTERM mid-repair", "repair", signal.SIGTERM),
]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("-n", type=int, default=50, help="kill/restart cycles in all (50)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", default=str(ROOT / "bench" / "results" / "faults.md"))
    a = ap.parse_args()
    totals = {name: defaultdict(int) for name, _, _ in FAULTS}
    t0 = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="bench-faults-") as tmp:
        soak = Soak(Path(tmp))
        for i in range(a.n):
            name, kind, sig = FAULTS[i % len(FAULTS)]
            rng = random.Random(a.seed * 100_003 + i)
            v = getattr(soak, kind)(rng, sig)
            t = totals[name]
            t["trials"] += 1
            for k in ("lost", "dup", "orphans", "temps"):
                t[k] += v[k]
            t["unclean"] += not v["clean"]
            t["killed"] += v["killed"]
            bad = any(v[k] for k in ("lost", "dup", "orphans", "temps")) or not v["clean"]
            print(f"[{i + 1}/{a.n}] {name}: {'FAIL ' + str(v) if bad else 'ok'}", flush=True)
    lines = [
        f"Fault soak: {a.n} kill/restart cycles, seed {a.seed}, {N_FILES} generated photos, "
        f"{time.monotonic() - t0:.0f} s (`python bench/bench_faults.py -n {a.n} --seed {a.seed}`)",
        "",
        "| fault | trials | lost | duplicated | orphans | temp files left | verdict |",
        "|---|---|---|---|---|---|---|",
    ]
    failed = False
    for name, t in totals.items():
        if not t["trials"]:
            continue
        ok = not any(t[k] for k in ("lost", "dup", "orphans", "temps", "unclean"))
        failed |= not ok
        verdict = "pass" if ok else f"FAIL ({t['unclean']} re-runs not clean)"
        lines.append(
            f"| {name} | {t['trials']} | {t['lost']} | {t['dup']} | {t['orphans']} | "
            f"{t['temps']} | {verdict} |"
        )
    lines += [
        "",
        "Trials whose signal reached the command while it ran (the others had ended by "
        "themselves before their random point): "
        + "; ".join(f"{n}: {t['killed']}/{t['trials']}" for n, t in totals.items() if t["trials"])
        + ".",
    ]
    text = "\n".join(lines) + "\n"
    print("\n" + text)
    Path(a.out).parent.mkdir(parents=True, exist_ok=True)
    Path(a.out).write_text(text)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
