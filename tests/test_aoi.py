"""A polygon AOI: GeoJSON files and WKT read and checked in one line; nodata outside, the truth inside."""

from __future__ import annotations

import json

import pytest
import rasterio
import xarray as xr

from cubemosaic.aoi import parse_aoi
from cubemosaic.errors import ConfigError
from cubemosaic.store import open_dn

#: A triangle inside the demo's area (lon, lat).
TRIANGLE = [[-122.32, 47.54], [-122.27, 47.545], [-122.30, 47.57], [-122.32, 47.54]]


def _write(path, doc) -> str:
    path.write_text(json.dumps(doc))
    return str(path)


def test_a_box_stays_a_box():
    assert parse_aoi([-122.3, 47.5, -122.2, 47.6]).wkt is None
    assert parse_aoi("[-122.3,47.5,-122.2,47.6]").bbox == (-122.3, 47.5, -122.2, 47.6)


@pytest.mark.parametrize(
    "doc",
    [
        {"type": "Polygon", "coordinates": [TRIANGLE]},
        {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [TRIANGLE]}},
        {
            "type": "FeatureCollection",
            "features": [
                {"type": "Feature", "properties": {}, "geometry": {"type": "Polygon", "coordinates": [TRIANGLE]}}
            ],
        },
        {"type": "MultiPolygon", "coordinates": [[TRIANGLE]]},
    ],
    ids=["Polygon", "Feature", "FeatureCollection", "MultiPolygon"],
)
def test_geojson_files_in_every_common_shape(tmp_path, doc):
    import shapely

    aoi = parse_aoi(_write(tmp_path / "area.geojson", doc))
    assert aoi.bbox == (-122.32, 47.54, -122.27, 47.57)
    assert shapely.from_wkt(aoi.wkt).equals(shapely.Polygon(TRIANGLE))


def test_wkt():
    aoi = parse_aoi("POLYGON ((-122.32 47.54, -122.27 47.545, -122.30 47.57, -122.32 47.54))")
    assert aoi.bbox == (-122.32, 47.54, -122.27, 47.57) and aoi.wkt.startswith("POLYGON")


@pytest.mark.parametrize(
    "case, problem",
    [
        ("missing", "cannot read"),
        ("not-json", "is not JSON"),
        ("empty", "has no geometry"),
        ("line", "only Polygon and MultiPolygon are areas"),
        ("bowtie", "is not a valid polygon (Self-intersection"),
        ("utm", "must be in WGS84 (EPSG:4326)"),
        ("crs", "must be in WGS84"),
        ("flat", "is empty (no area)"),
        ("wkt", "cannot read the WKT polygon"),
        ("crs-string", "must be in WGS84"),
        ("geometry-string", "a geometry must be a GeoJSON object"),
        ("features-numbers", "'features' must be a list of GeoJSON Features"),
    ],
)
def test_bad_geometry_is_one_line_naming_aoi(tmp_path, case, problem):
    def poly(ring, name, **extra):
        return _write(tmp_path / f"{name}.geojson", {"type": "Polygon", "coordinates": [ring], **extra})

    value = {
        "missing": str(tmp_path / "nowhere.geojson"),
        "not-json": str((tmp_path / "x.geojson").write_text("{oops") and tmp_path / "x.geojson"),
        "empty": _write(tmp_path / "e.geojson", {"type": "FeatureCollection", "features": []}),
        "line": _write(tmp_path / "l.geojson", {"type": "LineString", "coordinates": TRIANGLE[:2]}),
        "bowtie": poly([[0, 0], [1, 1], [1, 0], [0, 1], [0, 0]], "bowtie"),
        "utm": poly([[550000, 5270000], [556000, 5270000], [556000, 5264000], [550000, 5270000]], "utm"),
        "crs": poly(TRIANGLE, "crs", crs={"type": "name", "properties": {"name": "urn:ogc:def:crs:EPSG::32610"}}),
        "flat": _write(tmp_path / "flat.geojson", {"type": "Polygon", "coordinates": []}),
        "wkt": "POLYGON ((1 2, 3",
        "crs-string": poly(TRIANGLE, "crs-string", crs="EPSG:32610"),
        "geometry-string": _write(tmp_path / "g.geojson", {"type": "Feature", "properties": {}, "geometry": "x"}),
        "features-numbers": _write(tmp_path / "f.geojson", {"type": "FeatureCollection", "features": [1]}),
    }[case]
    with pytest.raises(ConfigError) as e:
        parse_aoi(value)
    line = str(e.value)
    assert line.startswith("aoi: ") and problem in line and "\n" not in line, line


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
