"""The reader's glossary: per language pair, terms with the translation they must get.

Revision ID: 0005
Revises: 0004
"""

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "glossary",
        sa.Column("lang_src", sa.String(8), primary_key=True),
        sa.Column("lang_dst", sa.String(8), primary_key=True),
        sa.Column("term", sa.String(100), primary_key=True),
        sa.Column("translation", sa.String(200), nullable=False),
    )


def downgrade() -> None:
    op.drop_table("glossary")
