"""cubemosaic.aoi: a polygon AOI from GeoJSON files and WKT, read and checked in one line."""

from __future__ import annotations

import json

import pytest

from cubemosaic.aoi import parse_aoi
from cubemosaic.errors import ConfigError

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
