"""Explore a Deep Zoom render in the browser: the page's data, a static export, a local server.

The page (`static/viewer/`: index.html, viewer.js, viewer.css and a vendored OpenSeadragon)
shows the render's `.dzi` pyramid and tells which photo fills the cell under the pointer. What it
needs from the catalog is one script, `data.js`, that sets `window.MOSAICDB_VIEW`:

- the grid (cols, rows, cell size in output pixels) and the Deep Zoom geometry, given inline so
  nothing is fetched with XHR and the exported folder works from file:// too;
- `plan`: per cell, row-major, the index of its photo in the photo table, little-endian Uint16
  (≤ 65,536 distinct photos) or Uint32, base64;
- `delta_e`: per cell, CIEDE2000 between the target cell and the placed photo, the mean over the
  k×k feature grid exactly as the render report averages it, quantized to uint8 in steps of
  DE_STEP (DE_NONE: unknown); omitted, with a note, when the target file is gone;
- `photos`: the photo table, by columns (id, name, folder index, width, height, bytes, format),
  and `folders` (display text and file:// URI). Names are text; the page only ever sets them
  with textContent.

The server (`ViewServer`) is read-only and serves only the page's files, that data, a reduced
copy of the target for the overlay, the render's `_files/` pyramid and, at `/photo/<index>`, the
original file of a photo of the table (looked up in the catalog when the view was made, never a
path from the request). Everything else is 404; paths are resolved and must stay inside their
folder. It binds 127.0.0.1 by default and refuses requests whose Host header is not a loopback
name while bound there (DNS rebinding).
"""

from __future__ import annotations

import base64
import json
import mimetypes
import os
import shutil
import threading
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from mosaicdb.errors import MosaicdbError, NotFoundError, OptionError, RenderError
from mosaicdb.records import display_path
from mosaicdb.target import cells as target_cells
from mosaicdb.target import parse_aspect

if TYPE_CHECKING:
    from mosaicdb.store.context import Context

STATIC = Path(__file__).parent / "static" / "viewer"
PAGE_FILES = ("index.html", "viewer.js", "viewer.css")
OSD_DIR = "openseadragon"
DATA_FILE = "data.js"
TARGET_FILE = "target.jpg"
TILES_DIR = "tiles"
TARGET_MAX_SIDE = 2048  # the overlay copy of the target, px on its long side
DE_STEP = 0.5
DE_NONE = 255
DATA_VERSION = 1

# OpenSeadragon adds one <style> element (focus outline on touch screens); its hash lets it in
# without 'unsafe-inline'. tests/test_viewer.py checks it against the vendored file.
OSD_STYLE_HASH = "sha256-9xTiqzfwFaL2SGb1rmr8gysEwVVjIvqWAgmZgqFqpEE="
# The page's policy: its own scripts and styles only, images from itself (tiles, the target
# overlay, OpenSeadragon's button images) and data:/blob: (OpenSeadragon's canvases), nothing
# else. The <meta> copy in index.html is the same less frame-ancestors (ignored in a meta tag).
CSP = (
    "default-src 'none'; script-src 'self'; "
    f"style-src 'self' '{OSD_STYLE_HASH}'; img-src 'self' data: blob:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'"
)
CSP_HEADER = CSP + "; frame-ancestors 'none'"
# An original photo opened from the page: shown as an image, never run as a document.
PHOTO_CSP = "default-src 'none'; img-src 'self'; style-src 'unsafe-inline'; sandbox"

LOOPBACK_HOSTS = {"127.0.0.1", "localhost", "::1", "[::1]"}


# -- the data ----------------------------------------------------------------------------------
def encode_plan(plan) -> tuple[list[int], bytes, int]:
    """(sorted distinct photo ids, per-cell index into them as little-endian bytes, bytes per
    cell): Uint16 while the ids fit, else Uint32."""
    import numpy as np

    plan = np.asarray(plan, dtype=np.int64)
    uniq, inverse = np.unique(plan, return_inverse=True)
    width = 2 if len(uniq) <= 2**16 else 4
    data = inverse.astype("<u2" if width == 2 else "<u4").tobytes()
    return uniq.tolist(), data, width


