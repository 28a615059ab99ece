"""The render stage: target → grid of cells → Lab features per cell → FAISS candidates →
placement under the repetition rules → plan saved in the catalog → assembly from the stored
thumbnails into the output, in bounded memory → report.

Never reads the photo folders: everything comes from the catalog.
"""

from __future__ import annotations

import json
import math
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import ImageError, NotFoundError, OptionError, RenderError

if TYPE_CHECKING:
    from .library import Library

# Decoded tiles kept for reuse across rows (LRU). Memory of a render is about this plus two
# strips of the output, whatever the output size.
TILE_CACHE_BYTES = 256 * 2**20
# Tiles decoded ahead of the row being placed (at most), in chunks of DECODE_CHUNK.
DECODE_AHEAD = 256
DECODE_CHUNK = 16

# The coarse search finds tiles of the right colours; re-ranking its candidates on a 6×6 grid
# (features.RERANK_GRID) with lightness weighted 3× picks the one whose light and dark parts sit
# where the cell's do.
# Chosen in bench/ablation_quality.py on the real 2,000-photo library (t1, t2; 100 and 200
# across; 32 px tiles): SSIM on L* +0.02–0.09 at 400 px wide and +0.06–0.09 at 1600, mean
# ΔE2000 +0.2–0.8 at 400 and −0.4–0.0 at 1600, against no re-ranking. Lightness weights
# 1, 2, 4 and grids 5 and 8 were measured too: bench/results/ablation.md.
RERANK_L_WEIGHT = 3.0
# Under --min-distance R a cell in an even patch (sky, skin) competes with the (2R+1)² cells
# around it for the same few photos: it is offered that many candidates (at most
# MIN_DISTANCE_CANDIDATES), so that re-ranking still has similar ones to choose from. Measured
# (t1 and t2, 200 across, 32 px, R = 5, real 2,000 photos): 16 → 121 candidates raised SSIM at
# 400 px from 0.587 to 0.659 (t1) and 0.498 to 0.582 (t2), mean ΔE2000 went from 9.67 to 10.26
# and 8.05 to 9.17; cell order (best-first or random) made no difference.
MIN_DISTANCE_CANDIDATES = 128
# Under --max-uses / --use-all the flow's arcs are the candidate lists: as many as keep it
# near-exact on small grids without a dense matrix on large ones (24 per cell at 100,000
# cells: 13 s against 18 s for 40, total cost +0.04 %; 16 leaves more cells to repair, 15 s).
QUOTA_ARCS = 2_400_000
# ... but only where the cap binds for many photos (room for fewer than QUOTA_TIGHT × the
# cells): under a loose cap (the default 1 % of 25,000 cells with 2,000 photos) the few photos
# over it are served from the usual candidates, and 96 per cell cost 3.8 s more for a worse
# mean ΔE (t1, 200 across: 9.99 against 9.66).
QUOTA_TIGHT = 4
QUOTA_CANDIDATES_MAX = 256

REPEAT_MODES = ("varied", "free")
# --repeat varied (the default): no photo beside itself, diagonals included (min distance 1;
# 0 only when the library has too few photos for a 3×3 window), and none in more than 1 % of
# the cells (at least twice its even share, and 2, so the cap leaves the flow room). Chosen in
# bench/bench_defaults.py over R 1-3 × caps (4× the even share, 1 % of cells, none) on 11
# targets, reported on 10 others (bench/results/defaults.md): the best mean rank of ΔE@400,
# SSIM@400 and SSIM@1600 among rules with no same-photo neighbour and no photo over 1 %.
VARIED_MIN_DISTANCE = 1
VARIED_CAP_SHARE = 0.01
VARIED_USES_FACTOR = 2
VARIED_MIN_USES = 2


