"""Near-duplicates as one photo to the rules: a photo's group is named by its first photo
(index/dupes.py), the solvers see groups, and each cell then shows the member of its group
that matched it best.

`collapse` maps each cell's candidates to their groups (a group listed once, at its best
member's place, so lists stay best first); `grouped` wraps the solvers' callbacks the same
way; `expand` turns the solvers' plan of groups back into photos."""

from __future__ import annotations

import numpy as np

from mosaicdb.render.placement.graph import Positions
from mosaicdb.render.placement.rules import Widen


class Groups:
    def __init__(self, members: np.ndarray, firsts: np.ndarray):
        """`members` (photo ids in a group but not its first) and `firsts` (their groups'
        first photos), aligned; every other photo is a group of its own."""
        order = np.argsort(members)
        self.members = np.asarray(members, np.int64)[order]
        self.firsts = np.asarray(firsts, np.int64)[order]
        # a table lookup where the ids allow it (Positions), not a binary search
        self._member = Positions(self.members)
        self._shared = Positions(np.union1d(self.members, self.firsts))

    def of(self, ids: np.ndarray) -> np.ndarray:
        """The group (its first photo's id) of each photo id; -1 stays -1."""
        ids = np.asarray(ids, np.int64)
        if not len(self.members):
            return ids.copy()
        k = self._member(ids)
        return np.where(k >= 0, self.firsts[k], ids)

    def _shares(self, ids: np.ndarray) -> np.ndarray:
        """Whether each photo id is in a group of more than one photo."""
        return self._shared(np.asarray(ids, np.int64)) >= 0

    def collapse(self, cand_ids: np.ndarray, cand_dist: np.ndarray):
        """Candidate lists of groups: each group once, where its best member was."""
        g = self.of(cand_ids)
        # only photos of shared groups can repeat a group in a list: the repeats are found
        # among those entries alone, and only the lists that have one are re-packed (t1, 200
        # across, 25,000 lists of 40 on lib2k: 0.062 → 0.036 s; expand 0.029 → 0.001 s)
        r, c = np.nonzero(self._shares(cand_ids))
        _, first = np.unique(r * (int(g.max(initial=0)) + 1) + g[r, c], return_index=True)
        again = np.ones(len(r), bool)
        again[first] = False
        if not again.any():
            return g, cand_dist
        lists = np.unique(r[again])
        dup = np.zeros((len(lists), g.shape[1]), bool)
        dup[np.searchsorted(lists, r[again]), c[again]] = True
        keep = np.argsort(dup, axis=1, kind="stable")  # the kept ones first, in their order
        dist = cand_dist.copy()
        g[lists] = np.take_along_axis(np.where(dup, -1, g[lists]), keep, axis=1)
        dist[lists] = np.take_along_axis(np.where(dup, np.inf, dist[lists]), keep, axis=1)
        return g, dist

    def grouped(self, widen: Widen | None, all_ids: np.ndarray, groups: np.ndarray):
        """`widen` for the solvers, who ask by group: `allowed` over `groups` becomes a mask
        over the photos `all_ids` (a photo is allowed when its group is), and the answer is
        collapsed to groups."""
        if widen is None:
            return None
        at = np.searchsorted(groups, self.of(all_ids))

        def wrapped(which, allowed, kk: int):
            d, i = widen(which, allowed[at], kk)
            g, d = self.collapse(i, d)
            return d, g

        return wrapped

    def expand(self, plan: np.ndarray, cand_ids: np.ndarray) -> np.ndarray:
        """Each cell's photo: the best of its candidates in the group the solvers chose for
        it (the group's first photo when none of its candidates is in it)."""
        out = np.array(plan, np.int64)
        cells = np.flatnonzero(self._shares(out))  # a photo of its own is that photo
        hit = self.of(cand_ids[cells]) == out[cells, None]
        first = np.argmax(hit, axis=1)
        found = hit[np.arange(len(cells)), first]
        out[cells] = np.where(found, cand_ids[cells, first], out[cells])
        return out
