"""Fault injection (issue 20): the disk fills up while `index` writes the catalog, while
`render` writes its output and while the vector file is written. The store or the output
folder is put on a small tmpfs with a ballast file that leaves too little room for the run;
the command must end in one clear line and a non-zero exit, leave nothing corrupted, no
process and no temporary file behind, and complete once the ballast is gone.

Mounting needs root: elsewhere these tests skip and say so."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from test_faults import (
    CACHE_BEHIND,
    MOSAICDB,
    N_FILES,
    alive,
    cli_json,
    descendants,
    rows,
    temp_files,
    whole_image,
)
from test_faults import indexed as indexed  # noqa: F401 (fixtures shared with test_faults)
from test_faults import library as library  # noqa: F401

PAGE = 4096


@pytest.fixture
def small_disk(tmp_path):
    """A folder on its own 8 MB tmpfs, unmounted after the test."""
    if os.geteuid() != 0:
        pytest.skip("the disk-full tests mount a small tmpfs, which needs root")
    mnt = tmp_path / "small-disk"
    mnt.mkdir()
    r = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mnt)],
        capture_output=True,
        text=True,
    )
    if r.returncode:
        pytest.skip(f"cannot mount a tmpfs here: {r.stderr.strip() or r.returncode}")
    try:
        yield mnt
    finally:
        if subprocess.run(["umount", str(mnt)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(mnt)], capture_output=True)


def free_bytes(folder: Path) -> int:
    s = os.statvfs(folder)
    return s.f_bavail * s.f_frsize


def fill(disk: Path, leave: int) -> Path:
    """A ballast file taking all the room on `disk` but `leave` bytes (whole pages)."""
    ballast = disk / "ballast"
    fd = os.open(ballast, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        have = os.fstat(fd).st_size
        os.posix_fallocate(fd, 0, have + max(0, free_bytes(disk) - leave))
    finally:
        os.close(fd)
    assert abs(free_bytes(disk) - leave) < PAGE, (free_bytes(disk), leave)
    return ballast


def run_watched(args, env=None) -> tuple[int, str, list[int]]:
    """Run the command line to its end; (exit code, stderr, its processes still alive 5 s
    after it ended)."""
    p = subprocess.Popen(
        [*MOSAICDB, *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    seen: set[int] = set()
    while p.poll() is None:
        seen |= descendants(p.pid)
        time.sleep(0.02)
    err = p.stderr.read()
    p.wait()
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(q) for q in seen):
        time.sleep(0.05)
    return p.returncode, err, [q for q in seen if alive(q)]


def contents(path: Path) -> bytes:
    """An output's bytes; a Deep Zoom output's .dzi and every tile of its pyramid."""
    import hashlib

    h = hashlib.blake2b(path.read_bytes())
    if path.suffix == ".dzi":
        for f in sorted(path.with_name(path.stem + "_files").rglob("*")):
            h.update(str(f).encode() + (f.read_bytes() if f.is_file() else b""))
    return h.digest()


def one_error_line(err: str) -> str:
    assert err.startswith("Error: ") and err.count("\n") == 1, repr(err)
    return err


def test_disk_full_while_index_writes_the_catalog(library, small_disk):  # noqa: F811
    home = small_disk / "store"
    # the whole run needs ~3 MB (the -wal holds the thumbnails until the last checkpoint):
    # with 1.8 MB the disk fills up after a few batches are committed (measured: 16 photos)
    ballast = fill(small_disk, 1_800_000)
    args = ["--home", home, "index", library, "--workers", "2", "--batch-size", "4", "--quiet"]
    rc, err, left = run_watched(args)
    assert rc == 1 and not left, (rc, err, left)
    assert one_error_line(err) == "Error: the catalog database failed: database or disk is full\n"
    got = rows(home)
    assert 0 < len(got) < N_FILES  # the disk filled up part-way
    assert len({p for _, p, _ in got}) == len(got) and {s for _, _, s in got} == {"ok"}
    # nothing corrupted, even before there is room again: what was committed is whole
    rc, report = cli_json(home, "check", "--deep", "--no-files")
    assert all(p.startswith(CACHE_BEHIND) for p in report["problems"]), report
    assert report["orphans"] == {"thumbnails": 0, "features": 0, "photos": 0}
    assert not report["missing_thumbnails"] and not report["bad_thumbnails"]
    assert not temp_files(home)
    ballast.unlink()
    rc, err, left = run_watched(args)
    assert rc == 0 and not left, err
    assert sorted(p for _, p, _ in rows(home)) == sorted(str(p) for p in library.rglob("*.jpg"))
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert not temp_files(home)


@pytest.mark.parametrize("ext", [".jpg", ".dz"])
def test_disk_full_while_render_writes_keeps_the_old_output(
    library,  # noqa: F811
    indexed,  # noqa: F811
    small_disk,
    ext,
):
    out = small_disk / f"mosaic{ext}"
    target = sorted(library.rglob("*.jpg"))
    args = ["render", "-o", out, "--tiles-across", "30", "--tile-size", "32", "--repeat", "free"]
    rc, first = cli_json(indexed, *args[:1], target[0], *args[1:])
    assert rc == 0, first
    written = Path(first["output"])
    before = contents(written)
    size = sum(f.stat().st_size for f in small_disk.rglob("*") if f.is_file())
    # room for about half of a new output: the encoder fails part-way through the file
    ballast = fill(small_disk, (size // 2) // PAGE * PAGE)
    rc, err, left = run_watched(["--home", indexed, *args[:1], target[1], *args[1:]])
    assert rc == 1 and not left, (rc, err)
    one_error_line(err)
    assert err == f"Error: cannot write {written}: {os.strerror(28)}\n"
    assert contents(written) == before  # the old output, whole
    assert not temp_files(small_disk)
    ballast.unlink()
    rc, again = cli_json(indexed, *args[:1], target[1], *args[1:])
    assert rc == 0, again
    assert whole_image(written) is not None and contents(written) != before
    assert not temp_files(small_disk)


def test_disk_full_while_the_vector_file_is_written(library, small_disk):  # noqa: F811
    home = small_disk / "store"
    rc, s = cli_json(home, "index", library, "--workers", "0")
    assert rc == 0 and s["added"] == N_FILES
    vec = next(home.glob("vectors-*.faiss"))
    before = vec.read_bytes()
    assert len(before) > PAGE  # more than the one page left below
    # a reader keeps the catalog's -wal and -shm in place, so the command's own catalog
    # access needs no new room: the vector file is the write that fails
    keep = sqlite3.connect(home / "catalog.sqlite")
    try:
        keep.execute("SELECT count(*) FROM photos").fetchall()
        ballast = fill(small_disk, PAGE)
        # check --repair writes the vector file anew: it fails part-way
        rc, err, left = run_watched(["--home", home, "check", "--repair", "--no-files"])
        assert rc == 1 and not left, (rc, err)
        assert one_error_line(err) == f"Error: {os.strerror(28)}: {vec}\n"
        assert vec.read_bytes() == before  # the old file, whole
        assert not temp_files(home)
        # index (nothing changed) rebuilding a vector file that is gone: no partial file
        vec.unlink()
        ballast.unlink()
        ballast = fill(small_disk, 2 * PAGE)  # index.lock takes a page
        rc, err, left = run_watched(["--home", home, "index", "--workers", "0", "--quiet"])
        assert rc == 1 and not left, (rc, err)
        assert one_error_line(err) == f"Error: {os.strerror(28)}: {vec}\n"
        assert not vec.exists() and not temp_files(home)
    finally:
        keep.close()
    ballast.unlink()
    rc, s = cli_json(home, "index", "--workers", "0")
    assert rc == 0 and s["unchanged"] == N_FILES and s["vector_index"] == "rebuilt", s
    assert vec.read_bytes() == before
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert len(rows(home)) == N_FILES and not temp_files(home)
