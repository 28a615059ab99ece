"""The quality measure: identical images score perfectly, a known colour shift gives the known
ΔE2000, and structure loss lowers SSIM."""

import numpy as np
import pyvips
from conftest import COLOURS, lab_of, noise_jpeg, solid

from mosaicdb import features as F
from mosaicdb import quality


def test_identical_images_score_perfectly():
    rng = np.random.default_rng(0)
    lab = F.srgb8_to_lab(rng.integers(0, 256, (40, 60, 3), dtype=np.uint8))
    s = quality.compare(lab, lab)
    assert s["delta_e"] == 0 and abs(s["ssim"] - 1) < 1e-12


def test_flat_images_delta_e_is_the_colour_difference():
    a = np.broadcast_to(lab_of(COLOURS["red"]), (30, 30, 3))
    b = np.broadcast_to(lab_of(COLOURS["purple"]), (30, 30, 3))
    s = quality.compare(a, b)
    want = float(F.ciede2000(lab_of(COLOURS["red"]), lab_of(COLOURS["purple"])))
    assert abs(s["delta_e"] - want) < 1e-9


def test_blur_lowers_ssim():
    rng = np.random.default_rng(1)
    L = rng.uniform(0, 100, (64, 64))
    blurred = quality._blur(np.pad(L, 5, mode="edge"), quality._gauss_kernel(3.0, 5))
    assert quality.ssim(L, blurred) < 0.5 < quality.ssim(L, L + 0.5)


def test_score_files_at_two_widths(tmp_path):
    t = noise_jpeg(tmp_path / "target.jpg", size=(1600, 1000), q=95)
    solid(tmp_path / "grey.png", (128, 128, 128), size=(1600, 1000))
    same = quality.score(str(t), str(t))
    assert set(same) == {400, 1600}
    assert same[400]["delta_e"] < 0.5 and same[400]["ssim"] > 0.99
    flat = quality.score(str(tmp_path / "grey.png"), str(t))
    assert flat[400]["delta_e"] > 10 and flat[400]["ssim"] < 0.2
    assert pyvips.Image.new_from_file(str(t)).width == 1600
