"""Near-duplicates (issue 19 §3): copies, edits and burst shots grouped at index time from the
thumbnail's perceptual hash, listed by `dupes`, counted by `stats`, one photo to the rules."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest
import pyvips
from conftest import noise_jpeg
from sqlalchemy import select, update

from mosaicdb.store import schema


def shot(path, seed, edit=None):
    """A photo-like picture (smooth random structure) and its variants."""
    noise_jpeg(path, size=(640, 480), seed=seed)
    if edit:
        img = pyvips.Image.new_from_file(str(path)).copy_memory()
        if edit == "q50":
            img.write_to_file(str(path), Q=50)
        elif edit == "small":
            img.resize(0.5).write_to_file(str(path))
        elif edit == "brighter":
            (img * 1.12).cast("uchar").write_to_file(str(path))
        elif edit == "burst":
            img.crop(12, 0, 628, 480).write_to_file(str(path))
    return path


def groups_by_name(lib) -> list[list[str]]:
    return [[os.path.basename(p) for p in g["paths"]] for g in lib.dupes()]


@pytest.fixture
def shots(lib_dir):
    shot(lib_dir / "a.jpg", 1)
    shot(lib_dir / "a-q50.jpg", 1, "q50")
    shot(lib_dir / "a-small.jpg", 1, "small")
    shot(lib_dir / "a-brighter.jpg", 1, "brighter")
    shot(lib_dir / "b.jpg", 2)
    shot(lib_dir / "b-burst.jpg", 2, "burst")
    for s in range(3, 9):
        shot(lib_dir / f"other{s}.jpg", s)
    return lib_dir


def test_copies_edits_and_bursts_are_grouped(lib, shots, backend):
    lib.index([shots], workers=0)
    assert sorted(sorted(g) for g in groups_by_name(lib)) == [
        ["a-brighter.jpg", "a-q50.jpg", "a-small.jpg", "a.jpg"],
        ["b-burst.jpg", "b.jpg"],
    ]
    g = lib.dupes()
    assert [x["size"] for x in g] == [4, 2] and g[0]["ids"] == sorted(g[0]["ids"])
    assert lib.stats()["near_duplicates"] == {"groups": 2, "photos": 6}
    s = lib.index(workers=0)  # nothing new: nothing regrouped, same groups
    assert s.unchanged == 12 and len(lib.dupes()) == 2


def test_groups_follow_deletions_and_changes(lib, shots):
    lib.index([shots], workers=0)
    first = lib.dupes()[0]["paths"][0]
    os.unlink(first)  # the first photo of the group of four goes
    lib.index(workers=0)
    four = ["a-brighter.jpg", "a-q50.jpg", "a-small.jpg", "a.jpg"]
    rest = [n for n in four if n != os.path.basename(first)]
    assert rest in [sorted(g) for g in groups_by_name(lib)]  # the others stay one group
    shot(shots / "b-burst.jpg", 99)  # re-shot: no longer like b
    st = os.stat(shots / "b-burst.jpg")
    os.utime(shots / "b-burst.jpg", ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))
    lib.index(workers=0)
    assert len(lib.dupes()) == 1


def test_an_index_killed_before_grouping_groups_on_the_next_run(lib, shots):
    lib.index([shots], workers=0)
    with lib.catalog.engine.begin() as c:  # as the batch writer leaves them
        c.execute(update(schema.photos).values(dup_of=0))
    assert lib.dupes() == []
    lib.index(workers=0)
    assert len(lib.dupes()) == 2
    with lib.catalog.engine.connect() as c:
        assert c.execute(select(schema.photos.c.id).where(schema.photos.c.dup_of == 0)).all() == []


def test_cli_dupes_and_stats(cli, shots):
    assert cli("index", shots, "--workers", "0").exit_code == 0
    r = cli("dupes", "--json")
    assert r.exit_code == 0
    got = json.loads(r.output)
    assert [g["size"] for g in got] == [4, 2] and set(got[0]) == {"size", "ids", "paths"}
    r = cli("dupes")
    assert r.output.startswith("4 photos:\n  ") and "\n2 photos:\n" in r.output
    r = cli("stats")
    assert "near-duplicates: 2 groups of 6 photos" in r.output


def test_empty_store_stats_say_no_formats(cli, lib_dir):
    assert cli("index", lib_dir, "--workers", "0").exit_code == 0
    r = cli("stats")
    assert "formats: none" in r.output and "near-duplicates" not in r.output
    r = cli("dupes")
    assert r.exit_code == 0 and "no near-duplicates" in r.output


def test_hash_is_stable_under_resizing_and_differs_between_photos():
    from mosaicdb.features import hamming, perceptual_hash

    rng = np.random.default_rng(0)
    a = pyvips.Image.new_from_array(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize(16)
    b = pyvips.Image.new_from_array(rng.integers(0, 255, (30, 40, 3), dtype=np.uint8)).resize(16)
    ha = perceptual_hash(a.numpy())
    assert hamming(ha, perceptual_hash(a.resize(0.4).numpy())) <= 4
    assert hamming(ha, perceptual_hash(b.numpy())) > 16


@pytest.fixture
def burst_lib(lib, lib_dir, tmp_path):
    """Five burst shots of one scene and 30 other photos; a target made of that scene 6×6."""
    shot(lib_dir / "burst0.jpg", 1)
    for k in range(1, 5):
        img = pyvips.Image.new_from_file(str(lib_dir / "burst0.jpg")).copy_memory()
        img.crop(3 * k, 0, 640 - 3 * k, 480).write_to_file(str(lib_dir / f"burst{k}.jpg"))
    for s in range(2, 32):
        shot(lib_dir / f"other{s:02d}.jpg", s)
    lib.index([lib_dir], workers=0)
    assert [sorted(g) for g in groups_by_name(lib)] == [[f"burst{k}.jpg" for k in range(5)]]
    scene = pyvips.Image.new_from_file(str(lib_dir / "burst0.jpg")).resize(0.125)
    target = tmp_path / "target.png"
    pyvips.Image.arrayjoin([scene] * 36, across=6).write_to_file(str(target))
    return lib, target


def names_of(lib, render_id) -> np.ndarray:
    with lib.catalog.engine.connect() as c:
        q = select(schema.photos.c.id, schema.photos.c.path)
        names = {i: os.path.basename(os.fsdecode(p)) for i, p in c.execute(q)}
    return np.array([names[i] for i in lib.catalog.plan(render_id)])


def test_a_burst_counts_as_one_photo_under_the_rules(burst_lib, work_dir):
    lib, target = burst_lib
    kw = dict(tiles_across=6, tile_size=8, aspect="4:3", min_distance=0)
    r = lib.render(target, work_dir / "a.jpg", max_uses=2, **kw)
    grid = names_of(lib, r.render_id)
    assert sum(n.startswith("burst") for n in grid) == 2  # the group's two uses, not ten
    r = lib.render(target, work_dir / "b.jpg", max_uses=2, dupes="separate", **kw)
    assert sum(n.startswith("burst") for n in names_of(lib, r.render_id)) == 10


def test_a_burst_is_never_beside_itself_under_min_distance(burst_lib, work_dir):
    lib, target = burst_lib
    kw = dict(tiles_across=6, tile_size=8, aspect="4:3", max_uses=0, min_distance=1)
    r = lib.render(target, work_dir / "a.jpg", **kw)
    burst = np.char.startswith(names_of(lib, r.render_id), "burst").reshape(r.rows, r.cols)
    assert burst.sum() >= 4
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):  # no two burst shots touch
        a = burst[
            max(0, -dy) : burst.shape[0] - max(0, dy), max(0, -dx) : burst.shape[1] - max(0, dx)
        ]
        b = burst[max(0, dy) :, max(0, dx) :][: a.shape[0], : a.shape[1]]
        assert not (a & b).any(), (dy, dx)
    r = lib.render(target, work_dir / "b.jpg", dupes="separate", **kw)
    burst = np.char.startswith(names_of(lib, r.render_id), "burst").reshape(r.rows, r.cols)
    assert (burst[:, 1:] & burst[:, :-1]).any()  # separate: the shots sit side by side


def test_dupes_option_is_checked(burst_lib, work_dir):
    from mosaicdb.errors import OptionError

    lib, target = burst_lib
    with pytest.raises(OptionError, match="^--dupes: must be group or separate, got 'x'"):
        lib.render(target, work_dir / "a.jpg", tiles_across=4, dupes="x")


def test_hash_of_tiny_and_flat_pictures():
    from mosaicdb.features import perceptual_hash

    rng = np.random.default_rng(1)
    with np.errstate(all="raise"):
        assert isinstance(perceptual_hash(rng.integers(0, 255, (7, 20, 3), dtype=np.uint8)), int)
        assert perceptual_hash(np.full((300, 400, 3), 128, np.uint8)) is None  # nothing to hash
