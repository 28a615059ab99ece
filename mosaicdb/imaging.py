"""Pixels, with pyvips: the Lab grid that both tiles and target cells are described by,
thumbnail encode/decode, tiles cut from stored thumbnails, the target image, and the small
pictures the queries write. Decoding photos is the decoders' (index/decode/), writing mosaics
the output formats' (output/formats/); those are the only other places pyvips is imported.
"""

from __future__ import annotations

import contextlib
import os

import numpy as np

from mosaicdb import features as F
from mosaicdb.errors import ImageError

os.environ.setdefault("VIPS_WARNING", "0")  # libvips warnings would flood worker stderr

import pyvips  # noqa: E402

# Formats we write thumbnails in; the codec is stored per row so it can change later.
THUMB_CODEC = "jpeg"
THUMB_Q = 85


def init_worker(concurrency: int = 1) -> None:
    """Per-process set-up for a worker decoding many files: no op cache, one libvips thread
    (processes, not threads, scale thumbnailing)."""
    pyvips.cache_set_max(0)
    pyvips.concurrency_set(concurrency)


def to_srgb8(img):
    """Any thumbnail (grey, 16-bit, alpha, CMYK already imported) → 3-band 8-bit sRGB."""
    if img.hasalpha():
        img = img.flatten(background=[255] * (img.bands - 1))
    if img.interpretation not in ("srgb",) or img.format != "uchar":
        img = img.colourspace("srgb")
    if img.bands == 1:
        img = img.bandjoin([img, img])
    if img.bands > 3:
        img = img.extract_band(0, n=3)
    if img.format != "uchar":
        img = img.cast("uchar")
    return img


def vips_message(e: Exception) -> str:
    detail = getattr(e, "detail", "") or ""
    lines = [ln.strip() for ln in detail.splitlines() if ln.strip()]
    msg = "; ".join(dict.fromkeys(lines)) or getattr(e, "message", "") or str(e)
    return msg[:500]


