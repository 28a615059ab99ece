"""The candidate graph every placement solver works on: the cells' FAISS candidate arcs as
photo positions and integer costs (exact ties broken by the seed), extendable with widened
searches, and its min-cost flow (OR-Tools `SimpleMinCostFlow`), solved over each cell's cheapest
arcs first and proven optimal over all of them by the flow's prices."""

from __future__ import annotations

import numpy as np

from mosaicdb.errors import RenderError

# Cells left over by the flow are searched again with at least this many candidates each.
WIDEN_K = 32


# Integer costs for the solver: the largest candidate cost maps to COST_SCALE (x2 for ties).
COST_SCALE = 20_000

# A dense id → position table is used up to this many slots (8 MB of int64): a gather is ~3×
# faster than a binary search over the sorted ids (the re-rank's and the graph's lookups of
# 25,000 cells × 40 candidates: 0.14 s → 0.05 s); sparser or larger ids are searched.
DENSE_IDS = 1 << 20


class Positions:
    """Positions of ids in a sorted array of distinct ids, -1 for an id not in it."""

    def __init__(self, sorted_ids: np.ndarray):
        self.ids = np.asarray(sorted_ids)
        self.table = None
        top = int(self.ids[-1]) + 1 if len(self.ids) else 0
        if len(self.ids) and self.ids[0] >= 0 and top <= DENSE_IDS:  # bounded memory
            self.table = np.full(top, -1, np.int64)
            self.table[self.ids] = np.arange(len(self.ids))

    def __call__(self, ids) -> np.ndarray:
        ids = np.asarray(ids)
        if not len(self.ids):
            return np.full(ids.shape, -1, np.int64)
        if self.table is not None:
            inside = (ids >= 0) & (ids < len(self.table))
            return np.where(inside, self.table[np.where(inside, ids, 0)], -1)
        p = np.minimum(np.searchsorted(self.ids, ids), len(self.ids) - 1)
        return np.where((ids >= 0) & (self.ids[p] == ids), p, -1)


