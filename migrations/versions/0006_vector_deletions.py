"""vector_deletions: photos whose vectors were deleted, under the change counter that did it

A machine's vector file (a cache of the catalog) drops exactly these since its own counter
instead of reading every photo id of the catalog.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-26
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "vector_deletions",
        sa.Column("seq", sa.BigInteger, primary_key=True),
        sa.Column("photo_id", sa.Integer, primary_key=True),
    )


def downgrade() -> None:
    op.drop_table("vector_deletions")
