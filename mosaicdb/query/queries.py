"""Asking the store: statistics, colour coverage, listings, nearest colours, and `check`.

Reads only the catalog and the vector file, except `check`, which is about the files on disk.
"""

from __future__ import annotations

import fnmatch
import math
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from mosaicdb.errors import DAMAGED_ADVICE, OptionError
from mosaicdb.records import PathPrefilter
from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context

# Colour coverage bins: lightness bands × hue sectors, plus near-greys per band.
L_BANDS = [(0, 20), (20, 40), (40, 60), (60, 80), (80, 101)]
# 30° sectors of Lab hue angle centred on 0°, 30°, … 330°, named after the colours in them
# (sRGB red is at 40°, yellow 103°, green 136°, cyan 196°, blue 306°, magenta 328°)
HUES = "pink red orange yellow lime green spring cyan azure indigo blue magenta".split()


def colour_bins(lab):
    """(lightness band, is near-grey, hue sector) of each row of an (n, 3) Lab array: the bins
    of the coverage chart and of the gap report."""
    import numpy as np

    band = np.clip(
        np.searchsorted([b[1] for b in L_BANDS], lab[:, 0], side="right"), 0, len(L_BANDS) - 1
    )
    return band, np.hypot(lab[:, 1], lab[:, 2]) < GREY_CHROMA, hue_sector(lab[:, 1], lab[:, 2])


