"""`index --executor dask`: a LocalCluster of 2 worker processes indexes a generated library
with the same rows as the local pool, on SQLite and PostgreSQL; a worker killed in the middle
of a shard leaves nothing half-written and the shard is redone; `--scheduler` joins a running
cluster. Skips without dask[distributed] (the `dask` extra)."""

from __future__ import annotations

import json
import os

import pytest
from conftest import COLOURS, noise_jpeg, solid
from test_postgres import snapshot

import mosaicdb
from mosaicdb.store import schema

pytest.importorskip("distributed")

N_GOOD = 30


@pytest.fixture
def library(lib_dir):
    for i in range(N_GOOD):
        noise_jpeg(lib_dir / f"d{i % 3}" / f"p{i:03d}.jpg", size=(480, 360), seed=i)
    solid(lib_dir / "solid.png", COLOURS["blue"])
    (lib_dir / "empty.jpg").write_bytes(b"")
    return lib_dir


def _reference(tmp_path, library) -> dict:
    """What the local pool writes (in process, SQLite: the rows compare equal by path)."""
    with mosaicdb.open(tmp_path / "ref") as lib:
        lib.index([library], workers=0)
    return snapshot(schema.sqlite_url(tmp_path / "ref" / "catalog.sqlite"))


def test_local_cluster_equals_local_pool(backend, db_url, library, home, tmp_path):
    want = _reference(tmp_path, library)
    with mosaicdb.open(home, db=db_url) as lib:
        s = lib.index([library], workers=2, executor="dask", shard_size=8)
        assert (s.added, s.updated, s.failed) == (N_GOOD + 2, 0, 1)
        s = lib.index(workers=2, executor="dask")  # nothing to do: no cluster needed
        assert (s.added, s.unchanged) == (0, N_GOOD + 2)
    got = snapshot(db_url or schema.sqlite_url(home / "catalog.sqlite"))
    for k in ("photos", "thumbs", "vecs", "counts"):
        assert got[k] == want[k], k


def test_killed_worker_mid_shard_is_redone_on_a_running_cluster(
    pg, cli, library, tmp_path, monkeypatch
):
    from distributed import LocalCluster

    url = pg.create_database()
    want = _reference(tmp_path, library)
    marker = tmp_path / "crash-once"
    marker.write_text("")
    # one file in the middle of a shard (shards of 8, commits of 2) kills its worker, once
    monkeypatch.setenv("MOSAICDB_TEST_CRASH_ON", "d0/p012.jpg")
    monkeypatch.setenv("MOSAICDB_TEST_CRASH_ONCE", str(marker))
    with LocalCluster(
        n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None
    ) as cluster:
        r = cli(
            "--db", url, "index", library, "--executor", "dask",
            "--scheduler", cluster.scheduler_address,
            "--shard-size", "8", "--batch-size", "2", "--json",
        )  # fmt: skip
    assert r.exit_code == 0, r.output
    assert not marker.exists(), "the worker should have been killed once"
    s = json.loads(r.stdout)
    assert s["added"] == N_GOOD + 2 and s["failed"] == 1
    got = snapshot(url)
    assert got["counts"]["photos"] == got["distinct"] == N_GOOD + 2
    for k in ("photos", "thumbs", "vecs"):
        assert got[k] == want[k], k


def test_scheduler_needs_a_shared_catalog(cli, library):
    r = cli("index", library, "--executor", "dask", "--scheduler", "tcp://127.0.0.1:1")
    assert r.exit_code == 1
    assert r.output.startswith("Error: --scheduler: workers on other machines cannot write")
    r = cli("index", library, "--scheduler", "tcp://127.0.0.1:1")
    assert r.exit_code == 1 and "needs --executor dask" in r.output


def test_file_that_always_kills_its_worker_costs_one_file(lib, library, monkeypatch):
    """Like the local pool: a shard that keeps killing workers is split into one task per
    file, and only the file that kills its worker becomes an error row."""
    import dask

    monkeypatch.setenv("MOSAICDB_TEST_CRASH_ON", "d1/p004.jpg")
    # 1: a task may be on the dying worker by bad luck once, not twice
    with dask.config.set({"distributed.scheduler.allowed-failures": 1}):
        s = lib.index([library], workers=2, executor="dask", shard_size=16)
    assert (s.added, s.failed) == (N_GOOD + 2, 2)
    errs = {os.path.basename(e["path"]): e["error"] for e in lib.errors()}
    assert errs["p004.jpg"] == "the image decoder crashed on this file"
    assert set(errs) == {"p004.jpg", "empty.jpg"}
