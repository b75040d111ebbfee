"""The oracle: outputs against the demo archive's true clear-sky monthly median and count."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
import xarray as xr

from conftest import BANDS, assert_monthly_matches_truth, assert_same_cogs


def _truth_on(grid, truth):
    return truth.sel(x=grid.x.values, y=grid.y.values)


def test_demo_has_what_real_archives_have(demo, truth):
    import json

    items = json.loads(demo.items_path.read_text())["features"]
    baselines = {i["properties"]["s2:processing_baseline"] for i in items}
    assert baselines == {"03.01", "04.00"}
    days = [i["properties"]["datetime"][:10] for i in items]
    assert any(d < "2022-01-25" for d in days) and any(d >= "2022-01-25" for d in days)
    assert len(days) > len(set(days)), "two tiles of the same solar day"
    with rasterio.open(items[0]["assets"]["B04"]["href"]) as ds:
        assert ds.profile["tiled"] and ds.overviews(1) and ds.nodata == 0 and ds.res == (10, 10)
    with rasterio.open(items[0]["assets"]["SCL"]["href"]) as ds:
        assert ds.res == (20, 20)
    scl_classes = set()
    for it in items:
        with rasterio.open(it["assets"]["SCL"]["href"]) as ds:
            scl_classes |= set(np.unique(ds.read(1)).tolist())
    assert {0, 3, 8, 9, 10}.issubset(scl_classes)
    # The truth has pixels without a clear answer, and most pixels with one.
    assert (truth["count"] == 0).any() and float((truth["count"] > 0).mean()) > 0.8


def test_monthly_median_matches_truth(demo_run, truth):
    monthly = xr.open_zarr(demo_run / "monthly.zarr", mask_and_scale=False)
    assert monthly.sizes["time"] == 4 and (monthly.time.values == truth.time.values).all()
    assert_monthly_matches_truth(monthly, truth)


def test_cogs_match_truth_across_baseline_change(demo_run, truth):
    monthly = xr.open_zarr(demo_run / "monthly.zarr")
    t = _truth_on(monthly, truth)
    for i, month in enumerate(["2021-12", "2022-01", "2022-02", "2022-03"]):
        folder = demo_run / f"monthly-mosaic-{month}"
        with rasterio.open(folder / f"monthly-mosaic-{month}.tif") as ds:
            data = ds.read().astype(np.float64)
        with rasterio.open(folder / f"monthly-mosaic-{month}-count.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), t["count"].values[i])
        for b, key in enumerate(BANDS.values()):
            expected = t[key].values[i]
            clear = ~np.isnan(expected)
            assert (data[b][~clear] == 0).all()
            assert np.abs(data[b][clear] - expected[clear]).max() <= 1, (month, key)
    # January mixes baseline 03.01 and 04.00 scenes: an unharmonised median would be ~500 DN off.
    assert (t["count"].values[1] > 0).mean() > 0.9
    # March has a patch that is cloudy in every scene: no clear answer, nodata out.
    assert (t["count"].values[3] == 0).sum() > 100


def test_the_odc_stac_path_matches_truth_too(demo, truth, tmp_path):
    """Grids that do not line up (here: average resampling) go through odc-stac's warping load."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "resampling=average", "stage=cube", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = cli(["catalog=demo", "resampling=average", "stage=composite", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monthly = xr.open_zarr(out / "monthly.zarr", mask_and_scale=False)
    assert_monthly_matches_truth(monthly, truth)


def test_grid_alignment_decides_the_reader():
    import pystac
    from odc.geo.geobox import GeoBox

    from cubemosaic.read import asset_grid, is_aligned

    item = pystac.Item("x", None, None, __import__("datetime").datetime(2022, 1, 1), {"proj:epsg": 32610})
    item.add_asset(
        "B04",
        pystac.Asset(
            "b.tif", extra_fields={"proj:shape": [100, 100], "proj:transform": [10, 0, 500000, 0, -10, 5000000]}
        ),
    )
    grid = asset_grid(item, "B04", "EPSG:32610")
    assert is_aligned(grid, GeoBox.from_bbox((500100, 4999000, 500900, 4999900), "EPSG:32610", resolution=20))
    assert not is_aligned(grid, GeoBox.from_bbox((500105, 4999000, 500905, 4999900), "EPSG:32610", resolution=15))
    assert not is_aligned(grid, GeoBox.from_bbox((500100, 4999000, 500900, 4999900), "EPSG:32611", resolution=20))


