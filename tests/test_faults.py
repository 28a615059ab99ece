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
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import noise_jpeg, sqlite_db

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
    with sqlite_db(home / "catalog.sqlite") as c:
        return [
            (i, os.fsdecode(p), s) for i, p, s in c.execute("SELECT id, path, status FROM photos")
        ]


def has_photos_table(home: Path) -> bool:
    q = "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'photos'"
    with sqlite_db(home / "catalog.sqlite") as c:
        return bool(c.execute(q).fetchone()[0])


def temp_files(*folders: Path) -> list[str]:
    return sorted(str(p) for d in folders for p in d.glob(".*tmp*"))


# the library and its indexed store are made once a session and shared by the fault modules
# (test_faults_*.py import these fixtures; each module would otherwise make its own)
_SHARED: dict[tuple[str, Path], Path] = {}


@pytest.fixture(scope="module")
def library(tmp_path_factory) -> Path:
    key = ("library", tmp_path_factory.getbasetemp())
    if key not in _SHARED:
        lib = tmp_path_factory.mktemp("faults") / "photos"
        for i in range(N_FILES):
            noise_jpeg(lib / f"d{i % 4}" / f"p{i:02d}.jpg", size=(320, 240), seed=i)
        _SHARED[key] = lib
    return _SHARED[key]


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
    # killed while the store was being created, the catalog can be a file with no tables yet
    # (seen under load at ~0.45 s): the next index takes it as new, which the re-run checks
    if (home / "catalog.sqlite").exists() and has_photos_table(home):
        got = rows(home)
        assert len(got) == len({p for _, p, _ in got}) <= N_FILES  # no duplicates
        assert {p for _, p, _ in got} <= files and {s for _, _, s in got} <= {"ok"}
        rc, report = cli_json(home, "check", "--deep")
        assert all(p.startswith(CACHE_BEHIND) for p in report["problems"]), report
        assert report["orphans"] == {"thumbnails": 0, "features": 0, "photos": 0}
        assert not report["missing_thumbnails"] and not report["bad_thumbnails"]
    # the same command again completes (killed early, the folder may not be registered yet):
    # every file once, the store clean, nothing temporary left
    rc, s = cli_json(home, "index", library, "--workers", "2")
    assert rc == 0, s
    got = rows(home)
    assert sorted(p for _, p, _ in got) == sorted(files)
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert not temp_files(home)


@pytest.fixture(scope="module")
def indexed(library, tmp_path_factory) -> Path:
    key = ("indexed", tmp_path_factory.getbasetemp())
    if key not in _SHARED:
        home = tmp_path_factory.mktemp("faults-store") / "store"
        rc, s = cli_json(home, "index", library, "--workers", "0")
        assert rc == 0 and s["added"] == N_FILES
        _SHARED[key] = home
    return _SHARED[key]


def whole_image(path: Path) -> tuple[int, int] | None:
    """(width, height) if `path` decodes to its last pixel, else None."""
    import pyvips

    try:
        if path.suffix == ".dzi":  # the descriptor, and the last tile of the deepest level
            import xml.etree.ElementTree as ET

            size = next(e for e in ET.parse(path).getroot().iter() if e.tag.endswith("Size"))
            files = path.with_name(path.stem + "_files")
            top = max(int(d.name) for d in files.iterdir() if d.name.isdigit())
            last = max(
                (files / str(top)).iterdir(), key=lambda f: tuple(map(int, f.stem.split("_")))
            )
            pyvips.Image.new_from_file(str(last), fail=True).avg()
            return int(size.get("Width")), int(size.get("Height"))
        im = pyvips.Image.new_from_file(str(path), fail=True)
        im.avg()  # decodes every pixel
        return im.width, im.height
    except (pyvips.Error, OSError, StopIteration, ValueError):
        return None


