"""Reading the files: the worker processes (forkserver; one libvips thread each), the batches
they decode (decoder, thumbnail, feature vectors per file), the feeds that hand out work (a
list, or claims on a shared catalog's queue), crash isolation (a file that kills its worker
becomes an error row), and the writer that commits results in batches.

`process_batch` is the per-file work: a pure function from a batch of paths to results, with no
database access, so any executor (the local pool, Dask workers: shards.py) can run it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from typing import TYPE_CHECKING

from mosaicdb.index import decode
from mosaicdb.index.walk import ScanOptions, ScanPlan
from mosaicdb.records import PhotoResult, pid_running

if TYPE_CHECKING:
    from mosaicdb.store.catalog import Catalog


def _worker_init(indexer: int | None = None):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent handles Ctrl-C and stops us
    if indexer is not None:
        watch_parent(indexer)
    from mosaicdb import imaging

    imaging.init_worker()


def watch_parent(pid: int) -> None:
    """End this worker the moment the indexer `pid` is gone (kill -9, a crash). Its parent is
    the forkserver, not the indexer, so the kernel's parent-death signal cannot tell; and a
    worker waiting for work never sees its queue close, because it holds the queue's other
    end itself (measured: workers, forkserver and resource tracker all outlived a killed
    index). A pidfd of the indexer becomes readable when it exits; a thread waits on it."""
    import select

    try:
        fd = os.pidfd_open(pid)
    except (AttributeError, OSError):  # no pidfd (old kernel): poll instead
        fd = None
        if not pid_running(pid):
            os._exit(1)

    def until_gone():
        if fd is not None:
            select.select([fd], [], [])
        else:
            while pid_running(pid):
                time.sleep(0.5)
        os._exit(1)  # nothing to save: the indexer writes, and it is gone

    threading.Thread(target=until_gone, daemon=True, name="watch-indexer").start()


def _crash_now() -> bool:
    """Tests only: with MOSAICDB_TEST_CRASH_ONCE=FILE the crash happens once (while FILE
    exists: the crash removes it), to test that a killed worker's work is redone."""
    once = os.environ.get("MOSAICDB_TEST_CRASH_ONCE")
    if not once:
        return True
    try:
        os.remove(once)
        return True
    except OSError:
        return False


def process_batch(paths: list[bytes], opts: ScanOptions) -> list[PhotoResult]:
    """Decode each photo once: stored thumbnail + Lab grid features, or the reason it failed."""
    from mosaicdb import imaging
    from mosaicdb.features import RERANK_GRID, FeatureSpec, perceptual_hash
    from mosaicdb.index import identity

    grid = RERANK_GRID if opts.rerank_grid is None else opts.rerank_grid
    rerank_spec = FeatureSpec(grid) if grid else None
    out = []
    crash_on = os.environ.get("MOSAICDB_TEST_CRASH_ON", "").encode()  # tests only
    slow = float(os.environ.get("MOSAICDB_TEST_SLOW", "0") or 0)  # tests only: s a file
    for p in paths:
        if crash_on and p.endswith(crash_on) and _crash_now():
            os._exit(70)  # simulate a decoder crash taking the worker process down
        try:
            st = os.stat(p)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError as e:
            out.append(PhotoResult(p, -1, -1, "error", error=e.strerror or str(e)))
            continue
        if slow:  # a library of big photos, for the fault tests to kill it mid-run or to
            time.sleep(slow)  # change a file between its stat and its decoding
        if size == 0:
            out.append(PhotoResult(p, size, mtime, "error", error="empty file (0 bytes)"))
            continue
        try:
            thumb, w, h, fmt = decode.decode(p, opts.thumb_size, opts.max_pixels)
            fine = None
            if rerank_spec is not None and rerank_spec.grid > opts.grid:
                vec, fv = imaging.tile_vectors(thumb, (opts.grid, rerank_spec.grid))
                fine = (rerank_spec.key, fv.tobytes())
            else:
                vec = imaging.tile_vector(thumb, opts.grid)
            data = imaging.encode_thumb(thumb)
        except decode.PhotoReadError as e:
            out.append(PhotoResult(p, size, mtime, "error", error=str(e) or "unreadable"))
            continue
        except Exception as e:  # a decoder bug must cost one file, not the scan
            out.append(PhotoResult(p, size, mtime, "error", error=f"{type(e).__name__}: {e}"))
            continue
        k = opts.grid
        mean = vec.reshape(k * k, 3).mean(axis=0)
        out.append(
            PhotoResult(
                p,
                size,
                mtime,
                "ok",
                width=w,
                height=h,
                format=fmt,
                thumb=data,
                thumb_w=thumb.shape[1],
                thumb_h=thumb.shape[0],
                thumb_codec=imaging.THUMB_CODEC,
                vector=vec.tobytes(),
                mean=(float(mean[0]), float(mean[1]), float(mean[2])),
                fine=fine,
                fingerprint=identity.fingerprint(p, size),
                phash=perceptual_hash(thumb),
            )
        )
    return out


