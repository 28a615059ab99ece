"""The camera RAW decoder (DNG, NEF, CR2, CR3, ARW, RAF, ORF, RW2, ...): LibRaw through rawpy.

A RAW file is read from the preview the camera embedded in it (a JPEG, often full size, or a
bitmap): that is what the camera showed, it needs no demosaicing, and it is 10-50× cheaper than
developing the sensor data. Only a file whose preview is smaller than the thumbnail is
developed (half size, camera white balance). LibRaw's orientation of the shot is applied to
the preview (previews carry none of their own, or one we do not trust over the RAW's)."""

from __future__ import annotations

import os

from mosaicdb.imaging import vips_message
from mosaicdb.index.decode import PhotoReadError, check_size, library_error
from mosaicdb.index.decode.pixels import from_array, shrink

os.environ.setdefault("VIPS_WARNING", "0")

import pyvips  # noqa: E402
import rawpy  # noqa: E402

FORMAT = "raw"

# LibRaw's `flip` (sizes.flip) → the rotation that makes the shot upright
_ROTATE = {3: "d180", 5: "d270", 6: "d90"}


def decode(path: bytes, short_side: int, max_pixels: int):
    try:
        with open(path, "rb") as f, rawpy.imread(f) as raw:
            s = raw.sizes
            flip = s.flip
            w, h = (s.height, s.width) if flip in (5, 6) else (s.width, s.height)
            check_size(w, h, max_pixels)
            img = _preview(raw, short_side)
            if img is None:  # no preview big enough: develop the sensor data, upright
                img = from_array(raw.postprocess(half_size=True, use_camera_wb=True, output_bps=8))
            elif flip in _ROTATE:
                img = img.rot(_ROTATE[flip])
    except PhotoReadError:
        raise
    except OSError as e:
        raise PhotoReadError(e.strerror or str(e)) from None
    except pyvips.Error as e:
        raise PhotoReadError(vips_message(e)) from None
    except Exception as e:  # LibRaw's errors: not a RAW file, unsupported camera, truncated
        raise library_error("raw", e) from None
    try:
        return shrink(img, short_side), w, h, FORMAT
    except pyvips.Error as e:
        raise PhotoReadError(vips_message(e)) from None


def _preview(raw, short_side: int):
    """The embedded preview as an image, if its short side reaches `short_side` (None: none,
    or too small to make the thumbnail from)."""
    try:
        thumb = raw.extract_thumb()
    except (rawpy.LibRawNoThumbnailError, rawpy.LibRawUnsupportedThumbnailError):
        return None
    if thumb.format == rawpy.ThumbFormat.JPEG:
        # no_rotate: the RAW's orientation is applied after, once
        img = pyvips.Image.new_from_buffer(thumb.data, "", access="sequential", autorotate=False)
        if img.get_typeof("icc-profile-data"):
            img = img.icc_transform("srgb", embedded=True)
    else:
        img = from_array(thumb.data)
    if min(img.width, img.height) < short_side:
        return None
    return img
