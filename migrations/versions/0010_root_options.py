"""roots.include_hidden and roots.exclude: what index was told about a folder, remembered

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("roots") as b:
        b.add_column(sa.Column("include_hidden", sa.Boolean, nullable=True))
        b.add_column(sa.Column("exclude", sa.Text, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("roots") as b:
        b.drop_column("exclude")
        b.drop_column("include_hidden")
