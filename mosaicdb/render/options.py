"""The render stage's options and report: what --repeat means (rules_for), the options and
their checks, the report, and what a re-render of a saved plan (`--plan`) may change and where
an output may go."""

from __future__ import annotations

import math
import os
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING

from mosaicdb.errors import OptionError
from mosaicdb.records import display_path
from mosaicdb.target import parse_aspect

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


# Re-ranking on a 6×6 grid with lightness weighted 3× picks the candidate whose light and dark
# parts sit where the cell's do (chosen in bench/ablation_quality.py; bench/README.md).
RERANK_L_WEIGHT = 3.0
# ... in coordinates where chroma is compressed as CIEDE2000 weighs it (features.compress_chroma,
# k = 0.045: ΔE00's S_C); 0 = plain Lab (bench/bench_matching.py).
RERANK_CHROMA = 0.045
# Under --min-distance R a cell competes with its (2R+1)² neighbours for the same few photos:
# it gets that many candidates, so that re-ranking still has similar ones (bench/README.md).
MIN_DISTANCE_CANDIDATES = 128
# Under a cap the flow's arcs are the candidate lists: near-dense on small grids, bounded on
# large ones; fewer where the cap binds for few photos (room ≥ QUOTA_TIGHT × the cells), but
# enough for re-ranking to find another similar tile (bench/README.md).
QUOTA_ARCS = 2_400_000
QUOTA_ARCS_LOOSE = 1_000_000
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
    dupes: str = "group"  # "group": near-duplicates are one photo to the rules; "separate"
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
        if (self.max_uses or self.use_all) and n_cells:
            # the flow's graph: on small grids near-dense (within 0.5 % of the exact optimum
            # at ≤ 5,000 cells), at most ~2.4M arcs on large ones
            arcs = QUOTA_ARCS if tight else QUOTA_ARCS_LOOSE
            k = max(k, min(QUOTA_CANDIDATES_MAX, arcs // n_cells))
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
        if self.dupes not in ("group", "separate"):
            raise OptionError("--dupes", f"must be group or separate, got {self.dupes!r}")
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


# What a saved plan fixes: these options would change the plan, so a re-render of it
# (`--plan ID`) refuses them instead of leaving them unused (the option names as the CLI has
# them). Tile size, format, --blend and --score are the re-render's own.
PLAN_FIXES = {
    "tiles_across": "--tiles-across",
    "tile_count": "--tile-count",
    "aspect": "--aspect",
    "max_uses": "--max-uses",
    "min_distance": "--min-distance",
    "use_all": "--use-all",
    "repeat": "--repeat",
    "dupes": "--dupes",
    "seed": "--seed",
    "candidates": "--candidates",
    "grid": "--grid",
    "rerank": "--rerank",
}


def check_replay(opts: RenderOptions, target: str | None, saved: dict) -> None:
    """Refuse options a saved plan fixes, and a target other than the plan's."""
    default = RenderOptions()
    for name, flag in PLAN_FIXES.items():
        if getattr(opts, name) != getattr(default, name):
            raise OptionError(
                flag,
                f"does not go with --plan {saved['id']}: the plan fixes it (render the target "
                "without --plan for a new plan)",
            )
    if target and os.path.exists(saved["target"]):
        if os.path.realpath(target) != os.path.realpath(saved["target"]):
            raise OptionError(
                "TARGET",
                f"does not go with --plan {saved['id']}: the plan was made from "
                f"{saved['target']} (render {target} without --plan for a new plan)",
            )


def check_output(ctx: Context, output: str, target: str | None) -> None:
    """Refuse an output that would overwrite the target, or land in an indexed folder (the
    next `index` would take the mosaic for a photo); `--force` skips this."""
    out = os.path.realpath(output)
    if target and os.path.exists(target) and out == os.path.realpath(target):
        raise OptionError(
            "--output", f"is the target image {target}: it would be overwritten (--force to do so)"
        )
    where = os.fsencode(out)
    for _, root in ctx.catalog.roots():
        if where.startswith(root.rstrip(b"/") + b"/"):
            raise OptionError(
                "--output",
                f"lies in the indexed folder {display_path(root)}: the next `mosaicdb index` "
                "would take the mosaic for a photo; write it elsewhere (or --force)",
            )
