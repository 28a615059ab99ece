"""The `mosaicdb` command's entry point (the console script and `python -m mosaicdb`).

For `mosaicdb check` on a large store, SQLite's page check of the catalog file is the longest
part; it begins here, before the command line parser loads (pagecheck.start_from_argv)."""

import sys


def main() -> None:
    try:
        from mosaicdb.store import pagecheck

        pagecheck.start_from_argv(sys.argv[1:])
        from mosaicdb.cli import main as run
    except KeyboardInterrupt:  # while the modules load: as a command's own Ctrl-C ends
        print("Error: interrupted", file=sys.stderr)
        sys.exit(130)
    run()


if __name__ == "__main__":
    main()
