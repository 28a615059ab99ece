"""Schema: migrations upgrade an empty catalog, have one head, equal the models; a newer
catalog is refused."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import text

import mosaicdb
from mosaicdb.errors import SchemaTooNewError
from mosaicdb.store import catalog as db
from mosaicdb.store import migrate, schema


def test_single_head_and_code_revision_is_head():
    script = ScriptDirectory.from_config(migrate.alembic_config())
    assert len(script.get_heads()) == 1
    assert script.get_current_head() == schema.SCHEMA_REVISION


def upgrade_from_empty(engine) -> None:
    """Run every migration on an empty database; check it ends at the head revision with
    exactly the models' schema."""
    from alembic import command

    assert migrate.current_revision(engine) is None
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")
    assert migrate.current_revision(engine) == schema.SCHEMA_REVISION
    with engine.connect() as c:
        diff = compare_metadata(MigrationContext.configure(c), schema.metadata)
        assert diff == [], diff


def test_upgrade_from_empty_matches_models(tmp_path):
    """Running every migration from nothing gives exactly the models' schema."""
    engine = schema.make_engine(schema.sqlite_url(tmp_path / "c.sqlite"))
    upgrade_from_empty(engine)
    with engine.connect() as c:
        assert c.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert c.execute(text("PRAGMA busy_timeout")).scalar() == 30000


def test_newer_schema_is_refused(tmp_path, cli):
    with mosaicdb.open(tmp_path / "s"):
        pass
    engine = schema.make_engine(schema.sqlite_url(tmp_path / "s" / "catalog.sqlite"))
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


def test_new_store_fast_path_equals_migrations(tmp_path):
    """A new store is created from the models and stamped; it must equal the migrated one."""
    from sqlalchemy import inspect

    fresh = schema.make_engine(schema.sqlite_url(tmp_path / "fresh.sqlite"))
    assert migrate.ensure_schema(fresh) == schema.SCHEMA_REVISION
    with fresh.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), schema.metadata) == []
        assert migrate.current_revision(fresh) == schema.SCHEMA_REVISION
    insp = inspect(fresh)
    assert {i["name"] for i in insp.get_indexes("photos")} == {
        "ix_photos_root_id",
        "ix_photos_status_format",
        "ix_photos_dup_of",
    }


def test_old_catalog_is_upgraded(tmp_path):
    """A catalog at an older revision is upgraded through Alembic on open."""
    from alembic import command

    engine = schema.make_engine(schema.sqlite_url(tmp_path / "s" / "catalog.sqlite"))
    (tmp_path / "s").mkdir()
    cfg = migrate.alembic_config()
    first = ScriptDirectory.from_config(cfg).get_base()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, first)
    with mosaicdb.open(tmp_path / "s"):
        pass
    assert migrate.current_revision(engine) == schema.SCHEMA_REVISION


def test_0003_carries_plans_over(tmp_path):
    """A catalog with a per-cell plan (revision 0002) is upgraded to one BLOB per render."""
    from alembic import command

    engine = schema.make_engine(schema.sqlite_url(tmp_path / "c.sqlite"))
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")
        conn.execute(
            text(
                "INSERT INTO renders (id, created_at, target, options, spec, cols, rows, tile_w, "
                "tile_h) VALUES (1, 0, 't.jpg', '{}', 'lab3v1', 2, 1, 8, 8)"
            )
        )
        conn.execute(text("INSERT INTO placements VALUES (1, 1, 42), (1, 0, 7)"))
    assert migrate.ensure_schema(engine) == schema.SCHEMA_REVISION
    assert db.Catalog(engine).plan(1) == [7, 42]
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), schema.metadata) == []


# -- PostgreSQL (a throwaway server started by the `pg` fixture) ------------------------------


def _pg_schema(engine) -> dict:
    """Tables → columns (name, type, nullable), indexes and unique constraints, as PostgreSQL
    reports them: two databases with equal dicts have the same schema."""
    from sqlalchemy import inspect

    insp = inspect(engine)
    out = {}
    for t in sorted(insp.get_table_names()):
        out[t] = (
            [(c["name"], str(c["type"]), c["nullable"]) for c in insp.get_columns(t)],
            sorted((i["name"], tuple(i["column_names"])) for i in insp.get_indexes(t)),
            sorted(tuple(u["column_names"]) for u in insp.get_unique_constraints(t)),
            insp.get_pk_constraint(t)["constrained_columns"],
            sorted(
                (f["referred_table"], tuple(f["constrained_columns"]))
                for f in insp.get_foreign_keys(t)
            ),
        )
    return out


def test_postgresql_upgrade_from_empty_matches_models_and_fast_path(pg):
    """Every migration runs on an empty PostgreSQL database and gives the models' schema;
    the new-catalog fast path (create_all + stamp) gives the same schema there too."""
    migrated = schema.make_engine(pg.create_database())
    upgrade_from_empty(migrated)
    fresh = schema.make_engine(pg.create_database())
    assert migrate.ensure_schema(fresh) == schema.SCHEMA_REVISION
    with fresh.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), schema.metadata) == []
    assert _pg_schema(fresh) == _pg_schema(migrated)
    cols = {c[0]: c[1] for c in _pg_schema(fresh)["thumbnails"][0]}
    assert cols["data"] == "BYTEA"
    migrated.dispose()
    fresh.dispose()


def test_postgresql_old_catalog_upgraded_under_advisory_lock(pg):
    """Several processes opening an old PostgreSQL catalog at once: one upgrades (the others
    wait on the advisory lock), all end at the head revision."""
    from concurrent.futures import ThreadPoolExecutor

    from alembic import command

    url = pg.create_database()
    engine = schema.make_engine(url)
    cfg = migrate.alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0002")

    def upgrade(_):
        e = schema.make_engine(url)
        try:
            return migrate.ensure_schema(e)
        finally:
            e.dispose()

    with ThreadPoolExecutor(4) as ex:
        assert list(ex.map(upgrade, range(4))) == [schema.SCHEMA_REVISION] * 4
    with engine.connect() as c:
        assert compare_metadata(MigrationContext.configure(c), schema.metadata) == []
    engine.dispose()
