"""`render`: known colours land in the right cells, rules hold, plans are saved and replayed,
every format is written atomically, and the photo folders are never needed."""

from __future__ import annotations

import json
import os
import shutil

import numpy as np
import pytest
import pyvips
from conftest import COLOURS, LAYOUT, blocks_target, solid

from mosaicdb.errors import OptionError, RenderError


@pytest.fixture
def work(tmp_path):
    d = tmp_path / "work"
    d.mkdir()
    return d


@pytest.fixture
def colour_lib(lib, lib_dir):
    for name, rgb in COLOURS.items():
        solid(lib_dir / f"{name}.jpg", rgb, size=(300, 200), Q=95)
    lib.index([lib_dir], workers=0)
    return lib


def plan_names(lib, render_id):
    from sqlalchemy import select

    from mosaicdb.store import schema

    ids = lib.catalog.plan(render_id)
    with lib.catalog.engine.connect() as c:
        names = {
            i: os.path.basename(os.fsdecode(p)).split(".")[0]
            for i, p in c.execute(select(schema.photos.c.id, schema.photos.c.path))
        }
    return [names[i] for i in ids]


def test_known_colours_go_to_their_cells(colour_lib, work, backend):
    t = blocks_target(work / "target.png")
    r = colour_lib.render(t, work / "out.png", tiles_across=4, tile_size=16)
    assert (r.cols, r.rows, r.width, r.height) == (4, 2, 64, 32)
    assert plan_names(colour_lib, r.render_id) == [n for row in LAYOUT for n in row]
    assert r.mean_delta_e < 1.5
    assert r.distinct_tiles == 8 and r.max_reuse == 1
    out = pyvips.Image.new_from_file(str(work / "out.png"))
    # the top-left tile is the red photo
    assert np.abs(out.crop(0, 0, 16, 16).numpy().mean(axis=(0, 1)) - COLOURS["red"]).max() < 4


def test_big_store_searches_a_cached_hnsw_graph(colour_lib, lib_dir, work, monkeypatch):
    """Above vecindex.HNSW_MIN_TILES render searches an HNSW graph: the same plan as the
    exact search on distinct colours, built once, reused while the catalog is unchanged and
    rebuilt when it changes."""
    from mosaicdb.store import vecindex as V

    t = blocks_target(work / "target.png")
    exact = colour_lib.render(t, work / "a.png", tiles_across=4, tile_size=8)
    monkeypatch.setattr(V, "HNSW_MIN_TILES", 4)
    graph = colour_lib.home / f"vectors-{colour_lib.spec.key}.hnsw.faiss"
    r = colour_lib.render(t, work / "b.png", tiles_across=4, tile_size=8)
    assert plan_names(colour_lib, r.render_id) == plan_names(colour_lib, exact.render_id)
    assert V.read(graph).ntotal == len(COLOURS)
    built = graph.stat().st_mtime_ns
    colour_lib.render(t, work / "c.png", tiles_across=4, tile_size=8)
    assert graph.stat().st_mtime_ns == built  # unchanged catalog: the cached graph
    (lib_dir / "red.jpg").unlink()
    colour_lib.index(workers=0)
    r = colour_lib.render(t, work / "d.png", tiles_across=4, tile_size=8)
    assert V.read(graph).ntotal == len(COLOURS) - 1
    assert "red" not in plan_names(colour_lib, r.render_id)


def test_render_never_reads_the_photo_folder(colour_lib, lib_dir, work):
    t = blocks_target(work / "target.png")
    shutil.rmtree(lib_dir)
    r = colour_lib.render(t, work / "out.jpg", tiles_across=4, tile_size=32)
    assert plan_names(colour_lib, r.render_id)[0] == "red"
    assert pyvips.Image.new_from_file(str(work / "out.jpg")).width == 128


@pytest.mark.parametrize("ext", [".jpg", ".png", ".webp", ".tif"])
def test_formats_open_with_expected_size(colour_lib, work, ext):
    t = blocks_target(work / "target.png")
    r = colour_lib.render(t, work / f"out{ext}", tiles_across=8, tile_size=24, aspect="3:2")
    assert (r.width, r.height) == (8 * 24, r.rows * 16)
    im = pyvips.Image.new_from_file(str(work / f"out{ext}"))
    assert (im.width, im.height) == (r.width, r.height)
    assert sorted(os.listdir(work)) == sorted(["target.png", f"out{ext}"])  # no temp files


