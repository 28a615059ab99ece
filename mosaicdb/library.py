"""The Python API: a `Library` is one store (catalog + vector file) and the operations on it.

    import mosaicdb
    lib = mosaicdb.open("~/mosaic-store")
    summary = lib.index(["~/Pictures"])

The CLI is a thin layer over this class. Heavy modules (numpy, pyvips, faiss) are imported
inside the methods that need them.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

from mosaicdb import config
from mosaicdb.errors import (
    MosaicdbError,
    NotFoundError,
    OptionError,
    StoreError,
    with_damage_advice,
)
from mosaicdb.progress import Progress
from mosaicdb.records import display_path as _show
from mosaicdb.store import catalog as db
from mosaicdb.store import migrate, schema


@dataclass
class IndexSummary:
    scanned: int = 0
    added: int = 0
    updated: int = 0
    removed: int = 0
    unchanged: int = 0
    failed: int = 0
    seconds: float = 0.0
    roots: list[str] = field(default_factory=list)
    vectors: int = 0
    vector_index: str = ""
    warnings: list[str] = field(default_factory=list)

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


def _fs(p: str | os.PathLike | bytes) -> bytes:
    return os.fsencode(p)


class Library:
    def __init__(self, home: Path, catalog: db.Catalog, progress: Progress | None = None):
        self.home = home
        self.catalog = catalog
        self.progress = progress or Progress()

    # -- opening ------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        home: str | os.PathLike | None = None,
        progress: Progress | None = None,
        db_url: str | None = None,
        create: bool = True,
    ) -> Library:
        """`home` holds the vector file (a local cache) and, by default, the SQLite catalog;
        `db_url` (or MOSAICDB_DB) puts the catalog elsewhere: any SQLAlchemy URL, e.g.
        postgresql+psycopg://user@host/name for a catalog shared by several machines.
        Without `create`, a store folder with no catalog in it is an error (a mistyped
        `--home` should not quietly make an empty store)."""
        home = config.resolve_home(home)
        if home.exists() and not home.is_dir():
            raise StoreError(f"store path {home} exists and is not a folder")
        url = config.resolve_db_url(db_url, home)
        catalog = config.own_catalog(home, url)
        if not create and catalog is not None and not catalog.exists():
            raise StoreError(f"no store in {home}: `mosaicdb index PATH` makes one")
        try:
            home.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise StoreError(f"cannot create the store folder {home}: {e.strerror}") from None
        try:
            engine = schema.make_engine(url)
        except Exception as e:  # a malformed URL or a driver that is not installed
            raise StoreError(f"cannot use the catalog URL: {e}") from None
        try:
            migrate.ensure_schema(engine, lock_path=home / ".lock")
        except MosaicdbError:
            engine.dispose()
            raise
        except Exception as e:
            engine.dispose()
            # the driver's words, not SQLAlchemy's
            reason = with_damage_advice(getattr(e, "orig", None) or e)
            where = home if url.startswith("sqlite") else engine.url.render_as_string()
            raise StoreError(f"cannot open the catalog in {where}: {reason}") from e
        lib = cls(home, db.Catalog(engine), progress)
        if lib.catalog.get_meta("feature_spec") is None:
            from mosaicdb.features import FeatureSpec

            lib.catalog.set_meta(
                {"feature_spec": FeatureSpec().key, "created_at": str(time.time())}
            )
        return lib

    def close(self) -> None:
        self.catalog.dispose()

    def __enter__(self) -> Library:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- basic facts ---------------------------------------------------------------------
    @property
    def spec(self):
        from mosaicdb.features import FeatureSpec

        return FeatureSpec.parse(self.catalog.get_meta("feature_spec"))

    def vector_path(self, spec=None) -> Path:
        return self.home / f"vectors-{(spec or self.spec).key}.faiss"

    def roots(self) -> list[str]:
        return [_show(p) for _, p in self.catalog.roots()]

    # -- asking the store ------------------------------------------------------------------
    def stats(self, plot: str | None = None) -> dict:
        """What is in the store; `plot` also writes a coverage picture (PNG, JPEG …)."""
        from mosaicdb.query.queries import stats

        return stats(self, plot=plot)

    def ls(self, **filters) -> list[dict]:
        """Photos with their mean colour; filters: status, root, path (glob), near (colour),
        limit, sort."""
        from mosaicdb.query.queries import listing

        return listing(self, **filters)

    def check(self, repair: bool = False, files: bool = True, deep: bool = False) -> dict:
        from mosaicdb.query.queries import check

        return check(self, repair=repair, files=files, deep=deep)

    def gaps(self, target, **options) -> dict:
        """Where the library is thin for `target`; see queries.gaps."""
        from mosaicdb.query.queries import gaps

        return gaps(self, str(target), **options)

    def sheet(self, output, **options) -> dict:
        """A contact sheet of the stored thumbnails; see sheet.sheet."""
        from mosaicdb.query.sheet import sheet

        return sheet(self, str(output), **options)

    def root_id(self, root: str | os.PathLike) -> int:
        """The id of a registered folder, given as the user typed it."""
        want = os.path.realpath(_fs(os.path.expanduser(os.fsdecode(_fs(root)))))
        for rid, path in self.catalog.roots():
            if path == want:
                return rid
        raise NotFoundError(f"{root} is not a registered folder; see `mosaicdb roots`")

    def root_info(self, root: str | os.PathLike) -> tuple[str, int]:
        """(path, photos) of a registered folder, given as the user typed it."""
        rid = self.root_id(root)
        path, n = next((p, n) for i, p, n in self.catalog.root_counts() if i == rid)
        return _show(path), n

    def forget(self, root: str) -> dict:
        """Remove a registered folder and its photos from the store (not from disk)."""
        rid = self.root_id(root)
        path = dict(self.catalog.roots())[rid]
        n = self.catalog.remove_root(rid)
        vs = self.sync_vectors()
        return {"root": _show(path), "photos_removed": n, "vectors": vs["count"]}

    def errors(self) -> list[dict]:
        return [{"path": _show(p), "error": e} for p, e in self.catalog.errors()]

    # -- index ---------------------------------------------------------------------------
    def index(
        self,
        paths: Sequence[str | os.PathLike] = (),
        *,
        workers: int | None = None,
        thumb_size: int = 256,
        max_pixels: int = 250_000_000,
        include_hidden: bool = False,
        retry_errors: bool = False,
        batch_size: int = 200,
        lease_seconds: float = 120.0,
        executor: str = "local",
        scheduler: str | None = None,
        shard_size: int = 10_000,
        resource: str | None = None,
    ) -> IndexSummary:
        """Register `paths` as roots (none: all roots) and bring the catalog in line with disk.

        On a shared (PostgreSQL) catalog the files to read go through the catalog's work queue,
        so several indexers (processes or machines) can run at once and each file is read once;
        a file claimed by an indexer that dies is taken over after `lease_seconds`.

        `executor="dask"` reads the files on a Dask cluster instead of the local pool (see
        shards.py): the one at `scheduler`, or a LocalCluster of `workers` processes; shards
        of `shard_size` files, each task needing Dask worker resource `resource` if given."""
        from mosaicdb.index.scan import ScanOptions, WalkStats, plan_scan, start_pool

        if workers is None:
            workers = os.cpu_count() or 1
        if workers < 0:
            raise OptionError("--workers", f"must be 0 or more, got {workers}")
        if not 16 <= thumb_size <= 4096:
            raise OptionError("--thumb-size", f"must be between 16 and 4096, got {thumb_size}")
        if max_pixels < 1:
            raise OptionError("--max-pixels", f"must be positive, got {max_pixels}")
        if batch_size < 1:
            raise OptionError("--batch-size", f"must be positive, got {batch_size}")
        if executor not in ("local", "dask"):
            raise OptionError("--executor", f"must be local or dask, got {executor!r}")
        if executor != "dask" and (scheduler or resource):
            raise OptionError("--scheduler" if scheduler else "--resource", "needs --executor dask")
        if shard_size < 1:
            raise OptionError("--shard-size", f"must be positive, got {shard_size}")
        if scheduler and not self.catalog.shared:
            raise OptionError(
                "--scheduler",
                "workers on other machines cannot write a SQLite file: use a shared catalog "
                "(--db postgresql+psycopg://…), or leave --scheduler out for a local cluster",
            )
        t0 = time.monotonic()
        summary = IndexSummary()
        stats = WalkStats()
        scopes = self._skip_empty(self._scopes(paths, stats), stats)
        opts = ScanOptions(
            thumb_size=thumb_size,
            grid=self.spec.grid,
            max_pixels=max_pixels,
            include_hidden=include_hidden,
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
            with self.progress.task("Scanning folders", total=None) as t:
                plan = plan_scan(self.catalog, scopes, opts, stats, on_file=t.advance)
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
        summary.removed = self.catalog.delete_photos(plan.gone) if plan.gone else 0

        if executor == "dask":
            self._index_dask(plan, opts, started, shard_size, resource, summary)
        else:
            self._index_local(plan, opts, scopes, pool, batch_size, summary)
        vs = self.sync_vectors()
        self.catalog.set_meta({"last_index_at": str(time.time())})
        summary.vectors, summary.vector_index = vs["count"], vs["action"]
        summary.roots = [_show(s.root_path) for s in scopes]
        summary.warnings[:0] = stats.warnings  # the walk's first, then the writing's
        summary.seconds = time.monotonic() - t0
        return summary

    def _index_dask(self, plan, opts, started, shard_size, resource, summary):
        from mosaicdb.index import shards

        url = self.catalog.engine.url.render_as_string(hide_password=False)
        crashed: list[bytes] = []
        with self.progress.task("Indexing photos (dask)", total=len(plan.todo)) as t:
            tot = shards.run(
                url,
                plan,
                self.spec.key,
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
        states = self.catalog.photo_states_of(crashed)
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
            from mosaicdb.index.scan import BatchWriter
            from mosaicdb.records import PhotoResult

            writer = BatchWriter(self.catalog, plan, self.spec.key, len(crashed))
            msg = "the image decoder crashed on this file"
            writer([PhotoResult(p, -1, -1, "error", error=msg) for p in crashed])
            writer.flush()
            summary.added += writer.added
            summary.updated += writer.updated
            summary.failed += writer.failed
            dropped += sum(writer.dropped.values())
        if dropped:
            summary.warnings.append(_dropped_warning(dropped))

    def _index_local(self, plan, opts, scopes, pool, batch_size, summary):
        from mosaicdb.index.scan import BatchWriter, ClaimFeed, run_batches

        feed = None
        if self.catalog.shared and plan.todo:
            feed = ClaimFeed(self.catalog, plan, {s.root_id for s in scopes}, opts)
            feed.enqueue()
        with self.progress.task("Indexing photos", total=len(plan.todo)) as t:
            writer = BatchWriter(self.catalog, plan, self.spec.key, batch_size)
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
        folders = {s.root_id: s.root_path for s in scopes}
        for rid, n in writer.dropped.items():
            summary.warnings.append(_dropped_warning(n, folders.get(rid)))
        for rid, n in (feed.gone if feed is not None else {}).items():
            summary.warnings.append(_dropped_warning(n, folders.get(rid), read=False))

    def _scopes(self, paths, stats) -> list:
        from mosaicdb.index.scan import Scope

        roots = self.catalog.roots()
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
        resolved = []
        for p in paths:  # all checked before any is registered
            raw = _fs(os.path.expanduser(os.fsdecode(_fs(p))))
            if not os.path.isdir(raw):
                what = "does not exist" if not os.path.exists(raw) else "is not a folder"
                raise MosaicdbError(f"{_show(raw)} {what}")
            resolved.append(os.path.realpath(raw))
        scopes = []
        for rp in resolved:
            cover = next(
                ((rid, r) for rid, r in roots if rp == r or rp.startswith(r.rstrip(b"/") + b"/")),
                None,
            )
            if cover:
                scopes.append(Scope(cover[0], cover[1], rp))
            else:
                rid = self.catalog.add_root(rp)
                roots = self.catalog.roots()
                scopes = [s for s in scopes if not s.root_path.startswith(rp.rstrip(b"/") + b"/")]
                scopes.append(Scope(rid, rp, rp))
        return scopes

    def _skip_empty(self, scopes, stats) -> list:
        kept = []
        for sc in scopes:
            n = self.indexed_under_empty_folder(sc.root_id, sc.walk_path)
            if n:
                stats.warnings.append(
                    f"{_show(sc.walk_path)}: folder is empty but {n:,} photos were indexed from "
                    "it (a disk not mounted?), skipped (kept its photos; `mosaicdb forget` "
                    "drops them)"
                )
            else:
                kept.append(sc)
        return kept

    def indexed_under_empty_folder(self, root_id: int, folder: bytes) -> int:
        """How many photos were indexed under `folder` if it is now empty, else 0: a disk not
        mounted on its mount point leaves an empty folder, which must not read as every
        photo deleted."""
        try:
            with os.scandir(folder) as entries:
                if next(entries, None) is not None:
                    return 0
        except OSError:
            return 0
        return len(self.catalog.photo_states(root_id, folder))

    # -- vectors -------------------------------------------------------------------------
    def sync_vectors(self, spec=None, rebuild: bool = False) -> dict:
        """Bring the FAISS file in line with the catalog: unchanged, updated in place from the
        catalog's change counter, or rebuilt when it is missing, disagrees, or (compressed
        kind) the store has grown or shrunk twofold since its quantizer was trained."""
        import numpy as np

        from mosaicdb.store import vecindex as V

        spec = spec or self.spec
        path = self.vector_path(spec)
        key = self._cache_key(f"vectors.{spec.key}")
        raw = self.catalog.get_meta(key)
        state = json.loads(raw) if raw else None
        fst = path.stat() if path.exists() else None

        def kind_of(count: int) -> str:
            return "compressed" if count >= V.COMPRESSED_MIN_TILES else "flat"

        # the file on disk is the one last written, and may be kept
        recorded = (
            not rebuild
            and state
            and fst
            and state.get("size") == fst.st_size
            and state.get("mtime_ns") == fst.st_mtime_ns
        )
        # Every write and deletion of a vector moves the change counter (logged deletions
        # since schema 0006; states recorded since then say fp 2): when it and the file are as
        # recorded, nothing changed, and counting the vectors (a scan: ~0.4 s at 1M, ~2 s at
        # 10M) is left to `check`, which compares file and catalog in full.
        if (
            recorded
            and state.get("fp") == 2
            and state.get("kind", "flat") == kind_of(state["count"])
            and state.get("seq") == self.catalog.change_counter(spec.key)
        ):
            return {"action": "unchanged", "count": state["count"]}
        n, idsum, maxseq = self.catalog.feature_state(spec.key)
        kind = kind_of(n)
        want = {"count": n, "idsum": idsum, "seq": maxseq}
        usable = (
            not rebuild
            and state
            and fst
            and state.get("kind", "flat") == kind
            and (kind == "flat" or state["trained"] <= 2 * n <= 4 * state["trained"])
        )
        if usable and recorded and {k: state.get(k) for k in want} == want:
            if state.get("fp") != 2:  # counted and found equal: the counter can say so next time
                self.catalog.set_meta({key: json.dumps({**state, "fp": 2})})
            return {"action": "unchanged", "count": n}

        from mosaicdb.features import unpack_vectors

        def vecs(blobs):
            return unpack_vectors(blobs, spec.dim)

        def agrees(index) -> bool:
            ids = V.ids_of(index)
            return len(ids) == n and int(ids.sum()) == idsum

        index, action, trained = None, "rebuilt", n
        if usable:
            try:
                index = V.read(path)
            except Exception:
                index = None
            if index is not None and (index.ntotal != state.get("count") or index.d != spec.dim):
                index = None
            if index is not None:
                V.remove(index, self.catalog.deleted_since(state["seq"]))
                for ids, blobs in self.catalog.iter_vectors(spec.key, since_seq=state["seq"]):
                    V.remove(index, ids)
                    V.add(index, ids, vecs(blobs))
                # A catalog written before deletions were logged (or edited by hand) can still
                # disagree: then the whole id list is compared (10M ids cost seconds).
                if not agrees(index):
                    gone = np.setdiff1d(  # both id lists are unique: 50× faster at 10M
                        V.ids_of(index),
                        np.asarray(self.catalog.feature_ids(spec.key)),
                        assume_unique=True,
                    )
                    V.remove(index, gone)
                if agrees(index):
                    action, trained = "updated", state.get("trained", n)
                else:
                    index = None
        if index is None:
            index = (
                self._build_compressed(spec, n, vecs)
                if kind == "compressed"
                else self._build_flat(spec, vecs)
            )
        V.write_atomic(index, path)
        fst = path.stat()
        self.catalog.set_meta(
            {
                key: json.dumps(
                    {
                        **want,
                        "fp": 2,
                        "kind": kind,
                        "trained": trained,
                        "size": fst.st_size,
                        "mtime_ns": fst.st_mtime_ns,
                    }
                )
            }
        )
        return {"action": action, "count": n}

    def _build_flat(self, spec, vecs):
        from mosaicdb.store import vecindex as V

        index = V.new_index(spec.dim)
        for ids, blobs in self.catalog.iter_vectors(spec.key):
            V.add(index, ids, vecs(blobs))
        return index

    def _build_compressed(self, spec, n: int, vecs):
        """Train one quantizer on a sample of the catalog, build shards of SHARD_VECTORS with
        it (build_shard is pure: a pool or Dask could run them) and merge them."""
        from mosaicdb.store import vecindex as V

        nlist = V.ivf_nlist(n)
        with self.progress.task("Building compressed vector index", total=n) as t:
            step = max(1, n // (nlist * V.TRAIN_PER_LIST))
            _, sample = self.catalog.sample_vectors(spec.key, step)
            trained = V.to_bytes(V.train_compressed(vecs(sample), nlist))

            def shards():
                for ids, blobs in self.catalog.iter_vectors(spec.key, chunk=V.SHARD_VECTORS):
                    yield V.build_shard(trained, ids, vecs(blobs))
                    t.advance(len(ids))

            return V.merge_shards(trained, shards())

    def vector_kind(self, spec=None) -> str | None:
        """What this machine's vector file of `spec` is, as last written: "exact" or
        "compressed" (None before the first one)."""
        spec = spec or self.spec
        raw = self.catalog.get_meta(self._cache_key(f"vectors.{spec.key}"))
        if not raw:
            return None
        return "exact" if json.loads(raw).get("kind", "flat") == "flat" else "compressed"

    def _cache_key(self, name: str) -> str:
        """The meta key recording the state of a local vector file. A shared catalog serves
        many machines, each with its own cache file: their keys must not collide."""
        if not self.catalog.shared:
            return name
        import hashlib
        import socket

        where = f"{socket.gethostname()}:{os.path.realpath(self.home)}".encode()
        return f"{name}@{hashlib.sha1(where).hexdigest()[:16]}"

    def vector_index(self, spec=None):
        """The FAISS index of `spec` (exact, or compressed for big stores), checked against
        the catalog (updated or rebuilt if stale)."""
        from mosaicdb.store import vecindex as V

        self.sync_vectors(spec)
        return V.read(self.vector_path(spec))

    def search_index(self, spec, exact):
        """What render searches: the exact index for small stores, an HNSW graph (cached on
        disk next to the exact file, rebuilt when the catalog changed) above
        vecindex.HNSW_MIN_TILES tiles, the compressed index itself above
        vecindex.COMPRESSED_MIN_TILES."""
        from mosaicdb.store import vecindex as V

        if exact.ntotal < V.HNSW_MIN_TILES or V.is_compressed(exact):
            return exact
        path = self.home / f"vectors-{spec.key}.hnsw.faiss"
        key = self._cache_key(f"hnsw.{spec.key}")
        want = self.catalog.get_meta(self._cache_key(f"vectors.{spec.key}"))
        if path.exists() and self.catalog.get_meta(key) == want:
            index = V.read(path)
        else:
            with self.progress.task("Building HNSW graph", total=None):
                index = V.new_hnsw(exact.d)
                V.add(index, V.ids_of(exact), exact.index.reconstruct_n(0, exact.ntotal))
            V.write_atomic(index, path)
            self.catalog.set_meta({key: want})
        V.set_ef_search(index, V.HNSW_EF_SEARCH)
        return index

    # -- render ----------------------------------------------------------------------------
    def render(self, target=None, output: str = "", *, plan: int | None = None, **options):
        """Render `target` into `output` (format from the extension); see RenderOptions for
        the options. `plan=ID` re-renders a saved plan without matching again."""
        from mosaicdb.render.stage import RenderOptions, run

        if not output:
            raise OptionError("--output", "is required")
        if target is None and plan is None:
            raise OptionError("TARGET", "give a target image or --plan ID")
        return run(
            self,
            str(target) if target else None,
            str(output),
            RenderOptions(**options),
            plan_id=plan,
        )

    def renders(self) -> list[dict]:
        out = []
        for r in self.catalog.list_renders():
            o = json.loads(r.pop("options"))
            r["tile_size"], r["aspect"] = o.get("tile_size"), o.get("aspect")
            r["max_uses"], r["min_distance"], r["blend"] = (
                o.get("max_uses"),
                o.get("min_distance"),
                o.get("blend"),
            )
            out.append(r)
        return out

    # -- view --------------------------------------------------------------------------------
    def view(self, render):
        """What the browser viewer shows for a Deep Zoom render (id, or its .dz/.dzi path): a
        viewer.View, which can .export(folder) or .server(host, port)."""
        from mosaicdb.view.viewer import make_view

        return make_view(self, render)
