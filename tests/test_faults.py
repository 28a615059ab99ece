"""Fault injection (issue 20): commands killed at random points, then the store is checked —
the catalog, the vector file and `check --deep` — for lost or duplicated rows, processes left
behind and temporary files, and the command run again must complete.

Each trial runs the real command line in a subprocess on a generated library; a test-only
delay per file (MOSAICDB_TEST_SLOW) makes the reading last long enough to be interrupted at
every stage: starting, reading, writing batches, building the vector file."""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import noise_jpeg

MOSAICDB = [sys.executable, "-m", "mosaicdb"]
N_FILES = 40


def descendants(pid: int) -> set[int]:
    """Every live process below `pid` (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if not d.isdigit():
            continue
        try:
            with open(f"/proc/{d}/stat") as f:
                ppid = int(f.read().rsplit(")", 1)[1].split()[1])
        except (OSError, ValueError, IndexError):
            continue
        children.setdefault(ppid, []).append(int(d))
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


def run_and_kill(args, env, after: float, sig) -> tuple[set[int], list[int]]:
    """Start the command, note its processes until `after` s, send `sig`; returns (the
    processes it had, those still alive 5 s later)."""
    p = subprocess.Popen(
        [*MOSAICDB, *map(str, args)],
        env={**os.environ, **env},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    seen: set[int] = set()
    end = time.monotonic() + after
    while time.monotonic() < end and p.poll() is None:
        seen |= descendants(p.pid)
        time.sleep(0.01)
    if p.poll() is None:
        seen |= descendants(p.pid)
        p.send_signal(sig)
    p.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(q) for q in seen):
        time.sleep(0.05)
    return seen, [q for q in seen if alive(q)]


def cli_json(home, *args) -> tuple[int, dict]:
    r = subprocess.run(
        [*MOSAICDB, "--home", str(home), *map(str, args), "--json"],
        capture_output=True,
        text=True,
        env=os.environ,
    )
    return r.returncode, json.loads(r.stdout) if r.stdout.strip() else {}


def rows(home: Path) -> list[tuple[int, str, str]]:
    with sqlite3.connect(home / "catalog.sqlite") as c:
        return [
            (i, os.fsdecode(p), s) for i, p, s in c.execute("SELECT id, path, status FROM photos")
        ]


def temp_files(*folders: Path) -> list[str]:
    return sorted(str(p) for d in folders for p in d.glob(".*tmp*"))


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    lib = tmp_path_factory.mktemp("faults") / "photos"
    for i in range(N_FILES):
        noise_jpeg(lib / f"d{i % 4}" / f"p{i:02d}.jpg", size=(320, 240), seed=i)
    return lib


# problems `check` reports of a store whose index was cut off before it wrote the vector file:
# the file is a cache, rebuilt by the next index (or render)
CACHE_BEHIND = ("vector file",)


@pytest.mark.parametrize("seed", range(10))
def test_index_killed_anywhere_loses_and_duplicates_nothing(library, tmp_path, seed):
    rng = random.Random(seed)
    home = tmp_path / "store"
    sig = signal.SIGKILL if seed % 2 == 0 else signal.SIGTERM
    after = rng.uniform(0.2, 2.2)
    env = {"MOSAICDB_TEST_SLOW": "0.03"}
    args = ["--home", home, "index", library, "--workers", "2", "--batch-size", "4", "--quiet"]
    seen, left = run_and_kill(args, env, after, sig)
    assert not left, f"processes left behind by index killed after {after:.2f} s: {left}"
    files = {str(p) for p in library.rglob("*.jpg")}
    if (home / "catalog.sqlite").exists():
        got = rows(home)
        assert len(got) == len({p for _, p, _ in got}) <= N_FILES  # no duplicates
        assert {p for _, p, _ in got} <= files and {s for _, _, s in got} <= {"ok"}
        rc, report = cli_json(home, "check", "--deep")
        assert all(p.startswith(CACHE_BEHIND) for p in report["problems"]), report
        assert report["orphans"] == {"thumbnails": 0, "features": 0, "photos": 0}
        assert not report["missing_thumbnails"] and not report["bad_thumbnails"]
    # the next run completes: every file once, the store clean, nothing temporary left
    rc, s = cli_json(home, "index", "--workers", "2")
    assert rc == 0, s
    got = rows(home)
    assert sorted(p for _, p, _ in got) == sorted(files)
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert not temp_files(home)
