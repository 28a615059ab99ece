"""The `mosaicdb` command: parse options, call the Python API, print (human or --json).

Kept thin and light: nothing heavy (numpy, pyvips, faiss, alembic) is imported at module level,
so `mosaicdb --help` is instant. Every MosaicdbError becomes one line on stderr and exit 1
(app.command). One module per command group: index.py, render.py, query.py, store.py, view.py;
a new command is a function in one of them (or a new module imported below).
"""

from __future__ import annotations

import os
import sys

# the command modules register their commands on `app`, in this order (that of --help)
# isort: off
from mosaicdb.cli import index, render, query, store, view  # noqa: F401

# isort: on
from mosaicdb.cli.app import app, state

__all__ = ["app", "main"]


def main() -> None:
    """The console script. Once the command is done, its output flushed and the atexit
    handlers run, the process ends with os._exit: tearing down the interpreter's modules
    (SQLAlchemy, FAISS, numpy) cost 0.25–0.3 s of every command's wall time, measured."""
    import atexit

    state["process_ends"] = True
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

        state.pop("process_ends", None)
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
