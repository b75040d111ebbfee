"""Quick-looks (issue 11 point 1): a PNG per month, listed as its item's thumbnail, not blank,
transparent where the mosaic has no data; one overview picture of all months."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import rasterio
from PIL import Image

from cubemosaic.quicklook import MAX_SIDE

#: The README's and the docs' picture of the demo: its overview as a run makes it.
DOCS_PICTURE = Path(__file__).resolve().parents[2] / "docs" / "quicklook-demo.png"


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


def _for_the_docs(overview: Path) -> Image.Image:
    """The overview as the docs show it: over white, in 64 colours (a fifth of the file)."""
    with Image.open(overview) as im:
        white = Image.new("RGBA", im.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, im.convert("RGBA")).convert("RGB").quantize(64)


def test_the_docs_picture_is_the_overview_the_demo_makes(demo_run):
    """The README says ``output/overview.png`` is its picture; a newcomer found the picture's
    labels (clear 100 %) were not the run's (99.5 %): it had been made before the labels changed.
    Pixel for pixel with the Pillow that made it (its version is in the PNG); with another, whose
    text and colour reduction may differ slightly, nearly. CUBEMOSAIC_UPDATE_DOCS=1 writes it again."""
    import PIL
    from PIL import PngImagePlugin

    made = _for_the_docs(demo_run / "overview.png")
    if os.environ.get("CUBEMOSAIC_UPDATE_DOCS"):
        info = PngImagePlugin.PngInfo()
        info.add_text("pillow", PIL.__version__)
        made.save(DOCS_PICTURE, optimize=True, pnginfo=info)
    with Image.open(DOCS_PICTURE) as shown:
        assert shown.size == made.size, f"{DOCS_PICTURE.name}: run this test with CUBEMOSAIC_UPDATE_DOCS=1"
        a, b = np.asarray(shown.convert("RGB"), dtype=np.int16), np.asarray(made.convert("RGB"), dtype=np.int16)
        same_pillow = shown.info.get("pillow") == PIL.__version__
    differ = np.abs(a - b).max(axis=-1) > (0 if same_pillow else 24)
    assert differ.mean() <= (0 if same_pillow else 0.01), (
        f"{DOCS_PICTURE.name} is not the demo's overview ({differ.sum()} pixels differ): "
        "run this test with CUBEMOSAIC_UPDATE_DOCS=1"
    )
