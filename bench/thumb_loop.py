"""Baseline for the index benchmark: a bare N-process pyvips thumbnail loop — no database, no
features, no incremental logic. Prints "files seconds".

  --mode same   the thumbnail mosaicdb stores: read the header, thumbnail to a 256 px short
                side (aspect kept, shrink-on-load), JPEG Q85 in memory (default)
  --mode crop   thumbnail to a 256×256 centre crop (same shrink-on-load, smaller image to encode)

    python bench/thumb_loop.py FOLDER --workers 2 [--mode same|crop]
"""

import argparse
import os
import time
from concurrent.futures import ProcessPoolExecutor


def work(args):
    paths, mode = args
    import pyvips

    pyvips.cache_set_max(0)
    pyvips.concurrency_set(1)
    n = 0
    for p in paths:
        if mode == "crop":
            im = pyvips.Image.thumbnail(p, 256, height=256, size="down", crop="centre")
        else:
            h = pyvips.Image.new_from_file(p)
            w, hh = h.width, h.height
            box = (256, hh * 256 // w + 2) if w <= hh else (w * 256 // hh + 2, 256)
            im = pyvips.Image.thumbnail(p, box[0], height=box[1], size="down")
        im.write_to_buffer(".jpg", Q=85)
        n += 1
    return n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("folder")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--mode", choices=["same", "crop"], default="same")
    a = ap.parse_args()
    paths = sorted(
        os.path.join(d, f)
        for d, _, fs in os.walk(a.folder)
        for f in fs
        if f.lower().endswith(".jpg")
    )
    t0 = time.perf_counter()
    chunks = [(paths[i : i + 8], a.mode) for i in range(0, len(paths), 8)]
    with ProcessPoolExecutor(a.workers) as ex:
        n = sum(ex.map(work, chunks))
    print(f"{n} {time.perf_counter() - t0:.3f}")


if __name__ == "__main__":
    main()
