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
from pathlib import Path

from mosaicdb import config
from mosaicdb.errors import (
    MosaicdbError,
    OptionError,
    StoreError,
    with_damage_advice,
)
from mosaicdb.index.run import IndexSummary, Interrupted
from mosaicdb.progress import Progress
from mosaicdb.records import display_path as _show
from mosaicdb.store import catalog as db
from mosaicdb.store import migrate, schema
from mosaicdb.store.context import Context

__all__ = ["IndexSummary", "Interrupted", "Library"]


class Library:
    """One store and what can be done with it. The stages it calls get `self.ctx` (catalog,
    vector cache, spec, progress), never the Library itself."""

    def __init__(self, home: Path, catalog: db.Catalog, progress: Progress | None = None):
        self.ctx = Context(home, catalog, progress or Progress())

    @property
    def home(self) -> Path:
        return self.ctx.home

    @property
    def catalog(self) -> db.Catalog:
        return self.ctx.catalog

    @property
    def progress(self) -> Progress:
        return self.ctx.progress

    @progress.setter
    def progress(self, progress: Progress) -> None:
        self.ctx.progress = progress

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
        return self.ctx.spec

    def vector_path(self, spec=None) -> Path:
        return self.ctx.vectors.path(spec)

    def roots(self) -> list[str]:
        return [_show(p) for _, p in self.catalog.roots()]

    # -- asking the store ------------------------------------------------------------------
    def stats(self, plot: str | None = None) -> dict:
        """What is in the store; `plot` also writes a coverage picture (PNG, JPEG …)."""
        from mosaicdb.query.stats import stats

        return stats(self.ctx, plot=plot)

    def ls(self, **filters) -> list[dict]:
        """Photos with their mean colour; filters: status, root, path (glob), near (colour),
        limit, sort."""
        from mosaicdb.query.listing import listing

        return listing(self.ctx, **filters)

    def check(self, repair: bool = False, files: bool = True, deep: bool = False) -> dict:
        from mosaicdb.query.check import check

        return check(self.ctx, repair=repair, files=files, deep=deep)

    def gaps(self, target, **options) -> dict:
        """Where the library is thin for `target`; see queries.gaps."""
        from mosaicdb.query.gaps import gaps

        return gaps(self.ctx, str(target), **options)

    def sheet(self, output, **options) -> dict:
        """A contact sheet of the stored thumbnails; see sheet.sheet."""
        from mosaicdb.query.sheet import sheet

        return sheet(self.ctx, str(output), **options)

    def root_id(self, root: str | os.PathLike) -> int:
        """The id of a registered folder, given as the user typed it."""
        return self.ctx.root_id(root)

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
        vs = self.ctx.vectors.sync()
        return {"root": _show(path), "photos_removed": n, "vectors": vs["count"]}

    def dupes(self) -> list[dict]:
        """Near-duplicate groups (size, ids, paths; the first photo first), largest first."""
        from mosaicdb.query.dupes import dupes

        return dupes(self.ctx)

    def errors(self) -> list[dict]:
        return [{"path": _show(p), "error": e} for p, e in self.catalog.errors()]

    # -- index ---------------------------------------------------------------------------
    def index(
        self,
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

        On a shared (PostgreSQL) catalog the files to read go through the catalog's work queue,
        so several indexers (processes or machines) can run at once and each file is read once;
        a file claimed by an indexer that dies is taken over after `lease_seconds`.

        `executor="dask"` reads the files on a Dask cluster instead of the local pool (see
        index/shards.py): the one at `scheduler`, or a LocalCluster of `workers` processes;
        shards of `shard_size` files, each task needing Dask worker resource `resource` if
        given. See index/run.py."""
        from mosaicdb.index import run

        return run.index(
            self.ctx,
            paths,
            workers=workers,
            thumb_size=thumb_size,
            max_pixels=max_pixels,
            include_hidden=include_hidden,
            exclude=exclude,
            retry_errors=retry_errors,
            batch_size=batch_size,
            lease_seconds=lease_seconds,
            executor=executor,
            scheduler=scheduler,
            shard_size=shard_size,
            resource=resource,
        )

    def indexed_under_empty_folder(self, root_id: int, folder: bytes) -> int:
        """How many photos were indexed under `folder` if it is now empty, else 0."""
        return self.ctx.indexed_under_empty_folder(root_id, folder)

    # -- vectors (the cache: store/vector_cache.py) ---------------------------------------
    def sync_vectors(self, spec=None, rebuild: bool = False) -> dict:
        """Bring the FAISS file in line with the catalog: unchanged, updated in place from the
        catalog's change counter, or rebuilt."""
        return self.ctx.vectors.sync(spec, rebuild=rebuild)

    def vector_kind(self, spec=None) -> str | None:
        """ "exact" or "compressed" as last written (None before the first one)."""
        return self.ctx.vectors.kind(spec)

    def vector_index(self, spec=None):
        """The FAISS index of `spec`, checked against the catalog (updated or rebuilt)."""
        return self.ctx.vectors.index(spec)

    def search_index(self, spec, exact):
        """What render searches for `spec` (exact, HNSW or compressed by store size)."""
        return self.ctx.vectors.search_index(spec, exact)

    # -- render ----------------------------------------------------------------------------
    def render(
        self,
        target=None,
        output: str = "",
        *,
        plan: int | None = None,
        force: bool = False,
        **options,
    ):
        """Render `target` into `output` (format from the extension); see RenderOptions for
        the options. `plan=ID` re-renders a saved plan without matching again. An output that
        is the target or lies in an indexed folder is refused unless `force`."""
        from mosaicdb.render.stage import RenderOptions, run

        if not output:
            raise OptionError("--output", "is required")
        if target is None and plan is None:
            raise OptionError("TARGET", "give a target image or --plan ID")
        return run(
            self.ctx,
            str(target) if target else None,
            str(output),
            RenderOptions(**options),
            plan_id=plan,
            force=force,
        )

    def renders(self) -> list[dict]:
        """Saved renders; `output`, `width`, `height`, `blend`, `mean_delta_e` are of the
        latest file written from the plan, `outputs` every one, oldest first."""
        out = []
        written = self.catalog.render_outputs()
        for r in self.catalog.list_renders():
            o = json.loads(r.pop("options"))
            outs = written.get(r["id"], [])
            r["tile_size"], r["aspect"] = o.get("tile_size"), o.get("aspect")
            r["max_uses"], r["min_distance"] = o.get("max_uses"), o.get("min_distance")
            r["blend"] = outs[-1]["blend"] if outs else o.get("blend")
            r["outputs"] = [
                {k: x[k] for k in ("output", "width", "height", "tile_w", "tile_h", "blend")}
                | {"mean_delta_e": x["mean_delta_e"], "created_at": x["created_at"]}
                for x in outs
            ]
            out.append(r)
        return out

    # -- view --------------------------------------------------------------------------------
    def view(self, render):
        """What the browser viewer shows for a Deep Zoom render (id, or its .dz/.dzi path): a
        viewer.View, which can .export(folder) or .server(host, port)."""
        from mosaicdb.view.viewer import make_view

        return make_view(self.ctx, render)
