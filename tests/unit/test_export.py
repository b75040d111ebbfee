"""cubemosaic.export: write_cog in this process, with the metadata GIS tools read."""

from __future__ import annotations

import numpy as np
import pytest


def test_write_cog_in_this_process_metadata_gis_tools_read(tmp_path):
    """A small COG, in this process: valid (rio-cogeo), tiled with overviews, each band scale
    0.0001 / offset 0, red/green/blue first tagged as such, nodata 0, the tags kept, the pixels
    as read; a count raster (no nodata: 0 is a value) stays gray without nodata."""
    import rasterio.transform
    from rasterio.enums import ColorInterp
    from rio_cogeo.cogeo import cog_validate

    from cubemosaic.export import write_cog

    rng = np.random.default_rng(3)
    pixels = rng.integers(0, 5000, (3, 300, 500)).astype(np.uint16)
    common = dict(block=(128, 256), dtype="uint16", crs="EPSG:32610", overview_resampling="average",
                  transform=rasterio.transform.from_origin(500000, 5300000, 20, 20))  # fmt: skip
    mosaic, count = tmp_path / "m.tif", tmp_path / "c.tif"
    write_cog(mosaic, lambda ys, xs: pixels[:, ys, xs], shape=pixels.shape, descriptions=["red", "green", "blue"],
              nodata=0, scale=1e-4, tags={"CUBEMOSAIC_SOURCE": "x"}, **common)  # fmt: skip
    write_cog(count, lambda ys, xs: pixels[:1, ys, xs] % 7, shape=(1, 300, 500), descriptions=["count"],
              nodata=None, **common)  # fmt: skip
    assert cog_validate(str(mosaic))[0] and cog_validate(str(count))[0]
    assert not list(tmp_path.glob(".*")), "no temp file left beside the COGs"
    with rasterio.open(mosaic) as src:
        assert src.scales == (1e-4,) * 3 and src.offsets == (0.0,) * 3 and src.nodata == 0
        assert src.colorinterp == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
        assert src.descriptions == ("red", "green", "blue") and src.overviews(1)
        assert src.tags()["CUBEMOSAIC_SOURCE"] == "x"
        np.testing.assert_array_equal(src.read(), pixels)
    with rasterio.open(count) as src:
        assert src.nodata is None and src.colorinterp == (ColorInterp.gray,) and src.scales == (1.0,)
        np.testing.assert_array_equal(src.read(1), pixels[0] % 7)


@pytest.mark.parametrize("shape", [(1, 26), (26, 1), (2, 700), (3, 5), (1, 1), (5000, 5)])
def test_a_tiles_edge_sliver_is_a_valid_cog(tmp_path, shape):
    """A tiled area's last row or column of tiles can be one pixel thin: its COG gets only the
    overviews that are smaller on both sides (none for one pixel), and is valid."""
    import rasterio.transform
    from rio_cogeo.cogeo import cog_validate

    from cubemosaic.export import write_cog

    pixels = np.arange(np.prod(shape), dtype=np.uint16).reshape(1, *shape) + 1
    path = tmp_path / "sliver.tif"
    write_cog(path, lambda ys, xs: pixels[:, ys, xs], shape=pixels.shape, block=(2048, 2048), dtype="uint16",
              crs="EPSG:32610", transform=rasterio.transform.from_origin(500000, 5300000, 20, 20),
              descriptions=["red"], nodata=0, overview_resampling="average")  # fmt: skip
    valid, errors, _ = cog_validate(str(path), quiet=True)
    assert valid, errors
    with rasterio.open(path) as src:
        np.testing.assert_array_equal(src.read(), pixels)
        assert all(f > 1 for f in src.overviews(1))
