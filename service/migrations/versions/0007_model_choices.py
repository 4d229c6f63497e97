"""The models each reader profile chose itself per source language (box, OCR) and language pair
(translation): `set_lang` selects them again when the reader comes back to those languages, and the
registry's per-language defaults elsewhere. They go with the profile (ON DELETE CASCADE).

Revision ID: 0007
Revises: 0006
"""

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "model_choices",
        sa.Column("profile_id", sa.Integer, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True),
        sa.Column("kind", sa.String(3), primary_key=True),
        sa.Column("lang_src", sa.String(8), primary_key=True),
        sa.Column("lang_dst", sa.String(8), primary_key=True),
        sa.Column("model", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    """The remembered choices are lost; the selections stay."""
    op.drop_table("model_choices")
