"""The catalog: SQLAlchemy tables, the engine (SQLite pragmas on every connection) and every
SQL statement mosaicdb runs. Nothing outside this module writes SQL. The same tables serve
SQLite (the default, one writer) and PostgreSQL (psycopg 3; several indexers at once). What
differs between the two is chosen here, by dialect: SQLite's PRAGMAs, the upsert construct
(`_insert`), and bulk writes (PostgreSQL: COPY into a temporary staging table, then one
INSERT … SELECT … ON CONFLICT; SQLite: executemany) and the work queue that lets several
PostgreSQL indexers share one scan (`scan_queue`, claimed with FOR UPDATE SKIP LOCKED).

Paths are stored as bytes (os.fsencode) so that names which are not valid UTF-8 survive.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    bindparam,
    cast,
    create_engine,
    delete,
    event,
    func,
    insert,
    literal,
    select,
    text,
    update,
)
from sqlalchemy.engine import Connection, Engine

from mosaicdb.records import PathPrefilter, PhotoResult, PhotoState

# The Alembic revision this code's tables correspond to; a test checks it is the head.
SCHEMA_REVISION = "0006"

metadata = MetaData()

roots = Table(
    "roots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", LargeBinary, nullable=False, unique=True),
    Column("added_at", Float, nullable=False),
)

photos = Table(
    "photos",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("root_id", Integer, ForeignKey("roots.id", ondelete="CASCADE"), nullable=False),
    Column("path", LargeBinary, nullable=False, unique=True),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    Column("status", String(8), nullable=False),
    Column("error", Text),
    Column("width", Integer),
    Column("height", Integer),
    Column("format", String(16)),
    Column("indexed_at", Float, nullable=False),
    Index("ix_photos_root_id", "root_id"),
    Index("ix_photos_status_format", "status", "format"),
    # ids are never reused: saved render plans refer to photos by id
    sqlite_autoincrement=True,
)

thumbnails = Table(
    "thumbnails",
    metadata,
    Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("codec", String(8), nullable=False),
    Column("data", LargeBinary, nullable=False),
)

features = Table(
    "features",
    metadata,
    Column("photo_id", Integer, ForeignKey("photos.id", ondelete="CASCADE"), primary_key=True),
    Column("spec", String(16), primary_key=True),
    Column("vector", LargeBinary, nullable=False),
    Column("mean_l", Float, nullable=False),
    Column("mean_a", Float, nullable=False),
    Column("mean_b", Float, nullable=False),
    # Catalog change counter at write time: lets the vector file catch up incrementally.
    Column("seq", BigInteger, nullable=False),
    Index("ix_features_spec_seq_photo", "spec", "seq", "photo_id"),
)

renders = Table(
    "renders",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("created_at", Float, nullable=False),
    Column("target", Text, nullable=False),
    Column("options", Text, nullable=False),  # JSON: everything needed to redo the render
    Column("spec", String(16), nullable=False),
    Column("cols", Integer, nullable=False),
    Column("rows", Integer, nullable=False),
    Column("tile_w", Integer, nullable=False),
    Column("tile_h", Integer, nullable=False),
    Column("output", Text),
    Column("width", Integer),
    Column("height", Integer),
    Column("distinct_tiles", Integer),
    Column("mean_delta_e", Float),
    Column("seconds", Float),
    # The plan: photo id per cell, row-major, int64 little-endian. One BLOB rather than a row
    # per cell: 100,000 cells save in milliseconds. No foreign key on purpose: a plan outlives
    # the photos it names, and `render --plan` reports the cells whose photo is gone.
    Column("plan", LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)

meta = Table(
    "meta",
    metadata,
    Column("key", String(64), primary_key=True),
    Column("value", Text, nullable=False),
)

# Photos whose vectors were deleted (file gone, root forgotten, file changed, thumbnail found
# broken), under the change counter of the deleting transaction: a machine's vector file drops
# exactly these since its own counter instead of reading every id (seconds at 10M photos).
# Rows are 12 bytes and kept: each machine's cache may be at a different counter.
vector_deletions = Table(
    "vector_deletions",
    metadata,
    Column("seq", BigInteger, primary_key=True),
    Column("photo_id", Integer, primary_key=True),
)

# Files waiting to be indexed, shared by the indexers of one PostgreSQL catalog: each indexer
# adds what its walk found new or changed, then claims rows (owner + lease) in small groups
# with FOR UPDATE SKIP LOCKED; a written result deletes its row in the same transaction. A lease
# that runs out (its indexer died) lets another indexer take the rows over. Unused on SQLite.
scan_queue = Table(
    "scan_queue",
    metadata,
    Column("path", LargeBinary, primary_key=True),
    Column("root_id", Integer, ForeignKey("roots.id", ondelete="CASCADE"), nullable=False),
    Column("size", BigInteger, nullable=False),
    Column("mtime_ns", BigInteger, nullable=False),
    # photos.indexed_at when the walk saw the file (NULL: new): a row written after it for the
    # same size and mtime means another indexer has done the file
    Column("seen_indexed_at", Float),
    Column("owner", String(64)),
    Column("lease_until", Float, nullable=False),
    Index("ix_scan_queue_root_lease", "root_id", "lease_until"),
)


def make_engine(url: str) -> Engine:
    if _in_memory(url):
        # One connection for every thread: each new connection to a database in memory is
        # another, empty database, and `check` reads from several threads at once. So one
        # transaction too: such a catalog is for one thread at a time (tests, notebooks),
        # which is how mosaicdb writes; its own reads in threads write nothing.
        from sqlalchemy.pool import StaticPool

        engine = create_engine(url, poolclass=StaticPool, connect_args={"check_same_thread": False})
    else:
        engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


def _in_memory(url: str) -> bool:
    """A SQLite database held in memory (sqlite://, :memory:, file::memory:, or a URI with
    mode=memory)."""
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite":
        return False
    name = u.database or ""
    return (
        name in ("", ":memory:")
        or name.startswith("file::memory:")
        or u.query.get("mode") == "memory"
    )


def _insert(conn: Connection):
    """The dialect's INSERT construct (it has on_conflict_do_update/do_nothing): chosen here
    once, for every upsert in this module."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"mosaicdb supports SQLite and PostgreSQL, not {conn.dialect.name}")


