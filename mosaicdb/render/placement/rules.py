"""The repetition rules before any work: refuse what no placement can satisfy, and the most
cells one photo may fill under them (what the flow is told)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from mosaicdb.errors import RenderError


@dataclass(frozen=True)
class Rules:
    """The rules of one placement, as the solvers read them."""

    rows: int
    cols: int
    max_uses: int
    min_distance: int
    use_all: bool
    cap: int  # the most cells one photo may fill (photo_cap; the cell count when no limit)
    bonus: bool  # --use-all with more cells than photos: a photo's first use is rewarded
    routed: bool = False  # the graph holds routed arcs (route.py): one flow serves the cells


@dataclass(frozen=True)
class Space:
    """The vectors routing reads (route.py): each cell's, (cells, d), and `photos()` each
    photo's, (photos, d), in the order of the sorted photo ids (read only when routing runs);
    `scale` puts their squared distances on the candidate distances' scale."""

    cells: np.ndarray
    photos: Callable[[], np.ndarray]
    scale: float = 1.0


Widen = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def check_feasible(
    n_cells: int,
    n_photos: int,
    rows: int,
    cols: int,
    max_uses: int,
    min_distance: int,
    use_all: bool = False,
) -> None:
    """Refuse, before any work, rules that no placement can satisfy."""
    if n_photos == 0:
        raise RenderError("the store has no indexed photos: run `mosaicdb index PATH` first")
    if max_uses and max_uses * n_photos < n_cells:
        raise RenderError(
            f"--max-uses {max_uses} with {n_photos:,} photos fills at most "
            f"{max_uses * n_photos:,} cells, but the grid has {n_cells:,}: raise --max-uses "
            f"to {-(-n_cells // n_photos)}, use fewer tiles, or index more photos"
        )
    if min_distance:
        # With this many photos a cell always finds one that is not in its (2R+1)² window, so
        # the repair can never dead-end (fewer can work, but not reliably).
        side_r, side_c = min(rows, 2 * min_distance + 1), min(cols, 2 * min_distance + 1)
        block = side_r * side_c
        if block > n_photos:
            raise RenderError(
                f"--min-distance {min_distance} needs at least {block:,} different photos "
                f"(a {side_r}×{side_c} window around a cell holds distinct photos), "
                f"the store has {n_photos:,}"
            )


def photo_cap(
    n_cells: int,
    n_photos: int,
    rows: int,
    cols: int,
    max_uses: int,
    min_distance: int,
    use_all: bool,
) -> int:
    """The most cells one photo may fill under the rules (0: no limit). Under --min-distance R
    no photo fits more than ceil(rows/(R+1)) × ceil(cols/(R+1)) cells, so the flow is told."""
    cap = max_uses or n_cells
    if min_distance:
        s = min_distance + 1
        cap = min(cap, -(-rows // s) * -(-cols // s))
    if use_all and n_photos >= n_cells:
        cap = 1
    return 0 if cap >= n_cells else cap
