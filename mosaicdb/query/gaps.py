"""`gaps`: before a render, which colours of a target the library lacks and how badly
(each cell's nearest tile, by band and hue)."""

from __future__ import annotations

import math
from typing import TYPE_CHECKING

from mosaicdb.errors import OptionError
from mosaicdb.query.colour import BAND_WORDS, HUES, colour_bins, hex_of, plot_path

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


def gaps(
    ctx: Context,
    target: str,
    *,
    tiles_across: int = 100,
    aspect: str = "1:1",
    threshold: float = 10.0,
    plot: str | None = None,
) -> dict:
    """Where the library is thin for this target: cells whose nearest tile is more than
    `threshold` ΔE2000 away, grouped by the cells' colour (lightness band × hue, or grey)."""
    import numpy as np

    from mosaicdb import features as F
    from mosaicdb import imaging
    from mosaicdb.store import vecindex as V
    from mosaicdb.target import cells as target_cells
    from mosaicdb.target import grid_size, parse_aspect
    from mosaicdb.vectors import ensure_spec_vectors, vectors_of

    if not (math.isfinite(threshold) and threshold > 0):
        raise OptionError("--threshold", f"must be a positive number, got {threshold}")
    if plot is not None:
        plot = plot_path(plot)
    if not 1 <= tiles_across <= 100_000:
        raise OptionError("--tiles-across", f"must be between 1 and 100000, got {tiles_across}")
    aw, ah = parse_aspect(aspect)
    spec = ctx.spec.with_aspect(aw, ah)
    w, h = imaging.image_size_or_error(target)
    cols, rows = grid_size(w, h, aw / ah, tiles_across, None)
    cells, _ = target_cells(target, cols, rows, spec, aw / ah)
    if (aw, ah) != (1, 1):
        ensure_spec_vectors(ctx, spec)
    index = ctx.vectors.index(spec)
    if index.ntotal == 0:
        from mosaicdb.errors import RenderError

        raise RenderError("the store has no indexed photos: run `mosaicdb index PATH` first")
    _, ids = V.search(ctx.vectors.search_index(spec, index), cells, 1)
    best = vectors_of(ctx.catalog, spec, index, ids[:, 0])
    de = F.ciede2000(cells.reshape(-1, 3), best.reshape(-1, 3)).reshape(len(cells), -1).mean(1)
    cell_mean = cells.reshape(len(cells), -1, 3).mean(axis=1)
    poor = de > threshold
    band, grey, hue = colour_bins(cell_mean)
    key = np.where(grey, -1, hue)
    groups = []
    for b, hk in sorted({(int(b), int(k)) for b, k in zip(band[poor], key[poor], strict=True)}):
        sel = poor & (band == b) & (key == hk)
        lab = cell_mean[sel].mean(axis=0)
        name = f"{BAND_WORDS[b]} {'greys' if hk < 0 else HUES[hk] + 's'}"
        n = int(sel.sum())
        groups.append(
            {
                "colour": name,
                "hex": hex_of(lab),
                "lab": [round(float(x), 1) for x in lab],
                "cells": n,
                "best_delta_e": round(float(de[sel].mean()), 1),
                "closest_hex": hex_of(best[sel].reshape(-1, 3).mean(axis=0)),
                # a photo is typically used a few times; about one new photo per 4 such cells
                "suggest_photos": max(1, -(-n // 4)),
            }
        )
    groups.sort(key=lambda g: -g["cells"])
    out = {
        "target": target,
        "cols": cols,
        "rows": rows,
        "cells": len(cells),
        "threshold": threshold,
        "poor_cells": int(poor.sum()),
        "mean_delta_e": round(float(de.mean()), 2),
        "groups": groups,
    }
    if plot:
        from mosaicdb.output import pictures

        shown = groups[:24]
        pictures.write_swatch_pairs(
            plot,
            [(g["hex"], g["closest_hex"]) for g in shown] or [("#ffffff", "#ffffff")],
            [
                f"{g['colour']}: {g['cells']:,} cell{'s' * (g['cells'] != 1)}, "
                f"ΔE {g['best_delta_e']:.0f}"
                for g in shown
            ]
            or ["no poor cells"],
        )
        out["plot"] = plot
    return out
