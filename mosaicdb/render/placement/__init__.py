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
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from mosaicdb.errors import RenderError

# Cells left over by the flow are searched again with at least this many candidates each.
WIDEN_K = 32
# Integer costs for the solver: the largest candidate cost maps to COST_SCALE (x2 for ties).
COST_SCALE = 20_000
# Leftover repair solves the whole flow again this many times, then only the cells left.
FULL_RESOLVES = 2
# Arcs a round of leftover repair may add: on a tight, crowded instance (64,000 cells,
# 22,000 photos, 3 uses each) an unbounded widening reached 2,600 candidates per waiting
# cell, ~50M arcs, 95 s and 6.7 GB.
LEFTOVER_ARCS = 4_000_000
# ... and when more than GREEDY_LEFTOVERS cells still wait after the full re-solves, they are
# served greedily (_greedy_fill, GREEDY_K proposals each): sub-flows over 25,000 waiting cells
# took 35 s there for a mean ΔE 0.1 lower.
GREEDY_LEFTOVERS = 2_000
GREEDY_K = 8
# Leftover repair also offers photos with room to their nearest cells while photos × cells
# (the exact search that takes) stays under this.
REVERSE_BUDGET = 200_000_000
# Improvement sweeps after --min-distance repairs (each ~1 s at 64,000 cells).
SPREAD_SWEEPS = 2
# --min-distance considers at most this many candidates per cell (the cheapest).
SPREAD_CANDIDATES = 64

Widen = Callable[[np.ndarray, np.ndarray, int], tuple[np.ndarray, np.ndarray]]


def check_feasible(
    n_cells: int,
    n_photos: int,
    rows: int,
    cols: int,
    max_uses: int,
    min_distance: int,
    use_all: bool = False,
) -> None:
    """Refuse, before any work, rules that no placement can satisfy."""
    if n_photos == 0:
        raise RenderError("the store has no indexed photos: run `mosaicdb index PATH` first")
    if max_uses and max_uses * n_photos < n_cells:
        raise RenderError(
            f"--max-uses {max_uses} with {n_photos:,} photos fills at most "
            f"{max_uses * n_photos:,} cells, but the grid has {n_cells:,}: raise --max-uses "
            f"to {-(-n_cells // n_photos)}, use fewer tiles, or index more photos"
        )
    if min_distance:
        # With this many photos a cell always finds one that is not in its (2R+1)² window, so
        # the repair can never dead-end (fewer can work, but not reliably).
        side_r, side_c = min(rows, 2 * min_distance + 1), min(cols, 2 * min_distance + 1)
        block = side_r * side_c
        if block > n_photos:
            raise RenderError(
                f"--min-distance {min_distance} needs at least {block:,} different photos "
                f"(a {side_r}×{side_c} window around a cell holds distinct photos), "
                f"the store has {n_photos:,}"
            )


