"""saved renders and their plans

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "renders",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("target", sa.Text, nullable=False),
        sa.Column("options", sa.Text, nullable=False),
        sa.Column("spec", sa.String(16), nullable=False),
        sa.Column("cols", sa.Integer, nullable=False),
        sa.Column("rows", sa.Integer, nullable=False),
        sa.Column("tile_w", sa.Integer, nullable=False),
        sa.Column("tile_h", sa.Integer, nullable=False),
        sa.Column("output", sa.Text),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("distinct_tiles", sa.Integer),
        sa.Column("mean_delta_e", sa.Float),
        sa.Column("seconds", sa.Float),
        sqlite_autoincrement=True,
    )
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


def downgrade() -> None:
    op.drop_table("placements")
    op.drop_table("renders")
