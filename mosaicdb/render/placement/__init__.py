"""Placement: choose one photo per cell from its nearest candidates under the repetition rules,
as an optimisation over the whole grid.

Rules: `max_uses` N (a photo fills at most N cells; 0 = no limit), `use_all` (every photo at
least once when there are at least as many cells as photos; otherwise no photo twice) and
`min_distance` R (the same photo never twice within a (2R+1)×(2R+1) square; 0 = off).

Quotas are a min-cost flow (OR-Tools `SimpleMinCostFlow`): cell → candidate photo (cost: the
match distance) → sink (capacity N; under `use_all` a photo's uses past its first cost a
bonus, so the flow uses every photo it can reach). Only the FAISS candidate lists are arcs —
no cells × photos matrix. Cells the sparse graph cannot serve go through an overflow arc
and are searched again among the photos with uses left, solved as a smaller flow; photos
`use_all` needs but no cell listed are offered to their nearest cells (`near_cells`) and the
flow solved again. `min_distance` runs on the flow's answer: cells that break it, the ones
that lose least by moving first, move to their best candidate the rules allow, then every
cell takes a better candidate wherever the rules leave room. Same inputs and seed give the
same plan (the seed only breaks exact ties).

Layout: rules.py (refusals, the per-photo cap), graph.py (the candidate graph and its flow),
one module per solver (quota.py, spread.py) listed in SOLVERS in the order they run, and
variety.py (the report's numbers). A new solver is a module with `applies(rules)` and
`solve(graph, pos, rules, widen, near_cells)` and a line in SOLVERS.
"""

from __future__ import annotations

import numpy as np

from mosaicdb.errors import RenderError
from mosaicdb.render.placement import quota, spread
from mosaicdb.render.placement.graph import Graph
from mosaicdb.render.placement.groups import Groups
from mosaicdb.render.placement.rules import Rules, Widen, check_feasible, photo_cap
from mosaicdb.render.placement.variety import variety

__all__ = ["SOLVERS", "Groups", "check_feasible", "photo_cap", "place", "variety"]

# The solvers, in the order they run; each takes the plan so far (None: none yet) and returns
# one. No solver applies when no rule is set: each cell gets its best candidate.
SOLVERS = (quota, spread)


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
) -> np.ndarray:
    """Return the chosen photo id per cell (row-major), shape (rows*cols,).

    cand_ids/cand_dist: (cells, K) nearest candidates, best first (id -1 = empty slot), and
    their squared distances. widen(cells, allowed, k) -> (dist, ids), (len(cells), k): the k
    nearest photos of those cells among all_ids[allowed], best first. near_cells(photos,
    allowed, k) -> (dist, cells): the k nearest cells of those photo ids (all cells; `allowed`
    is unused), for --use-all. Distances from the callbacks should be on cand_dist's scale.
    all_ids: every photo id that can appear.
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
    g = Graph(all_ids, cand_ids, cand_dist, np.random.default_rng(seed))
    pos = None
    for solver in SOLVERS:
        if solver.applies(rules):
            pos = solver.solve(g, pos, rules, widen, near_cells)
    if pos is None:
        pos = g.best()
    if (pos < 0).any():
        raise RenderError(
            "the repetition rules cannot be met for this grid; loosen --max-uses / --min-distance"
        )
    return all_ids[pos]
