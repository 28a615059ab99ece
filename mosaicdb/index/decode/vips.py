"""The libvips decoder: JPEG, PNG, WebP, TIFF, GIF and what the libvips wheel reads of HEIF
and AVIF, with shrink-on-load, EXIF orientation and ICC → sRGB."""

from __future__ import annotations

import os

from mosaicdb.imaging import to_srgb8, vips_message
from mosaicdb.index.decode import PhotoReadError, check_size

os.environ.setdefault("VIPS_WARNING", "0")  # libvips warnings would flood worker stderr

import pyvips  # noqa: E402


def loader_format(image) -> str:
    try:
        loader = image.get("vips-loader")
    except pyvips.Error:
        return "unknown"
    for suffix in ("load_source", "load_buffer", "load"):
        if loader.endswith(suffix):
            return loader[: -len(suffix)]
    return loader


def decode(path: bytes, short_side: int, max_pixels: int):
    """Decode a photo once, shrunk so its short side is `short_side` (never enlarged),
    upright (EXIF orientation) and in 8-bit sRGB. Returns (pixels as a uint8 (h, w, 3) array,
    width, height, format) where width/height are the original's, as displayed.
    Raises PhotoReadError."""
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
        check_size(w, h, max_pixels)
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
        # decode now, inside the error handling, straight into the array features are made from
        return to_srgb8(thumb).numpy(), w, h, fmt
    except pyvips.Error as e:
        raise PhotoReadError(vips_message(e)) from None
    finally:
        os.close(fd)
