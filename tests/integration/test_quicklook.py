"""Quick-looks (issue 11 point 1): a PNG per month, listed as its item's thumbnail, not blank,
transparent where the mosaic has no data; one overview picture of all months."""

from __future__ import annotations

import json

import numpy as np
import rasterio
from PIL import Image

from cubemosaic.quicklook import MAX_SIDE


def test_every_month_has_a_thumbnail_that_is_not_blank(demo_run):
    items = sorted(demo_run.glob("monthly-mosaic-*/monthly-mosaic-*.json"))
    assert items
    for item_path in items:
        item = json.loads(item_path.read_text())
        thumb = item["assets"]["thumbnail"]
        assert thumb["roles"] == ["thumbnail"] and thumb["type"] == "image/png"
        assert "red, green, blue" in thumb["title"]
        png = (item_path.parent / thumb["href"]).resolve()
        with Image.open(png) as im:
            assert im.mode == "RGBA" and max(im.size) <= MAX_SIDE
            rgba = np.asarray(im)
        with rasterio.open(png.parent / f"{png.parent.name}.tif") as src:
            assert im.size == (src.width, src.height) or max(im.size) == MAX_SIDE
            nodata = src.read(1, out_shape=(im.size[1], im.size[0])) == 0
        opaque = rgba[..., 3] == 255
        assert rgba[..., :3][opaque].std() > 10, f"{png.name} is blank"
        assert (rgba[..., 3][nodata] == 0).all(), f"{png.name} shows nodata"
    with Image.open(demo_run / "overview.png") as im:
        assert im.width > im.height and np.asarray(im)[..., :3].std() > 10
