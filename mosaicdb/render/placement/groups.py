"""Near-duplicates as one photo to the rules: a photo's group is named by its first photo
(index/dupes.py), the solvers see groups, and each cell then shows the member of its group
that matched it best.

`collapse` maps each cell's candidates to their groups (a group listed once, at its best
member's place, so lists stay best first); `grouped` wraps the solvers' callbacks the same
way; `expand` turns the solvers' plan of groups back into photos."""

from __future__ import annotations

import numpy as np

from mosaicdb.render.placement.rules import Widen


class Groups:
    def __init__(self, members: np.ndarray, firsts: np.ndarray):
        """`members` (photo ids in a group but not its first) and `firsts` (their groups'
        first photos), aligned; every other photo is a group of its own."""
        order = np.argsort(members)
        self.members = np.asarray(members, np.int64)[order]
        self.firsts = np.asarray(firsts, np.int64)[order]

    def of(self, ids: np.ndarray) -> np.ndarray:
        """The group (its first photo's id) of each photo id; -1 stays -1."""
        ids = np.asarray(ids, np.int64)
        if not len(self.members):
            return ids.copy()
        k = np.clip(np.searchsorted(self.members, ids), 0, len(self.members) - 1)
        return np.where(self.members[k] == ids, self.firsts[k], ids)

    def collapse(self, cand_ids: np.ndarray, cand_dist: np.ndarray):
        """Candidate lists of groups: each group once, where its best member was."""
        g = self.of(cand_ids)
        s = np.sort(g, axis=1)
        order = np.argsort(g, axis=1, kind="stable")
        dup_sorted = np.zeros_like(g, dtype=bool)
        dup_sorted[:, 1:] = (s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)
        dup = np.zeros_like(dup_sorted)
        np.put_along_axis(dup, order, dup_sorted, axis=1)
        g = np.where(dup, -1, g)
        dist = np.where(dup, np.inf, cand_dist)
        keep = np.argsort(dup, axis=1, kind="stable")  # the kept ones first, in their order
        g = np.take_along_axis(g, keep, axis=1)
        dist = np.take_along_axis(dist, keep, axis=1).astype(cand_dist.dtype)
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
        hit = self.of(cand_ids) == plan[:, None]
        first = np.argmax(hit, axis=1)
        found = hit[np.arange(len(plan)), first]
        return np.where(found, cand_ids[np.arange(len(plan)), first], plan)