def hue_sector(a, b):
    """Index into HUES of Lab (a, b) arrays."""
    import numpy as np

    return ((np.degrees(np.arctan2(b, a)) + 15) % 360 // 30).astype(int)


GREY_CHROMA = 8.0


def parse_colour(text: str):
    """'#1e3a5f', '1e3a5f' or 'lab:30,5,-30' → Lab (numpy array of 3)."""
    import numpy as np

    from mosaicdb import features as F

    t = text.strip().lower()
    m = re.fullmatch(r"#?([0-9a-f]{6})", t)
    if m:
        rgb = [int(m.group(1)[i : i + 2], 16) for i in (0, 2, 4)]
        return F.srgb8_to_lab(np.array(rgb, dtype=np.uint8)).astype(np.float64)
    num = r"\s*(-?(?:\d+\.?\d*|\.\d+))\s*"
    m = re.fullmatch(rf"lab:{num},{num},{num}", t)
    if m:
        L, a, b = (float(x) for x in m.groups())
        if not (0 <= L <= 100 and -128 <= a <= 127 and -128 <= b <= 127):
            raise OptionError("--near", f"{text!r}: L must be 0-100, a and b -128-127")
        return np.array([L, a, b])
    raise OptionError("--near", f"not a colour: {text!r} (use #rrggbb or lab:L,a,b)")


def hex_of(lab) -> str:
    import numpy as np

    from mosaicdb import features as F

    r, g, b = F.lab_to_srgb8(np.asarray(lab, dtype=np.float64))
    return f"#{int(r):02x}{int(g):02x}{int(b):02x}"


def coverage(ctx: Context) -> dict:
    """How the photos spread over Lab space: counts per lightness band × hue sector, and
    near-greys (chroma < GREY_CHROMA) per band. Read from the exact vector file (checked
    against the catalog first): a million photos in well under a second; a compressed store's
    from the catalog's mean columns."""
    import numpy as np

    from mosaicdb.store import vecindex as V

    index = ctx.vectors.index()
    if V.is_compressed(index):  # its vectors are approximate: the catalog's means are not
        m = np.array([r for part in ctx.catalog.feature_means(ctx.spec.key) for r in part])
        m = m.reshape(-1, 3).astype(np.float32)
    else:
        vecs = V.stored_vectors(index)
        cells = index.d // 3
        # mean L, a, b of each vector as one matrix product (cells have equal area)
        avg = np.tile(np.eye(3, dtype=np.float32), (cells, 1)) / np.float32(cells)
        m = vecs @ avg
    band, grey, hue = colour_bins(m)
    nb, nh = len(L_BANDS), len(HUES)
    greys = np.bincount(band[grey], minlength=nb)
    counts = np.bincount(band[~grey] * nh + hue[~grey], minlength=nb * nh).reshape(nb, nh)
    return {
        "lightness_bands": [f"{lo}-{min(hi, 100)}" for lo, hi in L_BANDS],
        "hues": HUES,
        "counts": counts.tolist(),
        "greys": greys.tolist(),
    }


def bin_colours():
    """sRGB of each coverage bin (lightness bands × [grey, *HUES]), for charts."""
    import numpy as np

    from mosaicdb import features as F

    labs = []
    for lo, hi in L_BANDS:
        mid = (lo + min(hi, 100)) / 2
        row = [[mid, 0.0, 0.0]]
        for j in range(len(HUES)):
            ang = np.radians(30 * j)
            row.append([mid, 30 * np.cos(ang), 30 * np.sin(ang)])
        labs.append(row)
    return F.lab_to_srgb8(np.array(labs))


PLOT_FORMATS = (".png", ".jpg", ".jpeg", ".webp", ".tif", ".tiff")


def plot_path(plot: str) -> str:
    """The absolute path for a --plot picture, refused before any work if its format or
    folder will not do."""
    p = Path(plot).expanduser().resolve()
    if p.suffix.lower() not in PLOT_FORMATS:
        raise OptionError(
            "--plot",
            f"unknown picture format {p.suffix or '(none)'!r}; use .png, .jpg, .webp or .tif",
        )
    if not p.parent.is_dir():
        raise OptionError("--plot", f"folder {p.parent} does not exist")
    return str(p)


def stats(ctx: Context, plot: str | None = None) -> dict:
    from concurrent.futures import ThreadPoolExecutor

    if plot is not None:
        plot = plot_path(plot)

    # the counting queries run in the database beside the coverage maths here (SQLite gives
    # up the GIL while it reads): on a million photos each side takes about a second
    with ThreadPoolExecutor(3) as pool:
        counts_job = pool.submit(ctx.catalog.status_format_counts)
        roots_job = pool.submit(ctx.catalog.root_counts)
        thumbs_job = pool.submit(ctx.catalog.thumbnail_bytes)
        cov = coverage(ctx)
        status_formats, root_counts = counts_job.result(), roots_job.result()
        thumb_bytes = thumbs_job.result()
    by_status: dict[str, int] = {}
    by_format: dict[str, int] = {}
    for status, fmt, n in status_formats:
        by_status[status] = by_status.get(status, 0) + n
        if status == "ok":
            by_format[fmt or "unknown"] = by_format.get(fmt or "unknown", 0) + n
    catalog = ctx.catalog.catalog_bytes()  # a server's database; None: the SQLite files here
    if catalog is None:
        catalog = sum(p.stat().st_size for p in ctx.home.glob("catalog.sqlite*") if p.is_file())
    vectors = {p.name: p.stat().st_size for p in sorted(ctx.home.glob("vectors-*.faiss"))}
    last = ctx.catalog.get_meta("last_index_at")
    out = {
        "photos": sum(by_status.values()),
        "by_status": {"ok": by_status.get("ok", 0), "error": by_status.get("error", 0)},
        "by_format": dict(sorted(by_format.items(), key=lambda kv: -kv[1])),
        "roots": [{"path": _show(p), "photos": n} for _i, p, n in root_counts],
        "store": {
            "home": str(ctx.home),
            "catalog_bytes": catalog,
            "thumbnail_bytes": thumb_bytes,
            "vector_files": vectors,
        },
        "feature_spec": ctx.spec.key,
        "vector_index": ctx.vectors.kind(),
        "last_index_at": float(last) if last else None,
        "coverage": cov,
    }
    if plot:
        import numpy as np

        from mosaicdb import imaging

        cov = out["coverage"]
        counts = np.column_stack([cov["greys"], np.array(cov["counts"])])
        imaging.write_coverage_plot(plot, bin_colours(), counts)
        out["plot"] = plot
    return out


# A `--near` listing with filters that keep at most NEAR_DIRECT_MAX photos ranks those
# directly (their vectors from the catalog). Otherwise it searches the max(NEAR_FIRST,
# NEAR_PER_ROW × limit) nearest photos (so that filters still leave enough), then 8× more
# while they do not; past NEAR_SEARCH_MAX it ranks the photos the filters keep.
NEAR_DIRECT_MAX, NEAR_FIRST, NEAR_PER_ROW, NEAR_SEARCH_MAX = 5_000, 200, 10, 50_000
MAX_LIMIT = 10**12


SORTS = ("id", "path", "size", "lightness", "indexed")


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
        rows = [] if status == "error" else _nearest(ctx, lab_near, root_id, path, limit or 200)
    else:
        rows = ctx.catalog.photo_rows(
            ctx.spec.key,
            status=status,
            root_id=root_id,
            path_like=None if path is None else path_prefilter(path),
            order=sort or "id",
            limit=None if path else limit,
        )
        if path:
            rows = [r for r in rows if _path_matches(r["path"], path)]
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

            d["delta_e"] = round(float(F.ciede2000(lab_near, np.array(lab))), 2)
        out.append(d)
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


def check(ctx: Context, *, repair: bool = False, files: bool = True, deep: bool = False) -> dict:
    """Compare catalog ↔ vector file ↔ disk, test every thumbnail (JPEG markers, in the
    database), run the database's quick check (`deep`: decode every thumbnail, compare the
    tables row by row and run the full integrity check); with `repair`, rebuild the vector
    file, drop orphans, turn photos whose thumbnail is broken or missing into errors, derive
    missing vectors from the stored thumbnails and drop the rows of files gone from disk
    (never a row whose file exists; never under a missing root folder)."""
    from concurrent.futures import ThreadPoolExecutor

    problems: list[str] = []
    report: dict = {"problems": problems}
    cat = ctx.catalog
    # a repair leaves alone any photo that an `index` running meanwhile writes after this
    since = cat.current_seq() if repair else None
    # SQLite gives up the GIL while it reads, so its own page check (the longest part; the
    # entry point may have begun it already) runs on one core while the three table scans of
    # check_rows share the other. FAISS (~0.2 s to import) waits for the scans: measured,
    # reading the vector file beside them gained nothing. The vector file is mapped, not read.
    with cat.checking(), ThreadPoolExecutor(2) as pool:  # the pool ends first
        integrity_job = pool.submit(cat.integrity_check, deep=deep)
        rows_job = pool.submit(cat.check_rows, exact=deep)
        try:
            spec = ctx.spec  # imports numpy (~0.1 s) while the checks run
            try:
                rows = rows_job.result()
            except Exception as e:
                integrity = integrity_job.result()
                if not integrity:
                    raise
                return _damaged_catalog(report, integrity, e, repair)
            n, idsum = rows.vectors.get(spec.key, (0, 0))  # the catalog's vectors of the spec
            from mosaicdb.store import vecindex as V

            path = ctx.vectors.path(spec)
            vec: dict = {"file": str(path)}
            index_state = None
            if not path.exists():
                if n:  # a store that never had a photo has none
                    problems.append(f"vector file {path.name} is missing")
            else:
                try:
                    index = V.read_mapped(path)
                    index_state = (int(index.ntotal), int(V.ids_of(index).sum()), int(index.d))
                    vec["file_vectors"] = index_state[0]
                except Exception as e:
                    problems.append(f"vector file {path.name} cannot be read: {e}")
            # an ok photo without a vector of the store's spec is never placed, and nothing
            # else says so (counted beside the page check, in a thread Ctrl-C can leave)
            unplaced = 0
            if deep or (n, idsum) != rows.ok_photos:
                unplaced = pool.submit(cat.count_missing_features, spec.key).result()
            integrity = integrity_job.result()
        except KeyboardInterrupt:  # stop the scans: leaving the pool would wait for them
            cat.interrupt()
            raise
    if integrity:
        problems.insert(0, _integrity_problem(integrity))
    vec["catalog_vectors"] = n
    if unplaced:
        problems.append(
            f"{unplaced} photos have no {spec.key} vector, so no render places them "
            "(`check --repair` derives it from their stored thumbnails)"
        )
    vec["photos_without_vector"] = unplaced
    if index_state is not None:
        ntotal, file_idsum, dim = index_state
        if dim != spec.dim:
            problems.append(f"vector file has dimension {dim}, spec {spec.key} needs {spec.dim}")
        elif ntotal != n or file_idsum != idsum:
            problems.append(
                f"vector file holds {ntotal:,} vectors, the catalog {n:,} (or different photos)"
            )
    report["vectors"] = vec

    orphans, bad_thumbs, no_thumbs = rows.orphans, rows.bad_thumbnails, rows.missing_thumbnails
    if any(orphans.values()):
        problems.append("orphan rows: " + ", ".join(f"{v} {k}" for k, v in orphans.items() if v))
    report["orphans"] = orphans
    if no_thumbs:
        problems.append(
            f"{len(no_thumbs)} photos have no stored thumbnail (photo ids "
            f"{', '.join(map(str, no_thumbs[:10]))}); re-index with --retry-errors "
            "after `check --repair`"
        )
    report["missing_thumbnails"] = no_thumbs

    if deep:
        from mosaicdb import imaging

        known = set(bad_thumbs)
        for chunk in ctx.catalog.iter_thumbnail_data():
            bad_thumbs += imaging.undecodable([r for r in chunk if r[0] not in known])
    if bad_thumbs:
        problems.append(
            f"{len(bad_thumbs)} thumbnails do not decode (photo ids "
            f"{', '.join(map(str, bad_thumbs[:10]))}); re-index with --retry-errors "
            "after `check --repair`"
        )
    report["bad_thumbnails"] = bad_thumbs

    missing, changed, skipped_roots = [], [], []
    if files:
        for rid, rpath in ctx.catalog.roots():
            # a missing or empty root folder (a disk not mounted) is not compared
            if not os.path.isdir(rpath) or ctx.indexed_under_empty_folder(rid, rpath):
                skipped_roots.append(_show(rpath))
                continue
            for pid, p, size, mtime, _status in ctx.catalog.file_states(rid):
                try:
                    st = os.stat(p)
                except FileNotFoundError:
                    missing.append((pid, p))
                    continue
                except OSError:
                    continue
                if st.st_size != size or st.st_mtime_ns != mtime:
                    changed.append((pid, p))
        if missing:
            problems.append(f"{len(missing)} indexed files are gone from disk")
        if changed:
            problems.append(
                f"{len(changed)} files changed since indexing "
                "(run `mosaicdb index` to re-read them)"
            )
    report["files"] = {
        "missing": [_show(p) for _, p in missing],
        "changed": [_show(p) for _, p in changed],
        "roots_not_found": skipped_roots,
    }

    repaired: list[str] = []
    if repair and integrity:
        # every repair writes through the catalog: not into a file SQLite finds damaged
        report["remaining"] = [
            *problems,
            "not repaired: the catalog file is damaged; " + DAMAGED_ADVICE,
        ]
    elif repair:
        if any(orphans.values()):
            cat.drop_orphans()
            repaired.append("dropped orphan rows")
        # Files gone first: marking a photo below logs its vectors' deletion, which would
        # read as a rewrite after `since`. A file back on disk since it was looked for stays.
        gone = [pid for pid, p in missing if not os.path.lexists(p)]
        n = cat.delete_photos(gone, since)
        if n:
            repaired.append(f"dropped {n} rows of files gone from disk")
        broken = "stored thumbnail does not decode"
        n = cat.mark_unreadable(bad_thumbs, broken, since)
        if n:
            repaired.append(f"marked {n} photos with broken thumbnails as errors")
        n = cat.mark_unreadable(no_thumbs, "stored thumbnail is missing", since)
        if n:
            repaired.append(f"marked {n} photos without a thumbnail as errors")
        if unplaced:  # after the marking: no vector is derived for a photo just made an error
            from mosaicdb.vectors import ensure_spec_vectors

            undecoded: list[int] = []  # damaged inside, markers intact: only decoding tells
            n = ensure_spec_vectors(ctx, spec, undecoded)
            if n:
                repaired.append(f"derived {n} missing vectors from the stored thumbnails")
            n = cat.mark_unreadable(undecoded, broken, since)
            if n:
                repaired.append(f"marked {n} photos with broken thumbnails as errors")
        ctx.vectors.sync(rebuild=True)
        repaired.append("rebuilt the vector file from the catalog")
        # what is left after repairing
        after = check(ctx, repair=False, files=files, deep=deep)
        report["remaining"] = after["problems"]
    report["repaired"] = repaired
    report["ok"] = not (report.get("remaining") if repair else problems)
    return report


def _integrity_problem(integrity: list[str]) -> str:
    return "database integrity: " + "; ".join(integrity[:5])


def _damaged_catalog(report: dict, integrity: list[str], error: Exception, repair: bool) -> dict:
    """The report of a catalog file whose pages SQLite finds damaged and that cannot be read:
    nothing else can be compared, and --repair, which works through the catalog, cannot
    mend it."""
    report["problems"] += [
        _integrity_problem(integrity),
        f"the catalog cannot be read ({getattr(error, 'orig', None) or error}): " + DAMAGED_ADVICE,
    ]
    empty = {"missing": [], "changed": [], "roots_not_found": []}
    report.update(vectors={}, orphans={}, missing_thumbnails=[], bad_thumbnails=[], files=empty)
    report.update(repaired=[], ok=False)
    if repair:
        report["remaining"] = list(report["problems"])
    return report


BAND_WORDS = ["very dark", "dark", "mid", "light", "very light"]


def gaps(
    ctx: Context,
    target: str,
    *,
    tiles_across: int = 100,
    aspect: str = "1:1",
    threshold: float = 10.0,
    plot: str | None = None,
) -> dict:
    """Where the library is thin for this target: cells whose nearest tile is more than
    `threshold` ΔE2000 away, grouped by the cells' colour (lightness band × hue, or grey)."""
    import numpy as np

    from mosaicdb import features as F
    from mosaicdb import imaging
    from mosaicdb.store import vecindex as V
    from mosaicdb.target import cells as target_cells
    from mosaicdb.target import grid_size, parse_aspect
    from mosaicdb.vectors import ensure_spec_vectors, vectors_of

    if not (math.isfinite(threshold) and threshold > 0):
        raise OptionError("--threshold", f"must be a positive number, got {threshold}")
    if plot is not None:
        plot = plot_path(plot)
    if not 1 <= tiles_across <= 100_000:
        raise OptionError("--tiles-across", f"must be between 1 and 100000, got {tiles_across}")
    aw, ah = parse_aspect(aspect)
    spec = ctx.spec.with_aspect(aw, ah)
    w, h = imaging.image_size_or_error(target)
    cols, rows = grid_size(w, h, aw / ah, tiles_across, None)
    cells, _ = target_cells(target, cols, rows, spec, aw / ah)
    if (aw, ah) != (1, 1):
        ensure_spec_vectors(ctx, spec)
    index = ctx.vectors.index(spec)
    if index.ntotal == 0:
        from mosaicdb.errors import RenderError

        raise RenderError("the store has no indexed photos: run `mosaicdb index PATH` first")
    _, ids = V.search(ctx.vectors.search_index(spec, index), cells, 1)
    best = vectors_of(ctx.catalog, spec, index, ids[:, 0])
    de = F.ciede2000(cells.reshape(-1, 3), best.reshape(-1, 3)).reshape(len(cells), -1).mean(1)
    cell_mean = cells.reshape(len(cells), -1, 3).mean(axis=1)
    poor = de > threshold
    band, grey, hue = colour_bins(cell_mean)
    key = np.where(grey, -1, hue)
    groups = []
    for b, hk in sorted({(int(b), int(k)) for b, k in zip(band[poor], key[poor], strict=True)}):
        sel = poor & (band == b) & (key == hk)
        lab = cell_mean[sel].mean(axis=0)
        name = f"{BAND_WORDS[b]} {'greys' if hk < 0 else HUES[hk] + 's'}"
        n = int(sel.sum())
        groups.append(
            {
                "colour": name,
                "hex": hex_of(lab),
                "lab": [round(float(x), 1) for x in lab],
                "cells": n,
                "best_delta_e": round(float(de[sel].mean()), 1),
                "closest_hex": hex_of(best[sel].reshape(-1, 3).mean(axis=0)),
                # a photo is typically used a few times; about one new photo per 4 such cells
                "suggest_photos": max(1, -(-n // 4)),
            }
        )
    groups.sort(key=lambda g: -g["cells"])
    out = {
        "target": target,
        "cols": cols,
        "rows": rows,
        "cells": len(cells),
        "threshold": threshold,
        "poor_cells": int(poor.sum()),
        "mean_delta_e": round(float(de.mean()), 2),
        "groups": groups,
    }
    if plot:
        imaging.write_swatch_pairs(
            plot, [(g["hex"], g["closest_hex"]) for g in groups[:24]] or [("#ffffff", "#ffffff")]
        )
        out["plot"] = plot
    return out
