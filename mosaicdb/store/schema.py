"""The catalog's tables (SQLAlchemy Core), the engine (SQLite pragmas on every connection),
and the locks every writer takes (LOCK_ORDER). The same tables serve SQLite (the default, one
writer) and PostgreSQL (psycopg 3; several indexers at once). Paths are stored as bytes
(os.fsencode) so that names which are not valid UTF-8 survive."""

from __future__ import annotations

from pathlib import Path

from sqlalchemy import (
    BigInteger,
    Boolean,
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
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.engine import Connection, Engine

# The Alembic revision this code's tables correspond to; a test checks it is the head.
SCHEMA_REVISION = "0010"


metadata = MetaData()


roots = Table(
    "roots",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("path", LargeBinary, nullable=False, unique=True),
    Column("added_at", Float, nullable=False),
    # what `index` was told about this folder, kept for the next plain `index`: hidden files
    # too (NULL: no), and the globs (JSON list, relative to the folder) it leaves out
    Column("include_hidden", Boolean),
    Column("exclude", Text),
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
    # size + hash of three samples of the bytes (index/identity.py): a renamed or moved file
    # is recognised by it and keeps its id; NULL on rows written before schema 0007
    Column("fingerprint", LargeBinary),
    # near-duplicates (index/dupes.py): the thumbnail's perceptual hash, and the first photo
    # of this one's group (NULL: the first itself, or in no group)
    Column("phash", BigInteger),
    Column("dup_of", Integer),
    Index("ix_photos_root_id", "root_id"),
    Index("ix_photos_dup_of", "dup_of"),
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


# Every file written from a render's plan: the first render and each `render --plan` of it
# (another size, format or blend). `renders.output` and its neighbours are the latest of these.
render_outputs = Table(
    "render_outputs",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("render_id", Integer, ForeignKey("renders.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", Float, nullable=False),
    Column("output", Text, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("tile_w", Integer, nullable=False),
    Column("tile_h", Integer, nullable=False),
    Column("blend", Float, nullable=False),
    Column("mean_delta_e", Float),
    Column("seconds", Float),
    Index("ix_render_outputs_render_id", "render_id"),
    Index("ix_render_outputs_output", "output"),
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
    if in_memory(url):
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


def in_memory(url: str) -> bool:
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
