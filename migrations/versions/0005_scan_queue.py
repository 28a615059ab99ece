"""scan_queue: files waiting to be indexed, shared by concurrent indexers (PostgreSQL)

Each indexer adds what its walk found new or changed and claims rows with a lease (owner,
lease_until) using FOR UPDATE SKIP LOCKED; writing a result deletes its row. On SQLite the
table exists but stays empty (one writer).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "scan_queue",
        sa.Column("path", sa.LargeBinary, primary_key=True),
        sa.Column(
            "root_id", sa.Integer, sa.ForeignKey("roots.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("size", sa.BigInteger, nullable=False),
        sa.Column("mtime_ns", sa.BigInteger, nullable=False),
        sa.Column("seen_indexed_at", sa.Float),
        sa.Column("owner", sa.String(64)),
        sa.Column("lease_until", sa.Float, nullable=False),
    )
    op.create_index("ix_scan_queue_root_lease", "scan_queue", ["root_id", "lease_until"])


def downgrade() -> None:
    op.drop_index("ix_scan_queue_root_lease", table_name="scan_queue")
    op.drop_table("scan_queue")
