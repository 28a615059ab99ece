"""Placement under the repetition rules: exact against a dense solver, rules hold on random
inputs, deterministic, impossible rules refused in one line, the variety numbers."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from mosaicdb.errors import RenderError
from mosaicdb.render.placement import Space, place
from mosaicdb.render.placement.graph import DENSE_IDS, Positions
from mosaicdb.render.placement.route import partition
from mosaicdb.render.placement.rules import check_feasible, photo_cap
from mosaicdb.render.placement.variety import variety

ID0 = 100  # photo i has id ID0 + i: ids are not positions


class Instance:
    """Cells and photos as random points; candidates are each cell's k nearest photos and
    the callbacks search exactly, as FAISS does in a render."""

    def __init__(self, rows, cols, n_photos, seed, dim=3, crowded=False):
        rng = np.random.default_rng(seed)
        self.rows, self.cols, self.n = rows, cols, rows * cols
        self.cells = rng.random((self.n, dim))
        photos = rng.random((n_photos, dim))
        if crowded:  # a few photos near every cell: their quotas fill first
            photos[: max(1, n_photos // 4)] *= 0.1
        self.photos = photos
        self.ids = np.arange(ID0, ID0 + n_photos)
        self.d2 = ((self.cells[:, None] - photos[None]) ** 2).sum(-1)
        self.order = np.argsort(self.d2, axis=1, kind="stable")
        self.widened = 0

    def candidates(self, k):
        o = self.order[:, :k]
        return self.ids[o], np.take_along_axis(self.d2, o, 1)

    def widen(self, which, allowed, kk):
        self.widened += 1
        d = np.full((len(which), kk), np.inf)
        ids = np.full((len(which), kk), -1, np.int64)
        for j, cell in enumerate(which):
            ranked = self.order[cell][allowed[self.order[cell]]][:kk]
            d[j, : len(ranked)] = self.d2[cell, ranked]
            ids[j, : len(ranked)] = self.ids[ranked]
        return d, ids

    def near_cells(self, photo_ids, _allowed, kk):
        p = photo_ids - ID0
        o = np.argsort(self.d2[:, p].T, axis=1, kind="stable")[:, :kk]
        return np.take_along_axis(self.d2[:, p].T, o, 1), o

    def place(self, k, routed=False, **rules):
        """routed: the vectors are given, as render gives them (routing under a tight cap)."""
        cand, dist = self.candidates(k)
        space = Space(self.cells, lambda: self.photos) if routed else None
        return place(
            cand,
            dist,
            self.rows,
            self.cols,
            widen=self.widen,
            near_cells=self.near_cells,
            all_ids=self.ids,
            space=space,
            **rules,
        )

    def cost(self, plan):
        return float(np.sqrt(self.d2[np.arange(self.n), plan - ID0]).sum())

    def exact(self, max_uses):
        """The optimum of `max_uses` by a dense assignment over max_uses copies of each photo."""
        from scipy.optimize import linear_sum_assignment

        dense = np.tile(np.sqrt(self.d2), (1, max_uses))
        r, c = linear_sum_assignment(dense)
        return float(dense[r, c].sum())


@pytest.mark.parametrize(
    ("rows", "cols", "n_photos", "max_uses", "k", "crowded"),
    [
        (6, 10, 20, 4, 8, True),
        (10, 12, 30, 6, 8, True),
        (20, 25, 60, 12, 8, True),
        (40, 50, 400, 8, 8, True),
        # capacity = cells: only a wider graph keeps the flow near the optimum
        (40, 50, 400, 5, 32, False),
        (50, 50, 2500, 1, 32, False),
    ],
)
def test_quota_matches_a_dense_exact_solver(rows, cols, n_photos, max_uses, k, crowded):
    """With every photo a candidate the flow is the exact optimum (up to its integer costs);
    over the k-nearest graph, within 0.5 %."""
    inst = Instance(rows, cols, n_photos, rows, crowded=crowded)
    best = inst.exact(max_uses)
    if n_photos <= 400:
        dense = inst.place(n_photos, max_uses=max_uses)
        assert np.bincount(dense - ID0).max() <= max_uses
        assert inst.cost(dense) <= best * 1.0005
    sparse = inst.place(k, max_uses=max_uses)
    assert np.bincount(sparse - ID0).max() <= max_uses
    assert inst.cost(sparse) <= best * 1.005


def test_priced_flow_is_the_flow_over_every_arc(monkeypatch):
    """The flow over each cell's cheapest arcs, priced against the rest, reaches the same
    optimum as the flow over all of them, also when arcs left out had to be added (a second
    round) and when the pricing gives up (the whole graph is solved)."""
    from mosaicdb.render.placement import graph

    rounds = []
    real = graph._flow
    monkeypatch.setattr(graph, "_flow", lambda *a: rounds.append(1) or real(*a))
    seen = {"priced": 0, "repriced": 0, "gave_up": 0}
    for seed in range(40):
        rng = np.random.default_rng(seed)
        n, n_photos, k = int(rng.integers(50, 400)), int(rng.integers(30, 80)), 24
        least = -(-n // n_photos)
        cap = least if seed % 4 == 0 else int(rng.integers(least, 3 * least + 1))  # 0: tight
        c = np.repeat(np.arange(n), k)
        p = np.concatenate([rng.choice(n_photos, k, replace=False) for _ in range(n)])
        hot = rng.random(n_photos) < 0.2  # popular photos: their room runs out
        w = rng.integers(0, 1000, n * k) + np.where(hot[p], 0, 300)
        order = np.lexsort((w, c))
        c, p, w = c[order], p[order], w[order]
        room = np.full(n_photos, cap, np.int64)
        overflow = 2 * int(w.max()) + 1
        rounds.clear()
        priced = graph._priced_flow(c, p, w, n, room, overflow)
        every = graph._flow(c, p, w, n, room, overflow)
        if priced is None:
            seen["gave_up"] += 1
            continue
        seen["priced"] += 1
        seen["repriced"] += len(rounds) > 2
        assert np.bincount(p[priced], minlength=n_photos).max() <= cap
        assert np.bincount(c[priced], minlength=n).max() <= 1
        unserved = n - int(priced.sum()), n - int(every.sum())
        assert int(w[priced].sum()) + overflow * unserved[0] == (
            int(w[every].sum()) + overflow * unserved[1]
        )
    assert all(seen.values()), seen


@pytest.mark.parametrize(
    ("rows", "cols", "n_photos", "max_uses", "dim"),
    [(40, 50, 700, 3, 3), (40, 50, 2000, 1, 3), (30, 40, 130, 10, 6)],
)
def test_routing_serves_a_tight_crowded_grid_in_one_flow(rows, cols, n_photos, max_uses, dim):
    """Room for few more cells than there are, the photos crowded: over its 32-nearest lists
    alone the flow leaves cells waiting and ends 5.7-12.6 % over the optimum; routed, one flow
    serves them all, within 5 % (measured: 1.0-2.0 %)."""
    inst = Instance(rows, cols, n_photos, 5, dim=dim, crowded=True)
    lists = inst.place(32, max_uses=max_uses)
    assert inst.widened  # the lists could not serve every cell
    inst.widened = 0
    routed = inst.place(32, max_uses=max_uses, routed=True)
    assert inst.widened == 0
    assert np.bincount(routed - ID0).max() <= max_uses
    best = inst.exact(max_uses)
    assert inst.cost(routed) <= best * 1.05
    assert inst.cost(routed) < inst.cost(lists)
    assert np.array_equal(routed, inst.place(32, max_uses=max_uses, routed=True))


def test_partition_leaves_are_balanced_and_similar():
    """Leaves of at most `leaf` rows, none under half of it, and nearer inside than across."""
    x = np.random.default_rng(1).random((1000, 4))
    labels = partition(x, 16)
    sizes = np.bincount(labels)
    assert sizes.max() <= 16 and sizes.min() >= 8 and sizes.sum() == 1000
    centre = np.stack([x[labels == j].mean(0) for j in range(len(sizes))])
    inside = np.linalg.norm(x - centre[labels], axis=1).mean()
    assert inside < 0.5 * np.linalg.norm(x - x.mean(0), axis=1).mean()
    assert np.array_equal(labels, partition(x, 16))
    assert (partition(x[:5], 16) == 0).all()


def test_full_capacity_leftovers_are_searched_again():
    """cells = max_uses × photos with crowded photos: the sparse graph cannot serve every
    cell, the leftovers are searched again, every photo ends up used exactly max_uses times."""
    inst = Instance(6, 10, 20, 7, dim=2, crowded=True)
    plan = inst.place(4, max_uses=3)
    assert (np.bincount(plan - ID0, minlength=20) == 3).all()
    assert inst.widened  # the crowded photos filled: cells waited and were searched again
    assert np.array_equal(plan, inst.place(4, max_uses=3))


def test_many_leftovers_are_served_greedily_within_the_cap(monkeypatch):
    """Past GREEDY_LEFTOVERS waiting cells the last phase is greedy: the cap still holds,
    every cell is served where the room is exactly the cells, and the plan is deterministic."""
    from mosaicdb.render.placement import quota as P

    monkeypatch.setattr(P, "GREEDY_LEFTOVERS", 0)
    monkeypatch.setattr(P, "FULL_RESOLVES", 0)
    inst = Instance(20, 30, 200, 3, dim=2, crowded=True)
    plan = inst.place(2, max_uses=3)
    assert (np.bincount(plan - ID0, minlength=200) == 3).all()
    assert np.array_equal(plan, inst.place(2, max_uses=3))
    assert inst.cost(plan) <= inst.exact(3) * 1.5  # greedy: near, not exact


def test_min_distance_widens_before_it_gives_up():
    """A cell whose one candidate clashes is searched again even when the first widened
    search would already cover every photo (found by hypothesis: 1×3 cells, 3 photos)."""
    inst = Instance(1, 3, 3, 0)
    cand = np.array([[ID0], [ID0 + 2], [ID0 + 2]])
    dist = np.array([[0.38], [0.16], [0.20]])
    plan = place(cand, dist, 1, 3, min_distance=1, widen=inst.widen, all_ids=inst.ids)
    assert plan[0] != plan[1] != plan[2]


def test_min_distance_costs_little_against_the_free_plan():
    """Spreading keeps the likeness: on a smooth random target the plan under
    --min-distance 2 costs less than 1.6 × the free plan (each cell's best), and the swaps
    and moves after the repair only ever lower the cost."""
    inst = Instance(30, 30, 400, 5)
    free = inst.cost(inst.place(64))
    spread = inst.place(64, min_distance=2)
    assert inst.cost(spread) < free * 1.6
    _assert_spread(spread.reshape(30, 30), 2)


def test_smoothing_makes_neighbours_err_alike(monkeypatch):
    """With SPREAD_SMOOTH the sweeps lower cost + λ·Σ|e_i − e_j| over 4-neighbour pairs
    (e: the tile's lightness minus its cell's), the spacing still holds, and the plan is
    the same for the same seed."""
    from mosaicdb.render.placement import spread

    inst = Instance(30, 30, 400, 5)
    monkeypatch.setattr(spread, "SPREAD_SMOOTH", 0.0)
    plain = inst.place(64, min_distance=2, routed=True)
    monkeypatch.setattr(spread, "SPREAD_SMOOTH", 0.5)
    smooth = inst.place(64, min_distance=2, routed=True)

    def objective(plan):
        e = (inst.photos[plan - ID0, 0] - inst.cells[:, 0]).reshape(30, 30)
        pairs = np.abs(np.diff(e, axis=0)).sum() + np.abs(np.diff(e, axis=1)).sum()
        return inst.cost(plan) + 0.5 * pairs, pairs

    (j_plain, pairs_plain), (j_smooth, pairs_smooth) = objective(plain), objective(smooth)
    assert j_smooth < j_plain and pairs_smooth < 0.9 * pairs_plain
    _assert_spread(smooth.reshape(30, 30), 2)
    assert np.array_equal(smooth, inst.place(64, min_distance=2, routed=True))


def _assert_spread(grid, R):
    rows, cols = grid.shape
    for r in range(rows):
        for c in range(cols):
            win = grid[max(0, r - R) : r + R + 1, max(0, c - R) : c + R + 1]
            assert (win == grid[r, c]).sum() == 1, (r, c)


@settings(max_examples=60, deadline=None)
@given(
    rows=st.integers(1, 12),
    cols=st.integers(1, 12),
    n_photos=st.integers(1, 70),
    max_uses=st.integers(0, 5),
    min_distance=st.integers(0, 2),
    use_all=st.booleans(),
    k=st.integers(1, 8),
    seed=st.integers(0, 3),
    routed=st.booleans(),
    smooth=st.sampled_from([0.0, 0.5]),
)
def test_rules_hold_on_random_inputs(
    rows, cols, n_photos, max_uses, min_distance, use_all, k, seed, routed, smooth
):
    from mosaicdb.render.placement import spread

    saved, spread.SPREAD_SMOOTH = spread.SPREAD_SMOOTH, smooth  # (a hypothesis test: no fixture)
    try:
        _rules_hold(rows, cols, n_photos, max_uses, min_distance, use_all, k, seed, routed)
    finally:
        spread.SPREAD_SMOOTH = saved


def _rules_hold(rows, cols, n_photos, max_uses, min_distance, use_all, k, seed, routed):
    n = rows * cols
    try:
        check_feasible(n, n_photos, rows, cols, max_uses, min_distance, use_all)
    except RenderError:
        return
    inst = Instance(rows, cols, n_photos, seed, crowded=seed % 2 == 1)
    rules = dict(
        max_uses=max_uses, min_distance=min_distance, use_all=use_all, seed=seed, routed=routed
    )
    try:
        plan = inst.place(min(k, n_photos), **rules)
    except RenderError as e:
        # the only refusal left after check_feasible: both quota and spacing tight at once
        assert max_uses and min_distance, e
        assert "cannot be met" in str(e)
        return
    uses = np.bincount(plan - ID0, minlength=n_photos)
    assert plan.min() >= ID0 and plan.max() < ID0 + n_photos
    if max_uses:
        assert uses.max() <= max_uses
    if use_all:
        if n >= n_photos:
            assert (uses >= 1).all()
        else:
            assert uses.max() == 1
    if min_distance:
        _assert_spread(plan.reshape(rows, cols), min_distance)
    assert np.array_equal(plan, inst.place(min(k, n_photos), **rules))


def test_use_all_reaches_photos_no_cell_listed():
    """Photos far from every cell are in no candidate list; --use-all still places each."""
    inst = Instance(10, 10, 40, 3)
    inst.photos[:10] += 5.0  # far away
    inst.d2 = ((inst.cells[:, None] - inst.photos[None]) ** 2).sum(-1)
    inst.order = np.argsort(inst.d2, axis=1, kind="stable")
    plan = inst.place(6, use_all=True)
    assert (np.bincount(plan - ID0, minlength=40) >= 1).all()
    free = inst.place(6)
    assert len(np.unique(free)) < 40  # without the rule they would be left out


def test_use_all_with_more_photos_than_cells_uses_none_twice():
    inst = Instance(5, 5, 60, 2, crowded=True)
    plan = inst.place(4, use_all=True)
    assert len(np.unique(plan)) == 25
    assert inst.cost(plan) <= inst.exact(1) * 1.005


def test_seed_breaks_ties_only():
    """Identical photos tie everywhere: the seed picks among them; distinct costs do not move."""
    cand = np.tile(np.array([[ID0, ID0 + 1, ID0 + 2]]), (9, 1))
    dist = np.zeros((9, 3))
    a = place(cand, dist, 3, 3, max_uses=3, seed=0, all_ids=np.arange(ID0, ID0 + 3))
    assert np.array_equal(
        a, place(cand, dist, 3, 3, max_uses=3, seed=0, all_ids=np.arange(ID0, ID0 + 3))
    )
    assert (np.bincount(a - ID0) == 3).all()
    inst = Instance(8, 8, 30, 5)
    plans = [inst.place(8, max_uses=3, seed=s) for s in range(3)]
    assert all(np.array_equal(plans[0], p) for p in plans[1:])


def test_impossible_rules_refused_before_work():
    with pytest.raises(RenderError, match=r"^--max-uses 2 with 10 photos fills at most 20 cells"):
        check_feasible(30, 10, 5, 6, 2, 0)
    with pytest.raises(RenderError, match=r"^--min-distance 2 needs at least 25 different photos"):
        check_feasible(100, 20, 10, 10, 0, 2)
    with pytest.raises(RenderError, match="no indexed photos"):
        check_feasible(10, 0, 2, 5, 0, 0)
    check_feasible(100, 25, 10, 10, 4, 2, True)  # tight but possible


def test_photo_cap():
    assert photo_cap(100, 10, 10, 10, 0, 0, False) == 0
    assert photo_cap(100, 10, 10, 10, 12, 0, False) == 12
    assert photo_cap(100, 10, 10, 10, 0, 1, False) == 25  # one per 2×2 block at most
    assert photo_cap(100, 200, 10, 10, 0, 0, True) == 1


def test_variety_of_a_hand_made_plan():
    plan = np.array(
        [
            [1, 1, 2, 3],
            [4, 5, 6, 7],
            [8, 9, 10, 2],
        ]
    )
    v = variety(plan.reshape(-1), 3, 4, n_library=20)
    assert v == {
        "distinct_photos": 10,
        "library_used": 0.5,
        "max_uses": 2,
        "min_repeat_distance": 1,  # the two 1s side by side
        "same_neighbour_share": round(2 / 12, 4),
    }
    spaced = np.arange(12).reshape(3, 4)
    spaced[2, 3] = 0
    v = variety(spaced.reshape(-1), 3, 4, n_library=12)
    assert v["min_repeat_distance"] == 3 and v["same_neighbour_share"] == 0.0
    assert variety(np.arange(6), 2, 3, 6)["min_repeat_distance"] is None
    far = np.arange(30 * 30).reshape(30, 30)
    far[29, 29] = far[0, 0]  # only repeat 29 cells apart: past the shifted-copy range
    assert variety(far.reshape(-1), 30, 30, 900)["min_repeat_distance"] == 29


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.integers(0, 3 * DENSE_IDS), min_size=0, max_size=40, unique=True),
    st.lists(st.integers(-2, 3 * DENSE_IDS), min_size=0, max_size=40),
    st.booleans(),
)
def test_positions_match_a_search_of_the_sorted_ids(ids, queries, small):
    """The dense table (small ids) and the binary search (sparse ids) give the same answer:
    each id's position in the sorted ids, -1 for ids not there (negatives, beyond the end)."""
    ids = sorted(i % 1000 for i in ids) if small else sorted(ids)
    ids = np.array(sorted(set(ids)), np.int64)
    queries = np.array(queries + ids[::3].tolist(), np.int64).reshape(-1, 1)
    where = {int(v): i for i, v in enumerate(ids)}
    want = np.array([[where.get(int(q), -1)] for q in queries[:, 0]], np.int64).reshape(-1, 1)
    lookup = Positions(ids)
    assert (lookup.table is not None) == (len(ids) > 0 and ids[-1] < DENSE_IDS)
    assert np.array_equal(lookup(queries), want)
