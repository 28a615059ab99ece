"""A shared PostgreSQL catalog: two indexers at once give exactly the rows one indexer gives
(each file read once), files claimed by an indexer that died are taken over when its lease
runs out, and bulk writes go through COPY. The server is the session's throwaway cluster
(conftest `pg`); without PostgreSQL these tests skip."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from conftest import COLOURS, noise_jpeg, solid
from sqlalchemy import func, select

import mosaicdb
from mosaicdb.store import catalog as db
from mosaicdb.store import postgres, schema

N_GOOD = 48


@pytest.fixture
def library(lib_dir):
    for i in range(N_GOOD):
        noise_jpeg(lib_dir / f"d{i % 3}" / f"p{i:03d}.jpg", size=(480, 360), seed=i)
    solid(lib_dir / "solid.png", COLOURS["red"])
    (lib_dir / "empty.jpg").write_bytes(b"")
    (lib_dir / "text.jpg").write_text("not an image")
    return lib_dir


def snapshot(url: str) -> dict:
    """Everything the index wrote, keyed by path (ids differ between catalogs)."""
    engine = schema.make_engine(url)
    p, t, f = schema.photos.c, schema.thumbnails.c, schema.features.c
    with engine.connect() as c:
        photos = {
            r[0]: tuple(r[1:])
            for r in c.execute(
                select(p.path, p.size, p.mtime_ns, p.status, p.error, p.width, p.height, p.format)
            )
        }
        thumbs = {
            r[0]: tuple(r[1:])
            for r in c.execute(
                select(p.path, t.width, t.height, t.codec, t.data).join(schema.thumbnails)
            )
        }
        vecs = {
            (r[0], r[1]): tuple(r[2:])
            for r in c.execute(select(p.path, f.spec, f.vector, f.mean_l).join(schema.features))
        }
        counts = {
            name: c.execute(select(func.count()).select_from(tab)).scalar_one()
            for name, tab in (
                ("photos", schema.photos),
                ("thumbnails", schema.thumbnails),
                ("features", schema.features),
                ("scan_queue", schema.scan_queue),
            )
        }
        distinct = c.execute(select(func.count(func.distinct(p.path)))).scalar_one()
    engine.dispose()
    return {
        "photos": photos,
        "thumbs": thumbs,
        "vecs": vecs,
        "counts": counts,
        "distinct": distinct,
    }


def _indexer(home, url, lib_dir, *extra):
    env = {**os.environ, "MOSAICDB_HOME": str(home), "MOSAICDB_DB": url}
    return subprocess.Popen(
        [sys.executable, "-m", "mosaicdb", "index", str(lib_dir), "--json", "-q", *extra],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_two_indexers_at_once_equal_one(pg, library, tmp_path):
    n = N_GOOD + 3
    one = pg.create_database()
    with mosaicdb.open(tmp_path / "ref", db=one) as lib:
        s = lib.index([library], workers=0)
    assert (s.added, s.failed) == (n, 2)
    want = snapshot(one)

    shared = pg.create_database()
    with mosaicdb.open(tmp_path / "h0", db=shared):  # schema first: both start on equal terms
        pass
    t0 = time.monotonic()
    # default --batch-size: each indexer holds its results a while before writing; it must
    # write them before waiting on the other's files, or both wait out the 120 s lease
    procs = [_indexer(tmp_path / f"h{i}", shared, library, "--workers", "1") for i in (1, 2)]
    # the catalog answers queries and renders while both write into it
    seen, rendered = [], False
    with mosaicdb.open(tmp_path / "reader", db=shared) as reader:
        while any(p.poll() is None for p in procs):
            seen.append(reader.stats()["photos"])
            reader.ls(limit=3, sort="lightness")
            if seen[-1] >= 8 and not rendered:
                # (no re-ranking: it would derive 6×6 vectors that race the indexers' own)
                reader.render(
                    library / "solid.png", str(tmp_path / "m.jpg"), tiles_across=4, rerank=0
                )
                rendered = True
            time.sleep(0.05)
    assert seen == sorted(seen)  # committed batches only, never fewer rows
    outs = [p.communicate(timeout=300) for p in procs]
    seconds = time.monotonic() - t0
    for p, (_out, err) in zip(procs, outs, strict=True):
        assert p.returncode == 0, err
    sums = [json.loads(out) for out, _ in outs]
    assert seconds < 60, f"{seconds:.0f} s: an indexer waited for a lease to run out"
    # every file read and written by exactly one of the two
    assert sum(s["added"] for s in sums) == n, sums
    assert sum(s["updated"] for s in sums) == 0
    assert sum(s["failed"] for s in sums) == 2
    got = snapshot(shared)
    assert got["counts"] == {**want["counts"], "scan_queue": 0}
    assert got["distinct"] == got["counts"]["photos"] == n
    assert got["photos"] == want["photos"]
    assert got["thumbs"] == want["thumbs"]
    assert got["vecs"] == want["vecs"]
    print(
        f"two indexers: {[s['added'] for s in sums]} files each, {seconds:.1f} s, "
        f"{len(seen)} stats calls during the run, rendered during the run: {rendered}"
    )

    # both machines' vector caches agree with the catalog; a rerun changes nothing
    for i in (1, 2):
        with mosaicdb.open(tmp_path / f"h{i}", db=shared) as lib:
            s = lib.index(workers=0)
            assert (s.added, s.updated, s.unchanged) == (0, 0, n)
            from mosaicdb.store import vecindex as V

            assert V.read(lib.vector_path()).ntotal == N_GOOD + 1


def test_files_of_a_dead_indexer_are_taken_over(pg, library, tmp_path):
    """An indexer that claimed files and died: its lease runs out and another indexer reads
    them; nothing is lost, nothing written twice."""
    n = N_GOOD + 3
    url = pg.create_database()
    with mosaicdb.open(tmp_path / "h", db=url) as lib:
        # the dead indexer: walked, queued everything, claimed 10 files, then vanished
        from mosaicdb.index.walk import ScanOptions, Scope, WalkStats, plan_scan

        rid = lib.catalog.add_root(os.fsencode(library))
        plan = plan_scan(
            lib.catalog,
            [Scope(rid, os.fsencode(library), os.fsencode(library))],
            ScanOptions(),
            WalkStats(),
        )
        lib.catalog.enqueue([(f, rid, *plan.seen[f]) for f in plan.todo])
        dead, held = lib.catalog.claim("dead-host:1:x", [rid], 10, lease_seconds=2.0)
        assert len(dead) == 10 and held == 0
        t0 = time.monotonic()
        s = lib.index([library], workers=0)
        assert time.monotonic() - t0 >= 1.0  # it waited for the lease to run out
        assert (s.added, s.failed) == (n, 2)
        assert lib.catalog.queued() == 0
    got = snapshot(url)
    assert got["counts"]["photos"] == got["distinct"] == n
    assert got["counts"]["thumbnails"] == N_GOOD + 1
    assert sum(spec == "lab3v1" for _, spec in got["vecs"]) == N_GOOD + 1


def test_files_done_by_another_indexer_are_not_read_again(pg, library, tmp_path, monkeypatch):
    """An indexer whose walk predates another's writes: at claim time the catalog says the
    files are done, so it reads none of them."""
    url = pg.create_database()
    with mosaicdb.open(tmp_path / "a", db=url) as a, mosaicdb.open(tmp_path / "b", db=url) as b:
        from mosaicdb.index import walk as scan

        real_plan = scan.plan_scan
        plans = {}

        def plan_then_let_a_run(catalog, scopes, opts, stats, on_file=None, **kw):
            if "b" in plans:  # a's own walk
                return real_plan(catalog, scopes, opts, stats, on_file, **kw)
            plans["b"] = real_plan(catalog, scopes, opts, stats, on_file, **kw)
            a.index([library], workers=0)  # a indexes everything after b walked
            return plans["b"]

        monkeypatch.setattr(scan, "plan_scan", plan_then_let_a_run)
        s = b.index([library], workers=0)
        assert len(plans["b"].todo) == N_GOOD + 3
        assert (s.added, s.updated) == (0, 0)
    assert snapshot(url)["counts"]["photos"] == N_GOOD + 3


def test_bulk_writes_use_copy(pg, library, tmp_path, monkeypatch):
    """Results reach PostgreSQL through COPY (psycopg's cursor.copy), not row inserts."""
    import psycopg

    copies = []
    real = psycopg.Cursor.copy

    def spy(self, statement, *a, **k):
        copies.append(str(statement))
        return real(self, statement, *a, **k)

    monkeypatch.setattr(psycopg.Cursor, "copy", spy)
    with mosaicdb.open(tmp_path / "h", db=pg.create_database()) as lib:
        lib.index([library], workers=0, batch_size=1000)
    assert any(c.startswith("COPY _stage_results") for c in copies), copies
    assert any(c.startswith("COPY _stage_queue") for c in copies), copies


def test_db_option_and_bad_url_are_one_line(pg, cli, lib_dir, tmp_path):
    solid(lib_dir / "a.png", COLOURS["red"])
    url = pg.create_database()
    r = cli("--db", url, "index", lib_dir, "-j", "0", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["added"] == 1
    assert not (tmp_path / "store" / "catalog.sqlite").exists()  # the catalog is the server's
    r = cli("--db", url, "stats", "--json")
    assert json.loads(r.stdout)["store"]["catalog_bytes"] > 0
    r = cli("--db", "nosuchdb://x", "roots")
    assert r.exit_code == 1 and r.output.startswith("Error: cannot use the catalog URL")
    bad = f"postgresql+psycopg://mosaic@127.0.0.1:{pg.port}/no_such_database"
    r = cli("--db", bad, "roots")
    assert r.exit_code == 1 and r.output.startswith("Error: cannot open the catalog in")
    assert "no_such_database" in r.output and "\n" == r.output[-1] and r.output.count("\n") == 1


def test_copy_falls_back_to_upsert_when_another_writer_got_there_first(pg, tmp_path):
    """The fast path COPYs thumbnails straight into their table; if another writer committed
    one of the same photos in between, the batch still goes in (savepoint, then upsert)."""
    from mosaicdb.records import PhotoResult

    url = pg.create_database()
    with mosaicdb.open(tmp_path / "h", db=url) as lib:
        rid = lib.catalog.add_root(b"/p")
        a, b = b"/p/a.jpg", b"/p/b.jpg"

        def res(path, thumb):
            return PhotoResult(
                path, 10, 20, "ok", width=4, height=3, format="jpeg", thumb=thumb, thumb_w=4,
                thumb_h=3, thumb_codec="jpeg", vector=b"\0" * 108, mean=(1.0, 2.0, 3.0),
            )  # fmt: skip

        lib.catalog.write_results([res(a, b"old")], {a: rid}, {}, "lab3v1")
        ida = lib.catalog.photo_ids([a])[a]
        real_delete = postgres.delete

        def keep_thumbnail_of_a(table):  # as if another writer re-inserted it after our DELETE
            stmt = real_delete(table)
            return stmt.where(table.c.photo_id != ida) if table is schema.thumbnails else stmt

        postgres.delete = keep_thumbnail_of_a
        try:
            lib.catalog.write_results(
                [res(a, b"new"), res(b, b"bee")], {a: rid, b: rid}, {}, "lab3v1"
            )
        finally:
            postgres.delete = real_delete
        got = lib.catalog.thumbnails(lib.catalog.photo_ids([a, b]).values())
        assert sorted(v[1] for v in got.values()) == [b"bee", b"new"]


def test_forget_while_index_writes_waits_instead_of_deadlocking(pg, tmp_path, monkeypatch):
    """`forget` took the change counter, then the folder's row; an `index` batch of that folder
    takes them the other way round: PostgreSQL found a deadlock and failed one of the two.
    Now forget waits for the batch, and logs the deletion of every photo it removes."""
    import threading

    a = tmp_path / "a"
    solid(a / "blue.png", COLOURS["blue"])
    with mosaicdb.open(tmp_path / "h", db=pg.create_database()) as lib:
        lib.index([a], workers=0)
        for name in ("red", "green"):
            solid(a / f"{name}.png", COLOURS[name])
        real, forget, out = postgres.copy_or_upsert, [], {}

        def forget_a():
            out["forget"] = lib.catalog.remove_root(lib.root_id(a))

        def forget_while_the_batch_is_written(*args, **kw):
            if not forget:  # the batch's folder row is held (KEY SHARE)
                forget.append(threading.Thread(target=forget_a))
                forget[0].start()
                time.sleep(0.5)  # the old forget took the counter meanwhile
            return real(*args, **kw)

        monkeypatch.setattr(postgres, "copy_or_upsert", forget_while_the_batch_is_written)
        s = lib.index([a], workers=0)
        forget[0].join(10)
        assert (s.added, s.warnings, out) == (2, [], {"forget": 3})
        with lib.catalog.engine.connect() as c:
            logged = c.scalar(select(func.count()).select_from(schema.vector_deletions))
            assert (c.scalar(select(func.count()).select_from(schema.photos)), logged) == (0, 3)


def _race(first, paused_at, second):
    """Run `first` in a thread that stops 0.5 s at `paused_at` (holding what it has locked so
    far) while `second` runs here: both must finish, neither with "deadlock detected"."""
    import threading

    out, ready = {}, threading.Event()

    def run_first():
        try:
            out["first"] = first()
        except Exception as e:
            out["first"] = e

    def pause(real):
        def wrapper(*args, **kw):
            if threading.current_thread().name == "first" and not ready.is_set():
                ready.set()
                time.sleep(0.5)
            return real(*args, **kw)

        return wrapper

    obj, name, *when = paused_at  # when: the first argument it must be called with
    real = getattr(obj, name)
    paused = pause(real)
    setattr(obj, name, lambda *a, **k: (paused if not when or when[0] in a else real)(*a, **k))
    t = threading.Thread(target=run_first, name="first")
    t.start()
    assert ready.wait(20)
    out["second"] = second()
    t.join(20)
    assert not isinstance(out["first"], Exception), out
    return out["first"], out["second"]


@pytest.mark.parametrize("other", ["forget", "derive vectors"])
def test_photo_writers_and_forget_or_derive_take_locks_in_one_order(
    pg, tmp_path, monkeypatch, other
):
    """Rows dropped (index: files gone from disk; check --repair) take the photos' rows, then
    the change counter; forget took the counter before the photos, a render deriving vectors
    too: PostgreSQL ended one of them with "deadlock detected"."""
    a = tmp_path / "a"
    for name in ("red", "green", "blue"):
        solid(a / f"{name}.png", COLOURS[name])
    with mosaicdb.open(tmp_path / "h", db=pg.create_database()) as lib:
        lib.index([a], workers=0)
        red = lib.catalog.photo_ids([os.fsencode(a / "red.png")])[os.fsencode(a / "red.png")]
        green = lib.catalog.photo_ids([os.fsencode(a / "green.png")])[os.fsencode(a / "green.png")]
        monkeypatch.setattr(db.Catalog, "next_seq", db.Catalog.next_seq)  # restored after
        if other == "forget":
            second = lambda: lib.catalog.remove_root(lib.root_id(a))  # noqa: E731
            want = (1, 2)
        else:
            vec = (green, b"\0" * 16, (50.0, 0.0, 0.0))
            second = lambda: lib.catalog.write_features("g2a1x1", [vec])  # noqa: E731
            want = (1, None)
        assert (
            _race(lambda: lib.catalog.delete_photos([red]), (db.Catalog, "next_seq"), second)
            == want
        )


def test_a_folder_merged_into_its_parent_meanwhile_keeps_its_results(pg, tmp_path, monkeypatch):
    """`index /p/a` while another indexer registers /p (merging /p/a into it): the batch
    held /p/a's row, the merge took /p/a's photos first (a deadlock); then the batch's
    results were dropped as if /p/a had been forgotten. They go under /p now."""
    p = tmp_path / "p"
    solid(p / "a" / "red.png", COLOURS["red"])
    with mosaicdb.open(tmp_path / "h", db=pg.create_database()) as lib:
        lib.index([p / "a"], workers=0)
        solid(p / "a" / "red.png", COLOURS["blue"])  # changed: its row is written again
        solid(p / "a" / "green.png", COLOURS["green"])
        monkeypatch.setattr(postgres, "copy_rows", postgres.copy_rows)  # restored after

        def index():
            s = lib.index([p / "a"], workers=0)
            return (s.added, s.updated, s.warnings)

        got, parent = _race(
            index,
            (postgres, "copy_rows", "_stage_results"),
            lambda: lib.catalog.add_root(os.fsencode(p)),
        )
        assert got == (1, 1, [])
        assert lib.roots() == [str(p)]
        with lib.catalog.engine.connect() as c:
            q = select(schema.photos.c.root_id, func.count()).group_by(schema.photos.c.root_id)
            assert c.execute(q).all() == [(parent, 2)]


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_a_folder_forgotten_while_it_is_walked(lib, tmp_path, monkeypatch, backend):
    """forget between index's walk and its reading: on PostgreSQL the work queue's insert
    failed its foreign key and the whole index stopped; now that folder is left out with a
    warning, as on SQLite, and the other folder is indexed."""
    from mosaicdb.index import walk as scan

    a, b = tmp_path / "a", tmp_path / "b"
    solid(a / "red.png", COLOURS["red"])
    solid(b / "red.png", COLOURS["red"])
    real = scan.plan_scan

    def walk_then_forget_a(catalog, *args, **kw):
        plan = real(catalog, *args, **kw)
        catalog.remove_root(lib.root_id(a))  # another process: `mosaicdb forget a`
        return plan

    monkeypatch.setattr(scan, "plan_scan", walk_then_forget_a)
    s = lib.index([a, b], workers=0)
    assert s.added == 1 and len(s.warnings) == 1 and s.warnings[0].startswith(f"{a}: 1 files")
    assert lib.roots() == [str(b)]


def test_files_queued_for_a_folder_merged_into_its_parent_stay_queued(pg, tmp_path):
    """Registering a parent folder merges the folders inside it; the files queued for them
    went with their rows (ON DELETE CASCADE) and were never read."""
    with mosaicdb.open(tmp_path / "h", db=pg.create_database()) as lib:
        inner = lib.catalog.add_root(b"/p/a")
        lib.catalog.enqueue([(b"/p/a/x.jpg", inner, 1, 1, None)])
        parent = lib.catalog.add_root(b"/p")
        with lib.catalog.engine.connect() as c:
            q = select(schema.scan_queue.c.path, schema.scan_queue.c.root_id)
            assert c.execute(q).all() == [(b"/p/a/x.jpg", parent)]
