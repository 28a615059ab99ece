"""stats, ls (--near), check (--repair), forget: exact answers on generated photos."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
from conftest import COLOURS, solid
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import delete, select, update

from mosaicdb.errors import NotFoundError, OptionError
from mosaicdb.store import catalog as db
from mosaicdb.store import schema
from mosaicdb.store import vecindex as V


@pytest.fixture
def store(lib, lib_dir):
    for name, rgb in COLOURS.items():
        solid(lib_dir / f"{name}.png", rgb)
    (lib_dir / "broken.jpg").write_bytes(b"nope")
    lib.index([lib_dir], workers=0)
    return lib


def test_stats_counts_and_coverage(store, lib_dir, work_dir, backend):
    import pyvips

    s = store.stats(plot=str(work_dir / "coverage.png"))
    im = pyvips.Image.new_from_file(s["plot"])
    assert (im.width, im.height) == (70 + 13 * 64, 20 + 5 * 64)  # labels: L bands, hues
    assert s["photos"] == 9
    assert s["by_status"] == {"ok": 8, "error": 1}
    assert s["by_format"] == {"png": 8}
    assert s["roots"] == [{"path": str(lib_dir), "photos": 9}]
    assert s["feature_spec"] == "lab3v1" and s["vector_index"] == "exact"
    assert s["store"]["thumbnail_bytes"] > 0 and s["store"]["vector_files"]
    cov = s["coverage"]
    # grey (128) is L 53.6: the 40-60 band's near-greys; black in 0-20, white in 80-100
    assert cov["greys"] == [1, 0, 1, 0, 1]
    assert sum(map(sum, cov["counts"])) == 5, cov
    assert cov["counts"][2][cov["hues"].index("red")] == 1, cov  # (230, 30, 30): L 49, hue 37°


def test_ls_filters_and_near(store, lib_dir, backend):
    rows = store.ls(near="#e01e1e", limit=2)
    assert rows[0]["path"].rsplit("/", 1)[1] == "red.png"
    assert rows[0]["delta_e"] < 2 and rows[0]["hex"].startswith("#e")
    rows = store.ls(near="lab:97,0,0", limit=1)
    assert rows[0]["path"].endswith("white.png")
    errs = store.ls(status="error")
    assert [r["path"] for r in errs] == [str(lib_dir / "broken.jpg")]
    assert errs[0]["hex"] is None and "known format" in errs[0]["error"]
    assert len(store.ls(path="*/g*.png")) == 2  # green, grey
    assert store.ls(path="*/G*.png") == []  # case counts on both engines
    with pytest.raises(OptionError, match=r"^--path: is empty \(leave it out"):
        store.ls(path="")  # e.g. --path "$UNSET": an error, not the whole library or nothing
    assert [r["path"] for r in store.ls(path="*/[!a-q]ed.png")] == [str(lib_dir / "red.png")]
    assert [r["path"].rsplit("/", 1)[1] for r in store.ls(sort="lightness", status="ok")][0] == (
        "black.png"
    )
    assert [r["status"] for r in store.ls(sort="lightness")][-1] == "error"  # either engine
    assert all("error" in r for r in store.ls())  # the same keys for every row
    with pytest.raises(OptionError, match="^--near: not a colour"):
        store.ls(near="bluish")
    with pytest.raises(OptionError, match="^--status:"):
        store.ls(status="fine")
    with pytest.raises(NotFoundError, match="is not a registered folder"):
        store.ls(root="/nowhere")


def test_check_clean_then_each_fault_detected_and_repaired(store, lib_dir, backend):
    r = store.check()
    assert r["ok"] and r["problems"] == []

    store.vector_path().unlink()
    r = store.check()
    assert not r["ok"] and any("is missing" in p for p in r["problems"])
    r = store.check(repair=True)
    assert r["ok"] and "rebuilt the vector file from the catalog" in r["repaired"]

    idx = V.read(store.vector_path())
    V.remove(idx, V.ids_of(idx)[:1])
    V.write_atomic(idx, store.vector_path())
    assert any("holds 7 vectors, the catalog 8" in p for p in store.check()["problems"])
    assert store.check(repair=True)["ok"]

    (lib_dir / "blue.png").unlink()
    r = store.check()
    assert r["files"]["missing"] == [str(lib_dir / "blue.png")]
    assert store.check(repair=True)["ok"]
    assert store.stats()["by_status"]["ok"] == 7

    with store.catalog.engine.begin() as c:
        c.execute(
            update(schema.thumbnails)
            .where(schema.thumbnails.c.photo_id == 1)
            .values(data=b"\xff\xd8 broken")
        )
    r = store.check()
    assert r["bad_thumbnails"] == [1] and not r["ok"]
    assert store.check(deep=True)["bad_thumbnails"] == [1]
    r = store.check(repair=True)
    assert r["ok"], r
    assert store.stats()["by_status"]["error"] == 2
    # the file still exists: its row is kept, and a retry reads it again
    assert store.index(workers=0, retry_errors=True).updated == 2
    assert store.check()["ok"]


def test_check_finds_a_photo_without_thumbnail_and_repair_sends_it_back(store, backend):
    """An ok photo whose thumbnail row is gone would stop a render that picks it; check names
    it, and --repair turns it into an error that `index --retry-errors` reads again."""
    with store.catalog.engine.begin() as c:
        c.execute(delete(schema.thumbnails).where(schema.thumbnails.c.photo_id == 2))
    r = store.check()
    assert r["missing_thumbnails"] == [2] and not r["ok"]
    assert "1 photos have no stored thumbnail (photo ids 2)" in r["problems"][0]
    r = store.check(repair=True)
    assert r["ok"], r
    assert "marked 1 photos without a thumbnail as errors" in r["repaired"]
    assert [e["error"] for e in store.errors()].count("stored thumbnail is missing") == 1
    assert store.index(workers=0, retry_errors=True).updated == 2  # and broken.jpg, again
    assert store.check()["ok"]


def _foreign_keys_off(store, *statements):
    """Write as another tool might: with foreign keys off, rows can lose their photo."""
    with store.catalog.engine.connect() as c:
        c.exec_driver_sql("PRAGMA foreign_keys=OFF")
        for st in statements:
            c.execute(st)
        c.commit()
        c.exec_driver_sql("PRAGMA foreign_keys=ON")


def _vectors_of(store, pid):
    from sqlalchemy import func, select

    with store.catalog.engine.connect() as c:
        return c.execute(select(func.count()).where(schema.features.c.photo_id == pid)).scalar_one()


def test_check_counts_orphan_rows_and_repair_drops_them(store):
    vectors = _vectors_of(store, 3)  # one per feature spec
    _foreign_keys_off(store, delete(schema.photos).where(schema.photos.c.id == 3))
    r = store.check()
    assert r["orphans"] == {"thumbnails": 1, "features": vectors, "photos": 0}
    assert f"orphan rows: 1 thumbnails, {vectors} features" in r["problems"]
    r = store.check(repair=True)
    assert r["ok"] and "dropped orphan rows" in r["repaired"]
    assert store.check()["orphans"] == {"thumbnails": 0, "features": 0, "photos": 0}


def test_repair_derives_vectors_and_sends_back_a_thumbnail_that_does_not_decode(store, backend):
    """Two ok photos lost their vectors; one's thumbnail is also damaged inside, its JPEG
    markers intact (only decoding tells). --repair derives the one vector it can, turns the
    other photo into an error instead of stopping, and the store comes back clean."""
    from sqlalchemy import select

    th = schema.thumbnails.c
    with store.catalog.engine.begin() as c:
        (a, data), (b, _) = c.execute(select(th.photo_id, th.data).order_by(th.photo_id)).all()[:2]
        c.execute(delete(schema.features).where(schema.features.c.photo_id.in_([a, b])))
        broken = data[:2] + bytes(len(data) - 4) + data[-2:]
        c.execute(update(schema.thumbnails).where(th.photo_id == a).values(data=broken))
    r = store.check()
    assert r["vectors"]["photos_without_vector"] == 2 and r["bad_thumbnails"] == []
    r = store.check(repair=True)
    assert r["ok"], r
    assert "derived 1 missing vectors from the stored thumbnails" in r["repaired"]
    assert "marked 1 photos with broken thumbnails as errors" in r["repaired"]
    assert [e["error"] for e in store.errors()].count("stored thumbnail does not decode") == 1
    assert _vectors_of(store, b) > 0 and _vectors_of(store, a) == 0
    assert store.index(workers=0, retry_errors=True).updated == 2  # and broken.jpg, again
    assert store.check()["ok"]


def test_check_deep_compares_row_by_row(store):
    """The quick comparison is by count and id sum: orphan thumbnails of photos a and d and
    missing thumbnails of photos b and c, with a + d = b + c, cancel out. --deep does not
    compare sums, and finds all four."""
    from sqlalchemy import select

    with store.catalog.engine.connect() as c:
        ok = [
            r[0]
            for r in c.execute(select(schema.photos.c.id).where(schema.photos.c.status == "ok"))
        ]
    a, b, c_, d = next(
        w for w in zip(ok, ok[1:], ok[2:], ok[3:], strict=False) if w[0] + w[3] == w[1] + w[2]
    )
    t = schema.thumbnails.c
    _foreign_keys_off(
        store,
        delete(schema.photos).where(schema.photos.c.id.in_([a, d])),
        delete(schema.thumbnails).where(t.photo_id.in_([b, c_])),
    )
    quick = store.check()
    assert quick["missing_thumbnails"] == [] and quick["orphans"]["thumbnails"] == 0
    deep = store.check(deep=True)
    assert deep["missing_thumbnails"] == [b, c_] and deep["orphans"]["thumbnails"] == 2
    assert store.check(repair=True, deep=True)["ok"]


def test_cli_check_exit_codes_and_json(cli, lib_dir):
    solid(lib_dir / "a.png", COLOURS["red"])
    solid(lib_dir / "b.png", COLOURS["blue"])  # an emptied folder is not compared
    cli("index", lib_dir, "-j", "0", "-q")
    r = cli("check", "--json")
    assert r.exit_code == 0
    d = json.loads(r.stdout)
    assert {
        "ok",
        "problems",
        "vectors",
        "orphans",
        "bad_thumbnails",
        "missing_thumbnails",
        "files",
        "repaired",
    } <= d.keys()
    (lib_dir / "a.png").unlink()
    r = cli("check")
    assert r.exit_code == 1 and "problem: 1 indexed files are gone from disk" in r.output
    r = cli("check", "--repair")
    assert r.exit_code == 0 and "repaired: dropped 1 rows of files gone from disk" in r.output


def _zero_page_of(catalog, name: str) -> None:
    """Overwrite the first page of table or index `name` with zeros, as a bad disk would."""
    import sqlite3

    c = sqlite3.connect(catalog)
    c.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    size = c.execute("PRAGMA page_size").fetchone()[0]
    (root,) = c.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (name,)).fetchone()
    c.close()
    with open(catalog, "r+b") as f:
        f.seek((root - 1) * size)
        f.write(bytes(size))


def test_cli_check_reports_a_damaged_catalog(cli, lib_dir, home):
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    _zero_page_of(home / "catalog.sqlite", "thumbnails")
    found = [
        "database integrity: database disk image is malformed",
        "the catalog cannot be read (database disk image is malformed): restore it from a "
        "backup, or index the photo folders into a new store (--home)",
    ]
    r = cli("check")
    assert r.exit_code == 1 and r.stdout.splitlines() == [f"problem: {p}" for p in found]
    r = cli("check", "--repair")  # nothing to repair through: all of it stays
    assert r.exit_code == 1
    assert r.stdout.splitlines() == [f"{w}: {p}" for w in ("problem", "still wrong") for p in found]
    d = json.loads(cli("check", "--json").stdout)
    assert d["ok"] is False and d["repaired"] == [] and d["problems"] == found


def test_repair_leaves_a_damaged_catalog_alone(cli, lib_dir, home):
    """The rows can be read but SQLite finds pages damaged: --repair writes nothing and says
    what to do instead, as every command does when the catalog cannot be read."""
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    _zero_page_of(home / "catalog.sqlite", "renders")
    vectors = {p: p.stat().st_mtime_ns for p in home.glob("vectors-*")}
    r = cli("check", "--repair")
    assert r.exit_code == 1 and "\nrepaired:" not in r.stdout, r.output
    assert r.stdout.startswith("problem: database integrity: ")
    assert r.stdout.endswith(
        "still wrong: not repaired: the catalog file is damaged; restore it from a backup, "
        "or index the photo folders into a new store (--home)\n"
    )
    assert {p: p.stat().st_mtime_ns for p in home.glob("vectors-*")} == vectors
    d = json.loads(cli("check", "--repair", "--json").stdout)
    assert d["repaired"] == [] and d["ok"] is False and "remaining" in d
    _zero_page_of(home / "catalog.sqlite", "meta")
    r = cli("check")
    assert r.exit_code == 1 and r.stderr.startswith("Error: ")
    assert r.stderr.endswith(
        "(restore it from a backup, or index the photo folders into a new store (--home))\n"
    )


def test_check_of_a_catalog_named_by_a_uri(cli, lib_dir, home):
    """SQLite's check runs on the engine's connection when the catalog is a URI."""
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    url = f"sqlite:///file:{home / 'catalog.sqlite'}?uri=true"
    r = cli("--db", url, "check", "--no-files")
    assert (r.exit_code, r.stderr) == (0, "store is consistent\n"), r.output
    _zero_page_of(home / "catalog.sqlite", "ix_photos_root_id")
    r = cli("--db", url, "check", "--no-files")
    assert r.exit_code == 1 and r.stdout.startswith("problem: database integrity: "), r.output


@pytest.mark.parametrize(
    "url",
    ["sqlite://", "sqlite:///file::memory:?uri=true", "sqlite:///file:mem?mode=memory&uri=true"],
)
def test_a_catalog_in_memory_serves_every_thread(url, home, lib_dir):
    """check and stats read from several threads at once; each new connection to a database
    in memory would be another, empty database ('no such table')."""
    import mosaicdb

    for name in ("red", "blue", "green"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    with mosaicdb.open(home, db=url) as lib:
        assert lib.index([lib_dir], workers=0).added == 3
        r = lib.check(files=True)
        assert (r["ok"], r["problems"]) == (True, [])
        assert lib.stats()["photos"] == 3


@pytest.mark.parametrize("scan, deep", [("check_rows", False), ("count_missing_features", True)])
def test_ctrl_c_stops_the_scans_of_check(store, backend, monkeypatch, scan, deep):
    """Ctrl-C while `check` scans the catalog stops the scan in the database: leaving the
    worker threads would otherwise wait for it (seconds on a big store)."""
    import signal
    import threading
    import time

    from sqlalchemy import text

    endless = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
    )

    def scan_forever(self, *args, **kwargs):
        with self.engine.connect() as c, self._interruptible(c):
            c.execute(text(endless))

    def stop_it_anyway():  # so that, should interrupt fail, the test fails and does not hang
        with store.catalog._scanning_lock:
            for raw in store.catalog._scanning:
                raw.interrupt() if backend == "sqlite" else raw.cancel()

    monkeypatch.setattr(db.Catalog, scan, scan_forever)
    # a real SIGINT to the main thread, as Ctrl-C sends (interrupt_main would not wake a wait)
    ctrl_c = threading.Timer(
        0.5, signal.pthread_kill, (threading.main_thread().ident, signal.SIGINT)
    )
    ctrl_c.start()
    safety = threading.Timer(20, stop_it_anyway)
    safety.start()
    t = time.monotonic()
    with pytest.raises(KeyboardInterrupt):
        store.check(files=False, deep=deep)  # deep: missing vectors are always counted
    safety.cancel()
    assert time.monotonic() - t < 5


def test_a_scan_that_starts_after_ctrl_c_does_not_run(store):
    """A scan of check whose thread reaches its connection only after `interrupt` (Ctrl-C)
    stops there: `interrupt` could not reach it, and it would have run to its end. Outside
    a check (a render's scan, say) an earlier `interrupt` stops nothing."""
    from sqlalchemy import text

    cat = store.catalog
    with cat.checking():
        cat.interrupt()
        with pytest.raises(KeyboardInterrupt), cat.engine.connect() as c, cat._interruptible(c):
            c.execute(text("SELECT 1"))
    assert cat._scanning == []
    cat.interrupt()
    with cat.engine.connect() as c, cat._interruptible(c):
        assert c.execute(text("SELECT 1")).scalar() == 1
    assert store.check(files=False)["ok"]


def test_a_failing_scan_of_check_stops_the_others(store, backend, monkeypatch):
    """One of check's table scans fails (a damaged catalog, say): the others are stopped
    instead of running on to their end (seconds on a big store), and its error is raised."""
    import threading
    import time

    from sqlalchemy import text
    from sqlalchemy.exc import DatabaseError

    endless = (
        "WITH RECURSIVE r(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM r) SELECT count(*) FROM r"
    )
    real = db.Catalog._scan

    def scan(self, query):
        if "thumbnails" in str(query):  # the long one
            with self.engine.connect() as c, self._interruptible(c):
                return c.execute(text(endless)).all()
        if "photos" in str(query):  # fails at once, maybe before the long one has begun
            raise DatabaseError("SELECT", None, Exception("database disk image is malformed"))
        return real(self, query)

    monkeypatch.setattr(db.Catalog, "_scan", scan)
    safety = threading.Timer(20, store.catalog._interrupt_scans)  # fail, do not hang
    safety.start()
    t = time.monotonic()
    with pytest.raises(DatabaseError, match="malformed"):
        store.catalog.check_rows()
    safety.cancel()
    assert time.monotonic() - t < 5


def test_page_check_findings_and_handoff(lib, lib_dir):
    from mosaicdb.store import pagecheck

    solid(lib_dir / "a.png", COLOURS["red"])
    lib.index([lib_dir], workers=0)
    catalog = lib.home / "catalog.sqlite"
    assert pagecheck.run(catalog) == [] == pagecheck.run(catalog, deep=True)
    _zero_page_of(catalog, "ix_photos_root_id")
    found = pagecheck.run(catalog)
    assert found and all("\n" not in f and not f.startswith("***") for f in found), found
    # a started check is handed over once, whichever way the file is named
    pagecheck.start(os.path.relpath(catalog))
    assert pagecheck._started
    assert lib.catalog.integrity_check() == found
    assert not pagecheck._started
    assert pagecheck.result(catalog, deep=True)  # none started: checked there and then


def test_entry_point_starts_the_page_check_of_check_only(tmp_path, monkeypatch):
    """The entry point reads argv before typer loads: a `check` of a store's own SQLite file
    begins its page check at once; anything it cannot read plainly starts nothing."""
    from mosaicdb.store import pagecheck

    home, other = tmp_path / "store", tmp_path / "other"
    for h in (home, other):
        h.mkdir()
        (h / "catalog.sqlite").touch()
    started = []
    monkeypatch.setattr(pagecheck, "start", lambda path, deep=False: started.append((path, deep)))
    monkeypatch.setenv("MOSAICDB_HOME", str(other))
    monkeypatch.delenv("MOSAICDB_DB", raising=False)
    cases = [
        (["--home", str(home), "check"], [(home / "catalog.sqlite", False)]),
        ([f"--home={home}", "check", "--deep", "--json"], [(home / "catalog.sqlite", True)]),
        (["check", "--no-files"], [(other / "catalog.sqlite", False)]),  # MOSAICDB_HOME
        (  # the store's own file, named by its URL
            ["--home", str(home), "--db", f"sqlite:///{home / 'catalog.sqlite'}", "check"],
            [(home / "catalog.sqlite", False)],
        ),
        (["--db", f"sqlite:///{home / 'catalog.sqlite'}", "check"], []),  # not other's own
        (["--home", str(home), "--db", "postgresql+psycopg://h/db", "check"], []),
        (["--home", str(home), "stats"], []),
        (["--home", str(home), "check", "--help"], []),
        (["--home"], []),
        (["--verbose", "check"], []),
        (["--home", str(home / "catalog.sqlite"), "check"], []),  # not a store: no check
        (["--home", str(tmp_path / "none"), "check"], []),  # no catalog yet
    ]
    for argv, want in cases:
        started.clear()
        pagecheck.start_from_argv(argv)
        assert started == want, argv


def test_stats_and_ls_json(cli, lib_dir, backend):
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    s = json.loads(cli("stats", "--json").stdout)
    assert {
        "photos",
        "by_status",
        "by_format",
        "roots",
        "store",
        "feature_spec",
        "vector_index",
        "last_index_at",
        "coverage",
    } <= s.keys()
    rows = json.loads(cli("ls", "--json").stdout)
    assert rows[0].keys() >= {"id", "path", "status", "size", "lab", "hex"}
    assert json.loads(cli("ls", "--status", "error", "--json").stdout) == []
    r = cli("ls", "--status", "error")  # said on stderr: stdout stays a clean (empty) list
    assert (r.exit_code, r.stdout, r.stderr) == (0, "", "no photos match\n")


def test_forget(cli, lib_dir, tmp_path, backend):
    solid(lib_dir / "a.png", COLOURS["red"])
    solid(tmp_path / "other" / "b.png", COLOURS["blue"])
    cli("index", lib_dir, tmp_path / "other", "-j", "0", "-q")
    r = cli("forget", lib_dir, "--yes", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout) == {"root": str(lib_dir), "photos_removed": 1, "vectors": 1}
    assert json.loads(cli("roots", "--json").stdout) == [str(tmp_path / "other")]
    assert (lib_dir / "a.png").exists()
    r = cli("forget", lib_dir, "--yes")
    assert r.exit_code == 1 and "is not a registered folder" in r.output


def test_gaps_finds_the_missing_colour(lib, lib_dir, work_dir):
    from test_render import blocks_target

    # the library has every colour of the target but blue
    for name in ("red", "green", "yellow", "black", "white", "purple", "grey"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    lib.index([lib_dir], workers=0)
    t = blocks_target(work_dir / "target.png")
    g = lib.gaps(t, tiles_across=4, plot=str(work_dir / "gaps.png"))
    assert (g["cells"], g["poor_cells"]) == (8, 1)
    (grp,) = g["groups"]
    assert grp["colour"] == "dark blues" and grp["cells"] == 1 and grp["best_delta_e"] > 10
    assert grp["suggest_photos"] == 1
    import pyvips

    plot = pyvips.Image.new_from_file(str(work_dir / "gaps.png"))
    assert (plot.width, plot.height) == (220 + 4 + 64 + 4 + 64, 20 + 64)  # header, one row
    assert plot.crop(0, 20, 220, 64).min() < 128  # the row's label: "dark blues: 1 cell, ΔE …"
    assert plot.crop(224, 0, 132, 20).min() < 128  # the header: "wanted", "closest"
    for bad, message in [
        ({"threshold": float("inf")}, "--threshold: must be a positive number, got inf"),
        ({"threshold": float("nan")}, "--threshold: must be a positive number, got nan"),
        ({"tiles_across": 100_000}, "--tiles-across: 100,000×50,000 cells on this target"),
        ({"plot": str(work_dir / "g.dz")}, "--plot: unknown picture format '.dz'"),
        ({"plot": str(work_dir / "no" / "g.png")}, "--plot: folder .*/no does not exist"),
    ]:
        with pytest.raises(OptionError, match="^" + message):
            lib.gaps(t, **{"tiles_across": 4, **bad})
    with pytest.raises(OptionError, match="^--plot: unknown picture format '.txt'"):
        lib.stats(plot=str(work_dir / "c.txt"))
    assert sorted(p.name for p in work_dir.iterdir()) == ["gaps.png", "target.png"]


def test_sheet_is_sorted_by_colour_and_bounded(cli, lib_dir, work_dir):
    import pyvips

    for name, rgb in COLOURS.items():
        solid(lib_dir / f"{name}.png", rgb)
    cli("index", lib_dir, "-j", "0", "-q")
    out = work_dir / "sheet.png"
    r = cli("sheet", "-o", out, "--tile-size", "16", "--across", "3", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert (d["photos"], d["cols"], d["rows"], d["width"], d["height"]) == (8, 3, 3, 48, 48)
    im = pyvips.Image.new_from_file(str(out))
    px = im.numpy()
    # greys first, dark to light: black, grey, white; the unused last cell is blank white
    assert px[8, 8].tolist() == list(COLOURS["black"])
    assert abs(int(px[8, 24][0]) - 128) <= 2
    assert px[40, 40].tolist() == [255, 255, 255]
    assert sorted(p.name for p in work_dir.iterdir()) == ["sheet.png"]
    r = cli("sheet", "-o", out, "--tile-size", "16", "--across", "1000", "--json")
    assert json.loads(r.stdout)["cols"] == 8  # no wider than the photos it shows

    # as `ls` sorts: by path here, so in the order of the names
    r = cli("sheet", "-o", out, "--tile-size", "8", "--across", "8", "--sort", "path")
    assert r.exit_code == 0, r.output
    px = pyvips.Image.new_from_file(str(out)).numpy()
    got = px[4, 4::8].astype(int)  # the centre of each tile, left to right
    want = [COLOURS[n] for n in sorted(COLOURS)]
    assert abs(got - want).max() <= 2, (got, want)  # JPEG thumbnails
    r = cli("sheet", "-o", out, "--status", "ok", "--sort", "colour", "--limit", "2", "--json")
    assert r.exit_code == 0 and json.loads(r.stdout)["photos"] == 2, r.output
    for args, message in [
        (["--status", "error"], "--status: photos that failed have no thumbnail; see"),
        (["--status", "gone"], "--status: must be ok, got 'gone'"),
        (["--sort", "hue"], "--sort: must be one of id, path, size, lightness, indexed, colour"),
        (["--sort", "size", "--near", "#ff0000"], "--sort: does not go with --near (its photos"),
    ]:
        r = cli("sheet", "-o", out, *args)
        assert r.exit_code == 1 and r.stderr.startswith("Error: " + message), r.stderr


def _index_meanwhile(store, monkeypatch, method, change):
    """Make `store.catalog.<method>` first `change()` the photos and run an index, once: an
    `index` that runs while check or its repair is under way."""
    real = getattr(store.catalog, method)

    def run(*args):
        monkeypatch.setattr(store.catalog, method, real)
        change()
        store.index(workers=0)
        return real(*args)

    monkeypatch.setattr(store.catalog, method, run)


def test_repair_keeps_a_photo_an_index_read_again_meanwhile(store, lib_dir, monkeypatch, backend):
    """The thumbnail check saw a broken thumbnail; then (while check compares the files) an
    `index` read the changed photo again. The repair keeps what that index wrote."""
    red = lib_dir / "red.png"
    pid = {r["path"]: r["id"] for r in store.ls()}[str(red)]
    with store.catalog.engine.begin() as c:
        c.execute(
            update(schema.thumbnails)
            .where(schema.thumbnails.c.photo_id == pid)
            .values(data=b"\xff\xd8 broken")
        )
    _index_meanwhile(store, monkeypatch, "file_states", lambda: solid(red, (231, 30, 30)))
    r = store.check(repair=True)
    assert r["bad_thumbnails"] == [pid]
    assert r["ok"] and r["repaired"] == ["rebuilt the vector file from the catalog"], r
    assert store.stats()["by_status"] == {"ok": 8, "error": 1}


def test_repair_keeps_a_file_that_came_back_meanwhile(store, lib_dir, monkeypatch, backend):
    blue = lib_dir / "blue.png"
    data = blue.read_bytes()
    blue.unlink()
    _index_meanwhile(store, monkeypatch, "delete_photos", lambda: blue.write_bytes(data))
    r = store.check(repair=True)
    assert r["files"]["missing"] == [str(blue)]
    assert r["ok"] and r["repaired"] == ["rebuilt the vector file from the catalog"], r
    assert store.stats()["by_status"] == {"ok": 8, "error": 1}


def test_check_finds_an_empty_thumbnail(store, backend):
    with store.catalog.engine.begin() as c:
        c.execute(
            update(schema.thumbnails).where(schema.thumbnails.c.photo_id == 1).values(data=b"")
        )
    assert store.check()["bad_thumbnails"] == [1]
    assert store.check(repair=True)["ok"]


def test_thumbnail_marker_test_edges(store, backend):
    """The cheap test in the database (start with SOI, end with EOI) on blobs around its
    edges, identical on both engines."""
    t = schema.thumbnails.c
    with store.catalog.engine.connect() as c:
        ids = [r[0] for r in c.execute(select(t.photo_id).order_by(t.photo_id))]
        good = c.execute(select(t.data).where(t.photo_id == ids[0])).scalar_one()
    blobs = [
        b"\xff",
        b"\xff\xd8",
        b"\xff\xd9",
        b"\xff\xd8\xd9",
        good[:-1],  # truncated
        good + b"\x00",  # junk after the end
        b"\x00" + good,  # junk before the start
        b"\xff\xd8\xff\xd9",  # the shortest blob the cheap test passes
    ]
    with store.catalog.engine.begin() as c:
        for pid, data in zip(ids, blobs, strict=True):
            c.execute(update(schema.thumbnails).where(t.photo_id == pid).values(data=data))
    assert store.catalog.check_rows().bad_thumbnails == ids[:-1]


def test_repair_of_a_single_photo_whose_vector_cannot_be_derived(store, backend):
    """Every thumbnail of the batch to derive is damaged inside: nothing to write, and the
    repair still marks the photo and rebuilds the vector file."""
    from sqlalchemy import select

    th = schema.thumbnails.c
    with store.catalog.engine.begin() as c:
        pid, data = c.execute(select(th.photo_id, th.data).order_by(th.photo_id)).first()
        c.execute(delete(schema.features).where(schema.features.c.photo_id == pid))
        broken = data[:2] + bytes(len(data) - 4) + data[-2:]
        c.execute(update(schema.thumbnails).where(th.photo_id == pid).values(data=broken))
    r = store.check(repair=True)
    assert r["ok"], r
    assert "marked 1 photos with broken thumbnails as errors" in r["repaired"]


def test_repair_drops_photos_whose_root_is_gone(store):
    _foreign_keys_off(store, delete(schema.roots))
    r = store.check()
    assert r["orphans"]["photos"] == 9
    r = store.check(repair=True)
    assert r["ok"], r
    assert store.stats()["photos"] == 0


@pytest.mark.parametrize(
    "direct_max, search_max",
    [(5000, 10**6), (0, 10**6), (0, 1)],  # rank the few filtered / widen / widen, then rank
)
def test_ls_near_with_filters_finds_photos_far_down_the_list(
    store, work_dir, monkeypatch, direct_max, search_max, backend
):
    """The nearest photos to red are all in the first folder; --root (and --path) ask for
    the other folder's, which the first search does not reach."""
    from mosaicdb.query import listing as queries

    other = work_dir / "other"
    other.mkdir()
    solid(other / "navy.png", (20, 30, 90))
    solid(other / "teal.png", (20, 120, 120))
    store.index([other], workers=0)
    monkeypatch.setattr(queries, "NEAR_FIRST", 1)
    monkeypatch.setattr(queries, "NEAR_PER_ROW", 1)
    monkeypatch.setattr(queries, "NEAR_SEARCH_MAX", search_max)
    monkeypatch.setattr(queries, "NEAR_DIRECT_MAX", direct_max)
    names = [r["path"].rsplit("/", 1)[1] for r in store.ls(near="#e01e1e", root=str(other))]
    assert names == ["navy.png", "teal.png"]
    rows = store.ls(near="#e01e1e", path="*/other/t*", limit=1)
    assert [r["path"].rsplit("/", 1)[1] for r in rows] == ["teal.png"]
    assert store.ls(near="#e01e1e", status="error") == []


def test_ls_near_on_a_store_without_photos(lib, lib_dir):
    (lib_dir / "broken.jpg").write_bytes(b"nope")
    lib.index([lib_dir], workers=0)
    assert lib.ls(near="#ff0000") == []
    assert lib.ls(near="#ff0000", limit=5) == []


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"near": "lab:1.2.3,0,0"}, "--near: not a colour"),
        ({"near": "lab:200,0,0"}, "--near: 'lab:200,0,0': L must be 0-100"),
        ({"limit": 10**20}, "--limit: must be between 1 and"),
        ({"near": "#ff0000", "sort": "path"}, "--sort: does not go with --near"),
    ],
)
def test_ls_bad_values_name_the_option(store, kwargs, message):
    with pytest.raises(OptionError, match="^" + message):
        store.ls(**kwargs)