def decode_plan(ids: list[int], data: bytes, width: int) -> list[int]:
    """The inverse of encode_plan: photo id per cell."""
    import numpy as np

    idx = np.frombuffer(data, dtype="<u2" if width == 2 else "<u4")
    return np.asarray(ids, dtype=np.int64)[idx].tolist()


def quantize_delta_e(de) -> bytes:
    """ΔE per cell → uint8 codes in steps of DE_STEP; NaN (unknown) → DE_NONE."""
    import numpy as np

    de = np.asarray(de, dtype=np.float64)
    q = np.minimum(DE_NONE - 1, np.round(np.nan_to_num(de, nan=0.0) / DE_STEP))
    return np.where(np.isnan(de), DE_NONE, q).astype(np.uint8).tobytes()


def _js_json(obj) -> str:
    """JSON that is also safe to inline in HTML (no <, >, & or line separators as such)."""
    s = json.dumps(obj, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026")):
        s = s.replace(a, b)
    return s.replace("\u2028", "\\u2028").replace("\u2029", "\\u2029")


@dataclass
class View:
    """Everything the page shows for one render, made once from the catalog (see
    Library.view); the server and the export need no catalog after that."""

    render_id: int
    dzi: Path
    files: Path
    data: dict
    plan_bytes: bytes
    delta_e: bytes | None
    photo_paths: list[bytes | None]
    target_jpeg: bytes | None
    notes: list[str] = field(default_factory=list)

    def data_js(self, local: bool) -> bytes:
        """The page's data script; `local`: served by `mosaicdb view` (photo links work)."""
        d = dict(self.data)
        d["local"] = local
        d["plan"] = {**d["plan"], "base64": base64.b64encode(self.plan_bytes).decode()}
        if self.delta_e is not None:
            d["delta_e"] = {**d["delta_e"], "base64": base64.b64encode(self.delta_e).decode()}
        return f"window.MOSAICDB_VIEW = {_js_json(d)};\n".encode()

    def sizes(self) -> dict:
        """Bytes of the data, raw and as shipped in data.js, per cell."""
        cells = self.data["grid"]["cols"] * self.data["grid"]["rows"]
        js = len(self.data_js(local=False))
        table = len(_js_json(self.data["photos"])) + len(_js_json(self.data["folders"]))
        de = len(self.delta_e or b"")
        return {
            "cells": cells,
            "photos": len(self.photo_paths),
            "plan_bytes": len(self.plan_bytes),
            "plan_bytes_per_cell": len(self.plan_bytes) / cells,
            "delta_e_bytes": de,
            "photo_table_bytes": table,
            "data_js_bytes": js,
            "data_js_bytes_per_cell_without_table": (js - table) / cells,
        }

    # -- export --------------------------------------------------------------------------------
    def export(self, out_dir: str | os.PathLike) -> dict:
        """Write the page as static files into `out_dir` (created; must be empty or a previous
        export): works from file:// and from any web server. The pyramid is hard-linked when
        on the same file system, else copied."""
        out = Path(out_dir).expanduser().resolve()
        if out.exists() and not out.is_dir():
            raise MosaicdbError(f"--export: {out} exists and is not a folder")
        files = self.files.resolve()
        if files == out or out in files.parents or files in out.parents:
            raise MosaicdbError(f"--export: {out} overlaps the render's own files")
        if out.is_dir() and any(out.iterdir()) and not (out / DATA_FILE).exists():
            raise MosaicdbError(
                f"--export: {out} is not empty and not a previous export; give a new folder"
            )
        out.mkdir(parents=True, exist_ok=True)
        for name in PAGE_FILES:
            shutil.copyfile(STATIC / name, out / name)
        _replace_tree(STATIC / OSD_DIR, out / OSD_DIR, shutil.copy2)
        _replace_tree(self.files, out / TILES_DIR, _link_or_copy)
        if self.target_jpeg is not None:
            (out / TARGET_FILE).write_bytes(self.target_jpeg)
        elif (out / TARGET_FILE).exists():
            (out / TARGET_FILE).unlink()
        tmp = out / f".{DATA_FILE}.tmp"
        tmp.write_bytes(self.data_js(local=False))
        os.replace(tmp, out / DATA_FILE)
        return {
            "render_id": self.render_id,
            "export": str(out),
            "page": str(out / "index.html"),
            "url": (out / "index.html").as_uri(),
            "cells": self.data["grid"]["cols"] * self.data["grid"]["rows"],
            "photos": len(self.photo_paths),
            "delta_e": self.delta_e is not None,
            "notes": self.notes,
        }

    # -- serving -------------------------------------------------------------------------------
    def server(self, host: str = "127.0.0.1", port: int = 0) -> ViewServer:
        """A ViewServer bound to host:port (0: a free port); call serve_forever()."""
        if not 0 <= port <= 65535:
            raise OptionError("--port", f"must be between 0 (a free port) and 65535, got {port}")
        try:
            return ViewServer(self, host, port)
        except (OSError, UnicodeError) as e:
            raise MosaicdbError(
                f"cannot listen on {host}:{port}: {getattr(e, 'strerror', None) or e}"
            ) from None


def _link_or_copy(src, dst):
    try:
        os.link(src, dst)
    except OSError:
        shutil.copy2(src, dst)
    return dst


def _replace_tree(src: Path, dst: Path, copy_function) -> None:
    tmp = dst.with_name(f".{dst.name}.tmp")
    if tmp.exists():
        shutil.rmtree(tmp)
    shutil.copytree(src, tmp, copy_function=copy_function)
    if dst.exists():
        shutil.rmtree(dst)
    os.replace(tmp, dst)


def _find_render(ctx: Context, ref: str | int) -> dict:
    """A render by id, or by its .dz/.dzi output path (the newest render written there)."""
    text = str(ref)
    if text.isdigit():
        r = ctx.catalog.get_render(int(text))
        if r is None:
            raise NotFoundError(f"no render with id {text}; see `mosaicdb renders`")
        return r
    p = str(Path(text).expanduser().resolve())
    if p.lower().endswith(".dz"):
        p = p[:-3] + ".dzi"
    found = [r for r in ctx.catalog.list_renders() if r["output"] == p]
    if not found:
        raise NotFoundError(
            f"{text} is not the output of a render in this store; see `mosaicdb renders`"
        )
    return ctx.catalog.get_render(found[-1]["id"])


def _read_dzi(path: Path) -> dict:
    import xml.etree.ElementTree as ET

    try:
        root = ET.parse(path).getroot()
    except (OSError, ET.ParseError) as e:
        raise RenderError(f"cannot read the Deep Zoom descriptor {path}: {e}") from None
    ns = root.tag.split("}")[0] + "}" if root.tag.startswith("{") else ""
    size = root.find(f"{ns}Size")
    if size is None:
        raise RenderError(f"{path} is not a Deep Zoom descriptor (no Size)")
    return {
        "tile_size": int(root.get("TileSize", "256")),
        "overlap": int(root.get("Overlap", "0")),
        "format": root.get("Format", "jpg"),
        "width": int(size.get("Width")),
        "height": int(size.get("Height")),
    }


def _overlay_jpeg(region) -> bytes:
    """The target region reduced to at most TARGET_MAX_SIDE px, as JPEG bytes."""
    scale = min(1.0, TARGET_MAX_SIDE / max(region.width, region.height))
    if scale < 1.0:
        region = region.resize(scale)
    return region.write_to_buffer(".jpg", Q=85, keep="none")


def cell_delta_e(cells, vectors, inverse, chunk: int = 65_536):
    """Per cell, the mean CIEDE2000 over the k×k grid between the target cell and the photo
    placed there (NaN where the photo has no vector)."""
    import numpy as np

    from mosaicdb.features import ciede2000

    n, kk, _ = cells.shape
    out = np.empty(n, np.float64)
    for i in range(0, n, chunk):
        placed = vectors[inverse[i : i + chunk]].reshape(-1, kk, 3)
        out[i : i + chunk] = ciede2000(cells[i : i + chunk], placed).mean(axis=1)
    return out


def make_view(ctx: Context, ref: str | int) -> View:
    """The View of a render given by id or by its .dz/.dzi path."""
    import numpy as np

    from mosaicdb.features import FeatureSpec

    r = _find_render(ctx, ref)
    rid = r["id"]
    out = r["output"]
    how = f"`mosaicdb render --plan {rid} -o mosaic.dz`, then `mosaicdb view {rid}`"
    if not out:
        raise RenderError(f"render {rid} was never written; make a Deep Zoom copy with {how}")
    if not out.lower().endswith(".dzi"):
        raise RenderError(
            f"render {rid} was written as {out}, not as Deep Zoom, which the viewer needs; "
            f"make a Deep Zoom copy (same placement, no matching) with {how}"
        )
    dzi = Path(out)
    files = dzi.with_name(dzi.stem + "_files")
    if not dzi.is_file() or not files.is_dir():
        raise RenderError(
            f"the Deep Zoom files of render {rid} ({out}) are gone; remake with {how}"
        )
    geo = _read_dzi(dzi)
    cols, rows = r["cols"], r["rows"]
    if geo["width"] % cols or geo["height"] % rows:
        raise RenderError(
            f"{out} ({geo['width']}×{geo['height']} px) is not a {cols}×{rows} grid: it was "
            f"overwritten by another render; remake it with {how}"
        )
    cell_w, cell_h = geo["width"] // cols, geo["height"] // rows

    plan = np.asarray(ctx.catalog.plan(rid), dtype=np.int64)
    if len(plan) != cols * rows:
        raise RenderError(f"the saved plan of render {rid} does not have {cols}×{rows} cells")
    ids, plan_bytes, width = encode_plan(plan)
    spec = FeatureSpec.parse(r["spec"])
    details = ctx.catalog.photo_details(ids, spec.key)
    options = json.loads(r["options"])
    notes: list[str] = []

    folders: dict[bytes, int] = {}
    table: dict[str, list] = {k: [] for k in ("id", "name", "folder", "width", "height")}
    table.update({"bytes": [], "format": []})
    paths: list[bytes | None] = []
    vectors = np.full((len(ids), spec.dim), np.nan, np.float32)
    gone = 0
    for i, pid in enumerate(ids):
        d = details.get(pid)
        table["id"].append(pid)
        if d is None:
            gone += 1
            paths.append(None)
            for k in ("name", "folder", "width", "height", "bytes", "format"):
                table[k].append(None)
            continue
        path = bytes(d["path"])
        paths.append(path)
        folder, name = os.path.split(path)
        table["name"].append(display_path(name))
        table["folder"].append(folders.setdefault(folder, len(folders)))
        table["width"].append(d["width"])
        table["height"].append(d["height"])
        table["bytes"].append(d["size"])
        table["format"].append(d["format"])
        if d["vector"] is not None:
            vectors[i] = np.frombuffer(d["vector"], dtype=np.float32)
    if gone:
        notes.append(f"{gone} photo(s) of this plan are no longer in the store")

    # -- ΔE against the target, and the overlay copy -----------------------------------------
    target = r["target"]
    delta_e = target_jpeg = None
    mean_de = None
    aw, ah = parse_aspect(options.get("aspect", "1:1"))
    if target and Path(target).is_file():
        try:
            cells, region = target_cells(target, cols, rows, spec, aw / ah)
            cells = cells.reshape(cols * rows, spec.grid * spec.grid, 3)
        except MosaicdbError as e:
            notes.append(f"the target cannot be read ({e}): no ΔE2000 and no overlay")
        else:
            inverse = np.frombuffer(plan_bytes, dtype="<u2" if width == 2 else "<u4")
            de = cell_delta_e(cells, vectors, inverse)
            delta_e = quantize_delta_e(de)
            if np.isfinite(de).any():
                mean_de = float(np.nanmean(de))
            target_jpeg = _overlay_jpeg(region)
            if options.get("blend"):
                notes.append(
                    f"rendered with --blend {options['blend']}: ΔE2000 is of each photo before "
                    "its colours were shifted toward the target"
                )
            elif (
                mean_de is not None
                and r["mean_delta_e"] is not None
                and abs(mean_de - r["mean_delta_e"]) > 0.5
            ):
                notes.append(
                    f"the target {display_path(os.fsencode(target))} seems to have changed since "
                    f"the render (mean ΔE2000 now {mean_de:.2f}, then {r['mean_delta_e']:.2f})"
                )
    else:
        notes.append(
            f"the target {display_path(os.fsencode(target))} is gone: no ΔE2000 per cell and no "
            "target overlay"
        )

    data = {
        "version": DATA_VERSION,
        "render": {
            "id": rid,
            "created_at": r["created_at"],
            "target": display_path(os.fsencode(target)) if target else None,
            "output": display_path(os.fsencode(out)),
            "mean_delta_e": r["mean_delta_e"],
            "tile_size": options.get("tile_size"),
            "aspect": options.get("aspect"),
            "max_uses": options.get("max_uses"),
            "min_distance": options.get("min_distance"),
            "blend": options.get("blend"),
        },
        "grid": {
            "cols": cols,
            "rows": rows,
            "cell_w": cell_w,
            "cell_h": cell_h,
            "width": geo["width"],
            "height": geo["height"],
        },
        "dzi": {
            "url": TILES_DIR + "/",
            "format": geo["format"],
            "tile_size": geo["tile_size"],
            "overlap": geo["overlap"],
        },
        "plan": {"bytes_per_cell": width},
        "delta_e": (
            {"step": DE_STEP, "none": DE_NONE, "mean": mean_de} if delta_e is not None else None
        ),
        "photos": table,
        "folders": [
            {"name": display_path(f), "uri": Path(os.fsdecode(f) or "/").as_uri()} for f in folders
        ],
        "target": {"url": TARGET_FILE} if target_jpeg else None,
        "notes": notes,
    }
    return View(rid, dzi, files, data, plan_bytes, delta_e, paths, target_jpeg, notes)


def open_browser(url: str) -> bool:
    """Open `url` in the user's browser when there is a desktop to show it on (a text-mode
    browser would take over the terminal the server runs in); False when not opened."""
    import sys
    import webbrowser

    desktop = sys.platform in ("darwin", "win32") or any(
        os.environ.get(k) for k in ("DISPLAY", "WAYLAND_DISPLAY", "BROWSER")
    )
    if not desktop:
        return False
    try:
        return webbrowser.open(url)
    except webbrowser.Error:
        return False


# -- the server -------------------------------------------------------------------------------
_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".png": "image/png",
    ".jpg": "image/jpeg",
    ".jpeg": "image/jpeg",
    ".webp": "image/webp",
    ".txt": "text/plain; charset=utf-8",
}


