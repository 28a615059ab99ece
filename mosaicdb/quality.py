"""How close a mosaic is to its target, defined once: mean CIEDE2000 and SSIM (on L*), with
both images reduced to the same width, at two viewing distances — 400 px wide (across the
room) and 1600 px wide (up close, where the tiles' own content shows).

The mosaic covers the centred part of the target at the mosaic's aspect (that is how render
crops), so the target is cropped the same way before both are reduced.
"""

from __future__ import annotations

import numpy as np

from mosaicdb import features as F

WIDTHS = (400, 1600)
_C1 = (0.01 * 100) ** 2  # SSIM constants for L* in 0–100
_C2 = (0.03 * 100) ** 2


def _gauss_kernel(sigma: float = 1.5, radius: int = 5) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-(x**2) / (2 * sigma**2))
    return k / k.sum()


def _blur(a: np.ndarray, k: np.ndarray) -> np.ndarray:
    """Separable Gaussian filter, 'valid' region only (no padding effects)."""
    a = np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 0, a)
    return np.apply_along_axis(lambda v: np.convolve(v, k, mode="valid"), 1, a)


def ssim(x: np.ndarray, y: np.ndarray) -> float:
    """Mean SSIM (Wang et al. 2004: Gaussian window σ 1.5, K1 0.01, K2 0.03) of two L* images."""
    x = x.astype(np.float64)
    y = y.astype(np.float64)
    k = _gauss_kernel()
    mx, my = _blur(x, k), _blur(y, k)
    sxx = _blur(x * x, k) - mx * mx
    syy = _blur(y * y, k) - my * my
    sxy = _blur(x * y, k) - mx * my
    s = ((2 * mx * my + _C1) * (2 * sxy + _C2)) / ((mx**2 + my**2 + _C1) * (sxx + syy + _C2))
    return float(s.mean())


def compare(mosaic_lab: np.ndarray, target_lab: np.ndarray) -> dict:
    """Scores of two Lab images of the same size: mean ΔE2000 per pixel and SSIM on L*."""
    if mosaic_lab.shape != target_lab.shape:
        raise ValueError(f"sizes differ: {mosaic_lab.shape} vs {target_lab.shape}")
    de = F.ciede2000(mosaic_lab.reshape(-1, 3), target_lab.reshape(-1, 3))
    return {"delta_e": float(de.mean()), "ssim": ssim(mosaic_lab[..., 0], target_lab[..., 0])}


def score(mosaic: str, target: str, widths=WIDTHS) -> dict:
    """{width: {"delta_e", "ssim"}} for each viewing width (never wider than the mosaic)."""
    from mosaicdb import imaging

    out = {}
    for w in widths:
        m, t = imaging.reduced_pair(mosaic, target, w)
        out[w] = compare(F.srgb8_to_lab(m), F.srgb8_to_lab(t))
    return out
