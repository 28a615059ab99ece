"""Assembly of a plan into an output file, in bounded memory: tiles decoded from the stored
thumbnails (never the photo folders) a window ahead on two threads, kept while the plan
still needs them, composed strip by strip into an uncompressed TIFF stream that the encoder
reads as it goes; written to a temporary name and renamed. Used by render and `sheet`."""

from __future__ import annotations

import errno
import os
import shutil
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mosaicdb.errors import ImageError, OptionError, RenderError, broken_thumbnail

# Decoded tiles kept for reuse across rows (LRU). Memory of a render is about this plus two
# strips of the output, whatever the output size.
TILE_CACHE_BYTES = 256 * 2**20
# Tiles decoded ahead of the row being placed (at most), in chunks of DECODE_CHUNK.
DECODE_AHEAD = 256
DECODE_CHUNK = 16


# Tiles decoded while the placement runs (at most): the placement is single-threaded, so the
# other core decodes the photos the cells are likeliest to get; assembly starts with them.
WARM_BYTES = 64 * 2**20


class Warmer:
    """Decodes tiles on a thread of its own while the caller does other work (the placement):
    `photo_ids` likeliest first, until `take()` or WARM_BYTES. The thumbnails are read by the
    caller's thread here, so the catalog is never used from two threads; a tile that does not
    decode is left out (assembly decodes it again and reports it)."""

    def __init__(self, catalog, photo_ids, tile_w: int, tile_h: int):
        ids = [int(p) for p in photo_ids[: max(1, WARM_BYTES // (tile_w * tile_h * 3))]]
        self._blobs = catalog.thumbnails(ids)
        self._order = [p for p in ids if p in self._blobs]
        self._size = (tile_w, tile_h)
        self._tiles: dict = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mosaicdb-warm", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        from mosaicdb import imaging

        with imaging.one_libvips_thread():  # ends before assembly sets it again: see take()
            for p in self._order:
                if self._stop.is_set():
                    break
                try:
                    self._tiles[p] = imaging.decode_tile(*self._blobs[p], *self._size)
                except ImageError:
                    pass

    def take(self) -> dict:
        """Stop decoding; the tiles decoded so far, photo id → tile."""
        self._stop.set()
        self._thread.join()
        self._blobs = {}
        return self._tiles


def output_format(path: str) -> str:
    from mosaicdb.output.formats import FORMATS

    ext = Path(path).suffix.lower()
    if ext not in FORMATS:
        raise OptionError(
            "--output",
            f"unknown image format {ext or '(none)'!r}; use one of " + ", ".join(sorted(FORMATS)),
        )
    return FORMATS[ext]


def prepare_output(output: str) -> tuple[str, str]:
    """(absolute output path, format); `.dz` becomes the `.dzi` that dzsave writes. Refuses an
    unknown extension or a missing folder before any work."""
    fmt = output_format(output)
    path = str(Path(output).expanduser().resolve())
    if fmt == "dz" and path.lower().endswith(".dz"):
        path = path[:-3] + ".dzi"
    if not Path(path).parent.is_dir():
        raise OptionError("--output", f"folder {Path(path).parent} does not exist")
    return path, fmt


def assemble(
    catalog,
    progress,
    plan,
    tile_w: int,
    tile_h: int,
    output: str,
    fmt: str,
    blend: float,
    cell_rgb,
    k: int,
    timings: dict,
    warm: dict | None = None,
):
    """Place the tiles strip by strip into an uncompressed TIFF stream that the encoder reads
    as it goes (in memory, a few strips at a time); returns the Lab grid of the output cells
    when blending (measured on the pixels), else None. `warm`: tiles decoded already (photo
    id → tile of this size), from a `Warmer`."""
    import numpy as np

    from mosaicdb import imaging
    from mosaicdb.output import strips

    rows, cols = plan.shape
    W, H = cols * tile_w, rows * tile_h
    t0 = time.monotonic()
    out = Path(output)
    tag = f".{out.name}.{os.getpid()}"
    if fmt == "dz":
        tmp_out = out.with_name(tag + ".tmp.dzi")
        tmp_files = out.with_name(tag + ".tmp_files")
    else:
        tmp_out = out.with_name(tag + ".tmp" + out.suffix)
        tmp_files = None
    # The plan says when each tile is needed again, so the cache keeps exactly the tiles that
    # will be reused (farthest next use evicted first when over budget): every distinct tile
    # is decoded once as long as the reused ones fit in TILE_CACHE_BYTES.
    row_sets = [list(dict.fromkeys(plan[r].tolist())) for r in range(rows)]  # distinct, in order
    uses: dict[int, list[int]] = {}
    for r in range(rows - 1, -1, -1):
        for p in row_sets[r]:
            uses.setdefault(p, []).append(r)  # descending: the next use is at the end
    cache: dict[int, np.ndarray] = {-1: np.full((tile_h, tile_w, 3), 255, np.uint8)}  # blank
    uses[-1] = [-1] * (rows * cols + 1)  # never evicted
    max_tiles = max(cols * 2, TILE_CACHE_BYTES // (tile_w * tile_h * 3))
    for p, tile in (warm or {}).items():
        if p in uses and len(cache) < max_tiles:
            cache[p] = tile
    mosaic_lab = np.empty((rows, cols, 3 * k * k), np.float32) if blend else None

    # Tiles are decoded on two threads ahead of the row being placed: up to DECODE_AHEAD
    # tiles, read from the catalog in one query per window, decoded in chunks of DECODE_CHUNK
    # (one future each). Few, large steps: the Python work per tile is what limits a render.
    pending: dict[int, tuple] = {}  # photo id → (future of a chunk of tiles, index in it)
    scanned = [0]  # rows whose tiles have been looked at for prefetching

    def decode_chunk(items):
        out = []
        for pid, blob in items:
            try:
                out.append(imaging.decode_tile(*blob, tile_w, tile_h))
            except ImageError:
                raise RenderError(broken_thumbnail(pid)) from None
        return out

    def submit(need):
        blobs = catalog.thumbnails(need)
        if len(blobs) < len(need):
            gone = sorted(set(need) - set(blobs))
            raise RenderError(
                f"{len(gone)} photos of the plan have no stored thumbnail (ids "
                f"{', '.join(map(str, gone[:5]))}): run `mosaicdb check --repair`"
            )
        for i in range(0, len(need), DECODE_CHUNK):
            chunk = need[i : i + DECODE_CHUNK]
            fut = pool.submit(decode_chunk, [(p, blobs[p]) for p in chunk])
            pending.update((p, (fut, j)) for j, p in enumerate(chunk))

    def prefetch(r):
        # tiles of row r evicted since they were looked at: now
        need = [p for p in row_sets[r] if p not in cache and p not in pending]
        if need:
            submit(need)
        if len(pending) > DECODE_AHEAD // 2:
            return
        need = {}
        while scanned[0] < rows and len(pending) + len(need) < DECODE_AHEAD:
            for p in row_sets[scanned[0]]:
                if p not in cache and p not in pending:
                    need[p] = None
            scanned[0] += 1
        if need:
            submit(list(need))

    f = src = None
    encode_error: list[BaseException] = []
    # dzsave takes a base name and adds .dzi and _files itself
    target_name = str(tmp_out)[: -len(".dzi")] if fmt == "dz" else str(tmp_out)

    def encode():
        try:
            strips.save_strips(src, target_name, fmt)
        except BaseException as e:  # reported by the main thread
            encode_error.append(e)
            f.abort()

    # Tiles are small: libvips' own threads cost more than they give; two Python threads
    # decoding whole tiles, and the encoder in a third, use both cores better.
    with imaging.one_libvips_thread():
        try:
            f = strips.StripTiff(W, H, tile_h)
            src = f.source()
            encoder = threading.Thread(target=encode, name="mosaicdb-encode", daemon=True)
            encoder.start()
            with ThreadPoolExecutor(2) as pool, progress.task("Rendering", total=rows) as t:
                for r in range(rows):
                    if encode_error:
                        break
                    scanned[0] = max(scanned[0], r)
                    prefetch(r)
                    for p in row_sets[r]:
                        if p not in cache:
                            fut, j = pending.pop(p)
                            cache[p] = fut.result()[j]
                    row_ids = plan[r].tolist()
                    if blend:
                        strip = np.empty((tile_h, W, 3), np.uint8)
                        for c, p in enumerate(row_ids):
                            tile = cache[p]
                            off = blend * (cell_rgb[r, c] - tile.reshape(-1, 3).mean(axis=0))
                            tile = np.clip(tile + off.astype(np.float32), 0, 255).astype(np.uint8)
                            strip[:, c * tile_w : (c + 1) * tile_w] = tile
                    else:  # (tile_h, cols, tile_w, 3) is the strip's own memory layout
                        strip = np.stack([cache[p] for p in row_ids], axis=1).reshape(tile_h, W, 3)
                    for p in row_sets[r]:
                        uses[p].pop()
                        if not uses[p]:
                            del cache[p]  # never needed again
                    if len(cache) > max_tiles:
                        for p in sorted(cache, key=lambda q: uses[q][-1])[max_tiles:]:
                            del cache[p]
                    if blend:
                        mosaic_lab[r] = imaging.lab_grid(strip, cols, 1, k)[0]
                    f.write(strip)
                    t.advance(1)
            timings["tiles"] = time.monotonic() - t0
            encoder.join()
            if encode_error:
                raise _as_output_error(encode_error[0], out, (str(tmp_out), target_name))
            if fmt == "dz":
                _replace_deep_zoom(tmp_out, tmp_files, out, out.with_name(tag + ".old_files"))
            else:
                os.replace(tmp_out, out)
            timings["tiles+encode"] = time.monotonic() - t0
        except BaseException:
            if f is not None:
                f.abort()
                if src is not None and encoder.is_alive():
                    encoder.join()
            raise
        finally:
            if tmp_out.exists():
                tmp_out.unlink()
            if tmp_files is not None and tmp_files.exists():
                shutil.rmtree(tmp_files)
    return mosaic_lab


def _as_output_error(e: BaseException, out: Path, temps: tuple[str, ...]) -> BaseException:
    """The encoder's failure in the names the user knows: the output, not its temporary file
    (gone by the time the message is read); a full disk said in those words, not in libvips'
    chain of write errors."""
    if not isinstance(e, ImageError):
        return e
    msg = str(e)
    for code in (errno.ENOSPC, errno.EDQUOT):
        if os.strerror(code) in msg:
            return ImageError(f"cannot write {out}: {os.strerror(code)}")
    for t in sorted(temps, key=len, reverse=True):
        msg = msg.replace(t, str(out))
    return ImageError(msg)


def _replace_deep_zoom(tmp_dzi: Path, tmp_files: Path, out: Path, aside: Path) -> None:
    """Put a new Deep Zoom output (NAME.dzi and NAME_files/) where the old one was. It is two
    renames, so the old tiles wait at `aside` until the new .dzi is in: if either rename
    fails, the old output is whole again (and the new one back in the temporary names, which
    the caller removes)."""
    files = out.with_name(out.stem + "_files")
    had = files.exists()
    if had:
        shutil.rmtree(aside, ignore_errors=True)  # left by a run with this pid that died here
        os.replace(files, aside)
    try:
        os.replace(tmp_files, files)
        try:
            os.replace(tmp_dzi, out)
        except BaseException:
            os.replace(files, tmp_files)
            raise
    except BaseException:
        if had:
            os.replace(aside, files)
        raise
    if had:  # the new output is in place: removing the old tiles may fail without harm
        shutil.rmtree(aside, ignore_errors=True)
