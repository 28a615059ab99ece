"""Alembic environment: runs on the connection mosaicdb hands over (migrate.py), or on the
URL from alembic.ini / MOSAICDB_DB / MOSAICDB_HOME when a developer runs `alembic` by hand."""

import os

from alembic import context

from mosaicdb import config as mconfig
from mosaicdb.store import schema

cfg = context.config
target_metadata = schema.metadata


def _url() -> str:
    url = cfg.get_main_option("sqlalchemy.url")
    if url:
        return url
    if os.environ.get("MOSAICDB_DB"):
        return os.environ["MOSAICDB_DB"]
    return schema.sqlite_url(mconfig.resolve_home() / mconfig.CATALOG_NAME)


def _run(connection):
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",  # SQLite ALTERs need batch mode
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


if context.is_offline_mode():
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()
else:
    conn = cfg.attributes.get("connection")
    if conn is not None:
        _run(conn)
    else:
        engine = schema.make_engine(_url())
        with engine.begin() as connection:
            _run(connection)
