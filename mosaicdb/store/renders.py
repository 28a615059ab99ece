"""Saved renders and their plans."""

from __future__ import annotations

import time

from sqlalchemy import (
    insert,
    select,
    update,
)

from mosaicdb.store.schema import (
    render_outputs,
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

    def record_output(self, render_id: int, **fields) -> None:
        """A file written from the render's plan: one more output row, and the render's own
        columns (the latest output) set from it."""
        latest = {k: fields[k] for k in ("output", "width", "height", "mean_delta_e", "seconds")}
        with self.engine.begin() as c:
            c.execute(
                insert(render_outputs).values(render_id=render_id, created_at=time.time(), **fields)
            )
            c.execute(update(renders).where(renders.c.id == render_id).values(**latest))

    def render_outputs(self, render_ids=None) -> dict[int, list[dict]]:
        """render id → its outputs, oldest first."""
        q = select(render_outputs).order_by(render_outputs.c.id)
        if render_ids is not None:
            q = q.where(render_outputs.c.render_id.in_(list(render_ids)))
        out: dict[int, list[dict]] = {}
        with self.engine.connect() as c:
            for r in c.execute(q).mappings():
                out.setdefault(r["render_id"], []).append(dict(r))
        return out

    def renders_written_to(self, output: str) -> list[int]:
        """Renders with an output at this path, the one written there last first."""
        q = (
            select(render_outputs.c.render_id)
            .where(render_outputs.c.output == output)
            .order_by(render_outputs.c.id.desc())
        )
        with self.engine.connect() as c:
            return [r[0] for r in c.execute(q)]

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
