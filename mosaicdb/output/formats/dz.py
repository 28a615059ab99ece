"""Deep Zoom output: a `.dzi` and its `_files/` pyramid of 256 px JPEG tiles (what
`mosaicdb view` shows)."""

from mosaicdb.output.formats.jpeg import JPEG_OPTIONS

NAME = "dz"
SUFFIXES = (".dz", ".dzi")
MAX_SIDE = None


def save(img, path: str) -> None:
    opts = ",".join(f"{k}={v}" for k, v in JPEG_OPTIONS.items())
    img.dzsave(path, suffix=f".jpg[{opts}]", overlap=0, tile_size=256, keep="none")
