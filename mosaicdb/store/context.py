"""What every stage is handed: the store's catalog, its vector cache, its feature spec and the
progress reporter, and the two folder facts several stages need. Not the public `Library`:
stages never call back up into the API (issue 21)."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from mosaicdb.errors import NotFoundError
from mosaicdb.progress import Progress
from mosaicdb.store.catalog import Catalog
from mosaicdb.store.vector_cache import VectorCache


@dataclass(eq=False)
class Context:
    home: Path
    catalog: Catalog
    progress: Progress = field(default_factory=Progress)
    vectors: VectorCache = field(init=False)

    def __post_init__(self):
        self.vectors = VectorCache(self)

    @property
    def spec(self):
        """The store's own feature spec (its vectors' grid and aspect)."""
        from mosaicdb.features import FeatureSpec

        return FeatureSpec.parse(self.catalog.get_meta("feature_spec"))

    def root_id(self, root: str | os.PathLike) -> int:
        """The id of a registered folder, given as the user typed it."""
        raw = os.fsencode(root)
        want = os.path.realpath(os.fsencode(os.path.expanduser(os.fsdecode(raw))))
        for rid, path in self.catalog.roots():
            if path == want:
                return rid
        raise NotFoundError(f"{root} is not a registered folder; see `mosaicdb roots`")

    def indexed_under_empty_folder(self, root_id: int, folder: bytes) -> int:
        """How many photos were indexed under `folder` if it is now empty, else 0: a disk not
        mounted on its mount point leaves an empty folder, which must not read as every
        photo deleted."""
        try:
            with os.scandir(folder) as entries:
                if next(entries, None) is not None:
                    return 0
        except OSError:
            return 0
        return len(self.catalog.photo_states(root_id, folder))
