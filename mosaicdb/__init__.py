"""mosaicdb: a persistent, incremental photo tile index and a photomosaic renderer.

    import mosaicdb
    lib = mosaicdb.open()            # the store in MOSAICDB_HOME or the user data dir
    lib.index(["~/Pictures"])        # -> IndexSummary

Importing this package is cheap; numpy, pyvips and faiss load when first needed.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["open", "Library", "MosaicdbError", "__version__"]

from mosaicdb.errors import MosaicdbError


def open(home=None, progress=None, db=None, create=True):  # noqa: A001 - mirrors the builtin on purpose: mosaicdb.open(home)
    """Open (create or upgrade) the store at `home`; `db` (or MOSAICDB_DB) is the catalog's
    SQLAlchemy URL when it is not the SQLite file in `home` (e.g. postgresql+psycopg://…).
    With `create=False` a folder without a store is an error instead of a new, empty store."""
    from mosaicdb.library import Library

    return Library.open(home, progress=progress, db_url=db, create=create)


def __getattr__(name):
    if name == "Library":
        from mosaicdb.library import Library

        return Library
    raise AttributeError(name)
