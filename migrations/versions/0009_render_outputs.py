"""render_outputs: every file written from a render's plan

A re-render of a plan (`render --plan ID`) used to replace the render's one output record,
so the viewer no longer knew an earlier Deep Zoom copy. Each render's existing output becomes
its first row here.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-06
"""

import json

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def upgrade() -> None:
    t = op.create_table(
        "render_outputs",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "render_id",
            sa.Integer,
            sa.ForeignKey("renders.id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("output", sa.Text, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("tile_w", sa.Integer, nullable=False),
        sa.Column("tile_h", sa.Integer, nullable=False),
        sa.Column("blend", sa.Float, nullable=False),
        sa.Column("mean_delta_e", sa.Float),
        sa.Column("seconds", sa.Float),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_render_outputs_render_id", "render_outputs", ["render_id"])
    op.create_index("ix_render_outputs_output", "render_outputs", ["output"])
    conn = op.get_bind()
    rows = conn.execute(
        sa.text(
            "SELECT id, created_at, output, width, height, tile_w, tile_h, options, "
            "mean_delta_e, seconds FROM renders WHERE output IS NOT NULL AND width IS NOT NULL"
        )
    ).all()
    op.bulk_insert(
        t,
        [
            {
                "render_id": r[0],
                "created_at": r[1],
                "output": r[2],
                "width": r[3],
                "height": r[4],
                "tile_w": r[5],
                "tile_h": r[6],
                "blend": float(json.loads(r[7]).get("blend") or 0.0),
                "mean_delta_e": r[8],
                "seconds": r[9],
            }
            for r in rows
        ],
    )


def downgrade() -> None:
    op.drop_index("ix_render_outputs_output", "render_outputs")
    op.drop_index("ix_render_outputs_render_id", "render_outputs")
    op.drop_table("render_outputs")
