"""SQL pieces shared by the catalog's parts: the dialect's upsert, byte-path ranges, the
locks of LOCK_ORDER (schema.py), the deletion log, chunking."""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from sqlalchemy import (
    Table,
    func,
    insert,
    select,
)
from sqlalchemy.engine import Connection

from mosaicdb.records import PhotoResult
from mosaicdb.store.schema import (
    features,
    photos,
    roots,
    vector_deletions,
)


def prefix_range(col, prefix: bytes):
    """Rows whose byte path lies under directory `prefix` (a range, so an index can serve it)."""
    p = prefix.rstrip(b"/")
    return (col > p + b"/") & (col < p + b"0")  # b"0" is the byte after b"/"


def dialect_insert(conn: Connection):
    """The dialect's INSERT construct (it has on_conflict_do_update/do_nothing): chosen here
    once, for every upsert in this module."""
    if conn.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as pg_insert

        return pg_insert
    if conn.dialect.name == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert
    raise NotImplementedError(f"mosaicdb supports SQLite and PostgreSQL, not {conn.dialect.name}")


def sql_sum(col, where=None):
    """SUM as a number even over no rows; `where`: of the rows that meet it (FILTER)."""
    total = func.sum(col)
    return func.coalesce(total if where is None else total.filter(where), 0)


def as_ints(row) -> tuple[int, ...]:
    return tuple(int(x) for x in row)  # PostgreSQL sums are Decimals


def unchanged_since(ids: Sequence[int], seq: int | None):
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


def photo_gone(table: Table):
    """Rows of `table` (thumbnails, features) whose photo row is gone: orphans."""
    return table.c.photo_id.not_in(select(photos.c.id))


def root_gone():
    """Photos whose root row is gone: orphans."""
    return photos.c.root_id.not_in(select(roots.c.id))


def hold_folders(c: Connection, paths: Sequence[bytes], root_of: dict[bytes, int]) -> set[int]:
    """Make sure the folders these files belong to (`root_of`) still exist, and keep them
    until this transaction ends: on PostgreSQL their rows are locked (FOR KEY SHARE, which
    forget's and a merge's FOR UPDATE wait for; LOCK_ORDER), on SQLite the caller is the one
    writer already. A folder gone meanwhile was either merged into a parent registered
    since (its files are moved to that parent in `root_of`) or removed (forget): the ids
    of the removed ones are returned."""
    wanted = {root_of[p] for p in paths}
    held = select(roots.c.id).where(roots.c.id.in_(wanted)).with_for_update(**KEY_SHARE)
    missing = wanted - set(c.scalars(held))
    if not missing:
        return set()
    # folders do not nest (add_root merges them), so at most one holds a given file
    folders = c.execute(select(roots.c.id, roots.c.path).with_for_update(**KEY_SHARE)).all()
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
KEY_SHARE = {"read": True, "key_share": True}


def lock_rows(c: Connection, query, share: bool = False) -> None:
    """Lock the rows `query` selects until the transaction ends (FOR UPDATE, or FOR KEY
    SHARE when `share`), without fetching them: see LOCK_ORDER."""
    locked = query.with_for_update(**(KEY_SHARE if share else {}))
    c.execute(select(func.count()).select_from(locked.subquery()))


def log_deletions(c: Connection, ids: Sequence[int], seq: int) -> None:
    """Record that these photos' vectors are gone as of change counter `seq`."""
    for chunk in chunks(list(ids), 5000):
        c.execute(insert(vector_deletions), [{"seq": seq, "photo_id": int(i)} for i in chunk])


def chunks(seq: Sequence, n: int) -> Iterable[Sequence]:
    for i in range(0, len(seq), n):
        yield seq[i : i + n]


def distinct_on(col):
    from sqlalchemy.dialects.postgresql import distinct_on

    return distinct_on(col)


def vectors_of_result(r: PhotoResult, spec: str) -> list[tuple[str, bytes]]:
    """(spec key, vector) of each feature row a scanned photo gets: the store's spec, and
    the re-ranking grid when the scan made it."""
    return [(spec, r.vector)] + ([r.fine] if r.fine is not None else [])
