"""`check` and `forget`: the store's health, and removing a folder from it."""

from __future__ import annotations

import os
import sys
from typing import Annotated

import typer

from mosaicdb.cli.app import (
    JsonOpt,
    app,
    brief,
    command,
    on_terminal,
    open_store,
    print_json,
    safe,
    state,
)
from mosaicdb.errors import OptionError


@app.command()
@command
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

    if state.get("process_ends") and "numpy" not in sys.modules:
        # numpy's OpenBLAS starts a thread per core when it loads, ~0.12 s of CPU (measured)
        # that check would take from its scans; nothing in check multiplies matrices. Only
        # for a process that ends with the command: the setting outlives it in the environment
        os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    # SQLite's check of the catalog file begins before the store's modules load (see
    # pagecheck), if the entry point has not begun it already
    pagecheck.start_for_store(state["home"], state.get("db"), deep)
    try:
        with brief(), open_store() as lib:
            r = lib.check(repair=repair, files=not no_files, deep=deep)
    finally:
        pagecheck.forget_started()
    if json_out:
        print_json(r)
    else:
        for p in r["problems"]:
            typer.echo(f"problem: {safe(p)}")
        for x in r["repaired"]:
            typer.echo(f"repaired: {safe(x)}")
        for p in r.get("remaining", []):
            typer.echo(f"still wrong: {safe(p)}")
        for root in r["files"]["roots_not_found"]:
            typer.echo(f"not compared: folder {root} is missing or empty (photos kept)", err=True)
        typer.echo("store is consistent" if r["ok"] else "problems remain", err=True)
    if not r["ok"]:
        raise typer.Exit(1)


@app.command()
@command
def forget(
    root: Annotated[str, typer.Argument(help="A registered folder (see `mosaicdb roots`).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask.")] = False,
    json_out: JsonOpt = False,
):
    """Remove a registered folder and its photos from the store (files on disk are untouched)."""
    with open_store() as lib:
        if not yes:
            if not on_terminal():
                raise OptionError("--yes", "is needed to forget a folder without a terminal")
            path, n = lib.root_info(root)
            typer.confirm(
                f"Remove {path} and its {n:,} photos from the store?", abort=True, err=True
            )
        r = lib.forget(root)
    if json_out:
        print_json(r)
    else:
        typer.echo(
            f"forgot {safe(r['root'])}: {r['photos_removed']:,} photos removed from the store"
        )