def _forkserver_context():
    import multiprocessing

    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(
        ["mosaicdb.index.batches", "mosaicdb.imaging", "mosaicdb.index.decode.vips"]
    )
    return ctx


def prestart_forkserver() -> None:
    """Start the forkserver (which imports numpy and libvips for the workers) in the
    background now, so it is ready by the time the folders are walked."""
    from multiprocessing import forkserver

    _forkserver_context()
    threading.Thread(target=forkserver.ensure_running, daemon=True).start()


def start_pool(workers: int):
    """Start worker processes now (they import libvips while the caller walks the folders);
    pass the result to run_batches."""
    if workers <= 0:
        return None
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=_forkserver_context(),
        initializer=_worker_init,
        initargs=(os.getpid(),),
    )
    # Starting the forkserver blocks while it imports numpy and libvips: do it beside the walk.
    threading.Thread(target=_warm, args=(pool, workers), daemon=True).start()
    return pool


def _warm(pool, workers: int) -> None:
    try:
        for _ in range(workers):
            pool.submit(os.getpid)
    except (RuntimeError, BrokenProcessPool):
        pass  # shut down already (nothing to read) or broken: run_batches deals with that


BATCH_FILES = 8  # files per task: small, so one slow file delays little


STALL_PROBE_SECONDS = 5.0  # nothing finished for this long: is the pool still alive?


def list_feed(todo: list[bytes]) -> Callable[[], list[bytes] | None]:
    """A feed over a fixed list: the next batch, or None when done."""
    it = iter([todo[i : i + BATCH_FILES] for i in range(0, len(todo), BATCH_FILES)])
    return lambda: next(it, None)


class ClaimFeed:
    """A feed for a shared (PostgreSQL) catalog: batches claimed from the work queue
    (Catalog.claim), so concurrent indexers each process a file once. Returns [] while other
    indexers still hold files of these roots (wait: they finish, or their lease runs out and
    the files come back), None when the queue holds nothing more for these roots."""

    def __init__(self, catalog: Catalog, plan: ScanPlan, root_ids, opts: ScanOptions):
        import socket
        import uuid

        self.catalog, self.plan, self.root_ids = catalog, plan, list(root_ids)
        self.lease = opts.lease_seconds
        self.n = BATCH_FILES * max(1, opts.workers) * 2
        self.owner = f"{socket.gethostname()[:40]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.buf: list[bytes] = []
        self.taken: set[bytes] = set()  # handed out in this run (never twice)
        self.on_idle: Callable[[], None] | None = None
        self.gone: dict[int, int] = {}  # folder removed before its files were queued → files

    def enqueue(self) -> None:
        p = self.plan
        gone = self.catalog.enqueue([(f, p.root_of[f], *p.seen[f]) for f in p.todo])
        for f in p.todo:
            if p.root_of[f] in gone:
                self.gone[p.root_of[f]] = self.gone.get(p.root_of[f], 0) + 1

    def __call__(self) -> list[bytes] | None:
        while not self.buf:
            got, held = self.catalog.claim(self.owner, self.root_ids, self.n, self.lease)
            if not got:
                if held and self.on_idle:
                    # write what we hold before waiting on others: they may be waiting on
                    # these very files (their walk queued them too)
                    self.on_idle()
                return [] if held else None
            for path, rid in got:
                self.plan.root_of.setdefault(path, rid)
            # a file of ours whose lease ran out before its result was written comes back:
            # it is still on its way, not to be read again
            self.buf = [path for path, _ in got if path not in self.taken]
            self.taken.update(self.buf)
        b, self.buf = self.buf[:BATCH_FILES], self.buf[BATCH_FILES:]
        return b

    def release(self) -> None:
        self.buf = []
        self.catalog.release(self.owner)