def test_a_store_without_photos_is_consistent(lib):
    assert not lib.vector_path().exists()
    r = lib.check()
    assert r["ok"] and r["problems"] == [], r


def test_forget_asks_on_a_terminal_and_refuses_without_one(cli, lib_dir, monkeypatch):
    solid(lib_dir / "a.png", COLOURS["red"])
    cli("index", lib_dir, "-j", "0", "-q")
    r = cli("forget", lib_dir, input="y\n")  # the test runner's stdin is no terminal
    assert r.exit_code == 1
    assert r.stderr == "Error: --yes: is needed to forget a folder without a terminal\n"
    monkeypatch.setattr("mosaicdb.cli.store.on_terminal", lambda: True)
    # the question goes to stderr, not into the JSON (the test runner echoes the answer)
    r = cli("forget", lib_dir, "--json", input="n\n")
    assert r.exit_code == 1 and r.stdout.strip() == "n"
    assert f"Remove {lib_dir} and its 1 photos from the store?" in r.stderr
    r = cli("forget", lib_dir, "--json", input="y\n")
    assert r.exit_code == 0 and json.loads(r.stdout.split("\n", 1)[1])["photos_removed"] == 1


# bytes of names: ASCII (glob characters too), UTF-8 (é), and bytes that are not UTF-8
PATH_BYTES = [b"a", b"b", b"B", b"/", b".", b"*", b"?", b"[", b"]", b"!", b"%", b"_", b"\\"]
PATH_BYTES += ["é".encode(), b"\xe9", b"\xff", b"\xa9", b"\xc3"]


