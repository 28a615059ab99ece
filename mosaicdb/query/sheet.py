"""`sheet`: a contact sheet of the stored thumbnails, laid out by colour or in the order `ls`
sorts (a query: it reads the catalog and assembles, it never reads the photo folders)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosaicdb.errors import NotFoundError, OptionError, RenderError
from mosaicdb.output.assemble import assemble, prepare_output

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


def sheet(
    ctx: Context,
    output: str,
    *,
    tile_size: int = 64,
    across: int | None = None,
    status: str | None = None,
    sort: str | None = None,
    **filters,
) -> dict:
    """A contact sheet of the stored thumbnails (no library access), in the order of `sort`
    as `ls` sorts, by default by colour: greys dark to light, then by hue and lightness.
    The other filters are those of `ls`. Same bounded-memory assembly as render."""
    import math

    import numpy as np

    from mosaicdb.query.colour import colour_order
    from mosaicdb.query.listing import SORTS, listing

    output, fmt = prepare_output(output)
    if not 4 <= tile_size <= 1024:
        raise OptionError("--tile-size", f"must be between 4 and 1024, got {tile_size}")
    if across is not None and across < 1:
        raise OptionError("--across", f"must be positive, got {across}")
    if status == "error":
        raise OptionError("--status", "photos that failed have no thumbnail; see `mosaicdb errors`")
    if status not in (None, "ok"):
        raise OptionError("--status", f"must be ok, got {status!r}")
    if sort not in (None, *SORTS):
        raise OptionError("--sort", "must be one of " + ", ".join(SORTS))
    by_colour = sort in (None, "colour")
    if filters.get("near") is not None and not by_colour:
        raise OptionError("--sort", "does not go with --near (its photos are laid out by colour)")
    rows_ = listing(ctx, status="ok", sort=None if by_colour else sort, **filters)
    rows_ = [r for r in rows_ if r["lab"] is not None]
    if not rows_:
        raise NotFoundError("no photos match; see `mosaicdb ls`")

    if by_colour:
        rows_.sort(key=lambda r: colour_order(r["lab"]))
    ids = np.array([r["id"] for r in rows_], dtype=np.int64)
    cols = min(across, len(ids)) if across else max(1, math.ceil(math.sqrt(len(ids))))
    nrows = math.ceil(len(ids) / cols)
    if fmt in ("jpeg", "webp"):
        from mosaicdb.output.formats import MAX_SIDE

        if max(cols, nrows) * tile_size > MAX_SIDE[fmt]:
            raise RenderError(f"the sheet is too big for {fmt.upper()}; write .tif or .dz")
    plan = np.full(cols * nrows, -1, dtype=np.int64)
    plan[: len(ids)] = ids
    timings: dict = {}
    assemble(
        ctx.catalog,
        ctx.progress,
        plan.reshape(nrows, cols),
        tile_size,
        tile_size,
        output,
        fmt,
        0.0,
        None,
        ctx.spec.grid,
        timings,
    )
    return {
        "output": output,
        "photos": len(ids),
        "cols": cols,
        "rows": nrows,
        "width": cols * tile_size,
        "height": nrows * tile_size,
        "seconds": round(timings.get("tiles+encode", 0.0), 3),
    }