@pytest.mark.parametrize("ext", [".jpg", ".png", ".tif", ".dz"])
def test_render_killed_mid_write_keeps_the_old_output_and_its_leftovers_go(
    library, indexed, tmp_path, ext
):
    target = sorted(library.rglob("*.jpg"))[0]
    out = tmp_path / f"mosaic{ext}"
    args = [
        "render",
        target,
        "-o",
        out,
        "--tiles-across",
        "120",
        "--tile-size",
        "48",
        "--repeat",
        "free",
    ]
    t0 = time.monotonic()
    rc, first = cli_json(indexed, *args)
    wall = time.monotonic() - t0
    assert rc == 0, first
    written = Path(first["output"])
    before = written.read_bytes()
    # kill while the file is being written: the encoder runs in the last part of the wall
    t = first["timings"]
    end = wall - t["report"]
    start = max(0.05, end - t["tiles+encode"])
    for frac in (0.15, 0.5, 0.85):
        after = start + frac * (end - start)
        seen, left = run_and_kill(["--home", indexed, *args], {}, after, signal.SIGKILL)
        assert not left
        # the output is the old file or a whole new one, never a partial one
        assert written.exists()
        if written.read_bytes() != before:
            assert whole_image(written) is not None
        before = written.read_bytes()
    temps = temp_files(tmp_path)
    rc, report = cli_json(indexed, "check", "--no-files")
    assert sorted(report["temp_files"]) == temps, report
    if temps:
        assert rc == 1 and any(
            "temporary files left by killed commands" in p for p in report["problems"]
        )
    rc, again = cli_json(indexed, *args)
    assert rc == 0, again
    assert not temp_files(tmp_path)
    if temps:
        assert any(
            w.startswith(f"removed {len(temps)} temporary output") for w in again["warnings"]
        )
    assert whole_image(Path(again["output"])) is not None


def test_check_repair_removes_leftovers(indexed, tmp_path):
    rc, r = cli_json(
        indexed,
        "render",
        sorted(indexed.parent.parent.rglob("p00.jpg"))[0],
        "-o",
        tmp_path / "m.jpg",
        "--tiles-across",
        "8",
        "--tile-size",
        "8",
    )
    assert rc == 0, r
    dead = 2**22 + 12345  # beyond pid_max here: no such process
    (tmp_path / f".m.jpg.{dead}.tmp.jpg").write_bytes(b"x" * 1000)
    (tmp_path / f".m.jpg.{dead}.tmp_files").mkdir()
    (tmp_path / f".m.jpg.{os.getpid()}.tmp.jpg").write_bytes(b"mine: running")
    rc, report = cli_json(indexed, "check", "--no-files", "--repair")
    assert any(x.startswith("removed 2 temporary files") for x in report["repaired"]), report
    assert temp_files(tmp_path) == [str(tmp_path / f".m.jpg.{os.getpid()}.tmp.jpg")]


