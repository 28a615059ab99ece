"""The walk and the diff: every image file under the folders (hidden ones only if asked), set
against the catalog by size and mtime: what is new or changed (to read), unchanged, or gone."""

from __future__ import annotations

import fnmatch
import os
import stat
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from mosaicdb.index.decode import EXTENSIONS
from mosaicdb.index.identity import match_moved
from mosaicdb.records import Move, display_path

if TYPE_CHECKING:
    from mosaicdb.store.catalog import Catalog


@dataclass(frozen=True)
class ScanOptions:
    thumb_size: int = 256
    grid: int = 3
    rerank_grid: int | None = None  # also the vectors render re-ranks on (None: the default)
    max_pixels: int = 250_000_000
    include_hidden: bool = False
    retry_errors: bool = False
    workers: int = 0  # 0: in this process (debugging, tests); N: a pool of N processes
    batch_size: int = 200  # results per commit: a crash loses at most this many
    lease_seconds: float = 120.0  # shared catalogs: claimed files return to the queue after


# Folders and files that photo apps and NAS boxes fill with their own thumbnails: never photos
# of the library, even under --include-hidden.
SKIP_FOLDERS = frozenset([b"@eaDir", b".@__thumb", b".thumbnails"])
SKIP_PREFIXES = (b"._",)  # AppleDouble files beside every photo on a non-Mac disk


@dataclass
class WalkStats:
    warnings: list[str] = field(default_factory=list)
    # files left out because no decoder reads them: extension (lower case, "" for none) → count
    skipped: Counter = field(default_factory=Counter)
    excluded: int = 0  # image files left out by a folder's --exclude globs


def excluder(root: bytes, globs: Sequence[str]) -> Callable[[bytes], bool] | None:
    """Whether a path under `root` is left out by --exclude `globs`: shell globs matched
    (case-sensitive, `*` crossing `/`) against the path relative to the folder; a folder is
    tested with a trailing `/`, so `Screenshots/*` and `Screenshots` both leave it out."""
    if not globs:
        return None
    cut = len(root.rstrip(b"/")) + 1

    def excluded(path: bytes) -> bool:
        rel = os.fsdecode(path[cut:])
        return any(
            fnmatch.fnmatchcase(rel, g) or fnmatch.fnmatchcase(rel.rstrip("/"), g) for g in globs
        )

    return excluded


def walk(
    top: bytes,
    include_hidden: bool,
    stats: WalkStats,
    exclude: Callable[[bytes], bool] | None = None,
) -> Iterator[tuple[bytes, int, int]]:
    """Yield (path, size, mtime_ns) of image files under `top`, recursively, but not those
    `exclude` leaves out (see excluder).

    Follows symlinks to folders but visits each real folder once, so symlink loops end.
    """
    visited: set[tuple[int, int]] = set()
    stack = [top]
    while stack:
        d = stack.pop()
        try:
            dst = os.stat(d)
        except OSError as e:
            stats.warnings.append(f"{os.fsdecode(d)}: {e.strerror}")
            continue
        key = (dst.st_dev, dst.st_ino)
        if key in visited:
            continue
        visited.add(key)
        try:
            with os.scandir(d) as it:
                entries = list(it)
        except OSError as e:
            stats.warnings.append(f"{os.fsdecode(d)}: {e.strerror}")
            continue
        subdirs = []
        for e in entries:
            name = e.name
            if not include_hidden and name.startswith(b"."):
                continue
            try:
                if e.is_dir():
                    if name not in SKIP_FOLDERS and not (exclude and exclude(e.path + b"/")):
                        subdirs.append(e.path)
                    continue
                ext = os.path.splitext(name)[1].lower()
                if ext not in EXTENSIONS or name.startswith(SKIP_PREFIXES):
                    if not name.startswith(SKIP_PREFIXES) and e.is_file():
                        stats.skipped[ext] += 1
                    continue
                if exclude and exclude(e.path):
                    stats.excluded += 1
                    continue
                st = e.stat()
            except OSError:
                continue  # vanished or dangling symlink: not a photo we can index
            if stat.S_ISREG(st.st_mode):
                yield e.path, st.st_size, st.st_mtime_ns
        stack.extend(sorted(subdirs, reverse=True))


@dataclass
class Scope:
    root_id: int
    root_path: bytes
    walk_path: bytes


@dataclass
class ScanPlan:
    todo: list[bytes]
    existing: dict[bytes, int]  # path → photo id, for changed files
    root_of: dict[bytes, int]
    gone: list[int]
    scanned: int
    unchanged: int
    # path → (size, mtime_ns, photos.indexed_at or None) of each file in `todo`: what a shared
    # catalog's work queue records (scan_queue)
    seen: dict[bytes, tuple[int, int, float | None]] = field(default_factory=dict)
    moved: list[Move] = field(default_factory=list)  # renamed or moved files: no read


def plan_scan(
    catalog: Catalog,
    scopes: list[Scope],
    opts: ScanOptions,
    stats: WalkStats,
    on_file: Callable[[], None] | None = None,
    lost_roots: Sequence[int] = (),
) -> ScanPlan:
    """What to read, what is unchanged, what moved and what is gone. `lost_roots`: folders
    whose own path is gone (renamed or unmounted): their photos may be among the moved, and
    are otherwise kept."""
    todo: list[bytes] = []
    existing: dict[bytes, int] = {}
    root_of: dict[bytes, int] = {}
    gone: list[int] = []
    seen: dict[bytes, tuple[int, int, float | None]] = {}
    scanned = unchanged = 0
    options = catalog.root_options()
    for sc in scopes:
        under = None if sc.walk_path == sc.root_path else sc.walk_path
        known = catalog.photo_states(sc.root_id, under)
        hidden, globs = options.get(sc.root_id, (False, []))
        files = walk(
            sc.walk_path, opts.include_hidden or hidden, stats, excluder(sc.root_path, globs)
        )
        for path, size, mtime in files:
            if path in root_of:
                continue
            scanned += 1
            root_of[path] = sc.root_id
            if on_file:
                on_file()
            row = known.pop(path, None)
            if row is None:
                todo.append(path)
                seen[path] = (size, mtime, None)
            elif (
                row.size == size
                and row.mtime_ns == mtime
                and not (opts.retry_errors and row.status == "error")
            ):
                unchanged += 1
            else:
                todo.append(path)
                existing[path] = row.id
                seen[path] = (size, mtime, row.indexed_at)
        if not os.path.isdir(sc.walk_path):
            # the folder went away while it was walked (renamed, unmounted): the files the walk
            # could not reach are not gone, and keep their rows, as under a folder missing
            # before the walk (so a rename is matched when the folder is indexed again)
            stats.warnings.append(
                f"{display_path(sc.walk_path)}: folder moved or removed while it was scanned; "
                "its photos are kept (index it where it is now)"
            )
            continue
        gone.extend(r.id for r in known.values())
    moved: list[Move] = []
    if (gone or lost_roots) and len(todo) > len(existing):
        # a file with no row where a row lost its file: the same photo renamed or moved?
        new = [(p, root_of[p], seen[p][0], seen[p][1]) for p in todo if p not in existing]
        moved = match_moved(catalog.fingerprints_of(gone, lost_roots), new)
        if moved:
            taken = {m.path for m in moved}
            ids = {m.photo_id for m in moved}
            todo = [p for p in todo if p not in taken]
            gone = [i for i in gone if i not in ids]
            for p in taken:
                del seen[p]
    return ScanPlan(todo, existing, root_of, gone, scanned, unchanged, seen, moved)