class Graph:
    """The cells' candidate arcs as photo positions (index into all_ids) and integer costs,
    extendable with the arcs that widened searches find."""

    def __init__(self, all_ids, cand_ids, cand_dist, rng, top: float = 0.0):
        """`top`: the largest cost arcs added later will have, when above the candidates'
        (integer costs saturate at 4× the largest)."""
        self.all_ids = all_ids
        self.n, k = cand_ids.shape
        self.n_photos = len(all_ids)
        cost = np.sqrt(np.maximum(np.asarray(cand_dist, np.float64), 0))
        finite = np.isfinite(cost) & (cand_ids >= 0)
        top = max(top, float(cost[finite].max()) if finite.any() else 1.0)
        self.scale = COST_SCALE / max(top, 1e-9)
        self.rng = rng
        self.pos_of = Positions(all_ids)
        pos = self.pos_of(cand_ids)
        ok = finite & (pos >= 0)
        cell = np.broadcast_to(np.arange(self.n)[:, None], cand_ids.shape)
        self.cell, self.photo, self.cost = [cell[ok]], [pos[ok]], [self.int_cost(cost[ok])]
        self._flat = self._by_cost = None

    def int_cost(self, cost):
        # x2 plus a seeded 0/1: exact ties are broken by the seed, nothing else is
        c = np.minimum(np.round(cost * self.scale), COST_SCALE * 4).astype(np.int64)
        return 2 * c + self.rng.integers(0, 2, c.shape)

    def add(self, cells, dist, ids):
        """Arcs from cells (len W) to their (W, k) ids at squared distances dist."""
        cell = np.broadcast_to(np.asarray(cells)[:, None], ids.shape)
        self.add_pos(cell, self.pos_of(ids), dist)

    def add_pos(self, cell, pos, dist):
        """Arcs from cells to photo positions (arrays of one shape) at squared distances."""
        cost = np.sqrt(np.maximum(np.asarray(dist, np.float64), 0))
        ok = (pos >= 0) & np.isfinite(cost)
        self.cell.append(cell[ok])
        self.photo.append(pos[ok])
        self.cost.append(self.int_cost(cost[ok]))
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
        if self._flat is None and len(self.cell) > 1:
            self.arcs()  # arcs were added: merged once, the cheapest of each kept
        if self._by_cost is None:
            # the candidate lists alone need no merging: one arc per (cell, photo) already (a
            # search lists a photo once, groups are collapsed), in cell order and nearly in
            # cost order, so this sort is all it takes (0.002 against arcs()' 0.04 s at 1M
            # arcs). c is below 2^45 and w below 2^18: one stable sort of one key, ~5× lexsort's
            c, p, w = self._flat or (self.cell[0], self.photo[0], self.cost[0])
            order = np.argsort((c << 18) | w, kind="stable")
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
        # the pricing needs each cell's arcs cheapest first; --use-all's tiers are not priced
        c, p, w = self.arcs() if bonus else self.by_cost()
        keep = np.zeros(self.n, bool)
        keep[cells] = True
        room = np.full(self.n_photos, cap, np.int64) - (0 if uses is None else uses)
        sel = keep[c] & (room[p] > 0)
        c, p, w = c[sel], p[sel], w[sel]
        room = np.maximum(room, 0)
        m = len(cells)
        local = np.full(self.n, -1, np.int64)
        local[cells] = np.arange(m)
        extra = 4 * COST_SCALE if bonus else 0
        # dearer than any one arc, so that no cell is left out where it could be served
        # directly; a low bound keeps the cost-scaling solver fast (its rounds grow with the
        # log of the largest cost: 2× faster than a 8× bound at 100,000 cells). Cells it leaves
        # out are searched again (_fill_leftovers).
        overflow = 2 * (int(w.max(initial=0)) + extra) + 1
        lc = local[c]
        used = None
        if not bonus:
            used = _priced_flow(lc, p, w, m, room, overflow)
        if used is None:
            used = _flow(lc, p, w, m, room, overflow, extra)
        out = np.full(self.n, -1, np.int64)
        out[c[used]] = p[used]
        return out


# The flow first gets each cell's cheapest arcs, as deep as a greedy pass needed to serve every
# cell, and is priced against the rest (_priced_flow). Measured on the flows of renders of
# libA's held-out targets under the default rules (12 targets): the flow's time fell to
# 0.2-0.5x at 100 across on 11 of them (126-178 arcs a cell) and to 0.65x on t1 at 200
# across (40 arcs), with the same optimum every time; where the greedy pass needs most of the
# arcs it is not tried. Pricing rounds before the whole graph is solved instead, and
# Bellman-Ford passes before the prices are given up on:
PRICE_ROUNDS = 3
PRICE_PASSES = 64
# ... and the whole graph is solved at once when the greedy pass needs more than this share of
# the deepest cell's arcs (fewer arcs then barely pay for the rounds: 0.8-1.6x).
PRICE_DEPTH = 0.5


def _flow(c, p, w, m, room, overflow, extra=0):
    """The min-cost flow of m cells (arcs c → p at cost w) onto photos with `room`; cells
    may go unserved at `overflow` each. Under `extra` a photo's uses after its first cost
    that much. Returns which arcs carry flow."""
    from ortools.graph.python import min_cost_flow

    P = len(room)
    sink, over = m + P, m + P + 1
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(c, m + p, np.ones(len(c), np.int64), w)
    photos = np.arange(P)
    if extra:  # a photo's first use is free, the others cost `extra`: use every photo
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
    return f.flows(np.arange(len(c))) > 0


