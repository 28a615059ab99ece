"""`view`: a Deep Zoom render in the browser."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from mosaicdb.cli.app import JsonOpt, app, command, open_store, print_json


@app.command()
@command
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
    with open_store() as lib:
        v = lib.view(render)
    if export:
        r = v.export(export)
        if json_out:
            print_json(r)
            return
        for n in r["notes"]:
            typer.echo(f"note: {n}", err=True)
        typer.echo(f"render {r['render_id']}: {r['cells']:,} cells → {r['page']}")
        return
    server = v.server(host, port)
    try:
        if json_out:
            print_json({"render_id": v.render_id, "url": server.url, "notes": v.notes})
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
