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

The export writes the same page as static files; server.py serves it.
"""

from __future__ import annotations

import base64
import json
import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from mosaicdb.errors import MosaicdbError, NotFoundError, OptionError, RenderError
from mosaicdb.records import display_path
from mosaicdb.target import cells as target_cells
from mosaicdb.target import parse_aspect

if TYPE_CHECKING:
    from mosaicdb.store.context import Context
    from mosaicdb.view.server import ViewServer


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


def js_json(obj) -> str:
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
        return f"window.MOSAICDB_VIEW = {js_json(d)};\n".encode()

    def sizes(self) -> dict:
        """Bytes of the data, raw and as shipped in data.js, per cell."""
        cells = self.data["grid"]["cols"] * self.data["grid"]["rows"]
        js = len(self.data_js(local=False))
        table = len(js_json(self.data["photos"])) + len(js_json(self.data["folders"]))
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
        from mosaicdb.view.server import ViewServer

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
        dz = [
            o["output"]
            for o in ctx.catalog.render_outputs([r["id"]]).get(r["id"], [])
            if o["output"].lower().endswith(".dzi")
        ]
        if dz and not (r["output"] or "").lower().endswith(".dzi"):
            r["output"] = dz[-1]  # the latest Deep Zoom copy, when a later output is not one
        return r
    p = str(Path(text).expanduser().resolve())
    if p.lower().endswith(".dz"):
        p = p[:-3] + ".dzi"
    found = ctx.catalog.renders_written_to(p)  # any output of a plan, not only its latest
    if not found:
        raise NotFoundError(
            f"{text} is not the output of a render in this store; see `mosaicdb renders`"
        )
    r = ctx.catalog.get_render(found[0])
    r["output"] = p
    return r


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
