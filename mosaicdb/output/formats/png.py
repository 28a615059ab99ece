"""PNG output (lossless; zlib level 3: big mosaics encode in reasonable time)."""

NAME = "png"
SUFFIXES = (".png",)
MAX_SIDE = None


def save(img, path: str) -> None:
    img.pngsave(path, compression=3, keep="none")
