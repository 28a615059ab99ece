"""JPEG output."""

NAME = "jpeg"
SUFFIXES = (".jpg", ".jpeg")
MAX_SIDE = 65_500

# JPEG output (and Deep Zoom tiles): Q90 with 4:2:0 chroma, as encoders write by default.
# libvips drops chroma subsampling from Q90 up, which made a 102 Mpix mosaic 1.8× slower to
# encode (0.82 against 0.45 s) and 25 % bigger, for colour detail finer than 2 px.
JPEG_OPTIONS = {"Q": 90, "subsample_mode": "on"}


def save(img, path: str) -> None:
    img.jpegsave(path, keep="none", **JPEG_OPTIONS)