def photo_cap(
    n_cells: int, n_photos: int, rows: int, cols: int, max_uses: int, min_distance: int,
    use_all: bool,
) -> int:
    """The most cells one photo may fill under the rules (0: no limit). Under --min-distance R
    no photo fits more than ceil(rows/(R+1)) × ceil(cols/(R+1)) cells, so the flow is told."""
    cap = max_uses or n_cells
    if min_distance:
        s = min_distance + 1
        cap = min(cap, -(-rows // s) * -(-cols // s))
    if use_all and n_photos >= n_cells:
        cap = 1
    return 0 if cap >= n_cells else cap


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
    if not cap and not min_distance and not bonus:
        return cand_ids[:, 0].copy()
    rng = np.random.default_rng(seed)
    g = _Graph(all_ids, cand_ids, cand_dist, rng)
    if cap or bonus:
        pos = g.solve(np.arange(n), cap or n, bonus)
        pos = _fill_leftovers(g, pos, cap or n, widen, bonus, near_cells)
        if bonus:
            pos = _use_every_photo(g, pos, cap or n, near_cells)
    else:
        pos = g.best()
    if min_distance:
        pos = _spread(g, pos, rows, cols, min_distance, cap or n, widen, rng, bonus)
    if (pos < 0).any():
        raise RenderError(
            "the repetition rules cannot be met for this grid; loosen --max-uses / --min-distance"
        )
    return all_ids[pos]


class _Graph:
    """The cells' candidate arcs as photo positions (index into all_ids) and integer costs,
    extendable with the arcs that widened searches find."""

    def __init__(self, all_ids, cand_ids, cand_dist, rng):
        self.all_ids = all_ids
        self.n, k = cand_ids.shape
        self.n_photos = len(all_ids)
        cost = np.sqrt(np.maximum(np.asarray(cand_dist, np.float64), 0))
        finite = np.isfinite(cost) & (cand_ids >= 0)
        top = float(cost[finite].max()) if finite.any() else 1.0
        self.scale = COST_SCALE / max(top, 1e-9)
        self.rng = rng
        pos = self._pos(cand_ids)
        ok = finite & (pos >= 0)
        cell = np.broadcast_to(np.arange(self.n)[:, None], cand_ids.shape)
        self.cell, self.photo, self.cost = [cell[ok]], [pos[ok]], [self._int(cost[ok])]
        self._flat = None

    def _pos(self, ids):
        p = np.minimum(np.searchsorted(self.all_ids, ids), self.n_photos - 1)
        return np.where((ids >= 0) & (self.all_ids[p] == ids), p, -1)

    def _int(self, cost):
        # x2 plus a seeded 0/1: exact ties are broken by the seed, nothing else is
        c = np.minimum(np.round(cost * self.scale), COST_SCALE * 4).astype(np.int64)
        return 2 * c + self.rng.integers(0, 2, c.shape)

    def add(self, cells, dist, ids):
        """Arcs from cells (len W) to their (W, k) ids at squared distances dist."""
        pos = self._pos(ids)
        cost = np.sqrt(np.maximum(np.asarray(dist, np.float64), 0))
        ok = (pos >= 0) & np.isfinite(cost)
        cell = np.broadcast_to(np.asarray(cells)[:, None], ids.shape)
        self.cell.append(cell[ok])
        self.photo.append(pos[ok])
        self.cost.append(self._int(cost[ok]))
        self._flat = None

    def arcs(self):
        """Every (cell, photo) arc once, the cheapest, sorted by cell then photo."""
        if self._flat is None:
            c, p, w = (np.concatenate(x) for x in (self.cell, self.photo, self.cost))
            key = c * self.n_photos + p
            order = np.argsort(key, kind="stable")
            key, w = key[order], w[order]
            first = np.ones(len(key), bool)
            first[1:] = key[1:] != key[:-1]
            starts = np.flatnonzero(first)
            if len(starts) < len(key):  # a widened search found an arc again: the cheapest
                w = np.minimum.reduceat(w, starts) if len(starts) else w
                key = key[starts]
            c, p = np.divmod(key, self.n_photos)
            self._flat = (c, p, w)
            self._by_cost = None
            self.cell, self.photo, self.cost = [c], [p], [w]
            self._lookup = (key, w)
        return self._flat

    def by_cost(self):
        """The arcs sorted by cell, then cost (cheapest first)."""
        c, p, w = self.arcs()
        if self._by_cost is None:
            order = np.lexsort((w, c))
            self._by_cost = (c[order], p[order], w[order])
        return self._by_cost

    def best(self) -> np.ndarray:
        c, p, _ = self.by_cost()
        out = np.full(self.n, -1, np.int64)
        first = np.ones(len(c), bool)
        first[1:] = c[1:] != c[:-1]
        out[c[first]] = p[first]
        return out

    def cost_of(self, cells: np.ndarray, photos: np.ndarray) -> np.ndarray:
        """Integer cost of cell→photo arcs (a large cost where there is no arc)."""
        self.arcs()
        key, w = self._lookup
        photos = np.asarray(photos)
        want = np.asarray(cells) * self.n_photos + photos
        if not len(key):
            return np.full(len(want), 16 * COST_SCALE, np.int64)
        i = np.minimum(np.searchsorted(key, want), len(key) - 1)
        return np.where((photos >= 0) & (key[i] == want), w[i], 16 * COST_SCALE)

    def solve(self, cells: np.ndarray, cap, bonus: bool, uses=None) -> np.ndarray:
        """Min-cost flow of `cells` onto photos with `cap - uses` room each. Returns the
        photo position per cell of the whole grid (-1 for cells not served, and for cells
        not in `cells`)."""
        from ortools.graph.python import min_cost_flow

        c, p, w = self.arcs()
        keep = np.zeros(self.n, bool)
        keep[cells] = True
        sel = keep[c]
        c, p, w = c[sel], p[sel], w[sel]
        room = np.full(self.n_photos, cap, np.int64) - (0 if uses is None else uses)
        sel = room[p] > 0
        c, p, w = c[sel], p[sel], w[sel]
        m, P = len(cells), self.n_photos
        local = np.full(self.n, -1, np.int64)
        local[cells] = np.arange(m)
        sink, over = m + P, m + P + 1
        extra = 4 * COST_SCALE if bonus else 0
        # dearer than any one arc, so that no cell is left out where it could be served
        # directly; a low bound keeps the cost-scaling solver fast (its rounds grow with the
        # log of the largest cost: 2× faster than a 8× bound at 100,000 cells). Cells it leaves
        # out are searched again (_fill_leftovers).
        overflow = 2 * (int(w.max(initial=0)) + extra) + 1
        f = min_cost_flow.SimpleMinCostFlow()
        f.add_arcs_with_capacity_and_unit_cost(local[c], m + p, np.ones(len(c), np.int64), w)
        room = np.maximum(room, 0)
        photos = np.arange(P)
        if bonus:  # a photo's first use is free, the others cost `extra`: use every photo
            f.add_arcs_with_capacity_and_unit_cost(
                m + photos, np.full(P, sink), np.minimum(room, 1), np.zeros(P, np.int64)
            )
            f.add_arcs_with_capacity_and_unit_cost(
                m + photos, np.full(P, sink), np.maximum(room - 1, 0), np.full(P, extra)
            )
        else:
            f.add_arcs_with_capacity_and_unit_cost(
                m + photos, np.full(P, sink), room, np.zeros(P, np.int64)
            )
        f.add_arcs_with_capacity_and_unit_cost(
            np.arange(m), np.full(m, over), np.ones(m, np.int64), np.full(m, overflow)
        )
        f.add_arc_with_capacity_and_unit_cost(over, sink, m, 0)
        supply = np.zeros(m + P + 2, np.int64)
        supply[:m] = 1
        supply[sink] = -m
        f.set_nodes_supplies(np.arange(m + P + 2), supply)
        status = f.solve()
        if status != f.OPTIMAL:
            raise RenderError(f"the placement solver failed ({status})")
        flow = f.flows(np.arange(len(c)))
        out = np.full(self.n, -1, np.int64)
        used = flow > 0
        out[c[used]] = p[used]
        return out


def _fill_leftovers(g: _Graph, pos, cap, widen, bonus=False, near_cells=None):
    """Cells the flow left unserved (their candidates were full) are searched again among
    the photos with uses left. The first FULL_RESOLVES times the whole flow is solved again
    with those arcs added (so that the cells holding the full photos can still give them
    up); after that only the waiting cells are, onto the room that is left, which always
    progresses. The search widens each round."""
    k = WIDEN_K
    rounds = 0
    while (pos < 0).any():
        uses = np.bincount(pos[pos >= 0], minlength=g.n_photos)
        allowed = uses < cap
        n_allowed = int(allowed.sum())
        waiting = np.flatnonzero(pos < 0)
        if widen is None or not n_allowed:
            break
        if rounds >= FULL_RESOLVES and len(waiting) > GREEDY_LEFTOVERS:
            return _greedy_fill(g, pos, cap, widen)
        widest = min(n_allowed, max(WIDEN_K, LEFTOVER_ARCS // len(waiting)))
        k = min(max(k, -(-4 * len(waiting) // max(1, cap * n_allowed))), widest)
        for i in range(0, len(waiting), max(1, 2_000_000 // k)):  # bounded memory
            part = waiting[i : i + 2_000_000 // k]
            d, ids = widen(part, allowed, k)
            g.add(part, d, ids)
        if rounds < FULL_RESOLVES:
            if near_cells is not None and n_allowed * g.n <= REVERSE_BUDGET:
                # and the photos with room to their nearest cells: a chain of moves (a cell
                # takes a photo it did not list so that another can take its own) is open
                _add_reverse(g, np.flatnonzero(allowed), near_cells, WIDEN_K)
            got = g.solve(np.arange(g.n), cap, bonus)
        else:
            got = g.solve(waiting, cap, False, uses)
            got = np.where(pos < 0, got, pos)
        rounds += 1
        if (got < 0).sum() >= len(waiting):
            if k >= widest and rounds > FULL_RESOLVES:
                break
        k = min(k * 4, n_allowed)
        pos = got
    return pos


def _greedy_fill(g: _Graph, pos, cap, widen):
    """The cells still waiting after the full re-solves, when there are many (a tight cap on a
    crowded library): each proposes its nearest photos with room, nearest first, and a photo
    takes the cheapest proposals it has room for; repeated on the room that is left. Every
    round serves at least one cell per photo with room."""
    pos = pos.copy()
    while True:
        waiting = np.flatnonzero(pos < 0)
        uses = np.bincount(pos[pos >= 0], minlength=g.n_photos)
        room = cap - uses
        if not len(waiting) or not (room > 0).any():
            return pos
        k = min(GREEDY_K, int((room > 0).sum()))
        d, ids = widen(waiting, room > 0, k)
        cand = g._pos(ids)
        for j in range(cand.shape[1]):
            open_ = pos[waiting] < 0
            cells, photos, cost = waiting[open_], cand[open_, j], d[open_, j]
            ok = (photos >= 0) & (room[np.maximum(photos, 0)] > 0)
            cells, photos, cost = cells[ok], photos[ok], cost[ok]
            if not len(cells):
                continue
            order = np.lexsort((cost, photos))  # by photo, cheapest first
            cells, photos = cells[order], photos[order]
            take = _rank_in_runs(photos) < room[photos]
            pos[cells[take]] = photos[take]
            np.subtract.at(room, photos[take], 1)


def _add_reverse(g: _Graph, photos, near_cells, k):
    """Arcs from the k nearest cells of these photo positions to them."""
    d, cells = near_cells(g.all_ids[photos], None, min(k, g.n))
    ok = cells >= 0
    g.cell.append(cells[ok])
    g.photo.append(np.broadcast_to(photos[:, None], cells.shape)[ok])
    g.cost.append(g._int(np.sqrt(np.maximum(np.asarray(d, np.float64)[ok], 0))))
    g._flat = None


def _use_every_photo(g: _Graph, pos, cap, near_cells):
    """--use-all with cells ≥ photos: the photos no candidate list reached are offered to
    their nearest cells and the flow solved again; whatever is still unused then takes the
    nearest cell whose photo is used more than once."""
    for k in (WIDEN_K, 4 * WIDEN_K):
        unused = np.flatnonzero(np.bincount(pos[pos >= 0], minlength=g.n_photos) == 0)
        if not len(unused) or near_cells is None:
            break
        _add_reverse(g, unused, near_cells, k)
        pos = g.solve(np.arange(g.n), cap, True)
        pos = _fill_leftovers(g, pos, cap, None, True)
    uses = np.bincount(pos[pos >= 0], minlength=g.n_photos)
    for p in np.flatnonzero(uses == 0).tolist():
        c, q, w = g.arcs()
        mine = c[q == p]
        donors = mine[uses[pos[mine]] > 1] if len(mine) else mine
        if not len(donors):
            donors = np.flatnonzero(uses[pos] > 1)
        cell = int(donors[np.argmin(g.cost_of(donors, np.full(len(donors), p)))])
        uses[pos[cell]] -= 1
        pos[cell] = p
        uses[p] += 1
    return pos


def _spread(g: _Graph, pos, rows, cols, R, cap, widen, rng, keep_one=False):
    """--min-distance on the flow's answer, vectorised over the grid.

    1. Keep: where two cells within R hold one photo, the one that would lose more by moving
       (its next-best candidate's extra cost; the seed breaks ties) keeps it — decided as a
       greedy in that order would, in rounds of local winners.
    2. Move: the others take their cheapest candidate that no cell within R holds and that
       has uses left (searched again, wider, when none does). Cells are handled one residue
       class (row mod R+1, col mod R+1) at a time: two cells of a class are more than R apart,
       so a class decides all its cells at once.
    3. Improve: SPREAD_SWEEPS passes over the classes, every cell taking its cheapest
       candidate that is cheaper than its own and that the rules allow.
    `keep_one` (--use-all): no photo's last cell moves away."""
    n = rows * cols
    cand, cost = _candidate_matrix(g, SPREAD_CANDIDATES)
    cur = _cost_in(cand, cost, pos)
    other = np.where(cand != pos[:, None], cost, BIG)
    regret = other.min(axis=1) - cur
    # priority: higher regret first, the seed's order among equals
    prio = np.empty(n, np.int64)
    prio[np.lexsort((rng.random(n), -regret))] = np.arange(n, 0, -1)
    offsets = [(dr, dc) for dr in range(-R, R + 1) for dc in range(-R, R + 1) if dr or dc]
    flat = pos.copy()
    movers = _keep(flat, prio, rows, cols, offsets)
    flat[movers] = -1
    uses = np.bincount(flat[flat >= 0], minlength=g.n_photos)
    classes = _classes(rows, cols, R)
    waiting = movers
    k = WIDEN_K
    full = False  # a widened search has offered every photo with room
    while len(waiting):
        left = []
        for cls in classes:
            cells = np.intersect1d(cls, waiting, assume_unique=True)
            if len(cells):
                left.append(
                    _take(flat, uses, cells, cand[cells], cost[cells], cap, rows, cols, offsets)
                )
        still = np.concatenate(left) if left else waiting[:0]
        if not len(still):
            break
        allowed = uses < cap
        n_allowed = int(allowed.sum())
        if widen is None or not n_allowed or (len(still) == len(waiting) and full):
            return np.full(n, -1, np.int64)
        if len(still) == len(waiting):
            k = min(k * 8, n_allowed)
        k = min(max(k, len(offsets) + 1 + WIDEN_K), n_allowed)
        full = k >= n_allowed
        d, ids = widen(still, allowed, k)
        g.add(still, d, ids)
        wp = g._pos(ids)
        wc = g._int(np.sqrt(np.maximum(np.asarray(d, np.float64), 0)))
        wc = np.where(wp >= 0, wc, BIG)
        # the widened lists are sorted by distance: they serve as these cells' candidates
        width = max(cand.shape[1], wp.shape[1])
        cand, cost = _widen_matrix(cand, width), _widen_matrix(cost, width, BIG)
        cand[still] = _widen_matrix(wp, width)
        cost[still] = _widen_matrix(wc, width, BIG)
        waiting = still
    cur = _cost_in(cand, cost, flat)
    for _ in range(SPREAD_SWEEPS):
        moved = 0
        for cls in classes:
            moved += _improve(flat, uses, cur, cls, cand, cost, cap, rows, cols, offsets, keep_one)
        if not moved:
            break
    return flat


BIG = np.iinfo(np.int64).max // 4


def _rank_in_runs(keys):
    """Each element's place in its run of equal keys (keys sorted): 0, 1, … per run. With
    the runs ordered by preference, `rank < room` is who gets a photo that has `room` left."""
    n = len(keys)
    first = np.r_[True, keys[1:] != keys[:-1]] if n else np.zeros(0, bool)
    return np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))


def _candidate_matrix(g: _Graph, width):
    """(cells, width) photo positions and costs, cheapest first (-1 / BIG where a cell has
    fewer arcs)."""
    c, p, w = g.by_cost()
    start = np.searchsorted(c, np.arange(g.n + 1))
    count = np.diff(start)
    width = int(min(width, count.max(initial=1)))
    j = np.arange(width)
    idx = start[:-1, None] + j
    ok = j < count[:, None]
    idx = np.where(ok, idx, 0)
    cand = np.where(ok, p[idx] if len(p) else -1, -1)
    cost = np.where(ok, w[idx] if len(w) else BIG, BIG)
    return cand, cost


def _widen_matrix(m, width, fill=-1):
    if m.shape[1] >= width:
        return m[:, :width]
    out = np.full((m.shape[0], width), fill, m.dtype)
    out[:, : m.shape[1]] = m
    return out


def _cost_in(cand, cost, photos):
    """Each cell's cost for `photos` (BIG where it is not among its candidates)."""
    hit = cand == photos[:, None]
    return np.where(hit.any(axis=1), np.where(hit, cost, BIG).min(axis=1), BIG)


def _classes(rows, cols, R):
    s = R + 1
    r, c = np.divmod(np.arange(rows * cols), cols)
    key = (r % s) * s + (c % s)
    order = np.argsort(key, kind="stable")
    bounds = np.searchsorted(key[order], np.arange(s * s + 1))
    return [order[a:b] for a, b in zip(bounds[:-1], bounds[1:], strict=True) if b > a]


def _neighbours(flat, cells, rows, cols, offsets):
    """(len(cells), len(offsets)) photos at each offset of each cell (-1 off the grid)."""
    r, c = np.divmod(cells, cols)
    out = np.full((len(cells), len(offsets)), -1, np.int64)
    for j, (dr, dc) in enumerate(offsets):
        rr, cc = r + dr, c + dc
        ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
        out[ok, j] = flat[rr[ok] * cols + cc[ok]]
    return out


def _blocked(flat, cells, cand, rows, cols, offsets):
    """(len(cells), K): candidate j of cell i is held by a cell within the window."""
    nb = _neighbours(flat, cells, rows, cols, offsets)
    blocked = np.zeros(cand.shape, bool)
    for j in range(nb.shape[1]):
        blocked |= cand == nb[:, j : j + 1]
    return blocked


def _keep(flat, prio, rows, cols, offsets):
    """The cells that must give up their photo: a greedy in `prio` order (highest first)
    keeps a cell unless a kept cell within R holds its photo; computed in rounds where every
    undecided cell that outranks all its undecided rivals is kept."""
    n = rows * cols
    state = np.zeros(n, np.int8)  # 0 undecided, 1 kept, 2 moves
    r, c = np.divmod(np.arange(n), cols)
    while True:
        und = np.flatnonzero(state == 0)
        if not len(und):
            break
        ru, cu = r[und], c[und]
        beaten = np.zeros(len(und), bool)
        lost = np.zeros(len(und), bool)
        for dr, dc in offsets:
            rr, cc = ru + dr, cu + dc
            ok = (rr >= 0) & (rr < rows) & (cc >= 0) & (cc < cols)
            nb = np.where(ok, rr * cols + cc, 0)
            same = ok & (flat[nb] == flat[und])
            lost |= same & (state[nb] == 1)
            beaten |= same & (state[nb] == 0) & (prio[nb] > prio[und])
        state[und[lost]] = 2
        state[und[~lost & ~beaten]] = 1
    return np.flatnonzero(state == 2)


def _take(flat, uses, cells, cand, cost, cap, rows, cols, offsets):
    """Cells of one class (mutually more than R apart) take their cheapest allowed candidate;
    where more want a photo than it has uses left, the cheapest wins and the rest try their
    next. Returns the cells left without one."""
    blocked = _blocked(flat, cells, cand, rows, cols, offsets) | (cand < 0)
    while len(cells):
        full = uses[np.maximum(cand, 0)] >= cap
        ok = ~blocked & ~full
        has = ok.any(axis=1)
        j = ok.argmax(axis=1)
        want = np.where(has, cand[np.arange(len(cells)), j], -1)
        wcost = cost[np.arange(len(cells)), j]
        sel = np.flatnonzero(has)
        if not len(sel):
            break
        # per photo, at most its room: the cheapest askers
        order = sel[np.lexsort((wcost[sel], want[sel]))]
        p = want[order]
        win = order[_rank_in_runs(p) < (cap - uses[p])]
        flat[cells[win]] = want[win]
        np.add.at(uses, want[win], 1)
        rest = np.setdiff1d(np.arange(len(cells)), win, assume_unique=True)
        cells, cand, cost, blocked = cells[rest], cand[rest], cost[rest], blocked[rest]
        if not len(np.intersect1d(rest, sel)):
            break  # nobody left who had a choice
    return cells


def _improve(flat, uses, cur, cls, cand, cost, cap, rows, cols, offsets, keep_one):
    """One class: each cell moves to its cheapest candidate cheaper than its own photo that no
    cell within R holds and that has uses left (the largest gains first where a photo's room
    is short). Returns how many moved."""
    cheaper = cost[cls] < cur[cls, None]
    if not cheaper.any():
        return 0
    rows_ = np.flatnonzero(cheaper.any(axis=1))
    cells = cls[rows_]
    cd, cs = cand[cells], cost[cells]
    p0 = flat[cells]
    ok = (cs < cur[cells, None]) & (cd >= 0) & (cd != p0[:, None])
    ok &= ~_blocked(flat, cells, cd, rows, cols, offsets)
    ok &= uses[np.maximum(cd, 0)] < cap
    if keep_one:
        ok &= (uses[p0] > 1)[:, None]
    has = ok.any(axis=1)
    if not has.any():
        return 0
    j = ok.argmax(axis=1)
    sel = np.flatnonzero(has)
    want, wcost = cd[sel, j[sel]], cs[sel, j[sel]]
    gain = cur[cells[sel]] - wcost
    order = np.lexsort((-gain, want))
    want, wcost, sel = want[order], wcost[order], sel[order]
    win = _rank_in_runs(want) < (cap - uses[want])
    if keep_one:  # two cells of one photo may not both leave its last uses
        leave = p0[sel]
        o2 = np.argsort(leave[win], kind="stable")
        lw = leave[win][o2]
        okleave = np.empty(len(lw), bool)
        okleave[o2] = _rank_in_runs(lw) < (uses[lw] - 1)
        idx = np.flatnonzero(win)
        win[idx[~okleave]] = False
    moved_cells = cells[sel[win]]
    old = flat[moved_cells]
    flat[moved_cells] = want[win]
    cur[moved_cells] = wcost[win]
    np.add.at(uses, want[win], 1)
    np.subtract.at(uses, old, 1)
    return int(win.sum())


def variety(plan: np.ndarray, rows: int, cols: int, n_library: int) -> dict:
    """How varied a plan is: distinct photos, the share of the library's photos it uses, the
    most cells one photo fills, the smallest distance (in cells, Chebyshev: what
    --min-distance R keeps above R) between two cells of one photo (None: no photo repeats),
    and the share of cells with the same photo as a 4-neighbour."""
    grid = np.asarray(plan, np.int64).reshape(rows, cols)
    uniq, counts = np.unique(grid, return_counts=True)
    same = np.zeros((rows, cols), bool)
    h = grid[:, 1:] == grid[:, :-1]
    v = grid[1:, :] == grid[:-1, :]
    same[:, 1:] |= h
    same[:, :-1] |= h
    same[1:, :] |= v
    same[:-1, :] |= v
    return {
        "distinct_photos": int(len(uniq)),
        "library_used": round(len(uniq) / n_library, 4) if n_library else 0.0,
        "max_uses": int(counts.max()),
        "min_repeat_distance": _min_repeat_distance(grid) if counts.max() > 1 else None,
        "same_neighbour_share": round(float(same.mean()), 4),
    }


def _min_repeat_distance(grid: np.ndarray) -> int:
    rows, cols = grid.shape
    for d in range(1, min(8, max(rows, cols) - 1) + 1):  # shifted copies: cheap and exact
        for dr in range(0, d + 1):
            for dc in range(-d, d + 1):
                if max(dr, abs(dc)) != d or (dr == 0 and dc < 0) or dr >= rows:
                    continue
                if abs(dc) >= cols:
                    continue
                # the cell (r, c) against (r + dr, c + dc)
                a = grid[: rows - dr, max(0, -dc) : cols - max(0, dc)]
                b = grid[dr:, max(0, dc) : cols - max(0, -dc)]
                if (a == b).any():
                    return d
    # farther apart: per photo, the closest pair of its cells
    flat = grid.reshape(-1)
    order = np.argsort(flat, kind="stable")
    ids = flat[order]
    bounds = np.flatnonzero(np.r_[True, ids[1:] != ids[:-1], True])
    best = max(rows, cols)
    for s, e in zip(bounds[:-1], bounds[1:], strict=True):
        if e - s < 2:
            continue
        r, c = np.divmod(order[s:e], cols)
        for i in range(0, e - s, 1024):
            dd = np.maximum(abs(r[i : i + 1024, None] - r), abs(c[i : i + 1024, None] - c))
            dd[dd == 0] = best
            best = min(best, int(dd.min()))
    return best
