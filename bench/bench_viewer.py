"""Viewer benchmark (issue 8): a render of 400 × 250 = 100,000 cells, its exported plan data,
and the page in headless Chromium (Debian's /usr/bin/chromium, driven by Playwright).

The store is synthetic: N generated tiles (solid colours spread over Lab with a little noise,
64 px JPEGs) indexed by mosaicdb; the target is a generated colour field; tiles are 16 px so the
Deep Zoom pyramid (6400 × 4000 px) is quick to write. Measured:

- plan data: bytes per cell of the photo-index array (Uint16 here), of the per-cell ΔE2000
  codes, and of the whole data.js as shipped (base64) without and with the photo table;
- time to first paint: navigation start → first pyramid tile drawn (the page's own
  performance.now() at OpenSeadragon's first tile-drawn event), over fresh pages of one browser
  (the first, cold page reported separately), served by `mosaicdb view`'s server and from a
  file:// export;
- tile lookup: the page's pointer-move handler (cell from the pointer position, panel filled),
  first and over 300 moves; and the round trip as a user sees it (mouse move sent → the photo's
  name in the panel).

Goals: first paint < 1 s, lookup < 50 ms, plan data ≤ 4 bytes per cell plus the photo table.

    python bench/bench_viewer.py [--tiles 1000] [--pages 7]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
from _common import DATA, machine  # noqa: E402
from browser import ARGS, CHROMIUM  # noqa: E402

COLS, ROWS, TILE = 400, 250, 16


def make_tiles(folder: Path, n: int) -> None:
    import numpy as np
    import pyvips

    from mosaicdb.features import lab_to_srgb8

    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(1)
    labs = np.column_stack(
        [rng.uniform(5, 95, n), rng.uniform(-70, 70, n), rng.uniform(-70, 70, n)]
    )
    rgbs = lab_to_srgb8(labs)
    for i, rgb in enumerate(rgbs):
        px = np.clip(rgb[None, None, :] + rng.normal(0, 6, (64, 64, 3)), 0, 255).astype(np.uint8)
        img = pyvips.Image.new_from_array(px).copy(interpretation="srgb")
        sub = folder / f"d{i // 100:02d}"
        sub.mkdir(exist_ok=True)
        img.write_to_file(str(sub / f"tile_{i:05d}.jpg"), Q=85)


def make_target(path: Path) -> None:
    import numpy as np
    import pyvips

    h, w = 500, 800
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    r = 127 + 120 * np.sin(x / 90) * np.cos(y / 70)
    g = 127 + 120 * np.sin((x + y) / 130)
    b = 127 + 120 * np.cos(np.hypot(x - 400, y - 250) / 60)
    px = np.clip(np.dstack([r, g, b]), 0, 255).astype(np.uint8)
    pyvips.Image.new_from_array(px).copy(interpretation="srgb").write_to_file(str(path), Q=92)


BASELINE_HTML = """<!doctype html><html><head><meta charset="utf-8"><title>baseline</title>
<link rel="icon" href="data:,"><style>html,body,#v{margin:0;width:100%;height:100%}</style>
</head><body><div id="v"></div><script src="openseadragon/openseadragon.min.js"></script>
<script src="bench_baseline.js"></script></body></html>
"""
BASELINE_JS = """window.mosaicdbViewer = {ready: false, timings: {script: performance.now()}};
const g = %s;
const viewer = OpenSeadragon({element: document.getElementById("v"), drawer: "canvas",
  showNavigationControl: false, immediateRender: true, crossOriginPolicy: false,
  tileSources: {Image: {xmlns: "http://schemas.microsoft.com/deepzoom/2008", Url: "tiles/",
    Format: g.format, Overlap: "0", TileSize: "256",
    Size: {Width: String(g.width), Height: String(g.height)}}}});