@st.composite
def path_and_glob(draw):
    """A path's bytes, and a glob that fnmatch matches its name with (os.fsdecode: a byte
    that is not UTF-8 is one character): each character kept, or matched by `?`, `*` or a
    class (`[c]`, `[!x]`), with `*` also where it matches nothing."""
    raw = b"".join(draw(st.lists(st.sampled_from(PATH_BYTES), max_size=10)))
    glob = []
    for ch in os.fsdecode(raw):
        way = draw(st.sampled_from(["keep", "?", "*", "class", "not", "extra"]))
        literal = ch if ch not in "*?[" else f"[{ch}]"
        if way == "not":
            other = draw(st.sampled_from([c for c in "ab%_é]" if c != ch]))
            glob.append(f"[!{other}]")
        elif way == "class":
            glob.append("[]]" if ch == "]" else f"[{ch}a]")
        elif way in ("?", "*"):
            glob.append(way)
        else:
            glob.append(literal + ("*" if way == "extra" else ""))
    return raw, "".join(glob)


@settings(max_examples=400, deadline=None)
@given(path_and_glob())
def test_path_prefilter_never_drops_a_path_fnmatch_keeps(case):
    """The database's pre-filter for --path may keep too much (fnmatch decides after it),
    never too little: on SQLite here, on PostgreSQL in test_ls_path_with_like_characters."""
    from sqlalchemy import LargeBinary, literal

    from mosaicdb.query.listing import _path_matches, path_prefilter

    raw, glob = case
    assert _path_matches(raw, glob)
    cat = _SQLITE_CATALOG
    pf = path_prefilter(glob)
    expr = cat._path_prefilter(literal(raw, LargeBinary), pf)
    with cat.engine.connect() as c:
        assert c.execute(select(expr)).scalar_one(), (pf, raw)