def test_a_second_indexer_on_a_sqlite_store_is_refused_in_one_line(library, tmp_path):
    home = tmp_path / "store"
    first = subprocess.Popen(
        [*MOSAICDB, "--home", home, "index", library, "--workers", "2", "--quiet"],
        env={**os.environ, "MOSAICDB_TEST_SLOW": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lock = home / "index.lock"
    deadline = time.monotonic() + 20
    while not (lock.exists() and lock.read_text().strip()) and time.monotonic() < deadline:
        time.sleep(0.05)
    second = subprocess.run(
        [*MOSAICDB, "--home", home, "index", library, "--workers", "0"],
        capture_output=True,
        text=True,
    )
    assert second.returncode == 1
    assert second.stderr == (
        f"Error: another `mosaicdb index` (pid {first.pid}) is writing this store; wait for it "
        "to finish (renders and queries work meanwhile)\n"
    )
    assert cli_json(home, "stats")[0] == 0  # queries go on
    assert first.wait(60) == 0, first.stderr.read()
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"] and len(rows(home)) == N_FILES
    # and once it is done (or killed: flock goes with the process) the next one runs
    rc, s = cli_json(home, "index", "--workers", "0")
    assert rc == 0 and s["unchanged"] == N_FILES


def png_bomb(path: Path, w: int, h: int) -> Path:
    """A PNG that declares w × h pixels in a few hundred bytes (a valid header, the image data
    a short run of zeros): a decompression bomb, as far as its header tells."""
    import struct
    import zlib

    def chunk(kind, data):
        return (
            struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))
        )

    ihdr = struct.pack(">IIBBBBB", w, h, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\0" * 4096, 9)
    path.write_bytes(
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")
    )
    return path


def test_decompression_bombs_are_refused_before_decoding(indexed, library, tmp_path):
    lib = tmp_path / "bombs"
    lib.mkdir()
    png_bomb(lib / "bomb.png", 100_000, 100_000)
    home = tmp_path / "store"
    t0 = time.monotonic()
    rc, s = cli_json(home, "index", lib, "--workers", "1")
    assert rc == 0 and s["failed"] == 1 and time.monotonic() - t0 < 30
    r = subprocess.run([*MOSAICDB, "--home", home, "errors"], capture_output=True, text=True)
    assert "too large: 100000x100000 = 10,000,000,000 pixels is more than --max-pixels" in r.stdout
    # a bomb as the target: one line, quickly, no output
    t0 = time.monotonic()
    r = subprocess.run(
        [
            *MOSAICDB,
            "--home",
            indexed,
            "render",
            lib / "bomb.png",
            "-o",
            tmp_path / "m.jpg",
            "--tiles-across",
            "10",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1 and r.stderr.startswith("Error: ") and r.stderr.count("\n") == 1
    assert time.monotonic() - t0 < 60 and not (tmp_path / "m.jpg").exists()


def test_an_svg_target_is_refused_and_reads_nothing_else(indexed, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret")
    svg = tmp_path / "target.svg"
    svg.write_text(
        f'<?xml version="1.0"?><!DOCTYPE svg [<!ENTITY x SYSTEM "file://{secret}">]>'
        '<svg xmlns="http://www.w3.org/2000/svg" width="64" height="64"><text>&x;</text></svg>'
    )
    r = subprocess.run(
        [
            *MOSAICDB,
            "--home",
            indexed,
            "render",
            svg,
            "-o",
            tmp_path / "m.png",
            "--tiles-across",
            "4",
        ],
        capture_output=True,
        text=True,
    )
    assert r.returncode == 1
    assert r.stderr.startswith(f"Error: target {svg} is not a picture mosaicdb reads (SVG, XML")


@pytest.mark.parametrize("damage", ["truncated", "garbage", "wal-removed"])
def test_a_damaged_vector_file_or_a_lost_wal_is_mended_by_the_next_run(library, tmp_path, damage):
    home = tmp_path / "store"
    if damage == "wal-removed":  # an index killed mid-run, then its -wal deleted by hand
        run_and_kill(
            ["--home", home, "index", library, "--workers", "2", "--batch-size", "4", "--quiet"],
            {"MOSAICDB_TEST_SLOW": "0.03"},
            1.2,
            signal.SIGKILL,
        )
        for f in home.glob("catalog.sqlite-*"):
            f.unlink()
    else:
        assert cli_json(home, "index", library, "--workers", "0")[0] == 0
        vec = next(home.glob("vectors-*.faiss"))
        data = vec.read_bytes()
        vec.write_bytes(data[: len(data) // 3] if damage == "truncated" else os.urandom(len(data)))
        rc, report = cli_json(home, "check")
        assert rc == 1 and any("vector file" in p for p in report["problems"]), report
    # (without its -wal the catalog is as at its last checkpoint: maybe not even the folder)
    rc, s = cli_json(home, "index", library, "--workers", "0")
    assert rc == 0, s
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert len(rows(home)) == N_FILES
    target = sorted(library.rglob("*.jpg"))[0]
    rc, r = cli_json(
        home, "render", target, "-o", tmp_path / "m.jpg", "--tiles-across", "8", "--tile-size", "8"
    )
    assert rc == 0, r


def test_render_and_check_repair_beside_a_running_index(library, indexed, tmp_path):
    """An index reading new files while a render and a `check --repair` run on the same
    store: all three finish, and the store is clean after."""
    import shutil

    home = tmp_path / "store"
    shutil.copytree(indexed, home)
    more = library.parent / "more"
    if not more.exists():
        for i in range(20):
            noise_jpeg(more / f"q{i:02d}.jpg", size=(320, 240), seed=100 + i)
    index = subprocess.Popen(
        [*MOSAICDB, "--home", home, "index", library, more, "--workers", "2", "--quiet"],
        env={**os.environ, "MOSAICDB_TEST_SLOW": "0.05"},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    time.sleep(0.8)
    target = sorted(library.rglob("*.jpg"))[0]
    rc, r = cli_json(home, "render", target, "-o", tmp_path / "m.jpg", "--tiles-across", "20")
    assert rc == 0, r
    rc, report = cli_json(home, "check", "--repair", "--no-files")
    assert index.wait(60) == 0, index.stderr.read()
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert len(rows(home)) == N_FILES + 20