def _priced_flow(c, p, w, m, room, overflow):
    """The same optimum as _flow over every arc, from a flow over each cell's cheapest arcs
    only (arcs sorted by cell, then cost): the flow's photo prices (its dual) are computed,
    and while an arc left out would be cheaper at those prices than its cell's photo, such
    arcs are added and the flow solved again. None when that does not pay (the greedy pass
    needs most arcs; prices that do not settle): solve the whole graph then."""
    rank = rank_in_runs(c)
    depth = _greedy_depth(c, p, w, rank, m, room, int(PRICE_DEPTH * (rank.max(initial=0) + 1)))
    if depth is None:
        return None
    keep = rank < depth
    for _ in range(PRICE_ROUNDS):
        kept = np.flatnonzero(keep)
        used = np.zeros(len(c), bool)
        used[kept[_flow(c[kept], p[kept], w[kept], m, room, overflow)]] = True
        prices = _prices(c, p, w, used, keep, m, room, overflow)
        if prices is None:
            return None
        pi, value = prices
        cheaper = ~keep & (w + pi[p] < value[c])
        if not cheaper.any():
            return used
        keep |= cheaper
    return None


def _greedy_depth(c, p, w, rank, m, room, most: int) -> int | None:
    """How deep into their cost-ordered arcs cells must go for all to be served when, rank
    by rank, each photo takes the cheapest of the waiting cells that list it there (the
    flow over that many arcs a cell is then never short of room); None if deeper than
    `most`."""
    by_rank = np.flatnonzero(rank < most)
    by_rank = by_rank[np.argsort(rank[by_rank], kind="stable")]
    bounds = np.searchsorted(rank[by_rank], np.arange(most + 1))
    room = room.copy()
    served = np.zeros(m, bool)
    left = m
    for j in range(len(bounds) - 1):
        arcs = by_rank[bounds[j] : bounds[j + 1]]
        arcs = arcs[~served[c[arcs]]]
        take = arcs[cheapest_within_room(p[arcs], w[arcs], room)]
        served[c[take]] = True
        np.subtract.at(room, p[take], 1)
        left -= len(take)
        if not left:
            return j + 1
    return None


def _prices(c, p, w, used, keep, m, room, overflow):
    """Dual of the flow over the `keep` arcs: a price per photo (0 where it has room left)
    such that every cell's photo is its cheapest kept arc at cost + price, and the value
    each cell pays (its arc's cost + its photo's price; `overflow` if unserved). A full
    photo's price is the least extra its cells would pay to move, through chains of moves
    that end at a photo with room or unserved: Bellman-Ford over the photos. None when it
    does not settle in PRICE_PASSES passes."""
    P = len(room)
    pos = np.full(m, -1, np.int64)
    pos[c[used]] = p[used]
    served = pos >= 0
    full = np.bincount(p[used], minlength=P) >= room
    own = np.full(m, overflow, np.int64)
    own[c[used]] = w[used]
    q = pos[c]
    moves = keep & ~used & (q >= 0)
    moves[moves] = full[q[moves]]
    to, frm, step = q[moves], p[moves], w[moves] - own[c[moves]]
    pi = np.where(full, BIG, 0)
    on_full = np.flatnonzero(served & full[np.maximum(pos, 0)])
    np.minimum.at(pi, pos[on_full], overflow - own[on_full])  # or leave unserved
    for _ in range(PRICE_PASSES):
        new = pi.copy()
        np.minimum.at(new, to, pi[frm] + step)
        if np.array_equal(new, pi):
            return pi, own + np.where(served, pi[np.maximum(pos, 0)], 0)
        pi = new
    return None


BIG = np.iinfo(np.int64).max // 4


def rank_in_runs(keys):
    """Each element's place in its run of equal keys (keys sorted): 0, 1, … per run. With
    the runs ordered by preference, `rank < room` is who gets a photo that has `room` left."""
    n = len(keys)
    first = np.r_[True, keys[1:] != keys[:-1]] if n else np.zeros(0, bool)
    return np.arange(n) - np.maximum.accumulate(np.where(first, np.arange(n), 0))


def cheapest_within_room(photos, cost, room) -> np.ndarray:
    """Which of these (photo, cost) proposals are taken when each photo takes its cheapest
    ones up to its `room`: their indices, by photo, cheapest first."""
    order = np.lexsort((cost, photos))
    return order[rank_in_runs(photos[order]) < room[photos[order]]]
