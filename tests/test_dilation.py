"""mask_dilation: clouds, cirrus and shadows grown on the SCL's own pixels, on both readers, and
what it buys on an archive whose SCL misses a ring of haze around each cloud."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
import xarray as xr

from cubemosaic.read import Access, _masked, is_aligned
from cubemosaic.s2 import CloudMask
from cubemosaic.scenes import AssetGrid
from cubemosaic.store import open_dn

#: Haze ring of the test archive and the dilation that matches it (metres).
RING_M = 200.0


def test_the_dilation_is_a_disc_of_its_radius_in_metres():
    scl = np.full((11, 11), 4, dtype=np.uint16)
    scl[5, 5] = 9  # one cloud pixel
    scl[0, 0] = 0  # no data: masked, never grown
    got = CloudMask(dilation_m=40).masked(scl, 20.0)
    yy, xx = np.mgrid[-5:6, -5:6]
    disc = np.hypot(yy * 20, xx * 20) <= 40
    expected = disc.copy()
    expected[0, 0] = True
    np.testing.assert_array_equal(got, expected)
    assert got[5, 7] and got[6, 6] and not got[6, 7]  # 40 m and 28 m in, 45 m out
    np.testing.assert_array_equal(CloudMask().masked(scl, 20.0), (scl == 9) | (scl == 0))
    assert CloudMask(dilation_m=30).radius_px(20) == 2 and CloudMask().radius_px(20) == 0


def test_a_dilation_under_one_scl_pixel_is_refused_and_coarse_pixels_grow_by_one():
    from cubemosaic.__main__ import compose
    from cubemosaic.config import to_settings
    from cubemosaic.errors import ConfigError

    with pytest.raises(ConfigError, match="less than one SCL pixel"):
        to_settings(compose(["catalog=demo", "mask_dilation=10", "output_dir=/tmp/cubemosaic-test-unused"]))
    scl = np.full((5, 5), 4, dtype=np.uint16)
    scl[2, 2] = 9
    grown = CloudMask(dilation_m=50).masked(scl, 60.0)  # the warped read at 60 m: the neighbours
    assert grown[1:4, 2].all() and grown[2, 1:4].all() and not grown[1, 1]


def test_only_masked_classes_grow():
    scl = np.full((5, 5), 4, dtype=np.uint16)
    scl[2, 2] = 10  # thin cirrus, not masked here
    assert not CloudMask(classes=(0, 8, 9), dilation_m=100).masked(scl, 20.0).any()


@pytest.mark.parametrize(
    "resolution, origin", [(10, (500130, 4999930)), (20, (500100, 4999940)), (60, (500120, 4999940))]
)
def test_the_aligned_reader_dilates_on_the_scl_pixels_whatever_the_output_grid(tmp_path, resolution, origin):
    """The block's SCL is read on its own 20 m pixels with a margin, dilated there, then put on the
    block: 10 m (starting mid SCL pixel) takes the pixel under each centre, 60 m is masked where any
    of its 3 x 3 SCL pixels is. The margin makes a block's edge see a cloud just outside it."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    native = np.where(rng.random((60, 80)) < 0.01, 9, 4).astype(np.uint16)
    path = tmp_path / "scl.tif"
    transform = from_origin(500000, 5000000, 20, 20)
    with rasterio.open(
        path, "w", driver="GTiff", width=80, height=60, count=1, dtype="uint16", crs="EPSG:32610", transform=transform
    ) as dst:
        dst.write(native, 1)
    grid = AssetGrid(str(path), "EPSG:32610", tuple(transform)[:6], (60, 80))
    mask = CloudMask(dilation_m=60)
    whole = mask.masked(native, 20.0)  # the reference: the whole asset dilated at once
    shape = (600 // resolution, 900 // resolution)
    geobox = GeoBox(shape, Affine(resolution, 0, origin[0], 0, -resolution, origin[1]), "EPSG:32610")
    assert is_aligned(grid, geobox)
    got = _masked(grid, geobox, mask, Access())
    col0, row0 = (origin[0] - 500000) / 20, (5000000 - origin[1]) / 20
    if resolution >= 20:
        k = resolution // 20
        sub = whole[int(row0) : int(row0) + shape[0] * k, int(col0) : int(col0) + shape[1] * k]
        expected = sub.reshape(shape[0], k, shape[1], k).any(axis=(1, 3))
    else:
        rows = np.floor(row0 + (np.arange(shape[0]) + 0.5) / 2).astype(int)
        cols = np.floor(col0 + (np.arange(shape[1]) + 0.5) / 2).astype(int)
        expected = whole[np.ix_(rows, cols)]
    np.testing.assert_array_equal(got, expected)
    assert got.mean() > 0.05


@pytest.fixture(scope="module")
def haze(demo_dir):
    from cubemosaic.demo import DemoSpec, ensure_demo

    return ensure_demo(DemoSpec(haze_ring_m=RING_M), cache_dir=demo_dir)


def _monthly(archive, tmp_path, *args: str) -> xr.Dataset:
    from conftest import cli

    out = tmp_path / "-".join(a.replace("=", "") for a in args)
    proc = cli(["catalog=demo", f"catalog.url={archive.items_path}", f"output_dir={out}", *args], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    return open_dn(out / "monthly.zarr").load(), out


def test_dilation_recovers_the_haze_the_scl_misses(haze, demo, tmp_path):
    """The haze archive's SCL calls a 200 m ring around each cloud clear; the truth leaves it out.
    Without dilation the hazy values pull medians away (99.07 % of values within noise); dilated by
    the ring's width, 99.47 % (README). On the demo, whose SCL flags every cloud pixel, the same
    dilation only costs: 10 % of the clear observations left out, fewer values within noise."""
    plain, _ = _monthly(haze, tmp_path, "mask_dilation=0")
    grown, out = _monthly(haze, tmp_path, f"mask_dilation={RING_M:g}")
    before, after = haze.agreement(plain), haze.agreement(grown)
    assert after - before >= 0.003, (before, after)
    assert float(grown["count"].sum()) < 0.92 * float(plain["count"].sum())
    exact, _ = _monthly(demo, tmp_path, f"mask_dilation={RING_M:g}", "stage=all")
    assert demo.agreement(exact) < 1.0
    item = json.loads((out / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.json").read_text())
    assert item["properties"]["cubemosaic:cloud_mask"]["dilation_m"] == RING_M
    assert item["properties"]["cubemosaic:cloud_mask"]["dilated_classes"] == [3, 8, 9, 10]
    assert "grown by 200 m" in item["properties"]["processing:lineage"]


def test_both_readers_dilate_alike(haze, tmp_path):
    """At 20 m the output pixels are the SCL's, so the warped read (mode resampling of the
    bands, dilation on the output grid) and the aligned reader mask the same pixels."""
    aligned, _ = _monthly(haze, tmp_path, f"mask_dilation={RING_M:g}", "stage=all")
    warped, _ = _monthly(haze, tmp_path, f"mask_dilation={RING_M:g}", "resampling=mode")
    np.testing.assert_array_equal(aligned["count"].values, warped["count"].values)
    np.testing.assert_array_equal(aligned["red"].values, warped["red"].values)
