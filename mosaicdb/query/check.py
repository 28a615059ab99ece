"""`check`: the catalog, the vector file and the disk compared (rows, vectors, thumbnails,
files changed or gone, SQLite's integrity), and `--repair`, which mends what it can."""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

from mosaicdb.errors import DAMAGED_ADVICE
from mosaicdb.records import display_path as _show

if TYPE_CHECKING:
    from mosaicdb.store.context import Context


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

    # temporary outputs of killed commands: in the store (the vector file's) and in the
    # folders the store's renders were written to
    from mosaicdb.output import leftovers

    folders = {str(ctx.home)} | {
        os.path.dirname(o["output"]) for outs in cat.render_outputs().values() for o in outs
    }
    temps = [p for f in sorted(folders) for p in leftovers.leftovers(f)]
    report["temp_files"] = [str(p) for p in temps]
    if temps:
        mb = sum(leftovers.size(p) for p in temps) / 2**20
        problems.append(
            f"{len(temps)} temporary files left by killed commands ({mb:,.1f} MB), e.g. "
            f"{temps[0]} (`check --repair` removes them)"
        )

    repaired: list[str] = []
    if repair and integrity:
        # every repair writes through the catalog: not into a file SQLite finds damaged
        report["remaining"] = [
            *problems,
            "not repaired: the catalog file is damaged; " + DAMAGED_ADVICE,
        ]
    elif repair:
        # tests only: MOSAICDB_TEST_SLOW_REPAIR=S waits S seconds before each repair step, for
        # the fault tests to kill a repair between (and during) its writes
        pause = float(os.environ.get("MOSAICDB_TEST_SLOW_REPAIR", "0") or 0)

        def step() -> None:
            if pause:
                time.sleep(pause)

        step()
        if any(orphans.values()):
            cat.drop_orphans()
            repaired.append("dropped orphan rows")
        # Files gone first: marking a photo below logs its vectors' deletion, which would
        # read as a rewrite after `since`. A file back on disk since it was looked for stays.
        step()
        gone = [pid for pid, p in missing if not os.path.lexists(p)]
        n = cat.delete_photos(gone, since)
        if n:
            repaired.append(f"dropped {n} rows of files gone from disk")
        step()
        broken = "stored thumbnail does not decode"
        n = cat.mark_unreadable(bad_thumbs, broken, since)
        if n:
            repaired.append(f"marked {n} photos with broken thumbnails as errors")
        step()
        n = cat.mark_unreadable(no_thumbs, "stored thumbnail is missing", since)
        if n:
            repaired.append(f"marked {n} photos without a thumbnail as errors")
        step()
        if unplaced:  # after the marking: no vector is derived for a photo just made an error
            from mosaicdb.vectors import ensure_spec_vectors

            undecoded: list[int] = []  # damaged inside, markers intact: only decoding tells
            n = ensure_spec_vectors(ctx, spec, undecoded)
            if n:
                repaired.append(f"derived {n} missing vectors from the stored thumbnails")
            n = cat.mark_unreadable(undecoded, broken, since)
            if n:
                repaired.append(f"marked {n} photos with broken thumbnails as errors")
        step()
        if temps:
            freed = leftovers.remove(temps)
            repaired.append(f"removed {len(temps)} temporary files ({freed / 2**20:,.1f} MB)")
        step()
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
