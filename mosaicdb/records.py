"""Plain records passed between the index stages (worker → writer), and how a stored path is
shown. No heavy imports: worker processes import this, not the database layer."""

from __future__ import annotations

import os
from dataclasses import dataclass


def display_path(p: bytes) -> str:
    """A stored (bytes) path as text; bytes that are not UTF-8 show as \\udcNN escapes."""
    return os.fsdecode(p).encode("utf-8", "backslashreplace").decode("utf-8")


def pid_running(pid: int) -> bool:
    """Whether process `pid` exists (another user's counts): how a temporary file or a lock
    left by a writer tells whether the writer is gone."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


@dataclass(frozen=True)
class PathPrefilter:
    """What the catalog can test of a --path glob before fnmatch decides (built by
    queries.path_prefilter): each part matches at least every path the glob matches."""

    ascii_like: bytes  # LIKE, only ASCII literal: SQLite reads the other bytes as UTF-8
    bytes_like: bytes  # LIKE, every literal as its bytes: for a byte-wise LIKE (bytea)
    runs: tuple[bytes, ...] = ()  # the glob's non-ASCII literal runs, as bytes


@dataclass(frozen=True)
class PhotoState:
    id: int
    size: int
    mtime_ns: int
    status: str
    indexed_at: float | None = None


@dataclass(frozen=True)
class Move:
    """A file found where a gone row's file was not: the row takes the new path (identity.py)."""

    photo_id: int
    old_path: bytes
    path: bytes
    root_id: int
    size: int
    mtime_ns: int
    fingerprint: bytes


@dataclass
class PhotoResult:
    """What a worker learned about one file; see scan.process_batch."""

    path: bytes
    size: int
    mtime_ns: int
    status: str  # "ok" | "error"
    error: str | None = None
    width: int | None = None
    height: int | None = None
    format: str | None = None
    thumb: bytes | None = None
    thumb_w: int | None = None
    thumb_h: int | None = None
    thumb_codec: str | None = None
    vector: bytes | None = None
    mean: tuple[float, float, float] | None = None
    fine: tuple[str, bytes] | None = None  # (spec key, vector) of the re-ranking grid
    fingerprint: bytes | None = None  # index/identity.fingerprint of the file read
    phash: int | None = None  # features.perceptual_hash of the thumbnail
