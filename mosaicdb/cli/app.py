"""The typer app, its global options (--home, --db) and what every command shares: one line
per MosaicdbError and exit 1 (`command`), the progress bar, opening the store, --json output."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import sys
from typing import Annotated

import typer
from typer.exceptions import TyperException

from mosaicdb.errors import MosaicdbError, with_damage_advice

app = typer.Typer(
    name="mosaicdb",
    help="A persistent, incremental photo tile index, and photomosaics rendered from it.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


state: dict = {"home": None}


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
    state["home"] = home
    state["db"] = db_url


def err(msg: str) -> None:
    typer.echo(f"Error: {safe(msg)}", err=True)


# Control characters (C0, DEL, C1) a file name may hold, as Python writes them in a string
# literal: a name with a newline or a terminal escape sequence cannot break a line of output
# or drive the terminal. Text output only; --json gives names exactly.
_CONTROL = {c: repr(chr(c))[1:-1] for c in (*range(32), *range(127, 160))}


def safe(text: str) -> str:
    """One line of text output with any control characters in it escaped (`\\n`, `\\x1b`)."""
    return text.translate(_CONTROL)


def command(fn):
    """Map library errors to one line + exit 1; Ctrl-C to exit 130 without a traceback."""

    @functools.wraps(fn)
    def wrapper(*a, **kw):
        try:
            return fn(*a, **kw)
        except MosaicdbError as e:
            from mosaicdb.library import Interrupted

            err(str(e))
            raise typer.Exit(130 if isinstance(e, Interrupted) else 1) from None
        except KeyboardInterrupt:
            err("interrupted")
            raise typer.Exit(130) from None
        except BrokenPipeError:
            raise typer.Exit(0) from None
        except (typer.Exit, typer.Abort, TyperException):
            raise
        except OSError as e:  # disk full, permissions on the store or the output folder
            where = f": {e.filename}" if e.filename else ""
            err(f"{e.strerror or e}{where}")
            raise typer.Exit(1) from None
        except Exception as e:
            if os.environ.get("MOSAICDB_DEBUG"):
                raise
            import sqlite3

            from sqlalchemy.exc import SQLAlchemyError

            if isinstance(e, SQLAlchemyError | sqlite3.Error):  # sqlite3: pagecheck
                reason = with_damage_advice(getattr(e, "orig", None) or e)
                err(f"the catalog database failed: {reason}")
            else:  # a bug: one line for the user, the traceback on request
                err(f"unexpected {type(e).__name__}: {e} (set MOSAICDB_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper


def progress_for(quiet: bool):
    from mosaicdb.progress import Progress, RichProgress

    if quiet or not sys.stderr.isatty():
        return Progress()
    return RichProgress()


@contextlib.contextmanager
def brief():
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
        if was and not state.get("process_ends"):
            gc.enable()


def open_store(quiet: bool = True, create: bool = False):
    """The store of --home/--db; only `index` makes a new one."""
    from mosaicdb.library import Library

    return Library.open(
        state["home"], progress=progress_for(quiet), db_url=state.get("db"), create=create
    )


def on_terminal() -> bool:
    """Whether a question can be asked (stdin is a terminal)."""
    return sys.stdin.isatty()


def plural(n: int, word: str) -> str:
    """'1 photo', '2,000 photos'."""
    return f"{n:,} {word}" + ("" if n == 1 else "s")


def print_json(obj) -> None:
    sys.stdout.write(json.dumps(obj, ensure_ascii=False, indent=None) + "\n")


JsonOpt = Annotated[bool, typer.Option("--json", help="Print only JSON on stdout.")]


QuietOpt = Annotated[bool, typer.Option("--quiet", "-q", help="No progress bar.")]
