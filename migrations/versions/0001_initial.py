"""initial catalog: roots, photos, thumbnails, features, meta

Revision ID: 0001
Revises:
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "roots",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("path", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("added_at", sa.Float, nullable=False),
    )
    op.create_table(
        "photos",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column(
            "root_id", sa.Integer, sa.ForeignKey("roots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("path", sa.LargeBinary, nullable=False, unique=True),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("status", sa.String(8), nullable=False),
        sa.Column("error", sa.Text),
        sa.Column("width", sa.Integer),
        sa.Column("height", sa.Integer),
        sa.Column("format", sa.String(16)),
        sa.Column("indexed_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_photos_root_id", "photos", ["root_id"])
    op.create_index("ix_photos_status", "photos", ["status"])
    op.create_table(
        "thumbnails",
        sa.Column(
            "photo_id",
            sa.Integer,
            sa.ForeignKey("photos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("codec", sa.String(8), nullable=False),
        sa.Column("data", sa.LargeBinary, nullable=False),
    )
    op.create_table(
        "features",
        sa.Column(
            "photo_id",
            sa.Integer,
            sa.ForeignKey("photos.id", ondelete="CASCADE"),
            primary_key=True,
        ),
        sa.Column("spec", sa.String(16), primary_key=True),
        sa.Column("vector", sa.LargeBinary, nullable=False),
        sa.Column("mean_l", sa.Float, nullable=False),
        sa.Column("mean_a", sa.Float, nullable=False),
        sa.Column("mean_b", sa.Float, nullable=False),
        sa.Column("seq", sa.BigInteger, nullable=False),
    )
    op.create_index("ix_features_spec_seq", "features", ["spec", "seq"])
    op.create_table(
        "meta",
        sa.Column("key", sa.String(64), primary_key=True),
        sa.Column("value", sa.Text, nullable=False),
    )


def downgrade() -> None:
    for t in ("meta", "features", "thumbnails", "photos", "roots"):
        op.drop_table(t)
