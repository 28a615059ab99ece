"""Feature maths: ΔE2000 against the published test data, Lab conversions, spec parsing."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from mosaicdb import features as F
from mosaicdb.errors import OptionError

# Sharma, Wu & Dalal (2005), "The CIEDE2000 color-difference formula", Table 1 (all 34 pairs).
SHARMA = [
    ((50.0000, 2.6772, -79.7751), (50.0000, 0.0000, -82.7485), 2.0425),
    ((50.0000, 3.1571, -77.2803), (50.0000, 0.0000, -82.7485), 2.8615),
    ((50.0000, 2.8361, -74.0200), (50.0000, 0.0000, -82.7485), 3.4412),
    ((50.0000, -1.3802, -84.2814), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -1.1848, -84.8006), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, -0.9009, -85.5211), (50.0000, 0.0000, -82.7485), 1.0000),
    ((50.0000, 0.0000, 0.0000), (50.0000, -1.0000, 2.0000), 2.3669),
    ((50.0000, -1.0000, 2.0000), (50.0000, 0.0000, 0.0000), 2.3669),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0009), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0010), 7.1792),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0011), 7.2195),
    ((50.0000, 2.4900, -0.0010), (50.0000, -2.4900, 0.0012), 7.2195),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0009, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0010, -2.4900), 4.8045),
    ((50.0000, -0.0010, 2.4900), (50.0000, 0.0011, -2.4900), 4.7461),
    ((50.0000, 2.5000, 0.0000), (50.0000, 0.0000, -2.5000), 4.3065),
    ((50.0000, 2.5000, 0.0000), (73.0000, 25.0000, -18.0000), 27.1492),
    ((50.0000, 2.5000, 0.0000), (61.0000, -5.0000, 29.0000), 22.8977),
    ((50.0000, 2.5000, 0.0000), (56.0000, -27.0000, -3.0000), 31.9030),
    ((50.0000, 2.5000, 0.0000), (58.0000, 24.0000, 15.0000), 19.4535),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.1736, 0.5854), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2972, 0.0000), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 1.8634, 0.5757), 1.0000),
    ((50.0000, 2.5000, 0.0000), (50.0000, 3.2592, 0.3350), 1.0000),
    ((60.2574, -34.0099, 36.2677), (60.4626, -34.1751, 39.4387), 1.2644),
    ((63.0109, -31.0961, -5.8663), (62.8187, -29.7946, -4.0864), 1.2630),
    ((61.2901, 3.7196, -5.3901), (61.4292, 2.2480, -4.9620), 1.8731),
    ((35.0831, -44.1164, 3.7933), (35.0232, -40.0716, 1.5901), 1.8645),
    ((22.7233, 20.0904, -46.6940), (23.0331, 14.9730, -42.5619), 2.0373),
    ((36.4612, 47.8580, 18.3852), (36.2715, 50.5065, 21.2231), 1.4146),
    ((90.8027, -2.0831, 1.4410), (91.1528, -1.6435, 0.0447), 1.4441),
    ((90.9257, -0.5406, -0.9208), (88.6381, -0.8985, -0.7239), 1.5381),
    ((6.7747, -0.2908, -2.4247), (5.8714, -0.0985, -2.2286), 0.6377),
    ((2.0776, 0.0795, -1.1350), (0.9033, -0.0636, -0.5514), 0.9082),
]


def test_ciede2000_matches_sharma_table():
    a = np.array([p[0] for p in SHARMA])
    b = np.array([p[1] for p in SHARMA])
    want = np.array([p[2] for p in SHARMA])
    got = F.ciede2000(a, b)
    np.testing.assert_allclose(got, want, atol=1e-4)


@given(
    st.tuples(st.floats(0, 100), st.floats(-100, 100), st.floats(-100, 100)),
    st.tuples(st.floats(0, 100), st.floats(-100, 100), st.floats(-100, 100)),
)
def test_ciede2000_symmetric_and_zero_on_self(x, y):
    assert F.ciede2000(x, x) == pytest.approx(0, abs=1e-9)
    assert F.ciede2000(x, y) == pytest.approx(F.ciede2000(y, x), abs=1e-6)


def test_lab_roundtrip_and_known_values():
    # sRGB red is L 53.24, a 80.09, b 67.20 (D65)
    np.testing.assert_allclose(F.srgb8_to_lab([255, 0, 0]), [53.24, 80.09, 67.20], atol=0.02)
    rgb = np.array([[12, 200, 99], [255, 255, 255], [0, 0, 0], [128, 64, 32]])
    np.testing.assert_array_equal(F.lab_to_srgb8(F.srgb8_to_lab(rgb)), rgb)


@pytest.mark.parametrize("n", [1, 4, 25, 400])
def test_lab_of_summed_boxes_is_lab_of_their_mean(n):
    """Box averaging hands Lab the integer sums of n samples: the table lookup must agree
    with converting the mean itself, and reject a box too big for a table."""
    sums = np.random.default_rng(n).integers(0, 255 * n + 1, (50, 3))
    np.testing.assert_allclose(F.srgb_sums_to_lab(sums, n), F.srgb8_to_lab(sums / n), atol=0.01)
    with pytest.raises(ValueError, match="sum tables go up to"):
        F.srgb_sums_to_lab(sums, F.MAX_SUM_SAMPLES + 1)


def test_spec_key_roundtrip_and_bad_grid():
    s = F.FeatureSpec(4)
    assert s.key == f"lab4v{F.FEATURE_VERSION}" and s.dim == 48
    assert F.FeatureSpec.parse(s.key) == s
    with pytest.raises(OptionError, match="--grid"):
        F.FeatureSpec(0)


def _grid_means_reference(px, cols, rows, k):
    """Mean Lab of each k×k box of each cell, pixel by pixel (no box averaging first: the
    test images are small enough that imaging skips it)."""
    lab = F.srgb8_to_lab(px).astype(np.float64)
    h, w = px.shape[:2]
    xb = np.round(np.arange(cols * k + 1) * w / (cols * k)).astype(int)
    yb = np.round(np.arange(rows * k + 1) * h / (rows * k)).astype(int)
    out = np.empty((rows, cols, k, k, 3))
    for i in range(rows * k):
        for j in range(cols * k):
            box = lab[yb[i] : yb[i + 1], xb[j] : xb[j + 1]].reshape(-1, 3)
            out[i // k, j // k, i % k, j % k] = box.mean(axis=0)
    return out.reshape(rows, cols, k * k * 3)


@pytest.mark.parametrize("ks", [(3,), (3, 6), (2, 4, 6), (4, 6)])
def test_lab_grids_nested_and_in_strips_match_pixel_means(ks, monkeypatch):
    # (3, 6) and (2, 4, 6): the coarser grids are block sums of the finest one; (4, 6) is not
    # nested and is summed on its own. Tiny strips force several strips on two threads.
    from mosaicdb import imaging

    rng = np.random.default_rng(1)
    cols, rows = 7, 5
    px = rng.integers(0, 256, (rows * 13 + 3, cols * 11 + 2, 3), dtype=np.uint8)
    monkeypatch.setattr(imaging, "_STRIP_PIXELS", 300)
    got = imaging.lab_grids(px, cols, rows, ks)
    for k, g in zip(ks, got, strict=True):
        assert g.shape == (rows, cols, 3 * k * k) and g.dtype == np.float32
        np.testing.assert_allclose(g, _grid_means_reference(px, cols, rows, k), atol=2e-3)


def test_compress_chroma_keeps_lightness_and_hue_and_maps_chroma():
    lab = np.array([[50.0, 0.0, 0.0, 70.0, 30.0, -40.0, 20.0, -3.0, 4.0]], np.float32)
    out = F.compress_chroma(lab, 0.045).reshape(-1, 3)
    lab = lab.reshape(-1, 3)
    assert np.array_equal(out[:, 0], lab[:, 0])  # lightness untouched
    assert np.array_equal(out[0], lab[0])  # a neutral stays neutral
    c_in, c_out = np.hypot(lab[:, 1], lab[:, 2]), np.hypot(out[:, 1], out[:, 2])
    assert np.allclose(c_out[1:], np.log1p(0.045 * c_in[1:]) / 0.045, rtol=1e-5)
    hue_in, hue_out = np.arctan2(lab[1:, 2], lab[1:, 1]), np.arctan2(out[1:, 2], out[1:, 1])
    assert np.allclose(hue_in, hue_out, atol=1e-6)
