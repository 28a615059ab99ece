"""Saved renders and their plans."""

from __future__ import annotations

import time

from sqlalchemy import (
    insert,
    select,
    update,
)

from mosaicdb.store.schema import (
    renders,
)


class RenderRecords:
    """Saved renders and their plans (mixed into Catalog)."""

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