def test_many_blocks_per_day_give_the_same_cogs(demo_run, tmp_path):
    """chunk_size=64 makes 128 px shards: 2 x 2 blocks per day and month, edge blocks clipped."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "chunk_size=64", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_cogs(demo_run, out)


@pytest.mark.parametrize("cluster", ["cluster.dashboard=true", "cluster.processes=true"])
def test_a_distributed_local_cluster_gives_the_same_cogs(demo_run, tmp_path, cluster):
    """The default local run uses Dask's threaded scheduler; a LocalCluster (threads with a
    dashboard, or worker processes) computes the same mosaics."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "cluster=local", cluster, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "; dashboard http" in proc.stderr
    assert_same_cogs(demo_run, out)


def test_at_10_m_the_20_m_scl_is_upsampled_on_the_aligned_reader(demo, truth, tmp_path):
    """10 m output: the bands are native, the 20 m SCL is repeated 2 x 2 (nearest upsampling by an
    integer is exact), so no day goes through odc-stac's warping reader; each 10 m pixel equals the
    truth of the 20 m pixel it lies in (the demo's 10 m bands repeat their 20 m ground)."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "resolution=10", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cube: 18 of 18 day(s) to write line up with the grid" in proc.stderr, proc.stderr
    monthly = xr.open_zarr(out / "monthly.zarr", mask_and_scale=False)
    assert float(abs(monthly.x[1] - monthly.x[0])) == 10
    assert_monthly_matches_truth(monthly, truth, nearest=True)


@pytest.mark.parametrize("resolution", [60, 100])
def test_coarse_grids_take_each_value_from_inside_its_output_pixel(demo, truth, tmp_path, resolution):
    """60 m (a 6x shrink of the 10 m bands, 3x of the SCL) and 100 m (10x and 5x): GDAL alone would
    read the 4x or 8x overview, whose pixels straddle the output pixels. The reader picks overviews
    that nest, so each output pixel is the truth of the 20 m pixel at its centre (the pixel nearest
    resampling takes; its mask and its bands from the same 20 m pixel)."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"resolution={resolution}", "stage=cube", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "cube: 18 of 18 day(s) to write line up with the grid" in proc.stderr, proc.stderr
    proc = cli(["catalog=demo", f"resolution={resolution}", "stage=composite", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monthly = xr.open_zarr(out / "monthly.zarr", mask_and_scale=False)
    assert float(abs(monthly.x[1] - monthly.x[0])) == resolution
    # The 20 m pixel nearest resampling takes: the one at the output pixel's centre (odd shrinks of 20 m).
    assert_monthly_matches_truth(monthly, truth, nearest=True)


def test_a_20m_asset_is_read_at_10m_by_repeating_its_pixels(tmp_path):
    """The aligned reader upsamples by an integer factor (a 20 m SCL at 10 m): exact nearest."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, reproject

    from cubemosaic.read import Access, AssetGrid, _read, is_aligned

    rng = np.random.default_rng(0)
    native = rng.integers(1, 12, size=(30, 40), dtype=np.uint16)
    path = tmp_path / "scl.tif"
    transform = from_origin(500000, 5000000, 20, 20)
    profile = dict(driver="GTiff", width=40, height=30, count=1, dtype="uint16", crs="EPSG:32610")
    with rasterio.open(path, "w", transform=transform, **profile) as dst:
        dst.write(native, 1)
    grid = AssetGrid(str(path), "EPSG:32610", tuple(transform)[:6], (30, 40))
    # Starts mid asset pixel (an odd number of 10 m pixels in) and runs past the asset's edge.
    geobox = GeoBox.from_bbox((500130, 4999550, 500850, 4999930), "EPSG:32610", resolution=10)
    assert is_aligned(grid, geobox)
    shifted = GeoBox(geobox.shape, Affine(10, 0, 500135, 0, -10, 4999930), "EPSG:32610")  # half a 10 m pixel off
    assert not is_aligned(grid, shifted)
    got = _read(grid, geobox, Access())
    want = np.zeros(geobox.shape, dtype=np.uint16)
    reproject(
        native,
        want,
        src_transform=transform,
        src_crs="EPSG:32610",
        dst_transform=geobox.transform,
        dst_crs="EPSG:32610",
        resampling=Resampling.nearest,
        dst_nodata=0,
    )
    np.testing.assert_array_equal(got, want)
    assert (got[:, -1] == 0).all() and got[0, 0] == native[3, 6]
