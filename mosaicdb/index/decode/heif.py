"""The HEIF/HEIC decoder (the iPhone's default format): libheif through pillow-heif, which
ships the HEVC decoder the libvips wheel lacks. libheif applies the file's own rotation and
mirroring, so the pixels come out upright; an embedded ICC profile is converted to sRGB, and
the shrink to the thumbnail size is libvips' as for every other photo. HEVC has no
shrink-on-load: the full image is decoded once (about 0.5 s for 12 megapixels here)."""

from __future__ import annotations

import os

from mosaicdb.imaging import vips_message
from mosaicdb.index.decode import PhotoReadError, check_size, library_error
from mosaicdb.index.decode.pixels import from_array, shrink

os.environ.setdefault("VIPS_WARNING", "0")

import numpy as np  # noqa: E402
import pillow_heif  # noqa: E402
import pyvips  # noqa: E402

FORMAT = "heif"


def decode(path: bytes, short_side: int, max_pixels: int):
    try:
        with open(path, "rb") as f:
            heif = pillow_heif.open_heif(f, convert_hdr_to_8bit=True)
            w, h = heif.size
            check_size(w, h, max_pixels)
            pixels = np.asarray(heif)
            icc = heif.info.get("icc_profile")
    except PhotoReadError:
        raise
    except OSError as e:
        raise PhotoReadError(e.strerror or str(e)) from None
    except Exception as e:  # libheif's errors (truncated, not HEIF, unsupported codec)
        raise library_error("heif", e) from None
    try:
        return shrink(from_array(pixels, icc), short_side), w, h, FORMAT
    except pyvips.Error as e:
        raise PhotoReadError(vips_message(e)) from None
