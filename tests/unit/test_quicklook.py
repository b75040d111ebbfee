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
