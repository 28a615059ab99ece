"""The spacing solver (--min-distance R): on the answer it is given, cells that break the rule
move (the ones that lose least first) to their best candidate the rules allow, one residue
class of the grid at a time, then improvement sweeps, then smoothing sweeps that make
neighbouring cells err the same way in lightness."""

from __future__ import annotations

import numpy as np

from mosaicdb.render.placement.graph import (
    BIG,
    WIDEN_K,
    Graph,
    cheapest_within_room,
    rank_in_runs,
)
from mosaicdb.render.placement.rules import Rules, Widen

# Improvement sweeps after --min-distance repairs (each ~1 s at 64,000 cells).
SPREAD_SWEEPS = 2


# --min-distance considers at most this many candidates per cell (the cheapest).
SPREAD_CANDIDATES = 64


# Smoothing: where the rule keeps a cell from its best tile, a tile a little lighter or darker
# is picked; in a flat area (a sky) neighbours that err in opposite directions read as noise,
# which is what SSIM counts (bench/README.md). The sweeps add, per cell, SPREAD_SMOOTH × the
# summed |difference| of its mean-lightness error (tile − cell, L*) from each 4-neighbour's to
# its match cost (both on the cost's distance scale), and move cells where that total drops.
SPREAD_SMOOTH = 0.3
SMOOTH_SWEEPS = 4  # 10 gave the same scores (t1, 200 across, R 5): the sweeps settle by then


def applies(rules: Rules) -> bool:
    return rules.min_distance > 0


def solve(g: Graph, pos, rules: Rules, widen: Widen | None, near_cells: Widen | None, space=None):
    """`pos` spread to --min-distance (each cell's best candidate when no solver ran before).
    `space` (the cells' and photos' Lab vectors) gives the smoothing its lightness."""
    if pos is None:
        pos = g.best()
    R = rules.min_distance
    light = None
    if SPREAD_SMOOTH and space is not None:
        light = (_mean_l(space.cells), _mean_l(space.photos()))
    return _spread(g, pos, rules.rows, rules.cols, R, rules.cap, widen, g.rng, rules.bonus, light)


def _mean_l(vecs):
    v = np.asarray(vecs)
    return v.reshape(len(v), -1, 3)[..., 0].mean(axis=1, dtype=np.float64)


def _spread(g: Graph, pos, rows, cols, R, cap, widen, rng, keep_one=False, light=None):
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
    4. Smooth (with `light`, the cells' and photos' mean L*): SMOOTH_SWEEPS passes that
       also count how differently from its 4-neighbours a cell errs in lightness.
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
        wp = g.pos_of(ids)
        wc = g.int_cost(np.sqrt(np.maximum(np.asarray(d, np.float64), 0)))
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
    if light is not None:
        # the error term in the cost's units (costs are 2 × distance × scale)
        err = _Errors(*light, 2 * g.scale * SPREAD_SMOOTH, rows, cols)
        for _ in range(SMOOTH_SWEEPS):
            moved = 0
            for cls in classes:
                moved += _improve(
                    flat, uses, cur, cls, cand, cost, cap, rows, cols, offsets, keep_one, err
                )
            if not moved:
                break
    return flat


class _Errors:
    """The smoothing term: cell i holding photo p errs by e = L(p) − L(i); the term is
    w · Σ |e − e_j| over its 4-neighbours j."""

    def __init__(self, cell_l, photo_l, w, rows, cols):
        self.cell_l, self.photo_l, self.w, self.rows, self.cols = cell_l, photo_l, w, rows, cols

    def term(self, flat, cells, photos):
        """(len(cells), K) smoothing term of `photos` (K per cell, -1 = none) in `cells`."""
        r, c = np.divmod(cells, self.cols)
        e = self.photo_l[np.maximum(photos, 0)] - self.cell_l[cells, None]
        out = np.zeros(photos.shape)
        for dr, dc in ((0, 1), (0, -1), (1, 0), (-1, 0)):
            rr, cc = r + dr, c + dc
            ok = (rr >= 0) & (rr < self.rows) & (cc >= 0) & (cc < self.cols)
            j = np.where(ok, rr * self.cols + cc, 0)
            ej = self.photo_l[np.maximum(flat[j], 0)] - self.cell_l[j]
            out += np.where(ok[:, None], np.abs(e - ej[:, None]), 0.0)
        return self.w * out