def test_ls_path_with_like_characters(lib, lib_dir, backend):
    """`%`, `_`, `\\` and names that are not ASCII, or not UTF-8, on both engines."""
    for name in ["a_b.png", "a%b.png", "axb.png", "a\\b.png", "été.png", "caf.png"]:
        solid(lib_dir / name, COLOURS["red"])
    os.rename(lib_dir / "caf.png", os.fsencode(lib_dir) + b"/caf\xe9.png")  # not UTF-8
    lib.index([lib_dir], workers=0)

    def names(glob):
        return sorted(r["path"].rsplit("/", 1)[1] for r in lib.ls(path=glob))

    assert names("*/a_b.png") == ["a_b.png"]
    assert names("*/a%b.png") == ["a%b.png"]
    assert names("*/a\\b.png") == ["a\\b.png"]
    assert names("*/a?b.png") == ["a%b.png", "a\\b.png", "a_b.png", "axb.png"]
    assert names("*/é*.png") == ["été.png"]
    assert names("*/caf\udce9.png") == ["caf\\udce9.png"]  # shown escaped, matched as named
    assert names("*/caf?.png") == ["caf\\udce9.png"]
    assert [r["path"] for r in lib.ls(near="#ff0000", path="*/a_*")] == [str(lib_dir / "a_b.png")]


