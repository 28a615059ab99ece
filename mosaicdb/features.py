"""The colour feature spec and the numpy maths on feature vectors (no image I/O here).

A feature vector is the mean CIE Lab colour of each cell of a k×k grid laid over the
centre-cropped square of an image, flattened row-major as [L, a, b] * k*k, float32.
Tiles and target cells get their grids from the same function in `imaging.py`; this module
only names the spec and does arithmetic on the vectors.
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass

import numpy as np

from mosaicdb.errors import OptionError

# Bump when the way vectors are computed changes, so stored vectors are re-derived.
FEATURE_VERSION = 1
DEFAULT_GRID = 3
# Render re-ranks the search's candidates on this finer grid (render.RERANK_L_WEIGHT says why);
# index makes these vectors too, from the thumbnail it already holds.
RERANK_GRID = 6


@dataclass(frozen=True)
class FeatureSpec:
    """Which vectors: a k×k Lab grid, over the centre crop of aspect aw:ah, computed by code
    version `version`. The 1:1 spec is made at index time; other aspects are derived from the
    stored thumbnails when a render first needs them, and cached in the catalog."""

    grid: int = DEFAULT_GRID
    version: int = FEATURE_VERSION
    aw: int = 1
    ah: int = 1

    def __post_init__(self):
        if not 1 <= self.grid <= 16:
            raise OptionError("--grid", f"must be between 1 and 16, got {self.grid}")

    @property
    def key(self) -> str:
        base = f"lab{self.grid}v{self.version}"
        return base if (self.aw, self.ah) == (1, 1) else f"{base}a{self.aw}x{self.ah}"

    @property
    def dim(self) -> int:
        return 3 * self.grid * self.grid

    @property
    def aspect(self) -> float:
        return self.aw / self.ah

    def with_aspect(self, aw: int, ah: int) -> FeatureSpec:
        from math import gcd

        g = gcd(aw, ah)
        return FeatureSpec(self.grid, self.version, aw // g, ah // g)

    @classmethod
    def parse(cls, key: str) -> FeatureSpec:
        m = re.fullmatch(r"lab(\d+)v(\d+)(?:a(\d+)x(\d+))?", key)
        if not m:
            raise ValueError(f"not a feature spec: {key!r}")
        aw, ah = (int(m.group(3)), int(m.group(4))) if m.group(3) else (1, 1)
        return cls(int(m.group(1)), int(m.group(2)), aw, ah)


# ciede2000 works on this many colour pairs at a time: its ~30 float64 temporaries stay at
# ~16 MB whatever the input (a 60,000-cell report was 86 MB of them at once).
_DE_CHUNK = 65_536


def ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    """CIEDE2000 colour difference (Sharma, Wu & Dalal 2005), vectorised over the last axis."""
    lab1 = np.asarray(lab1, dtype=np.float64)
    lab2 = np.asarray(lab2, dtype=np.float64)
    shape = np.broadcast_shapes(lab1.shape, lab2.shape)
    n = int(np.prod(shape[:-1]))
    if n <= _DE_CHUNK:
        return _ciede2000(lab1, lab2)
    a = np.broadcast_to(lab1, shape).reshape(-1, 3)
    b = np.broadcast_to(lab2, shape).reshape(-1, 3)
    out = np.empty(n)
    for i in range(0, n, _DE_CHUNK):
        out[i : i + _DE_CHUNK] = _ciede2000(a[i : i + _DE_CHUNK], b[i : i + _DE_CHUNK])
    return out.reshape(shape[:-1])


def _ciede2000(lab1: np.ndarray, lab2: np.ndarray) -> np.ndarray:
    L1, a1, b1 = lab1[..., 0], lab1[..., 1], lab1[..., 2]
    L2, a2, b2 = lab2[..., 0], lab2[..., 1], lab2[..., 2]
    C1 = np.hypot(a1, b1)
    C2 = np.hypot(a2, b2)
    Cbar7 = ((C1 + C2) / 2) ** 7
    G = 0.5 * (1 - np.sqrt(Cbar7 / (Cbar7 + 25.0**7)))
    a1p = (1 + G) * a1
    a2p = (1 + G) * a2
    C1p = np.hypot(a1p, b1)
    C2p = np.hypot(a2p, b2)
    h1p = np.degrees(np.arctan2(b1, a1p)) % 360
    h2p = np.degrees(np.arctan2(b2, a2p)) % 360
    h1p = np.where((a1p == 0) & (b1 == 0), 0.0, h1p)
    h2p = np.where((a2p == 0) & (b2 == 0), 0.0, h2p)

    dLp = L2 - L1
    dCp = C2p - C1p
    dhp = h2p - h1p
    dhp = np.where(dhp > 180, dhp - 360, dhp)
    dhp = np.where(dhp < -180, dhp + 360, dhp)
    zero_c = (C1p * C2p) == 0
    dhp = np.where(zero_c, 0.0, dhp)
    dHp = 2 * np.sqrt(C1p * C2p) * np.sin(np.radians(dhp) / 2)

    Lbarp = (L1 + L2) / 2
    Cbarp = (C1p + C2p) / 2
    hsum = h1p + h2p
    hbarp = np.where(
        np.abs(h1p - h2p) <= 180, hsum / 2, np.where(hsum < 360, (hsum + 360) / 2, (hsum - 360) / 2)
    )
    hbarp = np.where(zero_c, hsum, hbarp)
    T = (
        1
        - 0.17 * np.cos(np.radians(hbarp - 30))
        + 0.24 * np.cos(np.radians(2 * hbarp))
        + 0.32 * np.cos(np.radians(3 * hbarp + 6))
        - 0.20 * np.cos(np.radians(4 * hbarp - 63))
    )
    dtheta = 30 * np.exp(-(((hbarp - 275) / 25) ** 2))
    Cbarp7 = Cbarp**7
    Rc = 2 * np.sqrt(Cbarp7 / (Cbarp7 + 25.0**7))
    Sl = 1 + 0.015 * (Lbarp - 50) ** 2 / np.sqrt(20 + (Lbarp - 50) ** 2)
    Sc = 1 + 0.045 * Cbarp
    Sh = 1 + 0.015 * Cbarp * T
    Rt = -np.sin(np.radians(2 * dtheta)) * Rc
    return np.sqrt(
        (dLp / Sl) ** 2 + (dCp / Sc) ** 2 + (dHp / Sh) ** 2 + Rt * (dCp / Sc) * (dHp / Sh)
    )


def compress_chroma(vecs: np.ndarray, k: float) -> np.ndarray:
    """Lab vectors (…, 3·cells) with each cell's chroma C mapped to ln(1 + kC) / k, hue kept:
    CIEDE2000 divides chroma differences by S_C = 1 + 0.045 C, so in these coordinates a
    Euclidean distance weighs a chroma step about as ΔE00 does (the same idea as DIN99)."""
    x = np.array(vecs, np.float32).reshape(*vecs.shape[:-1], -1, 3)
    c = np.hypot(x[..., 1], x[..., 2])
    f = np.log1p(k * c) / (k * np.maximum(c, 1e-6))
    f = np.where(c > 1e-6, f, 1.0).astype(np.float32)
    x[..., 1] *= f
    x[..., 2] *= f
    return x.reshape(vecs.shape)


def lab_to_srgb8(lab: np.ndarray) -> np.ndarray:
    """CIE Lab (D65) -> 8-bit sRGB, clipped; for swatches and hex codes."""
    lab = np.asarray(lab, dtype=np.float64)
    L, a, b = lab[..., 0], lab[..., 1], lab[..., 2]
    fy = (L + 16) / 116
    fx = fy + a / 500
    fz = fy - b / 200

    def finv(t):
        return np.where(t > 6 / 29, t**3, 3 * (6 / 29) ** 2 * (t - 4 / 29))

    X, Y, Z = 0.95047 * finv(fx), 1.0 * finv(fy), 1.08883 * finv(fz)
    r = 3.2404542 * X - 1.5371385 * Y - 0.4985314 * Z
    g = -0.9692660 * X + 1.8760108 * Y + 0.0415560 * Z
    bl = 0.0556434 * X - 0.2040259 * Y + 1.0572252 * Z
    rgb = np.stack([r, g, bl], axis=-1)
    rgb = np.where(rgb <= 0.0031308, 12.92 * rgb, 1.055 * np.abs(rgb) ** (1 / 2.4) - 0.055)
    return np.clip(np.round(rgb * 255), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=8)
def _linear_lut(n: int) -> np.ndarray:
    """Linear light of the mean of n 8-bit sRGB samples, indexed by their sum."""
    if not 1 <= n <= MAX_SUM_SAMPLES:
        raise ValueError(f"sum tables go up to {MAX_SUM_SAMPLES} samples, not {n}")
    c = np.arange(255 * n + 1, dtype=np.float64) / (255 * n)
    return np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4).astype(np.float32)


_F = None


def _f_lut() -> np.ndarray:
    global _F
    if _F is None:
        t = np.arange(65536, dtype=np.float64) / 65535
        d = 6 / 29
        _F = np.where(t > d**3, np.cbrt(t), t / (3 * d * d) + 4 / 29).astype(np.float32)
    return _F


# sRGB (linear) → XYZ, rows pre-divided by the D65 white so f() takes X/Xn, Y/Yn, Z/Zn
_M = (
    np.array(
        [
            [0.4124564, 0.3575761, 0.1804375],
            [0.2126729, 0.7151522, 0.0721750],
            [0.0193339, 0.1191920, 0.9503041],
        ]
    )
    / np.array([[0.95047], [1.0], [1.08883]])
).astype(np.float32)


def unpack_vectors(blobs, dim: int) -> np.ndarray:
    """Feature vectors as the catalog stores them (float32 BLOBs) → an (n, dim) array."""
    return np.frombuffer(b"".join(blobs), dtype=np.float32).reshape(-1, dim)


def srgb8_to_lab(rgb: np.ndarray) -> np.ndarray:
    """sRGB with 0–255 channels (uint8, or float from box averaging) → CIE Lab (D65), float32."""
    rgb = np.asarray(rgb)
    if rgb.dtype == np.uint8:
        lin = np.take(_linear_lut(1), rgb)
    else:
        c = rgb.astype(np.float32) / 255
        lin = np.where(c <= 0.04045, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return _linear_to_lab(lin)


# Beyond this many samples a box's sum table (255·n + 1 floats) is not worth building.
MAX_SUM_SAMPLES = 4096


def srgb_sums_to_lab(sums: np.ndarray, n: int) -> np.ndarray:
    """Lab of the mean of `n` 8-bit sRGB samples, given their integer sums per channel (a
    box average): one table lookup instead of a power per value, 0.08 against 0.24 ms on a
    tile's 51×51 boxes. n ≤ MAX_SUM_SAMPLES."""
    return _linear_to_lab(np.take(_linear_lut(n), sums))