# LOCK_ORDER. On PostgreSQL several writers run at once (indexers, forget, check --repair, a
# render deriving vectors); each takes the rows it needs in this order, so none waits on
# another in a cycle (PostgreSQL would end one of them with "deadlock detected"):
#   1. folders (roots): FOR KEY SHARE by an index batch or the work queue, FOR UPDATE by
#      forget and by a folder merged into a new parent;
#   2. photos, then their thumbnails and vectors;
#   3. the change counter (meta 'seq', next_seq), last.
# SQLite has one writer at a time and takes none of these.

# Schema upgrades on PostgreSQL are serialised with this advisory lock (SQLite: a file lock).
_SCHEMA_LOCK_KEY = 0x6D6F736169630001


def advisory_lock(conn: Connection) -> None:
    conn.execute(select(func.pg_advisory_lock(_SCHEMA_LOCK_KEY)))


def advisory_unlock(conn: Connection) -> None:
    conn.execute(select(func.pg_advisory_unlock(_SCHEMA_LOCK_KEY)))


def _sqlite_pragmas(dbapi_conn, _record):
    cur = dbapi_conn.cursor()
    # page_size only takes effect on a new database; 16 KiB pages suit thumbnail BLOBs.
    cur.execute("PRAGMA page_size=16384")
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=30000")
    cur.close()


def sqlite_url(path: Path) -> str:
    return f"sqlite:///{path}"


def _prefix_range(col, prefix: bytes):
    """Rows whose byte path lies under directory `prefix` (a range, so an index can serve it)."""
    p = prefix.rstrip(b"/")
    return (col > p + b"/") & (col < p + b"0")  # b"0" is the byte after b"/"


