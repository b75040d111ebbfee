"""cubemosaic.scenes: a STAC item parsed as a Scene (the Planetary Computer item in tests/data)."""

from __future__ import annotations

import copy
import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from cubemosaic.scenes import AssetGrid, asset_grid, parse_scene

PC_ITEM = Path(__file__).parents[1] / "data" / "planetary-computer-S2B_MSIL2A_20190629T212529_R043_T06VVN.json"
ITEM_ID = "S2B_MSIL2A_20190629T212529_R043_T06VVN_20201006T080531"


@pytest.fixture(scope="module")
def raw() -> dict:
    return json.loads(PC_ITEM.read_text())


def _item(raw: dict, **props) -> pystac.Item:
    d = copy.deepcopy(raw)
    d["properties"].update(props)
    return pystac.Item.from_dict(d)


def test_a_planetary_computer_item_parses_with_its_grids(raw):
    scene = parse_scene(_item(raw))
    assert scene.id == ITEM_ID and scene.platform == "Sentinel-2B" and scene.baseline == "02.12"
    assert scene.datetime == dt.datetime(2019, 6, 29, 21, 25, 29, 24000, tzinfo=dt.timezone.utc)
    assert scene.crs == "EPSG:32606"
    red, scl = scene.assets["B04"], scene.assets["SCL"]
    assert red.transform == (10.0, 0.0, 399960.0, 0.0, -10.0, 6800040.0) and red.shape == (10980, 10980)
    assert scl.transform == (20.0, 0.0, 399960.0, 0.0, -20.0, 6800040.0) and scl.shape == (5490, 5490)
    assert scene.assets["B01"].shape == (1830, 1830)  # 60 m
    assert red.href.endswith("T06VVN_20190629T212529_B04_10m.tif") and (red.item_id, red.key) == (ITEM_ID, "B04")
    assert red.crs == "EPSG:32606" and not red.jpeg2000
    assert red.bbox == pytest.approx((-148.86876, 60.3363003, -146.81763, 61.3343201))
    assert scene.offsets["B04"] == 0, "baseline 02.12: no BOA offset"
    assert scene.footprint["type"] == "Polygon"


def test_the_day_is_the_local_solar_day_and_the_offset_follows_the_baseline(raw):
    # 05:00 UTC on the 30th is about 19:05 on the 29th at 148.9 W
    scene = parse_scene(_item(raw, datetime="2019-06-30T05:00:00Z", **{"s2:processing_baseline": "04.00"}))
    assert scene.day == dt.date(2019, 6, 29) and scene.datetime.date() == dt.date(2019, 6, 30)
    assert scene.offsets["B04"] == 1000 and scene.baseline == "04.00"
    assert parse_scene(_item(raw)).day == dt.date(2019, 6, 29)


def test_an_asset_without_projection_fields_is_only_its_href(raw):
    d = copy.deepcopy(raw)
    for key in ("proj:transform", "proj:shape"):
        d["assets"]["B04"].pop(key, None)
        d["properties"].pop(key, None)
    d["assets"]["B04"]["href"] = "https://example.org/B04.jp2"
    d["assets"]["B04"]["type"] = "image/jp2"
    grid = asset_grid(pystac.Item.from_dict(d), "B04", "EPSG:32606")
    assert grid.transform is None and grid.shape is None
    assert grid.href == "https://example.org/B04.jp2" and grid.jpeg2000


@pytest.mark.parametrize(
    ("field", "value"),
    [("proj:transform", ["a", "b", "c", "d", "e", "f"]), ("proj:transform", [10.0, 0.0]),
     ("proj:transform", [0.0, 0.0, 399960.0, 0.0, 0.0, 6800040.0]), ("proj:transform", None),
     ("proj:shape", [0, 0]), ("proj:shape", [-5, 10980]), ("proj:shape", ["x", "y"]), ("proj:shape", [10980.5, 3])],
)  # fmt: skip
def test_a_grid_stated_as_no_grid_is_read_as_its_file_says(raw, field, value):
    """proj: fields that cannot be a grid (text, too few numbers, a zero pixel size, an empty
    shape) are as if not stated: the reader takes the file's grid. Text in proj:transform was a
    traceback (ValueError: could not convert string to float)."""
    d = copy.deepcopy(raw)
    d["assets"]["B04"][field] = value
    d["properties"].pop(field, None)
    grid = asset_grid(pystac.Item.from_dict(d), "B04", "EPSG:32606")
    assert grid.transform is None and grid.shape is None
    assert grid.href.endswith("B04_10m.tif")


def test_a_scene_gives_a_day_its_bands_in_order_and_its_scl(raw):
    scene = parse_scene(_item(raw, **{"s2:processing_baseline": "04.00"}))
    source = scene.source(["B08", "B04"], "SCL")
    assert [g.key for g in source.bands] == ["B08", "B04"] and source.scl.key == "SCL"
    assert source.offset == 1000 and source.item_id == ITEM_ID
    assert all(isinstance(g, AssetGrid) for g in source.bands)
