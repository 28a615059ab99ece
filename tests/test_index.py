"""`index`: known colours in, known Lab features out; incremental add/change/delete; bad files
become error rows and the scan goes on; the FAISS file follows the catalog."""

from __future__ import annotations

import json
import os
import time

import numpy as np
import pytest
import pyvips
from conftest import COLOURS, lab_of, noise_jpeg, solid
from sqlalchemy import func, select

from mosaicdb.store import schema
from mosaicdb.store import vecindex as V


def rows(lib):
    with lib.catalog.engine.connect() as c:
        q = select(
            schema.photos.c.path, schema.photos.c.status, schema.photos.c.error, schema.photos.c.id
        )
        return {os.fsdecode(r[0]): (r[1], r[2], r[3]) for r in c.execute(q)}


def vectors(lib, spec=None):
    with lib.catalog.engine.connect() as c:
        q = (
            select(
                schema.photos.c.path,
                schema.features.c.vector,
                schema.features.c.mean_l,
                schema.features.c.mean_a,
                schema.features.c.mean_b,
            )
            .join(schema.features)
            .where(schema.features.c.spec == (spec or lib.spec.key))
        )
        return {
            os.path.basename(os.fsdecode(r[0])): (np.frombuffer(r[1], np.float32), r[2:])
            for r in c.execute(q)
        }


def faiss_ids(lib):
    return sorted(V.ids_of(V.read(lib.vector_path())).tolist())


def ok_ids(lib):
    return sorted(i for s, _, i in rows(lib).values() if s == "ok")


def test_known_colours_give_known_lab(lib, lib_dir, backend):
    for name, rgb in COLOURS.items():
        solid(lib_dir / f"{name}.png", rgb)
    s = lib.index([lib_dir], workers=0)
    assert (s.scanned, s.added, s.failed) == (len(COLOURS), len(COLOURS), 0)
    vecs = vectors(lib)
    for name, rgb in COLOURS.items():
        v, means = vecs[f"{name}.png"]
        want = lab_of(rgb)
        assert v.shape == (27,)
        np.testing.assert_allclose(v.reshape(9, 3), np.tile(want, (9, 1)), atol=0.5)
        np.testing.assert_allclose(means, want, atol=0.5)
    # the finer grid that render re-ranks on is made by the same scan
    for name, (v, _means) in vectors(lib, "lab6v1").items():
        want = lab_of(COLOURS[name.split(".")[0]])
        np.testing.assert_allclose(v.reshape(36, 3), np.tile(want, (36, 1)), atol=0.5)


def test_grid_cells_follow_layout(lib, lib_dir):
    # left third red, middle green, right blue: each grid column gets its colour
    w, h = 300, 300
    parts = [
        pyvips.Image.black(100, h, bands=3).new_from_image(list(c)).cast("uchar")
        for c in (COLOURS["red"], COLOURS["green"], COLOURS["blue"])
    ]
    img = pyvips.Image.arrayjoin(parts, across=3).copy(interpretation="srgb")
    assert img.width == w
    img.write_to_file(str(lib_dir / "stripes.png"))
    lib.index([lib_dir], workers=0)
    v = vectors(lib)["stripes.png"][0].reshape(3, 3, 3)
    for col, name in enumerate(("red", "green", "blue")):
        for row in range(3):
            assert np.abs(v[row, col] - lab_of(COLOURS[name])).max() < 3, (row, col)


def test_exif_orientation_and_aspect_kept(lib, lib_dir):
    im = pyvips.Image.black(400, 200, bands=3).new_from_image([200, 50, 50]).cast("uchar")
    im = im.copy(interpretation="srgb").copy()
    im.set_type(pyvips.GValue.gint_type, "orientation", 6)  # stored landscape, shown portrait
    im.write_to_file(str(lib_dir / "rot.jpg"))
    solid(lib_dir / "wide.png", COLOURS["grey"], size=(1000, 500))
    lib.index([lib_dir], workers=0, thumb_size=64)
    with lib.catalog.engine.connect() as c:
        got = {
            os.path.basename(os.fsdecode(r[0])): tuple(r[1:])
            for r in c.execute(
                select(
                    schema.photos.c.path,
                    schema.photos.c.width,
                    schema.photos.c.height,
                    schema.thumbnails.c.width,
                    schema.thumbnails.c.height,
                ).join(schema.thumbnails)
            )
        }
    assert got["rot.jpg"] == (200, 400, 64, 128)
    assert got["wide.png"] == (1000, 500, 128, 64)


