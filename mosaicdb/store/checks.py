"""Consistency checks of the catalog's rows (orphans, missing or bad thumbnails, vector counts),
interruptible long scans, SQLite's integrity check, and the repairs `check --repair` makes."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field

from sqlalchemy import (
    delete,
    func,
    select,
    update,
)
from sqlalchemy.engine import Connection

from mosaicdb.store.schema import (
    features,
    photos,
    thumbnails,
)
from mosaicdb.store.sql import (
    as_ints,
    chunks,
    log_deletions,
    photo_gone,
    root_gone,
    sql_sum,
    unchanged_since,
)


@dataclass
class RowCheck:
    """What `Catalog.check_rows` found."""

    # table → rows whose photo (thumbnails, features) or root (photos) is gone
    orphans: dict[str, int] = field(
        default_factory=lambda: {"thumbnails": 0, "features": 0, "photos": 0}
    )
    bad_thumbnails: list[int] = field(default_factory=list)  # photo ids, JPEG markers wrong
    missing_thumbnails: list[int] = field(default_factory=list)  # ok photos without one
    vectors: dict[str, tuple[int, int]] = field(default_factory=dict)  # spec → (count, id sum)
    ok_photos: tuple[int, int] = (0, 0)  # (count, id sum) of the photos with status ok


class CatalogChecks:
    """Checks and repairs (mixed into Catalog)."""

    def check_rows(self, exact: bool = False) -> RowCheck:
        """For `check`: orphan rows per table (their photo or root is gone, only possible if
        foreign keys were ever off), ok photos without a thumbnail, JPEG thumbnails that do
        not start with SOI and end with EOI (a cheap test for truncated or overwritten blobs,
        done in the database), and the count and id sum of the vectors of each feature spec.

        Thumbnails (and the vectors of a complete spec) belong exactly to the ok photos, so
        each table's count and id sum, taken in the one scan it needs anyway, is compared with
        the ok photos' first; only a table that differs, or every table when `exact`, is
        searched row by row (a lookup per row costs ~0.5 s a table at 1M photos). Two faults
        whose ids sum alike could hide each other from the comparison: `exact` cannot be
        fooled so."""
        t, p, f = thumbnails.c, photos.c, features.c
        # Every row pays for this test, so it is the cheapest form measured on SQLite (~0.3 s
        # less CPU at 1M than three substr/length calls): "starts with SOI" as a byte range,
        # which also catches an empty blob (whose substr is NULL on SQLite), and the codec
        # read last, only for the rare row that fails.
        bad = (
            (func.substr(t.data, func.length(t.data) - 1) != b"\xff\xd9")
            | (t.data < b"\xff\xd8")
            | (t.data >= b"\xff\xd9")
        ) & (t.codec == "jpeg")
        is_ok = p.status == "ok"
        out = RowCheck()
        # The three table scans are independent, so each runs on a connection of its own, at
        # once: one after the other they were the longest chain of `check` at 1M photos. The
        # photos are read once for both their ok count and their orphans.
        scans = (
            select(func.count(), sql_sum(t.photo_id), func.count().filter(bad)),
            select(
                func.count().filter(is_ok),
                sql_sum(p.id, where=is_ok),
                func.count().filter(root_gone()),
            ),
            select(f.spec, func.count(), sql_sum(f.photo_id)).group_by(f.spec),
        )
        with self.checking(), ThreadPoolExecutor(len(scans)) as pool:  # the pool ends first
            jobs = [pool.submit(self._scan, q) for q in scans]
            wait(jobs, return_when=FIRST_EXCEPTION)
            failed = [j.exception() for j in jobs if j.done() and j.exception()]
            if failed:  # e.g. a damaged catalog: the other scans need not run to their end
                # again until they have ended: PostgreSQL ignores a cancel that reaches a
                # connection before its statement has begun
                while not all(j.done() for j in jobs):
                    self._stop_scans()
                    wait(jobs, timeout=0.1)
                raise failed[0]
            (*thumbs, n_bad), (*ok_photos, n_gone) = (j.result()[0] for j in jobs[:2])
            specs = jobs[2].result()
        out.ok_photos = ok = as_ints(ok_photos)
        out.orphans["photos"] = int(n_gone)
        out.vectors = {s: as_ints(fp) for s, *fp in specs}
        with self.engine.connect() as c, self._interruptible(c):
            if n_bad:
                q = select(t.photo_id).where(bad & ~photo_gone(thumbnails)).order_by(t.photo_id)
                out.bad_thumbnails = [r[0] for r in c.execute(q)]
            if exact or as_ints(thumbs) != ok:
                q = select(func.count()).select_from(thumbnails).where(photo_gone(thumbnails))
                out.orphans["thumbnails"] = int(c.execute(q).scalar_one())
                has_thumb = select(t.photo_id).where(t.photo_id == p.id).exists()
                q = select(p.id).where(is_ok & ~has_thumb).order_by(p.id)
                out.missing_thumbnails = [r[0] for r in c.execute(q)]
            odd = [s for s, fp in out.vectors.items() if exact or fp != ok]
            if odd:  # e.g. an aspect's spec, derived at render time, not yet for new photos
                q = select(func.count()).where(f.spec.in_(odd) & photo_gone(features))
                out.orphans["features"] = int(c.execute(q).scalar_one())
        return out

    def _scan(self, query) -> list:
        """All rows of one long read, on a connection of its own that `interrupt` can stop."""
        with self.engine.connect() as c, self._interruptible(c):
            return c.execute(query).all()

    def iter_thumbnail_data(self, chunk: int = 1000):
        t = thumbnails.c
        q = select(t.photo_id, t.codec, t.data).order_by(t.photo_id)
        with self.engine.connect() as c:
            res = c.execution_options(stream_results=True, yield_per=chunk).execute(q)
            for part in res.partitions(chunk):
                yield [tuple(r) for r in part]

    def drop_orphans(self) -> None:
        """Photos whose root is gone, then thumbnails and vectors whose photo is gone."""
        with self.engine.begin() as c:
            gone = c.execute(delete(photos).where(root_gone()).returning(photos.c.id)).all()
            c.execute(delete(thumbnails).where(photo_gone(thumbnails)))
            gone += c.execute(
                delete(features).where(photo_gone(features)).returning(features.c.photo_id)
            ).all()
            if gone:
                log_deletions(c, sorted({r[0] for r in gone}), self.next_seq(c))

    def mark_unreadable(self, ids: Sequence[int], reason: str, since: int | None = None) -> int:
        """Photos whose stored thumbnail is broken or missing become errors (so
        `index --retry-errors` reads them again); their thumbnail and vectors go. With
        `since` (as for delete_photos), a photo written again after it keeps what `index`
        wrote. Returns how many were marked."""
        marked: list[int] = []
        with self.engine.begin() as c:
            for chunk in chunks(sorted(set(ids)), 500):
                # the row is written first: it holds the write lock (SQLite) or the rows
                # (PostgreSQL) until the thumbnails and vectors are gone too
                q = update(photos).where(unchanged_since(chunk, since))
                q = q.values(status="error", error=reason)
                mine = [r[0] for r in c.execute(q.returning(photos.c.id))]
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(mine)))
                c.execute(delete(features).where(features.c.photo_id.in_(mine)))
                marked += mine
            if marked:
                log_deletions(c, marked, self.next_seq(c))
        return len(marked)

    @contextmanager
    def _interruptible(self, c: Connection):
        """While this block runs, `interrupt` can stop the statement running on `c`; a scan
        that gets here after `interrupt` (its thread started late) does not begin."""
        raw = c.connection.dbapi_connection
        sqlite = self.engine.dialect.name == "sqlite"
        with self._scanning_lock:
            if self._interrupted.is_set():
                raise KeyboardInterrupt  # Ctrl-C, reaching a worker thread
            self._scanning.append(raw)
        if sqlite:
            # sqlite3's interrupt reaches only a statement already running; one begun just
            # after it is ended by this (asked every 100,000 steps: ~300 times a 1M scan)
            raw.set_progress_handler(self._interrupted.is_set, 100_000)
        try:
            yield
        finally:
            if sqlite:
                raw.set_progress_handler(None, 0)
            with self._scanning_lock:
                self._scanning.remove(raw)

    def interrupt(self) -> None:
        """Stop the long scans of `check` (theirs and SQLite's page check) from another
        thread, as Ctrl-C does: they end with the driver's error instead of running on, and
        those of a `checking` block not begun yet do not begin."""
        from mosaicdb.store import pagecheck

        pagecheck.interrupt()
        self._stop_scans()

    def _stop_scans(self) -> None:
        """Stop the scans running, and, within `checking`, those not begun yet."""
        with self._scanning_lock:
            if self._checks:
                self._interrupted.set()
        self._interrupt_scans()

    @contextmanager
    def checking(self):
        """The scans of one `check`: an `interrupt` meanwhile stops also those whose thread
        has not reached its connection yet. Leave it once they have all ended."""
        with self._scanning_lock:
            self._checks += 1
        try:
            yield
        finally:
            with self._scanning_lock:
                self._checks -= 1
                if not self._checks:
                    self._interrupted.clear()

    def _interrupt_scans(self) -> None:
        with self._scanning_lock:  # held, so no connection goes back to the pool meanwhile
            for raw in self._scanning:
                if self.engine.dialect.name == "sqlite":
                    raw.interrupt()
                else:
                    raw.cancel()  # psycopg: asks the server to cancel the running query

    def integrity_check(self, deep: bool = False) -> list[str]:
        """SQLite's own check (other databases check themselves): [] when fine. quick_check
        unless `deep` (4-5x slower: also checks every index against its table)."""
        if self.engine.dialect.name != "sqlite":
            return []
        from mosaicdb.store import (
            pagecheck,  # the CLI may have started it before this module loaded
        )

        url = self.engine.url
        if url.query or url.database in (None, "", ":memory:") or url.database.startswith("file:"):
            # a URI or a database in memory: no file name to open again, so on our connection
            with self.engine.connect() as c:
                return pagecheck.check(c.connection.dbapi_connection, deep)
        return pagecheck.result(url.database, deep)
