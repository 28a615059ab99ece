"""Photo libraries as they are: formats beyond what libvips reads (HEIC), and what `index`
says about the files it leaves out."""

from __future__ import annotations

import numpy as np
import pytest
import pyvips
from conftest import COLOURS, lab_of, solid


def heic(path, rgb=None, size=(320, 240), pixels=None, **save_kw):
    """A HEIC file made by libheif's encoder (pillow-heif): a solid colour or given pixels."""
    from PIL import Image
    from pillow_heif import register_heif_opener

    register_heif_opener()
    if pixels is None:
        w, h = size
        pixels = np.empty((h, w, 3), np.uint8)
        pixels[:] = rgb
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(pixels).save(path, format="HEIF", quality=90, **save_kw)
    return path


def by_name(lib):
    return {r["path"].rsplit("/", 1)[1]: r for r in lib.ls(limit=1000)}


def test_heic_is_indexed_with_its_colour_and_size(lib, lib_dir):
    heic(lib_dir / "IMG_0001.HEIC", COLOURS["red"], size=(400, 300))
    heic(lib_dir / "sub" / "b.heif", COLOURS["blue"], size=(200, 300))
    s = lib.index([lib_dir], workers=1)  # through the worker pool
    assert (s.added, s.failed) == (2, 0)
    got = by_name(lib)
    assert {n: (r["status"], r["format"], r["width"], r["height"]) for n, r in got.items()} == {
        "IMG_0001.HEIC": ("ok", "heif", 400, 300),
        "b.heif": ("ok", "heif", 200, 300),
    }
    for name, colour in (("IMG_0001.HEIC", "red"), ("b.heif", "blue")):
        assert np.abs(np.array(got[name]["lab"]) - lab_of(COLOURS[colour])).max() < 3, name


def test_heic_icc_profile_is_converted_to_srgb(lib, lib_dir):
    rgb = (200, 40, 40)
    im = pyvips.Image.black(64, 64, bands=3).new_from_image(list(rgb)).cast("uchar")
    p3 = im.copy(interpretation="srgb").icc_transform("p3", input_profile="srgb")
    profile = p3.get("icc-profile-data")
    heic(lib_dir / "p3.heic", pixels=p3.numpy(), icc_profile=profile)
    heic(lib_dir / "plain.heic", pixels=p3.numpy())  # the same numbers read as sRGB
    lib.index([lib_dir], workers=0)
    got = by_name(lib)
    assert np.abs(np.array(got["p3.heic"]["lab"]) - lab_of(rgb)).max() < 2.5
    assert np.abs(np.array(got["plain.heic"]["lab"]) - lab_of(rgb)).max() > 3


def test_broken_heic_is_an_error_row_and_the_scan_goes_on(lib, lib_dir):
    noise = np.random.default_rng(0).integers(0, 255, (240, 320, 3), dtype=np.uint8)
    good = heic(lib_dir / "good.heic", pixels=noise)
    (lib_dir / "cut.heic").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    (lib_dir / "fake.heic").write_bytes(b"not a heif file at all")
    solid(lib_dir / "a.png", COLOURS["grey"])
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.failed) == (4, 2)
    errors = {e["path"].rsplit("/", 1)[1]: e["error"] for e in lib.errors()}
    assert set(errors) == {"cut.heic", "fake.heic"}
    assert all(e.startswith("heif: ") and "\n" not in e for e in errors.values()), errors


@pytest.mark.parametrize("ext", [".heic", ".HEIF", ".hif"])
def test_heif_extensions_go_to_the_heif_decoder(ext):
    from mosaicdb.index import decode

    assert decode.decoder_for(b"/p/x" + ext.encode()).__name__ == "mosaicdb.index.decode.heif"
    assert decode.decoder_for(b"/p/x.jpg").__name__ == "mosaicdb.index.decode.vips"
    assert decode.decoder_for(b"/p/x.mov") is None


def test_skipped_files_are_counted_by_extension(cli, lib_dir):
    import json

    solid(lib_dir / "a.png", COLOURS["red"])
    for name in ("clip.mov", "b.MOV", "c.mov", "edit.psd", "notes", "x.xmp"):
        (lib_dir / name).write_bytes(b"\0" * 10)
    for thumbs in ("@eaDir", ".@__thumb"):  # a NAS's thumbnails: never photos, never counted
        solid(lib_dir / thumbs / "a.png" / "SYNOPHOTO_THUMB_M.jpg", COLOURS["blue"])
    solid(lib_dir / "._a.png", COLOURS["blue"])
    r = cli("index", lib_dir, "-j", "0", "--json")
    s = json.loads(r.stdout)
    assert (s["scanned"], s["added"]) == (1, 1)
    assert s["skipped"] == {".mov": 3, "": 1, ".psd": 1, ".xmp": 1}
    r = cli("index", lib_dir, "-j", "0", "--include-hidden")
    lines = r.stdout.splitlines()
    assert lines[0].startswith("1 file scanned: 0 added, 0 updated, 0 removed, 1 unchanged")
    assert lines[1] == "skipped: 3 .mov, 1 (no extension), 1 .psd, 1 .xmp"


def test_a_folder_of_only_skipped_files_says_so(cli, tmp_path):
    d = tmp_path / "videos"
    d.mkdir()
    for i in range(12):
        (d / f"v{i}.mov").write_bytes(b"\0")
    (d / "a.psd").write_bytes(b"\0")
    r = cli("index", d, "-j", "0")
    assert r.exit_code == 0
    assert r.stdout.splitlines()[0] == (
        "no photos found: only files mosaicdb does not read (12 .mov, 1 .psd)"
    )


def test_a_mistyped_folder_makes_no_store(cli, home, tmp_path):
    r = cli("index", tmp_path / "does-not-exist")
    assert (r.exit_code, r.output) == (1, f"Error: {tmp_path / 'does-not-exist'} does not exist\n")
    assert not (home / "catalog.sqlite").exists()


def test_unreadable_files_are_said_on_every_index(cli, lib_dir):
    import json

    solid(lib_dir / "a.png", COLOURS["red"])
    for i in range(3):
        (lib_dir / f"bad{i}.jpg").write_bytes(b"garbage")
    r = cli("index", lib_dir, "-j", "0")
    assert "3 unreadable (mosaicdb errors)" in r.stdout.splitlines()
    r = cli("index", "-j", "0")  # nothing changed: the error rows are still there
    assert ", 4 unchanged, 0 failed in " in r.stdout.splitlines()[0]
    assert "3 unreadable (mosaicdb errors)" in r.stdout.splitlines()
    assert json.loads(cli("index", "-j", "0", "--json").stdout)["unreadable"] == 3


def test_index_help_lists_what_it_reads(cli):
    from mosaicdb.index.decode import EXTENSIONS

    out = " ".join(cli("index", "--help").stdout.split())
    for ext in EXTENSIONS:
        assert ext.decode() in out