def centre_crop(img, aspect: float):
    """Largest centred region of width/height ratio `aspect`."""
    w, h = img.width, img.height
    if w / h > aspect:
        cw = max(1, round(h * aspect))
        return img.crop((w - cw) // 2, 0, cw, h)
    ch = max(1, round(w / aspect))
    return img.crop(0, (h - ch) // 2, w, ch)


# Before the Lab conversion an image is box-averaged by the largest integer factor that
# leaves at least this many pixels per grid cell: 25× less work on a 256 px tile for < 0.25
# mean ΔE2000 against the full-resolution mean (measured on the real-photo library).
MIN_CELL_PX = 16
_STRIP_PIXELS = 500_000


def lab_grid(img, cols: int, rows: int, k: int) -> np.ndarray:
    return _grid_means(img, cols, rows, (k,), lab=True)[0]


def lab_grids(img, cols: int, rows: int, ks: tuple[int, ...]) -> list[np.ndarray]:
    """lab_grid for several grid sizes from one Lab conversion (the costly part): the boxes
    are sized for the coarsest grid, so the finer ones average fewer, larger samples."""
    return _grid_means(img, cols, rows, tuple(ks), lab=True)


def rgb_grid(img, cols: int, rows: int, k: int) -> np.ndarray:
    """Like lab_grid, but mean sRGB (0–255 floats) per grid cell: for blending and reports."""
    return _grid_means(img, cols, rows, (k,), lab=False)[0]


def _grid_means(img, cols: int, rows: int, ks: tuple[int, ...], lab: bool) -> list[np.ndarray]:
    """Mean Lab of a k×k grid in each of cols×rows equal cells of `img`, for each k in `ks`:
    a pyvips image or a uint8 (H, W, 3) array, 8-bit sRGB.

    Returns float32 (rows, cols, 3*k*k) per k. Tiles (cols = rows = 1) and target cells both
    come through here, so their features cannot drift apart. The image is box-averaged (see
    MIN_CELL_PX; boxes sized for the coarsest k), converted to Lab, and each grid cell's pixels
    are averaged with boundaries rounded to whole pixels; a big image is read in strips of
    whole cell rows (their edges are grid edges for every k), two strips at a time on two
    threads (numpy releases the GIL), so memory stays bounded.
    """
    kmax, kmin = max(ks), min(ks)
    is_array = isinstance(img, np.ndarray)
    height, width = img.shape[:2] if is_array else (img.height, img.width)
    if width < cols * kmax or height < rows * kmax:  # fewer pixels than grid cells: enlarge
        s = int(np.ceil(max(cols * kmax / width, rows * kmax / height)))
        if is_array:
            img = img.repeat(s, axis=0).repeat(s, axis=1)
        else:
            img = img.zoom(s, s)
        width, height = width * s, height * s
    f = max(1, min(width // (cols * kmin), height // (rows * kmin)) // MIN_CELL_PX)
    ws, hs = width // f, height // f
    cy = np.round(np.arange(rows + 1) * hs / rows).astype(np.int64)  # cell row edges

    def edges(k: int, n: int, size: int) -> np.ndarray:
        return np.round(np.arange(n * k + 1) * size / (n * k)).astype(np.int64)

    # Only the finest grid is summed over the pixels: a coarser k that divides it has every
    # edge on one of its edges (round(2j·s/2n) = round(j·s/n)), so its sums are block sums.
    xb, yb = edges(kmax, cols, ws), edges(kmax, rows, hs)
    area = np.diff(yb)[:, None, None] * np.diff(xb)[None, :, None]
    sums = np.empty((rows * kmax, cols * kmax, 3), np.float64)
    others = [k for k in ks if k != kmax and kmax % k]  # not nested: summed on their own
    other_bounds = {k: (edges(k, cols, ws), edges(k, rows, hs)) for k in others}
    other_sums = {k: np.empty((rows * k, cols * k, 3), np.float64) for k in others}

    def strip(r0: int, r1: int) -> None:
        y0, y1 = int(cy[r0]), int(cy[r1])
        if is_array:
            px = img[y0 * f : y1 * f, : ws * f]
        else:
            px = img.crop(0, y0 * f, ws * f, (y1 - y0) * f).numpy()
        if f > 1 and lab and f * f <= F.MAX_SUM_SAMPLES:
            v = F.srgb_sums_to_lab(_box_sum(px, f), f * f)
        elif f > 1:
            v = _box_sum(px, f).astype(np.float32) / np.float32(f * f)
            v = F.srgb8_to_lab(v) if lab else v
        else:
            v = F.srgb8_to_lab(px) if lab else px.astype(np.float32)
        for k, out, (kx, ky) in [(kmax, sums, (xb, yb))] + [
            (k, other_sums[k], other_bounds[k]) for k in others
        ]:
            i0, i1 = r0 * k, r1 * k
            out[i0:i1] = np.add.reduceat(
                np.add.reduceat(v, kx[:-1], axis=1, dtype=np.float64), ky[i0:i1] - y0, axis=0
            )

    step = max(1, int(_STRIP_PIXELS // max(1, width * height / rows)))
    starts = range(0, rows, step)
    if len(starts) == 1:
        strip(0, rows)
    else:
        from concurrent.futures import ThreadPoolExecutor

        with ThreadPoolExecutor(2) as pool:
            for fut in [pool.submit(strip, r0, min(rows, r0 + step)) for r0 in starts]:
                fut.result()
    result = []
    for k in ks:
        if k in other_sums:
            kx, ky = other_bounds[k]
            s_k, a_k = other_sums[k], np.diff(ky)[:, None, None] * np.diff(kx)[None, :, None]
        elif k == kmax:
            s_k, a_k = sums, area
        else:
            b = kmax // k  # blocks of b×b finest boxes
            shape = (rows * k, b, cols * k, b)
            s_k = sums.reshape(shape + (3,)).sum((1, 3))
            a_k = area.reshape(shape + (1,)).sum((1, 3))
        # divided straight into the (rows, cols, k, k, 3) layout: no full-size temporaries
        out = np.empty((rows, cols, k, k, 3), np.float32)
        np.divide(
            s_k.reshape(rows, k, cols, k, 3).transpose(0, 2, 1, 3, 4),
            a_k.reshape(rows, k, cols, k, 1).transpose(0, 2, 1, 3, 4),
            out=out,
            casting="same_kind",
        )
        result.append(out.reshape(rows, cols, k * k * 3))
    return result


def _box_sum(px: np.ndarray, f: int) -> np.ndarray:
    """Sum f×f blocks of uint8 pixels (trailing partial blocks dropped), by adding strided
    slices in an integer type that cannot overflow: 3x faster than a reshaped sum."""
    h, w = px.shape[0] // f, px.shape[1] // f
    acc = np.uint16 if f * f * 255 <= np.iinfo(np.uint16).max else np.uint32
    p = px[: h * f, : w * f]
    rows = p[0::f].astype(acc)
    for i in range(1, f):
        rows += p[i::f]
    out = rows[:, 0::f].copy()
    for j in range(1, f):
        out += rows[:, j::f]
    return out


def centre_crop_array(a: np.ndarray, aspect: float) -> np.ndarray:
    h, w = a.shape[:2]
    if w / h > aspect:
        cw = max(1, round(h * aspect))
        return a[:, (w - cw) // 2 : (w - cw) // 2 + cw]
    ch = max(1, round(w / aspect))
    return a[(h - ch) // 2 : (h - ch) // 2 + ch]


def tile_vector(img, k: int, aspect: float = 1.0) -> np.ndarray:
    """A tile's feature vector: the Lab grid of its centre crop at the cell aspect."""
    return tile_vectors(img, (k,), aspect)[0]


def tile_vectors(img, ks: tuple[int, ...], aspect: float = 1.0) -> list[np.ndarray]:
    """tile_vector for several grid sizes from one Lab conversion (see lab_grids)."""
    a = img if isinstance(img, np.ndarray) else img.numpy()
    return [g[0, 0] for g in lab_grids(centre_crop_array(a, aspect), 1, 1, ks)]


def encode_thumb(pixels: np.ndarray) -> bytes:
    h, w, bands = pixels.shape
    img = pyvips.Image.new_from_memory(np.ascontiguousarray(pixels).data, w, h, bands, "uchar")
    return img.write_to_buffer(".jpg", Q=THUMB_Q, keep="none")


def decode_thumb(data: bytes, codec: str = THUMB_CODEC, shrink: int = 1):
    """Decode a stored thumbnail; `shrink` (1, 2, 4, 8) uses JPEG shrink-on-load."""
    if codec == "jpeg" and shrink > 1:
        return pyvips.Image.new_from_buffer(data, "", shrink=shrink)
    return pyvips.Image.new_from_buffer(data, "")


# ---------------------------------------------------------------------------------------
# Render side


def load_target(path: str, max_width: int):
    """The target image, upright, 8-bit sRGB, in memory, at most `max_width` wide (more
    pixels than the features can use are not decoded)."""
    import pathlib

    p = pathlib.Path(path)
    if not p.exists():
        raise ImageError(f"target {path} does not exist")
    if not p.is_file():
        raise ImageError(f"target {path} is not a file")
    try:
        src = _target_source(p)
        head = pyvips.Image.new_from_source(src, "")
        w = (
            head.height
            if head.get_typeof("orientation") and head.get("orientation") in (5, 6, 7, 8)
            else head.width
        )
        kw = {"output_profile": "srgb"} if head.get_typeof("icc-profile-data") else {}
        img = pyvips.Image.thumbnail_source(
            src,
            min(w, max_width),
            height=10_000_000,
            size="down",
            option_string="fail_on=truncated",
            **kw,
        )
        return to_srgb8(img).copy_memory()
    except pyvips.Error as e:
        raise ImageError(f"cannot read target {path}: {vips_message(e)}") from None


def target_region(img, cols: int, rows: int, aspect: float):
    """The centred part of the target that the cols×rows grid of cells of `aspect` covers."""
    return centre_crop(img, cols * aspect / rows)


def undecodable(items) -> list[int]:
    """The ids among (id, codec, data) stored thumbnails that do not decode, for
    `check --deep`: two threads with one libvips thread each (a thumbnail is too small for
    libvips to split well), like render's tile decoding."""
    from concurrent.futures import ThreadPoolExecutor

    def bad(item):
        pid, codec, data = item
        try:
            decode_thumb(data, codec).avg()
        except Exception:  # any failure to decode, a decoder bug included, marks the photo
            return pid
        return None

    with one_libvips_thread(), ThreadPoolExecutor(2) as pool:
        return [pid for pid in pool.map(bad, items) if pid is not None]


@contextlib.contextmanager
def one_libvips_thread():
    """libvips with one worker thread while inside: for small images decoded on Python
    threads, where libvips' own threads cost more than they give."""
    conc = pyvips.concurrency_get()
    pyvips.concurrency_set(1)
    try:
        yield
    finally:
        pyvips.concurrency_set(conc)


def _thumbnail_error(e: Exception) -> ImageError:
    return ImageError(f"stored thumbnail does not decode: {vips_message(e)}")


def thumb_pixels(data: bytes, codec: str = THUMB_CODEC) -> np.ndarray:
    """A stored thumbnail's pixels, uint8 (h, w, bands). Raises ImageError."""
    try:
        return decode_thumb(data, codec).numpy()
    except pyvips.Error as e:
        raise _thumbnail_error(e) from None


def decode_tile(codec: str, data: bytes, width: int, height: int, tw: int, th: int) -> np.ndarray:
    """A stored thumbnail (width×height) as a tw×th uint8 tile: the centred crop at the cell
    aspect, never squashed. JPEG shrink-on-load takes the largest power-of-two reduction that
    keeps the crop at least tile-sized; when that lands exactly on the tile size (tile sizes
    of 256/2^n from the default 256 px thumbnails) the crop is a numpy slice, no resampling.
    Raises ImageError."""
    try:
        return _decode_tile(codec, data, width, height, tw, th)
    except pyvips.Error as e:
        raise _thumbnail_error(e) from None


def _decode_tile(codec: str, data: bytes, width: int, height: int, tw: int, th: int):
    aspect = tw / th
    cw, ch = _crop_size(width, height, aspect)
    shrink = 1
    if codec == "jpeg":
        while shrink < 8 and cw // (shrink * 2) >= tw and ch // (shrink * 2) >= th:
            shrink *= 2
        img = pyvips.Image.jpegload_buffer(data, shrink=shrink, access="sequential")
    else:
        img = pyvips.Image.new_from_buffer(data, "", access="sequential")
    w, h = img.width, img.height
    cw, ch = _crop_size(w, h, aspect)
    if (cw, ch) == (tw, th) and img.bands == 3 and img.format == "uchar":
        return _fetch(img, (w - cw) // 2, (h - ch) // 2, tw, th)
    img = img.crop((w - cw) // 2, (h - ch) // 2, cw, ch)
    if (cw, ch) != (tw, th):
        img = img.resize(tw / cw, vscale=th / ch)
        if img.width != tw or img.height != th:
            img = img.gravity("centre", tw, th, extend="copy")
    return _fetch(to_srgb8(img), 0, 0, tw, th)


def _fetch(img, x: int, y: int, w: int, h: int) -> np.ndarray:
    """Pixels of a 3-band uchar image's rectangle as a read-only (h, w, 3) array. A region
    fetch computes them in the calling thread; for a tile-sized image that is a third less CPU
    than numpy()/write_to_memory, whose sink hands the work to libvips' thread pool (measured:
    0.9 against 1.4 ms a 64 px tile from a 256 px JPEG thumbnail)."""
    return np.frombuffer(pyvips.Region.new(img).fetch(x, y, w, h), np.uint8).reshape(h, w, 3)


def _crop_size(w: int, h: int, aspect: float) -> tuple[int, int]:
    if w / h > aspect:
        return max(1, round(h * aspect)), h
    return w, max(1, round(w / aspect))


def _target_source(p) -> pyvips.Source:
    """The target file as a libvips source (its name is never parsed for `[options]`), if it
    is a picture: an SVG or other XML, or a PDF, is refused, since it can refer to other files
    (XML entities, linked images) that libvips would read."""
    try:
        with open(p, "rb") as f:
            head = f.read(1024)
    except OSError as e:
        raise ImageError(f"cannot read target {p}: {e.strerror}") from None
    lead = head.lstrip(b"\xef\xbb\xbf \t\r\n")
    if lead.startswith((b"<", b"%PDF")):
        raise ImageError(
            f"target {p} is not a picture mosaicdb reads (SVG, XML or PDF can refer to other "
            "files): convert it to PNG or JPEG first"
        )
    return pyvips.Source.new_from_file(str(p))


def image_size_or_error(path: str) -> tuple[int, int]:
    """Displayed (upright) size of an image file, or an ImageError naming it."""
    import pathlib

    p = pathlib.Path(path)
    if not p.is_file():
        raise ImageError(
            f"target {path} does not exist" if not p.exists() else f"target {path} is not a file"
        )
    try:
        h = pyvips.Image.new_from_source(_target_source(p), "")
    except pyvips.Error as e:
        raise ImageError(f"cannot read target {path}: {vips_message(e)}") from None
    if h.get_typeof("orientation") and h.get("orientation") in (5, 6, 7, 8):
        return h.height, h.width
    return h.width, h.height


def reduced_pair(mosaic: str, target: str, width: int) -> tuple[np.ndarray, np.ndarray]:
    """The mosaic and the matching centred part of the target, both reduced to `width` px wide
    (and the same height), as uint8 sRGB arrays: what quality.score compares."""
    try:
        m = to_srgb8(pyvips.Image.thumbnail(mosaic, width, height=10_000_000, size="down"))
        t = pyvips.Image.new_from_file(target).autorot()
    except pyvips.Error as e:
        raise ImageError(f"cannot read {mosaic} or {target}: {vips_message(e)}") from None
    t = to_srgb8(centre_crop(t, m.width / m.height))
    t = t.resize(m.width / t.width, vscale=m.height / t.height)
    if (t.width, t.height) != (m.width, m.height):
        t = t.gravity("centre", m.width, m.height, extend="copy")
    return m.numpy(), t.numpy()
