"""Target geometry, shared by render, `gaps` and the viewer: the tile aspect (`--aspect`), the
grid of cells that covers a target, and the target's cells described as Lab features — the
same steps everywhere (imaging.load_target → target_region → lab_grid), so that a ΔE in a
report is the ΔE the render matched on."""

from __future__ import annotations

from mosaicdb.errors import OptionError


def parse_aspect(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.split(":"))
        if w <= 0 or h <= 0 or w > 100 or h > 100:
            raise ValueError
    except ValueError:
        raise OptionError(
            "--aspect", f"must look like W:H with whole numbers 1–100, got {text!r}"
        ) from None
    return w, h


# ~300 bytes a cell while matching (features, candidates): 4M cells is ~1.2 GB, and a
# 4-gigapixel mosaic at 32 px tiles
MAX_CELLS = 4_000_000


def grid_size(tw: int, th: int, aspect: float, across: int | None, count: int | None):
    """cols × rows of cells of `aspect` (w/h) that cover a tw×th target."""
    if count is not None:
        across = max(1, round((count * tw / th / aspect) ** 0.5))
    across = across or 100
    rows = max(1, round(th / (tw / across / aspect)))
    if across * rows > MAX_CELLS:
        raise OptionError(
            "--tile-count" if count is not None else "--tiles-across",
            f"{across:,}×{rows:,} cells on this target, more than {MAX_CELLS:,}",
        )
    return across, rows


def load_region(target: str, cols: int, rows: int, grid: int, aspect: float):
    """The part of the target the cols × rows grid covers (centre-cropped to its aspect), as a
    pyvips image decoded at no more than the resolution a grid×grid description needs."""
    from mosaicdb import imaging

    img = imaging.load_target(target, max_width=cols * grid * imaging.MIN_CELL_PX * 2)
    return imaging.target_region(img, cols, rows, aspect)


def cells(target: str, cols: int, rows: int, spec, aspect: float):
    """(each cell's Lab features, (cols·rows, k·k·3) float32; the region they describe)."""
    from mosaicdb import imaging

    region = load_region(target, cols, rows, spec.grid, aspect)
    return imaging.lab_grid(region, cols, rows, spec.grid).reshape(cols * rows, spec.dim), region
