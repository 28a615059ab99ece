"""`view`: the exported plan data round-trips, catalog text is escaped, the server serves only
the render's files on 127.0.0.1, and a render that is not Deep Zoom gets a clear message.
(The page itself, in a real browser: test_viewer_browser.py.)"""

from __future__ import annotations

import base64
import http.client
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import numpy as np
import pytest
import pyvips
from conftest import COLOURS, LAYOUT, blocks_target, solid

import mosaicdb
from mosaicdb.errors import MosaicdbError, NotFoundError, RenderError
from mosaicdb.view import server as S
from mosaicdb.view import viewer as V

HOSTILE = "<img src=x onerror=alert(1)>.jpg"
FILE_OF = {n: (HOSTILE if n == "purple" else f"{n}.jpg") for n in COLOURS}


def build_render(base: Path, output: str = "mosaic.dz", tile_size: int = 64) -> dict:
    """A store of the eight named colours (purple's file has a hostile name), a 4×2 blocks
    target and its render; each cell's photo is known."""
    photos = base / "photos"
    for name, rgb in COLOURS.items():
        solid(photos / FILE_OF[name], rgb, size=(300, 200), Q=95)
    target = blocks_target(base / "target.png")
    out_dir = base / "out"
    out_dir.mkdir(exist_ok=True)
    home = base / "store"
    with mosaicdb.open(home) as lib:
        lib.index([photos], workers=0)
        r = lib.render(target, out_dir / output, tiles_across=4, tile_size=tile_size)
    expect = [FILE_OF[n] for row in LAYOUT for n in row]
    return {
        "home": home,
        "id": r.render_id,
        "report": r,
        "target": target,
        "photos": photos,
        "out": out_dir,
        "names": expect,
    }


def parse_data_js(text: bytes | str) -> dict:
    if isinstance(text, bytes):
        text = text.decode()
    prefix = "window.MOSAICDB_VIEW = "
    assert text.startswith(prefix) and text.endswith(";\n")
    return json.loads(text[len(prefix) : -2])


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    return build_render(tmp_path_factory.mktemp("viewer"))


@pytest.fixture(scope="module")
def view(made):
    with mosaicdb.open(made["home"]) as lib:
        return lib.view(made["id"])


@pytest.fixture(scope="module")
def server(view):
    srv = view.server()
    srv.serve_in_thread()
    yield srv
    srv.shutdown()
    srv.server_close()


def get(server, path: str, method: str = "GET", headers: dict | None = None):
    host, port = server.server_address[:2]
    c = http.client.HTTPConnection(host, port, timeout=10)
    try:
        # http.client sends the path as given: no normalisation of .. or %2e on our side
        c.putrequest(method, path, skip_host=bool(headers and "Host" in headers))
        for k, v in (headers or {}).items():
            c.putheader(k, v)
        c.endheaders()
        r = c.getresponse()
        return r.status, dict(r.getheaders()), r.read()
    finally:
        c.close()


# -- the data ---------------------------------------------------------------------------------
def test_export_data_round_trips(made, view):
    d = parse_data_js(view.data_js(local=False))
    g = d["grid"]
    assert (g["cols"], g["rows"], g["cell_w"], g["cell_h"]) == (4, 2, 64, 64)
    assert (g["width"], g["height"]) == (256, 128)
    assert d["plan"]["bytes_per_cell"] == 2 and d["local"] is False
    raw = base64.b64decode(d["plan"]["base64"])
    assert len(raw) == 2 * 8  # 2 bytes per cell
    ids = V.decode_plan(d["photos"]["id"], raw, 2)
    with mosaicdb.open(made["home"]) as lib:
        assert ids == lib.catalog.plan(made["id"])
    idx = np.frombuffer(raw, "<u2")
    assert [d["photos"]["name"][i] for i in idx] == made["names"]
    folders = {f["name"] for f in d["folders"]}
    assert folders == {str(made["photos"])}
    assert d["folders"][0]["uri"] == made["photos"].as_uri()
    assert set(d["photos"]["width"]) == {300} and set(d["photos"]["height"]) == {200}
    sizes = {n: (made["photos"] / n).stat().st_size for n in made["names"]}
    assert {d["photos"]["name"][i]: d["photos"]["bytes"][i] for i in idx} == sizes
    # per-cell ΔE2000: same definition as the render report, quantized to 0.5
    de = np.frombuffer(base64.b64decode(d["delta_e"]["base64"]), np.uint8) * d["delta_e"]["step"]
    assert len(de) == 8 and de.max() < 2
    assert abs(de.mean() - made["report"].mean_delta_e) <= 0.25
    assert abs(d["delta_e"]["mean"] - made["report"].mean_delta_e) < 1e-6
    assert d["target"] == {"url": "target.jpg"} and d["notes"] == []
    t = pyvips.Image.new_from_buffer(view.target_jpeg, "")
    assert abs(t.width / t.height - 2.0) < 0.02


