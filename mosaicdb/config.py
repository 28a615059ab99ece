"""Where the store lives: `--home DIR` > `MOSAICDB_HOME` > the platformdirs user data dir.
Where the catalog lives: `--db URL` > `MOSAICDB_DB` > catalog.sqlite in the store folder."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "MOSAICDB_HOME"
ENV_DB = "MOSAICDB_DB"
CATALOG_NAME = "catalog.sqlite"


def default_home() -> Path:
    import platformdirs

    return Path(platformdirs.user_data_dir("mosaicdb", appauthor=False))


def resolve_home(home: str | os.PathLike | None = None) -> Path:
    if home:
        return Path(home).expanduser()
    env = os.environ.get(ENV_HOME)
    if env:
        return Path(env).expanduser()
    return default_home()


def resolve_db_url(url: str | None, home: Path) -> str:
    """The catalog's SQLAlchemy URL: given, from MOSAICDB_DB, or SQLite in `home`."""
    return url or os.environ.get(ENV_DB) or default_db_url(home)


def default_db_url(home: Path) -> str:
    return f"sqlite:///{home / CATALOG_NAME}"


def own_catalog(home: Path, url: str | None) -> Path | None:
    """The SQLite file in the store folder when it is the catalog (given `url`, or
    MOSAICDB_DB), else None: a catalog named by any other URL."""
    if resolve_db_url(url, home) == default_db_url(home):
        return home / CATALOG_NAME
    return None
