"""Shared fixtures: images with known colours made in tmp_path, a store, a CLI runner."""

from __future__ import annotations

import contextlib
import os
import sqlite3
from pathlib import Path

import numpy as np
import pytest
import pyvips
from typer.testing import CliRunner

from mosaicdb import features as F

os.environ.pop("MOSAICDB_DB", None)  # the tests choose their catalog (db_url below)

# Named sRGB colours used across the tests, with their Lab values computed independently.
COLOURS = {
    "red": (230, 30, 30),
    "green": (30, 200, 60),
    "blue": (30, 60, 220),
    "grey": (128, 128, 128),
    "yellow": (250, 210, 20),
    "black": (10, 10, 10),
    "white": (245, 245, 245),
    "purple": (140, 40, 160),
}


@contextlib.contextmanager
def sqlite_db(path, **kw):
    """A connection to a store's catalog, committed and closed on leaving. sqlite3's own
    `with` only commits: the connection stays open until the cycle collector frees it, and
    its close then checkpoints and deletes the -wal and -shm files at some later moment (a
    test copying a store saw them vanish mid-copy)."""
    c = sqlite3.connect(path, **kw)
    try:
        with c:
            yield c
    finally:
        c.close()


def lab_of(rgb) -> np.ndarray:
    return F.srgb8_to_lab(np.array(rgb, dtype=np.float64))


def solid(path: Path, rgb, size=(320, 240), **save_kw) -> Path:
    w, h = size
    im = pyvips.Image.black(w, h, bands=3).new_from_image(list(rgb)).cast("uchar")
    im = im.copy(interpretation="srgb")
    path.parent.mkdir(parents=True, exist_ok=True)
    im.write_to_file(str(path), **save_kw)
    return path


def noise_jpeg(path: Path, size=(640, 480), seed=0, q=85) -> Path:
    rng = np.random.default_rng(seed)
    w, h = size
    base = rng.integers(0, 255, size=(h // 16 + 1, w // 16 + 1, 3), dtype=np.uint8)
    im = pyvips.Image.new_from_array(base).copy(interpretation="srgb").resize(16, kernel="linear")
    im = im.crop(0, 0, w, h)
    path.parent.mkdir(parents=True, exist_ok=True)
    im.write_to_file(str(path), Q=q)
    return path


@pytest.fixture
def lib_dir(tmp_path) -> Path:
    d = tmp_path / "photos"
    d.mkdir()
    return d


@pytest.fixture
def home(tmp_path) -> Path:
    return tmp_path / "store"


@pytest.fixture(scope="session")
def pg():
    """A throwaway PostgreSQL cluster (tests/pg_cluster.py) for the whole session; the tests
    that need it skip with the reason when PostgreSQL or psycopg is not installed."""
    import pg_cluster

    reason = pg_cluster.unavailable_reason()
    if reason:
        pytest.skip(reason)
    cluster = pg_cluster.Cluster().start()
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request) -> str:
    """Ask for this fixture to run a test on both catalogs: `lib` and `cli` then use an empty
    PostgreSQL database in the postgresql run."""
    return request.param


@pytest.fixture
def db_url(request) -> str | None:
    """The catalog URL of this test: None (SQLite in the store folder) unless the test asks
    for `backend` and it is postgresql, then a new empty database."""
    if "backend" not in request.fixturenames or request.getfixturevalue("backend") == "sqlite":
        return None
    return request.getfixturevalue("pg").create_database()


@pytest.fixture
def lib(home, db_url):
    import mosaicdb

    with mosaicdb.open(home, db=db_url) as library:
        yield library


@pytest.fixture
def runner():
    return CliRunner()


@pytest.fixture
def cli(runner, home, db_url):
    """Invoke the CLI against the test store; returns the click Result."""
    from mosaicdb.cli import app

    def run(*args, **kw):
        env = {"MOSAICDB_HOME": str(home), "MOSAICDB_DB": db_url, **kw.pop("env", {})}
        return runner.invoke(app, [str(a) for a in args], env=env, **kw)

    return run


def fsbytes(p) -> bytes:
    return os.fsencode(p)


@pytest.fixture
def work_dir(tmp_path) -> Path:
    """An empty folder for outputs, so listings see only what a command wrote."""
    d = tmp_path / "out"
    d.mkdir()
    return d


LAYOUT = [["red", "green", "blue", "yellow"], ["black", "white", "purple", "grey"]]


def blocks_target(path, layout=LAYOUT, cell=40):
    """A target made of solid blocks of the named colours."""
    rows = [
        pyvips.Image.arrayjoin(
            [
                pyvips.Image.black(cell, cell, bands=3)
                .new_from_image(list(COLOURS[n]))
                .cast("uchar")
                for n in row
            ],
            across=len(row),
        )
        for row in layout
    ]
    img = pyvips.Image.arrayjoin(rows, across=1).copy(interpretation="srgb")
    img.write_to_file(str(path))
    return path
