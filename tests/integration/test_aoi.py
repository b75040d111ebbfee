"""A polygon AOI: GeoJSON files and WKT read and checked in one line; nodata outside, the truth inside."""

from __future__ import annotations

import json

import pytest
import rasterio
import xarray as xr

from cubemosaic.store import open_dn

#: A triangle inside the demo's area (lon, lat).
TRIANGLE = [[-122.32, 47.54], [-122.27, 47.545], [-122.30, 47.57], [-122.32, 47.54]]


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_bad_geometry_stops_the_cli_before_any_search(tmp_path):
    from conftest import cli

    bowtie = _write(
        tmp_path / "bowtie.geojson", {"type": "Polygon", "coordinates": [[[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]]]}
    )
    proc = cli(["catalog=demo", f"aoi={bowtie}", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        f"cubemosaic: error: aoi: {bowtie} is not a valid polygon (Self-intersection[0.5 0.5])"
    ], proc.stderr
    assert "search" not in proc.stderr


@pytest.mark.parametrize("reader", ["aligned", "warped"])
def test_a_triangle_aoi_is_nodata_outside_and_the_truth_inside(demo, truth, tmp_path, reader):
    """The grid covers the triangle's bounds; pixels whose centre is outside it are nodata in the
    cube, the monthly store and the COGs (count 0), the others are the truth; the STAC items carry
    the triangle as their footprint. Both readers (grids that line up, and odc-loader's warping
    load, taken here by mode resampling) apply the same polygon."""
    import shapely
    from odc.geo.geom import Geometry
    from odc.geo.xr import rasterize

    from conftest import BANDS, assert_monthly_matches_truth, cli

    area = _write(tmp_path / "triangle.geojson", {"type": "Polygon", "coordinates": [TRIANGLE]})
    out = tmp_path / "out"
    extra = ["resampling=mode"] if reader == "warped" else []
    proc = cli(["catalog=demo", f"aoi={area}", f"output_dir={out}", *extra], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monthly = open_dn(out / "monthly.zarr")
    inside = rasterize(Geometry(shapely.Polygon(TRIANGLE), "EPSG:4326"), monthly.odc.geobox).values
    assert 0.3 < inside.mean() < 0.7
    cube = open_dn(out / "cube.zarr")
    assert (cube["red"].values[:, ~inside] == 0).all()
    for name in [*BANDS, "count"]:
        assert (monthly[name].values[:, ~inside] == 0).all(), name
    # Inside: the truth, where the triangle lets the truth's own mask through.
    t = truth.sel(x=monthly.x.values, y=monthly.y.values)
    masked_truth = t.where(xr.DataArray(inside, dims=("y", "x")))
    masked_truth["count"] = t["count"].where(xr.DataArray(inside, dims=("y", "x")), 0)
    assert_monthly_matches_truth(monthly, masked_truth, min_clear=0.3)
    item = json.loads((out / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.json").read_text())
    assert shapely.geometry.shape(item["geometry"]).equals(shapely.Polygon(TRIANGLE))
    assert item["bbox"] == [-122.32, 47.54, -122.27, 47.57]
    with rasterio.open(out / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.tif") as ds:
        assert (ds.read(1)[~inside] == 0).all()


def test_a_tiled_runs_clear_shares_are_of_the_triangle(demo, truth, tmp_path):
    """Cut into tiles, the same triangle: each month's clear share (the summary's, the month
    quick-look's over every tile) is the share of the triangle's pixels with a clear observation,
    as an untiled run's item says, not the share of the tiles' box around it."""
    import re

    import shapely
    from odc.geo.geobox import GeoBox
    from odc.geo.geom import Geometry
    from odc.geo.xr import rasterize

    from cubemosaic.quicklook import clear_percent

    from conftest import cli

    area = _write(tmp_path / "triangle.geojson", {"type": "Polygon", "coordinates": [TRIANGLE]})
    out = tmp_path / "tiled"
    proc = cli(["catalog=demo", f"aoi={area}", "tile_size=128", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert len({p.parent.parent.name for p in out.glob("x*/monthly-mosaic-*/*.tif")}) > 1, "cut into tiles"
    shares = dict(re.findall(r"summary: monthly-mosaic-(\d{4}-\d\d) clear (\S+%)", proc.stderr))
    assert len(shares) == 4, proc.stderr
    # The triangle on the month VRTs' grid: the tiles' pixels, around the triangle's.
    with rasterio.open(out / f"monthly-mosaic-{min(shares)}-count.vrt") as vrt:
        box = GeoBox((vrt.height, vrt.width), vrt.transform, vrt.crs)
    inside = rasterize(Geometry(shapely.Polygon(TRIANGLE), "EPSG:4326"), box).values
    assert 0.05 < inside.mean() < 0.9, "the tiles' box is larger than the triangle"
    for month, said in shares.items():
        count = truth["count"].sel(time=month).squeeze("time", drop=True)
        count = count.reindex(x=box.coords["x"].values, y=box.coords["y"].values, method="nearest", tolerance=1.0,
                              fill_value=0)  # fmt: skip
        clear = count.values > 0
        assert said == clear_percent(clear[inside].mean()), (month, said, clear[inside].mean(), clear.mean())
