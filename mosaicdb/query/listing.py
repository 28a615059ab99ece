"""`ls`: photos with their mean colour, filtered by status, folder and path glob (narrowed in
SQL first, then matched exactly), sorted, or ordered by nearness to a colour (FAISS first, the
catalog's vectors when the filters leave few)."""

from __future__ import annotations

import fnmatch
import os
from typing import TYPE_CHECKING

from mosaicdb.errors import OptionError
from mosaicdb.query.colour import colour_order, hex_of, parse_colour
from mosaicdb.records import PathPrefilter
from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


NEAR_RERANK = 4  # `--near`: candidates by vector per row shown, re-ordered by CIEDE2000

# A `--near` listing with filters that keep at most NEAR_DIRECT_MAX photos ranks those
# directly (their vectors from the catalog). Otherwise it searches the max(NEAR_FIRST,
# NEAR_PER_ROW × limit) nearest photos (so that filters still leave enough), then 8× more
# while they do not; past NEAR_SEARCH_MAX it ranks the photos the filters keep.
NEAR_DIRECT_MAX, NEAR_FIRST, NEAR_PER_ROW, NEAR_SEARCH_MAX = 5_000, 200, 10, 50_000
MAX_LIMIT = 10**12
SORTS = ("id", "path", "size", "lightness", "indexed", "colour")


def listing(
    ctx: Context, *, status=None, root=None, path=None, near=None, limit=None, sort=None
) -> list[dict]:
    """Photos filtered and sorted (by `sort`, default id), or with `near` the ok photos
    closest to a colour, nearest first (at most `limit`, default 200)."""
    import numpy as np

    if status not in (None, "ok", "error"):
        raise OptionError("--status", f"must be ok or error, got {status!r}")
    if sort not in (None, *SORTS):
        raise OptionError("--sort", "must be one of " + ", ".join(SORTS))
    if near is not None and sort is not None:
        raise OptionError("--sort", "does not go with --near (photos come nearest first)")
    if path == "":  # a script's unset variable, most likely: it would match nothing
        raise OptionError("--path", "is empty (leave it out to list every photo)")
    if limit is not None and not 1 <= limit <= MAX_LIMIT:
        raise OptionError("--limit", f"must be between 1 and {MAX_LIMIT}, got {limit}")
    root_id = None
    if root is not None:
        root_id = ctx.root_id(root)
    lab_near = None if near is None else parse_colour(near)
    if lab_near is not None:  # failures have no colour
        # the vectors' nearest (squared Lab over the k×k grid), NEAR_RERANK× as many as
        # asked, then ordered by the CIEDE2000 of their mean colour, which is what is printed
        want = limit or 200
        rows = (
            [] if status == "error" else _nearest(ctx, lab_near, root_id, path, want * NEAR_RERANK)
        )
    else:
        rows = ctx.catalog.photo_rows(
            ctx.spec.key,
            status=status,
            root_id=root_id,
            path_like=None if path is None else path_prefilter(path),
            order="id" if sort in (None, "colour") else sort,
            limit=None if path or sort == "colour" else limit,
        )
        if path:
            rows = [r for r in rows if _path_matches(r["path"], path)]
        if sort == "colour":
            rows.sort(
                key=lambda r: colour_order(
                    None if r["mean_l"] is None else (r["mean_l"], r["mean_a"], r["mean_b"])
                )
            )
        if limit:
            rows = rows[:limit]
    out = []
    for r in rows:
        lab = None if r["mean_l"] is None else [r["mean_l"], r["mean_a"], r["mean_b"]]
        d = {
            "id": r["id"],
            "path": _show(r["path"]),
            "status": r["status"],
            "size": r["size"],
            "width": r["width"],
            "height": r["height"],
            "format": r["format"],
            "lab": None if lab is None else [round(x, 2) for x in lab],
            "hex": None if lab is None else hex_of(lab),
            "error": r["error"],
        }
        if lab_near is not None:
            from mosaicdb import features as F

            d["delta_e"] = float(F.ciede2000(lab_near, np.array(lab)))
        out.append(d)
    if lab_near is not None:
        out = sorted(out, key=lambda d: d["delta_e"])[: limit or 200]  # stable: ties by vector
        for d in out:
            d["delta_e"] = round(d["delta_e"], 2)
    return out


def _path_matches(path: bytes, glob: str) -> bool:
    """--path: the glob against the file's name as the system gives it (a byte that is not
    UTF-8 is one character, as in the glob a shell passes), not against its shown form."""
    return fnmatch.fnmatchcase(os.fsdecode(path), glob)


