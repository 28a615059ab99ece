"""The render stage: target → grid of cells → Lab features per cell → FAISS candidates →
placement under the repetition rules → plan saved in the catalog → assembly from the stored
thumbnails into the output, in bounded memory → report.

Never reads the photo folders: everything comes from the catalog.
"""

from __future__ import annotations

import functools
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

from mosaicdb.errors import NotFoundError, RenderError
from mosaicdb.output import leftovers
from mosaicdb.output.assemble import Warmer, assemble, prepare_output
from mosaicdb.output.formats import MAX_SIDE
from mosaicdb.render.options import (  # noqa: F401  (RenderOptions is the stage's API)
    RERANK_CHROMA,
    RERANK_L_WEIGHT,
    RenderOptions,
    RenderReport,
    check_output,
    check_replay,
)
from mosaicdb.target import grid_size, load_region, parse_aspect
from mosaicdb.vectors import ensure_spec_vectors, vectors_of

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


def run(
    ctx: Context,
    target: str | None,
    output: str,
    opts: RenderOptions,
    plan_id: int | None = None,
    force: bool = False,
) -> RenderReport:
    import numpy as np

    from mosaicdb import features as F
    from mosaicdb import imaging
    from mosaicdb.render.placement import Groups, Space, check_feasible, place
    from mosaicdb.store import vecindex as V

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    opts.validate()
    output, fmt = prepare_output(output)

    if plan_id is not None:
        saved = ctx.catalog.get_render(plan_id)
        if saved is None:
            raise NotFoundError(f"no render with id {plan_id}; see `mosaicdb renders`")
        sopts = json.loads(saved["options"])
        check_replay(opts, target, saved)
        aw, ah = parse_aspect(sopts["aspect"])
        opts.aspect, opts.seed = sopts["aspect"], sopts["seed"]
        opts.max_uses, opts.min_distance = sopts["max_uses"], sopts["min_distance"]
        opts.use_all, opts.repeat = sopts.get("use_all", False), sopts.get("repeat", "free")
        cols, rows = saved["cols"], saved["rows"]
        target = target or saved["target"]
        spec = F.FeatureSpec.parse(saved["spec"])
    else:
        aw, ah = parse_aspect(opts.aspect)
        base = F.FeatureSpec(opts.grid) if opts.grid else ctx.spec
        spec = base.with_aspect(aw, ah)
    if not force:  # the target of a plan is known by now: the saved one if none is given
        check_output(ctx, output, target)
    tile_w = opts.tile_size
    tile_h = max(1, round(opts.tile_size * ah / aw))
    aspect = aw / ah

    # -- target and grid ------------------------------------------------------------------
    region = None
    if plan_id is None or (target and Path(target).exists()):
        if plan_id is None:
            head_w, head_h = imaging.image_size_or_error(target)
            cols, rows = grid_size(head_w, head_h, aspect, opts.tiles_across, opts.tile_count)
        region = load_region(target, cols, rows, spec.grid, aspect)
    elif opts.blend:
        raise RenderError(f"the target {target} of render {plan_id} is gone; --blend needs it")
    else:
        warnings.append(f"target {target} is gone: no ΔE report")
    n = cols * rows
    W, H = cols * tile_w, rows * tile_h
    limit = MAX_SIDE.get(fmt)
    if limit and max(W, H) > limit:
        raise RenderError(
            f"{W}×{H} px is too big for {fmt.upper()} (at most {limit:,} px a side); "
            "write .tif (tiled BigTIFF), .dz (Deep Zoom) or .png instead"
        )
    if tile_w > 256 or tile_h > 256:
        warnings.append(
            f"tiles of {tile_w}×{tile_h} px are enlarged from the stored thumbnails; "
            "re-index with a larger --thumb-size for sharper tiles"
        )

    # -- matching and placement -------------------------------------------------------------
    cells = fine_cells = warmer = None
    rerank = (F.RERANK_GRID if opts.rerank is None else opts.rerank) if plan_id is None else 0
    if region is not None and rerank > spec.grid:  # both grids from one Lab conversion
        cells, fine_cells = imaging.lab_grids(region, cols, rows, (spec.grid, rerank))
        cells = cells.reshape(n, spec.dim)
    elif region is not None:
        cells = imaging.lab_grid(region, cols, rows, spec.grid).reshape(n, spec.dim)
    timings["target"] = time.monotonic() - t0  # loaded, and its cells described
    if plan_id is None:
        t1 = time.monotonic()
        if spec.key != ctx.spec.key:
            ensure_spec_vectors(ctx, spec)
        index = ctx.vectors.index(spec)
        groups, n_photos = None, index.ntotal
        if opts.dupes == "group":  # near-duplicates count as one photo to the rules
            members, firsts = ctx.catalog.dup_members()
            if len(members):
                groups, n_photos = Groups(members, firsts), index.ntotal - len(members)
        opts.resolve_rules(n, n_photos, rows, cols)
        check_feasible(n, n_photos, rows, cols, opts.max_uses, opts.min_distance, opts.use_all)
        search_index = ctx.vectors.search_index(spec, index)
        with ctx.progress.task("Matching cells", total=n) as t:
            k = min(opts.candidates_per_cell(n, index.ntotal), index.ntotal)
            cand_dist, cand_ids = V.search(search_index, cells, k)
            t.advance(n)
        if rerank:
            fine = F.FeatureSpec(rerank).with_aspect(aw, ah)
            ensure_spec_vectors(ctx, fine)
            if fine_cells is None:
                fine_cells = imaging.lab_grid(region, cols, rows, fine.grid)
            fine_cells = fine_cells.reshape(n, fine.dim)
            cand_dist, cand_ids = _rerank(ctx, fine, fine_cells, cand_ids)

        widen = near_cells = all_ids = None
        rules = opts.max_uses or opts.min_distance or opts.use_all
        # the callbacks' distances on cand_dist's scale: per grid cell when re-ranked
        per_cell = 1.0 / spec.grid**2 if rerank else 1.0
        if rules:  # only the rules need every id, sorted
            ids_internal = V.ids_of(index)
            by_id = np.argsort(ids_internal)
            all_ids = ids_internal[by_id]

            def widen(which, allowed, kk: int):
                if allowed.all():
                    d, i = V.search(index, cells[which], kk)
                elif V.is_compressed(index):  # no exact vectors to copy: filter the search
                    if allowed.sum() * 2 < len(allowed):
                        d, i = V.search(index, cells[which], kk, among=all_ids[allowed])
                    else:
                        d, i = V.search(index, cells[which], kk, excluding=all_ids[~allowed])
                else:
                    sub = V.new_index(spec.dim)
                    rows_ = by_id[allowed]
                    V.add(sub, ids_internal[rows_], index.index.reconstruct_batch(rows_))
                    d, i = V.search(sub, cells[which], kk)
                return d * per_cell, i

            def near_cells(photo_ids, _allowed, kk: int):
                grid_index = V.new_index(spec.dim)
                V.add(grid_index, np.arange(n, dtype=np.int64), cells)
                d, i = V.search(grid_index, vectors_of(ctx.catalog, spec, index, photo_ids), kk)
                return d * per_cell, i

        t2 = time.monotonic()
        place_ids, place_dist = cand_ids, cand_dist
        if rules and groups is not None:
            place_ids, place_dist = groups.collapse(cand_ids, cand_dist)
            photo_ids, all_ids = all_ids, np.unique(groups.of(all_ids))
            widen = groups.grouped(widen, photo_ids, all_ids)
        space = None
        if rules:
            # the other core decodes the likeliest tiles while the rules are solved
            warmer = Warmer(ctx.catalog, _likeliest(cand_ids), tile_w, tile_h)
            ids_ = all_ids  # a group is routed as its first photo
            # read once: routing and the spread's smoothing may both ask
            photos = functools.cache(lambda: vectors_of(ctx.catalog, spec, index, ids_))
            space = Space(cells, photos, per_cell)
        try:
            plan = place(
                place_ids,
                place_dist,
                rows,
                cols,
                max_uses=opts.max_uses,
                min_distance=opts.min_distance,
                use_all=opts.use_all,
                seed=opts.seed,
                widen=widen,
                near_cells=near_cells,
                all_ids=all_ids,
                space=space,
            )
        except BaseException:
            if warmer:
                warmer.take()
            raise
        if rules and groups is not None:
            plan = groups.expand(plan, cand_ids)
        timings["placement"] = time.monotonic() - t2
        timings["match"] = time.monotonic() - t1
        options = {**asdict(opts), "output": output}
        render_id = ctx.catalog.save_render(
            {
                "target": str(Path(target).resolve()),
                "options": json.dumps(options),
                "spec": spec.key,
                "cols": cols,
                "rows": rows,
                "tile_w": tile_w,
                "tile_h": tile_h,
            },
            np.ascontiguousarray(plan, dtype="<i8").tobytes(),
        )
    else:
        render_id = plan_id
        plan = np.asarray(ctx.catalog.plan(plan_id), dtype=np.int64)
        index = None
        have = ctx.catalog.ok_photo_ids(plan)
        gone = np.flatnonzero(~np.isin(plan, np.fromiter(have, np.int64, len(have))))
        if len(gone):
            where = ", ".join(f"row {c // cols} col {c % cols}" for c in gone[:10])
            more = f" and {len(gone) - 10} more" if len(gone) > 10 else ""
            raise RenderError(
                f"{len(gone)} of {n} cells of plan {plan_id} use photos no longer in the store "
                f"({where}{more}); render the target again to make a new plan"
            )

    # -- assembly ----------------------------------------------------------------------------
    cell_rgb = None
    swept = leftovers.prune(Path(output).parent)
    if swept:
        warnings.append(swept)
    if opts.blend and region is not None:
        cell_rgb = imaging.rgb_grid(region, cols, rows, 1).reshape(rows, cols, 3)
    mosaic_lab = assemble(
        ctx.catalog,
        ctx.progress,
        plan.reshape(rows, cols),
        tile_w,
        tile_h,
        output,
        fmt,
        opts.blend,
        cell_rgb,
        spec.grid,
        timings,
        warmer.take() if warmer else None,
    )

    # -- report ------------------------------------------------------------------------------
    t3 = time.monotonic()
    mean_de = best_de = None
    if cells is not None:
        if index is None:
            index = ctx.vectors.index(spec)
        if mosaic_lab is None:  # no blend: the placed tiles' own feature grids
            mosaic_lab = vectors_of(ctx.catalog, spec, index, plan)
        if plan_id is None and (opts.max_uses or opts.min_distance or opts.use_all):
            best = vectors_of(ctx.catalog, spec, index, cand_ids[:, 0])
            best_de = float(F.ciede2000(cells.reshape(-1, 3), best.reshape(-1, 3)).mean())
        mean_de = float(F.ciede2000(cells.reshape(-1, 3), mosaic_lab.reshape(-1, 3)).mean())
    quality = None
    if opts.score:
        if fmt == "dz" or region is None:
            warnings.append("--score needs a single-file output and the target; not scored")
        else:
            from mosaicdb.quality import score

            t4 = time.monotonic()
            quality = {
                str(w): {k: round(v, 4) for k, v in s.items()}
                for w, s in score(output, target).items()
            }
            timings["score"] = time.monotonic() - t4
    uniq, counts = np.unique(plan, return_counts=True)
    if index is None:
        index = ctx.vectors.index(spec)
    from mosaicdb.render.placement import variety

    var = variety(plan, rows, cols, index.ntotal)
    timings["report"] = time.monotonic() - t3
    seconds = time.monotonic() - t0
    ctx.catalog.update_render(render_id, distinct_tiles=len(uniq))
    ctx.catalog.record_output(
        render_id,
        output=output,
        width=W,
        height=H,
        tile_w=tile_w,
        tile_h=tile_h,
        blend=opts.blend,
        mean_delta_e=mean_de,
        seconds=seconds,
    )
    return RenderReport(
        render_id,
        output,
        W,
        H,
        cols,
        rows,
        n,
        len(uniq),
        int(counts.max()),
        mean_de,
        seconds,
        best_de,
        quality,
        timings,
        warnings,
        var,
        {
            "max_uses": opts.max_uses,
            "min_distance": opts.min_distance,
            "use_all": opts.use_all,
            "repeat": opts.repeat,
        },
    )


