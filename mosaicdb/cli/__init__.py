"""The `mosaicdb` command: parse options, call the Python API, print (human or --json).

Kept thin and light: nothing heavy (numpy, pyvips, faiss, alembic) is imported at module level,
so `mosaicdb --help` is instant. Every MosaicdbError becomes one line on stderr and exit 1 here.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from mosaicdb.errors import MosaicdbError, OptionError, with_damage_advice

app = typer.Typer(
    name="mosaicdb",
    help="A persistent, incremental photo tile index, and photomosaics rendered from it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)

_state: dict = {"home": None}


@app.callback()
def _main(
    home: Annotated[
        str | None,
        typer.Option(
            "--home",
            envvar="MOSAICDB_HOME",
            help="Store folder (catalog + vectors).",
            show_default="the user data dir",
        ),
    ] = None,
    db_url: Annotated[
        str | None,
        typer.Option(
            "--db",
            envvar="MOSAICDB_DB",
            help="Catalog database URL (SQLAlchemy), e.g. postgresql+psycopg://user@host/db.",
            show_default="catalog.sqlite in the store folder",
        ),
    ] = None,
):
    _state["home"] = home
    _state["db"] = db_url


def _err(msg: str) -> None:
    typer.echo(f"Error: {msg}", err=True)


def _command(fn):
    """Map library errors to one line + exit 1; Ctrl-C to exit 130 without a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except MosaicdbError as e:
            from mosaicdb.library import Interrupted

            _err(str(e))
            raise typer.Exit(130 if isinstance(e, Interrupted) else 1) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except OSError as e:  # disk full, permissions on the store or the output folder
            where = f": {e.filename}" if e.filename else ""
            _err(f"{e.strerror or e}{where}")
            raise typer.Exit(1) from None
        except Exception as e:
            if os.environ.get("MOSAICDB_DEBUG"):
                raise
            import sqlite3

            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(e, SQLAlchemyError | sqlite3.Error):  # sqlite3: pagecheck
                reason = with_damage_advice(getattr(e, "orig", None) or e)
                _err(f"the catalog database failed: {reason}")
            else:  # a bug: one line for the user, the traceback on request
                _err(f"unexpected {type(e).__name__}: {e} (set MOSAICDB_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper


def _progress(quiet: bool):
    from mosaicdb.progress import Progress, RichProgress

    if quiet or not sys.stderr.isatty():
        return Progress()
    return RichProgress()


@contextlib.contextmanager
def _brief():
    """For the commands that read the store and are done in seconds (stats, ls, errors, roots,
    check): no cyclic garbage collection meanwhile. Its passes over the objects of the modules
    they load, SQLAlchemy's above all, cost 0.1-0.25 s of such a command at 1M photos
    (measured: ~150 collections), and these commands make little cyclic garbage.

    The collector stays off when the process ends after the command (the console script):
    its first pass would go over everything made meanwhile (0.05 s, measured). A caller in
    the same process gets it back."""
    import gc

    was = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was and not _state.get("process_ends"):
            gc.enable()


def _open(quiet: bool = True, create: bool = False):
    """The store of --home/--db; only `index` makes a new one."""
    from mosaicdb.library import Library

    return Library.open(
        _state["home"], progress=_progress(quiet), db_url=_state.get("db"), create=create
    )


def _on_terminal() -> bool:
    """Whether a question can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def _print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]
QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]


@app.command()
@_command
def index(
    paths: Annotated[
        list[str] | None,
        typer.Argument(help="Folders to add and scan. None: rescan every registered folder."),
    ] = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            "-j",
            help="Decoder processes (0: in this process).",
            show_default="CPU count",
        ),
    ] = None,
    thumb_size: Annotated[
        int, typer.Option("--thumb-size", help="Stored thumbnail short side, px.")
    ] = 256,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", help="Refuse photos larger than this many pixels.")
    ] = 250_000_000,
    include_hidden: Annotated[
        bool, typer.Option("--include-hidden", help="Also index hidden files and folders.")
    ] = False,
    retry_errors: Annotated[
        bool,
        typer.Option("--retry-errors", help="Re-read files that failed before even if unchanged."),
    ] = False,
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Files per commit (a crash loses at most these).")
    ] = 200,
    executor: Annotated[
        str,
        typer.Option(
            "--executor", help="local: a process pool here; dask: a Dask cluster (extra [dask])."
        ),
    ] = "local",
    scheduler: Annotated[
        str | None,
        typer.Option(
            "--scheduler",
            help="Dask scheduler address (tcp://host:8786); without it a local cluster of "
            "--workers processes is started.",
        ),
    ] = None,
    shard_size: Annotated[int, typer.Option("--shard-size", help="Files per Dask task.")] = 10_000,
    resource: Annotated[
        str | None,
        typer.Option(
            "--resource",
            help="Run every Dask task on workers that declare this resource (e.g. the "
            "machine that owns the disk: dask worker … --resources 'NAME=1').",
        ),
    ] = None,
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Index photo folders: new and changed files are read, deleted ones dropped."""
    if workers != 0 and executor == "local":
        from mosaicdb.index.scan import prestart_forkserver

        prestart_forkserver()
    with _open(quiet or json_out and not sys.stderr.isatty(), create=True) as lib:
        s = lib.index(
            paths or (),
            workers=workers,
            thumb_size=thumb_size,
            max_pixels=max_pixels,
            include_hidden=include_hidden,
            retry_errors=retry_errors,
            batch_size=batch_size,
            executor=executor,
            scheduler=scheduler,
            shard_size=shard_size,
            resource=resource,
        )
    if json_out:
        _print_json(s.to_dict())
        return
    for w in s.warnings:
        typer.echo(f"warning: {w}", err=True)
    rate = (s.added + s.updated) / s.seconds if s.seconds else 0
    typer.echo(
        f"{s.scanned:,} files scanned: {s.added:,} added, {s.updated:,} updated, "
        f"{s.removed:,} removed, {s.unchanged:,} unchanged, {s.failed:,} failed "
        f"in {s.seconds:.1f} s ({rate:,.0f} files/s read)"
    )
    typer.echo(f"vector index: {s.vectors:,} photos ({s.vector_index})")
    if s.failed:
        typer.echo("see `mosaicdb errors` for the files that could not be read", err=True)


@app.command()
@_command
def errors(json_out: JsonOpt = False):
    """List files that could not be indexed, with the reason."""
    with _brief(), _open() as lib:
        rows = lib.errors()
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(f"{r['path']}: {r['error']}")
    if not rows:
        typer.echo("no errors", err=True)


@app.command()
@_command
def roots(json_out: JsonOpt = False):
    """List the registered photo folders."""
    with _brief(), _open() as lib:
        rows = lib.roots()
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(r)
    if not rows:
        typer.echo("no folders are registered yet: run `mosaicdb index PATH`", err=True)


@app.command()
@_command
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
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Render a photomosaic of TARGET from the index (never reads the photo folders)."""
    if not output:
        raise typer.BadParameter("is required", param_hint="'--output' / '-o'")
    with _open(quiet or json_out and not sys.stderr.isatty()) as lib:
        r = lib.render(
            target,
            output,
            plan=plan,
            tiles_across=tiles_across,
            tile_count=tile_count,
            tile_size=tile_size,
            aspect=aspect,
            max_uses=max_uses,
            min_distance=min_distance,
            use_all=use_all,
            repeat=repeat,
            seed=seed,
            blend=blend,
            candidates=candidates,
            grid=grid,
            rerank=rerank,
            score=score,
        )
    if json_out:
        _print_json(r.to_dict())
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
    near = "none repeats" if v["min_repeat_distance"] is None else (
        f"repeats ≥ {v['min_repeat_distance']} cells apart"
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
@_command
def renders(json_out: JsonOpt = False):
    """List saved renders (their plans can be re-rendered with `render --plan ID`)."""
    with _open() as lib:
        rows = lib.renders()
    if json_out:
        _print_json(rows)
        return
    import datetime as dt

    for r in rows:
        when = dt.datetime.fromtimestamp(r["created_at"]).strftime("%Y-%m-%d %H:%M")
        de = "" if r["mean_delta_e"] is None else f" ΔE {r['mean_delta_e']:.2f}"
        typer.echo(
            f"{r['id']:>4}  {when}  {r['cols']}×{r['rows']} cells  {r['tile_w']}×"
            f"{r['tile_h']} px{de}  {r['target']} → {r['output'] or '(not written)'}"
        )
    if not rows:
        typer.echo("no renders yet", err=True)


@app.command()
@_command
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
    with _brief(), _open() as lib:
        s = lib.stats(plot=plot)
    if json_out:
        _print_json(s)
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
        + ", ".join(f"{k} {v:,}" for k, v in s["by_format"].items())
    )
    for r in s["roots"]:
        con.print(f"  root {escape(r['path'])}: {r['photos']:,} photos")
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


@app.command("ls")
@_command
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
            "indexed (latest first). Not with --near: nearest first.",
        ),
    ] = None,
    json_out: JsonOpt = False,
):
    """List photos with their mean colour (hex and Lab), size and status."""
    with _brief(), _open() as lib:
        rows = lib.ls(status=status, root=root, path=path, near=near, limit=limit, sort=sort)
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        lab = "" if r["lab"] is None else "Lab {:6.1f} {:6.1f} {:6.1f}".format(*r["lab"])
        extra = f"  ΔE {r['delta_e']:.1f}" if "delta_e" in r else ""
        what = r["hex"] or "error  "
        tail = f"  {r['error']}" if r["status"] == "error" else ""
        typer.echo(f"{what}  {lab:24}{extra}  {r['size']:>10,}  {r['path']}{tail}")
    if not rows:
        typer.echo("no photos match", err=True)


@app.command()
@_command
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
    with _open() as lib:
        g = lib.gaps(
            target, tiles_across=tiles_across, aspect=aspect, threshold=threshold, plot=plot
        )
    if json_out:
        _print_json(g)
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
@_command
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
    with _open() as lib:
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
        _print_json(r)
        return
    typer.echo(
        f"{r['output']}: {r['photos']:,} photos, {r['cols']}×{r['rows']}, "
        f"{r['width']}×{r['height']} px"
    )


@app.command()
@_command
def check(
    repair: Annotated[
        bool,
        typer.Option("--repair", help="Rebuild vectors, drop orphans and rows of deleted files."),
    ] = False,
    deep: Annotated[
        bool,
        typer.Option("--deep", help="Decode every thumbnail, full integrity check (slow)."),
    ] = False,
    no_files: Annotated[
        bool, typer.Option("--no-files", help="Skip comparing with the files on disk.")
    ] = False,
    json_out: JsonOpt = False,
):
    """Check catalog ↔ vector file ↔ disk and every thumbnail. Exit 0 when clean, 1 if not."""
    from mosaicdb.store import pagecheck

    if _state.get("process_ends") and "numpy" not in sys.modules:
        # numpy's OpenBLAS starts a thread per core when it loads, ~0.12 s of CPU (measured)
        # that check would take from its scans; nothing in check multiplies matrices. Only
        # for a process that ends with the command: the setting outlives it in the environment
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # SQLite's check of the catalog file begins before the store's modules load (see
    # pagecheck), if the entry point has not begun it already
    pagecheck.start_for_store(_state["home"], _state.get("db"), deep)
    try:
        with _brief(), _open() as lib:
            r = lib.check(repair=repair, files=not no_files, deep=deep)
    finally:
        pagecheck.forget_started()
    if json_out:
        _print_json(r)
    else:
        for p in r["problems"]:
            typer.echo(f"problem: {p}")
        for x in r["repaired"]:
            typer.echo(f"repaired: {x}")
        for p in r.get("remaining", []):
            typer.echo(f"still wrong: {p}")
        for root in r["files"]["roots_not_found"]:
            typer.echo(f"not compared: folder {root} is missing or empty (photos kept)", err=True)
        typer.echo("store is consistent" if r["ok"] else "problems remain", err=True)
    if not r["ok"]:
        raise typer.Exit(1)


@app.command()
@_command
def forget(
    root: Annotated[str, typer.Argument(help="A registered folder (see `mosaicdb roots`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_out: JsonOpt = False,
):
    """Remove a registered folder and its photos from the store (files on disk are untouched)."""
    with _open() as lib:
        if not yes:
            if not _on_terminal():
                raise OptionError("--yes", "is needed to forget a folder without a terminal")
            path, n = lib.root_info(root)
            typer.confirm(
                f"Remove {path} and its {n:,} photos from the store?", abort=True, err=True
            )
        r = lib.forget(root)
    if json_out:
        _print_json(r)
    else:
        typer.echo(f"forgot {r['root']}: {r['photos_removed']:,} photos removed from the store")


@app.command()
@_command
def view(
    render: Annotated[
        str, typer.Argument(metavar="ID|PATH", help="Render ID, or its .dz/.dzi output.")
    ],
    export: Annotated[
        str | None,
        typer.Option(
            "--export", metavar="DIR", help="Write the page as static files into DIR instead."
        ),
    ] = None,
    port: Annotated[int, typer.Option("--port", help="Port (0: a free one).")] = 0,
    host: Annotated[
        str, typer.Option("--host", help="Interface to listen on (others: opt in).")
    ] = "127.0.0.1",
    no_open: Annotated[bool, typer.Option("--no-open", help="Do not open a browser.")] = False,
    json_out: JsonOpt = False,
):
    """Explore a Deep Zoom render in the browser: zoom in, see which photo each tile is."""
    with _open() as lib:
        v = lib.view(render)
    if export:
        r = v.export(export)
        if json_out:
            _print_json(r)
            return
        for n in r["notes"]:
            typer.echo(f"note: {n}", err=True)
        typer.echo(f"render {r['render_id']}: {r['cells']:,} cells → {r['page']}")
        return
    server = v.server(host, port)
    try:
        if json_out:
            _print_json({"render_id": v.render_id, "url": server.url, "notes": v.notes})
            sys.stdout.flush()
        else:
            for n in v.notes:
                typer.echo(f"note: {n}", err=True)
            if not server.loopback_only:
                typer.echo(
                    f"warning: listening on {host}: anyone who can reach it sees the mosaic and "
                    "the photo names, and can open the photos",
                    err=True,
                )
            typer.echo(f"render {v.render_id} at {server.url} (Ctrl-C to stop)", err=True)
        if not no_open:
            from mosaicdb.view.server import open_browser

            if not open_browser(server.url) and not json_out:
                typer.echo("no browser to open here: open the address above", err=True)
        server.serve_forever()
    except KeyboardInterrupt:
        typer.echo("stopped", err=True)
    finally:
        server.server_close()


def main() -> None:
    """The console script. Once the command is done, its output flushed and the atexit
    handlers run, the process ends with os._exit: tearing down the interpreter's modules
    (SQLAlchemy, FAISS, numpy) cost 0.25–0.3 s of every command's wall time, measured."""
    import atexit

    _state["process_ends"] = True
    try:
        app()
        code = 0
    except SystemExit as e:
        code = e.code
    if code is not None and not isinstance(code, int):
        print(code, file=sys.stderr)
        code = 1
    import threading

    main_thread = threading.main_thread()
    if any(t.is_alive() and not t.daemon and t is not main_thread for t in threading.enumerate()):
        # a thread still working: the normal exit waits for it, with the collector back on
        import gc

        _state.pop("process_ends", None)
        gc.enable()
        sys.exit(code)
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):  # a closed pipe or stream: nothing more to say
            pass
    os._exit(code or 0)


if __name__ == "__main__":
    main()
