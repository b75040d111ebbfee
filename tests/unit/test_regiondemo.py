"""cubemosaic.regiondemo: the synthetic region archive and its truth."""

from __future__ import annotations

import rasterio
from shapely.geometry import shape

from cubemosaic.cube import output_geobox

WEST, EAST = 32610, 32611


def test_the_region_is_what_sentinel2_makes_of_an_area(region):
    items = region.items()
    zones = {i["properties"]["proj:epsg"] for i in items}
    assert zones == {WEST, EAST}
    assert {i["properties"]["sat:relative_orbit"] for i in items} == {13, 113}
    assert {i["properties"]["s2:processing_baseline"] for i in items} == {"03.01", "04.00"}
    # Tiles of the two zones cover the same ground, and neighbours of one zone overlap.
    foot = {i["properties"]["s2:mgrs_tile"]: shape(i["geometry"]) for i in items}
    west = [f for t, f in foot.items() if t.startswith("10")]
    east = [f for t, f in foot.items() if t.startswith("11")]
    assert any(w.intersection(e).area > 0.1 * w.area for w in west for e in east)
    assert all(any(a.intersection(b).area > 0.05 * a.area for b in west if b is not a) for a in west)
    # One datatake: every tile of a day has the same sensing time; some days miss tiles (the swath).
    by_day: dict[str, set[str]] = {}
    for i in items:
        by_day.setdefault(i["properties"]["datetime"][:10], set()).add(i["properties"]["datetime"])
    assert all(len(times) == 1 for times in by_day.values())
    assert len({len([i for i in items if i["properties"]["datetime"][:10] == d]) for d in by_day}) > 1
    # Swath-edge wedges (SCL 0 inside a tile), and COGs with 2x and 4x overviews.
    wedges = 0
    for i in items:
        with rasterio.open(i["assets"]["SCL"]["href"]) as ds:
            wedges += bool((ds.read(1) == 0).any())
    assert 0 < wedges < len(items)
    with rasterio.open(items[0]["assets"]["B04"]["href"]) as ds:
        assert ds.overviews(1)[:2] == [2, 4] and ds.res == (10, 10)


def test_the_truth_knows_where_there_is_no_answer(region):
    truth = region.truth(output_geobox(region.aoi(), f"EPSG:{WEST}", 60))
    count = truth["count"].values
    assert (count == 0).any() and (count > 0).mean() > 0.9
    assert truth["interior"].values.mean() > 0.95
