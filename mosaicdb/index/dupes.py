"""Near-duplicate groups: photos whose perceptual hashes (features.perceptual_hash, taken from
the thumbnail the worker already decoded) differ in at most DUPLICATE_BITS bits are one shot
— copies, edits, burst neighbours, a RAW and its JPEG — and the repetition rules of render
count a group as one photo.

A group is its first photo (`dup_of` NULL) and the photos within the threshold of it
(`dup_of` = its id): every member is near the first, never only near another member, so
groups do not chain through a library of similar skies. Rows written by index come with
`dup_of` 0 (not yet grouped); after the writing, those, and the members of a first photo that
was removed or re-read, are placed: each joins the nearest first photo of an existing group
within the threshold, the rest group among themselves in id order. A kill before this step
leaves the 0s for the next run."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mosaicdb.store.catalog import Catalog


def regroup(catalog: Catalog) -> int:
    """Place the photos waiting for a group; returns how many rows changed."""
    import numpy as np

    from mosaicdb.features import DUPLICATE_BITS
    from mosaicdb.store.vecindex import hamming_within

    if not catalog.dup_work_waiting():
        return 0
    ids, hashes, dup_of = catalog.dup_states()  # ok photos with a hash, by id; dup_of -1: NULL
    pos = {int(i): k for k, i in enumerate(ids)}
    # re-placed: not yet grouped, or their first photo is gone, re-read, or no longer first
    lead = np.array([pos.get(int(d), -1) if d > 0 else -1 for d in dup_of], dtype=np.int64)
    todo = (dup_of == 0) | ((dup_of > 0) & (lead < 0))
    todo |= (dup_of > 0) & (lead >= 0) & (todo[np.maximum(lead, 0)] | (dup_of[lead] != -1))
    new = np.where(dup_of > 0, dup_of, -1)
    new[todo] = -1
    firsts = np.flatnonzero(~todo & (dup_of == -1))
    waiting = np.flatnonzero(todo)
    if len(waiting) and len(firsts):  # join the nearest existing first photo
        lims, dist, rows = hamming_within(hashes[waiting], hashes[firsts], DUPLICATE_BITS)
        for q, k in enumerate(waiting):
            a, b = int(lims[q]), int(lims[q + 1])
            if b > a:
                order = np.lexsort((ids[firsts[rows[a:b]]], dist[a:b]))
                new[k] = ids[firsts[rows[a:b][order[0]]]]
        waiting = waiting[new[waiting] < 0]
    if len(waiting):  # the rest among themselves: each first photo takes its free neighbours
        lims, dist, rows = hamming_within(hashes[waiting], hashes[waiting], DUPLICATE_BITS)
        taken = np.zeros(len(waiting), bool)
        for q in range(len(waiting)):  # waiting is in id order
            if taken[q]:
                continue
            taken[q] = True
            near = rows[int(lims[q]) : int(lims[q + 1])]
            near = near[~taken[near]]
            taken[near] = True
            new[waiting[near]] = ids[waiting[q]]
    changed = np.flatnonzero(new != dup_of)
    catalog.set_dup_of([(int(ids[k]), int(new[k]) if new[k] > 0 else None) for k in changed])
    return len(changed)
