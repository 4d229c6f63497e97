"""The schema as it was before versioned migrations: databases made then are adopted at this revision.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "images",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("md5", sa.String(32), nullable=False, unique=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    op.create_table(
        "texts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("sha256", sa.String(64), nullable=False, unique=True),
        sa.Column("text", sa.Text(), nullable=False),
    )
    op.create_table(
        "box_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("image_id", sa.Integer(), sa.ForeignKey("images.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("image_id", "model", "lang", "options"),
    )
    op.create_table(
        "blocks",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("run_id", sa.Integer(), sa.ForeignKey("box_runs.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("vertical", sa.Boolean(), nullable=False),
        *(sa.Column(edge, sa.Integer(), nullable=False) for edge in "lbrt"),
    )
    op.create_table(
        "single_boxes",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("block_id", sa.Integer(), sa.ForeignKey("blocks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("line", sa.Integer(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        *(sa.Column(edge, sa.Integer(), nullable=False) for edge in "lbrt"),
    )
    op.create_table(
        "ocr_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("block_id", sa.Integer(), sa.ForeignKey("blocks.id", ondelete="CASCADE"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("lang", sa.String(8), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("text_id", sa.Integer(), sa.ForeignKey("texts.id"), nullable=False),
        sa.UniqueConstraint("block_id", "model", "lang", "options"),
    )
    op.create_table(
        "translation_runs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("text_id", sa.Integer(), sa.ForeignKey("texts.id"), nullable=False),
        sa.Column("model", sa.String(200), nullable=False),
        sa.Column("lang_src", sa.String(8), nullable=False),
        sa.Column("lang_dst", sa.String(8), nullable=False),
        sa.Column("options", sa.Text(), nullable=False),
        sa.Column("result_id", sa.Integer(), sa.ForeignKey("texts.id"), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.UniqueConstraint("text_id", "model", "lang_src", "lang_dst", "options"),
    )
    for table, column in (("blocks", "run_id"), ("single_boxes", "block_id"), ("translation_runs", "text_id")):
        op.create_index(f"ix_{table}_{column}", table, [column])
    op.create_table(
        "settings",
        sa.Column("key", sa.String(100), primary_key=True),
        sa.Column("value", sa.Text(), nullable=False),
    )
    op.create_table(
        "usage",
        sa.Column("kind", sa.String(20), primary_key=True),
        sa.Column("name", sa.String(200), primary_key=True),
        sa.Column("count", sa.Integer(), nullable=False),
    )


def downgrade() -> None:
    for table in ("usage", "settings", "translation_runs", "ocr_runs", "single_boxes", "blocks", "box_runs",
                  "texts", "images"):
        op.drop_table(table)
