"""Everything that touches pixels: the only module that imports pyvips.

Loading photos (shrink-on-load, EXIF orientation, ICC → sRGB), the Lab grid that both tiles
and target cells are described by, thumbnail encode/decode, and writing images.
"""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("VIPS_WARNING", "0")  # libvips warnings would flood worker stderr

import pyvips  # noqa: E402

# Formats we write thumbnails in; the codec is stored per row so it can change later.
THUMB_CODEC = "jpeg"
THUMB_Q = 85


class PhotoReadError(Exception):
    """A photo could not be read; the message is stored on its catalog row."""


def init_worker(concurrency: int = 1) -> None:
    """Per-process set-up for a worker decoding many files: no op cache, one libvips thread
    (processes, not threads, scale thumbnailing)."""
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(concurrency)


def loader_format(image) -> str:
    try:
        loader = image.get("vips-loader")
    except pyvips.Error:
        return "unknown"
    for suffix in ("load_source", "load_buffer", "load"):
        if loader.endswith(suffix):
            return loader[: -len(suffix)]
    return loader


def _to_srgb8(img):
    """Any thumbnail (grey, 16-bit, alpha, CMYK already imported) → 3-band 8-bit sRGB."""
    if img.hasalpha():
        img = img.flatten(background=[255] * (img.bands - 1))
    if img.interpretation not in ("srgb",) or img.format != "uchar":
        img = img.colourspace("srgb")
    if img.bands == 1:
        img = img.bandjoin([img, img])
    if img.bands > 3:
        img = img.extract_band(0, n=3)
    if img.format != "uchar":
        img = img.cast("uchar")
    return img


def load_photo(path: bytes, short_side: int, max_pixels: int):
    """Decode a photo once, shrunk so its short side is `short_side` (never enlarged),
    upright (EXIF orientation) and in 8-bit sRGB. Returns (image, width, height, format) where
    width/height are the original's, as displayed. Raises PhotoReadError."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError as e:
        raise PhotoReadError(e.strerror or str(e)) from None
    try:
        # A Source on our own descriptor: works for names that are not UTF-8 and for names
        # libvips would parse as options ("x.jpg[...]").
        src = pyvips.Source.new_from_descriptor(fd)
        head = pyvips.Image.new_from_source(src, "", access="sequential")
        w, h = head.width, head.height
        if head.get_typeof("orientation") and head.get("orientation") in (5, 6, 7, 8):
            w, h = h, w
        if w * h > max_pixels:
            raise PhotoReadError(
                f"too large: {w}x{h} = {w * h:,} pixels is more than --max-pixels {max_pixels:,}"
            )
        fmt = loader_format(head)
        if w <= h:
            tw, th = short_side, int(h * short_side / w) + 2
        else:
            tw, th = int(w * short_side / h) + 2, short_side
        kw = {}
        if head.get_typeof("icc-profile-data") or head.interpretation == "cmyk":
            kw["output_profile"] = "srgb"
        thumb = pyvips.Image.thumbnail_source(
            src, tw, height=th, size="down", option_string="fail_on=truncated", **kw
        )
        thumb = _to_srgb8(thumb).copy_memory()  # decode now, inside the error handling
        return thumb, w, h, fmt
    except pyvips.Error as e:
        raise PhotoReadError(_vips_message(e)) from None
    finally:
        os.close(fd)


def _vips_message(e: Exception) -> str:
    detail = getattr(e, "detail", "") or ""
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    msg = "; ".join(dict.fromkeys(lines)) or getattr(e, "message", "") or str(e)
    return msg[:500]


def centre_crop(img, aspect: float):
    """Largest centred region of width/height ratio `aspect`."""
    w, h = img.width, img.height
    if w / h > aspect:
        cw = max(1, round(h * aspect))
        return img.crop((w - cw) // 2, 0, cw, h)
    ch = max(1, round(w / aspect))
    return img.crop(0, (h - ch) // 2, w, ch)


def lab_grid(img, cols: int, rows: int, k: int) -> np.ndarray:
    """Mean Lab of a k×k grid in each of cols×rows equal cells of `img` (8-bit sRGB).

    Returns float32 (rows, cols, 3*k*k). Tiles (cols = rows = 1) and target cells both come
    through here, so their features cannot drift apart. Means are exact pixel-area averages of
    the Lab image (boundaries rounded to whole pixels), computed in horizontal strips so memory
    stays bounded for any image size.
    """
    nx, ny = cols * k, rows * k
    if img.width < nx or img.height < ny:  # fewer pixels than grid cells: enlarge first
        scale = max(nx / img.width, ny / img.height)
        img = img.resize(scale, kernel="nearest")
    W, H = img.width, img.height
    xb = np.round(np.arange(nx + 1) * W / nx).astype(np.int64)
    yb = np.round(np.arange(ny + 1) * H / ny).astype(np.int64)
    lab = img.colourspace("lab")
    out = np.empty((ny, nx, 3), dtype=np.float64)
    area_x = np.diff(xb)
    step = max(1, int(_STRIP_PIXELS // max(1, W * (H / ny))))
    for i0 in range(0, ny, step):
        i1 = min(ny, i0 + step)
        y0, y1 = int(yb[i0]), int(yb[i1])
        a = lab.crop(0, y0, W, y1 - y0).numpy().astype(np.float64)
        a = np.add.reduceat(a, xb[:-1], axis=1)
        a = np.add.reduceat(a, yb[i0:i1] - y0, axis=0)
        out[i0:i1] = a / (np.diff(yb)[i0:i1, None, None] * area_x[None, :, None])
    out = out.reshape(rows, k, cols, k, 3).transpose(0, 2, 1, 3, 4)
    return np.ascontiguousarray(out.reshape(rows, cols, k * k * 3), dtype=np.float32)


_STRIP_PIXELS = 1_000_000


def tile_vector(img, k: int, aspect: float = 1.0) -> np.ndarray:
    """A tile's feature vector: the Lab grid of its centre crop at the cell aspect."""
    return lab_grid(centre_crop(img, aspect), 1, 1, k)[0, 0]


def encode_thumb(img) -> bytes:
    return img.write_to_buffer(".jpg", Q=THUMB_Q, keep="none")


def decode_thumb(data: bytes, codec: str = THUMB_CODEC, shrink: int = 1):
    """Decode a stored thumbnail; `shrink` (1, 2, 4, 8) uses JPEG shrink-on-load."""
    if codec == "jpeg" and shrink > 1:
        return pyvips.Image.new_from_buffer(data, "", shrink=shrink)
    return pyvips.Image.new_from_buffer(data, "")
