"""Near-duplicate threshold (issue 19 §3): how many bits of the perceptual hash
(features.perceptual_hash, computed from the thumbnail `index` decodes) separate a photo from
its copies, edits and burst neighbours, and from other photos — on the real photos of
../shared/bench, each through the same decode path as `index`.

Positives (what a user calls the same shot): re-encoded at Q60, resized to 40 %, exposure
+25 %, saturation −30 %, a 92 % centre crop, a burst neighbour (the frame shifted by 3 % of its
width), a RAW+JPEG pair (the same pixels, written as PNG). Negatives: every pair of different
photos (each with all of its variants), and two halves of one photo (left/right, top/bottom),
which a mosaic shows as different pictures.

The threshold: the largest number of bits at which a photo of a 100,000-photo library has
≤ 0.01 false neighbours (N × the false-pair rate; a first rule, ≤ 0.1 % of the negative pairs,
chose 18 bits, which at that size gives every photo ~90 false neighbours). The table shows
what each positive kind keeps at each threshold.

    python bench/bench_dupes.py [--photos data/photos]
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import tempfile
from pathlib import Path

import numpy as np
import pyvips

sys.path.insert(0, str(Path(__file__).parent))
from _common import DATA, ensure_lib2k, machine  # noqa: E402

from mosaicdb.features import hamming, perceptual_hash  # noqa: E402
from mosaicdb.index import decode  # noqa: E402

KINDS = ["q60", "resize40", "exposure", "desaturate", "crop92", "burst", "raw+jpeg"]


def variants(img: pyvips.Image) -> dict[str, tuple[pyvips.Image, str]]:
    w, h = img.width, img.height
    s = 3 * w // 100
    cw, ch = int(w * 0.92), int(h * 0.92)
    lab = img.colourspace("lab")
    return {
        "original": (img, ".jpg"),
        "q60": (img, ".q60.jpg"),
        "resize40": (img.resize(0.4), ".jpg"),
        "exposure": ((img * 1.25).cast("uchar"), ".jpg"),
        "desaturate": ((lab * [1, 0.7, 0.7]).colourspace("srgb").cast("uchar"), ".jpg"),
        "crop92": (img.crop((w - cw) // 2, (h - ch) // 2, cw, ch), ".jpg"),
        "burst": (img.crop(s, 0, w - s, h).embed(0, 0, w - s, h), ".jpg"),
        "raw+jpeg": (img, ".png"),
        "left": (img.crop(0, 0, w // 2, h), ".jpg"),
        "right": (img.crop(w // 2, 0, w - w // 2, h), ".jpg"),
        "top": (img.crop(0, 0, w, h // 2), ".jpg"),
        "bottom": (img.crop(0, h // 2, w, h - h // 2), ".jpg"),
    }


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--photos", type=Path, default=DATA / "photos")
    a = ap.parse_args()
    if not a.photos.exists():
        ensure_lib2k()
    photos = sorted(p for p in a.photos.iterdir() if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    hashes: dict[str, dict[str, int]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for i, p in enumerate(photos):
            # camera-ish size: long side 2400 px, as a photo in a library
            img = pyvips.Image.thumbnail(str(p), 2400).copy_memory()
            img = img.extract_band(0, n=3) if img.bands > 3 else img
            if img.bands == 1:
                img = img.colourspace("srgb")
            hashes[p.name] = {}
            for kind, (v, ext) in variants(img).items():
                f = os.path.join(tmp, f"{i}-{kind}{ext}")
                v.write_to_file(f, **({"Q": 60} if kind == "q60" else {}))
                thumb, *_ = decode.decode(os.fsencode(f), 256, 10**9)
                hashes[p.name][kind] = perceptual_hash(thumb)
    pos = {k: [int(hamming(h["original"], h[k])) for h in hashes.values()] for k in KINDS}
    halves = [
        int(hamming(h[x], h[y]))
        for h in hashes.values()
        for x, y in (("left", "right"), ("top", "bottom"))
    ]
    main_kinds = ["original", *KINDS]
    others = [
        int(hamming(ha[x], hb[y]))
        for (_, ha), (_, hb) in itertools.combinations(hashes.items(), 2)
        for x in main_kinds
        for y in main_kinds
    ]
    neg = np.array(others + halves)
    print(f"near-duplicate hash distances: {len(photos)} real photos ({a.photos}); {machine()}")
    print(f"{'pairs':<34} {'n':>6} {'min':>4} {'p50':>4} {'p90':>4} {'max':>4}")
    for k in KINDS:
        d = np.array(pos[k])
        print(
            f"{'same shot: ' + k:<34} {len(d):>6} {d.min():>4} {int(np.median(d)):>4} "
            f"{int(np.percentile(d, 90)):>4} {d.max():>4}"
        )
    for label, d in (
        ("different photos", np.array(others)),
        ("two halves of one photo", np.array(halves)),
    ):
        print(
            f"{label:<34} {len(d):>6} {d.min():>4} {int(np.median(d)):>4} "
            f"{int(np.percentile(d, 90)):>4} {d.max():>4}"
        )
    # A false pair joins two photos that differ. At library scale what counts is false
    # neighbours per photo, N × the false-pair rate; where too few negative pairs fall under a
    # threshold to measure it, the rate is the binomial tail of 64 fair bits scaled by how much
    # fatter the measured tail is where it can be measured (≥ 20 pairs).
    from math import comb

    def binom(t):
        return sum(comb(64, k) for k in range(t + 1)) / 2**64

    ref = next(t for t in range(64) if (neg <= t).sum() >= 20)
    excess = (neg <= ref).mean() / binom(ref)
    print(f"\nnegative tail measured at ≤ {ref} bits: {excess:.1f}× the binomial tail")
    print(
        f"{'bits':>4} {'false pairs':>12} {'false/photo@100k':>17} "
        + " ".join(f"{k:>10}" for k in KINDS)
    )
    chosen = 0
    for t in range(0, 25, 2):
        rate = (neg <= t).mean() if (neg <= t).sum() >= 20 else binom(t) * excess
        per_photo = rate * 100_000
        if per_photo <= 0.01:
            chosen = t
        kept = " ".join(f"{np.mean(np.array(pos[k]) <= t):>10.0%}" for k in KINDS)
        print(f"{t:>4} {(neg <= t).mean():>12.3%} {per_photo:>17.2g} {kept}")
    print(
        f"\nchosen: {chosen} bits, the largest with ≤ 0.01 false neighbours per photo in a "
        "100,000-photo library (features.DUPLICATE_BITS)"
    )


if __name__ == "__main__":
    main()
