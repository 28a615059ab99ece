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


def dng(
    path,
    rgb=(30, 60, 220),
    preview=(400, 300),
    jpeg=True,
    orientation=1,
    sensor=(320, 240),
    pixels=None,
):
    """A DNG (TIFF with the DNG tags, written by tifffile) as cameras make them: sensor data
    in a sub-IFD and the preview in IFD 0, a JPEG (patched in: tifffile writes no JPEG without
    imagecodecs) or an RGB bitmap; `orientation` the EXIF value of the shot."""
    import struct

    import tifffile

    if pixels is None:
        pw, ph = preview
        pixels = np.empty((ph, pw, 3), np.uint8)
        pixels[:] = rgb
    ph = pixels.shape[0]
    identity = (10000, 10000, 0, 10000, 0, 10000) * 2 + (0, 10000, 0, 10000, 10000, 10000)
    tags = [
        (50706, "B", 4, (1, 4, 0, 0), True),  # DNGVersion
        (271, "s", 0, "mosaicdb", True),
        (272, "s", 0, "Test", True),
        (50708, "s", 0, "mosaicdb Test", True),  # UniqueCameraModel
        (274, "H", 1, orientation, True),
        (50721, "2i", 9, identity, True),  # ColorMatrix1
    ]
    sw, sh = sensor
    cfa = np.random.default_rng(0).integers(500, 3000, (sh, sw)).astype(np.uint16)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(path) as t:
        t.write(
            pixels, photometric="rgb", rowsperstrip=ph, subfiletype=1, subifds=1, extratags=tags
        )
        t.write(
            cfa,
            photometric=32803,  # CFA
            subfiletype=0,
            extratags=[
                (33421, "H", 2, (2, 2), True),  # CFARepeatPatternDim
                (33422, "B", 4, (0, 1, 1, 2), True),  # CFAPattern RGGB
                (50717, "H", 1, 4095, True),  # WhiteLevel
            ],
        )
    if jpeg:
        data = pyvips.Image.new_from_array(pixels).copy(interpretation="srgb").jpegsave_buffer(Q=95)
        b = bytearray(path.read_bytes())
        at = len(b)
        b += data
        ifd = struct.unpack_from("<I", b, 4)[0]
        for i in range(struct.unpack_from("<H", b, ifd)[0]):
            e = ifd + 2 + 12 * i
            tag, typ = struct.unpack_from("<HH", b, e)
            fmt = "<I" if typ == 4 else "<H"
            value = {259: 7, 262: 6, 273: at, 279: len(data)}.get(tag)  # JPEG, YCbCr, strip
            if value is not None:
                struct.pack_into(fmt, b, e + 8, value)
        path.write_bytes(b)
    return path


def test_raw_is_indexed_from_its_preview_upright(lib, lib_dir):
    dng(lib_dir / "DSC_0001.NEF", COLOURS["blue"])  # any RAW extension goes to LibRaw
    dng(lib_dir / "rot.dng", COLOURS["red"], orientation=6)  # shot holding the camera upright
    dng(lib_dir / "bitmap.dng", COLOURS["green"], jpeg=False, orientation=8)
    s = lib.index([lib_dir], workers=1)
    assert (s.added, s.failed) == (3, 0), lib.errors()
    got = by_name(lib)
    assert {n: (r["status"], r["format"], r["width"], r["height"]) for n, r in got.items()} == {
        "DSC_0001.NEF": ("ok", "raw", 320, 240),
        "rot.dng": ("ok", "raw", 240, 320),
        "bitmap.dng": ("ok", "raw", 240, 320),
    }
    for name, colour in (("DSC_0001.NEF", "blue"), ("rot.dng", "red"), ("bitmap.dng", "green")):
        assert np.abs(np.array(got[name]["lab"]) - lab_of(COLOURS[colour])).max() < 3, name
    with lib.catalog.engine.connect() as c:
        from sqlalchemy import select

        from mosaicdb.store import schema

        t = schema.thumbnails.c
        dims = {w < h for w, h in c.execute(select(t.width, t.height))}
    assert dims == {False, True}  # the rotated shots' thumbnails are portrait


