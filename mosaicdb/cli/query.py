"""`stats`, `ls`, `gaps`, `sheet`: asking the store about its tiles."""

from __future__ import annotations

from typing import Annotated

import typer

from mosaicdb.cli.app import JsonOpt, app, brief, command, open_store, print_json, safe


@app.command()
@command
def stats(
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot", help="Also write the colour coverage as a picture (.png .jpg .webp .tif)."
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """What is in the store: photos by status and format, roots, sizes, colour coverage."""
    with brief(), open_store() as lib:
        s = lib.stats(plot=plot)
    if json_out:
        print_json(s)
        return
    from rich.console import Console

    # soft_wrap: a line piped to a file is not cut at 80 columns; names keep their `:x:`
    # (emoji off) and `[x]` (escaped). The text is rendered first and then written here, so
    # a closed pipe (`stats | head -1`) ends like every other command's (rich would exit 1).
    con = Console(soft_wrap=True, highlight=False, emoji=False)
    with con.capture() as text:
        _print_stats(con, s)
    typer.echo(text.get(), nl=False)


def _print_stats(con, s: dict) -> None:
    from rich.markup import escape

    st = s["store"]
    con.print(
        f"[bold]{s['photos']:,} photos[/]: {s['by_status']['ok']:,} ok, "
        f"{s['by_status']['error']:,} errors; formats: "
        + (", ".join(f"{k} {v:,}" for k, v in s["by_format"].items()) or "none")
    )
    nd = s["near_duplicates"]
    if nd["groups"]:
        con.print(
            f"near-duplicates: {nd['groups']:,} group{'s' * (nd['groups'] != 1)} of "
            f"{nd['photos']:,} photos (each counts as one photo under the repetition rules; "
            "mosaicdb dupes)"
        )
    for r in s["roots"]:
        con.print(f"  root {escape(safe(r['path']))}: {r['photos']:,} photos")
    vec = sum(st["vector_files"].values())
    con.print(
        f"store {escape(st['home'])}: catalog {st['catalog_bytes'] / 2**20:,.1f} MB (thumbnails "
        f"{st['thumbnail_bytes'] / 2**20:,.1f} MB), vectors {vec / 2**20:,.1f} MB"
        + (f" ({s['vector_index']})" if s["vector_index"] else "")
        + f"; features {s['feature_spec']}"
    )
    cov = s["coverage"]

    def short(n: int) -> str:
        return f"{n}" if n < 1000 else f"{n / 1000:.0f}k" if n < 10**6 else f"{n / 10**6:.0f}M"

    con.print("colour coverage: photos per lightness band × hue (swatch = the bin's colour)")
    con.print("L       grey " + " ".join(f"{h[:4]:>4}" for h in cov["hues"]))
    from mosaicdb.query.colour import bin_colours

    swatches = bin_colours()
    for i, band in enumerate(cov["lightness_bands"]):
        lo, hi = (int(x) for x in band.split("-"))
        line = f"{band:<7}"
        for j, n in enumerate([cov["greys"][i], *cov["counts"][i]]):
            r, g, b = (int(x) for x in swatches[i, j])
            fg = "black" if (lo + hi) / 2 > 55 else "white"
            line += f" [{fg} on #{r:02x}{g:02x}{b:02x}]{short(n):>4}[/]" if n else "    ·"
        con.print(line)
    if s.get("plot"):
        con.print(f"coverage picture: {escape(s['plot'])}")


@app.command()
@command
def dupes(json_out: JsonOpt = False):
    """Near-duplicate groups (copies, edits, burst shots, RAW+JPEG pairs), largest first."""
    with brief(), open_store() as lib:
        groups = lib.dupes()
    if json_out:
        print_json(groups)
        return
    for g in groups:
        typer.echo(f"{g['size']} photos:")
        for p in g["paths"]:
            typer.echo(f"  {safe(p)}")
    if not groups:
        typer.echo("no near-duplicates", err=True)


@app.command("ls")
@command
def ls_(
    status: Annotated[str | None, typer.Option("--status", help="ok or error.")] = None,
    root: Annotated[str | None, typer.Option("--root", help="Only this registered folder.")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Glob on the full path.")] = None,
    near: Annotated[
        str | None, typer.Option("--near", help="Closest to a colour: '#1e3a5f' or 'lab:30,5,-30'.")
    ] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N rows.")] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="id (default), path, size (largest first), lightness (darkest first), "
            "indexed (latest first), colour (as sheet: greys, then by hue). Not with --near: "
            "nearest first.",
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """List photos with their mean colour (hex and Lab), size and status."""
    with brief(), open_store() as lib:
        rows = lib.ls(status=status, root=root, path=path, near=near, limit=limit, sort=sort)
    if json_out:
        print_json(rows)
        return
    for r in rows:
        lab = "" if r["lab"] is None else "Lab {:6.1f} {:6.1f} {:6.1f}".format(*r["lab"])
        extra = f"  ΔE {r['delta_e']:.1f}" if "delta_e" in r else ""
        what = r["hex"] or "error  "
        tail = f"  {r['error']}" if r["status"] == "error" else ""
        typer.echo(f"{what}  {lab:24}{extra}  {r['size']:>10,}  {safe(r['path'])}{tail}")
    if not rows:
        typer.echo("no photos match", err=True)


@app.command()
@command
def gaps(
    target: Annotated[str, typer.Argument(help="The image you mean to render.")],
    tiles_across: Annotated[int, typer.Option("--tiles-across", help="Cells across.")] = 100,
    aspect: Annotated[str, typer.Option("--aspect", help="Tile aspect W:H.")] = "1:1",
    threshold: Annotated[
        float, typer.Option("--threshold", help="A cell is poorly served above this ΔE2000.")
    ] = 10.0,
    plot: Annotated[
        str | None,
        typer.Option(
            "--plot",
            help="Also write wanted vs closest colours as a picture (.png .jpg .webp .tif).",
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """Before rendering: which colours of TARGET the library lacks, and how badly."""
    with open_store() as lib:
        g = lib.gaps(
            target, tiles_across=tiles_across, aspect=aspect, threshold=threshold, plot=plot
        )
    if json_out:
        print_json(g)
        return
    typer.echo(
        f"{g['cols']}×{g['rows']} = {g['cells']:,} cells, mean ΔE2000 to the nearest tile "
        f"{g['mean_delta_e']:.1f}; {g['poor_cells']:,} cells are above ΔE {g['threshold']:g}"
    )
    for x in g["groups"][:12]:
        L, a, b = x["lab"]
        typer.echo(
            f"  {x['cells']:>6,} cells need {x['colour']} near L {L:.0f} a {a:.0f} b {b:.0f} "
            f"({x['hex']}); best tile is ΔE {x['best_delta_e']:.0f}. Adding ~"
            f"{x['suggest_photos']:,} such photos would help."
        )
    if g.get("plot"):
        typer.echo(f"wanted vs closest colours: {g['plot']}")


@app.command()
@command
def sheet(
    output: Annotated[
        str, typer.Option("--output", "-o", help="Output image (.jpg .png .tif .dz).")
    ],
    tile_size: Annotated[int, typer.Option("--tile-size", help="Px per thumbnail.")] = 64,
    across: Annotated[int | None, typer.Option("--across", help="Thumbnails per row.")] = None,
    status: Annotated[
        str | None, typer.Option("--status", help="ok (failed photos have no thumbnail).")
    ] = None,
    root: Annotated[str | None, typer.Option("--root", help="Only this registered folder.")] = None,
    path: Annotated[str | None, typer.Option("--path", help="Glob on the full path.")] = None,
    near: Annotated[str | None, typer.Option("--near", help="Closest to a colour.")] = None,
    limit: Annotated[int | None, typer.Option("--limit", help="At most N photos.")] = None,
    sort: Annotated[
        str | None,
        typer.Option(
            "--sort",
            help="colour (default), or as `ls` (not with --near): id, path, size, lightness, "
            "indexed.",
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """A contact sheet of the stored thumbnails, sorted by colour (no photo folder access)."""
    with open_store() as lib:
        r = lib.sheet(
            output,
            tile_size=tile_size,
            across=across,
            status=status,
            root=root,
            path=path,
            near=near,
            limit=limit,
            sort=sort,
        )
    if json_out:
        print_json(r)
        return
    typer.echo(
        f"{r['output']}: {r['photos']:,} photos, {r['cols']}×{r['rows']}, "
        f"{r['width']}×{r['height']} px"
    )
