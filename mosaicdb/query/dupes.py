"""`dupes`: the near-duplicate groups of the store (copies, edits, burst shots, RAW+JPEG
pairs; grouped at index time by index/dupes.py), largest first."""

from __future__ import annotations

from typing import TYPE_CHECKING

from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


def dupes(ctx: Context) -> list[dict]:
    groups = [
        {
            "size": 1 + len(others),
            "ids": [fid, *(i for i, _ in others)],
            "paths": [_show(fpath), *(_show(p) for _, p in others)],
        }
        for fid, fpath, others in ctx.catalog.dup_groups()
    ]
    return sorted(groups, key=lambda g: (-g["size"], g["ids"][0]))
