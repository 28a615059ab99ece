"""The compressed vector index: shards built with one trained quantizer merge into an index
that returns the right photo ids; merges that would silently corrupt it are refused; a store
above the size threshold gets it, refreshed incrementally, and renders from it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import COLOURS, LAYOUT, blocks_target, solid

from mosaicdb.render import placement
from mosaicdb.store import vecindex as V


def clustered(n: int, seed: int = 0) -> np.ndarray:
    """Lab-grid-like vectors: 27 values around one of 50 base colours."""
    rng = np.random.default_rng(seed)
    base = rng.uniform([0, -60, -60], [100, 60, 60], (50, 3))
    pick = base[rng.integers(0, 50, n)]
    return (np.tile(pick, 9) + rng.normal(0, 4, (n, 27))).astype(np.float32)


@pytest.fixture
def shards():
    x = clustered(12_000)
    ids = 1_000 + 7 * np.arange(len(x), dtype=np.int64)  # photo ids: neither 0-based nor dense
    trained = V.to_bytes(V.train_compressed(x[::4], 32))
    parts = [(ids[i : i + 4_000], x[i : i + 4_000]) for i in range(0, len(x), 4_000)]
    return x, ids, trained, parts


def test_sharded_merged_index_returns_the_right_ids(shards):
    x, ids, trained, parts = shards
    merged = V.merge_shards(trained, [V.build_shard(trained, i, v) for i, v in parts])
    assert V.is_compressed(merged) and merged.ntotal == len(x)
    assert sorted(V.ids_of(merged).tolist()) == ids.tolist()
    # every stored vector finds itself
    _, found = V.search(merged, x[::10], 1)
    assert (found[:, 0] == ids[::10]).mean() > 0.99
    # and the merge answers exactly as one index built from everything at once
    whole = V.from_bytes(trained)
    V.add(whole, ids, x)
    assert np.array_equal(V.search(merged, x[:300], 5)[1], V.search(whole, x[:300], 5)[1])
    # a search restricted to some photos answers only with those
    among = ids[::3]
    _, some = V.search(merged, x[:200], 4, among=among)
    assert np.isin(some[some >= 0], among).all() and (some[:, 0] >= 0).all()
    _, rest = V.search(merged, x[:200], 4, excluding=among)
    assert not np.isin(rest, among).any() and (rest[:, 0] >= 0).all()


def test_merge_refuses_foreign_quantizer_and_shared_ids(shards):
    x, ids, trained, parts = shards
    (ids0, x0), (ids1, x1), _ = parts
    other = V.to_bytes(V.train_compressed(x[1::4] + 3, 32))
    with pytest.raises(V.MergeError, match="shard 1 was trained with another quantizer"):
        V.merge_shards(trained, [V.build_shard(trained, ids0, x0), V.build_shard(other, ids1, x1)])
    # the classic slip: shards added without ids, so each numbers its vectors from 0
    a, b = V.from_bytes(trained), V.from_bytes(trained)
    a.add(x0)
    b.add(x1)
    with pytest.raises(V.MergeError, match="share photo ids"):
        V.merge_shards(trained, [a, b])
    with pytest.raises(V.MergeError, match="share photo ids"):
        V.merge_shards(trained, [V.build_shard(trained, ids0, x0)] * 2)


def test_nlist_grows_with_the_store_and_stays_trainable():
    assert V.ivf_nlist(10) == 1
    assert V.ivf_nlist(1_000) == 16  # 1,000 / 39 caps it
    assert [V.ivf_nlist(n) for n in (10**6, 10**7, 10**8)] == [2048, 4096, 16384]


def test_big_store_gets_the_compressed_index_kept_up_to_date(lib, lib_dir, tmp_path, monkeypatch):
    monkeypatch.setattr(V, "COMPRESSED_MIN_TILES", 5)
    for name, rgb in COLOURS.items():
        solid(lib_dir / f"{name}.jpg", rgb, size=(300, 200), Q=95)
    s = lib.index([lib_dir], workers=0)
    assert s.vector_index == "rebuilt"
    index = lib.vector_index()
    assert V.is_compressed(index) and index.ntotal == len(COLOURS)
    assert lib.stats()["vector_index"] == "compressed"

    # renders from it: every cell still gets its own colour
    t = blocks_target(tmp_path / "target.png")
    r = lib.render(t, tmp_path / "out.png", tiles_across=4, tile_size=16)
    names = {p["id"]: Path(p["path"]).stem for p in lib.ls()}
    assert [names[i] for i in lib.catalog.plan(r.render_id)] == [n for row in LAYOUT for n in row]
    assert r.mean_delta_e < 1.5
    # under --max-uses the search widens through the compressed index, filtered by id
    filtered = []
    search = V.search

    def spy(index, queries, k, among=None, excluding=None):
        filtered.append(among is not None or excluding is not None)
        return search(index, queries, k, among=among, excluding=excluding)

    monkeypatch.setattr(V, "search", spy)
    # without routing (which would hand the flow every arc it needs up front)
    monkeypatch.setattr(placement, "ROUTE_ROOM", 0)
    red = solid(tmp_path / "red.png", COLOURS["red"], size=(80, 40))
    r = lib.render(red, tmp_path / "red-out.png", tiles_across=4, max_uses=1, candidates=1)
    assert any(filtered)
    assert sorted(lib.catalog.plan(r.render_id)) == sorted(names)  # each photo once
    monkeypatch.setattr(V, "search", search)

    # adding and removing photos updates the file in place (no retraining) ...
    solid(lib_dir / "teal.jpg", (20, 160, 160), size=(300, 200), Q=95)
    (lib_dir / "grey.jpg").unlink()
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.removed, s.vector_index) == (1, 1, "updated")
    ok = sorted(p["id"] for p in lib.ls())
    assert sorted(V.ids_of(lib.vector_index()).tolist()) == ok
    assert lib.sync_vectors()["action"] == "unchanged"
    # ... until the store has doubled since training: then the quantizer is trained afresh
    for i in range(9):
        solid(lib_dir / f"more{i}.jpg", (20 * i, 100, 200 - 20 * i), size=(300, 200), Q=95)
    assert lib.index([lib_dir], workers=0).vector_index == "rebuilt"
    # below the threshold again, the exact index comes back
    monkeypatch.setattr(V, "COMPRESSED_MIN_TILES", 1_000)
    assert lib.sync_vectors()["action"] == "rebuilt"
    assert not V.is_compressed(lib.vector_index())


def test_write_removes_temporary_files_of_dead_writers(tmp_path):
    """A writer killed mid-write leaves its temporary file (as large as the index); the next
    write removes it, and leaves a live writer's alone."""
    import os
    import subprocess
    import sys

    dead = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True
    )
    path = tmp_path / "vectors-x.faiss"
    left = tmp_path / f".{path.name}.{int(dead.stdout)}.tmp"
    live = tmp_path / f".{path.name}.{os.getppid()}.tmp"
    left.write_bytes(b"partial")
    live.write_bytes(b"being written")
    V.write_atomic(V.new_index(3), path)
    assert sorted(p.name for p in tmp_path.iterdir()) == [live.name, path.name]
