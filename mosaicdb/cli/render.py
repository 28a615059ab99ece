"""`render` and `renders`: a mosaic from the index, and the saved plans."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mosaicdb.cli.app import JsonOpt, QuietOpt, app, command, open_store, print_json


@app.command()
@command
def render(
    target: Annotated[
        str | None, typer.Argument(help="Target image (not needed with --plan).")
    ] = None,
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output: .jpg .png .webp .tif .dz (Deep Zoom).")
    ] = "",
    tiles_across: Annotated[
        int | None, typer.Option("--tiles-across", help="Cells across.", show_default="100")
    ] = None,
    tile_count: Annotated[
        int | None, typer.Option("--tile-count", help="About this many cells in all.")
    ] = None,
    tile_size: Annotated[int, typer.Option("--tile-size", help="Output px per tile (width).")] = 64,
    aspect: Annotated[str, typer.Option("--aspect", help="Tile aspect W:H.")] = "1:1",
    max_uses: Annotated[
        int | None,
        typer.Option(
            "--max-uses",
            help="A photo fills at most N cells (0: no limit).",
            show_default="1 % of the cells, at least 2 × cells/photos; none with --repeat free",
        ),
    ] = None,
    min_distance: Annotated[
        int | None,
        typer.Option(
            "--min-distance",
            help="Same photo never within R cells (0: off).",
            show_default="1 (no photo beside itself), 0 for a tiny library or --repeat free",
        ),
    ] = None,
    use_all: Annotated[
        bool,
        typer.Option(
            "--use-all", help="Every photo at least once (cells ≥ photos), else none twice."
        ),
    ] = False,
    repeat: Annotated[
        str,
        typer.Option(
            "--repeat",
            help="varied: the default limits above; free: repeat without limit (best matches).",
        ),
    ] = "varied",
    dupes: Annotated[
        str,
        typer.Option(
            "--dupes",
            help="group: near-duplicates (copies, edits, bursts; mosaicdb dupes) count as one "
            "photo to the rules; separate: each its own.",
        ),
    ] = "group",
    seed: Annotated[int, typer.Option("--seed", help="Seed for placement ties.")] = 0,
    blend: Annotated[
        float, typer.Option("--blend", help="0–1: shift tile colours toward the target.")
    ] = 0.0,
    candidates: Annotated[
        int | None,
        typer.Option(
            "--candidates",
            help="Nearest tiles considered per cell (default 16; under --min-distance R, "
            "(2R+1)² up to 128; under a cap up to 256, ~2.4M arcs in all).",
        ),
    ] = None,
    grid: Annotated[
        int | None,
        typer.Option(
            "--grid",
            help="Match on a K×K Lab grid per cell (default: the store's; others are derived "
            "once from the stored thumbnails).",
        ),
    ] = None,
    rerank: Annotated[
        int | None,
        typer.Option(
            "--rerank",
            help="Re-order each cell's candidates on a finer R×R Lab grid (0: off).",
            show_default="6",
        ),
    ] = None,
    plan: Annotated[
        int | None, typer.Option("--plan", help="Re-render saved render ID without matching.")
    ] = None,
    score: Annotated[
        bool, typer.Option("--score", help="Also score ΔE2000 and SSIM at 400 and 1600 px wide.")
    ] = False,
    force: Annotated[
        bool,
        typer.Option(
            "--force", help="Write the output even over the target or into an indexed folder."
        ),
    ] = False,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Render a photomosaic of TARGET from the index (never reads the photo folders)."""
    if not output:
        raise typer.BadParameter("is required", param_hint="'--output' / '-o'")
    with open_store(quiet or json_out and not sys.stderr.isatty()) as lib:
        r = lib.render(
            target,
            output,
            plan=plan,
            force=force,
            tiles_across=tiles_across,
            tile_count=tile_count,
            tile_size=tile_size,
            aspect=aspect,
            max_uses=max_uses,
            min_distance=min_distance,
            use_all=use_all,
            repeat=repeat,
            dupes=dupes,
            seed=seed,
            blend=blend,
            candidates=candidates,
            grid=grid,
            rerank=rerank,
            score=score,
        )
    if json_out:
        print_json(r.to_dict())
        return
    for w in r.warnings:
        typer.echo(f"warning: {w}", err=True)
    de = "n/a" if r.mean_delta_e is None else f"{r.mean_delta_e:.2f}"
    typer.echo(
        f"render {r.render_id}: {r.output} {r.width}×{r.height} px, {r.cols}×{r.rows} = "
        f"{r.cells:,} cells, {r.distinct_tiles:,} distinct photos (most used ×{r.max_reuse}), "
        f"mean ΔE2000 {de}, {r.seconds:.1f} s"
    )
    v = r.variety
    near = (
        "none repeats"
        if v["min_repeat_distance"] is None
        else (f"repeats ≥ {v['min_repeat_distance']} cells apart")
    )
    typer.echo(
        f"variety: {v['library_used']:.0%} of the library used, {near}, "
        f"{v['same_neighbour_share']:.1%} of cells beside the same photo"
    )
    for width, q in (r.quality or {}).items():
        typer.echo(f"at {width} px wide: mean ΔE2000 {q['delta_e']:.2f}, SSIM {q['ssim']:.3f}")
    if r.mean_delta_e_best is not None and r.mean_delta_e is not None:
        typer.echo(
            f"the repetition rules cost {r.mean_delta_e - r.mean_delta_e_best:+.2f} ΔE "
            f"(best matches alone: {r.mean_delta_e_best:.2f})"
        )


@app.command()
@command
def renders(json_out: JsonOpt = False):
    """List saved renders (their plans can be re-rendered with `render --plan ID`)."""
    with open_store() as lib:
        rows = lib.renders()
    if json_out:
        print_json(rows)
        return
    import datetime as dt

    for r in rows:
        when = dt.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M")
        de = "" if r["mean_delta_e"] is None else f" ΔE {r['mean_delta_e']:.2f}"
        typer.echo(
            f"{r['id']:>4}  {when}  {r['cols']}×{r['rows']} cells  {r['tile_w']}×"
            f"{r['tile_h']} px{de}  {r['target']} → {r['output'] or '(not written)'}"
        )
        for o in r["outputs"][:-1]:  # the earlier files written from the same plan
            de = "" if o["mean_delta_e"] is None else f" ΔE {o['mean_delta_e']:.2f}"
            blend = f" blend {o['blend']:g}" if o["blend"] else ""
            typer.echo(f"{'':>22}also {o['tile_w']}×{o['tile_h']} px{de}{blend} → {o['output']}")
    if not rows:
        typer.echo("no renders yet", err=True)