def _candidate_matrix(g: Graph, width):
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
        win = sel[cheapest_within_room(want[sel], wcost[sel], cap - uses)]
        flat[cells[win]] = want[win]
        np.add.at(uses, want[win], 1)
        rest = np.setdiff1d(np.arange(len(cells)), win, assume_unique=True)
        cells, cand, cost, blocked = cells[rest], cand[rest], cost[rest], blocked[rest]
        if not len(np.intersect1d(rest, sel)):
            break  # nobody left who had a choice
    return cells


def _improve(flat, uses, cur, cls, cand, cost, cap, rows, cols, offsets, keep_one, err=None):
    """One class: each cell moves to its cheapest candidate cheaper than its own photo that no
    cell within R holds and that has uses left (the largest gains first where a photo's room
    is short). With `err` (_Errors), cheaper counts the smoothing term too. Returns how many
    moved."""
    if err is None:
        cheaper = cost[cls] < cur[cls, None]
        if not cheaper.any():
            return 0
        cells = cls[cheaper.any(axis=1)]
        cd, cs = cand[cells], cost[cells]
        total, now = cs, cur[cells]
    else:  # the cells of a class are not 4-neighbours: their terms do not interact
        now = cur[cls] + err.term(flat, cls, flat[cls][:, None])[:, 0]
        # the term is never negative: only candidates cheaper than `now` by cost alone can
        # win, so only their cells and columns are looked at
        maybe = cost[cls] < now[:, None]
        some = maybe.any(axis=1)
        if not some.any():
            return 0
        cells, now = cls[some], now[some]
        width = int((cost.shape[1] - maybe[some][:, ::-1].argmax(axis=1)).max())  # last + 1
        cd, cs = cand[cells, :width], cost[cells, :width]
        total = np.where(cd >= 0, cs + err.term(flat, cells, cd), np.inf)
    p0 = flat[cells]
    ok = (total < now[:, None]) & (cd >= 0) & (cd != p0[:, None])
    ok &= ~_blocked(flat, cells, cd, rows, cols, offsets)
    ok &= uses[np.maximum(cd, 0)] < cap
    if keep_one:
        ok &= (uses[p0] > 1)[:, None]
    has = ok.any(axis=1)
    if not has.any():
        return 0
    # the cheapest allowed: the first (candidates are sorted by cost) when cost alone counts
    j = ok.argmax(axis=1) if err is None else np.where(ok, total, np.inf).argmin(axis=1)
    sel = np.flatnonzero(has)
    want, wcost = cd[sel, j[sel]], cs[sel, j[sel]]
    gain = now[sel] - total[sel, j[sel]]
    order = np.lexsort((-gain, want))
    want, wcost, sel = want[order], wcost[order], sel[order]
    win = rank_in_runs(want) < (cap - uses[want])
    if keep_one:  # two cells of one photo may not both leave its last uses
        leave = p0[sel]
        o2 = np.argsort(leave[win], kind="stable")
        lw = leave[win][o2]
        okleave = np.empty(len(lw), bool)
        okleave[o2] = rank_in_runs(lw) < (uses[lw] - 1)
        idx = np.flatnonzero(win)
        win[idx[~okleave]] = False
    moved_cells = cells[sel[win]]
    old = flat[moved_cells]
    flat[moved_cells] = want[win]
    cur[moved_cells] = wcost[win]
    np.add.at(uses, want[win], 1)
    np.subtract.at(uses, old, 1)
    return int(win.sum())
