"""A photo's identity across renames and moves: a content fingerprint taken when the file is
read (its size and a hash of three 8 KiB samples: start, middle, end), and the match of the
files a walk finds new against the rows it finds gone. A match keeps its photo id, thumbnail
and vectors, so saved plans and the viewer keep working and nothing is decoded again."""

from __future__ import annotations

import hashlib
import os
from collections import defaultdict
from collections.abc import Iterable

from mosaicdb.records import Move

# Part of the stored fingerprint: changing it (or the hash) makes every stored one unmatched,
# so it needs a migration that clears them.
SAMPLE = 8 * 1024


def fingerprint(path: bytes, size: int) -> bytes | None:
    """16 bytes naming the content of `path` (`size` bytes), or None if it cannot be read.

    Three samples, not the whole file: a 24-megapixel JPEG is read once by its decoder, and
    hashing all of it again would cost a tenth of the index, and a rename of 10,000 photos
    would spend its time hashing (bench/bench_rename.py). Two files of one size that agree on
    the first, middle and last 8 KiB are the same photo for every purpose of the store
    (an edit re-encodes the photo or shifts its bytes, and a rating or tag is written
    at the start)."""
    h = hashlib.blake2b(size.to_bytes(8, "little"), digest_size=16)
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        if size <= 3 * SAMPLE:
            offsets = [0]
            n = size
        else:
            offsets = [0, size // 2 - SAMPLE // 2, size - SAMPLE]
            n = SAMPLE
        for off in offsets:
            h.update(os.pread(fd, n, off))
    except OSError:
        return None
    finally:
        os.close(fd)
    return h.digest()


def match_moved(
    gone: Iterable[tuple[int, bytes, int, bytes]],
    new: Iterable[tuple[bytes, int, int, int]],
) -> list[Move]:
    """Pair files found new with rows found gone by content.

    `gone`: (photo id, path, size, fingerprint) of rows whose file is no longer where it was;
    `new`: (path, root id, size, mtime_ns) of files with no row. Only a new file whose size is
    that of a gone row is read (its fingerprint); each gone row is taken once, new paths in
    sorted order, so a photo copied twice and then deleted moves to the first copy."""
    by_size: dict[int, dict[bytes, list[tuple[int, bytes]]]] = defaultdict(dict)
    for pid, path, size, fp in gone:
        by_size[size].setdefault(fp, []).append((pid, path))
    moves: list[Move] = []
    if not by_size:
        return moves
    todo = [x for x in sorted(new) if x[2] in by_size]
    fps = [fingerprint(x[0], x[2]) for x in todo]
    for (path, root_id, size, mtime), fp in zip(todo, fps, strict=True):
        rows = by_size[size].get(fp) if fp is not None else None
        if rows:
            pid, old = rows.pop(0)
            moves.append(Move(pid, old, path, root_id, size, mtime, fp))
    return moves
