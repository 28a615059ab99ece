"""The local server of `mosaicdb view`, and opening a browser on it.

The server (`ViewServer`) is read-only and serves only the page's files, that data, a reduced
copy of the target for the overlay, the render's `_files/` pyramid and, at `/photo/<index>`, the
original file of a photo of the table (looked up in the catalog when the view was made, never a
path from the request). Everything else is 404; paths are resolved and must stay inside their
folder. It binds 127.0.0.1 by default and refuses requests whose Host header is not a loopback
name while bound there (DNS rebinding).
"""

from __future__ import annotations

import mimetypes
import os
import shutil
import threading
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlsplit

from mosaicdb.view.viewer import DATA_FILE, OSD_DIR, PAGE_FILES, STATIC, TARGET_FILE, TILES_DIR

if TYPE_CHECKING:
    from mosaicdb.view.viewer import View


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
