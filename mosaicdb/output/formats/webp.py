"""WebP output (the format caps a side at 16,383 px)."""

NAME = "webp"
SUFFIXES = (".webp",)
MAX_SIDE = 16_383


def save(img, path: str) -> None:
    img.webpsave(path, Q=90, keep="none")
