"""The quota solver (--max-uses, --use-all): a min-cost flow over the candidate graph with
capacity N per photo, then leftover repair (cells the sparse graph cannot serve searched again
among photos with room and solved as smaller flows, the last ones greedily) and, under
--use-all, the photos no cell listed offered to their nearest cells."""

from __future__ import annotations

import numpy as np

from mosaicdb.render.placement.graph import WIDEN_K, Graph, cheapest_within_room
from mosaicdb.render.placement.rules import Rules, Widen

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


def applies(rules: Rules) -> bool:
    return rules.cap < rules.rows * rules.cols or rules.bonus


def solve(g: Graph, pos, rules: Rules, widen: Widen | None, near_cells: Widen | None, space=None):
    """The flow's plan (photo positions per cell); `pos` (nothing runs before it) is unused."""
    n, cap = rules.rows * rules.cols, rules.cap
    pos = g.solve(np.arange(n), cap, rules.bonus)
    # routed: the few cells left (a coarse group the routing could not place) need no re-solve
    # of the whole flow
    full = 0 if rules.routed else FULL_RESOLVES
    pos = _fill_leftovers(g, pos, cap, widen, rules.bonus, near_cells, full)
    if rules.bonus:
        pos = _use_every_photo(g, pos, cap, near_cells)
    return pos


def _fill_leftovers(g: Graph, pos, cap, widen, bonus=False, near_cells=None, full=FULL_RESOLVES):
    """Cells the flow left unserved (their candidates were full) are searched again among
    the photos with uses left. The first `full` times the whole flow is solved again
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
        if rounds >= full and len(waiting) > GREEDY_LEFTOVERS:
            return _greedy_fill(g, pos, cap, widen)
        widest = min(n_allowed, max(WIDEN_K, LEFTOVER_ARCS // len(waiting)))
        k = min(max(k, -(-4 * len(waiting) // max(1, cap * n_allowed))), widest)
        for i in range(0, len(waiting), max(1, 2_000_000 // k)):  # bounded memory
            part = waiting[i : i + 2_000_000 // k]
            d, ids = widen(part, allowed, k)
            g.add(part, d, ids)
        if rounds < full:
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
            if k >= widest and rounds > full:
                break
        k = min(k * 4, n_allowed)
        pos = got
    return pos


def _greedy_fill(g: Graph, pos, cap, widen):
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
        cand = g.pos_of(ids)
        for j in range(cand.shape[1]):
            open_ = pos[waiting] < 0
            cells, photos, cost = waiting[open_], cand[open_, j], d[open_, j]
            ok = (photos >= 0) & (room[np.maximum(photos, 0)] > 0)
            cells, photos, cost = cells[ok], photos[ok], cost[ok]
            if not len(cells):
                continue
            take = cheapest_within_room(photos, cost, room)
            pos[cells[take]] = photos[take]
            np.subtract.at(room, photos[take], 1)


def _add_reverse(g: Graph, photos, near_cells, k):
    """Arcs from the k nearest cells of these photo positions to them."""
    d, cells = near_cells(g.all_ids[photos], None, min(k, g.n))
    ok = cells >= 0
    g.cell.append(cells[ok])
    g.photo.append(np.broadcast_to(photos[:, None], cells.shape)[ok])
    g.cost.append(g.int_cost(np.sqrt(np.maximum(np.asarray(d, np.float64)[ok], 0))))
    g._flat = None


def _use_every_photo(g: Graph, pos, cap, near_cells):
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