def test_plan_encoding_widths_and_delta_e_codes():
    plan = np.arange(70_000, dtype=np.int64)[::-1] * 3 + 5
    ids, data, width = V.encode_plan(plan)
    assert width == 4 and len(data) == 4 * len(plan)
    assert V.decode_plan(ids, data, width) == plan.tolist()
    plan = np.array([9, 9, 2, 10**12, 2])
    ids, data, width = V.encode_plan(plan)
    assert (ids, width, len(data)) == ([2, 9, 10**12], 2, 10)
    assert V.decode_plan(ids, data, width) == plan.tolist()
    codes = np.frombuffer(V.quantize_delta_e([0, 1.26, 3.74, 126.9, 500, np.nan]), np.uint8)
    assert codes.tolist() == [0, 3, 7, 254, 254, 255]


def test_hostile_names_are_escaped(view):
    js = view.data_js(local=True)
    assert b"<" not in js and b">" not in js and b"\xe2\x80\xa8" not in js
    d = parse_data_js(js)
    assert HOSTILE in d["photos"]["name"]
    assert d["local"] is True
    # the page never turns catalog text into HTML
    page_js = (V.STATIC / "viewer.js").read_text()
    code = "\n".join(ln for ln in page_js.splitlines() if not ln.strip().startswith("//"))
    for sink in ("innerHTML", "outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in code
    assert "textContent" in code


def test_csp_matches_page_and_vendored_openseadragon():
    html = (V.STATIC / "index.html").read_text()
    meta = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', html).group(1)
    assert meta == S.CSP
    assert "unsafe-inline" not in S.CSP and "unsafe-eval" not in S.CSP
    assert "frame-ancestors" in S.CSP_HEADER
    osd = (V.STATIC / "openseadragon" / "openseadragon.min.js").read_text()
    style = re.search(r'textContent="(@media \(hover: none\)[^"]*)"', osd).group(1)
    import hashlib

    digest = base64.b64encode(hashlib.sha256(style.encode()).digest()).decode()
    assert S.OSD_STYLE_HASH == f"sha256-{digest}"
    assert (V.STATIC / "openseadragon" / "LICENSE.txt").read_text().count("OpenSeadragon") >= 1


def test_export_is_a_static_folder(made, view, tmp_path):
    r = view.export(tmp_path / "site")
    site = tmp_path / "site"
    assert r["page"] == str(site / "index.html") and r["url"].startswith("file:///")
    for name in ("index.html", "viewer.js", "viewer.css", "data.js", "target.jpg"):
        assert (site / name).is_file(), name
    assert (site / "openseadragon" / "openseadragon.min.js").is_file()
    assert (site / "openseadragon" / "LICENSE.txt").is_file()
    files = made["out"] / "mosaic_files"
    want = sorted(p.relative_to(files) for p in files.rglob("*") if p.is_file())
    got = sorted(p.relative_to(site / "tiles") for p in (site / "tiles").rglob("*") if p.is_file())
    assert got == want and want
    assert parse_data_js((site / "data.js").read_bytes())["local"] is False
    # again into the same folder: replaced; into an unrelated non-empty folder: refused
    view.export(site)
    other = tmp_path / "other"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(MosaicdbError, match="not empty"):
        view.export(other)
    with pytest.raises(MosaicdbError, match="overlaps"):
        view.export(files / "0")


# -- which render ------------------------------------------------------------------------------
def test_render_by_path_and_unknown(made):
    with mosaicdb.open(made["home"]) as lib:
        for ref in (made["out"] / "mosaic.dz", made["out"] / "mosaic.dzi", str(made["id"])):
            assert lib.view(ref).render_id == made["id"]
        with pytest.raises(NotFoundError, match="no render with id 99"):
            lib.view(99)
        with pytest.raises(NotFoundError, match="not the output of a render"):
            lib.view(made["out"] / "other.dzi")


def test_not_deep_zoom_says_how(tmp_path, cli):
    m = build_render(tmp_path, output="flat.jpg", tile_size=16)
    rid = m["id"]
    with mosaicdb.open(m["home"]) as lib:
        with pytest.raises(RenderError) as e:
            lib.view(rid)
    assert "not as Deep Zoom" in str(e.value)
    assert f"mosaicdb render --plan {rid} -o mosaic.dz" in str(e.value)
    r = cli("--home", m["home"], "view", rid, "--no-open")
    assert r.exit_code == 1 and r.output.startswith("Error: render 1 was written as ")
    assert "render --plan 1 -o mosaic.dz" in r.output
    # following the advice works
    assert cli("--home", m["home"], "render", "--plan", rid, "-o", m["out"] / "z.dz").exit_code == 0
    with mosaicdb.open(m["home"]) as lib:
        assert lib.view(rid).data["grid"]["cell_w"] == 64  # the new pyramid's cells
    shutil.rmtree(m["out"] / "z_files")
    with mosaicdb.open(m["home"]) as lib, pytest.raises(RenderError, match="are gone"):
        lib.view(rid)


def test_target_or_photo_gone(tmp_path):
    m = build_render(tmp_path)
    m["target"].unlink()
    with mosaicdb.open(m["home"]) as lib:
        pid = lib.catalog.plan(m["id"])[0]
        lib.catalog.delete_photos([pid])
        v = lib.view(m["id"])
    assert v.delta_e is None and v.target_jpeg is None
    d = parse_data_js(v.data_js(local=False))
    assert d["delta_e"] is None and d["target"] is None
    assert any("is gone: no ΔE2000" in n for n in d["notes"])
    assert any("1 photo(s) of this plan are no longer in the store" in n for n in d["notes"])
    idx = np.frombuffer(base64.b64decode(d["plan"]["base64"]), "<u2")
    assert d["photos"]["name"][idx[0]] is None and d["photos"]["id"][idx[0]] == pid
    assert v.photo_paths[idx[0]] is None
    r = v.export(tmp_path / "site")
    assert not (tmp_path / "site" / "target.jpg").exists() and r["delta_e"] is False


# -- the server --------------------------------------------------------------------------------
def test_server_binds_loopback_and_sends_csp(server):
    assert server.server_address[0] == "127.0.0.1"
    assert server.url.startswith("http://127.0.0.1:") and server.loopback_only
    status, headers, body = get(server, "/")
    assert status == 200 and b"<title>" in body
    assert headers["Content-Security-Policy"] == S.CSP_HEADER
    assert headers["X-Content-Type-Options"] == "nosniff"
    assert headers["Content-Type"].startswith("text/html")
    status, headers, body = get(server, "/data.js")
    assert status == 200 and parse_data_js(body)["local"] is True
    for path in ("/viewer.js", "/viewer.css", "/openseadragon/openseadragon.min.js"):
        assert get(server, path)[0] == 200, path
    assert get(server, "/target.jpg")[0] == 200
    status, headers, _ = get(server, "/", method="HEAD")
    assert status == 200 and int(headers["Content-Length"]) > 0


def test_server_serves_the_pyramid_and_nothing_else(made, server, tmp_path):
    files = made["out"] / "mosaic_files"
    tile = next(files.rglob("*.jpg"))
    rel = tile.relative_to(files).as_posix()
    status, headers, body = get(server, f"/tiles/{rel}")
    assert status == 200 and body == tile.read_bytes() and headers["Content-Type"] == "image/jpeg"
    # a link inside the pyramid that points outside is not followed
    secret = tmp_path / "secret.txt"
    secret.write_text("secret")
    os.symlink(secret, files / "link.txt")
    try:
        refused = [
            "/../../../../etc/passwd",
            "/tiles/../../../../etc/passwd",
            "/tiles/../mosaic.dzi",
            "/tiles/..%2f..%2fstore/catalog.sqlite",
            "/tiles/%2e%2e/%2e%2e/store/catalog.sqlite",
            "/%2e%2e/viewer.py",
            "/openseadragon/../../viewer.py",
            "/openseadragon/../../../cli.py",
            "//etc/passwd",
            "/tiles//etc/passwd",
            "/tiles/link.txt",
            "/tiles/",
            "/tiles/0",
            "/tiles/0%00.jpg",
            "/tiles/..\\..\\mosaic.dzi",
            "/mosaic.dzi",
            "/store/catalog.sqlite",
            "/viewer.py",
            "/photo/99",
            "/photo/-1",
            "/photo/../../etc/passwd",
            "/photo/" + str(made["photos"] / "red.jpg"),
            "/%ff",
        ]
        for path in refused:
            status, _, body = get(server, path)
            assert status in (400, 404), path
            assert b"secret" not in body and b"root:" not in body
    finally:
        (files / "link.txt").unlink()
    assert get(server, "/", method="POST")[0] == 501
    assert get(server, "/data.js", method="PUT")[0] == 501


def test_server_refuses_other_host_names(server):
    port = server.server_address[1]
    assert get(server, "/", headers={"Host": "evil.example"})[0] == 421
    assert get(server, "/", headers={"Host": f"evil.example:{port}"})[0] == 421
    assert get(server, "/", headers={"Host": f"localhost:{port}"})[0] == 200


def test_server_photo_route_serves_the_catalog_file(made, view, server):
    i = view.data["photos"]["name"].index(HOSTILE)
    status, headers, body = get(server, f"/photo/{i}")
    assert status == 200 and body == (made["photos"] / HOSTILE).read_bytes()
    assert headers["Content-Type"] == "image/jpeg"
    assert "sandbox" in headers["Content-Security-Policy"]


def test_server_other_interface_is_opt_in(view):
    srv = view.server("0.0.0.0", 0)
    try:
        assert not srv.loopback_only and srv.server_address[0] == "0.0.0.0"
    finally:
        srv.server_close()
    with pytest.raises(MosaicdbError, match="--port: must be between 0"):
        view.server("127.0.0.1", -5)
    busy = view.server()
    try:
        with pytest.raises(MosaicdbError, match="cannot listen on 127.0.0.1"):
            view.server("127.0.0.1", busy.server_address[1])
    finally:
        busy.server_close()


def test_cli_export_json(made, cli, tmp_path):
    r = cli("--home", made["home"], "view", made["id"], "--export", tmp_path / "site", "--json")
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["cells"] == 8 and d["photos"] == 8 and d["delta_e"] is True
    assert Path(d["page"]).is_file()


def test_cli_serves_until_ctrl_c(made):
    env = {**os.environ, "MOSAICDB_HOME": str(made["home"])}
    # -X faulthandler: if it ever hangs, SIGABRT makes it print every thread's stack
    cmd = [sys.executable, "-X", "faulthandler", "-m", "mosaicdb", "view", str(made["id"])]
    p = subprocess.Popen(
        [*cmd, "--no-open", "--json"],
        # as at a terminal: a suite started in the background (`… &`, nohup) inherits an
        # ignored SIGINT, and Python then never turns Ctrl-C into KeyboardInterrupt
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        line: list[str] = []
        t = threading.Thread(target=lambda: line.append(p.stdout.readline()), daemon=True)
        t.start()
        t.join(30)
        info = json.loads(line[0])
        assert info["url"].startswith("http://127.0.0.1:")
        host, port = info["url"][len("http://") :].rstrip("/").split(":")
        c = http.client.HTTPConnection(host, int(port), timeout=10)
        c.request("GET", "/")
        assert c.getresponse().status == 200
        c.close()
        p.send_signal(signal.SIGINT)
        try:
            _, err = p.communicate(timeout=60)
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGABRT)
            _, err = p.communicate(timeout=20)
            pytest.fail(f"`mosaicdb view` did not stop on Ctrl-C; its threads:\n{err}")
        assert p.returncode == 0, err
        assert "stopped" in err and "Traceback" not in err
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()


def test_non_square_cells(tmp_path):
    photos = tmp_path / "photos"
    for name, rgb in COLOURS.items():
        solid(photos / f"{name}.jpg", rgb, size=(300, 200), Q=95)
    # 240 × 120: 4 × 2 cells of 3:2 → 4 × 3
    target = blocks_target(tmp_path / "target.png", cell=60)
    (tmp_path / "out").mkdir()
    with mosaicdb.open(tmp_path / "store") as lib:
        lib.index([photos], workers=0)
        r = lib.render(
            target, tmp_path / "out" / "m.dz", tiles_across=4, tile_size=30, aspect="3:2"
        )
        v = lib.view(r.render_id)
    g = v.data["grid"]
    assert (g["cols"], g["rows"], g["cell_w"], g["cell_h"]) == (r.cols, r.rows, 30, 20)
    assert (g["width"], g["height"]) == (r.width, r.height)
    de = np.frombuffer(v.delta_e, np.uint8) * V.DE_STEP
    assert abs(de.mean() - r.mean_delta_e) <= 0.25


def test_browser_opened_only_with_a_desktop(monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(sys, "platform", "linux")
    for k in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER"):
        monkeypatch.delenv(k, raising=False)
    assert S.open_browser("http://127.0.0.1:1/") is False and opened == []
    monkeypatch.setenv("DISPLAY", ":0")
    assert S.open_browser("http://127.0.0.1:1/") is True and opened == ["http://127.0.0.1:1/"]
