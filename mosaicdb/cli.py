"""The `mosaicdb` command: parse options, call the Python API, print (human or --json).

Kept thin and light: nothing heavy (numpy, pyvips, faiss, alembic) is imported at module level,
so `mosaicdb --help` is instant. Every MosaicdbError becomes one line on stderr and exit 1 here.
"""

from __future__ import annotations

import functools
import json
import sys
from typing import Annotated

import typer

from .errors import MosaicdbError

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
):
    _state["home"] = home


def _err(msg: str) -> None:
    typer.echo(f"Error: {msg}", err=True)


def _command(fn):
    """Map library errors to one line + exit 1; Ctrl-C to exit 130 without a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except MosaicdbError as e:
            from .library import Interrupted

            _err(str(e))
            raise typer.Exit(130 if isinstance(e, Interrupted) else 1) from None
        except KeyboardInterrupt:
            _err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None

    return wrapper


def _progress(quiet: bool):
    from .progress import Progress, RichProgress

    if quiet or not sys.stderr.isatty():
        return Progress()
    return RichProgress()


def _open(quiet: bool = True):
    from .library import Library

    return Library.open(_state["home"], progress=_progress(quiet))


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
    json_out: JsonOpt = False,
    quiet: QuietOpt = False,
):
    """Index photo folders: new and changed files are read, deleted ones dropped."""
    with _open(quiet or json_out and not sys.stderr.isatty()) as lib:
        s = lib.index(
            paths or (),
            workers=workers,
            thumb_size=thumb_size,
            max_pixels=max_pixels,
            include_hidden=include_hidden,
            retry_errors=retry_errors,
            batch_size=batch_size,
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
    with _open() as lib:
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
    with _open() as lib:
        rows = lib.roots()
    if json_out:
        _print_json(rows)
        return
    for r in rows:
        typer.echo(r)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
