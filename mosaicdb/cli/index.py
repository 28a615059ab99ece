"""`index`, `errors`, `roots`: the catalog built from photo folders, and what it holds of them."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mosaicdb.cli.app import (
    JsonOpt,
    QuietOpt,
    app,
    brief,
    command,
    open_store,
    plural,
    print_json,
    safe,
)
from mosaicdb.errors import OptionError
from mosaicdb.index.decode import EXTENSIONS


@app.command(
    help="Index photo folders: new and changed files are read, deleted ones dropped.\n\n"
    "Reads " + " ".join(sorted(e.decode() for e in EXTENSIONS)) + " (any case); other files are "
    "counted as skipped. NAS and app thumbnail folders (@eaDir, .@__thumb, .thumbnails) and ._* "
    "files are never read."
)
@command
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
        int | None,
        typer.Option(
            "--thumb-size",
            help="Stored thumbnail short side, px; remembered by the store for the photos "
            "read later.",
            show_default="256, or the store's",
        ),
    ] = None,
    max_pixels: Annotated[
        int, typer.Option("--max-pixels", help="Refuse photos larger than this many pixels.")
    ] = 250_000_000,
    include_hidden: Annotated[
        bool | None,
        typer.Option(
            "--include-hidden/--no-include-hidden",
            help="Also index hidden files and folders; remembered by the folders.",
            show_default="as the folder was last indexed (no)",
        ),
    ] = None,
    exclude: Annotated[
        list[str] | None,
        typer.Option(
            "--exclude",
            help="Leave out files and folders matching this glob, relative to the folder "
            "(e.g. 'Screenshots/*'; repeatable); remembered by the folders, replacing their "
            "globs. Photos already indexed that it leaves out are dropped.",
        ),
    ] = None,
    no_exclude: Annotated[
        bool, typer.Option("--no-exclude", help="Forget the folders' --exclude globs.")
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
    from mosaicdb.index.run import check_paths

    if no_exclude and exclude:
        raise OptionError("--no-exclude", "does not go with --exclude")
    check_paths(paths or ())  # a mistyped folder makes no store
    if workers != 0 and executor == "local":
        from mosaicdb.index.batches import prestart_forkserver

        prestart_forkserver()
    with open_store(quiet or json_out and not sys.stderr.isatty(), create=True) as lib:
        s = lib.index(
            paths or (),
            workers=workers,
            thumb_size=thumb_size,
            max_pixels=max_pixels,
            include_hidden=include_hidden,
            exclude=[] if no_exclude else exclude,
            retry_errors=retry_errors,
            batch_size=batch_size,
            executor=executor,
            scheduler=scheduler,
            shard_size=shard_size,
            resource=resource,
        )
    if json_out:
        print_json(s.to_dict())
        return
    for w in s.warnings:
        typer.echo(f"warning: {safe(w)}", err=True)
    rate = (s.added + s.updated) / s.seconds if s.seconds else 0
    skipped = ", ".join(f"{n:,} {ext or '(no extension)'}" for ext, n in s.skipped.items())
    if not s.scanned and not s.removed and s.skipped:
        typer.echo(f"no photos found: only files mosaicdb does not read ({skipped})")
    else:
        typer.echo(
            f"{plural(s.scanned, 'file')} scanned: {s.added:,} added, {s.updated:,} updated, "
            + (f"{s.moved:,} moved, " if s.moved else "")
            + f"{s.removed:,} removed, {s.unchanged:,} unchanged, {s.failed:,} failed "
            f"in {s.seconds:.1f} s ({rate:,.0f} files/s read)"
        )
        if skipped:
            typer.echo(f"skipped: {skipped}")
        if s.excluded:
            typer.echo(f"excluded: {plural(s.excluded, 'file')} (--exclude)")
    typer.echo(f"vector index: {plural(s.vectors, 'photo')} ({s.vector_index})")
    if s.unreadable:
        typer.echo(f"{s.unreadable:,} unreadable (mosaicdb errors)")


@app.command()
@command
def errors(json_out: JsonOpt = False):
    """List files that could not be indexed, with the reason."""
    with brief(), open_store() as lib:
        rows = lib.errors()
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(safe(f"{r['path']}: {r['error']}"))
    if not rows:
        typer.echo("no errors", err=True)


@app.command()
@command
def roots(json_out: JsonOpt = False):
    """List the registered photo folders."""
    with brief(), open_store() as lib:
        rows = lib.roots()
    if json_out:
        print_json(rows)
        return
    for r in rows:
        typer.echo(safe(r))
    if not rows:
        typer.echo("no folders are registered yet: run `mosaicdb index PATH`", err=True)
