"""The catalog: every SQL statement mosaicdb runs lives in this package (store/); nothing
outside it writes SQL. `Catalog` is the one object the stages use; it is split by concern into
mixins: reads.py (photos, folders, errors), renders.py (saved renders and plans),
vector_rows.py (vectors, change counter), checks.py (checks and repairs); this module holds the
meta table, the folders, and the index's writes. What differs between SQLite and PostgreSQL is
chosen here, by dialect: the upsert construct (sql.dialect_insert), bulk writes (PostgreSQL:
COPY into a staging table, postgres.py; SQLite: executemany) and the work queue that lets
several PostgreSQL indexers share one scan (`scan_queue`, claimed with FOR UPDATE SKIP LOCKED).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from sqlalchemy import (
    BigInteger,
    Float,
    Text,
    bindparam,
    cast,
    delete,
    func,
    insert,
    literal,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from mosaicdb.records import PhotoResult, PhotoState
from mosaicdb.store.checks import CatalogChecks, RowCheck  # noqa: F401
from mosaicdb.store.identities import PhotoIdentity
from mosaicdb.store.postgres import copy_rows, stage_queue, write_results_pg
from mosaicdb.store.reads import CatalogReads
from mosaicdb.store.renders import RenderRecords
from mosaicdb.store.schema import (
    features,
    meta,
    photos,
    roots,
    scan_queue,
    thumbnails,
    vector_deletions,
)
from mosaicdb.store.sql import (
    chunks,
    dialect_insert,
    hold_folders,
    lock_rows,
    log_deletions,
    prefix_range,
    unchanged_since,
    vectors_of_result,
)
from mosaicdb.store.vector_rows import VectorRows


class Catalog(RenderRecords, CatalogReads, VectorRows, CatalogChecks, PhotoIdentity):
    """All reads and writes of the catalog."""

    def __init__(self, engine: Engine):
        self.engine = engine
        # driver connections running a long scan (`interrupt`); a list, as threads sharing
        # one connection (a catalog in memory) each add it
        self._scanning: list = []
        self._scanning_lock = threading.Lock()
        self._checks = 0  # `checking` blocks running
        self._interrupted = threading.Event()

    def dispose(self):
        self.engine.dispose()

    # -- meta -------------------------------------------------------------------------
    def get_meta(self, key: str, default: str | None = None) -> str | None:
        with self.engine.connect() as c:
            v = c.execute(select(meta.c.value).where(meta.c.key == key)).scalar()
        return default if v is None else v

    def set_meta(self, values: dict[str, str], conn: Connection | None = None):
        if conn is None:
            with self.engine.begin() as c:
                return self.set_meta(values, c)
        ins = dialect_insert(conn)(meta)
        stmt = ins.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": ins.excluded.value}
        )
        for k in sorted(values):  # one order everywhere: concurrent writers cannot deadlock
            conn.execute(stmt.values(key=k, value=str(values[k])))

    def next_seq(self, conn: Connection) -> int:
        """Bump the catalog change counter in one statement (safe with concurrent writers:
        PostgreSQL holds the row until this transaction ends, so call it late)."""
        ins = dialect_insert(conn)(meta).values(key="seq", value="1")
        stmt = ins.on_conflict_do_update(
            index_elements=[meta.c.key],
            set_={"value": cast(cast(meta.c.value, BigInteger) + 1, Text)},
        ).returning(meta.c.value)
        return int(conn.execute(stmt).scalar_one())

    def current_seq(self) -> int:
        """The catalog change counter as it stands (0 before any write)."""
        return int(self.get_meta("seq", "0"))

    @property
    def shared(self) -> bool:
        """A catalog several indexers may write at once (PostgreSQL), not SQLite."""
        return self.engine.dialect.name != "sqlite"

    def catalog_bytes(self) -> int | None:
        """The database's size on the server (None for SQLite: the caller sizes the files)."""
        if self.engine.dialect.name != "postgresql":
            return None
        with self.engine.connect() as c:
            return int(c.execute(select(func.pg_database_size(func.current_database()))).scalar())

    # -- roots ------------------------------------------------------------------------
    def roots(self) -> list[tuple[int, bytes]]:
        with self.engine.connect() as c:
            return [
                tuple(r) for r in c.execute(select(roots.c.id, roots.c.path).order_by(roots.c.id))
            ]

    def root_options(self) -> dict[int, tuple[bool, list[str]]]:
        """root id → (include hidden files, exclude globs), as `index` was last told."""
        import json

        q = select(roots.c.id, roots.c.include_hidden, roots.c.exclude)
        with self.engine.connect() as c:
            return {i: (bool(h), json.loads(x) if x else []) for i, h, x in c.execute(q)}

    def set_root_options(
        self, root_id: int, include_hidden: bool | None = None, exclude: list[str] | None = None
    ) -> None:
        import json

        values = {}
        if include_hidden is not None:
            values["include_hidden"] = include_hidden
        if exclude is not None:
            values["exclude"] = json.dumps(exclude) if exclude else None
        if values:
            with self.engine.begin() as c:
                c.execute(update(roots).where(roots.c.id == root_id).values(**values))

    def add_root(self, path: bytes) -> int:
        """Register a folder. Roots registered earlier inside it are merged into it."""
        with self.engine.begin() as c:
            rid = c.execute(select(roots.c.id).where(roots.c.path == path)).scalar()
            if rid is not None:
                return rid
            rid = c.execute(  # another indexer may register the same folder at the same time
                dialect_insert(c)(roots)
                .values(path=path, added_at=time.time())
                .on_conflict_do_nothing(index_elements=[roots.c.path])
                .returning(roots.c.id)
            ).scalar()
            if rid is None:
                return c.execute(select(roots.c.id).where(roots.c.path == path)).scalar_one()
            # the inner folders' rows before their photos' (LOCK_ORDER)
            inner = select(roots.c.id).where(prefix_range(roots.c.path, path))
            inner = list(c.scalars(inner.where(roots.c.id != rid).with_for_update()))
            if inner:
                c.execute(update(photos).where(photos.c.root_id.in_(inner)).values(root_id=rid))
                # files queued for them (PostgreSQL) stay queued, for the new parent
                c.execute(
                    update(scan_queue).where(scan_queue.c.root_id.in_(inner)).values(root_id=rid)
                )
                c.execute(delete(roots).where(roots.c.id.in_(inner)))
            return rid

    def remove_root(self, root_id: int) -> int:
        with self.engine.begin() as c:
            # The folder's row, its photos' rows, then the change counter: LOCK_ORDER (on
            # SQLite the counter's write makes this the one writer). Once they are held no
            # photo of the folder can be written meanwhile, so each one's deletion is logged.
            lock_rows(c, select(roots.c.id).where(roots.c.id == root_id))
            mine = select(photos.c.id).where(photos.c.root_id == root_id)
            lock_rows(c, mine)
            seq = self.next_seq(c)
            n = c.execute(select(func.count()).select_from(mine.subquery())).scalar_one()
            if n:
                c.execute(
                    insert(vector_deletions).from_select(
                        ["seq", "photo_id"],
                        select(literal(seq, BigInteger), photos.c.id).where(
                            photos.c.root_id == root_id
                        ),
                    )
                )
            c.execute(delete(roots).where(roots.c.id == root_id))
            return n

    # -- photos -----------------------------------------------------------------------
    def photo_states(self, root_id: int, under: bytes | None = None) -> dict[bytes, PhotoState]:
        p = photos.c
        q = select(p.path, p.id, p.size, p.mtime_ns, p.status, p.indexed_at)
        q = q.where(p.root_id == root_id)
        if under is not None:
            q = q.where(prefix_range(p.path, under))
        with self.engine.connect() as c:
            return {r[0]: PhotoState(r[1], r[2], r[3], r[4], r[5]) for r in c.execute(q)}

    def photo_states_of(self, paths: Sequence[bytes]) -> dict[bytes, PhotoState]:
        """The rows of these paths, where they exist (a shard checks what is already done)."""
        p = photos.c
        out: dict[bytes, PhotoState] = {}
        with self.engine.connect() as c:
            for chunk in chunks(list(paths), 500):
                q = select(p.path, p.id, p.size, p.mtime_ns, p.status, p.indexed_at).where(
                    p.path.in_(chunk)
                )
                out.update({r[0]: PhotoState(r[1], r[2], r[3], r[4], r[5]) for r in c.execute(q)})
        return out

    def delete_photos(self, ids: Sequence[int], since: int | None = None) -> int:
        """Drop these photos' rows. With `since` (the change counter read before they were
        judged gone), a photo written again after it, by an `index` running meanwhile, is
        kept."""
        gone: list[int] = []
        with self.engine.begin() as c:
            for chunk in chunks(sorted(set(ids)), 500):
                q = delete(photos).where(unchanged_since(chunk, since))
                gone += [r[0] for r in c.execute(q.returning(photos.c.id))]
            if gone:
                log_deletions(c, gone, self.next_seq(c))
        return len(gone)

    def write_results(
        self,
        results: Sequence[PhotoResult],
        root_of: dict[bytes, int],
        existing: dict[bytes, int],
        spec: str,
    ) -> set[int]:
        """Write one batch of worker results in one transaction.

        `existing` maps the path of a file that already has a row to its photo id (a changed
        file keeps its id); other paths get new rows. A crash loses at most this batch.

        A folder gone meanwhile is dealt with here (see hold_folders): the results of a
        folder merged into a new parent are written under it (`root_of` is updated), those of
        a folder removed (`forget` while `index` reads it) are dropped, and the ids of such
        folders returned. The folders written to are held until this transaction commits."""
        if not results:
            return set()
        now = time.time()
        if self.engine.dialect.name == "postgresql":
            # one row per path (the last): a file claimed again after its lease ran out
            results = list({r.path: r for r in results}.values())
            with self.engine.begin() as c:
                gone = hold_folders(c, [r.path for r in results], root_of)
                kept = [r for r in results if root_of[r.path] not in gone]
                if kept:
                    write_results_pg(self, c, kept, root_of, spec, now)
            return gone
        with self.engine.begin() as c:
            seq = self.next_seq(c)  # the first write: from here on this is SQLite's one writer
            gone = hold_folders(c, [r.path for r in results], root_of)
            if gone:
                results = [r for r in results if root_of[r.path] not in gone]
            old_ids = [existing[r.path] for r in results if r.path in existing]
            for chunk in chunks(old_ids, 500):
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
                c.execute(delete(features).where(features.c.photo_id.in_(chunk)))
            log_deletions(c, old_ids, seq)

            def row(r: PhotoResult) -> dict:
                return {
                    "size": r.size,
                    "mtime_ns": r.mtime_ns,
                    "status": r.status,
                    "error": r.error,
                    "width": r.width,
                    "height": r.height,
                    "format": r.format,
                    "fingerprint": r.fingerprint,
                    "phash": r.phash,
                    # not yet grouped: index/dupes.regroup places it
                    "dup_of": 0 if r.phash is not None else None,
                    "indexed_at": now,
                }

            ids: dict[bytes, int] = {}
            upd = [r for r in results if r.path in existing]
            if upd:
                c.execute(
                    update(photos).where(photos.c.id == bindparam("pid")),
                    [{"pid": existing[r.path], **row(r)} for r in upd],
                )
                ids.update({r.path: existing[r.path] for r in upd})
            new = [r for r in results if r.path not in existing]
            if new:
                # plain executemany then one SELECT: with RETURNING, SQLite's driver sent one
                # statement per row
                c.execute(
                    insert(photos),
                    [{"path": r.path, "root_id": root_of[r.path], **row(r)} for r in new],
                )
                for chunk in chunks([r.path for r in new], 500):
                    q = select(photos.c.path, photos.c.id).where(photos.c.path.in_(chunk))
                    ids.update({p: i for p, i in c.execute(q)})

            ok = [r for r in results if r.status == "ok"]
            if ok:
                c.execute(
                    insert(thumbnails),
                    [
                        {
                            "photo_id": ids[r.path],
                            "width": r.thumb_w,
                            "height": r.thumb_h,
                            "codec": r.thumb_codec,
                            "data": r.thumb,
                        }
                        for r in ok
                    ],
                )
                c.execute(
                    insert(features),
                    [
                        {
                            "photo_id": ids[r.path],
                            "spec": key,
                            "vector": vector,
                            "mean_l": r.mean[0],
                            "mean_a": r.mean[1],
                            "mean_b": r.mean[2],
                            "seq": seq,
                        }
                        for r in ok
                        for key, vector in vectors_of_result(r, spec)
                    ],
                )
        return gone

    # -- the shared work queue (PostgreSQL) ----------------------------------------------
    def enqueue(self, rows: Sequence[tuple[bytes, int, int, int, float | None]]) -> set[int]:
        """Add files to index: (path, root_id, size, mtime_ns, photos.indexed_at seen or None).
        A path already queued (by another indexer) stays as it is. The files of a folder
        removed meanwhile (forget) are left out, and its id returned (see hold_folders)."""
        if not rows:
            return set()
        with self.engine.begin() as c:
            root_of = {r[0]: r[1] for r in rows}
            gone = hold_folders(c, list(root_of), root_of)
            rows = [(f, root_of[f], *rest) for f, _, *rest in rows if root_of[f] not in gone]
            if not rows:
                return gone
            copy_rows(
                c,
                "_stage_queue",
                "path bytea, root_id int4, size int8, mtime_ns int8, seen_indexed_at float8",
                ["bytea", "int4", "int8", "int8", "float8"],
                rows,
            )
            q = scan_queue.c
            st = stage_queue
            c.execute(
                dialect_insert(c)(scan_queue)
                .from_select(
                    [q.path, q.root_id, q.size, q.mtime_ns, q.seen_indexed_at, q.lease_until],
                    select(
                        st.c.path,
                        st.c.root_id,
                        st.c.size,
                        st.c.mtime_ns,
                        st.c.seen_indexed_at,
                        literal(0.0, Float),
                    ).distinct(),
                )
                .on_conflict_do_nothing(index_elements=[q.path])
            )
        return gone

    def claim(
        self, owner: str, root_ids: Sequence[int], n: int, lease_seconds: float
    ) -> tuple[list[tuple[bytes, int]], int]:
        """Take up to `n` queued files of `root_ids` that nobody holds (or whose lease ran
        out) for `lease_seconds`. Returns ([(path, root_id)], files others hold now). Files
        another indexer has written since they were queued are dropped, not returned."""
        q, p = scan_queue.c, photos.c
        with self.engine.begin() as c:
            now = float(c.execute(select(func.extract("epoch", func.clock_timestamp()))).scalar())
            free = (
                select(q.path)
                .where(q.root_id.in_(list(root_ids)), q.lease_until < now)
                .order_by(q.path)
                .limit(n)
                .with_for_update(skip_locked=True)
            )
            got = c.execute(
                update(scan_queue)
                # the lease test again on the row itself: if another indexer claimed it since
                # the subquery read it, PostgreSQL re-checks this on the new row and skips it
                .where(q.path.in_(free.scalar_subquery()), q.lease_until < now)
                .values(owner=owner, lease_until=now + lease_seconds)
                .returning(q.path, q.root_id)
            ).all()
            done: set[bytes] = set()
            if got:
                done_q = (
                    select(q.path)
                    .join(photos, p.path == q.path)
                    .where(
                        q.path.in_([r[0] for r in got]),
                        p.size == q.size,
                        p.mtime_ns == q.mtime_ns,
                        p.indexed_at > func.coalesce(q.seen_indexed_at, -1.0),
                    )
                )
                done = {r[0] for r in c.execute(done_q)}
                if done:
                    c.execute(delete(scan_queue).where(q.path.in_(list(done))))
            held = 0
            if not got:
                held = c.execute(
                    select(func.count())
                    .select_from(scan_queue)
                    .where(
                        q.root_id.in_(list(root_ids)),
                        (q.owner != owner) | q.owner.is_(None),
                    )
                ).scalar_one()
        return [(r[0], r[1]) for r in got if r[0] not in done], int(held)

    def release(self, owner: str) -> None:
        """Give back what `owner` claimed and did not write (Ctrl-C): others may take it."""
        with self.engine.begin() as c:
            c.execute(
                update(scan_queue)
                .where(scan_queue.c.owner == owner)
                .values(owner=None, lease_until=0.0)
            )

    def queued(self) -> int:
        with self.engine.connect() as c:
            return int(c.execute(select(func.count()).select_from(scan_queue)).scalar_one())
