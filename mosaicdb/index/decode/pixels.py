"""What the decoders that are not libvips' share: pixels handed over as an array (with the
file's ICC profile) become a libvips image in sRGB, and any decoded image becomes the thumbnail
array of the common path (short side `short_side`, never enlarged, 8-bit sRGB)."""

from __future__ import annotations

import os

from mosaicdb.imaging import to_srgb8

os.environ.setdefault("VIPS_WARNING", "0")

import numpy as np  # noqa: E402
import pyvips  # noqa: E402


def from_array(pixels: np.ndarray, icc: bytes | None = None):
    """A (h, w), (h, w, 3) or (h, w, 4) array as an sRGB libvips image; `icc` converted from."""
    img = pyvips.Image.new_from_array(np.ascontiguousarray(pixels))
    deep = pixels.dtype == np.uint16
    if img.bands < 3:
        img = img.copy(interpretation="grey16" if deep else "b-w")
    else:
        img = img.copy(interpretation="rgb16" if deep else "srgb")
    if icc:
        img = img.copy()
        img.set_type(pyvips.GValue.blob_type, "icc-profile-data", icc)
        img = img.icc_transform("srgb", embedded=True)
    return img


def shrink(img, short_side: int) -> np.ndarray:
    """The thumbnail pixels of a decoded image (pyvips.Error on failure)."""
    w, h = img.width, img.height
    if w <= h:
        tw, th = short_side, int(h * short_side / w) + 2
    else:
        tw, th = int(w * short_side / h) + 2, short_side
    return to_srgb8(img.thumbnail_image(tw, height=th, size="down")).numpy()
