"""Reader profiles: each profile has its own selection, manual translations and glossary; what a
server stored before becomes the default profile's (the bare paths' one, id 1).

The selection leaves the settings table for a row per profile; manual translations leave
translation_runs (model "manual") for a table of their own, keyed by profile; the glossary gets a
profile column (as a new table, glossary_terms: a renamed table would keep its old constraint names
on PostgreSQL).

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

DEFAULT_PROFILE = 1
SELECTION_COLUMNS = ("lang_src", "lang_dst", "box_model", "ocr_model", "tsl_model")
settings = sa.table("settings", sa.column("key", sa.String), sa.column("value", sa.Text))
runs = sa.table("translation_runs", sa.column("text_id", sa.Integer), sa.column("model", sa.String),
                sa.column("lang_src", sa.String), sa.column("lang_dst", sa.String), sa.column("options", sa.Text),
                sa.column("result_id", sa.Integer), sa.column("created", sa.DateTime(timezone=True)))
MANUAL_COLUMNS = ("text_id", "lang_src", "lang_dst", "result_id", "created")
GLOSSARY_COLUMNS = ("lang_src", "lang_dst", "term", "translation")


def _profile_id() -> sa.Column:
    return sa.Column("profile_id", sa.Integer, sa.ForeignKey("profiles.id", ondelete="CASCADE"), primary_key=True)


def upgrade() -> None:
    profiles = op.create_table(
        "profiles",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("name", sa.String(100), nullable=False, unique=True),
        sa.Column("key_sha256", sa.String(64), unique=True),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
        sa.Column("last_used", sa.DateTime(timezone=True)),
    )
    # the first row of a new table: id 1 (DEFAULT_PROFILE) on both databases, their sequences kept in step
    op.execute(profiles.insert().values(name="default", created=sa.func.current_timestamp()))

    selections = op.create_table(
        "selections", _profile_id(),
        *(sa.Column(name, sa.String(8 if name.startswith("lang") else 200), nullable=False)
          for name in SELECTION_COLUMNS))
    stored = {name: sa.func.coalesce(sa.select(settings.c.value).where(settings.c.key == name).scalar_subquery(), "")
              for name in SELECTION_COLUMNS}
    op.execute(selections.insert().from_select(
        ["profile_id", *SELECTION_COLUMNS], sa.select(sa.literal(DEFAULT_PROFILE), *stored.values())))
    op.execute(settings.delete().where(settings.c.key.in_(SELECTION_COLUMNS)))

    manual = op.create_table(
        "manual_translations", _profile_id(),
        sa.Column("text_id", sa.Integer, sa.ForeignKey("texts.id"), primary_key=True),
        sa.Column("lang_src", sa.String(8), primary_key=True),
        sa.Column("lang_dst", sa.String(8), primary_key=True),
        sa.Column("result_id", sa.Integer, sa.ForeignKey("texts.id"), nullable=False),
        sa.Column("created", sa.DateTime(timezone=True), nullable=False),
    )
    is_manual = runs.c.model == "manual"
    op.execute(manual.insert().from_select(
        ["profile_id", *MANUAL_COLUMNS],
        sa.select(sa.literal(DEFAULT_PROFILE), *(runs.c[name] for name in MANUAL_COLUMNS)).where(is_manual)))
    op.execute(runs.delete().where(is_manual))

    glossary = op.create_table(
        "glossary_terms", _profile_id(),
        sa.Column("lang_src", sa.String(8), primary_key=True),
        sa.Column("lang_dst", sa.String(8), primary_key=True),
        sa.Column("term", sa.String(100), primary_key=True),
        sa.Column("translation", sa.String(200), nullable=False),
    )
    old_glossary = sa.table("glossary", *(sa.column(name, sa.String) for name in GLOSSARY_COLUMNS))
    op.execute(glossary.insert().from_select(
        ["profile_id", *GLOSSARY_COLUMNS],
        sa.select(sa.literal(DEFAULT_PROFILE), *(old_glossary.c[name] for name in GLOSSARY_COLUMNS))))
    op.drop_table("glossary")


def downgrade() -> None:
    """Back to one reader: the default profile's data returns to where 0005 kept it; other profiles' are lost."""
    glossary = op.create_table(
        "glossary",
        sa.Column("lang_src", sa.String(8), primary_key=True),
        sa.Column("lang_dst", sa.String(8), primary_key=True),
        sa.Column("term", sa.String(100), primary_key=True),
        sa.Column("translation", sa.String(200), nullable=False),
    )
    terms = sa.table("glossary_terms", sa.column("profile_id", sa.Integer),
                     *(sa.column(name, sa.String) for name in GLOSSARY_COLUMNS))
    op.execute(glossary.insert().from_select(
        list(GLOSSARY_COLUMNS), sa.select(*(terms.c[name] for name in GLOSSARY_COLUMNS))
        .where(terms.c.profile_id == DEFAULT_PROFILE)))
    manual = sa.table("manual_translations", sa.column("profile_id", sa.Integer),
                      *(sa.column(name) for name in MANUAL_COLUMNS))
    op.execute(runs.insert().from_select(
        ["model", "options", *MANUAL_COLUMNS],
        sa.select(sa.literal("manual"), sa.literal(""), *(manual.c[name] for name in MANUAL_COLUMNS))
        .where(manual.c.profile_id == DEFAULT_PROFILE)))
    selections = sa.table("selections", sa.column("profile_id", sa.Integer),
                          *(sa.column(name, sa.String) for name in SELECTION_COLUMNS))
    for name in SELECTION_COLUMNS:
        op.execute(settings.insert().from_select(
            ["key", "value"], sa.select(sa.literal(name), selections.c[name])
            .where(selections.c.profile_id == DEFAULT_PROFILE)))
    for table in ("glossary_terms", "manual_translations", "selections", "profiles"):
        op.drop_table(table)
