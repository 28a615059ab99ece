"""The index stage: register folders, walk them against the catalog, read what is new or
changed (a local process pool, or Dask: shards.py), write the results in batches, drop what is
gone, and bring the vector cache in line. The walk and diff are in walk.py, the worker pool
and the batch writer in batches.py, the decoders in decode/."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from mosaicdb.errors import MosaicdbError, OptionError
from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


@dataclass
class IndexSummary:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    moved: int = 0  # renamed or moved files that kept their photo (nothing read)
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    seconds: float = 0.0
    roots: list[str] = field(default_factory=list)
    vectors: int = 0
    vector_index: str = ""
    warnings: list[str] = field(default_factory=list)
    # files no decoder reads, by extension ("" for none), most first
    skipped: dict[str, int] = field(default_factory=dict)
    # photos of these folders that could not be read, this run's and earlier ones'
    unreadable: int = 0
    excluded: int = 0  # image files the folders' --exclude globs left out

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        return d


def _dropped_warning(n: int, folder: bytes | None = None, read: bool = True) -> str:
    """Files lost to a `forget` of their folder while `index` ran: read and then not saved,
    or (`read=False`) not read at all, the folder gone before they were queued."""
    where = f"{_show(folder)}: " if folder else ""
    if read:
        return (
            f"{where}{n} files read were not saved: their folder was removed from the store "
            "(mosaicdb forget) while they were being read"
        )
    return (
        f"{where}{n} files were not read: their folder was removed from the store "
        "(mosaicdb forget) while it was being scanned"
    )


class Interrupted(MosaicdbError):
    """Ctrl-C during index: what was committed stays; the next run continues."""


def index(
    ctx: Context,
    paths: Sequence[str | os.PathLike] = (),
    *,
    workers: int | None = None,
    thumb_size: int | None = None,
    max_pixels: int = 250_000_000,
    include_hidden: bool | None = None,
    exclude: Sequence[str] | None = None,
    retry_errors: bool = False,
    batch_size: int = 200,
    lease_seconds: float = 120.0,
    executor: str = "local",
    scheduler: str | None = None,
    shard_size: int = 10_000,
    resource: str | None = None,
) -> IndexSummary:
    """Register `paths` as roots (none: all roots) and bring the catalog in line with disk.

    `include_hidden` and `exclude` (shell globs relative to the folder) are remembered by the
    folders indexed, for the next runs; None keeps what they have, `exclude=[]` clears it.
    Photos already indexed that an exclude now leaves out are dropped.

    On a shared (PostgreSQL) catalog the files to read go through the catalog's work queue,
    so several indexers (processes or machines) can run at once and each file is read once;
    a file claimed by an indexer that dies is taken over after `lease_seconds`.

    `executor="dask"` reads the files on a Dask cluster instead of the local pool (see
    shards.py): the one at `scheduler`, or a LocalCluster of `workers` processes; shards
    of `shard_size` files, each task needing Dask worker resource `resource` if given."""
    if workers is None:
        workers = os.cpu_count() or 1
    if workers < 0:
        raise OptionError("--workers", f"must be 0 or more, got {workers}")
    if thumb_size is not None and not 16 <= thumb_size <= 4096:
        raise OptionError("--thumb-size", f"must be between 16 and 4096, got {thumb_size}")
    if max_pixels < 1:
        raise OptionError("--max-pixels", f"must be positive, got {max_pixels}")
    if batch_size < 1:
        raise OptionError("--batch-size", f"must be positive, got {batch_size}")
    if executor not in ("local", "dask"):
        raise OptionError("--executor", f"must be local or dask, got {executor!r}")
    if executor != "dask" and (scheduler or resource):
        raise OptionError("--scheduler" if scheduler else "--resource", "needs --executor dask")
    if exclude is not None and any(not g or not g.strip() for g in exclude):
        raise OptionError("--exclude", "is empty (leave it out, or --no-exclude to forget them)")
    if shard_size < 1:
        raise OptionError("--shard-size", f"must be positive, got {shard_size}")
    if scheduler and not ctx.catalog.shared:
        raise OptionError(
            "--scheduler",
            "workers on other machines cannot write a SQLite file: use a shared catalog "
            "(--db postgresql+psycopg://…), or leave --scheduler out for a local cluster",
        )
    with _one_indexer(ctx):
        from mosaicdb.index.batches import start_pool
        from mosaicdb.index.dupes import regroup
        from mosaicdb.index.walk import ScanOptions, WalkStats, plan_scan

        t0 = time.monotonic()
        summary = IndexSummary()
        stats = WalkStats()
        thumb_size = _thumb_size(ctx, thumb_size, stats)
        before = ctx.catalog.roots()
        scopes = _skip_empty(ctx, _scopes(ctx, paths, stats), stats)
        if include_hidden is not None or exclude is not None:
            for rid in dict.fromkeys(s.root_id for s in scopes):
                ctx.catalog.set_root_options(
                    rid, include_hidden, None if exclude is None else list(exclude)
                )
        # a folder just registered while a registered one is gone from disk: the same folder
        # renamed or moved? Its photos may be matched (and are kept when they are not).
        lost = []
        if len(ctx.catalog.roots()) > len(before):
            lost = [(rid, rp) for rid, rp in before if not os.path.isdir(rp)]
        opts = ScanOptions(
            thumb_size=thumb_size,
            grid=ctx.spec.grid,
            max_pixels=max_pixels,
            include_hidden=bool(include_hidden),
            retry_errors=retry_errors,
            workers=workers,
            batch_size=batch_size,
            lease_seconds=lease_seconds,
        )
        pool = start_pool(workers) if executor == "local" else None
        started = None
        if executor == "dask":  # the cluster starts (or is joined) while the folders are walked
            from mosaicdb.index.shards import Starting

            started = Starting(scheduler, workers)
        try:
            with ctx.progress.task("Scanning folders", total=None) as t:
                plan = plan_scan(
                    ctx.catalog,
                    scopes,
                    opts,
                    stats,
                    on_file=t.advance,
                    lost_roots=[rid for rid, _ in lost],
                )
        except BaseException:
            if pool:
                pool.shutdown(cancel_futures=True)
            if started:
                started.close()
            raise
        if not plan.todo and pool:
            pool.shutdown(cancel_futures=True)
            pool = None
        summary.scanned, summary.unchanged = plan.scanned, plan.unchanged
        summary.moved = ctx.catalog.move_photos(plan.moved)
        left = {rid: n for rid, _, n in ctx.catalog.root_counts()} if plan.moved else {}
        for rid, rp in lost:
            n = sum(m.old_path.startswith(rp.rstrip(b"/") + b"/") for m in plan.moved)
            if n and not left.get(rid):
                ctx.catalog.remove_root(rid)
                stats.warnings.append(
                    f"{_show(rp)}: folder not found; its {n:,} photo{'s' * (n != 1)} were found in "
                    f"{', '.join(_show(s.root_path) for s in scopes)} and moved there (same ids), "
                    "and it is no longer registered"
                )
        summary.removed = ctx.catalog.delete_photos(plan.gone) if plan.gone else 0

        if executor == "dask":
            _index_dask(ctx, plan, opts, started, shard_size, resource, summary)
        else:
            _index_local(ctx, plan, opts, scopes, pool, batch_size, summary)
        regroup(ctx.catalog)
        vs = ctx.vectors.sync()
        ctx.catalog.set_meta({"last_index_at": str(time.time())})
        summary.vectors, summary.vector_index = vs["count"], vs["action"]
        summary.roots = [_show(s.root_path) for s in scopes]
        summary.warnings[:0] = stats.warnings  # the walk's first, then the writing's
        summary.skipped = {
            os.fsdecode(ext): n
            for ext, n in sorted(stats.skipped.items(), key=lambda x: (-x[1], x[0]))
        }
        summary.excluded = stats.excluded
        summary.unreadable = sum(ctx.catalog.error_count(s.root_id, s.walk_path) for s in scopes)
        summary.seconds = time.monotonic() - t0
        return summary


@contextlib.contextmanager
def _one_indexer(ctx: Context):
    """Hold the store's index lock (SQLite: one writer; a second indexer would fail half-way
    on a UNIQUE constraint). flock, so a killed holder frees it; renders and queries do not
    take it. A shared catalog (PostgreSQL) has its own work queue for several indexers."""
    if ctx.catalog.shared:
        yield
        return
    import fcntl

    with open(ctx.home / "index.lock", "a+") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            f.seek(0)
            who = f.read().strip()
            raise MosaicdbError(
                f"another `mosaicdb index` ({'pid ' + who if who.isdigit() else 'a process'})"
                " is writing this store; wait for it to finish (renders and queries work "
                "meanwhile)"
            ) from None
        f.seek(0)
        f.truncate()
        f.write(str(os.getpid()))
        f.flush()
        try:
            yield
        finally:
            f.seek(0)
            f.truncate()  # unlocked when the file closes


def _index_dask(ctx: Context, plan, opts, started, shard_size, resource, summary):
    from mosaicdb.index import shards

    url = ctx.catalog.engine.url.render_as_string(hide_password=False)
    crashed: list[bytes] = []
    with ctx.progress.task("Indexing photos (dask)", total=len(plan.todo)) as t:
        tot = shards.run(
            url,
            plan,
            ctx.spec.key,
            opts,
            started=started,
            shard_size=shard_size,
            resource=resource,
            on_shard=lambda r: t.advance(r["files"]),
            on_crash=crashed.append,
        )
    summary.added, summary.updated, summary.failed = tot["added"], tot["updated"], tot["failed"]
    dropped = tot["dropped"]
    # files whose own task killed its worker every time: error rows, unless the file was
    # written after all (its worker died after the commit, before it could report)
    states = ctx.catalog.photo_states_of(crashed)
    lost = []
    for p in dict.fromkeys(crashed):
        st, (size, mtime, seen) = states.get(p), plan.seen[p]
        if st is not None:
            if (st.size, st.mtime_ns) == (size, mtime) and (st.indexed_at or 0.0) > (
                seen if seen is not None else -1.0
            ):  # written: count it like its task would have
                if seen is None:
                    summary.added += 1
                else:
                    summary.updated += 1
                summary.failed += st.status != "ok"
                continue
            plan.existing[p] = st.id
        lost.append(p)
    crashed = lost
    if crashed:
        from mosaicdb.index.batches import BatchWriter
        from mosaicdb.records import PhotoResult

        writer = BatchWriter(ctx.catalog, plan, ctx.spec.key, len(crashed))
        msg = "the image decoder crashed on this file"
        writer([PhotoResult(p, -1, -1, "error", error=msg) for p in crashed])
        writer.flush()
        summary.added += writer.added
        summary.updated += writer.updated
        summary.failed += writer.failed
        dropped += sum(writer.dropped.values())
    if dropped:
        summary.warnings.append(_dropped_warning(dropped))


def _index_local(ctx: Context, plan, opts, scopes, pool, batch_size, summary):
    from mosaicdb.index.batches import BatchWriter, ClaimFeed, run_batches

    feed = None
    if ctx.catalog.shared and plan.todo:
        feed = ClaimFeed(ctx.catalog, plan, {s.root_id for s in scopes}, opts)
        feed.enqueue()
    with ctx.progress.task("Indexing photos", total=len(plan.todo)) as t:
        writer = BatchWriter(ctx.catalog, plan, ctx.spec.key, batch_size)
        if feed is not None:
            feed.on_idle = writer.flush

        def on_results(results):
            writer(results)
            t.advance(len(results))  # per decoded chunk, not per commit: a smooth bar

        try:
            run_batches(plan.todo, opts, on_results, warm=pool, feed=feed)
            writer.flush()
        except KeyboardInterrupt:
            try:
                writer.flush()
            finally:
                raise Interrupted(
                    f"interrupted: {writer.added + writer.updated} of {len(plan.todo)} files "
                    "were saved; run `mosaicdb index` again to continue"
                ) from None
        finally:
            if feed is not None:
                feed.release()  # claimed and not written: back to the queue for others
    summary.added, summary.updated, summary.failed = writer.added, writer.updated, writer.failed
    if writer.vanished:
        n = writer.vanished
        summary.warnings.append(
            f"{n:,} {'file was' if n == 1 else 'files were'} gone before being read (moved or "
            "deleted while indexing) and not saved; index their folder where it is now"
        )
    folders = {s.root_id: s.root_path for s in scopes}
    for rid, n in writer.dropped.items():
        summary.warnings.append(_dropped_warning(n, folders.get(rid)))
    for rid, n in (feed.gone if feed is not None else {}).items():
        summary.warnings.append(_dropped_warning(n, folders.get(rid), read=False))


DEFAULT_THUMB_SIZE = 256


def _thumb_size(ctx: Context, asked: int | None, stats) -> int:
    """The thumbnail size of this run: the one asked for (remembered for later runs), else
    the store's. Thumbnails already stored keep their size: asking for another one on a store
    with photos says so."""
    stored = ctx.catalog.get_meta("thumb_size")
    old = int(stored) if stored else DEFAULT_THUMB_SIZE
    if asked is None:
        return old
    if asked != old:
        n = sum(c for _, _, c in ctx.catalog.root_counts())
        if n:
            kept = (
                f"the photo already indexed keeps its {old} px thumbnail"
                if n == 1
                else f"the {n:,} photos already indexed keep their {old} px thumbnails"
            )
            stats.warnings.append(
                f"--thumb-size {asked}: {kept}; photos read from now on "
                f"get {asked} px (a new store, or `mosaicdb forget` and index again, makes "
                "them all the same)"
            )
    if asked != old or not stored:
        ctx.catalog.set_meta({"thumb_size": str(asked)})
    return asked


def check_paths(paths) -> list[bytes]:
    """The folders to index, resolved, or one error naming the first that is not a folder:
    checked before anything is registered (or a store made)."""
    resolved = []
    for p in paths:
        raw = os.fsencode(os.path.expanduser(os.fsdecode(os.fsencode(p))))
        if not os.path.isdir(raw):
            what = "does not exist" if not os.path.exists(raw) else "is not a folder"
            raise MosaicdbError(f"{_show(raw)} {what}")
        resolved.append(os.path.realpath(raw))
    return resolved


def _scopes(ctx: Context, paths, stats) -> list:
    from mosaicdb.index.walk import Scope

    roots = ctx.catalog.roots()
    if not paths:
        if not roots:
            raise MosaicdbError("no folders are registered yet: run `mosaicdb index PATH`")
        scopes = []
        for rid, rpath in roots:
            if not os.path.isdir(rpath):  # an unmounted disk (an empty folder: _skip_empty)
                stats.warnings.append(
                    f"{_show(rpath)}: folder not found, skipped (kept its photos)"
                )
                continue
            scopes.append(Scope(rid, rpath, rpath))
        return scopes
    resolved = check_paths(paths)
    scopes = []
    for rp in resolved:
        cover = next(
            ((rid, r) for rid, r in roots if rp == r or rp.startswith(r.rstrip(b"/") + b"/")),
            None,
        )
        if cover:
            scopes.append(Scope(cover[0], cover[1], rp))
        else:
            rid = ctx.catalog.add_root(rp)
            roots = ctx.catalog.roots()
            scopes = [s for s in scopes if not s.root_path.startswith(rp.rstrip(b"/") + b"/")]
            scopes.append(Scope(rid, rp, rp))
    return scopes


def _skip_empty(ctx: Context, scopes, stats) -> list:
    kept = []
    for sc in scopes:
        n = ctx.indexed_under_empty_folder(sc.root_id, sc.walk_path)
        if n:
            stats.warnings.append(
                f"{_show(sc.walk_path)}: folder is empty but {n:,} photos were indexed from "
                "it (a disk not mounted?), skipped (kept its photos; `mosaicdb forget` "
                "drops them)"
            )
        else:
            kept.append(sc)
    return kept
