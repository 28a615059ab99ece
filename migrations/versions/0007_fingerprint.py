"""photos.fingerprint: size + a hash of samples of the file's bytes

A renamed or moved file is recognised by it and keeps its id, thumbnail and vectors. Rows
written before this revision have none (NULL) and are read again if they move, once.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as b:
        b.add_column(sa.Column("fingerprint", sa.LargeBinary, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("photos") as b:
        b.drop_column("fingerprint")