def _linear_to_lab(lin: np.ndarray) -> np.ndarray:
    xyz = (lin @ _M.T).astype(
        np.float32, copy=False
    )  # in [0, 1] for sRGB input (the matrix is non-negative)
    # f(t) from a 65,536-entry table: 0.5 ms per Mpix instead of 25 for cbrt; the quantisation
    # moves L by < 0.01. In place, to keep big targets from allocating temporaries.
    xyz *= np.float32(65535)
    xyz += np.float32(0.5)
    np.minimum(xyz, np.float32(65535), out=xyz)
    f = np.take(_f_lut(), xyz.astype(np.uint16))
    out = np.empty(f.shape, dtype=np.float32)
    np.subtract(116 * f[..., 1], 16, out=out[..., 0])
    np.subtract(f[..., 0], f[..., 1], out=out[..., 1])
    out[..., 1] *= 500
    np.subtract(f[..., 1], f[..., 2], out=out[..., 2])
    out[..., 2] *= 200
    return out


# -- perceptual hash: near-duplicate photos (copies, edits, burst shots, RAW+JPEG pairs) -----

# Photos whose hashes differ in at most this many bits are one shot (bench/bench_dupes.py: on
# the real photos it keeps every re-encode, resize and RAW+JPEG pair, 98 % of exposure edits
# and burst neighbours, 74 % of 92 % crops, with ~0.003 false neighbours a photo at 100,000).
DUPLICATE_BITS = 10