def test_deep_zoom_output(colour_lib, work):
    t = blocks_target(work / "target.png")
    r = colour_lib.render(t, work / "zoom.dz", tiles_across=8, tile_size=64)
    assert r.output == str(work / "zoom.dzi")
    dzi = (work / "zoom.dzi").read_text()
    assert f'Width="{r.width}"' in dzi and f'Height="{r.height}"' in dzi
    assert (work / "zoom_files").is_dir()
    assert sorted(os.listdir(work)) == ["target.png", "zoom.dzi", "zoom_files"]


def test_deep_zoom_output_replaced_whole_or_not_at_all(colour_lib, work, monkeypatch):
    """A .dz output is a .dzi and a folder of tiles: when the last rename fails, the earlier
    output stays as it was, with no new tiles beside its old .dzi and no temporary files."""
    from mosaicdb.output import assemble

    t = blocks_target(work / "target.png")
    colour_lib.render(t, work / "zoom.dz", tiles_across=8, tile_size=64)
    before = {p.relative_to(work): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    real = os.replace

    def dzi_rename_fails(src, dst):
        if str(dst).endswith("zoom.dzi"):
            raise PermissionError(13, "Permission denied", str(dst))
        return real(src, dst)

    monkeypatch.setattr(assemble.os, "replace", dzi_rename_fails)
    with pytest.raises(PermissionError):
        colour_lib.render(t, work / "zoom.dz", tiles_across=6, tile_size=32)
    after = {p.relative_to(work): p.read_bytes() for p in sorted(work.rglob("*")) if p.is_file()}
    assert after == before
    monkeypatch.setattr(assemble.os, "replace", real)
    # what a run with this pid that died between the renames leaves
    stale = work / f".zoom.dzi.{os.getpid()}.old_files"
    (stale / "0").mkdir(parents=True)
    (stale / "0" / "0_0.jpeg").write_bytes(b"old")
    r = colour_lib.render(t, work / "zoom.dz", tiles_across=6, tile_size=32)
    assert f'Width="{r.width}"' in (work / "zoom.dzi").read_text()
    assert sorted(os.listdir(work)) == ["target.png", "zoom.dzi", "zoom_files"]


def test_same_seed_same_plan_and_saved_plan_replays(colour_lib, work, backend):
    t = blocks_target(work / "target.png")
    kw = dict(tiles_across=12, tile_size=8, max_uses=12, seed=7)
    a = colour_lib.render(t, work / "a.png", **kw)
    b = colour_lib.render(t, work / "b.png", **kw)
    assert colour_lib.catalog.plan(a.render_id) == colour_lib.catalog.plan(b.render_id)
    assert a.mean_delta_e_best is not None and a.mean_delta_e >= a.mean_delta_e_best
    c = colour_lib.render(None, work / "c.tif", plan=a.render_id, tile_size=20)
    assert c.render_id == a.render_id
    assert (c.width, c.height) == (a.cols * 20, a.rows * 20)
    assert c.distinct_tiles == a.distinct_tiles
    renders = colour_lib.renders()
    assert [r["id"] for r in renders] == [a.render_id, b.render_id]


def test_plan_with_removed_photo_names_the_cells(colour_lib, lib_dir, work, backend):
    t = blocks_target(work / "target.png")
    r = colour_lib.render(t, work / "a.png", tiles_across=4, tile_size=8)
    (lib_dir / "red.jpg").unlink()
    colour_lib.index(workers=0)
    with pytest.raises(
        RenderError,
        match=r"1 of 8 cells of plan 1 use photos no longer in the "
        r"store \(row 0 col 0\)",
    ):
        colour_lib.render(None, work / "b.png", plan=r.render_id)
    assert not (work / "b.png").exists()


def test_rules_that_cannot_be_met_fail_before_work(colour_lib, work):
    t = blocks_target(work / "target.png")
    with pytest.raises(
        RenderError,
        match=r"--max-uses 2 with 8 photos fills at most 16 cells, "
        r"but the grid has 128",
    ):
        colour_lib.render(t, work / "a.png", tiles_across=16, max_uses=2)
    with pytest.raises(RenderError, match="--min-distance 3 needs at least 49 different photos"):
        colour_lib.render(t, work / "a.png", tiles_across=16, min_distance=3)
    assert os.listdir(work) == ["target.png"]


def test_failed_write_leaves_nothing(colour_lib, work, monkeypatch):
    from mosaicdb.errors import ImageError
    from mosaicdb.output import strips

    t = blocks_target(work / "target.png")
    (work / "out.jpg").write_bytes(b"previous")

    def fail(*a, **k):
        raise ImageError("disk full")

    monkeypatch.setattr(strips, "save_strips", fail)
    with pytest.raises(ImageError):
        colour_lib.render(t, work / "out.jpg", tiles_across=4, tile_size=8)
    assert sorted(os.listdir(work)) == ["out.jpg", "target.png"]
    assert (work / "out.jpg").read_bytes() == b"previous"


def test_missing_thumbnail_is_one_clear_error_and_leaves_nothing(colour_lib, work):
    """A thumbnail row removed behind the catalog's back (the vector file still lists the
    photo): the render stops with a line that names the fix, and writes nothing."""
    from sqlalchemy import delete

    from mosaicdb.store import schema

    t = blocks_target(work / "target.png")
    with colour_lib.catalog.engine.begin() as c:
        c.execute(delete(schema.thumbnails))
    with pytest.raises(RenderError, match=r"have no stored thumbnail .*check --repair"):
        colour_lib.render(t, work / "out.jpg", tiles_across=4, tile_size=8)
    assert sorted(os.listdir(work)) == ["target.png"]


@pytest.mark.parametrize("aspect", ["1:1", "3:2"])  # 3:2 derives vectors from thumbnails
def test_thumbnail_that_does_not_decode_is_one_clear_error(colour_lib, work, aspect):
    """A stored thumbnail whose JPEG markers are intact but whose content is not (only
    `check --deep` sees it): the render names the photo and the fix, and writes nothing."""
    from sqlalchemy import select, update

    from mosaicdb.store import schema

    t = blocks_target(work / "target.png")
    th = schema.thumbnails.c
    with colour_lib.catalog.engine.begin() as c:
        for pid, data in c.execute(select(th.photo_id, th.data)).all():
            broken = data[:2] + bytes(len(data) - 4) + data[-2:]
            c.execute(update(schema.thumbnails).where(th.photo_id == pid).values(data=broken))
    with pytest.raises(
        RenderError, match=r"stored thumbnail of photo \d+ does not decode: .*check --deep --repair"
    ):
        colour_lib.render(t, work / "out.jpg", tiles_across=4, tile_size=8, aspect=aspect)
    assert sorted(os.listdir(work)) == ["target.png"]


def test_jpeg_too_big_names_formats_that_work(colour_lib, work):
    t = blocks_target(work / "target.png")
    with pytest.raises(RenderError, match=r"too big for JPEG .* write \.tif .*\.dz"):
        colour_lib.render(t, work / "a.jpg", tiles_across=1100, tile_size=64)


def test_blend_moves_colours_toward_target(lib, lib_dir, work):
    solid(lib_dir / "grey.jpg", COLOURS["grey"], Q=95)
    lib.index([lib_dir], workers=0)
    t = blocks_target(work / "target.png")
    r0 = lib.render(t, work / "a.png", tiles_across=4, tile_size=16)
    r1 = lib.render(t, work / "b.png", tiles_across=4, tile_size=16, blend=1.0)
    assert r1.mean_delta_e < r0.mean_delta_e / 3
    out = pyvips.Image.new_from_file(str(work / "b.png"))
    assert np.abs(out.crop(0, 0, 16, 16).numpy().mean(axis=(0, 1)) - COLOURS["red"]).max() < 6


def test_non_square_features_are_derived_once(colour_lib, work):
    from mosaicdb.features import FeatureSpec

    t = blocks_target(work / "target.png")
    colour_lib.render(t, work / "a.png", tiles_across=4, tile_size=12, aspect="4:3")
    key = FeatureSpec().with_aspect(4, 3).key
    assert colour_lib.catalog.feature_state(key)[0] == len(COLOURS)
    assert colour_lib.catalog.count_missing_features(key) == 0


def test_bad_options_name_the_option(colour_lib, work):
    t = blocks_target(work / "target.png")
    for kw, opt in [
        ({"aspect": "3x2"}, "--aspect"),
        ({"blend": 2.0}, "--blend"),
        ({"tile_size": 0}, "--tile-size"),
        ({"max_uses": -1}, "--max-uses"),
    ]:
        with pytest.raises(OptionError, match=f"^{opt}: "):
            colour_lib.render(t, work / "a.png", **kw)
    with pytest.raises(OptionError, match="^--output: unknown image format '.bmp'"):
        colour_lib.render(t, work / "a.bmp")


def test_cli_render_contract(cli, lib_dir, tmp_path):
    for name in ("red", "green", "blue", "yellow", "black", "white", "purple", "grey"):
        solid(lib_dir / f"{name}.jpg", COLOURS[name], Q=95)
    t = blocks_target(tmp_path / "target.png")
    r = cli("render", t, "-o", tmp_path / "x.jpg", "--tiles-across", "4", "--json")
    assert r.exit_code == 1
    assert r.output == f"Error: no store in {tmp_path / 'store'}: `mosaicdb index PATH` makes one\n"
    (tmp_path / "empty").mkdir()
    assert cli("index", tmp_path / "empty", "-q").exit_code == 0
    r = cli("render", t, "-o", tmp_path / "x.jpg", "--tiles-across", "4", "--json")
    assert r.output == "Error: the store has no indexed photos: run `mosaicdb index PATH` first\n"
    assert not (tmp_path / "x.jpg").exists()
    assert cli("index", lib_dir, "-j", "0", "-q").exit_code == 0
    r = cli("render", t, "-o", tmp_path / "x.jpg", "--tiles-across", "4", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert {
        "render_id",
        "output",
        "width",
        "height",
        "cols",
        "rows",
        "cells",
        "distinct_tiles",
        "mean_delta_e",
        "seconds",
    } <= d.keys()
    assert (d["cols"], d["rows"], d["cells"]) == (4, 2, 8)
    r = cli("render", tmp_path / "missing.jpg", "-o", tmp_path / "y.jpg")
    assert (r.exit_code, r.output) == (
        1,
        f"Error: target {tmp_path / 'missing.jpg'} does not exist\n",
    )
    (tmp_path / "corrupt.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really")
    r = cli("render", tmp_path / "corrupt.jpg", "-o", tmp_path / "y.jpg")
    assert r.exit_code == 1 and r.output.startswith(
        f"Error: cannot read target {tmp_path / 'corrupt.jpg'}"
    )
    assert r.output.count("\n") == 1
    assert not (tmp_path / "y.jpg").exists()
    r = cli("render", "--plan", "99", "-o", tmp_path / "y.jpg")
    assert (r.exit_code, r.output) == (1, "Error: no render with id 99; see `mosaicdb renders`\n")
    r = cli("renders", "--json")
    assert [x["id"] for x in json.loads(r.stdout)] == [d["render_id"]]


def test_score_reports_quality_at_two_widths(colour_lib, work):
    t = blocks_target(work / "target.png", cell=400)  # 1600×800
    r = colour_lib.render(t, work / "out.png", tiles_across=4, tile_size=400, score=True)
    assert set(r.quality) == {"400", "1600"}
    assert r.quality["400"]["delta_e"] < 3  # every cell got its own colour
    assert r.quality["1600"]["ssim"] > 0.9


def checker(n_checks: int, check: int, phase: int) -> np.ndarray:
    """Black/white checkerboard, n_checks × n_checks squares of `check` px."""
    yy, xx = np.indices((n_checks, n_checks))
    board = ((yy + xx + phase) % 2 * 255).astype(np.uint8)
    return np.repeat(np.repeat(board, check, 0), check, 1)[..., None].repeat(3, 2)


def test_grid_and_rerank_see_layout_the_coarse_grid_averages_out(lib, lib_dir, work):
    # 6×6 checkerboards in two phases: on the store's 3×3 grid both are uniform grey, on a
    # 6×6 grid they are opposites, so only a finer grid tells which tile fits a cell
    for phase in (0, 1):
        a = checker(6, 40, phase)
        pyvips.Image.new_from_array(a, interpretation="srgb").write_to_file(
            str(lib_dir / f"phase{phase}.png")
        )
    solid(lib_dir / "grey.jpg", (128, 128, 128), size=(240, 240), Q=95)  # a decoy
    lib.index([lib_dir], workers=0)
    target = np.concatenate([checker(6, 40, 0), checker(6, 40, 1)], axis=1)
    t = work / "target.png"
    pyvips.Image.new_from_array(target, interpretation="srgb").write_to_file(str(t))
    want = ["phase0", "phase1"]
    for opts in ({"rerank": 6}, {"grid": 6}):
        r = lib.render(t, work / "out.png", tiles_across=2, tile_size=24, **opts)
        assert plan_names(lib, r.render_id) == want, opts
    specs = {s for (s,) in _spec_rows(lib)}
    assert {"lab3v1", "lab6v1"} <= specs  # the fine vectors were derived once and kept
    with pytest.raises(OptionError, match="--rerank"):
        lib.render(t, work / "out.png", tiles_across=2, rerank=17)


def _spec_rows(lib):
    from sqlalchemy import select

    from mosaicdb.store import schema

    with lib.catalog.engine.connect() as c:
        return c.execute(select(schema.features.c.spec).distinct()).all()


def test_min_distance_offers_each_cell_its_window_of_candidates():
    from mosaicdb.render.stage import RenderOptions

    assert RenderOptions().candidates_per_cell() == 16
    assert RenderOptions(min_distance=1).candidates_per_cell() == 16  # 3×3 window
    assert RenderOptions(min_distance=5).candidates_per_cell() == 121
    assert RenderOptions(min_distance=20).candidates_per_cell() == 128
    assert RenderOptions(min_distance=5, candidates=8).candidates_per_cell() == 8


def test_a_tight_cap_widens_the_flows_graph_and_a_loose_one_does_not():
    from mosaicdb.render.stage import RenderOptions

    # 64,000 cells, 22,000 photos, 3 uses each: room for 1.03 × the cells
    assert RenderOptions(max_uses=3, min_distance=0).candidates_per_cell(64_000, 22_000) == 37
    assert RenderOptions(use_all=True, min_distance=0).candidates_per_cell(1_000, 5_000) == 256
    # 25,000 cells, 2,000 photos, 250 uses each: room for 20 × the cells
    assert RenderOptions(max_uses=250, min_distance=1).candidates_per_cell(25_000, 2_000) == 40
    assert RenderOptions(max_uses=600, min_distance=1).candidates_per_cell(60_000, 2_000) == 16


def test_cli_repetition_rules_contract(cli, lib_dir, tmp_path):
    """--repeat and --use-all on the command line: the rules the plan was made under and its
    variety in --json and text, a bad --repeat named."""
    for i in range(12):
        solid(lib_dir / f"c{i:02}.jpg", (20 * i, 255 - 20 * i, (90 * i) % 256), Q=95)
    t = blocks_target(tmp_path / "target.png")
    assert cli("index", lib_dir, "-j", "0", "-q").exit_code == 0
    out = tmp_path / "x.jpg"
    r = cli("render", t, "-o", out, "--tiles-across", "4", "--repeat", "sometimes")
    assert (r.exit_code, r.output) == (
        1,
        "Error: --repeat: must be one of varied, free, got 'sometimes'\n",
    )
    r = cli("render", t, "-o", out, "--tiles-across", "4", "--use-all", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["rules"] == {"max_uses": 2, "min_distance": 1, "use_all": True, "repeat": "varied"}
    assert d["variety"]["distinct_photos"] == 8  # 8 cells, 12 photos: none twice
    assert d["variety"]["min_repeat_distance"] is None
    assert d["variety"]["library_used"] == round(8 / 12, 4)
    r = cli("render", t, "-o", out, "--tiles-across", "4", "--repeat", "free")
    assert r.exit_code == 0, r.output
    assert "\nvariety: " in r.output and "of cells beside the same photo" in r.output


def test_output_over_the_target_or_into_an_indexed_folder_is_refused(colour_lib, work, lib_dir):
    """`render X.jpg -o X.jpg` overwrote the photo; a mosaic written into an indexed folder
    would be indexed as a photo next time. Both are refused, with one line, unless --force."""
    t = blocks_target(work / "target.png")
    before = t.read_bytes()
    with pytest.raises(OptionError, match=r"^--output: is the target image .*--force"):
        colour_lib.render(t, t, tiles_across=4, tile_size=8)
    assert t.read_bytes() == before
    inside = lib_dir / "sub" / "m.jpg"
    inside.parent.mkdir(exist_ok=True)
    with pytest.raises(OptionError, match=r"^--output: lies in the indexed folder "):
        colour_lib.render(t, inside, tiles_across=4, tile_size=8)
    assert not inside.exists()
    r = colour_lib.render(t, inside, tiles_across=4, tile_size=8, force=True)
    assert inside.exists() and r.cells == 8
    with pytest.raises(OptionError, match="indexed folder"):  # a re-render of the plan too
        colour_lib.render(output=inside, plan=r.render_id)


def test_a_plan_refuses_what_it_fixes_and_keeps_every_output(colour_lib, cli, work):
    t = blocks_target(work / "target.png")
    a = colour_lib.render(t, work / "a.dz", tiles_across=4, tile_size=8, repeat="free")
    for kw, flag in (
        ({"tiles_across": 8}, "--tiles-across"),
        ({"max_uses": 2}, "--max-uses"),
        ({"aspect": "3:2"}, "--aspect"),
        ({"repeat": "free"}, "--repeat"),
    ):
        with pytest.raises(OptionError, match=f"^{flag}: does not go with --plan {a.render_id}"):
            colour_lib.render(output=work / "x.jpg", plan=a.render_id, **kw)
    other = blocks_target(work / "other.png", layout=[["red", "red"], ["blue", "blue"]])
    with pytest.raises(OptionError, match=r"^TARGET: does not go with --plan \d+: the plan was"):
        colour_lib.render(other, work / "x.jpg", plan=a.render_id)
    assert not (work / "x.jpg").exists()
    # the same target, a new size and a blend: fine, and recorded as rendered
    b = colour_lib.render(t, work / "b.jpg", plan=a.render_id, tile_size=16, blend=0.4)
    (r,) = colour_lib.renders()
    assert r["output"].endswith("b.jpg") and r["blend"] == 0.4 and r["width"] == b.width
    assert [(o["output"].rsplit("/", 1)[1], o["tile_w"], o["blend"]) for o in r["outputs"]] == [
        ("a.dzi", 8, 0.0),
        ("b.jpg", 16, 0.4),
    ]
    # the earlier Deep Zoom copy is still a render of this store, by path and by id
    assert colour_lib.view(str(work / "a.dz")).render_id == a.render_id
    assert colour_lib.view(a.render_id).render_id == a.render_id
    text = cli("renders").output
    assert "also 8×8 px" in text and text.index("b.jpg") < text.index("also")


def test_tiles_decoded_during_placement_are_the_ones_assembly_would_decode(
    colour_lib, work, monkeypatch
):
    """The Warmer decodes tiles while the rules are solved; the output is the same pixels as
    without it, and its tiles are really handed to assembly."""
    from mosaicdb.output import assemble as A

    t = blocks_target(work / "target.png")
    kw = dict(tiles_across=12, tile_size=16, max_uses=12, seed=3)
    handed: list[int] = []
    take = A.Warmer.take

    def counted(self):
        self._thread.join()  # a tiny placement ends before the first decode: let it finish
        tiles = take(self)
        handed.append(len(tiles))
        return tiles

    monkeypatch.setattr(A.Warmer, "take", counted)
    a = colour_lib.render(t, work / "warm.png", **kw)
    monkeypatch.setattr(A.Warmer, "take", lambda self: (take(self), {})[1])
    b = colour_lib.render(t, work / "cold.png", **kw)
    assert colour_lib.catalog.plan(a.render_id) == colour_lib.catalog.plan(b.render_id)
    assert handed == [8]  # every photo of the library is among some cell's first four
    warm = pyvips.Image.new_from_file(str(work / "warm.png")).numpy()
    cold = pyvips.Image.new_from_file(str(work / "cold.png")).numpy()
    assert np.array_equal(warm, cold)