class RenderCatalog:
    """Reads and writes of saved renders and plans (mixed into Catalog)."""

    engine: Engine

    def save_render(self, fields: dict, plan: bytes) -> int:
        """Save a render's options and its plan (int64 photo ids, row-major)."""
        with self.engine.begin() as c:
            return c.execute(
                insert(renders)
                .values(created_at=time.time(), plan=plan, **fields)
                .returning(renders.c.id)
            ).scalar_one()

    def update_render(self, render_id: int, **fields) -> None:
        with self.engine.begin() as c:
            c.execute(update(renders).where(renders.c.id == render_id).values(**fields))

    def get_render(self, render_id: int) -> dict | None:
        with self.engine.connect() as c:
            cols = [col for col in renders.c if col.name != "plan"]
            r = c.execute(select(*cols).where(renders.c.id == render_id)).mappings().first()
            return dict(r) if r else None

    def list_renders(self) -> list[dict]:
        with self.engine.connect() as c:
            cols = [col for col in renders.c if col.name != "plan"]
            q = select(*cols).order_by(renders.c.id)
            return [dict(r) for r in c.execute(q).mappings()]

    def plan(self, render_id: int) -> list[int]:
        """Photo id per cell of a saved render, row-major."""
        from array import array

        with self.engine.connect() as c:
            blob = c.execute(select(renders.c.plan).where(renders.c.id == render_id)).scalar()
        a = array("q")
        a.frombytes(blob or b"")
        return a.tolist()

    def photo_details(self, ids, spec: str) -> dict[int, dict]:
        """photo id → path, size, width, height, format and `vector` (the `spec` feature
        BLOB, None if missing) of each of `ids` still in the catalog (for the viewer)."""
        p, f = photos.c, features.c
        out: dict[int, dict] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(sorted(set(int(i) for i in ids)), 500):
                q = (
                    select(p.id, p.path, p.size, p.width, p.height, p.format, f.vector)
                    .select_from(
                        photos.outerjoin(features, (f.photo_id == p.id) & (f.spec == spec))
                    )
                    .where(p.id.in_(chunk))
                )
                out.update({r["id"]: dict(r) for r in c.execute(q).mappings()})
        return out

    def ok_photo_ids(self, ids) -> set[int]:
        out: set[int] = set()
        with self.engine.connect() as c:
            for chunk in _chunks(sorted(set(int(i) for i in ids)), 500):
                q = select(thumbnails.c.photo_id).where(thumbnails.c.photo_id.in_(chunk))
                out.update(r[0] for r in c.execute(q))
        return out

    def thumbnails(self, ids) -> dict[int, tuple[str, bytes, int, int]]:
        """photo id → (codec, data, width, height) of its stored thumbnail."""
        out = {}
        t = thumbnails.c
        with self.engine.connect() as c:
            for chunk in _chunks([int(i) for i in ids], 500):
                q = select(t.photo_id, t.codec, t.data, t.width, t.height).where(
                    t.photo_id.in_(chunk)
                )
                out.update({r[0]: tuple(r[1:]) for r in c.execute(q)})
        return out

    def iter_thumbnails_missing(self, spec: str, chunk: int = 500):
        """Thumbnails of photos with no vector for `spec` yet: chunks of (id, codec, data)."""
        have = select(features.c.photo_id).where(features.c.spec == spec)
        q = (
            select(thumbnails.c.photo_id, thumbnails.c.codec, thumbnails.c.data)
            .where(thumbnails.c.photo_id.not_in(have))
            .order_by(thumbnails.c.photo_id)
        )
        with self.engine.connect() as c:
            res = c.execution_options(stream_results=True, yield_per=chunk).execute(q)
            for part in res.partitions(chunk):
                yield [tuple(r) for r in part]

    def count_missing_features(self, spec: str) -> int:
        have = select(features.c.photo_id).where(features.c.spec == spec)
        q = select(func.count()).select_from(thumbnails).where(thumbnails.c.photo_id.not_in(have))
        return int(self._scan(q)[0][0])  # a scan of the thumbnails: Ctrl-C stops it

    def photo_ids(self, paths: Sequence[bytes]) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(list(paths), 500):
                q = select(photos.c.path, photos.c.id).where(photos.c.path.in_(chunk))
                out.update((p, i) for p, i in c.execute(q))
        return out

    def feature_vectors(self, spec: str, ids) -> dict[int, bytes]:
        """Vector blobs of `spec` for these photo ids (those that have one)."""
        out: dict[int, bytes] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(sorted(set(int(i) for i in ids)), 500):
                q = select(features.c.photo_id, features.c.vector).where(
                    (features.c.spec == spec) & features.c.photo_id.in_(chunk)
                )
                out.update((pid, v) for pid, v in c.execute(q))
        return out

    def write_features(self, spec: str, rows: list[tuple[int, bytes, tuple]]) -> None:
        """Add derived vectors: rows of (photo_id, vector bytes, (mean L, a, b)). A vector
        already there for (photo, spec) is replaced (another writer may have made it)."""
        if not rows:  # an empty executemany would be one INSERT … DEFAULT VALUES
            return
        if self.engine.dialect.name == "postgresql":
            with self.engine.begin() as c:
                _write_features_pg(self, c, spec, rows)
            return
        with self.engine.begin() as c:
            seq = self.next_seq(c)
            ins = _insert(c)(features)
            c.execute(
                ins.on_conflict_do_update(
                    index_elements=[features.c.photo_id, features.c.spec],
                    set_={
                        k: ins.excluded[k] for k in ("vector", "mean_l", "mean_a", "mean_b", "seq")
                    },
                ),
                [
                    {
                        "photo_id": pid,
                        "spec": spec,
                        "vector": v,
                        "mean_l": m[0],
                        "mean_a": m[1],
                        "mean_b": m[2],
                        "seq": seq,
                    }
                    for pid, v, m in rows
                ],
            )


