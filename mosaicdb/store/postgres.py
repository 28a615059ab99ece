"""PostgreSQL bulk writes: COPY into a temporary staging table, then one INSERT … SELECT …
ON CONFLICT (SQLite writes the same rows with executemany in catalog.py)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from sqlalchemy import (
    BigInteger,
    Column,
    Float,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    delete,
    literal,
    select,
    text,
)
from sqlalchemy.engine import Connection

from mosaicdb.store.schema import (
    features,
    photos,
    scan_queue,
    thumbnails,
)
from mosaicdb.store.sql import (
    chunks,
    dialect_insert,
    distinct_on,
    lock_rows,
    log_deletions,
    vectors_of_result,
)

if TYPE_CHECKING:
    from mosaicdb.store.catalog import Catalog

_STAGE_RESULTS_COLS = (
    "path bytea, root_id int4, size int8, mtime_ns int8, status text, error text, "
    "width int4, height int4, format text, fingerprint bytea, phash int8, dup_of int4"
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


stage_queue = _stage_table(
    "_stage_queue", "path bytea, root_id int4, size int8, mtime_ns int8, seen_indexed_at float8"
)


def copy_rows(c: Connection, table: str, cols: str, types: list[str], rows) -> None:
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


def copy_or_upsert(c: Connection, table: Table, cols, types, key, rows: list) -> None:
    """COPY into `table` (the fast path: the rows of these photos were just deleted); if
    another writer committed one of them in between (a lease taken over while the file was
    still being read), roll back to the savepoint and upsert instead."""
    from psycopg.errors import UniqueViolation

    try:
        with c.begin_nested():
            _copy_into(c, table, cols, types, rows)
    except UniqueViolation:
        ins = dialect_insert(c)(table)
        c.execute(
            ins.on_conflict_do_update(
                index_elements=[table.c[k] for k in key],
                set_={k: ins.excluded[k] for k in cols if k not in key},
            ),
            [dict(zip(cols, r, strict=True)) for r in rows],
        )


def write_results_pg(cat: Catalog, c: Connection, results, root_of, spec: str, now: float):
    """One batch in one transaction: COPY the photo rows into a staging table and upsert them
    by path (a changed file keeps its id) with RETURNING ids; delete the old thumbnails and
    vectors of those photos; COPY the new ones straight into their tables; drop the written
    files from the work queue."""
    from sqlalchemy.dialects.postgresql import distinct_on

    copy_rows(
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
                r.fingerprint,
                r.phash,
                0 if r.phash is not None else None,  # not yet grouped: index/dupes.regroup
            )
            for r in results
        ),
    )
    s, p = _stage_results.c, photos.c
    fields = [
        "size",
        "mtime_ns",
        "status",
        "error",
        "width",
        "height",
        "format",
        "fingerprint",
        "phash",
        "dup_of",
    ]
    ins = dialect_insert(c)(photos)
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
    for chunk in chunks(mine, 5000):
        c.execute(delete(thumbnails).where(thumbnails.c.photo_id.in_(chunk)))
        q = delete(features).where(features.c.photo_id.in_(chunk)).returning(features.c.photo_id)
        replaced.update(r[0] for r in c.execute(q))
    ok = [r for r in results if r.status == "ok"]
    if ok:
        copy_or_upsert(
            c,
            thumbnails,
            _THUMB_COLS,
            _THUMB_TYPES,
            ["photo_id"],
            [(ids[r.path], r.thumb_w, r.thumb_h, r.thumb_codec, r.thumb) for r in ok],
        )
    c.execute(delete(scan_queue).where(scan_queue.c.path.in_(select(s.path))))
    seq = cat.next_seq(c)  # last: the counter's row stays locked until commit
    log_deletions(c, sorted(replaced), seq)
    if ok:
        copy_or_upsert(
            c,
            features,
            _FEATURE_COLS,
            _FEATURE_TYPES,
            ["photo_id", "spec"],
            [
                (ids[r.path], key, vector, *r.mean, seq)
                for r in ok
                for key, vector in vectors_of_result(r, spec)
            ],
        )


_STAGE_FEATURES_COLS = "photo_id int4, vector bytea, mean_l float8, mean_a float8, mean_b float8"


_stage_features = _stage_table("_stage_features", _STAGE_FEATURES_COLS)


def write_features_pg(cat: Catalog, c: Connection, spec: str, rows) -> None:
    """Derived vectors: COPY into a staging table, then one upsert."""
    copy_rows(
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
    lock_rows(c, select(photos.c.id).where(photos.c.id.in_(select(s.photo_id))), share=True)
    seq = cat.next_seq(c)
    ins = dialect_insert(c)(features)
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
            .ext(distinct_on(s.photo_id))
            .order_by(s.photo_id)
            # a photo deleted since its vector was computed: nothing to attach it to
            .where(s.photo_id.in_(select(photos.c.id))),
        ).on_conflict_do_update(
            index_elements=[features.c.photo_id, features.c.spec],
            set_={k: ins.excluded[k] for k in fcols},
        )
    )