LIKE_MAX = 40_000  # bytes: SQLite refuses LIKE patterns over 50,000


def path_prefilter(glob: str) -> PathPrefilter:
    """What the catalog can test of `glob` (as _path_matches reads it) so that it drops most
    rows before fnmatch decides, never a row that matches: LIKE patterns where `*`, `?` and a
    `[...]` class become `%`, ASCII is literal, and the other characters are literal in
    `bytes_like` only (SQLite reads bytes as UTF-8 however they are: it gets them as `runs`,
    searched byte for byte). A pattern longer than LIKE_MAX is cut there and ends with `%`."""
    ascii_like, bytes_like, runs, run = [], [], [], b""
    i = 0
    while i < len(glob):
        ch = glob[i]
        if ch in "*?[":
            if ch == "[":  # as fnmatch reads a class: `[!]…]` and `[]…]` hold a `]`
                j = i + 1
                j += j < len(glob) and glob[j] == "!"
                j += j < len(glob) and glob[j] == "]"
                end = glob.find("]", j)
                i = end if end != -1 else i  # no end: a plain `[`, which `%` covers too
            part = b"%"
        else:
            part = b"\\" + ch.encode() if ch in "%_\\" else os.fsencode(ch)
        if ch.isascii():
            ascii_like.append(part)
            if run:
                runs.append(run)
            run = b""
        else:
            ascii_like.append(b"%")
            run += part
        bytes_like.append(part)
        i += 1
    if run:
        runs.append(run)
    return PathPrefilter(_like(ascii_like), _like(bytes_like), tuple(runs))


def _like(parts: list[bytes]) -> bytes:
    """The parts of a LIKE pattern joined, runs of `%` made one, cut to LIKE_MAX."""
    out = b"".join(p for k, p in enumerate(parts) if not (k and p == b"%" == parts[k - 1]))
    if len(out) <= LIKE_MAX:
        return out
    out = out[:LIKE_MAX]
    if (len(out) - len(out.rstrip(b"\\"))) % 2:  # not the first half of an escape
        out = out[:-1]
    return out + b"%"


def _nearest(ctx: Context, lab, root_id: int | None, path: str | None, n: int) -> list[dict]:
    """The `n` ok photos (in `root_id`, matching `path`) nearest to `lab`, nearest first:
    the few photos narrow filters keep ranked directly; else the vector index's nearest,
    widened while the filters keep fewer than `n` of them, and past NEAR_SEARCH_MAX the
    filtered photos ranked directly."""
    import numpy as np

    from mosaicdb.store import vecindex as V

    spec = ctx.spec
    query = np.tile(lab.astype(np.float32), spec.grid**2).reshape(1, -1)

    def kept(rows):
        return [r for r in rows if _path_matches(r["path"], path)] if path else rows

    def ranked(rows):  # nearest first, from the vectors in the catalog
        vectors = ctx.catalog.feature_vectors(spec.key, [r["id"] for r in rows])
        rows = [r for r in rows if r["id"] in vectors]
        if not rows:
            return []
        x = np.stack([np.frombuffer(vectors[r["id"]], dtype=np.float32) for r in rows])
        d = ((x - query) ** 2).sum(axis=1)
        return [rows[i] for i in np.argsort(d, kind="stable")[:n]]

    like = None if path is None else path_prefilter(path)
    if root_id is not None or path:
        # one pass in the catalog tells whether the filters keep few photos (0.3 s over 1M
        # paths), far cheaper than widening the search to find them
        rows = ctx.catalog.photo_rows(
            spec.key, status="ok", root_id=root_id, path_like=like, limit=NEAR_DIRECT_MAX + 1
        )
        if len(rows) <= NEAR_DIRECT_MAX:
            return ranked(kept(rows))
    index = ctx.vectors.index()
    if index.ntotal == 0:
        return []
    want = min(index.ntotal, max(NEAR_PER_ROW * n, NEAR_FIRST))
    while True:
        _, ids = V.search(index, query, want)
        order = [int(i) for i in ids[0] if i >= 0]
        rows = ctx.catalog.photo_rows(
            spec.key, status="ok", root_id=root_id, ids=order, path_like=like
        )
        rows = kept(rows)
        if len(rows) >= n or want >= index.ntotal:
            rank = {pid: i for i, pid in enumerate(order)}
            return sorted(rows, key=lambda r: rank[r["id"]])[:n]
        if want >= NEAR_SEARCH_MAX:
            break
        want = min(index.ntotal, want * 8)
    # the filters keep few photos: rank all of them
    return ranked(
        kept(ctx.catalog.photo_rows(spec.key, status="ok", root_id=root_id, path_like=like))
    )
