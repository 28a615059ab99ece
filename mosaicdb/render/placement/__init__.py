"""Placement: choose one photo per cell from its nearest candidates under the repetition rules,
as an optimisation over the whole grid.

Rules: `max_uses` N (a photo fills at most N cells; 0 = no limit), `use_all` (every photo at
least once when there are at least as many cells as photos; otherwise no photo twice) and
`min_distance` R (the same photo never twice within a (2R+1)×(2R+1) square; 0 = off).

Quotas are a min-cost flow (OR-Tools `SimpleMinCostFlow`): cell → candidate photo (cost: the
match distance) → sink (capacity N; under `use_all` a photo's uses past its first cost a
bonus, so the flow uses every photo it can reach). Only the FAISS candidate lists are arcs —
no cells × photos matrix. Under a tight cap (room under ROUTE_ROOM × the cells) the lists
cannot serve every cell — similar cells list the same photos — so routing (route.py) first
solves the problem between small groups of cells and photos and adds, for each cell, the
photos of the groups its group was sent to: one flow then serves every cell. Cells the graph
still cannot serve go through an overflow arc and are searched again among the photos with
uses left, solved as a smaller flow; photos `use_all` needs but no cell listed are offered to
their nearest cells (`near_cells`) and the flow solved again. `min_distance` runs on the
flow's answer: cells that break it, the ones that lose least by moving first, move to their
best candidate the rules allow, then every cell takes a better candidate wherever the rules
leave room (with the cells' and photos' vectors, also counting how differently from its
neighbours it errs in lightness). Same inputs and seed give the same plan (the seed only
breaks exact ties).

Layout: rules.py (refusals, the per-photo cap), graph.py (the candidate graph and its flow),
route.py (the routed arcs), one module per solver (quota.py, spread.py) listed in SOLVERS in
the order they run, groups.py (near-duplicates as one photo) and variety.py (the report's
numbers). A new solver is a module with `applies(rules)` and
`solve(graph, pos, rules, widen, near_cells, space)` and a line in SOLVERS.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from mosaicdb.errors import RenderError
from mosaicdb.render.placement import quota, route, spread
from mosaicdb.render.placement.graph import Graph
from mosaicdb.render.placement.groups import Groups
from mosaicdb.render.placement.rules import Rules, Space, Widen, check_feasible, photo_cap
from mosaicdb.render.placement.variety import variety

__all__ = ["SOLVERS", "Groups", "Space", "check_feasible", "photo_cap", "place", "variety"]

# The solvers, in the order they run; each takes the plan so far (None: none yet) and returns
# one. No solver applies when no rule is set: each cell gets its best candidate.
SOLVERS = (quota, spread)


# A cap is tight when the photos' room (cap × photos) is under this many times the cells: the
# cells' own candidate lists then cannot serve them all, and routing (route.py) adds the arcs.
ROUTE_ROOM = 2


# ... and the flow then keeps each cell's first candidates up to ROUTE_NEAREST_ARCS in all (at
# least ROUTE_NEAREST each): the routed arcs stand in for the rest (37 a cell at 64,000 cells
# were 2.4M arcs, a second flow's worth of time). On small grids that is every candidate; 8
# instead of 32 a cell tripled the gap to the exact optimum on crowded 2,000-cell grids.
ROUTE_NEAREST_ARCS = 1_000_000
ROUTE_NEAREST = 8


def place(
    cand_ids: np.ndarray,
    cand_dist: np.ndarray,
    rows: int,
    cols: int,
    *,
    max_uses: int = 0,
    min_distance: int = 0,
    use_all: bool = False,
    seed: int = 0,
    widen: Widen | None = None,
    near_cells: Widen | None = None,
    all_ids: np.ndarray | None = None,
    space: Space | None = None,
) -> np.ndarray:
    """Return the chosen photo id per cell (row-major), shape (rows*cols,).

    cand_ids/cand_dist: (cells, K) nearest candidates, best first (id -1 = empty slot), and
    their squared distances. widen(cells, allowed, k) -> (dist, ids), (len(cells), k): the k
    nearest photos of those cells among all_ids[allowed], best first. near_cells(photos,
    allowed, k) -> (dist, cells): the k nearest cells of those photo ids (all cells; `allowed`
    is unused), for --use-all. Distances from the callbacks should be on cand_dist's scale.
    all_ids: every photo id that can appear. space: the cells' and photos' vectors, for routing
    under a tight cap (without it the flow works from the candidate lists alone).
    """
    n = rows * cols
    if all_ids is None:
        all_ids = np.unique(cand_ids[cand_ids >= 0])
    all_ids = np.sort(np.asarray(all_ids, dtype=np.int64))
    n_photos = len(all_ids)
    cap = photo_cap(n, n_photos, rows, cols, max_uses, min_distance, use_all)
    bonus = use_all and n > n_photos
    if not cap and not min_distance and not bonus:  # no rule: every cell its best candidate
        return cand_ids[:, 0].copy()
    rules = Rules(rows, cols, max_uses, min_distance, use_all, cap or n, bonus)
    rng = np.random.default_rng(seed)
    if space is not None and cap and not bonus and cap * n_photos < ROUTE_ROOM * n:
        cell, photo, sq = route.arcs(space.cells, space.photos(), cap)
        sq = sq * space.scale
        top = float(np.sqrt(sq.max())) if len(sq) else 0.0
        k = max(ROUTE_NEAREST, ROUTE_NEAREST_ARCS // n)
        g = Graph(all_ids, cand_ids[:, :k], cand_dist[:, :k], rng, top)
        g.add_pos(cell, photo, sq)
        rules = dataclasses.replace(rules, routed=True)
    else:
        g = Graph(all_ids, cand_ids, cand_dist, rng)
    pos = None
    for solver in SOLVERS:
        if solver.applies(rules):
            pos = solver.solve(g, pos, rules, widen, near_cells, space)
    if pos is None:
        pos = g.best()
    if (pos < 0).any():
        raise RenderError(
            "the repetition rules cannot be met for this grid; loosen --max-uses / --min-distance"
        )
    return all_ids[pos]