def test_path_prefilter_patterns():
    from mosaicdb.query.listing import LIKE_MAX, path_prefilter

    def pf(glob):
        p = path_prefilter(glob)
        return p.ascii_like, p.bytes_like, p.runs

    assert pf("*/2019/*") == (b"%/2019/%", b"%/2019/%", ())
    assert pf("/p/a_b%c\\d?*[!]x]y[z") == (b"/p/a\\_b\\%c\\\\d%y%z",) * 2 + ((),)
    # only ASCII is literal for SQLite, which gets the rest as byte runs; bytea takes it all
    assert pf("/p/été/*.jpg") == (
        b"/p/%t%/%.jpg",
        "/p/été/%.jpg".encode(),
        ("é".encode(), "é".encode()),
    )
    assert pf("/p/caf\udce9*") == (b"/p/caf%", b"/p/caf\xe9%", (b"\xe9",))  # not UTF-8
    # SQLite refuses LIKE patterns past 50,000 bytes: cut, never in the middle of an escape
    assert pf("a" * 60_000)[0] == b"a" * LIKE_MAX + b"%"
    assert pf("_" * 30_000)[0] == b"\\_" * (LIKE_MAX // 2) + b"%"
    assert pf("x" + "_" * 30_000)[0] == b"x" + b"\\_" * ((LIKE_MAX - 1) // 2) + b"%"


def _memory_catalog():
    from sqlalchemy import create_engine

    return db.Catalog(create_engine("sqlite://"))


_SQLITE_CATALOG = _memory_catalog()


def test_damage_advice_only_for_a_damaged_sqlite_file():
    import sqlite3

    from mosaicdb.errors import with_damage_advice

    corrupt = sqlite3.DatabaseError("database disk image is malformed")
    corrupt.sqlite_errorname = "SQLITE_CORRUPT"
    assert with_damage_advice(corrupt).endswith(
        "(restore it from a backup, or index the photo folders into a new store (--home))"
    )
    busy = sqlite3.OperationalError("database is locked")
    busy.sqlite_errorname = "SQLITE_BUSY"
    assert with_damage_advice(busy) == "database is locked"
    # a server's words that merely contain "malformed" are not about our file
    assert with_damage_advice(ValueError("malformed array literal")) == "malformed array literal"


def test_ls_near_is_ordered_by_the_delta_e_it_prints(lib, lib_dir):
    """`ls --near` printed CIEDE2000 but came in plain Lab-distance order (1.8, 1.5, 2.6)."""
    rng = np.random.default_rng(3)
    for i, rgb in enumerate(rng.integers(60, 200, size=(40, 3))):
        solid(lib_dir / f"c{i:02d}.png", tuple(int(x) for x in rgb), size=(40, 30))
    lib.index([lib_dir], workers=0)
    for colour in ("#808080", "#a05050", "lab:60,20,-20"):
        d = [r["delta_e"] for r in lib.ls(near=colour, limit=10)]
        assert len(d) == 10 and d == sorted(d), (colour, d)


def test_ls_sort_colour_lays_out_as_sheet(store, cli):
    from mosaicdb.query.colour import colour_order

    rows = store.ls(sort="colour")
    keys = [colour_order(r["lab"]) for r in rows]
    assert keys == sorted(keys) and rows[0]["lab"][0] < rows[1]["lab"][0]  # greys dark first
    assert [r["id"] for r in store.ls(sort="colour", limit=3)] == [r["id"] for r in rows[:3]]
    assert cli("ls", "--sort", "colour").exit_code == 0
