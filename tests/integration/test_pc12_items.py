"""benchmarks/pc12.py: Planetary Computer issue #12's items on the real Sentinel-2 tiling grid.

Tile corners and names are checked against the real ones: the Planetary Computer item of
06VVN in shared/reference-items, and corners of ESA's tiling grid (its KML projected to each
tile's UTM zone, rounded to the metre); MGRS letters against published MGRS coordinates.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pystac
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

import pc12  # noqa: E402

#: Upper-left corners of real tiles (ESA's tiling grid).
REAL_CORNERS = {
    "06VVN": (32606, 399960, 6800040),
    "10TES": (32610, 499980, 5200020),
    "31UDQ": (32631, 399960, 5500020),
    "32TLT": (32632, 300000, 5300040),
    "32TMQ": (32632, 399960, 5000040),
}

#: ESA's tiles meeting the default area (2.05..9.95 E, 45.2..48.8 N).
REAL_AREA_TILES = (
    "31TDL 31TDM 31TDN 31TEL 31TEM 31TEN 31TFL 31TFM 31TFN 31TGL 31TGM 31TGN 31UDP 31UDQ 31UEP "
    "31UEQ 31UFP 31UFQ 31UGP 31UGQ 32TLR 32TLS 32TLT 32TMR 32TMS 32TMT 32TNR 32TNS 32TNT 32ULU "
    "32ULV 32UMU 32UMV 32UNU 32UNV"
).split()


def _reference() -> dict:
    return pc12._reference()  # the recorded real item in tests/data


@pytest.mark.parametrize("name", sorted(REAL_CORNERS))
def test_tile_corners_are_the_real_ones(name):
    epsg, x0, y0 = REAL_CORNERS[name]
    tile = pc12.mgrs_tile(name)
    assert (tile.epsg, tile.x0, tile.y0) == (epsg, x0, y0)
    assert tile.utm_bbox == (x0, y0 - 109_800, x0 + 109_800, y0)


@pytest.mark.parametrize(
    ("lon", "lat", "zone", "letters", "easting", "northing"),
    [
        (7.5, 47.5, 32, "LT", 387_030, 5_261_820),  # 32TLT 87030 61820
        (8.0, 45.0, 32, "MQ", 421_184, 4_983_436),  # 32TMQ 21184 83436
    ],
)
def test_mgrs_letters_of_published_coordinates(lon, lat, zone, letters, easting, northing):
    x, y = pc12._to_utm(pc12.epsg_of(zone)).transform(lon, lat)
    assert abs(x - easting) < 1.5 and abs(y - northing) < 1.5
    assert pc12.square_letters(zone, x, y) == letters
    assert pc12.band_letter(lat) == "T"


def test_paris_is_in_31UDQ():
    names = [t.name for t in pc12.tiles((2.34, 48.85, 2.36, 48.87))]
    assert "31UDQ" in names


def test_the_default_area_has_esa_tiles():
    assert [t.name for t in pc12.tiles(pc12.AREA)] == sorted(REAL_AREA_TILES)


def test_06VVN_as_planetary_computer_gives_it(tmp_path):
    ref = _reference()
    path = pc12.write_items(
        tmp_path / "items.json", area=(-148.0, 60.6, -147.6, 61.0), start="2019-06-29", end="2019-06-29"
    )
    items = pystac.ItemCollection.from_file(str(path))
    assert [it.id for it in items if it.id.startswith("S2B_MSIL2A_20190629T212529_R043_T06VVN_")]
    feats = json.loads(path.read_text())["features"]
    ours = [f for f in feats if f["id"].startswith("S2B_MSIL2A_20190629T212529_R043_T06VVN_")]
    assert len(ours) == 1
    item = ours[0]
    assert item["properties"]["datetime"] == ref["properties"]["datetime"]
    assert item["properties"]["s2:datatake_id"] == ref["properties"]["s2:datatake_id"]
    assert item["properties"]["proj:epsg"] == ref["properties"]["proj:epsg"]
    assert set(item["properties"]) == set(ref["properties"])
    assert set(item["assets"]) == set(ref["assets"])
    for key, asset in ref["assets"].items():
        for field in ("proj:bbox", "proj:shape", "proj:transform", "gsd", "roles", "type"):
            assert item["assets"][key].get(field) == asset.get(field), (key, field)
    # Wholly inside the swath: the whole tile, as the reference's footprint (to ~1 m).
    assert item["bbox"] == pytest.approx(ref["bbox"], abs=2e-4)


def test_a_small_area_over_two_months(tmp_path):
    area = (5.5, 46.5, 7.5, 47.4)  # ~150 x 100 km across the UTM 31/32 boundary
    path = pc12.write_items(tmp_path / "small.json", area=area)
    doc = json.loads(path.read_text())
    feats = doc["features"]
    tiles = {f["properties"]["s2:mgrs_tile"] for f in feats}
    assert {"31TGM", "32TLT", "32TLS"} <= tiles
    assert {f["properties"]["platform"] for f in feats} == {"Sentinel-2A", "Sentinel-2B"}
    # Edge tiles have no-data wedges; one datatake, one sensing time.
    assert any(0 < f["properties"]["s2:nodata_pixel_percentage"] < 100 for f in feats)
    by_take: dict[tuple, set] = {}
    for f in feats:
        p = f["properties"]
        by_take.setdefault((p["platform"], p["s2:datatake_id"]), set()).add(p["datetime"])
    assert all(len(times) == 1 for times in by_take.values())
    assert all(f["properties"]["s2:processing_baseline"].startswith("02.") for f in feats)
    items = pystac.ItemCollection.from_file(str(path))
    assert len(items) == len(feats)