def _likeliest(cand_ids, depth: int = 4):
    """The photos the placement is likeliest to give cells, likeliest first: by how many
    cells list them among their first `depth` candidates."""
    import numpy as np

    top = cand_ids[:, :depth].ravel()
    ids, counts = np.unique(top[top >= 0], return_counts=True)
    return ids[np.argsort(-counts, kind="stable")]


def _rerank(ctx: Context, fine, fine_cells, cand_ids):
    """Each cell's candidates re-ordered by distance on the finer grid `fine`: the coarse
    search finds the right colours, the fine grid picks the tile whose layout (a dark corner,
    a bright edge) follows the cell's. Only the candidates' fine vectors are read. Returns
    (distances, ids); the ids are re-ordered in place in `cand_ids`, block by block, so that
    memory stays at the candidate lists themselves (128 a cell under --min-distance)."""
    import numpy as np

    from mosaicdb import features as F
    from mosaicdb.render.placement.graph import Positions

    n, k = cand_ids.shape
    step = max(1, 65_536 // k)  # bounded memory: 65,536 fine vectors (28 MB at 6×6) at a time
    present = np.zeros(int(cand_ids.max()) + 1, bool)  # the distinct candidates, without a sort
    for i in range(0, n, step):
        c = cand_ids[i : i + step]
        present[c[c >= 0]] = True
    blobs = ctx.catalog.feature_vectors(fine.key, np.flatnonzero(present))
    if not blobs:
        return np.zeros(cand_ids.shape, np.float32), cand_ids
    ids = np.array(sorted(blobs), np.int64)
    position = Positions(ids)
    vecs = F.unpack_vectors([blobs[i] for i in ids.tolist()], fine.dim)
    # |c - v|² = |c|² + |v|² - 2 c·v, so only the dot products need each cell's own gather
    g2 = fine.grid**2
    scale = np.tile(np.array([RERANK_L_WEIGHT**0.5, 1, 1], np.float32), g2)
    if RERANK_CHROMA:
        vecs = F.compress_chroma(vecs, RERANK_CHROMA)
        fine_cells = F.compress_chroma(fine_cells, RERANK_CHROMA)
    vecs, fine_cells = vecs * scale, fine_cells * scale
    v_norm, c_norm = (vecs * vecs).sum(1), (fine_cells * fine_cells).sum(1)
    dist = np.empty((n, k), np.float32)
    for i in range(0, n, step):
        j = slice(i, i + step)
        c = cand_ids[j]
        pos = position(c)
        missing = pos < 0
        pos[missing] = 0
        dot = np.matmul(vecs[pos], fine_cells[j, :, None])[..., 0]
        d = (c_norm[j, None] + v_norm[pos] - 2 * dot) / g2
        d[missing] = np.inf
        order = np.argsort(d, axis=1, kind="stable")
        dist[j] = np.take_along_axis(d, order, 1)
        cand_ids[j] = np.take_along_axis(c, order, 1)
    return dist, cand_ids
