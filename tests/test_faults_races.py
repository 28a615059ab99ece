"""Fault injection (issue 20), continued: `check --repair` killed while it mends a damaged
store, a photo rewritten or truncated while `index` decodes it, and a root folder renamed
while `index` reads it. Each is followed by the store checked for lost or duplicated rows,
processes left behind and temporary files, and the command run again to completion."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import sqlite3
import subprocess
import time
from pathlib import Path

import pytest
from conftest import sqlite_db
from test_faults import MOSAICDB, N_FILES, alive, cli_json, descendants, rows, temp_files
from test_faults import library as library  # noqa: F401 (the fixture shared with test_faults)


def catalog(home: Path, sql: str, *args):
    with sqlite_db(home / "catalog.sqlite") as c:
        return c.execute(sql, args).fetchall()


def wait_for(cond, timeout: float = 60.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what or cond}"
        time.sleep(0.02)


def start(args, env=None, out=subprocess.DEVNULL, err=subprocess.DEVNULL) -> subprocess.Popen:
    return subprocess.Popen(
        [*MOSAICDB, *map(str, args)],
        env={**os.environ, **(env or {})},
        stdout=out,
        stderr=err,
        text=True,
    )


def end(p: subprocess.Popen, seen: set[int], sig=None, timeout: float = 120) -> list[int]:
    """Signal `p` (if `sig`), wait for it; its processes still alive 5 s later."""
    if sig is not None and p.poll() is None:
        seen |= descendants(p.pid)
        p.send_signal(sig)
    p.wait(timeout)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and any(alive(q) for q in seen):
        time.sleep(0.05)
    return [q for q in seen if alive(q)]


# -- check --repair killed --------------------------------------------------------------------

REPAIR_PAUSE = 0.25  # MOSAICDB_TEST_SLOW_REPAIR: s before each of the 7 repair steps


@pytest.fixture(scope="module")
def damaged(library, tmp_path_factory):  # noqa: F811
    """A library whose store has something for every repair: an orphan thumbnail, files gone
    from disk, broken thumbnails, photos without vectors, a dead writer's temp file and a
    vector file that disagrees. Returns (library, store, the photos each repair touches)."""
    base = tmp_path_factory.mktemp("repair")
    lib, home = base / "photos", base / "store"
    shutil.copytree(library, lib)
    rc, s = cli_json(home, "index", lib, "--workers", "0")
    assert rc == 0 and s["added"] == N_FILES
    ids = {p: i for i, p, _ in rows(home)}
    files = sorted(ids)
    gone, broken, unvectored = files[:3], files[3:5], files[5:8]
    for p in gone:
        os.unlink(p)
    with sqlite_db(home / "catalog.sqlite") as c:
        c.execute(
            "INSERT INTO thumbnails SELECT 999999, width, height, codec, data FROM thumbnails "
            "WHERE photo_id = ?",
            (ids[files[-1]],),
        )
        for p in broken:
            c.execute(
                "UPDATE thumbnails SET data = ? WHERE photo_id = ?", (b"\xff\xd8junk", ids[p])
            )
        c.executemany("DELETE FROM features WHERE photo_id = ?", [(ids[p],) for p in unvectored])
    (home / f".vectors-lab3v1.faiss.{2**22 + 7}.tmp").write_bytes(b"x" * 5000)
    return lib, home, {"gone": gone, "broken": broken, "unvectored": unvectored, "ids": ids}


@pytest.mark.parametrize("seed", range(2))
def test_check_repair_killed_mid_repair_then_repaired_clean(damaged, tmp_path, seed):
    lib, template, made = damaged
    rng = random.Random(seed)
    home = tmp_path / "store"
    shutil.copytree(template, home)
    sig = signal.SIGKILL if seed % 2 == 0 else signal.SIGTERM
    p = start(
        ["--home", home, "check", "--repair", "--json"],
        {"MOSAICDB_TEST_SLOW_REPAIR": str(REPAIR_PAUSE)},
    )
    seen: set[int] = set()
    # the first repair (the orphan thumbnail dropped) says it is repairing: from there, a
    # point anywhere in its 7 steps and the vector file's rebuild
    wait_for(
        lambda: (
            p.poll() is not None
            or not catalog(home, "SELECT 1 FROM thumbnails WHERE photo_id = 999999")
        ),
        what="the orphan thumbnail dropped",
    )
    assert p.poll() is None, "check --repair ended before it could be killed"
    time.sleep(rng.uniform(0, 7 * REPAIR_PAUSE + 0.3))
    left = end(p, seen, sig)
    assert not left
    ids = made["ids"]
    got = rows(home)
    # no row of a file still on disk lost, none duplicated; only the files gone may have gone
    assert len({q for _, q, _ in got}) == len(got)
    assert {q for _, q, _ in got} >= set(ids) - set(made["gone"])
    assert all(ids[q] == i for i, q, _ in got)  # ids kept
    # the same command again completes (with --deep: the check after the repairs is deep)
    rc, report = cli_json(home, "check", "--repair", "--deep")
    assert rc == 0 and report["ok"], report
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert not temp_files(home)
    final = rows(home)
    assert sorted(q for _, q, _ in final) == sorted(set(ids) - set(made["gone"]))
    assert {q for _, q, s in final if s == "error"} == set(made["broken"])
    n_ok = sum(s == "ok" for _, _, s in final)
    assert report["vectors"]["file_vectors"] == report["vectors"]["catalog_vectors"] == n_ok


# -- files changing under a running index -----------------------------------------------------

SLOW = "0.15"  # MOSAICDB_TEST_SLOW: s between a file's stat and its decoding


def photo_count(home: Path) -> int:
    try:
        return catalog(home, "SELECT count(*) FROM photos")[0][0]
    except sqlite3.Error:  # not made yet
        return 0


def small_library(library, folder: Path, n: int, per_folder: int) -> list[Path]:  # noqa: F811
    """`n` photos of the shared library copied into `folder`, `per_folder` a subfolder."""
    out = []
    for i, src in enumerate(sorted(library.rglob("*.jpg"))[:n]):
        dst = folder / f"s{i // per_folder}" / f"f{i:02d}.jpg"
        dst.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(src, dst)
        out.append(dst)
    return out


def test_a_photo_rewritten_or_truncated_while_index_decodes_it(library, tmp_path):  # noqa: F811
    lib, home = tmp_path / "photos", tmp_path / "store"
    files = small_library(library, lib, 12, 12)
    others = sorted(library.rglob("*.jpg"))[20:32]  # other pictures, other sizes
    p = start(
        ["--home", home, "index", lib, "--workers", "1", "--batch-size", "1", "--quiet"],
        {"MOSAICDB_TEST_SLOW": SLOW},
        err=subprocess.PIPE,
    )
    seen: set[int] = set()
    # the first task's 8 files are written: the worker has taken the 9th (stat, then the delay
    # before its decoding). Every file changes now: those written (their rows are stale),
    # the one being read, those not read yet.
    wait_for(lambda: p.poll() is not None or photo_count(home) >= 8, what="8 photos written")
    seen |= descendants(p.pid)
    changed: dict[Path, str] = {}
    for k, (f, new) in enumerate(zip(files, others, strict=True)):
        if k % 3 == 2:  # truncated in place
            os.truncate(f, f.stat().st_size // 2)
            changed[f] = "error"
        elif k % 3 == 0:  # rewritten in place
            f.write_bytes(new.read_bytes())
            changed[f] = "ok"
        else:  # replaced: a new file renamed over it
            tmp = f.with_name(f".{f.name}.new")
            shutil.copyfile(new, tmp)
            os.replace(tmp, f)
            changed[f] = "ok"
    assert not end(p, seen)
    assert p.returncode == 0, p.stderr.read()
    got = rows(home)
    assert sorted(q for _, q, _ in got) == sorted(map(str, files))  # once each, no crash
    # the next index re-reads what changed after it was looked at: every row agrees with
    # its file, as a store indexed from scratch now has it
    rc, s = cli_json(home, "index", lib, "--workers", "0")
    assert rc == 0, s
    fresh = tmp_path / "fresh"
    assert cli_json(fresh, "index", lib, "--workers", "0")[0] == 0
    from mosaicdb.index.identity import fingerprint

    query = (
        "SELECT path, size, mtime_ns, status, fingerprint, vector FROM photos "
        "LEFT JOIN features ON photo_id = id ORDER BY path"
    )
    now, want = catalog(home, query), catalog(fresh, query)
    assert [r[:4] + r[5:] for r in now] == [r[:4] + r[5:] for r in want]
    for path, size, mtime, status, fp, _ in now:
        st = os.stat(path)
        assert (size, mtime) == (st.st_size, st.st_mtime_ns)
        assert status == changed[Path(os.fsdecode(path))]
        if status == "ok":
            assert fp == fingerprint(path, size)
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report


def test_a_root_renamed_while_index_reads_it(library, tmp_path):  # noqa: F811
    lib, home = tmp_path / "photos", tmp_path / "store"
    files = small_library(library, lib, 16, 8)
    p = start(
        ["--home", home, "index", lib, "--workers", "1", "--batch-size", "1", "--json"],
        {"MOSAICDB_TEST_SLOW": SLOW},
        out=subprocess.PIPE,
        err=subprocess.PIPE,
    )
    seen: set[int] = set()
    wait_for(lambda: p.poll() is not None or photo_count(home) >= 8, what="8 photos written")
    seen |= descendants(p.pid)
    moved = tmp_path / "renamed"
    os.rename(lib, moved)
    assert not end(p, seen)
    assert p.returncode == 0, p.stderr.read()  # a normal end: what was read is kept
    got = rows(home)
    assert len({q for _, q, _ in got}) == len(got) and 8 <= len(got) < len(files)
    n = len(files) - len(got)
    summary = json.loads(p.stdout.read())
    assert summary["added"] == len(got) and summary["failed"] == 0, summary
    were = "file was" if n == 1 else "files were"
    assert summary["warnings"] == [
        f"{n} {were} gone before being read (moved or deleted while indexing) and not "
        "saved; index their folder where it is now"
    ]
    assert {s for _, _, s in got} == {"ok"}  # files gone before they were read: no rows
    assert {q for _, q, _ in got} <= {str(f) for f in files}
    ids = {os.path.relpath(q, lib): i for i, q, _ in got}
    # the folder indexed where it is now: the photos read keep their rows, the rest are read
    rc, s = cli_json(home, "index", moved, "--workers", "0")
    assert rc == 0, s
    assert (s["moved"], s["added"]) == (len(got), len(files) - len(got)), s
    after = rows(home)
    assert sorted(q for _, q, _ in after) == sorted(str(f) for f in moved.rglob("*.jpg"))
    assert all(ids.get(os.path.relpath(q, moved), i) == i for i, q, _ in after)
    assert [r[1] for r in catalog(home, "SELECT id, path FROM roots")] == [os.fsencode(moved)]
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
    assert not temp_files(home)


class RenameWhileWalking:
    """A progress whose folder scan renames `folder` to `to` after the first file it sees."""

    def __init__(self, folder: Path, to: Path):
        self.folder, self.to = folder, to

    def task(self, description, total=None):
        import contextlib

        from mosaicdb.progress import Task

        outer = self

        class Renaming(Task):
            def advance(self, n=1):
                if description.startswith("Scanning") and outer.folder.exists():
                    os.rename(outer.folder, outer.to)

        return contextlib.nullcontext(Renaming())


def test_a_root_renamed_while_index_walks_it_loses_no_row(library, tmp_path):  # noqa: F811
    import mosaicdb

    lib, home, moved = tmp_path / "photos", tmp_path / "store", tmp_path / "renamed"
    files = small_library(library, lib, 12, 4)
    with mosaicdb.open(home) as store:
        assert store.index([lib], workers=0).added == len(files)
    before = {os.path.relpath(q, lib): i for i, q, _ in rows(home)}
    with mosaicdb.open(home, progress=RenameWhileWalking(lib, moved)) as store:
        s = store.index([lib], workers=0)  # the same folder again: renamed after one file
    assert s.removed == 0 and s.warnings[-1] == (  # after the walk's "No such file" lines
        f"{lib}: folder moved or removed while it was scanned; its photos are kept (index it "
        "where it is now)"
    )
    assert {os.path.relpath(q, lib): i for i, q, _ in rows(home)} == before  # nothing lost
    with mosaicdb.open(home) as store:
        s = store.index([moved], workers=0)
    assert (s.moved, s.added, s.removed) == (len(files), 0, 0), s
    assert {os.path.relpath(q, moved): i for i, q, _ in rows(home)} == before  # same ids
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report


def test_a_root_renamed_just_after_a_photo_was_decoded(library, tmp_path, monkeypatch):  # noqa: F811
    """The folder goes between a photo's decoding and its fingerprint (in process: the
    fingerprint renames it): that photo has no fingerprint to be matched by, so, like the
    files not read at all, it gets no row, and the new path is read in full once."""
    import mosaicdb
    from mosaicdb.index import identity

    lib, home, moved = tmp_path / "photos", tmp_path / "store", tmp_path / "renamed"
    files = small_library(library, lib, 12, 6)
    real, calls = identity.fingerprint, []

    def renaming(path, size):
        calls.append(path)
        if len(calls) == 5:
            os.rename(lib, moved)
        return real(path, size)

    monkeypatch.setattr(identity, "fingerprint", renaming)
    with mosaicdb.open(home) as store:
        s = store.index([lib], workers=0)
    monkeypatch.setattr(identity, "fingerprint", real)
    assert (s.added, s.failed) == (4, 0), s
    with mosaicdb.open(home) as store:
        s = store.index([moved], workers=0)
    assert (s.moved, s.added) == (4, len(files) - 4), s
    assert sorted(q for _, q, _ in rows(home)) == sorted(str(f) for f in moved.rglob("*.jpg"))
    rc, report = cli_json(home, "check", "--deep")
    assert rc == 0 and report["ok"], report