viewer.addHandler("open", () => { window.mosaicdbViewer.timings.open = performance.now(); });
viewer.addHandler("update-viewport", () => {
  const t = window.mosaicdbViewer.timings;
  if (t.firstFrame == null) t.firstFrame = performance.now();
});
viewer.addHandler("tile-loaded", () => {
  const t = window.mosaicdbViewer.timings;
  if (t.firstTile == null) t.firstTile = performance.now();
});
viewer.addHandler("tile-drawn", () => {
  const v = window.mosaicdbViewer;
  if (v.timings.firstPaint == null) { v.timings.firstPaint = performance.now(); v.ready = true; }
});
"""


def baseline(site: Path, view) -> str:
    """OpenSeadragon alone on the same pyramid (no mosaicdb data, no panel): what any deep-zoom
    page costs on this machine."""
    g = {**view.data["grid"], "format": view.data["dzi"]["format"]}
    (site / "bench_baseline.html").write_text(BASELINE_HTML)
    (site / "bench_baseline.js").write_text(BASELINE_JS % json.dumps(g))
    return (site / "bench_baseline.html").as_uri()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--tiles", type=int, default=1000, help="generated tiles in the store")
    ap.add_argument("--pages", type=int, default=7, help="page loads measured per mode")
    args = ap.parse_args()
    if not os.path.exists(CHROMIUM):
        sys.exit(f"need {CHROMIUM}: apt-get install chromium chromium-driver")
    import mosaicdb
    from mosaicdb.view.viewer import js_json

    base = DATA / "bench_viewer"
    if base.exists():
        shutil.rmtree(base)
    base.mkdir(parents=True)
    t = time.perf_counter()
    make_tiles(base / "tiles", args.tiles)
    make_target(base / "target.jpg")
    with mosaicdb.open(base / "store") as lib:
        lib.index([base / "tiles"], workers=2)
        t_index = time.perf_counter() - t
        t = time.perf_counter()
        rep = lib.render(base / "target.jpg", base / "mosaic.dz", tiles_across=COLS, tile_size=TILE)
        t_render = time.perf_counter() - t
        assert (rep.cols, rep.rows) == (COLS, ROWS), (rep.cols, rep.rows)
        t = time.perf_counter()
        view = lib.view(rep.render_id)
        t_view = time.perf_counter() - t
    cells = COLS * ROWS
    s = view.sizes()
    table = len(js_json(view.data["photos"])) + len(js_json(view.data["folders"]))
    t = time.perf_counter()
    exp = view.export(base / "site")
    t_export = time.perf_counter() - t

    print(machine(), f"load average {os.getloadavg()[0]:.1f} before the browser runs")
    print(
        f"store: {args.tiles:,} generated tiles (indexed in {t_index:.1f} s); render "
        f"{COLS}×{ROWS} = {cells:,} cells, {rep.distinct_tiles:,} distinct photos, "
        f"{rep.width}×{rep.height} px .dz in {t_render:.1f} s"
    )
    print(
        f"view data made in {t_view:.2f} s (plan, photo table, per-cell ΔE2000 from the target); "
        f"export in {t_export:.2f} s"
    )
    print(
        f"plan data: photo index {s['plan_bytes']:,} B = {s['plan_bytes_per_cell']:.2f} B/cell "
        f"(Uint{8 * view.data['plan']['bytes_per_cell']}); ΔE2000 codes {s['delta_e_bytes']:,} B "
        f"= {s['delta_e_bytes'] / cells:.2f} B/cell; raw total "
        f"{(s['plan_bytes'] + s['delta_e_bytes']) / cells:.2f} B/cell"
    )
    print(
        f"data.js as shipped (base64): {s['data_js_bytes']:,} B = "
        f"{s['data_js_bytes_per_cell_without_table']:.2f} B/cell plus the photo table "
        f"{table:,} B ({len(view.photo_paths):,} photos, {table / len(view.photo_paths):.0f} "
        "B/photo)"
    )

    # the server as a user runs it: `mosaicdb view ID --no-open`, its own process
    t = time.perf_counter()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "mosaicdb",
            "--home",
            str(base / "store"),
            "view",
            str(rep.render_id),
            "--no-open",
            "--json",
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        url = json.loads(proc.stdout.readline())["url"]
        print(f"`mosaicdb view {rep.render_id}` serving after {time.perf_counter() - t:.2f} s")
        results, bpaints = measure_pages(view, url, exp["url"], base, args.pages)
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)

    ms = statistics.median
    print(
        f"[baseline: OpenSeadragon alone on the same pyramid, file://] first paint median "
        f"{ms(bpaints):.0f} ms, max {max(bpaints):.0f} ms"
    )
    for mode, r in results.items():
        p, warm = r["paints"], r["paints"][1:] or r["paints"]
        print(
            f"[{mode}] first paint: cold page {p[0]:.0f} ms; next {len(warm)} pages median "
            f"{ms(warm):.0f} ms, max {max(warm):.0f} ms (data decode {ms(r['decodes']):.1f} ms; "
            f"all visible tiles drawn at {ms(r['loaded']):.0f} ms)"
        )
        print(
            f"[{mode}] first tile lookup of each page (right after first paint, tiles still "
            f"loading): handler median {ms(r['firsts']):.2f} ms (max {max(r['firsts']):.2f}); "
            f"pointer event → next frame median {ms(r['frames']):.1f} ms (max "
            f"{max(r['frames']):.1f}); mouse move → name read back through Playwright median "
            f"{ms(r['trips']):.0f} ms"
        )
        h, f = sorted(r["burst_handler"]), sorted(r["burst_frames"])
        print(
            f"[{mode}] {len(h)} lookups once loaded: handler median {ms(h):.2f} ms, p95 "
            f"{h[int(0.95 * len(h))]:.2f}, max {h[-1]:.2f}; pointer event → next frame median "
            f"{ms(f):.1f} ms, p95 {f[int(0.95 * len(f))]:.1f}, max {f[-1]:.1f}"
        )
        found, n_hl, t_search = r["search"]
        print(
            f"[{mode}] search 'tile_0004': {found} photos, {n_hl:,} cells highlighted, "
            f"{t_search:.0f} ms (round trip)"
        )
    worst_paint = max(max(r["paints"][1:] or r["paints"]) for r in results.values())
    worst_first = max(max(r["frames"]) for r in results.values())
    p95 = max(
        sorted(r["burst_frames"])[int(0.95 * len(r["burst_frames"]))] for r in results.values()
    )
    per_cell = s["plan_bytes_per_cell"]

    def verdict(ok: bool) -> str:
        return "met" if ok else "NOT met"

    print(
        f"goals: first paint < 1000 ms: {verdict(worst_paint < 1000)} (worst warm page "
        f"{worst_paint:.0f} ms); lookup < 50 ms: {verdict(worst_first < 50 and p95 < 50)} "
        f"(first lookup, pointer event → frame, worst {worst_first:.1f} ms; p95 once loaded "
        f"{p95:.1f} ms); plan ≤ 4 B/cell: {verdict(per_cell <= 4)} ({per_cell:.2f} B/cell raw, "
        f"{s['data_js_bytes_per_cell_without_table']:.2f} B/cell as shipped with ΔE)"
    )
    print(f"load average {os.getloadavg()[0]:.1f} at the end")


def measure_pages(view, served_url: str, file_url: str, base: Path, pages: int):
    """Fresh pages of one headless Chromium: first paint, first lookup, 300 lookups once the
    view is loaded, a search; and the OpenSeadragon-alone baseline."""
    import random

    from playwright.sync_api import sync_playwright

    ready = "() => { const v = window.mosaicdbViewer; return v && (v.ready || v.error); }"
    names = view.data["photos"]["name"]
    width = view.data["plan"]["bytes_per_cell"]
    results: dict[str, dict] = {}
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        base_url = baseline(base / "site", view)
        bpaints = []
        for _ in range(pages):
            page = browser.new_page(viewport={"width": 1280, "height": 800})
            page.goto(base_url)
            page.wait_for_function(ready, timeout=30_000)
            bpaints.append(page.evaluate("window.mosaicdbViewer.timings.firstPaint"))
            page.close()
        for mode, url in (("served", served_url), ("file://", file_url)):
            r = {k: [] for k in ("paints", "decodes", "loaded", "firsts", "frames", "trips")}
            for k in range(pages):
                page = browser.new_page(viewport={"width": 1280, "height": 800})
                errors: list[str] = []
                page.on("console", lambda m, e=errors: e.append(m.text) if m.type == "error" else 0)
                page.on("pageerror", lambda x, e=errors: e.append(str(x)))
                page.goto(url)
                page.wait_for_function(ready, timeout=30_000)
                tm = page.evaluate("window.mosaicdbViewer.timings")
                r["paints"].append(tm["firstPaint"])
                r["decodes"].append(tm["data"] - tm["script"])
                box = page.locator("#viewer").bounding_box()
                cell = (ROWS // 3) * COLS + COLS // 3 + k
                c = page.evaluate(f"window.mosaicdbViewer.cellCentre({cell})")
                want = names[
                    int.from_bytes(view.plan_bytes[width * cell : width * (cell + 1)], "little")
                ]
                t0 = time.perf_counter()
                page.mouse.move(box["x"] + c["x"], box["y"] + c["y"])
                page.wait_for_function(
                    "w => document.getElementById('cell-name').textContent === w", arg=want
                )
                r["trips"].append((time.perf_counter() - t0) * 1000)
                lk = page.evaluate("window.mosaicdbViewer.lookups")
                r["firsts"].append(lk["first"])
                r["frames"].append(lk["toFrameFirst"])
                page.wait_for_function(
                    "() => window.mosaicdbViewer.timings.fullyLoaded != null", timeout=30_000
                )
                r["loaded"].append(page.evaluate("window.mosaicdbViewer.timings.fullyLoaded"))
                if k == pages - 1:
                    page.evaluate(
                        "() => { const L = window.mosaicdbViewer.lookups; "
                        "L.handler = []; L.toFrame = []; }"
                    )
                    rnd = random.Random(0)
                    for _ in range(300):
                        page.mouse.move(
                            box["x"] + rnd.uniform(5, box["width"] - 5),
                            box["y"] + rnd.uniform(5, box["height"] - 5),
                        )
                    page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")
                    lk = page.evaluate("window.mosaicdbViewer.lookups")
                    r["burst_handler"], r["burst_frames"] = lk["handler"], lk["toFrame"]
                    t0 = time.perf_counter()
                    found = page.evaluate("window.mosaicdbViewer.search('tile_0004').length")
                    t_search = (time.perf_counter() - t0) * 1000
                    n_hl = page.evaluate("window.mosaicdbViewer.highlightedCells().length")
                    r["search"] = (found, n_hl, t_search)
                    if mode == "served":
                        page.screenshot(path=str(base / "viewer.png"))
                if errors:
                    print(f"  {mode} page {k}: console errors: {errors[:3]}")
                page.close()
            results[mode] = r
        browser.close()
    return results, bpaints


if __name__ == "__main__":
    main()
