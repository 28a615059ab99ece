"""Tiled, JPEG-compressed TIFF output; BigTIFF past 3.5 GB of pixels."""

NAME = "tiff"
SUFFIXES = (".tif", ".tiff")
MAX_SIDE = None


def save(img, path: str) -> None:
    img.tiffsave(
        path,
        tile=True,
        tile_width=256,
        tile_height=256,
        compression="jpeg",
        Q=90,
        bigtiff=img.width * img.height * 3 > 3_500_000_000,
        keep="none",
    )