class Catalog(RenderCatalog):
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
        ins = _insert(conn)(meta)
        stmt = ins.on_conflict_do_update(
            index_elements=[meta.c.key], set_={"value": ins.excluded.value}
        )
        for k in sorted(values):  # one order everywhere: concurrent writers cannot deadlock
            conn.execute(stmt.values(key=k, value=str(values[k])))

    def next_seq(self, conn: Connection) -> int:
        """Bump the catalog change counter in one statement (safe with concurrent writers:
        PostgreSQL holds the row until this transaction ends, so call it late)."""
        ins = _insert(conn)(meta).values(key="seq", value="1")
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

    def add_root(self, path: bytes) -> int:
        """Register a folder. Roots registered earlier inside it are merged into it."""
        with self.engine.begin() as c:
            rid = c.execute(select(roots.c.id).where(roots.c.path == path)).scalar()
            if rid is not None:
                return rid
            rid = c.execute(  # another indexer may register the same folder at the same time
                _insert(c)(roots)
                .values(path=path, added_at=time.time())
                .on_conflict_do_nothing(index_elements=[roots.c.path])
                .returning(roots.c.id)
            ).scalar()
            if rid is None:
                return c.execute(select(roots.c.id).where(roots.c.path == path)).scalar_one()
            # the inner folders' rows before their photos' (LOCK_ORDER)
            inner = select(roots.c.id).where(_prefix_range(roots.c.path, path))
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
            _lock_rows(c, select(roots.c.id).where(roots.c.id == root_id))
            mine = select(photos.c.id).where(photos.c.root_id == root_id)
            _lock_rows(c, mine)
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
            q = q.where(_prefix_range(p.path, under))
        with self.engine.connect() as c:
            return {r[0]: PhotoState(r[1], r[2], r[3], r[4], r[5]) for r in c.execute(q)}

    def photo_states_of(self, paths: Sequence[bytes]) -> dict[bytes, PhotoState]:
        """The rows of these paths, where they exist (a shard checks what is already done)."""
        p = photos.c
        out: dict[bytes, PhotoState] = {}
        with self.engine.connect() as c:
            for chunk in _chunks(list(paths), 500):
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
            for chunk in _chunks(sorted(set(ids)), 500):
                q = delete(photos).where(_unchanged_since(chunk, since))
                gone += [r[0] for r in c.execute(q.returning(photos.c.id))]
            if gone:
                _log_deletions(c, gone, self.next_seq(c))
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

        A folder gone meanwhile is dealt with here (see _hold_folders): the results of a
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
                gone = _hold_folders(c, [r.path for r in results], root_of)
                kept = [r for r in results if root_of[r.path] not in gone]
                if kept:
                    _write_results_pg(self, c, kept, root_of, spec, now)
            return gone
        with self.engine.begin() as c:
            seq = self.next_seq(c)  # the first write: from here on this is SQLite's one writer
            gone = _hold_folders(c, [r.path for r in results], root_of)
            if gone:
                results = [r for r in results if root_of[r.path] not in gone]
            old_ids = [existing[r.path] for r in results if r.path in existing]
            for chunk in _chunks(old_ids, 500):
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
                c.execute(delete(features).where(features.c.photo_id.in_(chunk)))
            _log_deletions(c, old_ids, seq)

            def row(r: PhotoResult) -> dict:
                return {
                    "size": r.size,
                    "mtime_ns": r.mtime_ns,
                    "status": r.status,
                    "error": r.error,
                    "width": r.width,
                    "height": r.height,
                    "format": r.format,
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
                for chunk in _chunks([r.path for r in new], 500):
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
                        for key, vector in _vectors_of_result(r, spec)
                    ],
                )
        return gone

    # -- the shared work queue (PostgreSQL) ----------------------------------------------
    def enqueue(self, rows: Sequence[tuple[bytes, int, int, int, float | None]]) -> set[int]:
        """Add files to index: (path, root_id, size, mtime_ns, photos.indexed_at seen or None).
        A path already queued (by another indexer) stays as it is. The files of a folder
        removed meanwhile (forget) are left out, and its id returned (see _hold_folders)."""
        if not rows:
            return set()
        with self.engine.begin() as c:
            root_of = {r[0]: r[1] for r in rows}
            gone = _hold_folders(c, list(root_of), root_of)
            rows = [(f, root_of[f], *rest) for f, _, *rest in rows if root_of[f] not in gone]
            if not rows:
                return gone
            _copy_rows(
                c,
                "_stage_queue",
                "path bytea, root_id int4, size int8, mtime_ns int8, seen_indexed_at float8",
                ["bytea", "int4", "int8", "int8", "float8"],
                rows,
            )
            q = scan_queue.c
            st = _stage_queue
            c.execute(
                _insert(c)(scan_queue)
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

    def status_format_counts(self) -> list[tuple[str, str | None, int]]:
        with self.engine.connect() as c:
            q = select(photos.c.status, photos.c.format, func.count()).group_by(
                photos.c.status, photos.c.format
            )
            return [tuple(r) for r in c.execute(q)]

    def root_counts(self) -> list[tuple[int, bytes, int]]:
        with self.engine.connect() as c:
            q = (
                select(roots.c.id, roots.c.path, func.count(photos.c.id))
                .select_from(roots.outerjoin(photos))
                .group_by(roots.c.id, roots.c.path)
                .order_by(roots.c.id)
            )
            return [tuple(r) for r in c.execute(q)]

    def thumbnail_bytes(self) -> int:
        with self.engine.connect() as c:
            q = select(_sum(func.length(thumbnails.c.data)))
            return int(c.execute(q).scalar_one())

    def photo_rows(
        self,
        spec: str,
        *,
        status: str | None = None,
        root_id: int | None = None,
        ids: Sequence[int] | None = None,
        path_like: PathPrefilter | None = None,
        order: str = "id",
        limit: int | None = None,
    ) -> list[dict]:
        """Photos with their mean colour (NULL for failures), filtered and sorted (given
        `ids`, those photos in no set order). `path_like` keeps at least the paths its glob
        matches (on SQLite it also ignores ASCII case)."""
        p, f = photos.c, features.c
        q = select(
            p.id,
            p.path,
            p.status,
            p.error,
            p.size,
            p.width,
            p.height,
            p.format,
            f.mean_l,
            f.mean_a,
            f.mean_b,
            p.root_id,
        ).select_from(photos.outerjoin(features, (features.c.photo_id == p.id) & (f.spec == spec)))
        if path_like is not None:
            q = q.where(self._path_prefilter(p.path, path_like))
        if ids is not None:  # in chunks (engines cap the parameters), in no set order
            # Status and root are tested here, not in SQL: without statistics SQLite takes
            # `status = ?` for a selective index and reads all of it for every chunk (0.2 s
            # a chunk at 1M photos, measured) instead of looking the ids up.
            with self.engine.connect() as c:
                return [
                    dict(r)
                    for chunk in _chunks(sorted(set(ids)), 500)
                    for r in c.execute(q.where(p.id.in_(chunk))).mappings()
                    if (not status or r["status"] == status)
                    and (root_id is None or r["root_id"] == root_id)
                ]
        if status == "ok":
            # Nearly every photo is ok, so an index on status narrows nothing; SQLite, which
            # keeps no statistics here, would still take it and then sort every photo
            # (`ls --status ok --limit 3`: 1.8 s at 1M photos, 0.9 s without). `|| ''`
            # keeps the index out of it.
            q = q.where(p.status.concat("") == status)
        elif status:
            q = q.where(p.status == status)
        if root_id is not None:
            q = q.where(p.root_id == root_id)
        key = {
            "id": p.id,
            "path": p.path,
            "size": p.size.desc(),
            "lightness": f.mean_l.nulls_last(),  # failures have none; the engines differ
            "indexed": p.indexed_at.desc(),
        }[order]
        q = q.order_by(key, p.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def _path_prefilter(self, column, pf: PathPrefilter):
        """The catalog's share of a --path glob (queries.path_prefilter)."""
        if self.engine.dialect.name == "sqlite":
            # SQLite builds may be made never to match a BLOB with LIKE (Debian's are): the
            # ASCII-only pattern against the path read as text; instr compares bytes
            value = bindparam(None, pf.ascii_like, LargeBinary)
            test = cast(column, Text).like(cast(value, Text), escape="\\")
            for run in pf.runs:
                test &= func.instr(column, bindparam(None, run, LargeBinary)) > 0
            return test
        # PostgreSQL: bytea LIKE bytea, byte for byte, backslash its default escape
        # (SQLAlchemy's LargeBinary has no like(), hence the plain operator)
        return column.op("LIKE", is_comparison=True)(bindparam(None, pf.bytes_like, LargeBinary))

    def file_states(self, root_id: int) -> list[tuple[int, bytes, int, int, str]]:
        with self.engine.connect() as c:
            q = select(
                photos.c.id, photos.c.path, photos.c.size, photos.c.mtime_ns, photos.c.status
            ).where(photos.c.root_id == root_id)
            return [tuple(r) for r in c.execute(q)]

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
            select(func.count(), _sum(t.photo_id), func.count().filter(bad)),
            select(
                func.count().filter(is_ok),
                _sum(p.id, where=is_ok),
                func.count().filter(_root_gone()),
            ),
            select(f.spec, func.count(), _sum(f.photo_id)).group_by(f.spec),
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
        out.ok_photos = ok = _ints(ok_photos)
        out.orphans["photos"] = int(n_gone)
        out.vectors = {s: _ints(fp) for s, *fp in specs}
        with self.engine.connect() as c, self._interruptible(c):
            if n_bad:
                q = select(t.photo_id).where(bad & ~_photo_gone(thumbnails)).order_by(t.photo_id)
                out.bad_thumbnails = [r[0] for r in c.execute(q)]
            if exact or _ints(thumbs) != ok:
                q = select(func.count()).select_from(thumbnails).where(_photo_gone(thumbnails))
                out.orphans["thumbnails"] = int(c.execute(q).scalar_one())
                has_thumb = select(t.photo_id).where(t.photo_id == p.id).exists()
                q = select(p.id).where(is_ok & ~has_thumb).order_by(p.id)
                out.missing_thumbnails = [r[0] for r in c.execute(q)]
            odd = [s for s, fp in out.vectors.items() if exact or fp != ok]
            if odd:  # e.g. an aspect's spec, derived at render time, not yet for new photos
                q = select(func.count()).where(f.spec.in_(odd) & _photo_gone(features))
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
            gone = c.execute(delete(photos).where(_root_gone()).returning(photos.c.id)).all()
            c.execute(delete(thumbnails).where(_photo_gone(thumbnails)))
            gone += c.execute(
                delete(features).where(_photo_gone(features)).returning(features.c.photo_id)
            ).all()
            if gone:
                _log_deletions(c, sorted({r[0] for r in gone}), self.next_seq(c))

    def mark_unreadable(self, ids: Sequence[int], reason: str, since: int | None = None) -> int:
        """Photos whose stored thumbnail is broken or missing become errors (so
        `index --retry-errors` reads them again); their thumbnail and vectors go. With
        `since` (as for delete_photos), a photo written again after it keeps what `index`
        wrote. Returns how many were marked."""
        marked: list[int] = []
        with self.engine.begin() as c:
            for chunk in _chunks(sorted(set(ids)), 500):
                # the row is written first: it holds the write lock (SQLite) or the rows
                # (PostgreSQL) until the thumbnails and vectors are gone too
                q = update(photos).where(_unchanged_since(chunk, since))
                q = q.values(status="error", error=reason)
                mine = [r[0] for r in c.execute(q.returning(photos.c.id))]
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(mine)))
                c.execute(delete(features).where(features.c.photo_id.in_(mine)))
                marked += mine
            if marked:
                _log_deletions(c, marked, self.next_seq(c))
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

    def errors(self) -> list[tuple[bytes, str]]:
        with self.engine.connect() as c:
            q = select(photos.c.path, photos.c.error).where(photos.c.status == "error")
            return [tuple(r) for r in c.execute(q.order_by(photos.c.path))]

    # -- features -----------------------------------------------------------------------
    def feature_state(self, spec: str) -> tuple[int, int, int]:
        """(count, sum of ids, latest change counter of a vector or of a deletion) of the
        vectors of `spec`: a cheap fingerprint."""
        with self.engine.connect() as c:
            q = select(func.count(), _sum(features.c.photo_id)).where(features.c.spec == spec)
            n, s = c.execute(q).one()
        return int(n), int(s), self.change_counter(spec)

    def change_counter(self, spec: str) -> int:
        """The latest change counter of a vector of `spec` or of a deletion: feature_state's
        third value, from two index seeks."""
        with self.engine.connect() as c:
            m = c.execute(
                select(features.c.seq)
                .where(features.c.spec == spec)
                .order_by(features.c.seq.desc())
                .limit(1)
            ).scalar()
            d = c.execute(
                select(vector_deletions.c.seq).order_by(vector_deletions.c.seq.desc()).limit(1)
            ).scalar()
        return max(int(m or 0), int(d or 0))

    def deleted_since(self, seq: int) -> list[int]:
        """Photo ids whose vectors were deleted after change counter `seq`."""
        with self.engine.connect() as c:
            q = select(vector_deletions.c.photo_id).where(vector_deletions.c.seq > seq)
            return sorted({r[0] for r in c.execute(q)})

    def feature_ids(self, spec: str) -> list[int]:
        with self.engine.connect() as c:
            q = select(features.c.photo_id).where(features.c.spec == spec)
            return [r[0] for r in c.execute(q)]

    def sample_vectors(self, spec: str, step: int) -> tuple[list[int], list[bytes]]:
        """The vectors of `spec` of every `step`-th photo id, spread over the store: for
        training a quantizer without reading every vector."""
        q = select(features.c.photo_id, features.c.vector).where(features.c.spec == spec)
        if step > 1:
            q = q.where(features.c.photo_id % step == 0)
        with self.engine.connect() as c:
            rows = c.execute(q).all()
        return [r[0] for r in rows], [r[1] for r in rows]

    def feature_means(self, spec: str) -> Iterator[list[tuple[float, float, float]]]:
        """The mean (L, a, b) of every vector of `spec`, in chunks."""
        q = select(features.c.mean_l, features.c.mean_a, features.c.mean_b).where(
            features.c.spec == spec
        )
        with self.engine.connect() as c:
            res = c.execution_options(stream_results=True, yield_per=100_000).execute(q)
            for part in res.partitions(100_000):
                yield [tuple(r) for r in part]

    def iter_vectors(
        self, spec: str, since_seq: int | None = None, chunk: int = 50_000
    ) -> Iterator[tuple[list[int], list[bytes]]]:
        """Yield (ids, vector blobs) in chunks, optionally only those written after since_seq."""
        q = select(features.c.photo_id, features.c.vector).where(features.c.spec == spec)
        if since_seq is not None:
            q = q.where(features.c.seq > since_seq)
        with self.engine.connect() as c:
            res = c.execution_options(stream_results=True, yield_per=chunk).execute(q)
            for part in res.partitions(chunk):
                yield [r[0] for r in part], [r[1] for r in part]


