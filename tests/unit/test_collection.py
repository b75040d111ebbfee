"""cubemosaic.collection: a month's VRT over two tiny GeoTIFF tiles, read back with rasterio."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio
from rasterio.transform import from_origin

from cubemosaic.collection import write_vrt
from cubemosaic.export import COLLECTION_ID, listed_months, listed_tiles

NODATA = 0


def _tile(path, left: float, top: float, value: int, *, width=4, height=3):
    profile = dict(driver="GTiff", width=width, height=height, count=2, dtype="uint16", crs="EPSG:32606",
                   transform=from_origin(left, top, 20, 20), nodata=NODATA)  # fmt: skip
    with rasterio.open(path, "w", **profile) as ds:
        ds.write(np.full((2, height, width), value, "uint16"))
        ds.descriptions = ("red", "nir")
        ds.scales, ds.offsets = (0.0001, 0.0001), (-0.1, -0.1)
    return path


@pytest.fixture
def tiles(tmp_path):
    (tmp_path / "x0y0").mkdir()
    (tmp_path / "x1y0").mkdir()
    west = _tile(tmp_path / "x0y0" / "m.tif", 400000, 6794000, 11)
    east = _tile(tmp_path / "x1y0" / "m.tif", 400080, 6794000, 22)  # 4 px x 20 m further east
    return west, east


def test_a_vrt_mosaics_tiles_side_by_side(tmp_path, tiles):
    vrt = write_vrt(tmp_path / "month.vrt", tiles)
    with rasterio.open(vrt) as ds:
        assert (ds.width, ds.height, ds.count) == (8, 3, 2) and ds.crs == "EPSG:32606"
        assert tuple(ds.transform)[:6] == (20.0, 0.0, 400000.0, 0.0, -20.0, 6794000.0)
        data = ds.read()
        assert ds.descriptions == ("red", "nir") and ds.nodata == NODATA
        assert ds.scales == (0.0001, 0.0001) and ds.offsets == (-0.1, -0.1)
    assert (data[:, :, :4] == 11).all() and (data[:, :, 4:] == 22).all()
    text = vrt.read_text()
    assert 'relativeToVRT="1">x0y0/m.tif<' in text, "sources relative to the VRT: the folder can move"
    assert not list(tmp_path.glob(".*.partial")), "written whole, then moved into place"


def test_a_vrt_over_given_bounds_keeps_every_months_grid(tmp_path, tiles):
    west, _ = tiles
    vrt = write_vrt(tmp_path / "month.vrt", [west], bounds=(400000, 6793940, 400160, 6794000))
    with rasterio.open(vrt) as ds:
        assert (ds.width, ds.height) == (8, 3)
        data = ds.read(1)
    assert (data[:, :4] == 11).all() and (data[:, 4:] == NODATA).all(), "a missing tile reads as nodata"


def test_the_tiles_and_months_a_collection_lists_are_its_items_folders(tmp_path):
    links = [
        {"rel": "item", "href": "./x0y0/monthly-mosaic-2022-01/monthly-mosaic-2022-01.json"},
        {"rel": "item", "href": "x1y0/monthly-mosaic-2022-02/monthly-mosaic-2022-02.json"},
        {"rel": "child", "href": "./x2y0/monthly-mosaic-2022-01/monthly-mosaic-2022-01.json"},
        {"rel": "item", "href": "./monthly-mosaic-2022-01/monthly-mosaic-2022-01.json"},
    ]
    doc = {"type": "Collection", "id": COLLECTION_ID, "links": links}
    (tmp_path / "collection.json").write_text(json.dumps(doc))
    assert listed_tiles(tmp_path) == {"x0y0", "x1y0"}
    assert listed_months(tmp_path) == {tmp_path / "monthly-mosaic-2022-01"}, "an untiled run's month"
    absolute = [{"rel": "item", "href": str(tmp_path / "monthly-mosaic-2022-03" / "monthly-mosaic-2022-03.json")},
                {"rel": "item", "href": "../monthly-mosaic-2022-04/monthly-mosaic-2022-04.json"}]  # fmt: skip
    (tmp_path / "collection.json").write_text(json.dumps({**doc, "links": links + absolute}))
    assert listed_months(tmp_path) == {tmp_path / "monthly-mosaic-2022-01", tmp_path / "monthly-mosaic-2022-03"}, (
        "an absolute href below output_dir counts; one outside it does not"
    )
    (tmp_path / "collection.json").write_text(json.dumps(doc))
    assert listed_tiles(tmp_path / "nowhere") == set()
    (tmp_path / "collection.json").write_text(json.dumps({**doc, "id": "someone-elses"}))
    assert listed_tiles(tmp_path) == set(), "a collection not of ours lists no tile of ours"
    assert listed_months(tmp_path) == set()


def test_a_collection_summarizes_every_tile_and_month_however_many(tmp_path):
    """pystac leaves out of the saved dict any summary list of 25 values or more (its default
    maxcount): 30 tiles over 30 months must all be there."""
    import datetime as dt

    import pystac

    from cubemosaic.export import build_collection
    from cubemosaic.statistics import Composite

    items = []
    for i in range(30):
        year, month = 2020 + i // 12, 1 + i % 12
        start = dt.datetime(year, month, 1, tzinfo=dt.timezone.utc)
        item = pystac.Item(
            id=f"monthly-mosaic-{year}-{month:02d}-x{i}y0",
            geometry={"type": "Polygon", "coordinates": [[[0, 0], [1, 0], [1, 1], [0, 1], [0, 0]]]},
            bbox=[0, 0, 1, 1],
            datetime=None,
            start_datetime=start,
            end_datetime=start + dt.timedelta(days=27),
            properties={"grid:code": f"CUBEMOSAIC-x{i}y0", "proj:code": "EPSG:32610"},
        )
        items.append(item)
    collection = build_collection(items, Composite(("red",)).layers(), description="test")
    summaries = collection.to_dict(include_self_link=False)["summaries"]
    assert len(summaries["grid:code"]) == 30
    assert len(summaries["cubemosaic:months"]) == 30
    assert summaries["proj:code"] == ["EPSG:32610"]
