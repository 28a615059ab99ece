"""The catalog: SQLAlchemy tables, the engine (SQLite pragmas on every connection) and every
SQL statement mosaicdb runs. Nothing outside this module writes SQL, and what is here is
portable SQLAlchemy Core (no SQLite-only syntax) so the catalog can move to PostgreSQL.

Paths are stored as bytes (os.fsencode) so that names which are not valid UTF-8 survive.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Sequence
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
    create_engine,
    delete,
    event,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.engine import Connection, Engine

from .records import PhotoResult, PhotoState

# The Alembic revision this code's tables correspond to; a test checks it is the head.
SCHEMA_REVISION = "0004"

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


def make_engine(url: str) -> Engine:
    engine = create_engine(url)
    if engine.dialect.name == "sqlite":
        event.listen(engine, "connect", _sqlite_pragmas)
    return engine


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
        with self.engine.connect() as c:
            return c.execute(
                select(func.count())
                .select_from(thumbnails)
                .where(thumbnails.c.photo_id.not_in(have))
            ).scalar_one()

    def write_features(self, spec: str, rows: list[tuple[int, bytes, tuple]]) -> None:
        """Add derived vectors: rows of (photo_id, vector bytes, (mean L, a, b))."""
        with self.engine.begin() as c:
            seq = self.next_seq(c)
            c.execute(
                insert(features),
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
        keys = list(values)
        conn.execute(delete(meta).where(meta.c.key.in_(keys)))
        conn.execute(insert(meta), [{"key": k, "value": str(values[k])} for k in keys])

    def next_seq(self, conn: Connection) -> int:
        cur = conn.execute(select(meta.c.value).where(meta.c.key == "seq")).scalar()
        seq = int(cur or 0) + 1
        self.set_meta({"seq": str(seq)}, conn)
        return seq

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
            rid = c.execute(
                insert(roots).values(path=path, added_at=time.time()).returning(roots.c.id)
            ).scalar_one()
            inner = [
                r.id for r in c.execute(select(roots.c.id).where(_prefix_range(roots.c.path, path)))
            ]
            if inner:
                c.execute(update(photos).where(photos.c.root_id.in_(inner)).values(root_id=rid))
                c.execute(delete(roots).where(roots.c.id.in_(inner)))
            return rid

    def remove_root(self, root_id: int) -> int:
        with self.engine.begin() as c:
            n = c.execute(select(func.count()).where(photos.c.root_id == root_id)).scalar_one()
            c.execute(delete(roots).where(roots.c.id == root_id))
            if n:
                self.next_seq(c)
            return n

    # -- photos -----------------------------------------------------------------------
    def photo_states(self, root_id: int, under: bytes | None = None) -> dict[bytes, PhotoState]:
        q = select(photos.c.path, photos.c.id, photos.c.size, photos.c.mtime_ns, photos.c.status)
        q = q.where(photos.c.root_id == root_id)
        if under is not None:
            q = q.where(_prefix_range(photos.c.path, under))
        with self.engine.connect() as c:
            return {r[0]: PhotoState(r[1], r[2], r[3], r[4]) for r in c.execute(q)}

    def delete_photos(self, ids: Sequence[int]) -> int:
        n = 0
        with self.engine.begin() as c:
            for chunk in _chunks(list(ids), 500):
                n += c.execute(delete(photos).where(photos.c.id.in_(chunk))).rowcount
            if n:
                self.next_seq(c)
        return n

    def write_results(
        self,
        results: Sequence[PhotoResult],
        root_of: dict[bytes, int],
        existing: dict[bytes, int],
        spec: str,
    ) -> None:
        """Write one batch of worker results in one transaction.

        `existing` maps the path of a file that already has a row to its photo id (a changed
        file keeps its id); other paths get new rows. A crash loses at most this batch.
        """
        now = time.time()
        with self.engine.begin() as c:
            seq = self.next_seq(c)
            old_ids = [existing[r.path] for r in results if r.path in existing]
            for chunk in _chunks(old_ids, 500):
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
                c.execute(delete(features).where(features.c.photo_id.in_(chunk)))

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
                            "spec": spec,
                            "vector": r.vector,
                            "mean_l": r.mean[0],
                            "mean_a": r.mean[1],
                            "mean_b": r.mean[2],
                            "seq": seq,
                        }
                        for r in ok
                    ],
                )

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
            q = select(func.coalesce(func.sum(func.length(thumbnails.c.data)), 0))
            return int(c.execute(q).scalar_one())

    def photo_rows(
        self,
        spec: str,
        *,
        status: str | None = None,
        root_id: int | None = None,
        ids: Sequence[int] | None = None,
        order: str = "id",
        limit: int | None = None,
    ) -> list[dict]:
        """Photos with their mean colour (NULL for failures), filtered and sorted."""
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
        ).select_from(photos.outerjoin(features, (features.c.photo_id == p.id) & (f.spec == spec)))
        if status:
            q = q.where(p.status == status)
        if root_id is not None:
            q = q.where(p.root_id == root_id)
        if ids is not None:
            q = q.where(p.id.in_(list(ids)))
        key = {
            "id": p.id,
            "path": p.path,
            "size": p.size.desc(),
            "lightness": f.mean_l,
            "indexed": p.indexed_at.desc(),
        }[order]
        q = q.order_by(key, p.id)
        if limit:
            q = q.limit(limit)
        with self.engine.connect() as c:
            return [dict(r) for r in c.execute(q).mappings()]

    def file_states(self, root_id: int) -> list[tuple[int, bytes, int, int, str]]:
        with self.engine.connect() as c:
            q = select(
                photos.c.id, photos.c.path, photos.c.size, photos.c.mtime_ns, photos.c.status
            ).where(photos.c.root_id == root_id)
            return [tuple(r) for r in c.execute(q)]

    def bad_thumbnail_markers(self) -> list[int]:
        """Ids of JPEG thumbnails that do not start with SOI and end with EOI: a cheap test
        for truncated or overwritten blobs, done in the database."""
        t = thumbnails.c
        tail = func.substr(t.data, func.length(t.data) - 1, 2)
        q = select(t.photo_id).where(
            (t.codec == "jpeg")
            & ((func.substr(t.data, 1, 2) != b"\xff\xd8") | (tail != b"\xff\xd9"))
        )
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(q.order_by(t.photo_id))]

    def iter_thumbnail_data(self, chunk: int = 1000):
        t = thumbnails.c
        q = select(t.photo_id, t.codec, t.data).order_by(t.photo_id)
        with self.engine.connect() as c:
            res = c.execution_options(stream_results=True, yield_per=chunk).execute(q)
            for part in res.partitions(chunk):
                yield [tuple(r) for r in part]

    def orphans(self) -> dict[str, int]:
        """Rows whose photo is gone (only possible if foreign keys were ever off)."""
        out = {}
        with self.engine.connect() as c:
            for name, t in (("thumbnails", thumbnails), ("features", features)):
                q = (
                    select(func.count())
                    .select_from(t)
                    .where(t.c.photo_id.not_in(select(photos.c.id)))
                )
                out[name] = int(c.execute(q).scalar_one())
            q = (
                select(func.count())
                .select_from(photos)
                .where(photos.c.root_id.not_in(select(roots.c.id)))
            )
            out["photos"] = int(c.execute(q).scalar_one())
        return out

    def drop_orphans(self) -> None:
        with self.engine.begin() as c:
            for t in (thumbnails, features):
                c.execute(delete(t).where(t.c.photo_id.not_in(select(photos.c.id))))

    def mark_unreadable(self, ids: Sequence[int]) -> None:
        """Photos whose stored thumbnail is broken become errors (so `index --retry-errors`
        reads them again); their thumbnail and vectors go."""
        with self.engine.begin() as c:
            for chunk in _chunks(list(ids), 500):
                c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
                c.execute(delete(features).where(features.c.photo_id.in_(chunk)))
                c.execute(
                    update(photos)
                    .where(photos.c.id.in_(chunk))
                    .values(status="error", error="stored thumbnail does not decode")
                )
            self.next_seq(c)

    def integrity_check(self, deep: bool = False) -> list[str]:
        """SQLite's own check (other databases check themselves): [] when fine. quick_check
        unless `deep` (4-5x slower: also checks every index against its table)."""
        if self.engine.dialect.name != "sqlite":
            return []
        from sqlalchemy import text

        pragma = "integrity_check" if deep else "quick_check"
        with self.engine.connect() as c:
            rows = [r[0] for r in c.execute(text(f"PRAGMA {pragma}"))]
        return [] if rows == ["ok"] else rows

    def errors(self) -> list[tuple[bytes, str]]:
        with self.engine.connect() as c:
            q = select(photos.c.path, photos.c.error).where(photos.c.status == "error")
            return [tuple(r) for r in c.execute(q.order_by(photos.c.path))]

    # -- features -----------------------------------------------------------------------
    def feature_state(self, spec: str) -> tuple[int, int, int]:
        """(count, sum of ids, max seq) of the vectors of `spec`: a cheap fingerprint."""
        with self.engine.connect() as c:
            q = select(
                func.count(),
                func.coalesce(func.sum(features.c.photo_id), 0),
                func.coalesce(func.max(features.c.seq), 0),
            ).where(features.c.spec == spec)
            n, s, m = c.execute(q).one()
        return int(n), int(s), int(m)

    def feature_ids(self, spec: str) -> list[int]:
        with self.engine.connect() as c:
            q = select(features.c.photo_id).where(features.c.spec == spec)
            return [r[0] for r in c.execute(q)]

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


def _chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]
