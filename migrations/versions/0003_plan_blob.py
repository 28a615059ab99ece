"""plans as one BLOB per render instead of a row per cell

A row per cell made saving a 100,000-cell plan take seconds; one int64 BLOB takes
milliseconds. Existing plans are carried over.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from array import array

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("renders") as b:
        b.add_column(sa.Column("plan", sa.LargeBinary, nullable=True))
    conn = op.get_bind()
    renders = sa.table("renders", sa.column("id"), sa.column("plan", sa.LargeBinary))
    placements = sa.table(
        "placements", sa.column("render_id"), sa.column("cell"), sa.column("photo_id")
    )
    for (rid,) in conn.execute(sa.select(renders.c.id)).all():
        ids = (
            conn.execute(
                sa.select(placements.c.photo_id)
                .where(placements.c.render_id == rid)
                .order_by(placements.c.cell)
            )
            .scalars()
            .all()
        )
        conn.execute(
            renders.update().where(renders.c.id == rid).values(plan=array("q", ids).tobytes())
        )
    with op.batch_alter_table("renders") as b:
        b.alter_column("plan", existing_type=sa.LargeBinary, nullable=False)
    op.drop_index("ix_placements_photo_id", table_name="placements")
    op.drop_table("placements")


def downgrade() -> None:
    op.create_table(
        "placements",
        sa.Column(
            "render_id",
            sa.Integer,
            sa.ForeignKey("renders.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("cell", sa.Integer, primary_key=True),
        sa.Column("photo_id", sa.Integer, nullable=False),
    )
    op.create_index("ix_placements_photo_id", "placements", ["photo_id"])
    conn = op.get_bind()
    renders = sa.table("renders", sa.column("id"), sa.column("plan", sa.LargeBinary))
    placements = sa.table(
        "placements", sa.column("render_id"), sa.column("cell"), sa.column("photo_id")
    )
    for rid, blob in conn.execute(sa.select(renders.c.id, renders.c.plan)).all():
        a = array("q")
        a.frombytes(blob)
        if len(a):
            conn.execute(
                placements.insert(),
                [{"render_id": rid, "cell": i, "photo_id": p} for i, p in enumerate(a)],
            )
    with op.batch_alter_table("renders") as b:
        b.drop_column("plan")