def test_icc_profile_converted_to_srgb(lib, lib_dir):
    rgb = (200, 40, 40)
    im = pyvips.Image.black(64, 64, bands=3).new_from_image(list(rgb)).cast("uchar")
    p3 = im.copy(interpretation="srgb").icc_transform("p3", input_profile="srgb")
    p3.write_to_file(str(lib_dir / "p3.png"))
    lib.index([lib_dir], workers=0)
    _, means = vectors(lib)["p3.png"]
    assert float(np.abs(np.array(means) - lab_of(rgb)).max()) < 2.0


def test_incremental_add_change_delete(lib, lib_dir, backend):
    a = solid(lib_dir / "a.png", COLOURS["red"])
    solid(lib_dir / "sub" / "b.png", COLOURS["green"])
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.updated, s.removed, s.unchanged) == (2, 0, 0, 0)
    assert s.vector_index == "rebuilt"

    s = lib.index(workers=0)  # no paths: rescan registered roots
    assert (s.scanned, s.added, s.updated, s.removed, s.unchanged) == (2, 0, 0, 0, 2)
    assert s.vector_index == "unchanged"

    solid(lib_dir / "c.png", COLOURS["blue"])
    s = lib.index(workers=0)
    assert (s.added, s.unchanged) == (1, 2) and s.vector_index == "updated"
    assert len(faiss_ids(lib)) == 3

    # same size, new content and mtime: re-read, keeps its id, vector replaced
    old_id = rows(lib)[str(a)][2]
    before = a.stat().st_size
    solid(a, COLOURS["yellow"])
    if a.stat().st_size != before:  # PNG of a solid colour: sizes match, but do not rely on it
        pass
    st = a.stat()
    os.utime(a, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    s = lib.index(workers=0)
    assert (s.updated, s.added, s.unchanged) == (1, 0, 2)
    assert rows(lib)[str(a)][2] == old_id
    np.testing.assert_allclose(vectors(lib)["a.png"][1], lab_of(COLOURS["yellow"]), atol=0.5)
    index = V.read(lib.vector_path())
    _, ids = V.search(
        index,
        lab_of(COLOURS["yellow"]).astype(np.float32).reshape(1, 3).repeat(9, 0).reshape(1, 27),
        1,
    )
    assert ids[0, 0] == old_id

    (lib_dir / "sub" / "b.png").unlink()
    s = lib.index(workers=0)
    assert (s.removed, s.unchanged) == (1, 2)
    assert faiss_ids(lib) == ok_ids(lib)
    with lib.catalog.engine.connect() as c:
        assert c.execute(select(func.count()).select_from(schema.thumbnails)).scalar() == 2
        # the search grid and the re-ranking grid of each photo, nothing of the deleted one
        assert c.execute(select(func.count()).select_from(schema.features)).scalar() == 4


def test_same_size_same_mtime_is_not_opened(lib, lib_dir, monkeypatch):
    solid(lib_dir / "a.png", COLOURS["red"])
    lib.index([lib_dir], workers=0)
    from mosaicdb.index import batches as scan

    def boom(*a, **k):
        raise AssertionError("an unchanged file was read")

    monkeypatch.setattr(scan, "process_batch", boom)
    s = lib.index(workers=0)
    assert s.unchanged == 1


def test_bad_files_become_error_rows_and_scan_goes_on(lib, lib_dir, backend):
    solid(lib_dir / "good.jpg", COLOURS["red"])
    (lib_dir / "empty.jpg").write_bytes(b"")
    (lib_dir / "text.jpg").write_text("not an image at all")
    data = noise_jpeg(lib_dir / "full.jpg").read_bytes()
    (lib_dir / "full.jpg").unlink()
    (lib_dir / "truncated.jpg").write_bytes(data[: len(data) // 2])
    solid(lib_dir / "huge.png", COLOURS["grey"], size=(3000, 2000))
    s = lib.index([lib_dir], workers=0, max_pixels=5_000_000)
    assert (s.scanned, s.added, s.failed) == (5, 5, 4)
    r = {os.path.basename(k): v for k, v in rows(lib).items()}
    assert r["good.jpg"][0] == "ok"
    assert r["empty.jpg"] == ("error", "empty file (0 bytes)", r["empty.jpg"][2])
    assert "not in a known format" in r["text.jpg"][1]
    assert "premature end" in r["truncated.jpg"][1].lower()
    assert r["huge.png"][1] == (
        "too large: 3000x2000 = 6,000,000 pixels is more than --max-pixels 5,000,000"
    )
    assert faiss_ids(lib) == [r["good.jpg"][2]]
    # unchanged failures are not retried unless asked
    assert lib.index(workers=0).unchanged == 5
    assert lib.index(workers=0, retry_errors=True).updated == 4


@pytest.mark.skipif(os.geteuid() == 0, reason="root can read any file")
def test_permission_denied_is_an_error_row(lib, lib_dir):
    p = solid(lib_dir / "secret.jpg", COLOURS["red"])
    p.chmod(0)
    try:
        lib.index([lib_dir], workers=0)
        assert rows(lib)[str(p)][:2] == ("error", "Permission denied")
    finally:
        p.chmod(0o644)


def test_permission_denied_message(lib, lib_dir, monkeypatch):
    """Runs as root too: make the open itself fail the way a permission problem does."""
    p = solid(lib_dir / "secret.jpg", COLOURS["red"])
    real_open = os.open

    def deny(path, *a, **k):
        if os.fsencode(path).endswith(b"secret.jpg"):
            raise PermissionError(13, "Permission denied")
        return real_open(path, *a, **k)

    monkeypatch.setattr(os, "open", deny)
    lib.index([lib_dir], workers=0)
    assert rows(lib)[str(p)][:2] == ("error", "Permission denied")


def test_names_links_hidden_and_extensions(lib, lib_dir, backend):
    solid(lib_dir / "ünïcødé 写真.png", COLOURS["red"])
    raw = os.fsencode(lib_dir) + b"/caf\xe9.png"  # not valid UTF-8
    with open(raw, "wb") as f:
        f.write((lib_dir / "ünïcødé 写真.png").read_bytes())
    solid(lib_dir / "bracket[1].png", COLOURS["green"])
    solid(lib_dir / ".hidden.png", COLOURS["blue"])
    solid(lib_dir / ".cache" / "x.png", COLOURS["blue"])
    (lib_dir / "notes.txt").write_text("hello")
    solid(lib_dir / "pic.PNG", COLOURS["grey"])
    (lib_dir / "sub").mkdir()
    os.symlink(lib_dir, lib_dir / "sub" / "loop")  # a symlink loop
    os.symlink(lib_dir / "nowhere.png", lib_dir / "dangling.png")
    s = lib.index([lib_dir], workers=0)
    names = sorted(os.path.basename(k) for k in rows(lib))
    assert s.failed == 0
    assert names == sorted(
        ["ünïcødé 写真.png", os.fsdecode(b"caf\xe9.png"), "bracket[1].png", "pic.PNG"]
    )
    s = lib.index([lib_dir], workers=0, include_hidden=True)
    assert s.added == 2


def test_missing_root_keeps_its_photos(lib, tmp_path):
    d = tmp_path / "disk"
    solid(d / "a.png", COLOURS["red"])
    lib.index([d], workers=0)
    d.rename(tmp_path / "unmounted")
    s = lib.index(workers=0)
    assert s.removed == 0 and "folder not found" in s.warnings[0]
    assert len(rows(lib)) == 1


def test_a_folder_forgotten_while_it_is_read_loses_only_its_results(
    lib, tmp_path, monkeypatch, backend
):
    """`forget` of a folder that an `index` is reading: that folder's results are dropped
    with a warning, an error result for a file it had included (it fails no foreign key),
    and the other folders' results are written."""
    from mosaicdb.index import batches as scan

    a, b = tmp_path / "a", tmp_path / "b"
    solid(a / "blue.png", COLOURS["blue"])
    lib.index([a], workers=0)
    (a / "blue.png").write_bytes(b"no longer an image")  # a row whose new result is an error
    for name in ("red", "green"):
        solid(a / f"{name}.png", COLOURS[name])
        solid(b / f"{name}.png", COLOURS[name])
    real, forgotten = scan.process_batch, []

    def read_while_a_is_forgotten(batch, opts):
        out = real(batch, opts)
        if not forgotten:  # as `mosaicdb forget a` in another process would, meanwhile
            forgotten.append(lib.catalog.remove_root(lib.root_id(a)))
        return out

    monkeypatch.setattr(scan, "process_batch", read_while_a_is_forgotten)
    s = lib.index([a, b], workers=0, batch_size=1)
    assert (s.added, s.updated, s.failed) == (2, 0, 0)
    assert s.warnings == [
        f"{a}: 3 files read were not saved: their folder was removed from the store "
        "(mosaicdb forget) while they were being read"
    ]
    assert lib.roots() == [str(b)]
    assert sorted(rows(lib)) == [str(b / "green.png"), str(b / "red.png")]
    assert lib.check(files=True)["ok"]


def test_nested_roots_merge(lib, tmp_path, backend):
    solid(tmp_path / "top" / "inner" / "a.png", COLOURS["red"])
    solid(tmp_path / "top" / "b.png", COLOURS["green"])
    lib.index([tmp_path / "top" / "inner"], workers=0)
    s = lib.index([tmp_path / "top"], workers=0)
    assert (s.added, s.unchanged) == (1, 1)
    assert lib.roots() == [str(tmp_path / "top")]
    s = lib.index([tmp_path / "top" / "inner"], workers=0)  # inside a root: scans just that
    assert (s.scanned, s.unchanged, s.removed) == (1, 1, 0)


def test_vector_file_drops_deleted_photos_from_the_log(
    lib, lib_dir, tmp_path, monkeypatch, backend
):
    """Deleted, broken and forgotten photos leave the vector file in place (not rebuilt),
    found through the catalog's deletion log, never by reading every id."""
    for name in ("red", "green", "blue", "grey"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    other = tmp_path / "other"
    solid(other / "yellow.png", COLOURS["yellow"])
    lib.index([lib_dir, other], workers=0)

    def no_full_read(spec):
        raise AssertionError("the whole id list was read")

    monkeypatch.setattr(lib.catalog, "feature_ids", no_full_read)
    (lib_dir / "red.png").unlink()  # a file gone
    (lib_dir / "green.png").write_bytes(b"not an image any more")  # a file changed, now broken
    s = lib.index([lib_dir], workers=0)
    assert (s.removed, s.vector_index) == (1, "updated")
    assert faiss_ids(lib) == ok_ids(lib) and len(ok_ids(lib)) == 3
    lib.catalog.remove_root(lib.root_id(other))  # a root forgotten (what `forget` does)
    assert lib.sync_vectors() == {"action": "updated", "count": 2}
    assert faiss_ids(lib) == ok_ids(lib) and len(ok_ids(lib)) == 2


def test_faiss_file_rebuilt_when_missing_or_wrong(lib, lib_dir, backend):
    for name in ("red", "green", "blue"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    lib.index([lib_dir], workers=0)
    want = ok_ids(lib)
    lib.vector_path().unlink()
    assert lib.sync_vectors()["action"] == "rebuilt"
    assert faiss_ids(lib) == want
    # a FAISS file with a wrong count (e.g. copied from elsewhere)
    idx = V.read(lib.vector_path())
    V.remove(idx, [want[0]])
    V.write_atomic(idx, lib.vector_path())
    assert lib.sync_vectors()["action"] == "rebuilt"
    assert faiss_ids(lib) == want


def test_unchanged_vector_file_is_not_counted_and_check_finds_hand_edits(
    lib, lib_dir, monkeypatch, backend
):
    """Nothing changed since the file was written: no scan of the features (the change
    counter says so). A row deleted by hand, behind the counter's back, is what `check`
    compares in full; `check --repair` derives the vector again from the stored thumbnail
    and brings the file back in line."""
    from sqlalchemy import delete

    from mosaicdb.query.check import check

    for name in ("red", "green", "blue"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    lib.index([lib_dir], workers=0)
    real_state = lib.catalog.feature_state

    def no_scan(spec):
        raise AssertionError("the features were counted")

    monkeypatch.setattr(lib.catalog, "feature_state", no_scan)
    assert lib.sync_vectors() == {"action": "unchanged", "count": 3}
    monkeypatch.setattr(lib.catalog, "feature_state", real_state)
    victim = ok_ids(lib)[0]
    with lib.catalog.engine.begin() as c:  # no deletion logged, counter not moved
        c.execute(delete(schema.features).where(schema.features.c.photo_id == victim))
    report = check(lib.ctx, files=False)
    assert not report["ok"] and any("vector file holds 3" in p for p in report["problems"])
    assert report["vectors"]["photos_without_vector"] == 1
    assert f"1 photos have no {lib.spec.key} vector, so no render places them" in " ".join(
        report["problems"]
    )
    report = check(lib.ctx, repair=True, files=False)
    assert "derived 1 missing vectors from the stored thumbnails" in report["repaired"]
    assert report["remaining"] == []
    assert victim in faiss_ids(lib) and len(faiss_ids(lib)) == 3  # placeable again


def test_pool_workers_match_in_process(home, lib_dir, tmp_path):
    import mosaicdb

    for i in range(12):
        noise_jpeg(lib_dir / f"n{i:02d}.jpg", size=(400, 300), seed=i)
    with mosaicdb.open(home) as a:
        a.index([lib_dir], workers=2)
        va = vectors(a)
    with mosaicdb.open(tmp_path / "other") as b:
        b.index([lib_dir], workers=0)
        vb = vectors(b)
    assert va.keys() == vb.keys() and len(va) == 12
    for k in va:
        np.testing.assert_array_equal(va[k][0], vb[k][0])


def test_thumbnail_is_compact_jpeg(lib, lib_dir):
    noise_jpeg(lib_dir / "n.jpg", size=(1200, 900))
    lib.index([lib_dir], workers=0)
    with lib.catalog.engine.connect() as c:
        w, h, codec, data = c.execute(
            select(
                schema.thumbnails.c.width,
                schema.thumbnails.c.height,
                schema.thumbnails.c.codec,
                schema.thumbnails.c.data,
            )
        ).one()
    assert (w, h, codec) == (341, 256, "jpeg")
    assert data[:2] == b"\xff\xd8"
    im = pyvips.Image.new_from_buffer(data, "")
    assert (im.width, im.height) == (341, 256)


def test_indexed_at_recorded(lib, lib_dir):
    solid(lib_dir / "a.png", COLOURS["red"])
    t = time.time()
    lib.index([lib_dir], workers=0)
    assert float(lib.catalog.get_meta("last_index_at")) >= t


@pytest.mark.parametrize("shape,f", [((256, 256, 3), 5), ((900, 1300, 3), 40), ((17, 23, 3), 2)])
def test_box_sum_is_the_block_sum(shape, f):
    """Both accumulator widths (uint16 up to 16×16 blocks, uint32 beyond) give exact sums."""
    from mosaicdb import imaging

    a = np.random.default_rng(f).integers(0, 256, shape, dtype=np.uint8)
    h, w = shape[0] // f, shape[1] // f
    want = a[: h * f, : w * f].reshape(h, f, w, f, 3).sum(axis=(1, 3))
    np.testing.assert_array_equal(imaging._box_sum(a, f), want)


def test_an_empty_root_folder_keeps_its_photos(lib, lib_dir, tmp_path):
    """A disk not mounted leaves its mount point empty: neither index nor check --repair
    takes that as every photo deleted."""
    for name in ("red", "green"):
        solid(lib_dir / f"{name}.png", COLOURS[name])
    lib.index([lib_dir], workers=0)
    away = tmp_path / "away"
    lib_dir.rename(away)
    lib_dir.mkdir()
    for s in (lib.index(workers=0), lib.index([lib_dir], workers=0)):
        assert s.removed == 0
        assert any("folder is empty but 2 photos were indexed" in w for w in s.warnings), s
    r = lib.check(repair=True)
    assert r["files"]["roots_not_found"] == [str(lib_dir)] and r["ok"], r
    assert lib.stats()["photos"] == 2
    lib_dir.rmdir()
    away.rename(lib_dir)
    assert lib.index(workers=0).unchanged == 2


class _PoolThatBreaks:
    """A one-worker pool whose worker dies once the first batch is handed to it: that batch's
    future is `first`, and every later submit finds the pool broken."""

    def __init__(self, first):
        self.first, self.calls = first, 0

    def submit(self, fn, *args):
        from concurrent.futures.process import BrokenProcessPool

        self.calls += 1
        if self.calls > 1:
            raise BrokenProcessPool("A child process terminated abruptly")
        return self.first

    def shutdown(self, **kw):
        pass


def _run_on_pool_that_breaks(lib_dir, n: int, first) -> None:
    """Index n generated files through _PoolThatBreaks: every file comes out ok."""
    from mosaicdb.index.batches import run_batches
    from mosaicdb.index.walk import ScanOptions

    paths = []
    for i in range(n):
        solid(lib_dir / f"p{i:02d}.png", COLOURS["red"], size=(32, 24))
        paths.append(os.fsencode(lib_dir / f"p{i:02d}.png"))
    got = []
    run_batches(paths, ScanOptions(workers=1), got.extend, warm=_PoolThatBreaks(first))
    assert sorted(r.path for r in got) == sorted(paths)
    assert {r.status for r in got} == {"ok"}


def test_a_pool_found_broken_while_submitting_loses_nothing(lib_dir):
    """A worker can die while batches are still being handed out: the next submit then
    raises instead of returning a future. Those batches are run again, none is lost."""
    from concurrent.futures import Future
    from concurrent.futures.process import BrokenProcessPool

    from mosaicdb.index.batches import BATCH_FILES

    failed = Future()
    failed.set_exception(BrokenProcessPool("A child process terminated abruptly"))
    _run_on_pool_that_breaks(lib_dir, 3 * BATCH_FILES, failed)


def test_a_future_lost_as_the_pool_breaks_does_not_hang_the_index(lib_dir, monkeypatch):
    """CPython 3.11 can lose a future submitted just as the pool breaks: it never completes.
    A wait that sees nothing finish asks the pool, finds it broken, and runs the batch again."""
    from concurrent.futures import Future

    from mosaicdb.index import batches as scan

    monkeypatch.setattr(scan, "STALL_PROBE_SECONDS", 0.05)
    _run_on_pool_that_breaks(lib_dir, scan.BATCH_FILES, Future())  # lost: never completes


def test_warming_a_pool_shut_down_at_once_is_quiet():
    """An index with nothing to read shuts its pool down while the pool may still be being
    warmed: the warming stops quietly (it raised in its thread, a traceback on stderr)."""
    from mosaicdb.index import batches as scan

    pool = scan.start_pool(1)
    pool.shutdown(wait=True, cancel_futures=True)
    scan._warm(pool, 2)  # what the warming thread does, after the shutdown: no RuntimeError


def test_exclude_and_include_hidden_are_remembered_by_the_folder(cli, lib_dir):
    names = ("a.png", "Screenshots/s1.png", "Screenshots/deep/s2.png", ".hidden/h.png", "x.png")
    for name, colour in zip(names, ("red", "green", "blue", "yellow", "purple"), strict=True):
        solid(lib_dir / name, COLOURS[colour])  # distinct: no file is another one moved

    def listed():
        out = json.loads(cli("ls", "--json").output)
        return sorted(os.path.relpath(r["path"], lib_dir) for r in out)

    r = cli("index", lib_dir, "--workers", "0", "--include-hidden", "--exclude", "x.png")
    assert r.exit_code == 0, r.output
    assert "excluded: 1 file (--exclude)" in r.output
    assert listed() == [".hidden/h.png", "Screenshots/deep/s2.png", "Screenshots/s1.png", "a.png"]
    # a plain index keeps both: nothing removed, the hidden photo stays, x.png stays out
    r = json.loads(cli("index", "--workers", "0", "--json").output)
    assert (r["removed"], r["added"], r["excluded"]) == (0, 0, 1)
    # a new glob replaces the old: the screenshots (a folder) go, x.png comes in
    r = json.loads(
        cli("index", lib_dir, "--workers", "0", "--exclude", "Screenshots/*", "--json").output
    )
    assert (r["removed"], r["added"]) == (2, 1)
    assert listed() == [".hidden/h.png", "a.png", "x.png"]
    r = json.loads(
        cli("index", "--workers", "0", "--no-include-hidden", "--no-exclude", "--json").output
    )
    assert (r["removed"], r["added"]) == (1, 2)
    assert listed() == ["Screenshots/deep/s2.png", "Screenshots/s1.png", "a.png", "x.png"]


def test_exclude_options_are_checked(cli, lib_dir):
    r = cli("index", lib_dir, "--exclude", "")
    assert r.exit_code == 1 and r.output.startswith("Error: --exclude: is empty")
    r = cli("index", lib_dir, "--exclude", "x", "--no-exclude")
    assert r.exit_code == 1 and "Error: --no-exclude: does not go with --exclude" in r.output
