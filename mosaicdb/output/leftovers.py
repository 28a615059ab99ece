"""Temporary files of writers that were killed: every output (a render, a sheet, the vector
file) is written as `.NAME.PID.tmp.EXT` (Deep Zoom: `.NAME.PID.tmp.dzi` and
`.NAME.PID.tmp_files/`, the old tiles kept aside as `.NAME.PID.old_files/`) and renamed; a
kill -9 leaves them, gigabytes at gigapixel sizes. They are known by that name and a PID no
process has: the next render into the folder removes them, and `check` reports them."""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

from mosaicdb.records import pid_running

_NAME = re.compile(
    r"^\.(?P<name>.+)\.(?P<pid>\d+)\.(?:tmp(?:\.[A-Za-z0-9]+)?|tmp_files|old_files)$"
)


def leftovers(folder: str | os.PathLike) -> list[Path]:
    """The temporary outputs in `folder` whose writer is gone, by name."""
    try:
        names = os.listdir(folder)
    except OSError:
        return []
    out = []
    for name in sorted(names):
        m = _NAME.match(name)
        if m and int(m["pid"]) != os.getpid() and not pid_running(int(m["pid"])):
            out.append(Path(folder) / name)
    return out


def size(path: Path) -> int:
    if path.is_dir() and not path.is_symlink():
        return sum(f.stat().st_size for f in path.rglob("*") if f.is_file())
    try:
        return path.stat().st_size
    except OSError:
        return 0


def remove(paths: list[Path]) -> int:
    """Remove them; returns the bytes freed."""
    freed = 0
    for p in paths:
        n = size(p)
        try:
            if p.is_dir() and not p.is_symlink():
                shutil.rmtree(p)
            else:
                p.unlink()
        except OSError:  # gone meanwhile, or not ours to remove (permissions): `check` names it
            continue
        freed += n
    return freed


def prune(folder: str | os.PathLike) -> str | None:
    """Remove the leftovers of `folder`; a line saying so, or None when there were none."""
    stale = leftovers(folder)
    if not stale:
        return None
    freed = remove(stale)
    return (
        f"removed {len(stale)} temporary output{'s' * (len(stale) != 1)} left in {folder} by "
        f"killed commands ({freed / 2**20:,.1f} MB)"
    )
