"""The small pictures of the queries: the colour coverage of `stats --plot` and the wanted vs
closest colours of `gaps --plot`, labelled, written to a temporary name and renamed."""

from __future__ import annotations

import os

import numpy as np

os.environ.setdefault("VIPS_WARNING", "0")

import pyvips  # noqa: E402

from mosaicdb.errors import ImageError  # noqa: E402
from mosaicdb.imaging import vips_message  # noqa: E402


def write_atomic(img, path: str) -> None:
    """Write a small image to a temporary name beside `path`, then rename."""
    tmp = f"{path}.{os.getpid()}.tmp{os.path.splitext(path)[1]}"
    try:
        img.write_to_file(tmp)
        os.replace(tmp, path)
    except pyvips.Error as e:
        raise ImageError(f"cannot write {path}: {vips_message(e).replace(tmp, path)}") from None
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


def label(text: str, width: int, height: int, align: str = "centre"):
    """Black text on white, `width` × `height`, 3 bands: the labels of the small pictures."""
    if not text.strip():
        blank = pyvips.Image.black(width, height, bands=3).new_from_image([255, 255, 255])
        return blank.cast("uchar").copy(interpretation="srgb")
    markup = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    try:
        ink = pyvips.Image.text(markup, dpi=72, font="sans 10")
    except pyvips.Error:  # no fonts on this machine: the picture without its labels
        return label("", width, height)
    ink = ink.crop(0, 0, min(ink.width, width), min(ink.height, height))
    x = {"centre": (width - ink.width) // 2, "left": 2, "right": width - ink.width - 4}[align]
    page = (255 - ink).embed(x, (height - ink.height) // 2, width, height, extend="white")
    return page.bandjoin([page, page]).copy(interpretation="srgb")


def write_swatch_pairs(
    path: str, pairs: list[tuple[str, str]], labels: list[str] | None = None, size: int = 64
) -> None:
    """A picture of colour pairs (wanted, closest available), one pair per row, under a
    header, each row with its label (the colour's name and how many cells want it)."""

    def swatch(hexcode: str):
        rgb = [int(hexcode[i : i + 2], 16) for i in (1, 3, 5)]
        return pyvips.Image.black(size, size, bands=3).new_from_image(rgb).cast("uchar")

    lw = 220 if labels else 0
    gap = label("", 4, size)

    def row(left, a, b):
        return (
            left.join(gap, "horizontal")
            .join(a, "horizontal")
            .join(gap, "horizontal")
            .join(b, "horizontal")
        )

    head = row(label("", lw, 20), label("wanted", size, 20), label("closest", size, 20))
    rows = [
        row(label(labels[k] if labels else "", lw, size, "right"), swatch(a), swatch(b))
        for k, (a, b) in enumerate(pairs)
    ]
    img = head.join(
        pyvips.Image.arrayjoin(rows, across=1, shim=4, background=[255, 255, 255]), "vertical"
    )
    write_atomic(img.copy(interpretation="srgb"), path)


def write_coverage_plot(
    path: str,
    colours: np.ndarray,
    counts: np.ndarray,
    row_labels: list[str] | None = None,
    col_labels: list[str] | None = None,
    cell: int = 64,
) -> None:
    """Swatches on a grid (rows × cols of sRGB `colours`), each square's area proportional to
    its count, the rows and columns labelled: where the library is rich or thin, at a
    glance."""
    rows, cols = counts.shape
    img = np.full((rows * cell, cols * cell, 3), 255, np.uint8)
    top = max(1, int(counts.max()))
    for r in range(rows):
        for c in range(cols):
            if counts[r, c] <= 0:
                continue
            side = max(3, int(round((cell - 6) * (counts[r, c] / top) ** 0.5)))
            y, x = r * cell + (cell - side) // 2, c * cell + (cell - side) // 2
            img[y : y + side, x : x + side] = colours[r, c]
    out = pyvips.Image.new_from_array(img).copy(interpretation="srgb")
    if col_labels:
        head = [label(t, cell, 20) for t in col_labels]
        out = pyvips.Image.arrayjoin(head, across=len(head)).join(out, "vertical")
    if row_labels:
        side = label("", 70, 20) if col_labels else None
        for t in row_labels:  # a few labels: join them (arrayjoin would size each as the tallest)
            lab = label(t, 70, cell, "right")
            side = lab if side is None else side.join(lab, "vertical")
        out = side.join(out, "horizontal")
    write_atomic(out, path)
