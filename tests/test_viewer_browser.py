"""The viewer page in a real headless Chromium (Debian's `chromium`, driven by Playwright):
it loads without console errors, paints the mosaic, names the photo under the pointer,
highlights search hits, shows a hostile file name as text, and works from a file:// export.

Skips (with the reason) when /usr/bin/chromium or the playwright package is missing."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import pyvips
from browser import ARGS, CHROMIUM
from conftest import COLOURS
from test_viewer import HOSTILE, build_render

import mosaicdb

if not os.path.exists(CHROMIUM):
    pytest.skip(
        f"{CHROMIUM} not found: install the Debian packages chromium and chromium-driver",
        allow_module_level=True,
    )
sync_api = pytest.importorskip("playwright.sync_api", reason="the playwright package is missing")


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    m = build_render(tmp_path_factory.mktemp("browser"))
    with mosaicdb.open(m["home"]) as lib:
        m["view"] = lib.view(m["id"])
    return m


@pytest.fixture(scope="module")
def server(made):
    srv = made["view"].server()
    srv.serve_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


@pytest.fixture(scope="module")
def browser():
    pw = sync_api.sync_playwright().start()
    try:
        b = pw.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
    except Exception as e:  # a browser that does not start is an environment problem
        pw.stop()
        pytest.skip(f"cannot start {CHROMIUM}: {e}")
    yield b
    b.close()
    pw.stop()


class Page:
    """A page with its console errors, uncaught exceptions and dialogs recorded."""

    def __init__(self, browser, url: str):
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.page = browser.new_page(viewport={"width": 1100, "height": 640})
        self.page.on(
            "console",
            lambda m: self.errors.append(f"console {m.text}") if m.type == "error" else None,
        )
        self.page.on("pageerror", lambda e: self.errors.append(f"pageerror {e}"))

        def on_dialog(d):
            self.dialogs.append(d.message)
            d.dismiss()

        self.page.on("dialog", on_dialog)
        self.page.goto(url)
        self.page.wait_for_function(
            "() => { const v = window.mosaicdbViewer; return v && (v.ready || v.error); }",
            timeout=15_000,
        )
        err = self.page.evaluate("window.mosaicdbViewer.error || null")
        assert err is None, err

    def hover_cell(self, cell: int) -> None:
        c = self.page.evaluate(f"window.mosaicdbViewer.cellCentre({cell})")
        box = self.page.locator("#viewer").bounding_box()
        self.page.mouse.move(box["x"] + c["x"], box["y"] + c["y"])

    def text(self, sel: str) -> str:
        return self.page.text_content(sel)

    def close(self) -> None:
        self.page.close()


@pytest.fixture
def page(browser, server):
    p = Page(browser, server.url)
    yield p
    p.close()


def expected_cells(made, name: str) -> list[int]:
    return [i for i, n in enumerate(made["names"]) if n == name]


def test_loads_without_errors_and_paints(page, made):
    shot = pyvips.Image.new_from_buffer(page.page.locator("#viewer").screenshot(), "")
    px = shot.numpy()[..., :3].astype(int)
    assert px.std() > 30, "the mosaic canvas is blank"
    # the middle of the top-left cell is the red photo
    c = page.page.evaluate("window.mosaicdbViewer.cellCentre(0)")
    got = px[int(c["y"]), int(c["x"])]
    assert np.abs(got - COLOURS["red"]).max() < 12, got
    t = page.page.evaluate("window.mosaicdbViewer.timings")
    assert t["firstPaint"] >= t["data"]
    assert page.text("#title") == f"Render {made['id']}"
    assert page.errors == []


def test_hover_names_the_cell_photo(page, made, server):
    for cell in (0, 3, 5):
        page.hover_cell(cell)
        want = made["names"][cell]
        page.page.wait_for_function(
            "w => document.getElementById('cell-name').textContent === w", arg=want, timeout=10_000
        )
        r, c = divmod(cell, 4)
        assert page.text("#cell-pos") == f"row {r + 1} of 2, column {c + 1} of 4"
        assert page.text("#cell-folder") == str(made["photos"])
        assert page.text("#cell-size").startswith("300 × 200 px")
        assert page.text("#cell-de").endswith("against the target")
        assert float(page.text("#cell-de").split()[0]) < 2
    # the local link opens the original, through /photo/<index> only
    href = page.page.get_attribute("#cell-open", "href")
    assert href.startswith("photo/")
    resp = page.page.request.get(server.url + href)
    assert resp.ok and resp.body() == (made["photos"] / made["names"][5]).read_bytes()
    # click keeps the cell; moving away does not change the panel
    page.page.mouse.down()
    page.page.mouse.up()
    page.hover_cell(0)
    page.page.wait_for_timeout(100)
    assert page.text("#cell-name") == made["names"][5]
    assert page.errors == []


def test_search_highlights_every_cell_of_the_photo(page, made):
    page.page.fill("#search", "gre")  # green.jpg and grey.jpg
    page.page.wait_for_function("() => window.mosaicdbViewer.highlightedCells().length > 0")
    want = sorted(expected_cells(made, "green.jpg") + expected_cells(made, "grey.jpg"))
    assert page.page.evaluate("window.mosaicdbViewer.highlightedCells()") == want
    assert page.text("#search-status") == f"2 photos in {len(want)} cells"
    page.page.evaluate("() => new Promise(r => requestAnimationFrame(() => r()))")  # drawn

    def mark_alpha(cell):
        return page.page.evaluate(
            """cell => {
                const v = window.mosaicdbViewer, c = v.cellCentre(cell);
                const m = document.getElementById('marks'), r = devicePixelRatio || 1;
                return m.getContext('2d').getImageData(c.x * r, c.y * r, 1, 1).data[3];
            }""",
            cell,
        )

    # a spotlight: the cells found are clear, every other cell is dimmed
    assert all(mark_alpha(c) == 0 for c in want)
    assert all(mark_alpha(c) > 100 for c in range(8) if c not in want)
    # picking one result narrows to that photo
    page.page.click("#results button:has-text('green.jpg')")
    assert page.page.evaluate("window.mosaicdbViewer.highlightedCells()") == expected_cells(
        made, "green.jpg"
    )
    page.page.fill("#search", "")
    page.page.wait_for_function("() => window.mosaicdbViewer.highlightedCells().length === 0")
    assert page.errors == []


def test_hostile_file_name_is_text(page, made):
    cell = made["names"].index(HOSTILE)
    page.hover_cell(cell)
    page.page.wait_for_function(
        "w => document.getElementById('cell-name').textContent === w", arg=HOSTILE, timeout=10_000
    )
    page.page.fill("#search", "<img")
    page.page.wait_for_selector("#results button")
    assert page.text("#results button").startswith(HOSTILE)
    page.page.wait_for_timeout(300)
    assert page.page.evaluate("document.querySelectorAll('img').length") == 0
    assert page.page.evaluate("document.querySelectorAll('[onerror]').length") == 0
    assert page.dialogs == [] and page.errors == []


def test_target_overlay_toggle(page):
    page.page.check("#overlay")
    page.page.wait_for_function("() => window.mosaicdbViewer.overlay() !== null", timeout=10_000)
    assert page.page.evaluate("window.mosaicdbViewer.overlay().getOpacity()") == 0.5
    page.page.fill("#overlay-opacity", "80")
    assert page.page.evaluate("window.mosaicdbViewer.overlay().getOpacity()") == 0.8
    page.page.uncheck("#overlay")
    assert page.page.evaluate("window.mosaicdbViewer.overlay().getOpacity()") == 0
    page.hover_cell(1)  # lookups still use the mosaic, not the overlay
    page.page.wait_for_function(
        "() => document.getElementById('cell-name').textContent === 'green.jpg'", timeout=10_000
    )
    assert page.errors == []


def test_export_works_from_file_url(browser, made, tmp_path):
    r = made["view"].export(tmp_path / "site")
    p = Page(browser, r["url"])
    try:
        p.hover_cell(2)
        p.page.wait_for_function(
            "() => document.getElementById('cell-name').textContent === 'blue.jpg'", timeout=10_000
        )
        href = p.page.get_attribute("#cell-open", "href")
        assert href == (made["photos"] / "blue.jpg").as_uri()
        shot = pyvips.Image.new_from_buffer(p.page.locator("#viewer").screenshot(), "")
        assert shot.numpy()[..., :3].std() > 30
        assert p.errors == []
    finally:
        p.close()
    assert Path(r["page"]).is_file()
