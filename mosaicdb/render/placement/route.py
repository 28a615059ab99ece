"""Routing for tight quotas: which photos each cell should be offered, decided on the whole grid
before the flow runs, so that one flow can serve every cell.

A cell's nearest photos are where every similar cell looks; under a tight cap (room for few
more cells than there are) most cells must take photos that no candidate list holds, and the
flow over the lists alone left 44,000 of 64,000 cells unserved (bench_gigapixel). Routing
solves the problem at a coarse scale first, then hands the fine flow the arcs it needs:

1. cells and photos are cut into small groups of similar vectors (a balanced k-d tree on their
   principal axes: leaves of about the same count, so no group is a crowd);
2. a min-cost flow moves the cell groups' counts onto the photo groups' room (cap × photos),
   the cost between two groups the distance of their centroids: every pair offered when the
   groups are few, else the pairs the same routing finds one level up (groups of groups) and
   each group's few nearest;
3. every cell of a group gets an arc to every photo of each photo group its group was routed to
   (complete within a routed pair, so the fine flow has a full solution whenever the coarse one
   does; the basic coarse solution routes about one pair per group).

Leaf sizes keep the arcs near ROUTE_ARCS whatever the grid and library sizes.
"""

from __future__ import annotations

import numpy as np

# About this many routed arcs: leaves of s cells and ~s/cap photos give n·s/cap + photos·s.
ROUTE_ARCS = 1_500_000


# Cell leaves hold between these many cells. On the down-scaled gigapixel instance (real
# photos, bench_gigapixel --exact) leaves of at most 16 / 32 / 64 / 128 cells gave 6.1 / 3.2 /
# 3.0 / 3.7 % over the exact optimum (random crowded points preferred smaller ones).
LEAF_MIN, LEAF_MAX = 4, 64


# The coarse problem (cell groups onto photo groups, by count) is solved with every arc when
# it has at most COARSE_DENSE of them, else by routing it the same way, one level up, with
# groups of COARSE_LEAF.
COARSE_DENSE = 300_000
COARSE_LEAF = 32


# ... and each group keeps arcs to its COARSE_NEAREST nearest (by brute force, so only while
# groups × groups is under NEAREST_BUDGET): without them the gigapixel render's ΔE was 20.04
# instead of 19.66; at 100,000 cells (16,384² groups) they took 4.5 s.
COARSE_NEAREST = 4
NEAREST_BUDGET = 20_000_000


# The k-d tree splits on the first SPLIT_AXES principal axes only: the splits seldom reach
# further, and it is 6× less work on 48-value vectors.
SPLIT_AXES = 8


def leaf_sizes(n_cells: int, n_photos: int, cap: int) -> tuple[int, int]:
    """(cells per cell leaf, photos per photo leaf): a leaf of photos holds about as many uses
    as a leaf of cells holds cells."""
    s = ROUTE_ARCS / (n_cells / cap + n_photos)
    s_cells = int(np.clip(round(s), LEAF_MIN, LEAF_MAX))
    return s_cells, max(1, round(s_cells / cap))


def partition(x: np.ndarray, leaf: int) -> np.ndarray:
    """Leaf number of each row of x: a balanced k-d tree (median splits on the axis of largest
    spread, after rotating x to its principal axes) with leaves of at most `leaf` rows."""
    n = len(x)
    x = np.asarray(x, np.float64)
    x = x - x.mean(axis=0)
    _, vec = np.linalg.eigh(x.T @ x)
    x = x @ vec[:, ::-1][:, :SPLIT_AXES]
    node = np.zeros(n, np.int64)
    levels = int(np.ceil(np.log2(max(1, n / leaf)))) if n > leaf else 0
    for _ in range(levels):
        order = np.argsort(node, kind="stable")
        first = np.r_[True, node[order][1:] != node[order][:-1]]
        starts = np.flatnonzero(first)
        xs = x[order]
        count = np.diff(np.r_[starts, n])
        mean = np.add.reduceat(xs, starts, axis=0) / count[:, None]
        spread = np.add.reduceat(xs * xs, starts, axis=0) / count[:, None] - mean * mean
        at = np.cumsum(first) - 1  # each sorted row's node, 0..nodes-1
        axis = spread.argmax(axis=1)[at]
        value = xs[np.arange(n), axis]
        o2 = np.lexsort((value, at))  # by node, then value
        rank = np.arange(n) - starts[at[o2]]
        upper = np.empty(n, bool)
        upper[order[o2]] = rank >= count[at[o2]] // 2
        node = 2 * node + upper
    return np.unique(node, return_inverse=True)[1]


def arcs(cells: np.ndarray, photos: np.ndarray, cap: int):
    """Routed arcs (cell, photo position, squared distance) for `cells` (n, d) onto `photos`
    (m, d) with `cap` uses each."""
    s_cells, s_photos = leaf_sizes(len(cells), len(photos), cap)
    lc, lp = partition(cells, s_cells), partition(photos, s_photos)
    mass, room = np.bincount(lc), cap * np.bincount(lp)
    pa, pb = _route(_centroids(cells, lc), mass, _centroids(photos, lp), room)
    cell, photo = _pairs(lc, lp, pa, pb)
    return cell, photo, _pair_sq(cells, photos, cell, photo)


