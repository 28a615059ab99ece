"""Reads of photos, thumbnails, folders and errors for the queries and render."""

from __future__ import annotations

from collections.abc import Sequence

from sqlalchemy import (
    LargeBinary,
    Text,
    bindparam,
    cast,
    func,
    select,
)

from mosaicdb.records import PathPrefilter
from mosaicdb.store.schema import (
    features,
    photos,
    roots,
    thumbnails,
)
from mosaicdb.store.sql import chunks, prefix_range, sql_sum


class CatalogReads:
    """Reads for the queries and render (mixed into Catalog)."""

    def photo_details(self, ids, spec: str) -> dict[int, dict]:
        """photo id → path, size, width, height, format and `vector` (the `spec` feature
        BLOB, None if missing) of each of `ids` still in the catalog (for the viewer)."""
        p, f = photos.c, features.c
        out: dict[int, dict] = {}
        with self.engine.connect() as c:
            for chunk in chunks(sorted(set(int(i) for i in ids)), 500):
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
            for chunk in chunks(sorted(set(int(i) for i in ids)), 500):
                q = select(thumbnails.c.photo_id).where(thumbnails.c.photo_id.in_(chunk))
                out.update(r[0] for r in c.execute(q))
        return out

    def thumbnails(self, ids) -> dict[int, tuple[str, bytes, int, int]]:
        """photo id → (codec, data, width, height) of its stored thumbnail."""
        out = {}
        t = thumbnails.c
        with self.engine.connect() as c:
            for chunk in chunks([int(i) for i in ids], 500):
                q = select(t.photo_id, t.codec, t.data, t.width, t.height).where(
                    t.photo_id.in_(chunk)
                )
                out.update({r[0]: tuple(r[1:]) for r in c.execute(q)})
        return out

    def photo_ids(self, paths: Sequence[bytes]) -> dict[bytes, int]:
        out: dict[bytes, int] = {}
        with self.engine.connect() as c:
            for chunk in chunks(list(paths), 500):
                q = select(photos.c.path, photos.c.id).where(photos.c.path.in_(chunk))
                out.update((p, i) for p, i in c.execute(q))
        return out

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
            q = select(sql_sum(func.length(thumbnails.c.data)))
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
                    for chunk in chunks(sorted(set(ids)), 500)
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

    def error_count(self, root_id: int, under: bytes | None = None) -> int:
        """Photos of a folder (only those under `under` if given) whose file could not be read."""
        q = select(func.count()).where((photos.c.status == "error") & (photos.c.root_id == root_id))
        if under is not None:
            q = q.where((photos.c.path == under) | prefix_range(photos.c.path, under))
        with self.engine.connect() as c:
            return int(c.execute(q).scalar_one())

    def errors(self) -> list[tuple[bytes, str]]:
        with self.engine.connect() as c:
            q = select(photos.c.path, photos.c.error).where(photos.c.status == "error")
            return [tuple(r) for r in c.execute(q.order_by(photos.c.path))]

    # -- near-duplicates (index/dupes.py) ----------------------------------------------------
    def dup_groups(self) -> list[tuple[int, bytes, list[tuple[int, bytes]]]]:
        """Each near-duplicate group: (first id, its path, [(id, path) of the others])."""
        p = photos.c
        first = photos.alias("first")
        q = (
            select(first.c.id, first.c.path, p.id, p.path)
            .select_from(photos.join(first, first.c.id == p.dup_of))
            .where(p.dup_of > 0, p.status == "ok")
            .order_by(first.c.id, p.id)
        )
        groups: dict[int, tuple[int, bytes, list[tuple[int, bytes]]]] = {}
        with self.engine.connect() as c:
            for fid, fpath, pid, path in c.execute(q):
                groups.setdefault(fid, (fid, fpath, []))[2].append((pid, path))
        return list(groups.values())

    def dup_members(self):
        """(members, firsts): the photos in a near-duplicate group other than its first, and
        their groups' first photos, as aligned int64 arrays."""
        import numpy as np

        p = photos.c
        q = select(p.id, p.dup_of).where(p.dup_of > 0, p.status == "ok")
        with self.engine.connect() as c:
            a = np.array(c.execute(q).all(), dtype=np.int64).reshape(-1, 2)
        return a[:, 0].copy(), a[:, 1].copy()

    def dup_counts(self) -> tuple[int, int]:
        """(groups, photos in them) of near-duplicates."""
        p = photos.c
        q = select(func.count(func.distinct(p.dup_of)), func.count()).where(
            p.dup_of > 0, p.status == "ok"
        )
        with self.engine.connect() as c:
            g, members = c.execute(q).one()
        return int(g), int(members) + int(g)
