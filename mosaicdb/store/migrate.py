"""Create or upgrade the catalog schema with the Alembic migrations shipped in the package,
and refuse a catalog written by a newer mosaicdb.

Alembic is imported only when an upgrade is needed: it adds noticeable import time, and the
common case (schema already current) is answered by one SELECT.
"""

from __future__ import annotations

import contextlib
import fcntl
from importlib import resources
from pathlib import Path

from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine

from mosaicdb.errors import SchemaTooNewError, StoreError
from mosaicdb.store import schema


def migrations_dir() -> Path:
    return Path(str(resources.files("mosaicdb.migrations")))


def alembic_config(url: str | None = None):
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(migrations_dir()))
    if url:
        cfg.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return cfg


def known_revisions() -> set[str]:
    from alembic.script import ScriptDirectory

    return {s.revision for s in ScriptDirectory.from_config(alembic_config()).walk_revisions()}


def current_revision(engine: Engine) -> str | None:
    with engine.connect() as c:
        if not inspect(c).has_table("alembic_version"):
            return None
        return c.execute(text("SELECT version_num FROM alembic_version")).scalar()


@contextlib.contextmanager
def _file_lock(path: Path | None):
    if path is None:
        yield
        return
    with open(path, "a+") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@contextlib.contextmanager
def _schema_lock(engine: Engine, lock_path: Path | None):
    """One upgrader at a time: a file lock in the store folder for SQLite, a PostgreSQL
    advisory lock (held by its own connection) for a server catalog shared by machines."""
    if engine.dialect.name != "postgresql":
        with _file_lock(lock_path):
            yield
        return
    with engine.connect() as c:
        schema.advisory_lock(c)
        c.commit()
        try:
            yield
        finally:
            schema.advisory_unlock(c)
            c.commit()


def ensure_schema(engine: Engine, lock_path: Path | None = None) -> str:
    """Bring the catalog to this code's schema; return the revision it is at."""
    rev = current_revision(engine)
    if rev == schema.SCHEMA_REVISION:
        return rev
    with _schema_lock(engine, lock_path):
        rev = current_revision(engine)
        if rev == schema.SCHEMA_REVISION:
            return rev
        if rev is not None and rev not in known_revisions():
            raise SchemaTooNewError(
                f"the catalog has schema revision {rev}, which this mosaicdb does not know "
                "(it was written by a newer version); upgrade mosaicdb to use this store"
            )
        try:
            if rev is None and not inspect(engine).get_table_names():
                # A brand-new catalog: create the tables from the models and stamp the head
                # revision (Alembic's documented recipe); a test checks the two are identical.
                with engine.begin() as conn:
                    schema.metadata.create_all(conn)
                    conn.execute(
                        text(
                            "CREATE TABLE alembic_version (version_num VARCHAR(32) "
                            "NOT NULL, CONSTRAINT alembic_version_pkc "
                            "PRIMARY KEY (version_num))"
                        )
                    )
                    conn.execute(
                        text("INSERT INTO alembic_version VALUES (:v)"),
                        {"v": schema.SCHEMA_REVISION},
                    )
                return schema.SCHEMA_REVISION
            from alembic import command

            cfg = alembic_config()
            with engine.begin() as conn:
                cfg.attributes["connection"] = conn
                command.upgrade(cfg, "head")
        except Exception as e:  # a failed migration must not look like a traceback to users
            reason = getattr(e, "orig", None) or e
            raise StoreError(f"could not upgrade the catalog schema: {reason}") from e
        return current_revision(engine)
