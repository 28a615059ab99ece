"""A photo's identity in the catalog beyond its path: the fingerprint rows a moved file takes
over (index/identity.py), and the near-duplicate groups (index/dupes.py). Mixed into Catalog."""

from __future__ import annotations

import time
from collections.abc import Sequence

from sqlalchemy import bindparam, func, select, update

from mosaicdb.records import Move
from mosaicdb.store.schema import photos
from mosaicdb.store.sql import chunks


class PhotoIdentity:
    """Moves and near-duplicate groups (mixed into Catalog)."""

    def fingerprints_of(
        self, ids: Sequence[int] = (), root_ids: Sequence[int] = ()
    ) -> list[tuple[int, bytes, int, bytes]]:
        """(id, path, size, fingerprint) of these photos, and of every photo of these folders,
        that were read and have one: the rows a moved file may take over."""
        p = photos.c
        q = select(p.id, p.path, p.size, p.fingerprint).where(
            p.status == "ok", p.fingerprint.is_not(None)
        )
        out = []
        with self.engine.connect() as c:
            for chunk in chunks(sorted(set(ids)), 500):
                out += [tuple(r) for r in c.execute(q.where(p.id.in_(chunk)))]
            if root_ids:
                out += [tuple(r) for r in c.execute(q.where(p.root_id.in_(list(root_ids))))]
        return out

    def move_photos(self, moves: Sequence[Move]) -> int:
        """Give each photo its new path (and folder, size, mtime): a renamed or moved file that
        keeps its id, thumbnail and vectors. A row changed since the walk saw it (its path is
        no longer the old one) is left as it is; returns how many moved."""
        if not moves:
            return 0
        p = photos.c
        now = time.time()
        q = (
            update(photos)
            .where(p.id == bindparam("pid"), p.path == bindparam("old"))
            .values(
                path=bindparam("new"),
                root_id=bindparam("rid"),
                size=bindparam("sz"),
                mtime_ns=bindparam("mt"),
                indexed_at=now,
            )
        )
        with self.engine.begin() as c:
            n = c.execute(
                q,
                [
                    {"pid": m.photo_id, "old": m.old_path, "new": m.path, "rid": m.root_id}
                    | {"sz": m.size, "mt": m.mtime_ns}
                    for m in moves
                ],
            ).rowcount
        return n if n >= 0 else len(moves)  # the sum over the rows (sqlite3, psycopg 3)

    def dup_work_waiting(self) -> bool:
        """Photos not yet grouped (dup_of 0), or members whose first photo is gone."""
        p = photos.c
        first = photos.alias("first")
        with self.engine.connect() as c:
            if c.execute(select(p.id).where(p.dup_of == 0).limit(1)).first():
                return True
            orphan = (
                select(p.id)
                .select_from(photos.outerjoin(first, first.c.id == p.dup_of))
                .where(
                    p.dup_of > 0,
                    first.c.id.is_(None) | first.c.dup_of.is_not(None) | (first.c.status != "ok"),
                )
                .limit(1)
            )
            return c.execute(orphan).first() is not None

    def dup_states(self):
        """(ids, hashes, dup_of) of the photos read with a hash, by id, as int64 arrays
        (dup_of -1: NULL)."""
        import numpy as np

        p = photos.c
        q = (
            select(p.id, p.phash, func.coalesce(p.dup_of, -1))
            .where(p.status == "ok", p.phash.is_not(None))
            .order_by(p.id)
        )
        with self.engine.connect() as c:
            a = np.array(c.execute(q).all(), dtype=np.int64).reshape(-1, 3)
        return a[:, 0].copy(), a[:, 1].copy(), a[:, 2].copy()

    def set_dup_of(self, rows: Sequence[tuple[int, int | None]]) -> None:
        if not rows:
            return
        q = update(photos).where(photos.c.id == bindparam("pid")).values(dup_of=bindparam("d"))
        with self.engine.begin() as c:
            for chunk in chunks(list(rows), 5000):
                c.execute(q, [{"pid": i, "d": d} for i, d in chunk])