def test_raw_without_a_big_enough_preview_is_developed(lib, lib_dir):
    dng(lib_dir / "tiny-preview.dng", preview=(160, 120), orientation=6, sensor=(640, 480))
    s = lib.index([lib_dir], workers=0, thumb_size=128)  # the preview is bigger: used
    assert s.failed == 0
    dng(lib_dir / "tiny2.dng", preview=(80, 60), orientation=6, sensor=(640, 480))
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.failed) == (1, 0), lib.errors()
    r = by_name(lib)["tiny2.dng"]
    assert (r["width"], r["height"]) == (480, 640)
    # developed from the (random) sensor data, not the blue preview
    assert np.abs(np.array(r["lab"]) - lab_of((30, 60, 220))).max() > 10


def test_broken_raw_files_are_error_rows(lib, lib_dir):
    good = dng(lib_dir / "good.dng")
    (lib_dir / "cut.dng").write_bytes(good.read_bytes()[:300])
    (lib_dir / "notes.cr2").write_text("not a raw file")
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.failed) == (3, 2)
    errs = {e["path"].rsplit("/", 1)[1]: e["error"] for e in lib.errors()}
    assert set(errs) == {"cut.dng", "notes.cr2"}
    assert all(e.startswith("raw: ") and "\n" not in e for e in errs.values()), errs


def test_formats_libvips_lacks_are_read_by_pillow(lib, lib_dir):
    from PIL import Image

    def save(name, rgb, size=(300, 200), **kw):
        px = np.empty((size[1], size[0], 3), np.uint8)
        px[:] = rgb
        Image.fromarray(px).save(lib_dir / name, **kw)

    save("a.bmp", COLOURS["red"])
    save("b.jp2", COLOURS["green"], size=(1200, 800))
    save("c.TGA", COLOURS["blue"])
    save("d.ppm", COLOURS["yellow"])
    (lib_dir / "e.bmp").write_bytes(b"BM not really")
    s = lib.index([lib_dir], workers=0)
    assert (s.added, s.failed) == (5, 1), lib.errors()
    got = by_name(lib)
    assert {n: (r["format"], r["width"], r["height"]) for n, r in got.items() if r["lab"]} == {
        "a.bmp": ("bmp", 300, 200),
        "b.jp2": ("jpeg2000", 1200, 800),
        "c.TGA": ("tga", 300, 200),
        "d.ppm": ("ppm", 300, 200),
    }
    for name, colour in (
        ("a.bmp", "red"),
        ("b.jp2", "green"),
        ("c.TGA", "blue"),
        ("d.ppm", "yellow"),
    ):
        assert np.abs(np.array(got[name]["lab"]) - lab_of(COLOURS[colour])).max() < 3, name
    assert got["e.bmp"]["error"].startswith("pillow: ")


@pytest.mark.parametrize(
    "name, decoder", [("x.NEF", "raw"), ("x.cr3", "raw"), ("x.dng", "raw"), ("x.BMP", "pillow")]
)
def test_raw_and_pillow_extensions_go_to_their_decoders(name, decoder):
    from mosaicdb.index import decode

    assert decode.decoder_for(b"/p/" + name.encode()).__name__ == f"mosaicdb.index.decode.{decoder}"


def test_a_raw_and_its_jpeg_are_one_near_duplicate_group(lib, lib_dir):
    """A RAW+JPEG pair of one shot counts as one photo under the repetition rules."""
    from conftest import noise_jpeg

    shot = noise_jpeg(lib_dir / "IMG_0001.JPG", size=(400, 300), seed=5)
    pixels = pyvips.Image.new_from_file(str(shot)).numpy()
    dng(lib_dir / "IMG_0001.DNG", pixels=pixels)
    noise_jpeg(lib_dir / "IMG_0002.JPG", size=(400, 300), seed=6)
    lib.index([lib_dir], workers=0)
    assert [sorted(p.rsplit("/", 1)[1] for p in g["paths"]) for g in lib.dupes()] == [
        ["IMG_0001.DNG", "IMG_0001.JPG"]
    ]
