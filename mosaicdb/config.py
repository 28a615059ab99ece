"""Where the store lives: `--home DIR` > `MOSAICDB_HOME` > the platformdirs user data dir."""

from __future__ import annotations

import os
from pathlib import Path

ENV_HOME = "MOSAICDB_HOME"
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
