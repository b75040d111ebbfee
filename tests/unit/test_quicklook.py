"""cubemosaic.quicklook: the month's picture, its bands and colours, and its caption's clear share."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from cubemosaic.quicklook import month_quicklook

from conftest import small_mosaic


def test_bands_without_red_green_blue_show_the_first_three_and_say_so(tmp_path: Path):
    mosaic, count, _ = small_mosaic(tmp_path, ("nir", "swir16", "swir22", "rededge1"), seed=0)
    ql = month_quicklook(mosaic, count, tmp_path / "q.png")
    assert ql.bands == ("nir", "swir16", "swir22") and "no red/green/blue" in ql.title
    rgba = np.asarray(Image.open(ql.path))
    assert (rgba[:10, :, 3] == 0).all() and (rgba[10:, :, 3] == 255).all()
    assert abs(ql.clear_share - 54 / 64) < 1e-6


def test_clear_percent_never_rounds_up_to_100():
    from cubemosaic.quicklook import clear_percent

    assert clear_percent(0.9958) == "99.5%"
    assert clear_percent(0.99999) == "99.9%"
    assert clear_percent(1.0) == "100%"
    assert clear_percent(0.0) == "0.0%"


def test_two_bands_make_a_false_colour_picture_of_both(tmp_path):
    from cubemosaic.quicklook import month_quicklook

    mosaic, count, data = small_mosaic(tmp_path, ("nir", "red"))
    ql = month_quicklook(mosaic, count, tmp_path / "q.png")
    assert ql.bands == ("nir", "red")
    assert "nir as red" in ql.title and "red as green and blue" in ql.title, ql.title
    assert "no green/blue band" in ql.title and "no red/green/blue" not in ql.title, ql.title
    rgba = np.asarray(Image.open(ql.path)).astype(int)
    r, g, b = (rgba[10:, :, i] for i in range(3))
    assert (g == b).all(), "green and blue show the second band"
    assert np.corrcoef(r.ravel(), data[0, 10:].ravel())[0, 1] > 0.9, "red shows nir"
    assert np.corrcoef(g.ravel(), data[1, 10:].ravel())[0, 1] > 0.9, "green shows red"


def test_one_band_is_grey_and_says_which_colours_are_missing(tmp_path):
    from cubemosaic.quicklook import month_quicklook

    mosaic, count, _ = small_mosaic(tmp_path, ("green",))
    ql = month_quicklook(mosaic, count, tmp_path / "q.png")
    assert ql.bands == ("green",) and ql.title.startswith("Grey (no red/blue band)"), ql.title


def test_the_overview_caption_never_rounds_up_to_100(tmp_path, monkeypatch):
    from PIL import ImageDraw

    from cubemosaic.quicklook import Quicklook, month_quicklook, overview_picture

    mosaic, count, _ = small_mosaic(tmp_path, ("red", "green", "blue"))
    look = month_quicklook(mosaic, count, tmp_path / "q.png")
    said: list[str] = []
    original = ImageDraw.ImageDraw.text
    monkeypatch.setattr(
        ImageDraw.ImageDraw, "text", lambda self, xy, text, **kw: said.append(text) or original(self, xy, text, **kw)
    )
    looks = [
        ("2021-12", Quicklook(look.path, look.bands, look.title, 0.9958)),
        ("2022-01", Quicklook(look.path, look.bands, look.title, 1.0)),
    ]
    overview_picture(looks, tmp_path / "overview.png")
    assert said == ["2021-12", "clear 99.5%", "2022-01", "clear 100%"]


def test_the_stretch_takes_each_bands_2_and_98_percentile_of_its_valid_pixels_to_0_and_255():
    """The picture's stretch, whatever way it is computed: numpy's linear 2nd and 98th percentile
    of each band's valid pixels to 0 and 255, the rest scaled between them and clipped (for the
    integers a quick-look reads, and for floating point)."""
    from cubemosaic.quicklook import _stretch

    rng = np.random.default_rng(7)
    for dtype, top in ((np.uint16, 9000), (np.uint8, 255), (np.float32, 1.0)):
        rgb = (rng.random((3, 61, 47)) * top).astype(dtype)
        rgb[0, :5] = top  # a few bright invalid pixels that must not move the stretch
        valid = rng.random((61, 47)) > 0.3
        valid[:5] = False
        expected = np.zeros(rgb.shape, dtype=np.uint8)
        for b in range(3):
            lo, hi = np.percentile(rgb[b][valid].astype(np.float32), [2, 98])
            scaled = (rgb[b].astype(np.float32) - lo) / max(float(hi - lo), 1e-6)
            expected[b] = np.clip(scaled * 255, 0, 255).astype(np.uint8)
        got = _stretch(rgb, valid)
        assert np.abs(got.astype(int) - expected).max() <= 1, dtype
        assert (got[:, valid] == expected[:, valid]).mean() > 0.99, dtype