# -- PostgreSQL bulk writes: COPY into a temporary staging table, then one INSERT … SELECT ----

_STAGE_RESULTS_COLS = (
    "path bytea, root_id int4, size int8, mtime_ns int8, status text, error text, "
    "width int4, height int4, format text"
)
_STAGE_RESULTS_TYPES = [c.split()[1] for c in _STAGE_RESULTS_COLS.split(", ")]
_THUMB_COLS = ["photo_id", "width", "height", "codec", "data"]
_THUMB_TYPES = ["int4", "int4", "int4", "text", "bytea"]
_FEATURE_COLS = ["photo_id", "spec", "vector", "mean_l", "mean_a", "mean_b", "seq"]
_FEATURE_TYPES = ["int4", "text", "bytea", "float8", "float8", "float8", "int8"]


def _stage_table(name: str, cols: str) -> Table:
    types = {
        "bytea": LargeBinary,
        "int4": Integer,
        "int8": BigInteger,
        "float8": Float,
        "text": Text,
    }
    return Table(
        name,
        MetaData(),
        *(Column(c.split()[0], types.get(c.split()[1], String)) for c in cols.split(", ")),
    )


_stage_results = _stage_table("_stage_results", _STAGE_RESULTS_COLS)
_stage_queue = _stage_table(
    "_stage_queue", "path bytea, root_id int4, size int8, mtime_ns int8, seen_indexed_at float8"
)


