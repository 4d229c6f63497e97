"""Alembic's entry point: migrations run on the connection `service.store.upgrade_schema` passes in.

New migration (from the repository root, in the virtualenv):
    alembic -c service/migrations/alembic.ini revision --autogenerate -m "what changes"
then read and fix the generated file; tests/store/test_store.py checks that migrations and models agree.
"""

from alembic import context

from service.store import Base


def run_migrations(connection) -> None:
    context.configure(connection=connection, target_metadata=Base.metadata, render_as_batch=True)
    with context.begin_transaction():
        context.run_migrations()


given = context.config.attributes.get("connection")
if given is not None:
    run_migrations(given)
else:  # the alembic command line: the URL from -x url=..., else the default data folder's SQLite file
    from sqlalchemy import create_engine

    from core.settings import AppArgs

    url = context.get_x_argument(as_dictionary=True).get("url") or AppArgs().resolved_database_url
    with create_engine(url).begin() as connection:
        run_migrations(connection)
