"""`index --executor dask`: the files to read go to a Dask cluster in shards (~10,000 files);
each task reads its shard with the same `scan.process_batch` as the local pool and writes its
results to the catalog itself (batches through `Catalog.write_results`), so no single process
carries every thumbnail. The driver keeps a bounded number of shards in flight; Dask retries a
shard that fails or whose worker dies, and a retried shard first asks the catalog which of its
files an earlier attempt already wrote (each batch is one transaction: nothing is ever
half-written), then reads only the rest.

`dask[distributed]` is an optional extra (`pip install 'mosaicdb[dask]'`); this module imports
it only inside the driver.
"""

from __future__ import annotations

import itertools
import logging
import os
import uuid
from collections.abc import Callable, Sequence

from mosaicdb.errors import MosaicdbError, OptionError
from mosaicdb.index.batches import BATCH_FILES, BatchWriter, process_batch
from mosaicdb.index.walk import ScanOptions, ScanPlan

# (path, root_id, size, mtime_ns, photos.indexed_at seen by the walk or None)
ShardRow = tuple[bytes, int, int, int, "float | None"]

_catalogs: dict = {}  # per worker process: one engine per catalog URL
_worker_ready = False


def _catalog(url: str):
    from mosaicdb.store import catalog as db
    from mosaicdb.store import schema

    cat = _catalogs.get(url)
    if cat is None:
        cat = _catalogs[url] = db.Catalog(schema.make_engine(url))
    return cat


def index_shard(url: str, rows: Sequence[ShardRow], spec: str, opts: ScanOptions) -> dict:
    """The task: read one shard's files and write them to the catalog at `url`. Returns
    counts. Files already written since the walk (by an earlier attempt of this shard) are
    skipped, so running a shard twice writes each file once."""
    global _worker_ready
    from mosaicdb import imaging

    if not _worker_ready:
        imaging.init_worker()
        _worker_ready = True
    cat = _catalog(url)
    states = cat.photo_states_of([r[0] for r in rows])
    todo: list[bytes] = []
    existing: dict[bytes, int] = {}
    root_of: dict[bytes, int] = {}
    skipped = 0
    earlier = {"added": 0, "updated": 0, "failed": 0}  # what an earlier attempt wrote
    for path, rid, size, mtime, seen in rows:
        st = states.get(path)
        if (
            st is not None
            and st.size == size
            and st.mtime_ns == mtime
            and (st.indexed_at or 0.0) > (seen if seen is not None else -1.0)
        ):
            skipped += 1  # written by an earlier attempt of this shard: counted, not read
            earlier["added" if seen is None else "updated"] += 1
            earlier["failed"] += st.status != "ok"
            continue
        todo.append(path)
        root_of[path] = rid
        if st is not None:
            existing[path] = st.id
    plan = ScanPlan(todo, existing, root_of, [], 0, 0)
    writer = BatchWriter(cat, plan, spec, opts.batch_size)
    for i in range(0, len(todo), BATCH_FILES):
        writer(process_batch(todo[i : i + BATCH_FILES], opts))
    writer.flush()
    return {
        "added": writer.added + earlier["added"],
        "updated": writer.updated + earlier["updated"],
        "failed": writer.failed + earlier["failed"],
        "dropped": sum(writer.dropped.values()),  # their folder was removed meanwhile
        "skipped": skipped,
        "files": len(rows),
        "worker": os.getpid(),
    }


def _connect(scheduler: str | None, workers: int):
    """(cluster or None, client): the running cluster at `scheduler`, or a LocalCluster of
    `workers` processes with one thread each (decoding scales with processes)."""
    try:
        from distributed import Client, LocalCluster
    except ImportError:
        raise MosaicdbError(
            "--executor dask needs Dask: pip install 'mosaicdb[dask]' (dask[distributed])"
        ) from None
    if scheduler:
        return None, Client(scheduler, timeout="30s")
    cluster = LocalCluster(
        n_workers=max(1, workers or os.cpu_count() or 1),
        threads_per_worker=1,
        processes=True,
        dashboard_address=None,
        silence_logs=logging.ERROR,
    )
    return cluster, Client(cluster)


class Starting:
    """A cluster being started (or joined) in a thread while the caller walks the folders."""

    def __init__(self, scheduler: str | None, workers: int):
        import concurrent.futures

        self._pool = concurrent.futures.ThreadPoolExecutor(1)
        self._fut = self._pool.submit(_connect, scheduler, workers)
        self._pool.shutdown(wait=False)

    def result(self):
        return self._fut.result()

    def close(self) -> None:
        try:
            cluster, client = self._fut.result()
        except Exception:
            return
        client.close()
        if cluster is not None:
            cluster.close()


