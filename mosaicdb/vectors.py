"""The store's vectors as the stages use them: vectors of another cell aspect or grid derived
once from the stored thumbnails (never from the photo folders) and kept in the catalog, and
the stored vectors of a list of photos. `ctx` is anything with `catalog`, `spec` (the store's
own feature spec) and `progress`; faiss stays in store/vecindex.py."""

from __future__ import annotations

from mosaicdb.errors import ImageError, RenderError, broken_thumbnail


def ensure_spec_vectors(ctx, spec, broken: list[int] | None = None) -> int:
    """Vectors of `spec` for the photos that lack one, derived from their stored thumbnails
    (the photo folders are not read) and kept in the catalog: once for another cell aspect or
    grid than the store's own, and by `check --repair` for a store vector gone missing.
    A thumbnail that does not decode stops a render with one line naming the fix; given a
    `broken` list (the repair), its photo's id goes there instead and the others go on.
    Returns how many were derived."""
    n = ctx.catalog.count_missing_features(spec.key)
    if not n:
        return 0
    from mosaicdb import imaging

    derived = 0
    with ctx.progress.task(f"Deriving {spec.key} features", total=n) as t:
        for chunk in ctx.catalog.iter_thumbnails_missing(spec.key):
            rows = []
            for pid, codec, data in chunk:
                try:
                    px = imaging.thumb_pixels(data, codec)
                except ImageError:
                    if broken is None:
                        raise RenderError(broken_thumbnail(pid)) from None
                    broken.append(pid)
                    continue
                if spec.grid > ctx.spec.grid:  # as index makes them (scan.process_batch)
                    v = imaging.tile_vectors(px, (ctx.spec.grid, spec.grid), spec.aspect)[1]
                else:
                    v = imaging.tile_vector(px, spec.grid, spec.aspect)
                m = v.reshape(-1, 3).mean(axis=0)
                rows.append((pid, v.tobytes(), (float(m[0]), float(m[1]), float(m[2]))))
            ctx.catalog.write_features(spec.key, rows)
            derived += len(rows)
            t.advance(len(chunk))
    return derived


def vectors_of(catalog, spec, index, ids):
    """Stored vectors for ids (with repeats), each distinct id looked up once: from the exact
    index, or from the catalog when the index is compressed (its vectors are approximate)."""
    import numpy as np

    from mosaicdb import features as F
    from mosaicdb.store import vecindex as V

    uniq, inverse = np.unique(ids, return_inverse=True)
    if not V.is_compressed(index):
        return V.reconstruct(index, uniq)[inverse]
    blobs = catalog.feature_vectors(spec.key, uniq)
    return F.unpack_vectors([blobs[int(i)] for i in uniq], spec.dim)[inverse]