def _inside(base: Path, rel: str) -> Path | None:
    """base/rel if it is a file inside base once every link and .. is resolved, else None."""
    if not rel or "\x00" in rel or "\\" in rel:
        return None
    root = base.resolve()
    try:
        p = (root / rel).resolve()
    except (OSError, RuntimeError, ValueError):
        return None
    if p == root or not p.is_relative_to(root) or not p.is_file():
        return None
    return p


class ViewServer(ThreadingHTTPServer):
    """Serves one View read-only; see the module docstring for what it serves."""

    daemon_threads = True
    allow_reuse_address = False

    def __init__(self, view: View, host: str = "127.0.0.1", port: int = 0):
        self.view = view
        self.data_js = view.data_js(local=True)
        # the page's own files, read once: {url path: bytes} (nothing else under STATIC)
        self.page_files = {
            "/" + p.relative_to(STATIC).as_posix(): p.read_bytes()
            for p in [STATIC / n for n in PAGE_FILES] + list((STATIC / OSD_DIR).rglob("*"))
            if p.is_file()
        }
        self.loopback_only = host in LOOPBACK_HOSTS or host.startswith("127.")
        if ":" in host and not host.startswith("["):
            import socket

            self.address_family = socket.AF_INET6
        super().__init__((host.strip("[]"), port), _Handler)

    def server_bind(self):
        # HTTPServer's own asks the resolver for our name (getfqdn): slow without a network
        import socketserver

        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        if ":" in host:
            host = f"[{host}]"
        elif host in ("0.0.0.0", ""):
            host = "127.0.0.1"
        return f"http://{host}:{port}/"

    def handle_error(self, request, client_address):
        import sys

        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)

    def serve_in_thread(self) -> threading.Thread:
        t = threading.Thread(target=self.serve_forever, name="mosaicdb-view", daemon=True)
        t.start()
        return t


