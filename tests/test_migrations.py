"""Schema: migrations upgrade an empty catalog, have one head, equal the models; a newer
catalog is refused."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

import mosaicdb
from mosaicdb import db, migrate
from mosaicdb.errors import SchemaTooNewError


def test_single_head_and_code_revision_is_head():
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == db.SCHEMA_REVISION


def test_upgrade_from_empty_matches_models(tmp_path):
    engine = db.make_engine(db.sqlite_url(tmp_path / "c.sqlite"))
    assert migrate.current_revision(engine) is None
    assert migrate.ensure_schema(engine) == db.SCHEMA_REVISION
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), db.metadata)
        assert diff == [], diff
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_newer_schema_is_refused(tmp_path, cli):
    with mosaicdb.open(tmp_path / "s"):
        pass
    engine = db.make_engine(db.sqlite_url(tmp_path / "s" / "catalog.sqlite"))
    with engine.begin() as c:
        c.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    with pytest.raises(SchemaTooNewError, match="revision 9999.*newer version"):
        mosaicdb.open(tmp_path / "s")
    r = cli("--home", tmp_path / "s", "roots")
    assert r.exit_code == 1
    assert r.output.startswith("Error: the catalog has schema revision 9999")


def test_migrations_ship_inside_the_package():
    d = migrate.migrations_dir()
    assert (d / "env.py").is_file()
    assert any(p.name.startswith("0001_") for p in (d / "versions").iterdir())
