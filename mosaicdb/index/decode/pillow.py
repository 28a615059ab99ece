"""The Pillow decoder: BMP, JPEG 2000, TGA and the Netpbm formats, which the libvips wheel does
not read. EXIF orientation applied, an embedded ICC profile converted to sRGB, JPEG 2000 read
at the reduction nearest the thumbnail; the shrink is libvips' as for every other photo."""

from __future__ import annotations

import os

from mosaicdb.imaging import vips_message
from mosaicdb.index.decode import PhotoReadError, check_size, library_error
from mosaicdb.index.decode.pixels import from_array, shrink

os.environ.setdefault("VIPS_WARNING", "0")

import numpy as np  # noqa: E402
import pyvips  # noqa: E402
from PIL import Image, ImageOps  # noqa: E402

Image.MAX_IMAGE_PIXELS = None  # --max-pixels decides, before anything is decoded


def decode(path: bytes, short_side: int, max_pixels: int):
    try:
        with open(path, "rb") as f, Image.open(f) as im:
            fmt = (im.format or "pillow").lower()
            w, h = im.size
            if im.getexif().get(0x0112) in (5, 6, 7, 8):
                w, h = h, w
            check_size(w, h, max_pixels)
            if fmt == "jpeg2000":  # decode at a power-of-two reduction, not full size
                r = 0
                while min(im.size) >> (r + 1) >= short_side and r < 5:
                    r += 1
                im.reduce = r
            icc = im.info.get("icc_profile")
            im = ImageOps.exif_transpose(im)
            if im.mode not in ("L", "RGB", "RGBA", "I;16"):
                im = im.convert("RGBA" if "A" in im.mode or "transparency" in im.info else "RGB")
            pixels = np.asarray(im)
    except PhotoReadError:
        raise
    except OSError as e:
        if e.errno is not None:  # the file itself: missing, permission denied
            raise PhotoReadError(e.strerror or str(e)) from None
        raise library_error("pillow", e) from None
    except Exception as e:  # Pillow's other errors for files it cannot parse
        raise library_error("pillow", e) from None
    try:
        return shrink(from_array(pixels, icc), short_side), w, h, fmt
    except pyvips.Error as e:
        raise PhotoReadError(vips_message(e)) from None