def make_shards(plan: ScanPlan, shard_size: int) -> list[list[ShardRow]]:
    rows = [(p, plan.root_of[p], *plan.seen[p]) for p in plan.todo]
    return [rows[i : i + shard_size] for i in range(0, len(rows), shard_size)]


def run(
    url: str,
    plan: ScanPlan,
    spec: str,
    opts: ScanOptions,
    *,
    scheduler: str | None = None,
    workers: int = 0,
    shard_size: int = 10_000,
    in_flight: int | None = None,
    retries: int = 3,
    resource: str | None = None,
    on_shard: Callable[[dict], None] | None = None,
    on_crash: Callable[[bytes], None] | None = None,
    started: Starting | None = None,
) -> dict:
    """Index `plan.todo` on a Dask cluster: the one at `scheduler` (tcp://host:8786), or a
    LocalCluster of `workers` processes started here. Returns the summed shard counts.

    A shard that keeps killing its worker (Dask gives up: KilledWorker) is split into one
    task per file it still has, like the local pool does; a file whose own task kills its
    worker is handed to `on_crash` (the caller records it as an error)."""
    try:
        from distributed import KilledWorker, as_completed
    except ImportError:
        if started is not None:
            started.close()
        raise MosaicdbError(
            "--executor dask needs Dask: pip install 'mosaicdb[dask]' (dask[distributed])"
        ) from None
    if shard_size < 1:
        raise OptionError("--shard-size", f"must be positive, got {shard_size}")
    if scheduler and url.startswith("sqlite"):
        raise OptionError(
            "--scheduler",
            "workers on other machines cannot write a SQLite file: use a shared catalog "
            "(--db postgresql+psycopg://…), or no --scheduler for a LocalCluster here",
        )
    totals = {"added": 0, "updated": 0, "failed": 0, "dropped": 0, "skipped": 0, "files": 0}
    if not plan.todo:
        if started is not None:
            started.close()
        return totals
    if started is not None:
        cluster, client = started.result()
    else:
        cluster, client = _connect(scheduler, workers)
    try:
        slots = sum(client.nthreads().values()) or 1
    except Exception:
        client.close()
        if cluster is not None:
            cluster.close()
        raise
    # shards of `shard_size` files at most, and small enough that every worker thread gets
    # several (a short to-do list in one shard would keep one worker busy and the others idle,
    # and the last shards decide when the run ends)
    shards = make_shards(plan, max(1, min(shard_size, -(-len(plan.todo) // (8 * slots)))))
    run_id = uuid.uuid4().hex[:8]
    pending = iter(enumerate(shards))
    futures = as_completed()
    try:
        limit = in_flight or 2 * slots  # bounded: shards wait here, not in worker memory

        rows_of: dict = {}
        counter = itertools.count()
        # files of a shard that kept killing workers: one task each, and one at a time, so
        # that a worker death can only be blamed on the file that caused it
        singles: list = []
        single_running: list = []

        def submit(key: str, rows) -> None:
            fut = client.submit(
                index_shard,
                url,
                rows,
                spec,
                opts,
                key=key,
                retries=retries,
                pure=False,
                resources={resource: 1} if resource else None,
            )
            rows_of[fut.key] = rows
            futures.add(fut)

        def submit_next() -> bool:
            if singles and not single_running:
                key = f"mosaicdb-file-{run_id}-{next(counter)}"
                single_running.append(key)
                submit(key, [singles.pop()])
                return True
            nxt = next(pending, None)
            if nxt is None:
                return False
            i, rows = nxt
            submit(f"mosaicdb-shard-{run_id}-{i}", rows)
            return True

        for _ in range(limit):
            if not submit_next():
                break
        for fut in futures:
            rows = rows_of.pop(fut.key)
            if fut.key in single_running:
                single_running.remove(fut.key)
            try:
                res = fut.result()
            except KilledWorker:
                fut.release()
                if len(rows) > 1:
                    singles.extend(rows)  # find the file that kills workers
                elif on_crash is not None:
                    on_crash(rows[0][0])
                submit_next()
                continue
            except Exception as e:
                raise MosaicdbError(
                    f"a shard failed {retries + 1} times, last with {type(e).__name__}: {e}; "
                    "what was written stays, run `mosaicdb index` again to continue"
                ) from e
            fut.release()
            for k in totals:
                totals[k] += res[k]
            if on_shard:
                on_shard(res)
            submit_next()
    finally:
        for f in list(getattr(futures, "futures", ())):
            f.cancel()  # Ctrl-C or a failed shard: nothing more runs for this index
        client.close()
        if cluster is not None:
            cluster.close()
    return totals
