"""photos.phash and photos.dup_of: near-duplicate photos

`phash` is the 64-bit perceptual hash of the thumbnail (features.perceptual_hash); `dup_of`
the photo whose near-duplicate this one is (the first of its group; NULL for that one and for
photos in no group). Rows written before this revision have no hash: they join groups when
they are read again.

Revision ID: 0008
Revises: 0007
Create Date: 2026-12-06
"""

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("photos") as b:
        b.add_column(sa.Column("phash", sa.BigInteger, nullable=True))
        b.add_column(sa.Column("dup_of", sa.Integer, nullable=True))
    op.create_index("ix_photos_dup_of", "photos", ["dup_of"])


def downgrade() -> None:
    op.drop_index("ix_photos_dup_of", "photos")
    with op.batch_alter_table("photos") as b:
        b.drop_column("dup_of")
        b.drop_column("phash")
