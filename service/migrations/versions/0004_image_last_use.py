"""When each image was last asked for, so the retention policy prunes the least recently used.

Revision ID: 0004
Revises: 0003
"""

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("images", sa.Column("last_used", sa.DateTime(timezone=True), nullable=True))
    op.execute("UPDATE images SET last_used = created")
    op.create_index("ix_images_last_used", "images", ["last_used"])


def downgrade() -> None:
    op.drop_index("ix_images_last_used", "images")
    op.drop_column("images", "last_used")