def _copy_rows(c: Connection, table: str, cols: str, types: list[str], rows) -> None:
    """COPY `rows` (tuples) into a per-session temporary table emptied at commit (binary
    COPY through psycopg 3 on the raw connection of this transaction)."""
    c.execute(text(f"CREATE TEMP TABLE IF NOT EXISTS {table} ({cols}) ON COMMIT DELETE ROWS"))
    _copy(c, table, [x.split()[0] for x in cols.split(", ")], types, rows)


def _copy_into(c: Connection, table: Table, cols: list[str], types: list[str], rows) -> None:
    """Binary COPY of `rows` straight into `table` (psycopg 3, this transaction's connection)."""
    _copy(c, table.name, cols, types, rows)


def _copy(c: Connection, table: str, cols: list[str], types: list[str], rows) -> None:
    cur = c.connection.driver_connection.cursor()
    try:
        with cur.copy(f"COPY {table} ({', '.join(cols)}) FROM STDIN (FORMAT BINARY)") as cp:
            cp.set_types(types)
            for r in rows:
                cp.write_row(r)
    finally:
        cur.close()


def _copy_or_upsert(c: Connection, table: Table, cols, types, key, rows: list) -> None:
    """COPY into `table` (the fast path: the rows of these photos were just deleted); if
    another writer committed one of them in between (a lease taken over while the file was
    still being read), roll back to the savepoint and upsert instead."""
    from psycopg.errors import UniqueViolation

    try:
        with c.begin_nested():
            _copy_into(c, table, cols, types, rows)
    except UniqueViolation:
        ins = _insert(c)(table)
        c.execute(
            ins.on_conflict_do_update(
                index_elements=[table.c[k] for k in key],
                set_={k: ins.excluded[k] for k in cols if k not in key},
            ),
            [dict(zip(cols, r, strict=True)) for r in rows],
        )