def _route(src, mass, dst, room):
    """The (src, dst) pairs a min-cost flow of `mass` onto `room` uses (cost: the distance
    between the vectors); mass it cannot place is left out."""
    from ortools.graph.python import min_cost_flow

    ks, kd = len(src), len(dst)
    if ks * kd <= COARSE_DENSE:
        a, b = np.repeat(np.arange(ks), kd), np.tile(np.arange(kd), ks)
    else:  # the pairs of their groups, one level up
        ls, ld = partition(src, COARSE_LEAF), partition(dst, COARSE_LEAF)
        up = _route(
            _centroids(src, ls, mass),
            np.bincount(ls, mass),
            _centroids(dst, ld, room),
            np.bincount(ld, room),
        )
        a, b = _pairs(ls, ld, *up)
        if ks * kd <= NEAREST_BUDGET:
            near = _nearest(src, dst, COARSE_NEAREST)
            a = np.concatenate([a, np.repeat(np.arange(ks), near.shape[1])])
            b = np.concatenate([b, near.reshape(-1)])
            a, b = np.divmod(np.unique(a * kd + b), kd)
    w = np.sqrt(_pair_sq(src, dst, a, b))
    scale = 20_000 / max(float(w.max(initial=0)), 1e-9)
    f = min_cost_flow.SimpleMinCostFlow()
    f.add_arcs_with_capacity_and_unit_cost(
        a, ks + b, mass[a].astype(np.int64), np.round(w * scale).astype(np.int64)
    )
    sink, over = ks + kd, ks + kd + 1
    f.add_arcs_with_capacity_and_unit_cost(
        ks + np.arange(kd), np.full(kd, sink), room.astype(np.int64), np.zeros(kd, np.int64)
    )
    # mass the offered arcs cannot take: left out (its cells keep their own candidates)
    f.add_arcs_with_capacity_and_unit_cost(
        np.arange(ks), np.full(ks, over), mass.astype(np.int64), np.full(ks, 80_001)
    )
    total = int(mass.sum())
    f.add_arc_with_capacity_and_unit_cost(over, sink, total, 0)
    supply = np.zeros(ks + kd + 2, np.int64)
    supply[:ks] = mass
    supply[sink] = -total
    f.set_nodes_supplies(np.arange(ks + kd + 2), supply)
    if f.solve() != f.OPTIMAL:
        return a[:0], b[:0]
    used = f.flows(np.arange(len(a))) > 0
    return a[used], b[used]


def _nearest(src, dst, k):
    """(len(src), k) positions of each src vector's k nearest dst vectors."""
    k = min(k, len(dst))
    out = np.empty((len(src), k), np.int64)
    step = max(1, (1 << 22) // len(dst))  # ~32 MB of distances at a time
    norms = (dst * dst).sum(1)
    for s in range(0, len(src), step):
        x = src[s : s + step]
        d = (x * x).sum(1)[:, None] + norms[None] - 2 * x @ dst.T
        out[s : s + step] = np.argpartition(d, k - 1, axis=1)[:, :k]
    return out


def _pair_sq(x, y, i, j):
    """Squared distance of x[i[k]] to y[j[k]] for every k, in bounded pieces."""
    out = np.empty(len(i), np.float64)
    for s in range(0, len(i), 1 << 18):
        d = x[i[s : s + (1 << 18)]] - y[j[s : s + (1 << 18)]]
        out[s : s + (1 << 18)] = np.einsum("ij,ij->i", d, d)
    return out


def _centroids(x, labels, weight=None):
    """Each label's (weighted) mean of x."""
    k = int(labels.max()) + 1
    w = np.ones(len(x)) if weight is None else np.asarray(weight, np.float64)
    out = np.stack([np.bincount(labels, x[:, j] * w, k) for j in range(x.shape[1])], 1)
    return out / np.maximum(np.bincount(labels, w, k), 1e-12)[:, None]


def _pairs(la, lb, pa, pb):
    """Every (member of group pa[k], member of group pb[k]) pair: group labels la, lb."""
    oa, ob = np.argsort(la, kind="stable"), np.argsort(lb, kind="stable")
    start_a = np.searchsorted(la[oa], np.arange(la.max() + 2))
    start_b = np.searchsorted(lb[ob], np.arange(lb.max() + 2))
    size_a, size_b = np.diff(start_a)[pa], np.diff(start_b)[pb]
    per = size_a * size_b
    k = np.repeat(np.arange(len(pa)), per)
    local = np.arange(int(per.sum())) - np.repeat(np.cumsum(per) - per, per)
    i, j = np.divmod(local, size_b[k])
    return oa[start_a[pa[k]] + i], ob[start_b[pb[k]] + j]
