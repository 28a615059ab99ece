"""Colour words and bins shared by the queries: coverage bins (lightness bands × hue sectors,
near-greys apart), parsing a colour given as hex or a name, and the coverage picture's path."""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from mosaicdb.errors import OptionError

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


def colour_order(lab) -> tuple:
    """Sort key of a mean Lab colour, as `sheet` lays photos out and `ls --sort colour` lists
    them: greys dark to light, then by 15° hue sector and lightness; no colour (a photo that
    failed) last."""
    import math

    if lab is None:
        return (2, 0, 0.0)
    L, a, b = lab
    if math.hypot(a, b) < GREY_CHROMA:
        return (0, 0, L)
    return (1, int(math.degrees(math.atan2(b, a)) % 360 // 15), L)


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


BAND_WORDS = ["very dark", "dark", "mid", "light", "very light"]