class _Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "mosaicdb"
    sys_version = ""
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body are separate writes: no 40 ms stalls

    def log_message(self, format, *args):  # noqa: A002 - quiet: no access log on the terminal
        pass

    def do_GET(self):
        self._serve(head=False)

    def do_HEAD(self):
        self._serve(head=True)

    def _deny(self, status: HTTPStatus, reason: str = "") -> None:
        body = (reason or status.phrase).encode() + b"\n"
        self.send_response(status)
        self._security_headers(CSP_HEADER)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _security_headers(self, csp: str) -> None:
        self.send_header("Content-Security-Policy", csp)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Referrer-Policy", "no-referrer")
        self.send_header("Cross-Origin-Resource-Policy", "same-origin")
        self.send_header("X-Frame-Options", "DENY")

    def _host_ok(self) -> bool:
        if not self.server.loopback_only:
            return True
        host = (self.headers.get("Host") or "").strip().lower()
        if host.startswith("["):
            name = host[: host.find("]") + 1]
        else:
            name = host.rsplit(":", 1)[0]
        return name in LOOPBACK_HOSTS or name.startswith("127.")

    def _serve(self, head: bool) -> None:
        if not self._host_ok():
            return self._deny(HTTPStatus.MISDIRECTED_REQUEST, "unknown Host")
        try:
            path = unquote(urlsplit(self.path).path, errors="strict")
        except (UnicodeDecodeError, ValueError):
            return self._deny(HTTPStatus.BAD_REQUEST)
        view = self.server.view
        if path == "/":
            path = "/index.html"
        page = self.server.page_files.get(path)
        if page is not None:
            ctype = _TYPES.get(Path(path).suffix.lower(), "application/octet-stream")
            cache = "no-store" if path == "/index.html" else "max-age=300"
            return self._bytes(page, ctype, head, cache=cache)
        if path == "/" + DATA_FILE:
            return self._bytes(self.server.data_js, _TYPES[".js"], head, cache="no-store")
        if path == "/" + TARGET_FILE and view.target_jpeg is not None:
            return self._bytes(view.target_jpeg, "image/jpeg", head, cache="no-store")
        if path.startswith("/photo/"):
            return self._photo(path[len("/photo/") :], head)
        if path.startswith(f"/{TILES_DIR}/"):
            p = _inside(view.files, path[len(TILES_DIR) + 2 :])
            return (
                self._file(p, head, cache="max-age=300") if p else self._deny(HTTPStatus.NOT_FOUND)
            )
        return self._deny(HTTPStatus.NOT_FOUND)

    def _photo(self, key: str, head: bool) -> None:
        paths = self.server.view.photo_paths
        if not key.isdigit() or int(key) >= len(paths) or paths[int(key)] is None:
            return self._deny(HTTPStatus.NOT_FOUND)
        raw = paths[int(key)]
        if not os.path.isfile(raw):
            return self._deny(HTTPStatus.NOT_FOUND, "the original file is no longer on disk")
        ctype = mimetypes.guess_type(os.fsdecode(raw))[0] or "application/octet-stream"
        disposition = "inline" if ctype.startswith("image/") and ctype != "image/svg+xml" else None
        if disposition is None:
            ctype = "application/octet-stream"
        return self._file(raw, head, ctype=ctype, csp=PHOTO_CSP, attachment=disposition is None)

    def _bytes(self, body: bytes, ctype: str, head: bool, cache: str) -> None:
        self.send_response(HTTPStatus.OK)
        self._security_headers(CSP_HEADER)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _file(
        self,
        path,
        head: bool,
        ctype: str | None = None,
        cache: str = "no-cache",
        csp: str = CSP_HEADER,
        attachment: bool = False,
    ) -> None:
        try:
            f = open(path, "rb")  # noqa: SIM115 - closed below
        except OSError:
            return self._deny(HTTPStatus.NOT_FOUND)
        with f:
            size = os.fstat(f.fileno()).st_size
            if ctype is None:
                ctype = _TYPES.get(
                    Path(os.fsdecode(path)).suffix.lower(), "application/octet-stream"
                )
            self.send_response(HTTPStatus.OK)
            self._security_headers(csp)
            self.send_header("Content-Type", ctype)
            self.send_header("Content-Length", str(size))
            self.send_header("Cache-Control", cache)
            if attachment:
                self.send_header("Content-Disposition", "attachment")
            self.end_headers()
            if not head:
                try:
                    shutil.copyfileobj(f, self.wfile, 256 * 1024)
                except (BrokenPipeError, ConnectionResetError):
                    pass
