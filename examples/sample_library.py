"""Build a small sample photo library for `make demo` from the real photographs that the
scikit-image wheel ships (astronaut, coffee, rocket, ...): random crops, flips and mild colour
jitter, JPEG, in nested folders. The cat photo is kept out of the tiles and copied as the
demo's target.

    python examples/sample_library.py OUT_DIR -n 400 --target target.jpg
"""

from __future__ import annotations

import argparse
import importlib.util
import random
from pathlib import Path

import pyvips

SOURCES = [
    "astronaut.png",
    "coffee.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "hubble_deep_field.jpg",
    "ihc.png",
    "retina.jpg",
    "brick.png",
    "grass.png",
    "gravel.png",
    "color.png",
    "camera.png",
    "moon.png",
    "coins.png",
]
TARGET = "chelsea.png"


def skimage_data_dir() -> Path:
    spec = importlib.util.find_spec("skimage")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("scikit-image is not installed: pip install scikit-image")
    return Path(list(spec.submodule_search_locations)[0]) / "data"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("out", type=Path)
    ap.add_argument("-n", type=int, default=400)
    ap.add_argument("--target", type=Path)
    ap.add_argument("--seed", type=int, default=1)
    a = ap.parse_args()
    data = skimage_data_dir()
    srcs = [
        pyvips.Image.new_from_file(str(data / s)).copy_memory()
        for s in SOURCES
        if (data / s).exists()
    ]
    srcs = [s.colourspace("srgb") if s.bands < 3 else s.extract_band(0, n=3) for s in srcs]
    rng = random.Random(a.seed)
    a.out.mkdir(parents=True, exist_ok=True)
    existing = len(list(a.out.rglob("*.jpg")))
    for i in range(existing, a.n):
        im = rng.choice(srcs)
        frac = rng.uniform(0.1, 0.6)
        aspect = rng.uniform(0.6, 1.6)
        w = min(im.width, int((im.width * im.height * frac * aspect) ** 0.5))
        h = min(im.height, int(w / aspect))
        x, y = rng.randint(0, im.width - w), rng.randint(0, im.height - h)
        t = im.crop(x, y, w, h)
        if rng.random() < 0.5:
            t = t.fliphor()
        lab = t.colourspace("lab")
        lab = lab * [rng.uniform(0.8, 1.15), rng.uniform(0.7, 1.3), rng.uniform(0.7, 1.3)] + [
            rng.uniform(-8, 8),
            rng.uniform(-6, 6),
            rng.uniform(-6, 6),
        ]
        t = lab.colourspace("srgb").cast("uchar")
        d = a.out / f"set{i // 100:02d}"
        d.mkdir(exist_ok=True)
        t.write_to_file(str(d / f"IMG_{i:05d}.jpg"), Q=85)
    if a.target:
        pyvips.Image.new_from_file(str(data / TARGET)).write_to_file(str(a.target), Q=92)
    print(f"sample library: {a.n} photos in {a.out}" + (f", target {a.target}" if a.target else ""))


if __name__ == "__main__":
    main()
