"""The strip file: the mosaic as an uncompressed BigTIFF made one strip at a time and read by
libvips' encoder while it is being made, never on disk (bounded memory at any output size)."""

from __future__ import annotations

import numpy as np

from mosaicdb.output.formats import save_image


class StripTiff:
    """An uncompressed BigTIFF made one horizontal strip at a time and read by libvips while it
    is being made, never written to disk.

    All strips have the same size, so the layout is known up front: header, IFD and strip
    tables first, then the strips. `source()` gives libvips a custom source that serves the
    header from memory and blocks on a strip until `write()` has delivered it. The encoder
    reads the strips in order (it only seeks back inside the header), so a strip is dropped as
    soon as the reader is past it, and `write()` waits while `max_bytes` of strips are still
    unread: the encoder runs beside the tile placement and memory stays at a few strips
    whatever the output size. BigTIFF, so outputs past 4 GB of pixels work.
    """

    _HEADER = 16
    _N_TAGS = 10

    def __init__(self, width: int, height: int, rows_per_strip: int, max_bytes: int = 64 << 20):
        import struct
        import threading

        self.width, self.height, self.rps = width, height, rows_per_strip
        self.n = -(-height // rows_per_strip)
        self.strip_bytes = width * rows_per_strip * 3
        ifd = self._HEADER
        tables = ifd + 8 + 20 * self._N_TAGS + 8
        self.data_start = tables + 16 * self.n
        offsets = [self.data_start + i * self.strip_bytes for i in range(self.n)]
        counts = [self.strip_bytes] * self.n
        counts[-1] = width * (height - rows_per_strip * (self.n - 1)) * 3
        self.size = offsets[-1] + counts[-1]
        pack = struct.pack
        entries = [
            (256, 4, 1, pack("<I", width)),
            (257, 4, 1, pack("<I", height)),
            (258, 3, 3, pack("<HHH", 8, 8, 8)),
            (259, 3, 1, pack("<H", 1)),  # no compression
            (262, 3, 1, pack("<H", 2)),  # RGB
            (273, 16, self.n, pack("<Q", tables if self.n > 1 else offsets[0])),
            (277, 3, 1, pack("<H", 3)),
            (278, 4, 1, pack("<I", rows_per_strip)),
            (279, 16, self.n, pack("<Q", tables + 8 * self.n if self.n > 1 else counts[0])),
            (284, 3, 1, pack("<H", 1)),
        ]
        head = b"II" + pack("<HHHQ", 43, 8, 0, ifd) + pack("<Q", len(entries))
        for tag, typ, count, value in entries:
            head += pack("<HHQ", tag, typ, count) + value.ljust(8, b"\0")
        head += pack("<Q", 0)
        if self.n > 1:
            head += pack(f"<{self.n}Q", *offsets) + pack(f"<{self.n}Q", *counts)
        self.head = head.ljust(self.data_start, b"\0")
        self.max_ahead = max(2, max_bytes // self.strip_bytes)
        self.strips: dict[int, memoryview] = {}
        self.done = 0  # strips delivered
        self.first = 0  # lowest strip still kept
        self.failed = False
        self.cond = threading.Condition()

    def write(self, strip: np.ndarray) -> None:
        data = memoryview(np.ascontiguousarray(strip, dtype=np.uint8).reshape(-1))
        with self.cond:
            while self.done - self.first >= self.max_ahead and not self.failed:
                self.cond.wait()
            self.strips[self.done] = data
            self.done += 1
            self.cond.notify_all()

    def abort(self) -> None:
        """Make a waiting reader see the end of the stream (the encode then fails) and a
        waiting writer go on."""
        with self.cond:
            self.failed = True
            self.cond.notify_all()

    def _read(self, pos: int, size: int) -> bytes:
        if pos < self.data_start:
            return self.head[pos : pos + size]
        if pos >= self.size:
            return b""
        i, off = divmod(pos - self.data_start, self.strip_bytes)
        with self.cond:
            while self.done <= i and not self.failed:
                self.cond.wait()
            if self.failed or i < self.first:
                return b""  # failed, or a strip already dropped: the encode fails
            while self.first < i:
                del self.strips[self.first]
                self.first += 1
            self.cond.notify_all()
            data = self.strips[i]
        return bytes(data[off : off + size])

    def source(self):
        pos = 0

        def on_read(size: int) -> bytes:
            nonlocal pos
            data = self._read(pos, size)
            pos += len(data)
            return data

        def on_seek(offset: int, whence: int) -> int:
            nonlocal pos
            pos = {0: offset, 1: pos + offset, 2: self.size + offset}[whence]
            return pos

        import pyvips

        src = pyvips.SourceCustom()
        src.on_read(on_read)
        src.on_seek(on_seek)
        return src


def save_strips(source, out_path: str, fmt: str, on_progress=None) -> None:
    """Encode the strip file (a StripTiff source) into `out_path` as `fmt`, streaming."""
    import pyvips

    img = pyvips.Image.new_from_source(source, "", access="sequential")
    if on_progress is not None:
        img.set_progress(True)
        img.signal_connect("eval", lambda _im, prog: on_progress(prog.percent))
    save_image(img, out_path, fmt)
