"""Decoders: which files `index` reads and how, one module per family of files.

A decoder module has `decode(path: bytes, short_side: int, max_pixels: int)` returning (pixels
as a uint8 (h, w, 3) sRGB array, shrunk so its short side is `short_side`, upright; the
original's width and height as displayed; its format name), and raises PhotoReadError with
the message stored on the photo's row. DECODERS maps each module to the extensions it reads;
the walk takes `EXTENSIONS`. A new decoder is a module here and a line in DECODERS. Modules
are imported when a file needs them (workers only), so the walk stays light.
"""

from __future__ import annotations

import importlib
import os

# decoder module → the extensions (lower case) it reads
DECODERS: dict[str, frozenset[bytes]] = {
    "vips": frozenset(b".jpg .jpeg .jpe .jfif .png .webp .tif .tiff .gif .avif".split()),
    "heif": frozenset(b".heic .heif .hif".split()),
    "pillow": frozenset(b".bmp .dib .jp2 .j2k .jpf .jpx .tga .ppm .pgm .pbm .pnm".split()),
    "raw": frozenset(
        b".dng .nef .nrw .cr2 .cr3 .crw .arw .srf .sr2 .raf .orf .rw2 .pef .srw .x3f .erf .kdc"
        b" .mrw .3fr .fff .iiq .rwl .mos".split()
    ),
}
EXTENSIONS = frozenset().union(*DECODERS.values())
_BY_EXTENSION = {ext: name for name, exts in DECODERS.items() for ext in exts}


class PhotoReadError(Exception):
    """A photo could not be read; the message is stored on its catalog row."""


def check_size(w: int, h: int, max_pixels: int) -> None:
    """Refuse a photo whose header declares more than --max-pixels, before decoding it."""
    if w * h > max_pixels:
        raise PhotoReadError(
            f"too large: {w}x{h} = {w * h:,} pixels is more than --max-pixels {max_pixels:,}"
        )


def library_error(library: str, e: Exception) -> PhotoReadError:
    """A decoding library's error as one line for the photo's row: `library: message`."""
    return PhotoReadError((f"{library}: " + " ".join(str(e).split()))[:500])


def decoder_for(path: bytes):
    """The decoder module for `path`, by its extension (None: not a file `index` reads)."""
    name = _BY_EXTENSION.get(os.path.splitext(path)[1].lower())
    return importlib.import_module(f"{__name__}.{name}") if name else None


def decode(path: bytes, short_side: int, max_pixels: int):
    """Decode `path` with its decoder; see the module docstring. Raises PhotoReadError."""
    decoder = decoder_for(path)
    if decoder is None:
        raise PhotoReadError("not a format mosaicdb reads")
    return decoder.decode(path, short_side, max_pixels)