def _write_results_pg(cat: Catalog, c: Connection, results, root_of, spec: str, now: float):
    """One batch in one transaction: COPY the photo rows into a staging table and upsert them
    by path (a changed file keeps its id) with RETURNING ids; delete the old thumbnails and
    vectors of those photos; COPY the new ones straight into their tables; drop the written
    files from the work queue."""
    from sqlalchemy.dialects.postgresql import distinct_on

    _copy_rows(
        c,
        "_stage_results",
        _STAGE_RESULTS_COLS,
        _STAGE_RESULTS_TYPES,
        (
            (
                r.path,
                root_of[r.path],
                r.size,
                r.mtime_ns,
                r.status,
                r.error,
                r.width,
                r.height,
                r.format,
            )
            for r in results
        ),
    )
    s, p = _stage_results.c, photos.c
    fields = ["size", "mtime_ns", "status", "error", "width", "height", "format"]
    ins = _insert(c)(photos)
    ids = dict(
        c.execute(
            ins.from_select(
                ["path", "root_id", *fields, "indexed_at"],
                select(s.path, s.root_id, *(s[f] for f in fields), literal(now, Float))
                .ext(distinct_on(s.path))  # a path twice in one batch would fail the upsert
                .order_by(s.path),
            )
            .on_conflict_do_update(  # a changed file keeps its id (render plans refer to it)
                index_elements=[p.path],
                set_={f: ins.excluded[f] for f in [*fields, "indexed_at"]},
            )
            .returning(p.path, p.id)
        ).all()
    )
    mine = list(ids.values())
    replaced: set[int] = set()  # photos of this batch that had vectors (changed files)
    for chunk in _chunks(mine, 5000):
        c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
        q = delete(features).where(features.c.photo_id.in_(chunk)).returning(features.c.photo_id)
        replaced.update(r[0] for r in c.execute(q))
    ok = [r for r in results if r.status == "ok"]
    if ok:
        _copy_or_upsert(
            c,
            thumbnails,
            _THUMB_COLS,
            _THUMB_TYPES,
            ["photo_id"],
            [(ids[r.path], r.thumb_w, r.thumb_h, r.thumb_codec, r.thumb) for r in ok],
        )
    c.execute(delete(scan_queue).where(scan_queue.c.path.in_(select(s.path))))
    seq = cat.next_seq(c)  # last: the counter's row stays locked until commit
    _log_deletions(c, sorted(replaced), seq)
    if ok:
        _copy_or_upsert(
            c,
            features,
            _FEATURE_COLS,
            _FEATURE_TYPES,
            ["photo_id", "spec"],
            [
                (ids[r.path], key, vector, *r.mean, seq)
                for r in ok
                for key, vector in _vectors_of_result(r, spec)
            ],
        )


def _vectors_of_result(r: PhotoResult, spec: str) -> list[tuple[str, bytes]]:
    """(spec key, vector) of each feature row a scanned photo gets: the store's spec, and
    the re-ranking grid when the scan made it."""
    return [(spec, r.vector)] + ([r.fine] if r.fine is not None else [])


_STAGE_FEATURES_COLS = "photo_id int4, vector bytea, mean_l float8, mean_a float8, mean_b float8"
_stage_features = _stage_table("_stage_features", _STAGE_FEATURES_COLS)


