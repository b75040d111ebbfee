"""The offline STAC validator of tests/stac_schemas.py: a good item passes, bad ones fail, and a
schema not bundled is a failure, never a download."""

from __future__ import annotations

import copy

import pytest

from stac_schemas import assert_valid, schema_errors

EXT = "https://stac-extensions.github.io"
ITEM = {
    "type": "Feature",
    "stac_version": "1.1.0",
    "stac_extensions": [f"{EXT}/projection/v2.0.0/schema.json", f"{EXT}/raster/v1.1.0/schema.json"],
    "id": "monthly-mosaic-2022-01",
    "geometry": {"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
    "bbox": [0, 0, 1, 1],
    "properties": {
        "datetime": None,
        "start_datetime": "2022-01-01T00:00:00Z",
        "end_datetime": "2022-01-31T23:59:59Z",
        "proj:code": "EPSG:32610",
        "proj:shape": [225, 228],
    },
    "links": [],
    "assets": {"mosaic": {"href": "./m.tif", "raster:bands": [{"data_type": "uint16", "nodata": 0, "scale": 0.0001}]}},
}


def test_a_good_item_passes():
    assert schema_errors(ITEM) == []


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda d: d.pop("geometry"), "'geometry' is a required property"),  # STAC core
        (lambda d: d["properties"].update(datetime="yesterday"), "datetime"),  # core: a date-time or null
        (lambda d: d["properties"].pop("start_datetime"), "datetime"),  # core: null datetime needs the range
        (lambda d: d["properties"].update({"proj:shape": "225x228"}), "not of type 'array'"),  # projection
        (lambda d: d["assets"]["mosaic"]["raster:bands"][0].update(data_type="u16"), "is not one of"),  # raster
        (lambda d: d["stac_extensions"].append(f"{EXT}/sat/v1.0.0/schema.json"), "not in"),  # not bundled
    ],
    ids=["no-geometry", "bad-datetime", "no-range", "bad-proj-shape", "bad-raster-type", "unbundled-schema"],
)
def test_a_bad_item_fails(change, expected):
    doc = copy.deepcopy(ITEM)
    change(doc)
    errors = schema_errors(doc)
    assert errors and any(expected in e for e in errors), errors
    with pytest.raises(AssertionError, match="is not valid STAC"):
        assert_valid(doc)


def test_a_collection_without_its_extent_fails():
    collection = {
        "type": "Collection", "stac_version": "1.1.0", "id": "cubemosaic", "description": "d",
        "license": "other", "links": [],
    }  # fmt: skip
    assert any("'extent' is a required property" in e for e in schema_errors(collection))
