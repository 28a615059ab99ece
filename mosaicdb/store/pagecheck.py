"""SQLite's own check of a catalog file (PRAGMA quick_check, or integrity_check when deep),
over the standard library's driver.

It lives outside the Catalog class on purpose. It is the longest part of `mosaicdb check`
on a large store (~1.3 s of one core at 1M photos), and it needs no table of ours, so the entry
point (`start_from_argv`) or the CLI (`start_for_store`) starts it in a thread before typer and
SQLAlchemy (~0.35 s to import) have loaded; it then runs beside the imports instead of after
them. Catalog.integrity_check picks up that result (`result`), or runs the check here when
none was started."""

from __future__ import annotations

import os
import sqlite3
import threading
from concurrent.futures import Future
from pathlib import Path

_started: dict[tuple[str, bool], Future] = {}
_running: set[sqlite3.Connection] = set()
_lock = threading.Lock()


def run(path: str | os.PathLike, deep: bool = False) -> list[str]:
    """[] when the file is sound, else SQLite's findings. quick_check unless `deep` (4-5x
    slower: also compares every index with its table)."""
    # mode=rw never creates a missing file; timeout is the engine's busy_timeout
    con = sqlite3.connect(_uri(path) + "?mode=rw", uri=True, timeout=30)
    try:
        return check(con, deep)
    finally:
        con.close()


def check(con: sqlite3.Connection, deep: bool = False) -> list[str]:
    """`run` on an open connection (a catalog named by a URI, or held in memory)."""
    pragma = "integrity_check" if deep else "quick_check"
    with _lock:
        _running.add(con)
    try:
        rows = [r[0] for r in con.execute(f"PRAGMA {pragma}")]
    except sqlite3.DatabaseError as e:
        # damage the check cannot get past (e.g. a table's first page) is its finding too
        if e.sqlite_errorname not in ("SQLITE_CORRUPT", "SQLITE_NOTADB"):
            raise
        return [str(e)]
    finally:
        with _lock:
            _running.discard(con)
    if rows == ["ok"]:
        return []
    # one finding per line, without the "*** in database main ***" headings
    return [f for r in rows for f in r.splitlines() if f and not f.startswith("***")]


def start(path: str | os.PathLike, deep: bool = False) -> None:
    """Begin checking `path` in a background thread, for the next `result` of the same file."""
    fut: Future = Future()
    with _lock:
        if _started.setdefault((_uri(path), deep), fut) is not fut:
            return

    def work():
        try:
            fut.set_result(run(path, deep))
        except BaseException as e:  # handed to whoever asks for the result
            fut.set_exception(e)

    # a daemon: Ctrl-C, or an error before the result is wanted, need not wait for it
    threading.Thread(target=work, name="mosaicdb-pagecheck", daemon=True).start()


def start_for_store(home, db_url: str | None, deep: bool = False) -> None:
    """`start` for the store at `home` (None: MOSAICDB_HOME or the default): only when its
    catalog is the SQLite file in the store folder and that file exists."""
    from mosaicdb import config

    catalog = config.own_catalog(config.resolve_home(home), db_url)
    if catalog is not None and catalog.is_file():
        start(catalog, deep)


def start_from_argv(argv: list[str]) -> None:
    """The entry point calls this before the command line parser (typer, ~0.1 s) loads: when
    `argv` reads as `[--home H] [--db URL] check …`, that store's check begins now.

    A guess, and a safe one: the command then asks for the check of the file it resolved
    itself, which is this one only if it is the same file (and depth). Anything this plain
    reading does not know (another command, another option, --help) starts nothing."""
    home = db_url = None
    args = iter(argv)
    for arg in args:
        name, eq, value = arg.partition("=")
        if name in ("--home", "--db"):
            value = value if eq else next(args, None)
            if value is None:
                return
            if name == "--home":
                home = value
            else:
                db_url = value
        elif arg == "check":
            rest = list(args)
            if "--help" not in rest:
                try:
                    start_for_store(home, db_url, deep="--deep" in rest)
                except Exception:  # e.g. a --home that is a file: the command says so
                    pass
            return
        else:
            return


def forget_started() -> None:
    """Drop the started checks nobody asked for (the command failed first), so that no later
    `result` in this process takes one of them as its own."""
    with _lock:
        _started.clear()


def interrupt() -> None:
    """Stop every check running now (Ctrl-C): each ends with sqlite3's 'interrupted'."""
    with _lock:  # held, so no connection is closed meanwhile
        for con in _running:
            con.interrupt()


def result(path: str | os.PathLike, deep: bool = False) -> list[str]:
    """The started check's findings (each started check is used once), or a new check's."""
    with _lock:
        fut = _started.pop((_uri(path), deep), None)
    return run(path, deep) if fut is None else fut.result()


def _uri(path: str | os.PathLike) -> str:
    # one spelling of the file however it was named, and safe with '?' or '%' in the name
    return Path(path).resolve().as_uri()
