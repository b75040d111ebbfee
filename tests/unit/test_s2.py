"""cubemosaic.s2: the Sentinel-2 rules (processing-baseline offsets, the SCL cloud mask and its dilation)."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import numpy as np
import pystac
import pytest

from cubemosaic.cube import group_by_solar_day
from cubemosaic.s2 import CloudMask, item_offset, solar_day

DATA = Path(__file__).parents[1] / "data"
LAYOUT = DATA / "cdse-layout-S2B_MSIL2A_20240805T101559_N0511_R065_T32TPT.json"


def test_the_processing_version_decides_the_offset_where_no_asset_states_one():
    doc = json.loads(LAYOUT.read_text())
    for asset in doc["assets"].values():
        asset.pop("raster:offset", None)
    doc["properties"]["datetime"] = "2021-06-01T10:00:00Z"  # before the 2022 baseline change...
    assert item_offset(pystac.Item.from_dict(doc), "B04_10m") == 1000  # ...but reprocessed: 05.11
    doc["properties"]["processing:version"] = "03.01"
    assert item_offset(pystac.Item.from_dict(doc), "B04_10m") == 0


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


def test_only_masked_classes_grow():
    scl = np.full((5, 5), 4, dtype=np.uint16)
    scl[2, 2] = 10  # thin cirrus, not masked here
    assert not CloudMask(classes=(0, 8, 9), dilation_m=100).masked(scl, 20.0).any()


def test_the_offset_the_item_states_wins_over_the_date():
    """Scale and offset as STAC 1.0 raster:bands, STAC 1.1 bands or asset fields decide the offset."""
    import datetime as dt

    import pystac

    from cubemosaic.s2 import item_offset

    def item(**asset_fields) -> pystac.Item:
        it = pystac.Item("x", None, None, dt.datetime(2021, 6, 1, tzinfo=dt.timezone.utc), {})
        it.add_asset("B04", pystac.Asset("b.tif", extra_fields=asset_fields))
        return it

    assert item_offset(item(), "B04") == 0  # before 2022-01-25, nothing stated
    assert item_offset(item(**{"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}), "B04") == 1000
    assert item_offset(item(bands=[{"name": "B04", "raster:scale": 0.0001, "raster:offset": -0.1}]), "B04") == 1000
    assert item_offset(item(**{"raster:scale": 0.0001, "raster:offset": -0.1}), "B04") == 1000
    assert item_offset(item(**{"raster:bands": [{"scale": 0.0001, "offset": 0.0}]}), "B04") == 0


def _item(when: str, lon: float = -122.3, **props) -> pystac.Item:
    return pystac.Item(
        id=f"s-{when}-{lon}",
        geometry=None,
        bbox=[lon - 0.5, 47, lon + 0.5, 48],
        datetime=dt.datetime.fromisoformat(when),
        properties=dict(props),
    )


@pytest.mark.parametrize(
    ("props", "when", "offset"),
    [
        ({"s2:processing_baseline": "03.01"}, "2022-01-20T19:00:00+00:00", 0),
        ({"s2:processing_baseline": "04.00"}, "2022-01-27T19:00:00+00:00", 1000),
        ({"s2:processing_baseline": "05.09"}, "2023-06-01T19:00:00+00:00", 1000),
        ({}, "2022-01-24T19:00:00+00:00", 0),  # no statement: by date
        ({}, "2022-01-25T19:00:00+00:00", 1000),
        ({"earthsearch:boa_offset_applied": True}, "2022-03-01T19:00:00+00:00", 1000),
        ({"earthsearch:boa_offset_applied": False}, "2022-03-01T19:00:00+00:00", 0),
    ],
)
def test_item_offset(props, when, offset):
    assert item_offset(_item(when, **props)) == offset


def test_raster_bands_offset_wins():
    item = _item("2022-03-01T19:00:00+00:00", **{"s2:processing_baseline": "04.00"})
    item.add_asset("red", pystac.Asset("r.tif", extra_fields={"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}))
    item.add_asset("nir", pystac.Asset("n.tif", extra_fields={"raster:bands": [{"scale": 0.0001, "offset": 0}]}))
    assert item_offset(item, "red") == 1000
    assert item_offset(item, "nir") == 0


def test_solar_day_groups_adjacent_tiles_and_splits_at_local_midnight():
    # 23:30 UTC at lon 150 E is the next local morning; at lon 120 W still the same day.
    assert solar_day(_item("2022-03-01T23:30:00+00:00", lon=150)) == dt.date(2022, 3, 2)
    assert solar_day(_item("2022-03-01T19:10:00+00:00", lon=-122)) == dt.date(2022, 3, 1)
    days = group_by_solar_day(
        [
            _item("2022-03-01T19:10:05+00:00", lon=-122.9),
            _item("2022-03-01T19:10:00+00:00"),
            _item("2022-03-06T19:10:00+00:00"),
        ]
    )
    assert [len(d.items) for d in days] == [2, 1]
    assert days[0].items[0].datetime < days[0].items[1].datetime


@pytest.mark.parametrize(
    ("props", "when", "refused"),
    [
        ({"s2:processing_baseline": "03.01"}, "2022-02-03T19:00:00+00:00", True),
        ({"processing:version": "02.14"}, "2023-06-01T19:00:00+00:00", True),
        ({"s2:processing_baseline": "03.01"}, "2022-01-25T19:00:00+00:00", False),  # the change's day
        ({"s2:processing_baseline": "03.01"}, "2022-01-20T19:00:00+00:00", False),
        ({"s2:processing_baseline": "05.00"}, "2019-06-01T19:00:00+00:00", False),  # reprocessed
        ({"s2:processing_baseline": "04.00"}, "2022-02-03T19:00:00+00:00", False),
        ({}, "2022-02-03T19:00:00+00:00", False),  # nothing stated: by date
        (
            {"s2:processing_baseline": "03.01", "earthsearch:boa_offset_applied": False},
            "2022-02-03T19:00:00+00:00",
            False,
        ),
    ],
)
def test_a_baseline_older_than_the_acquisition_is_a_contradiction(props, when, refused):
    from cubemosaic.s2 import offset_contradiction

    said = offset_contradiction(_item(when, **props))
    assert bool(said) == refused, said
    if refused:
        assert "older than 04.00" in said and when[:10] in said
