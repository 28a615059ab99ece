"""A renamed or moved photo keeps its id, thumbnail and vectors, and is not read again
(issue 19 §2): matched by size and a fingerprint of its bytes."""

from __future__ import annotations

import os
import shutil

import pytest
from conftest import blocks_target, noise_jpeg
from sqlalchemy import select, update

from mosaicdb.index import batches, identity
from mosaicdb.store import schema


def ids_by_name(lib) -> dict[str, int]:
    with lib.catalog.engine.connect() as c:
        q = select(schema.photos.c.path, schema.photos.c.id)
        return {os.fsdecode(p).rsplit("/", 1)[-1]: i for p, i in c.execute(q)}


def no_reads(monkeypatch):
    def boom(paths, opts):
        raise AssertionError(f"read again: {paths}")

    monkeypatch.setattr(batches, "process_batch", boom)


@pytest.fixture
def library(tmp_path):
    root = tmp_path / "Pictures"
    for i in range(6):
        noise_jpeg(root / "2019" / f"p{i}.jpg", size=(160, 120), seed=i)
    for i in range(6, 9):
        noise_jpeg(root / "2020" / f"p{i}.jpg", size=(160, 120), seed=i)
    return root


def test_renamed_and_moved_files_keep_their_photo_and_are_not_read(
    lib, library, work_dir, monkeypatch, backend
):
    lib.index([library], workers=0)
    before = ids_by_name(lib)
    t = blocks_target(work_dir / "t.png")
    r = lib.render(t, work_dir / "m.jpg", tiles_across=6, tile_size=8, repeat="free")

    (library / "2019").rename(library / "2019 Italy")  # a folder renamed
    (library / "2020" / "p6.jpg").rename(library / "2019 Italy" / "renamed.jpg")  # a file moved
    no_reads(monkeypatch)
    s = lib.index(workers=0)
    assert (s.moved, s.added, s.removed, s.updated, s.unchanged) == (7, 0, 0, 0, 2)
    after = ids_by_name(lib)
    assert after["renamed.jpg"] == before["p6.jpg"]
    assert {after[f"p{i}.jpg"] for i in range(6)} == {before[f"p{i}.jpg"] for i in range(6)}
    assert s.vector_index == "unchanged"
    assert lib.check(files=True)["ok"]
    again = lib.render(output=work_dir / "m2.jpg", plan=r.render_id)
    assert not again.warnings and again.distinct_tiles == r.distinct_tiles

    s = lib.index(workers=0)  # and then nothing to do
    assert (s.moved, s.scanned, s.unchanged) == (0, 9, 9)


def test_a_renamed_root_folder_moves_its_photos_to_the_new_root(
    lib, library, tmp_path, monkeypatch
):
    lib.index([library], workers=0)
    before = ids_by_name(lib)
    library.rename(tmp_path / "Photos")
    no_reads(monkeypatch)
    s = lib.index([tmp_path / "Photos"], workers=0)
    assert (s.moved, s.added) == (9, 0)
    assert ids_by_name(lib) == before
    assert lib.roots() == [str(tmp_path / "Photos")]
    assert any("folder not found; its 9 photos were found in" in w for w in s.warnings)


def test_a_lost_root_with_photos_not_found_elsewhere_is_kept(lib, library, tmp_path):
    lib.index([library], workers=0)
    other = tmp_path / "Other"
    shutil.copytree(library / "2020", other)  # only three of nine photos
    shutil.rmtree(library)
    s = lib.index([other], workers=0)
    assert (s.moved, s.added) == (3, 0)
    assert sorted(lib.roots()) == sorted([str(library), str(other)])  # six photos remain there


def test_new_content_under_a_gone_name_is_read(lib, library, monkeypatch):
    lib.index([library], workers=0)
    before = ids_by_name(lib)
    p = library / "2019" / "p0.jpg"
    p.unlink()
    noise_jpeg(library / "2019" / "q0.jpg", size=(160, 120), seed=100)
    s = lib.index(workers=0)
    assert (s.moved, s.added, s.removed) == (0, 1, 1)
    assert ids_by_name(lib)["q0.jpg"] != before["p0.jpg"]


def test_two_copies_of_a_gone_photo_one_keeps_it(lib, library):
    lib.index([library], workers=0)
    before = ids_by_name(lib)
    src = library / "2019" / "p1.jpg"
    shutil.copy2(src, library / "2020" / "a-copy.jpg")
    shutil.copy2(src, library / "2020" / "b-copy.jpg")
    src.unlink()
    s = lib.index(workers=0)
    assert (s.moved, s.added, s.removed) == (1, 1, 0)
    after = ids_by_name(lib)
    assert after["a-copy.jpg"] == before["p1.jpg"]  # the first in path order
    assert after["b-copy.jpg"] not in before.values()


def test_rows_without_a_fingerprint_are_read_again(lib, library):
    """Photos indexed before the fingerprint existed (schema 0006) cannot be matched."""
    lib.index([library], workers=0)
    with lib.catalog.engine.begin() as c:
        c.execute(update(schema.photos).values(fingerprint=None))
    (library / "2020").rename(library / "2020b")
    s = lib.index(workers=0)
    assert (s.moved, s.added, s.removed) == (0, 3, 3)


def test_cli_says_moved(cli, library, monkeypatch):
    assert cli("index", library, "--workers", "0").exit_code == 0
    (library / "2020").rename(library / "later")
    r = cli("index", "--workers", "0")
    assert r.exit_code == 0, r.output
    assert "9 files scanned: 0 added, 0 updated, 3 moved, 0 removed, 6 unchanged" in r.output
    r = cli("index", "--workers", "0", "--json")
    assert '"moved": 0' in r.output


def test_fingerprint_reads_samples_and_names_content(tmp_path):
    big = tmp_path / "big.bin"
    data = bytearray(os.urandom(1_000_000))
    big.write_bytes(data)
    fp = identity.fingerprint(os.fsencode(big), len(data))
    assert len(fp) == 16
    data[10] ^= 1  # in the first sample
    big.write_bytes(data)
    assert identity.fingerprint(os.fsencode(big), len(data)) != fp
    small = tmp_path / "small.bin"
    small.write_bytes(b"abc")
    assert identity.fingerprint(os.fsencode(small), 3) != identity.fingerprint(
        os.fsencode(big), len(data)
    )
    assert identity.fingerprint(os.fsencode(tmp_path / "gone"), 3) is None