def run_batches(
    todo: list[bytes],
    opts: ScanOptions,
    on_results: Callable[[list[PhotoResult]], None],
    warm=None,
    feed: Callable[[], list[bytes] | None] | None = None,
) -> None:
    """Process `todo` in chunks (in process, or in a pool) and hand results to `on_results`
    in the calling process, which is the single writer. `feed` (instead of `todo`) gives
    batches one at a time: a batch, [] for "none yet, ask again soon", None for "done"."""
    feed = feed or list_feed(todo)
    if opts.workers <= 0:
        from mosaicdb import imaging

        imaging.init_worker(concurrency=0)
        while (b := feed()) is not None:
            if b:
                on_results(process_batch(b, opts))
            else:
                time.sleep(0.25)
        return
    # Never fork this process (it may hold libvips or SQLite state); a forkserver that has
    # imported the worker modules once forks clean workers quickly.
    ctx = _forkserver_context()

    def new_pool(n):
        return ProcessPoolExecutor(
            max_workers=n, mp_context=ctx, initializer=_worker_init, initargs=(os.getpid(),)
        )

    exhausted = False
    suspects: list[bytes] = []
    while not exhausted or suspects:
        pool, warm = (warm, None) if warm is not None else (new_pool(opts.workers), None)
        try:
            pending: dict = {}
            limit = opts.workers * 4  # bounded in flight: memory stays flat on any library size
            broken = False
            while (not exhausted or pending) and not broken:
                idle = False
                while not exhausted and len(pending) < limit:
                    b = feed()
                    if b is None:
                        exhausted = True
                    elif not b:
                        idle = True
                        break
                    else:
                        try:
                            pending[pool.submit(process_batch, b, opts)] = b
                        except BrokenProcessPool:  # a worker died since the last wait
                            suspects.extend(b)
                            broken = True
                            break
                if not pending:
                    if idle:
                        time.sleep(0.25)
                    continue
                wait_s = 0.25 if idle else STALL_PROBE_SECONDS
                done, _ = wait(pending, timeout=wait_s, return_when=FIRST_COMPLETED)
                if not done and not idle:
                    # CPython 3.11 can lose a future submitted just as the pool breaks (its
                    # teardown does not take the submit lock): waiting on it would never end,
                    # so ask the pool itself whether it still lives
                    try:
                        pool.submit(os.getpid)
                    except BrokenProcessPool:
                        broken = True
                    continue
                for f in done:
                    b = pending.pop(f)
                    try:
                        res = f.result()
                    except BrokenProcessPool:
                        # a decoder crashed a worker: its files are retried one by one below
                        suspects.extend(b)
                        broken = True
                        continue
                    on_results(res)
            for f, b in pending.items():  # the pool is gone: keep what finished, retry the rest
                if f.done() and f.exception() is None:
                    on_results(f.result())
                else:
                    suspects.extend(b)
        finally:
            pool.shutdown(wait=True, cancel_futures=True)
        if suspects:
            _isolate(suspects, opts, on_results, new_pool)
            suspects = []


def _isolate(paths: list[bytes], opts: ScanOptions, on_results, new_pool) -> None:
    """Run files one per task; a file that kills its worker becomes an error row."""
    pool = new_pool(1)
    try:
        for p in paths:
            try:
                res = pool.submit(process_batch, [p], opts).result()
            except BrokenProcessPool:
                pool.shutdown(wait=True)
                pool = new_pool(1)
                res = [
                    PhotoResult(p, -1, -1, "error", error="the image decoder crashed on this file")
                ]
            on_results(res)
    finally:
        pool.shutdown(wait=True)


def _vanished(r: PhotoResult) -> bool:
    """A file that failed because it is gone (moved or deleted since the walk, its folder
    renamed) is no photo that failed: it gets no error row under a path that no longer
    exists, and the next index finds it where it went (a row it had stays, to be matched).
    So does one gone before its fingerprint was taken: its row could never be matched."""
    return (r.status != "ok" or r.fingerprint is None) and not os.path.lexists(r.path)


class BatchWriter:
    """Collects results and commits them every `batch_size` results or 2 seconds."""

    def __init__(
        self,
        catalog: Catalog,
        plan: ScanPlan,
        spec: str,
        batch_size: int,
    ):
        self.catalog, self.plan, self.spec = catalog, plan, spec
        self.batch_size = max(1, batch_size)
        self.buf: list[PhotoResult] = []
        self.last = time.monotonic()
        self.added = self.updated = self.failed = 0
        # folder id → results not written: the folder was removed from the store meanwhile
        self.dropped: dict[int, int] = {}
        self.vanished = 0  # files gone before they could be read: not written

    def __call__(self, results: list[PhotoResult]) -> None:
        self.buf.extend(results)
        if len(self.buf) >= self.batch_size or time.monotonic() - self.last > 2.0:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        buf, self.buf = self.buf, []
        kept = [r for r in buf if not _vanished(r)]
        self.vanished += len(buf) - len(kept)
        buf = kept
        root_of = self.plan.root_of
        # a folder already found removed: its later results are not tried again
        todo = [r for r in buf if root_of[r.path] not in self.dropped]
        gone = set(self.dropped)
        gone |= self.catalog.write_results(todo, root_of, self.plan.existing, self.spec)
        self.last = time.monotonic()
        for r in buf:
            if root_of[r.path] in gone:
                self.dropped[root_of[r.path]] = self.dropped.get(root_of[r.path], 0) + 1
                continue
            if r.path in self.plan.existing:
                self.updated += 1
            else:
                self.added += 1
            if r.status != "ok":
                self.failed += 1