@functools.cache
def _dct_matrix(n: int) -> np.ndarray:
    k = np.arange(n)[:, None]
    m = np.cos(np.pi * (2 * np.arange(n)[None, :] + 1) * k / (2 * n)) * np.sqrt(2.0 / n)
    m[0] /= np.sqrt(2.0)
    return m


# A picture whose 32×32 luma varies less than this (standard deviation, 0-255) has no shape
# for the hash to describe: its bits would be rounding noise, and every plain sky or wall
# would collide with every other. Such photos get no hash and are never grouped.
FLAT_LUMA_STD = 2.0


def perceptual_hash(rgb: np.ndarray) -> int | None:
    """A 64-bit DCT hash of a photo (its thumbnail pixels, uint8 (h, w, 3)), as a signed int64;
    None for a nearly flat picture (FLAT_LUMA_STD).

    Luma averaged down to 32×32 (aspect ignored), 2-D DCT, the 8×8 lowest frequencies
    thresholded at their median (the constant term left out). Resizing, re-encoding, mild
    colour and exposure edits and small crops move few bits; different photos differ in about
    half (bench/bench_dupes.py measures both on the real photos)."""
    y = rgb[..., :3].astype(np.float32) @ np.array([0.299, 0.587, 0.114], np.float32)
    if y.shape[0] < 32 or y.shape[1] < 32:  # a tiny photo: every 32×32 bin gets a pixel
        y = np.repeat(np.repeat(y, -(-32 // y.shape[0]), 0), -(-32 // y.shape[1]), 1)
    h, w = y.shape
    rows = (
        np.add.reduceat(y, (np.arange(32) * h) // 32, axis=0)
        / np.diff(np.append((np.arange(32) * h) // 32, h))[:, None]
    )
    small = (
        np.add.reduceat(rows, (np.arange(32) * w) // 32, axis=1)
        / np.diff(np.append((np.arange(32) * w) // 32, w))[None, :]
    )
    if small.std() < FLAT_LUMA_STD:
        return None
    d = _dct_matrix(32)
    low = (d @ small @ d.T)[:8, :8].ravel()
    bits = low > np.median(low[1:])
    return int(np.packbits(bits).view(">i8")[0])


def hamming(a, b) -> np.ndarray:
    """Bits that differ between int64 hashes (broadcasting)."""
    return np.bitwise_count(np.bitwise_xor(np.asarray(a, np.int64), np.asarray(b, np.int64)))