def _write_features_pg(cat: Catalog, c: Connection, spec: str, rows) -> None:
    """Derived vectors: COPY into a staging table, then one upsert."""
    _copy_rows(
        c,
        "_stage_features",
        _STAGE_FEATURES_COLS,
        ["int4", "bytea", "float8", "float8", "float8"],
        ((pid, v, *m) for pid, v, m in rows),
    )
    s = _stage_features.c
    fcols = ["vector", "mean_l", "mean_a", "mean_b", "seq"]
    # the photos' rows before the change counter (LOCK_ORDER): the insert's foreign key
    # check would take them after it
    _lock_rows(c, select(photos.c.id).where(photos.c.id.in_(select(s.photo_id))), share=True)
    seq = cat.next_seq(c)
    ins = _insert(c)(features)
    c.execute(
        ins.from_select(
            ["photo_id", "spec", *fcols],
            select(
                s.photo_id,
                literal(spec, String),
                s.vector,
                s.mean_l,
                s.mean_a,
                s.mean_b,
                literal(seq, BigInteger),
            )
            .ext(_distinct_on(s.photo_id))
            .order_by(s.photo_id)
            # a photo deleted since its vector was computed: nothing to attach it to
            .where(s.photo_id.in_(select(photos.c.id))),
        ).on_conflict_do_update(
            index_elements=[features.c.photo_id, features.c.spec],
            set_={k: ins.excluded[k] for k in fcols},
        )
    )


def _distinct_on(col):
    from sqlalchemy.dialects.postgresql import distinct_on

    return distinct_on(col)


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


def _sum(col, where=None):
    """SUM as a number even over no rows; `where`: of the rows that meet it (FILTER)."""
    total = func.sum(col)
    return func.coalesce(total if where is None else total.filter(where), 0)


def _ints(row) -> tuple[int, ...]:
    return tuple(int(x) for x in row)  # PostgreSQL sums are Decimals


def _unchanged_since(ids: Sequence[int], seq: int | None):
    """These photos, less (given change counter `seq`) those that an `index` wrote again
    after it: their old vectors' deletion or their new vectors carry a later counter."""
    cond = photos.c.id.in_(ids)
    if seq is None:
        return cond
    d, f = vector_deletions.c, features.c
    rewritten = select(d.photo_id).where((d.photo_id == photos.c.id) & (d.seq > seq)).exists() | (
        select(f.photo_id).where((f.photo_id == photos.c.id) & (f.seq > seq)).exists()
    )
    return cond & ~rewritten


def _photo_gone(table: Table):
    """Rows of `table` (thumbnails, features) whose photo row is gone: orphans."""
    return table.c.photo_id.not_in(select(photos.c.id))


def _root_gone():
    """Photos whose root row is gone: orphans."""
    return photos.c.root_id.not_in(select(roots.c.id))


def _hold_folders(c: Connection, paths: Sequence[bytes], root_of: dict[bytes, int]) -> set[int]:
    """Make sure the folders these files belong to (`root_of`) still exist, and keep them
    until this transaction ends: on PostgreSQL their rows are locked (FOR KEY SHARE, which
    forget's and a merge's FOR UPDATE wait for; LOCK_ORDER), on SQLite the caller is the one
    writer already. A folder gone meanwhile was either merged into a parent registered
    since (its files are moved to that parent in `root_of`) or removed (forget): the ids
    of the removed ones are returned."""
    wanted = {root_of[p] for p in paths}
    held = select(roots.c.id).where(roots.c.id.in_(wanted)).with_for_update(**_KEY_SHARE)
    missing = wanted - set(c.scalars(held))
    if not missing:
        return set()
    # folders do not nest (add_root merges them), so at most one holds a given file
    folders = c.execute(select(roots.c.id, roots.c.path).with_for_update(**_KEY_SHARE)).all()
    gone = set()
    for p in paths:
        if root_of[p] in missing:
            parent = next((i for i, fp in folders if p.startswith(fp.rstrip(b"/") + b"/")), None)
            if parent is None:
                gone.add(root_of[p])
            else:
                root_of[p] = parent
    return gone


# FOR KEY SHARE: keeps a row from being deleted or its key changed, lets others read and
# lock it alike (SQLAlchemy leaves any FOR … out on SQLite, whose writer holds the file)
_KEY_SHARE = {"read": True, "key_share": True}


def _lock_rows(c: Connection, query, share: bool = False) -> None:
    """Lock the rows `query` selects until the transaction ends (FOR UPDATE, or FOR KEY
    SHARE when `share`), without fetching them: see LOCK_ORDER."""
    locked = query.with_for_update(**(_KEY_SHARE if share else {}))
    c.execute(select(func.count()).select_from(locked.subquery()))


def _log_deletions(c: Connection, ids: Sequence[int], seq: int) -> None:
    """Record that these photos' vectors are gone as of change counter `seq`."""
    for chunk in _chunks(list(ids), 5000):
        c.execute(insert(vector_deletions), [{"seq": seq, "photo_id": int(i)} for i in chunk])


def _chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
