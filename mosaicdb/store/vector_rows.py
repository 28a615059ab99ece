"""The stored feature vectors: their rows, the change counter and the deletion log that the
vector cache (store/vectors.py) reads to stay in step with the catalog."""

from __future__ import annotations

from collections.abc import Iterator

from sqlalchemy import (
    func,
    select,
)

from mosaicdb.store.postgres import write_features_pg
from mosaicdb.store.schema import (
    features,
    thumbnails,
    vector_deletions,
)
from mosaicdb.store.sql import (
    chunks,
    dialect_insert,
    sql_sum,
)


class VectorRows:
    """Vector rows (mixed into Catalog)."""

    def count_missing_features(self, spec: str) -> int:
        have = select(features.c.photo_id).where(features.c.spec == spec)
        q = select(func.count()).select_from(thumbnails).where(thumbnails.c.photo_id.not_in(have))
        return int(self._scan(q)[0][0])  # a scan of the thumbnails: Ctrl-C stops it

    def feature_vectors(self, spec: str, ids) -> dict[int, bytes]:
        """Vector blobs of `spec` for these photo ids (those that have one)."""
        out: dict[int, bytes] = {}
        with self.engine.connect() as c:
            for chunk in chunks(sorted(set(int(i) for i in ids)), 500):
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
                write_features_pg(self, c, spec, rows)
            return
        with self.engine.begin() as c:
            seq = self.next_seq(c)
            ins = dialect_insert(c)(features)
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

    # -- features -----------------------------------------------------------------------
    def feature_state(self, spec: str) -> tuple[int, int, int]:
        """(count, sum of ids, latest change counter of a vector or of a deletion) of the
        vectors of `spec`: a cheap fingerprint."""
        with self.engine.connect() as c:
            q = select(func.count(), sql_sum(features.c.photo_id)).where(features.c.spec == spec)
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
