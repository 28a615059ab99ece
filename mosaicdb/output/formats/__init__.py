"""Output formats: one module per format, each with NAME, SUFFIXES, MAX_SIDE (None: no limit
of its own) and `save(img, path)` with the settings every render uses. A new format is a module
here and a line in WRITERS."""

from __future__ import annotations

from mosaicdb.errors import ImageError
from mosaicdb.output.formats import dz, jpeg, png, tiff, webp

WRITERS = {m.NAME: m for m in (jpeg, png, webp, tiff, dz)}
FORMATS = {suffix: m.NAME for m in WRITERS.values() for suffix in m.SUFFIXES}
MAX_SIDE = {m.NAME: m.MAX_SIDE for m in WRITERS.values() if m.MAX_SIDE}


def save_image(img, out_path: str, fmt: str) -> None:
    """Write a mosaic-sized image as `fmt` with the settings every render uses."""
    import pyvips

    from mosaicdb.imaging import vips_message

    if fmt not in WRITERS:
        raise ValueError(fmt)
    try:
        WRITERS[fmt].save(img, out_path)
    except pyvips.Error as e:
        raise ImageError(f"cannot write {out_path}: {vips_message(e)}") from None
