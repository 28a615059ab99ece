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

import itertools
from collections.abc import Callable

import numpy as np

from .errors import RenderError

# Cells left over by the flow are searched again with at least this many candidates each.
WIDEN_K = 32
# Integer costs for the solver: the largest candidate cost maps to COST_SCALE (x2 for ties).
COST_SCALE = 20_000
# Leftover repair also offers photos with room to their nearest cells while photos × cells
# (the exact search that takes) stays under this.
REVERSE_BUDGET = 200_000_000
# Improvement sweeps after --min-distance repairs (each ~1 s at 64,000 cells).
SPREAD_SWEEPS = 2
# A swap with a cell holding the wanted photo is tried with at most this many of its cells.
SWAP_HOLDERS = 8

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
        return 2 * c + self.rng.integers(0, 2, len(c))

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
    the photos with uses left, and the whole flow is solved again with those arcs added (so
    the cells that took the full photos can still give them up), widening while none
    progress."""
    k = WIDEN_K
    while (pos < 0).any():
        uses = np.bincount(pos[pos >= 0], minlength=g.n_photos)
        allowed = uses < cap
        n_allowed = int(allowed.sum())
        waiting = np.flatnonzero(pos < 0)
        if widen is None or not n_allowed:
            break
        k = min(max(k, -(-4 * len(waiting) // max(1, cap * n_allowed))), n_allowed)
        for i in range(0, len(waiting), max(1, 2_000_000 // k)):  # bounded memory
            part = waiting[i : i + 2_000_000 // k]
            d, ids = widen(part, allowed, k)
            g.add(part, d, ids)
        if near_cells is not None and n_allowed * g.n <= REVERSE_BUDGET:
            # and the photos with room to their nearest cells: a chain of moves (a cell takes
            # a photo it did not list so that another can take its own) is open to the flow
            _add_reverse(g, np.flatnonzero(allowed), near_cells, WIDEN_K)
        got = g.solve(np.arange(g.n), cap, bonus)
        if (got < 0).sum() >= len(waiting):
            if k >= n_allowed:
                break
            k = min(k * 4, n_allowed)
        pos = got
    return pos


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
    """--min-distance on the flow's answer: cells are kept in the order of what moving would
    cost them (their next-best candidate's extra cost, most first); a cell whose photo is
    already kept within R moves to its cheapest candidate that the window and the photo's
    uses allow (searched again, wider, when none does). Then SPREAD_SWEEPS passes let each
    cell take a cheaper candidate where the rules leave room, or swap photos with a cell
    holding it when both gain and the windows allow. `keep_one` (--use-all): no photo's last
    cell moves away."""
    n = rows * cols
    c_all, p_all, w_all = g.by_cost()
    start = np.searchsorted(c_all, np.arange(n + 1))
    cur = g.cost_of(np.arange(n), pos)
    # next-best: the cheapest arc of each cell to another photo
    other = np.where(p_all != pos[c_all], w_all, np.iinfo(np.int64).max)
    nxt = np.full(n, 16 * COST_SCALE, np.int64)
    np.minimum.at(nxt, c_all, other)
    regret = nxt - cur
    order = np.lexsort((rng.random(n), -regret))
    grid = np.full((rows, cols), -1, np.int64)
    uses = np.zeros(g.n_photos, np.int64)
    movers = []

    def window(r, c):
        return set(grid[max(0, r - R) : r + R + 1, max(0, c - R) : c + R + 1].flat)

    for cell in order.tolist():
        r, c = divmod(cell, cols)
        p = int(pos[cell])
        if p < 0 or p in window(r, c) or uses[p] >= cap:
            movers.append(cell)
        else:
            grid[r, c] = p
            uses[p] += 1

    def candidates(cell):
        return p_all[start[cell] : start[cell + 1]].tolist(), w_all[start[cell] : start[cell + 1]]

    waiting = []
    for cell in movers:
        r, c = divmod(cell, cols)
        win = window(r, c)
        for p in candidates(cell)[0]:
            if p not in win and uses[p] < cap:
                grid[r, c] = p
                uses[p] += 1
                break
        else:
            waiting.append(cell)
    k = WIDEN_K
    while waiting and widen is not None:
        allowed = uses < cap
        n_allowed = int(allowed.sum())
        if not n_allowed:
            break
        k = min(max(k, (2 * R + 1) ** 2 + WIDEN_K), n_allowed)
        d, ids = widen(np.asarray(waiting), allowed, k)
        still = []
        for cell, row in zip(waiting, g._pos(ids).tolist(), strict=True):
            r, c = divmod(cell, cols)
            win = window(r, c)
            for p in row:
                if p >= 0 and p not in win and uses[p] < cap:
                    grid[r, c] = p
                    uses[p] += 1
                    break
            else:
                still.append(cell)
        if len(still) == len(waiting):
            if k >= n_allowed:
                break
            k = min(k * 8, n_allowed)
        g.add(np.asarray(waiting), d, ids)  # their costs, for the sweeps below
        waiting = still
    if waiting:
        return np.full(n, -1, np.int64)
    flat = grid.reshape(-1)
    c_all, p_all, w_all = g.by_cost()
    start = np.searchsorted(c_all, np.arange(n + 1))
    holders: dict[int, set[int]] = {}
    for cell, p in enumerate(flat.tolist()):
        holders.setdefault(p, set()).add(cell)

    def fits(p, cell, besides=-1):
        r, c = divmod(cell, cols)
        win = grid[max(0, r - R) : r + R + 1, max(0, c - R) : c + R + 1]
        hits = int((win == p).sum())
        if besides >= 0 and flat[besides] == p:
            br, bc = divmod(besides, cols)
            if abs(br - r) <= R and abs(bc - c) <= R:
                hits -= 1
        return hits == 0

    cur = g.cost_of(np.arange(n), flat)
    for _ in range(SPREAD_SWEEPS):
        moved = 0
        for cell in rng.permutation(n).tolist():
            p0 = int(flat[cell])
            here = int(cur[cell])
            lo, hi = int(start[cell]), int(start[cell + 1])
            # arcs are sorted by cost within a cell: only the cheaper ones, a few at most
            cheaper = int(np.searchsorted(w_all[lo:hi], here))
            if not cheaper:
                continue
            ps = p_all[lo : lo + min(cheaper, SWAP_HOLDERS)].tolist()
            ws = w_all[lo : lo + min(cheaper, SWAP_HOLDERS)].tolist()
            for p, w in zip(ps, ws, strict=True):
                if p == p0:
                    continue
                flat[cell] = -1  # the cell's own photo does not block it
                if uses[p] < cap and (uses[p0] > 1 or not keep_one) and fits(p, cell):
                    flat[cell] = p
                    cur[cell] = w
                    uses[p] += 1
                    uses[p0] -= 1
                    holders[p0].discard(cell)
                    holders.setdefault(p, set()).add(cell)
                    moved += 1
                    break
                flat[cell] = p0
                others = list(itertools.islice(holders.get(p, ()), SWAP_HOLDERS))
                if not others:
                    continue
                others_arr = np.asarray(others)
                back = g.cost_of(others_arr, np.full(len(others), p0))
                gains = here + cur[others_arr] - w - back
                swapped = False
                for j in np.flatnonzero(gains > 0).tolist():
                    other_cell = others[j]
                    flat[cell], flat[other_cell] = -1, -1
                    if fits(p, cell) and fits(p0, other_cell):
                        flat[cell], flat[other_cell] = p, p0
                        cur[cell], cur[other_cell] = w, back[j]
                        holders[p0].discard(cell)
                        holders[p].discard(other_cell)
                        holders[p].add(cell)
                        holders[p0].add(other_cell)
                        moved += 1
                        swapped = True
                        break
                    flat[cell], flat[other_cell] = p0, p
                if swapped:
                    break
        if not moved:
            break
    return flat


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