def rules_for(repeat: str, n_cells: int, n_photos: int, rows: int, cols: int) -> tuple[int, int]:
    """(max_uses, min_distance) of a --repeat mode for this grid and library."""
    if repeat == "free" or not n_photos:
        return 0, 0
    md = VARIED_MIN_DISTANCE
    while md and min(rows, 2 * md + 1) * min(cols, 2 * md + 1) > n_photos // 2:
        md -= 1  # leave the window plenty of photos to choose from
    mu = max(
        VARIED_MIN_USES,
        math.ceil(VARIED_CAP_SHARE * n_cells),
        -(-VARIED_USES_FACTOR * n_cells // n_photos),
    )
    return (0 if mu >= n_cells else mu), md


@dataclass
class RenderOptions:
    tiles_across: int | None = None
    tile_count: int | None = None
    tile_size: int = 64
    aspect: str = "1:1"
    max_uses: int | None = None  # None: from --repeat
    min_distance: int | None = None  # None: from --repeat
    use_all: bool = False
    repeat: str = "varied"  # "varied": the defaults of rules_for(); "free": no limits
    seed: int = 0
    blend: float = 0.0
    candidates: int | None = None  # None: 16, more under min_distance (MIN_DISTANCE_CANDIDATES)
    grid: int | None = None  # k of the k×k Lab feature grid; None: the store's own
    rerank: int | None = None  # re-order candidates on a finer R×R grid (0: off; None: 6)
    score: bool = False  # also measure ΔE2000 / SSIM at 400 and 1600 px (quality.py)

    def candidates_per_cell(self, n_cells: int = 0, n_photos: int = 0) -> int:
        if self.candidates is not None:
            return self.candidates
        window = (2 * self.min_distance + 1) ** 2 if self.min_distance else 0
        k = max(16, min(window, MIN_DISTANCE_CANDIDATES))
        tight = self.use_all or (
            self.max_uses and (not n_photos or self.max_uses * n_photos < QUOTA_TIGHT * n_cells)
        )
        if tight and n_cells:
            # the flow's graph: on small grids near-dense (within 0.5 % of the exact optimum
            # at ≤ 5,000 cells), at most ~2.4M arcs on large ones
            k = max(k, min(QUOTA_CANDIDATES_MAX, QUOTA_ARCS // n_cells))
        return k

    def resolve_rules(self, n_cells: int, n_photos: int, rows: int, cols: int) -> None:
        """Fill in --max-uses / --min-distance that the user left to --repeat."""
        mu, md = rules_for(self.repeat, n_cells, n_photos, rows, cols)
        if self.max_uses is None:
            self.max_uses = mu
        if self.min_distance is None:
            self.min_distance = md

    def validate(self) -> None:
        if self.tiles_across is not None and self.tile_count is not None:
            raise OptionError("--tiles-across", "give --tiles-across or --tile-count, not both")
        if self.tiles_across is not None and not 1 <= self.tiles_across <= 100_000:
            raise OptionError(
                "--tiles-across", f"must be between 1 and 100000, got {self.tiles_across}"
            )
        if self.tile_count is not None and not 1 <= self.tile_count <= 10**9:
            raise OptionError("--tile-count", f"must be positive, got {self.tile_count}")
        if not 4 <= self.tile_size <= 4096:
            raise OptionError("--tile-size", f"must be between 4 and 4096, got {self.tile_size}")
        if self.repeat not in REPEAT_MODES:
            raise OptionError(
                "--repeat", f"must be one of {', '.join(REPEAT_MODES)}, got {self.repeat!r}"
            )
        if self.max_uses is not None and self.max_uses < 0:
            raise OptionError("--max-uses", f"must be 0 (no limit) or more, got {self.max_uses}")
        if self.min_distance is not None and self.min_distance < 0:
            raise OptionError("--min-distance", f"must be 0 or more, got {self.min_distance}")
        if not 0.0 <= self.blend <= 1.0:
            raise OptionError("--blend", f"must be between 0 and 1, got {self.blend}")
        if self.candidates is not None and not 1 <= self.candidates <= 4096:
            raise OptionError("--candidates", f"must be between 1 and 4096, got {self.candidates}")
        if self.grid is not None and not 1 <= self.grid <= 16:
            raise OptionError("--grid", f"must be between 1 and 16, got {self.grid}")
        if self.rerank is not None and not 0 <= self.rerank <= 16:
            raise OptionError("--rerank", f"must be 0 (off) or 1 to 16, got {self.rerank}")
        parse_aspect(self.aspect)


@dataclass
class RenderReport:
    render_id: int
    output: str
    width: int
    height: int
    cols: int
    rows: int
    cells: int
    distinct_tiles: int
    max_reuse: int
    mean_delta_e: float | None
    seconds: float
    mean_delta_e_best: float | None = None  # with no repetition rules, for comparison
    quality: dict | None = None  # {"400": {"delta_e", "ssim"}, "1600": {...}} with --score
    timings: dict = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    # distinct photos, share of the library used, max uses, smallest distance between two cells
    # of one photo, share of cells with a 4-neighbour of the same photo (placement.variety)
    variety: dict = field(default_factory=dict)
    rules: dict = field(default_factory=dict)  # the repetition rules the plan was made under

    def to_dict(self) -> dict:
        d = asdict(self)
        d["seconds"] = round(self.seconds, 3)
        d["timings"] = {k: round(v, 3) for k, v in self.timings.items()}
        for k in ("mean_delta_e", "mean_delta_e_best"):
            if d[k] is not None:
                d[k] = round(d[k], 3)
        return d


def parse_aspect(text: str) -> tuple[int, int]:
    try:
        w, h = (int(x) for x in text.split(":"))
        if w <= 0 or h <= 0 or w > 100 or h > 100:
            raise ValueError
    except ValueError:
        raise OptionError(
            "--aspect", f"must look like W:H with whole numbers 1–100, got {text!r}"
        ) from None
    return w, h


def output_format(path: str) -> str:
    from .imaging import FORMATS

    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise OptionError(
            "--output",
            f"unknown image format {ext or '(none)'!r}; use one of " + ", ".join(sorted(FORMATS)),
        )
    return FORMATS[ext]


def prepare_output(output: str) -> tuple[str, str]:
    """(absolute output path, format); `.dz` becomes the `.dzi` that dzsave writes. Refuses an
    unknown extension or a missing folder before any work."""
    fmt = output_format(output)
    path = str(Path(output).expanduser().resolve())
    if fmt == "dz" and path.lower().endswith(".dz"):
        path = path[:-3] + ".dzi"
    if not Path(path).parent.is_dir():
        raise OptionError("--output", f"folder {Path(path).parent} does not exist")
    return path, fmt


# ~300 bytes a cell while matching (features, candidates): 4M cells is ~1.2 GB, and a
# 4-gigapixel mosaic at 32 px tiles
MAX_CELLS = 4_000_000


def grid_size(tw: int, th: int, aspect: float, across: int | None, count: int | None):
    """cols × rows of cells of `aspect` (w/h) that cover a tw×th target."""
    if count is not None:
        across = max(1, round((count * tw / th / aspect) ** 0.5))
    across = across or 100
    rows = max(1, round(th / (tw / across / aspect)))
    if across * rows > MAX_CELLS:
        raise OptionError(
            "--tile-count" if count is not None else "--tiles-across",
            f"{across:,}×{rows:,} cells on this target, more than {MAX_CELLS:,}",
        )
    return across, rows


def _broken_thumbnail(photo_id: int) -> str:
    """What to do about a stored thumbnail that does not decode (its JPEG markers can be
    intact, so only `check --deep` finds it)."""
    return (
        f"the stored thumbnail of photo {photo_id} does not decode: run "
        "`mosaicdb check --deep --repair`, then `mosaicdb index --retry-errors`"
    )


def ensure_spec_vectors(lib: Library, spec, broken: list[int] | None = None) -> int:
    """Vectors of `spec` for the photos that lack one, derived from their stored thumbnails
    (the photo folders are not read) and kept in the catalog: once for another cell aspect or
    grid than the store's own, and by `check --repair` for a store vector gone missing.
    A thumbnail that does not decode stops a render with one line naming the fix; given a
    `broken` list (the repair), its photo's id goes there instead and the others go on.
    Returns how many were derived."""
    n = lib.catalog.count_missing_features(spec.key)
    if not n:
        return 0
    from . import imaging

    derived = 0
    with lib.progress.task(f"Deriving {spec.key} features", total=n) as t:
        for chunk in lib.catalog.iter_thumbnails_missing(spec.key):
            rows = []
            for pid, codec, data in chunk:
                try:
                    px = imaging.thumb_pixels(data, codec)
                except ImageError:
                    if broken is None:
                        raise RenderError(_broken_thumbnail(pid)) from None
                    broken.append(pid)
                    continue
                if spec.grid > lib.spec.grid:  # as index makes them (scan.process_batch)
                    v = imaging.tile_vectors(px, (lib.spec.grid, spec.grid), spec.aspect)[1]
                else:
                    v = imaging.tile_vector(px, spec.grid, spec.aspect)
                m = v.reshape(-1, 3).mean(axis=0)
                rows.append((pid, v.tobytes(), (float(m[0]), float(m[1]), float(m[2]))))
            lib.catalog.write_features(spec.key, rows)
            derived += len(rows)
            t.advance(len(chunk))
    return derived


def run(
    lib: Library, target: str | None, output: str, opts: RenderOptions, plan_id: int | None = None
) -> RenderReport:
    import numpy as np

    from . import features as F
    from . import imaging
    from . import vecindex as V
    from .placement import check_feasible, place

    t0 = time.monotonic()
    timings: dict[str, float] = {}
    warnings: list[str] = []
    opts.validate()
    output, fmt = prepare_output(output)

    if plan_id is not None:
        saved = lib.catalog.get_render(plan_id)
        if saved is None:
            raise NotFoundError(f"no render with id {plan_id}; see `mosaicdb renders`")
        sopts = json.loads(saved["options"])
        aw, ah = parse_aspect(sopts["aspect"])
        opts.aspect, opts.seed = sopts["aspect"], sopts["seed"]
        opts.max_uses, opts.min_distance = sopts["max_uses"], sopts["min_distance"]
        opts.use_all, opts.repeat = sopts.get("use_all", False), sopts.get("repeat", "free")
        cols, rows = saved["cols"], saved["rows"]
        target = target or saved["target"]
        spec = F.FeatureSpec.parse(saved["spec"])
    else:
        aw, ah = parse_aspect(opts.aspect)
        base = F.FeatureSpec(opts.grid) if opts.grid else lib.spec
        spec = base.with_aspect(aw, ah)
    tile_w = opts.tile_size
    tile_h = max(1, round(opts.tile_size * ah / aw))
    aspect = aw / ah

    # -- target and grid ------------------------------------------------------------------
    region = None
    if plan_id is None or (target and Path(target).exists()):
        if plan_id is None:
            head_w, head_h = imaging.image_size_or_error(target)
            cols, rows = grid_size(head_w, head_h, aspect, opts.tiles_across, opts.tile_count)
        img = imaging.load_target(target, max_width=cols * spec.grid * imaging.MIN_CELL_PX * 2)
        region = imaging.target_region(img, cols, rows, aspect)
    elif opts.blend:
        raise RenderError(f"the target {target} of render {plan_id} is gone; --blend needs it")
    else:
        warnings.append(f"target {target} is gone: no ΔE report")
    n = cols * rows
    W, H = cols * tile_w, rows * tile_h
    limit = imaging.MAX_SIDE.get(fmt)
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
    cells = fine_cells = None
    rerank = (F.RERANK_GRID if opts.rerank is None else opts.rerank) if plan_id is None else 0
    if region is not None and rerank > spec.grid:  # both grids from one Lab conversion
        cells, fine_cells = imaging.lab_grids(region, cols, rows, (spec.grid, rerank))
        cells = cells.reshape(n, spec.dim)
    elif region is not None:
        cells = imaging.lab_grid(region, cols, rows, spec.grid).reshape(n, spec.dim)
    timings["target"] = time.monotonic() - t0  # loaded, and its cells described
    if plan_id is None:
        t1 = time.monotonic()
        if spec.key != lib.spec.key:
            ensure_spec_vectors(lib, spec)
        index = lib.vector_index(spec)
        opts.resolve_rules(n, index.ntotal, rows, cols)
        check_feasible(
            n, index.ntotal, rows, cols, opts.max_uses, opts.min_distance, opts.use_all
        )
        search_index = lib.search_index(spec, index)
        with lib.progress.task("Matching cells", total=n) as t:
            k = min(opts.candidates_per_cell(n, index.ntotal), index.ntotal)
            cand_dist, cand_ids = V.search(search_index, cells, k)
            t.advance(n)
        if rerank:
            fine = F.FeatureSpec(rerank).with_aspect(aw, ah)
            ensure_spec_vectors(lib, fine)
            if fine_cells is None:
                fine_cells = imaging.lab_grid(region, cols, rows, fine.grid)
            fine_cells = fine_cells.reshape(n, fine.dim)
            cand_dist, cand_ids = _rerank(lib, fine, fine_cells, cand_ids)

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
                d, i = V.search(grid_index, _vectors_of(lib, spec, index, photo_ids), kk)
                return d * per_cell, i

        t2 = time.monotonic()
        plan = place(
            cand_ids,
            cand_dist,
            rows,
            cols,
            max_uses=opts.max_uses,
            min_distance=opts.min_distance,
            use_all=opts.use_all,
            seed=opts.seed,
            widen=widen,
            near_cells=near_cells,
            all_ids=all_ids,
        )
        timings["placement"] = time.monotonic() - t2
        timings["match"] = time.monotonic() - t1
        options = {**asdict(opts), "output": output}
        render_id = lib.catalog.save_render(
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
        plan = np.asarray(lib.catalog.plan(plan_id), dtype=np.int64)
        index = None
        have = lib.catalog.ok_photo_ids(plan)
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
    if opts.blend and region is not None:
        cell_rgb = imaging.rgb_grid(region, cols, rows, 1).reshape(rows, cols, 3)
    mosaic_lab = _assemble(
        lib,
        plan.reshape(rows, cols),
        tile_w,
        tile_h,
        output,
        fmt,
        opts.blend,
        cell_rgb,
        spec.grid,
        timings,
    )

    # -- report ------------------------------------------------------------------------------
    t3 = time.monotonic()
    mean_de = best_de = None
    if cells is not None:
        if index is None:
            index = lib.vector_index(spec)
        if mosaic_lab is None:  # no blend: the placed tiles' own feature grids
            mosaic_lab = _vectors_of(lib, spec, index, plan)
        if plan_id is None and (opts.max_uses or opts.min_distance or opts.use_all):
            best = _vectors_of(lib, spec, index, cand_ids[:, 0])
            best_de = float(F.ciede2000(cells.reshape(-1, 3), best.reshape(-1, 3)).mean())
        mean_de = float(F.ciede2000(cells.reshape(-1, 3), mosaic_lab.reshape(-1, 3)).mean())
    quality = None
    if opts.score:
        if fmt == "dz" or region is None:
            warnings.append("--score needs a single-file output and the target; not scored")
        else:
            from .quality import score

            t4 = time.monotonic()
            quality = {
                str(w): {k: round(v, 4) for k, v in s.items()}
                for w, s in score(output, target).items()
            }
            timings["score"] = time.monotonic() - t4
    uniq, counts = np.unique(plan, return_counts=True)
    if index is None:
        index = lib.vector_index(spec)
    from .placement import variety

    var = variety(plan, rows, cols, index.ntotal)
    timings["report"] = time.monotonic() - t3
    seconds = time.monotonic() - t0
    lib.catalog.update_render(
        render_id,
        output=output,
        width=W,
        height=H,
        distinct_tiles=len(uniq),
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
        {"max_uses": opts.max_uses, "min_distance": opts.min_distance, "use_all": opts.use_all,
         "repeat": opts.repeat},
    )


def _rerank(lib: Library, fine, fine_cells, cand_ids):
    """Each cell's candidates re-ordered by distance on the finer grid `fine`: the coarse
    search finds the right colours, the fine grid picks the tile whose layout (a dark corner,
    a bright edge) follows the cell's. Only the candidates' fine vectors are read. Returns
    (distances, ids); the ids are re-ordered in place in `cand_ids`, block by block, so that
    memory stays at the candidate lists themselves (128 a cell under --min-distance)."""
    import numpy as np

    from . import features as F

    n, k = cand_ids.shape
    step = max(1, 65_536 // k)  # bounded memory: 65,536 fine vectors (28 MB at 6×6) at a time
    present = np.zeros(int(cand_ids.max()) + 1, bool)  # the distinct candidates, without a sort
    for i in range(0, n, step):
        c = cand_ids[i : i + step]
        present[c[c >= 0]] = True
    blobs = lib.catalog.feature_vectors(fine.key, np.flatnonzero(present))
    if not blobs:
        return np.zeros(cand_ids.shape, np.float32), cand_ids
    ids = np.array(sorted(blobs), np.int64)
    vecs = F.unpack_vectors([blobs[i] for i in ids.tolist()], fine.dim)
    # |c - v|² = |c|² + |v|² - 2 c·v, so only the dot products need each cell's own gather
    g2 = fine.grid**2
    scale = np.tile(np.array([RERANK_L_WEIGHT**0.5, 1, 1], np.float32), g2)
    vecs, fine_cells = vecs * scale, fine_cells * scale
    v_norm, c_norm = (vecs * vecs).sum(1), (fine_cells * fine_cells).sum(1)
    dist = np.empty((n, k), np.float32)
    for i in range(0, n, step):
        j = slice(i, i + step)
        c = cand_ids[j]
        pos = np.minimum(np.searchsorted(ids, c), len(ids) - 1)
        dot = np.matmul(vecs[pos], fine_cells[j, :, None])[..., 0]
        d = (c_norm[j, None] + v_norm[pos] - 2 * dot) / g2
        d[(c < 0) | (ids[pos] != c)] = np.inf
        order = np.argsort(d, axis=1, kind="stable")
        dist[j] = np.take_along_axis(d, order, 1)
        cand_ids[j] = np.take_along_axis(c, order, 1)
    return dist, cand_ids


def _vectors_of(lib: Library, spec, index, ids):
    """Stored vectors for ids (with repeats), each distinct id looked up once: from the exact
    index, or from the catalog when the index is compressed (its vectors are approximate)."""
    import numpy as np

    from . import features as F
    from . import vecindex as V

    uniq, inverse = np.unique(ids, return_inverse=True)
    if not V.is_compressed(index):
        return V.reconstruct(index, uniq)[inverse]
    blobs = lib.catalog.feature_vectors(spec.key, uniq)
    return F.unpack_vectors([blobs[int(i)] for i in uniq], spec.dim)[inverse]


def _assemble(
    lib: Library,
    plan,
    tile_w: int,
    tile_h: int,
    output: str,
    fmt: str,
    blend: float,
    cell_rgb,
    k: int,
    timings: dict,
):
    """Place the tiles strip by strip into an uncompressed TIFF stream that the encoder reads
    as it goes (in memory, a few strips at a time); returns the Lab grid of the output cells
    when blending (measured on the pixels), else None."""
    import numpy as np

    from . import imaging

    rows, cols = plan.shape
    W, H = cols * tile_w, rows * tile_h
    t0 = time.monotonic()
    out = Path(output)
    tag = f".{out.name}.{os.getpid()}"
    if fmt == "dz":
        tmp_out = out.with_name(tag + ".tmp.dzi")
        tmp_files = out.with_name(tag + ".tmp_files")
    else:
        tmp_out = out.with_name(tag + ".tmp" + out.suffix)
        tmp_files = None
    # The plan says when each tile is needed again, so the cache keeps exactly the tiles that
    # will be reused (farthest next use evicted first when over budget): every distinct tile
    # is decoded once as long as the reused ones fit in TILE_CACHE_BYTES.
    row_sets = [list(dict.fromkeys(plan[r].tolist())) for r in range(rows)]  # distinct, in order
    uses: dict[int, list[int]] = {}
    for r in range(rows - 1, -1, -1):
        for p in row_sets[r]:
            uses.setdefault(p, []).append(r)  # descending: the next use is at the end
    cache: dict[int, np.ndarray] = {-1: np.full((tile_h, tile_w, 3), 255, np.uint8)}  # blank
    uses[-1] = [-1] * (rows * cols + 1)  # never evicted
    max_tiles = max(cols * 2, TILE_CACHE_BYTES // (tile_w * tile_h * 3))
    mosaic_lab = np.empty((rows, cols, 3 * k * k), np.float32) if blend else None

    # Tiles are decoded on two threads ahead of the row being placed: up to DECODE_AHEAD
    # tiles, read from the catalog in one query per window, decoded in chunks of DECODE_CHUNK
    # (one future each). Few, large steps: the Python work per tile is what limits a render.
    pending: dict[int, tuple] = {}  # photo id → (future of a chunk of tiles, index in it)
    scanned = [0]  # rows whose tiles have been looked at for prefetching

    def decode_chunk(items):
        out = []
        for pid, blob in items:
            try:
                out.append(imaging.decode_tile(*blob, tile_w, tile_h))
            except ImageError:
                raise RenderError(_broken_thumbnail(pid)) from None
        return out

    def submit(need):
        blobs = lib.catalog.thumbnails(need)
        if len(blobs) < len(need):
            gone = sorted(set(need) - set(blobs))
            raise RenderError(
                f"{len(gone)} photos of the plan have no stored thumbnail (ids "
                f"{', '.join(map(str, gone[:5]))}): run `mosaicdb check --repair`"
            )
        for i in range(0, len(need), DECODE_CHUNK):
            chunk = need[i : i + DECODE_CHUNK]
            fut = pool.submit(decode_chunk, [(p, blobs[p]) for p in chunk])
            pending.update((p, (fut, j)) for j, p in enumerate(chunk))

    def prefetch(r):
        # tiles of row r evicted since they were looked at: now
        need = [p for p in row_sets[r] if p not in cache and p not in pending]
        if need:
            submit(need)
        if len(pending) > DECODE_AHEAD // 2:
            return
        need = {}
        while scanned[0] < rows and len(pending) + len(need) < DECODE_AHEAD:
            for p in row_sets[scanned[0]]:
                if p not in cache and p not in pending:
                    need[p] = None
            scanned[0] += 1
        if need:
            submit(list(need))

    f = src = None
    encode_error: list[BaseException] = []
    # dzsave takes a base name and adds .dzi and _files itself
    target_name = str(tmp_out)[: -len(".dzi")] if fmt == "dz" else str(tmp_out)

    def encode():
        try:
            imaging.save_strips(src, target_name, fmt)
        except BaseException as e:  # reported by the main thread
            encode_error.append(e)
            f.abort()

    # Tiles are small: libvips' own threads cost more than they give; two Python threads
    # decoding whole tiles, and the encoder in a third, use both cores better.
    with imaging.one_libvips_thread():
        try:
            f = imaging.StripTiff(W, H, tile_h)
            src = f.source()
            encoder = threading.Thread(target=encode, name="mosaicdb-encode", daemon=True)
            encoder.start()
            with ThreadPoolExecutor(2) as pool, lib.progress.task("Rendering", total=rows) as t:
                for r in range(rows):
                    if encode_error:
                        break
                    scanned[0] = max(scanned[0], r)
                    prefetch(r)
                    for p in row_sets[r]:
                        if p not in cache:
                            fut, j = pending.pop(p)
                            cache[p] = fut.result()[j]
                    row_ids = plan[r].tolist()
                    if blend:
                        strip = np.empty((tile_h, W, 3), np.uint8)
                        for c, p in enumerate(row_ids):
                            tile = cache[p]
                            off = blend * (cell_rgb[r, c] - tile.reshape(-1, 3).mean(axis=0))
                            tile = np.clip(tile + off.astype(np.float32), 0, 255).astype(np.uint8)
                            strip[:, c * tile_w : (c + 1) * tile_w] = tile
                    else:  # (tile_h, cols, tile_w, 3) is the strip's own memory layout
                        strip = np.stack([cache[p] for p in row_ids], axis=1).reshape(tile_h, W, 3)
                    for p in row_sets[r]:
                        uses[p].pop()
                        if not uses[p]:
                            del cache[p]  # never needed again
                    if len(cache) > max_tiles:
                        for p in sorted(cache, key=lambda q: uses[q][-1])[max_tiles:]:
                            del cache[p]
                    if blend:
                        mosaic_lab[r] = imaging.lab_grid(strip, cols, 1, k)[0]
                    f.write(strip)
                    t.advance(1)
            timings["tiles"] = time.monotonic() - t0
            encoder.join()
            if encode_error:
                raise encode_error[0]
            if fmt == "dz":
                _replace_deep_zoom(tmp_out, tmp_files, out, out.with_name(tag + ".old_files"))
            else:
                os.replace(tmp_out, out)
            timings["tiles+encode"] = time.monotonic() - t0
        except BaseException:
            if f is not None:
                f.abort()
                if src is not None and encoder.is_alive():
                    encoder.join()
            raise
        finally:
            if tmp_out.exists():
                tmp_out.unlink()
            if tmp_files is not None and tmp_files.exists():
                shutil.rmtree(tmp_files)
    return mosaic_lab


def _replace_deep_zoom(tmp_dzi: Path, tmp_files: Path, out: Path, aside: Path) -> None:
    """Put a new Deep Zoom output (NAME.dzi and NAME_files/) where the old one was. It is two
    renames, so the old tiles wait at `aside` until the new .dzi is in: if either rename
    fails, the old output is whole again (and the new one back in the temporary names, which
    the caller removes)."""
    files = out.with_name(out.stem + "_files")
    had = files.exists()
    if had:
        shutil.rmtree(aside, ignore_errors=True)  # left by a run with this pid that died here
        os.replace(files, aside)
    try:
        os.replace(tmp_files, files)
        try:
            os.replace(tmp_dzi, out)
        except BaseException:
            os.replace(files, tmp_files)
            raise
    except BaseException:
        if had:
            os.replace(aside, files)
        raise
    if had:  # the new output is in place: removing the old tiles may fail without harm
        shutil.rmtree(aside, ignore_errors=True)


def sheet(
    lib: Library,
    output: str,
    *,
    tile_size: int = 64,
    across: int | None = None,
    status: str | None = None,
    sort: str | None = None,
    **filters,
) -> dict:
    """A contact sheet of the stored thumbnails (no library access), in the order of `sort`
    as `ls` sorts, by default by colour: greys dark to light, then by hue and lightness.
    The other filters are those of `ls`. Same bounded-memory assembly as render."""
    import math

    import numpy as np

    from .queries import GREY_CHROMA, SORTS, listing

    output, fmt = prepare_output(output)
    if not 4 <= tile_size <= 1024:
        raise OptionError("--tile-size", f"must be between 4 and 1024, got {tile_size}")
    if across is not None and across < 1:
        raise OptionError("--across", f"must be positive, got {across}")
    if status == "error":
        raise OptionError("--status", "photos that failed have no thumbnail; see `mosaicdb errors`")
    if status not in (None, "ok"):
        raise OptionError("--status", f"must be ok, got {status!r}")
    if sort not in (None, "colour", *SORTS):
        raise OptionError("--sort", "must be one of colour, " + ", ".join(SORTS))
    by_colour = sort in (None, "colour")
    if filters.get("near") is not None and not by_colour:
        raise OptionError("--sort", "does not go with --near (its photos are laid out by colour)")
    rows_ = listing(lib, status="ok", sort=None if by_colour else sort, **filters)
    rows_ = [r for r in rows_ if r["lab"] is not None]
    if not rows_:
        raise NotFoundError("no photos match; see `mosaicdb ls`")

    def colour_key(r):
        L, a, b = r["lab"]
        if math.hypot(a, b) < GREY_CHROMA:
            return (0, 0, L)
        return (1, int(math.degrees(math.atan2(b, a)) % 360 // 15), L)

    if by_colour:
        rows_.sort(key=colour_key)
    ids = np.array([r["id"] for r in rows_], dtype=np.int64)
    cols = min(across, len(ids)) if across else max(1, math.ceil(math.sqrt(len(ids))))
    nrows = math.ceil(len(ids) / cols)
    if fmt in ("jpeg", "webp"):
        from .imaging import MAX_SIDE

        if max(cols, nrows) * tile_size > MAX_SIDE[fmt]:
            raise RenderError(f"the sheet is too big for {fmt.upper()}; write .tif or .dz")
    plan = np.full(cols * nrows, -1, dtype=np.int64)
    plan[: len(ids)] = ids
    timings: dict = {}
    _assemble(
        lib,
        plan.reshape(nrows, cols),
        tile_size,
        tile_size,
        output,
        fmt,
        0.0,
        None,
        lib.spec.grid,
        timings,
    )
    return {
        "output": output,
        "photos": len(ids),
        "cols": cols,
        "rows": nrows,
        "width": cols * tile_size,
        "height": nrows * tile_size,
        "seconds": round(timings.get("tiles+encode", 0.0), 3),
    }
