"""`stats`: what is in the store (photos by status and format, folders, sizes, colour
coverage), from the catalog and the vector files' sizes."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosaicdb.query.colour import bin_colours, coverage, plot_path
from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


def stats(ctx: Context, plot: str | None = None) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    if plot is not None:
        plot = plot_path(plot)

    # the counting queries run in the database beside the coverage maths here (SQLite gives
    # up the GIL while it reads): on a million photos each side takes about a second
    with ThreadPoolExecutor(3) as pool:
        counts_job = pool.submit(ctx.catalog.status_format_counts)
        roots_job = pool.submit(ctx.catalog.root_counts)
        thumbs_job = pool.submit(ctx.catalog.thumbnail_bytes)
        dupes_job = pool.submit(ctx.catalog.dup_counts)
        cov = coverage(ctx)
        status_formats, root_counts = counts_job.result(), roots_job.result()
        thumb_bytes = thumbs_job.result()
        groups, in_groups = dupes_job.result()
    by_status: dict[str, int] = {}
    by_format: dict[str, int] = {}
    for status, fmt, n in status_formats:
        by_status[status] = by_status.get(status, 0) + n
        if status == "ok":
            by_format[fmt or "unknown"] = by_format.get(fmt or "unknown", 0) + n
    catalog = ctx.catalog.catalog_bytes()  # a server's database; None: the SQLite files here
    if catalog is None:
        catalog = sum(p.stat().st_size for p in ctx.home.glob("catalog.sqlite*") if p.is_file())
    vectors = {p.name: p.stat().st_size for p in sorted(ctx.home.glob("vectors-*.faiss"))}
    last = ctx.catalog.get_meta("last_index_at")
    out = {
        "photos": sum(by_status.values()),
        "by_status": {"ok": by_status.get("ok", 0), "error": by_status.get("error", 0)},
        "by_format": dict(sorted(by_format.items(), key=lambda kv: -kv[1])),
        "roots": [{"path": _show(p), "photos": n} for _i, p, n in root_counts],
        # near-duplicate groups and the photos in them; render counts a group as one photo
        "near_duplicates": {"groups": groups, "photos": in_groups},
        "store": {
            "home": str(ctx.home),
            "catalog_bytes": catalog,
            "thumbnail_bytes": thumb_bytes,
            "vector_files": vectors,
        },
        "feature_spec": ctx.spec.key,
        "vector_index": ctx.vectors.kind(),
        "last_index_at": float(last) if last else None,
        "coverage": cov,
    }
    if plot:
        import numpy as np

        from mosaicdb.output import pictures

        cov = out["coverage"]
        counts = np.column_stack([cov["greys"], np.array(cov["counts"])])
        pictures.write_coverage_plot(
            plot,
            bin_colours(),
            counts,
            [f"L {b}" for b in cov["lightness_bands"]],
            ["grey", *cov["hues"]],
        )
        out["plot"] = plot
    return out
