"""Alembic migrations of the mosaicdb catalog (installed as the package `mosaicdb.migrations`)."""
