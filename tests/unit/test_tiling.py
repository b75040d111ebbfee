"""cubemosaic.tiling: the fixed tile grid (ids, grid:code) and the layout of scenes over it."""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging

import pytest
from odc.geo.geobox import GeoBox
from odc.geo.geom import box

from cubemosaic.scenes import AssetGrid, Scene
from cubemosaic.tiling import GridExtents, Tile, TileGrid, footprint, layout, tile_id

CRS = "EPSG:32606"
#: 300 x 200 pixels at 20 m, on the 2 km edges of a 100-pixel tile grid: columns x200-x202, rows y3395-y3396.
AREA = GeoBox.from_bbox((400000, 6790000, 406000, 6794000), crs=CRS, resolution=20)


def _scene(name: str, x0: float, x1: float, *, with_footprint: bool = True) -> Scene:
    """A scene whose one asset's grid is x0..x1 (metres, 20 m pixels) over the whole AREA's rows."""
    grid = GeoBox.from_bbox((x0, 6790000, x1, 6794000), crs=CRS, resolution=20)
    asset = AssetGrid(f"{name}.tif", CRS, tuple(grid.transform)[:6], tuple(grid.shape), name, "B04")
    fp = grid.extent.to_crs("EPSG:4326").json if with_footprint else None
    return Scene(name, dt.datetime(2022, 1, 1, tzinfo=dt.timezone.utc), dt.date(2022, 1, 1), CRS,
                 "Sentinel-2A", "04.00", {"B04": asset}, {"B04": 1000}, fp)  # fmt: skip


def test_a_tile_is_named_by_its_column_and_row_on_a_named_grid():
    grid = TileGrid(CRS, 20.0, 100)
    assert grid.name == "EPSG32606-20m100px" and TileGrid("EPSG:32610", 10, 4096).name == "EPSG32610-10m4096px"
    assert grid.code((200, 3395)) == "EPSG32606-20m100px-x200y3395"
    assert tile_id((-2, 7)) == "x-2y7"
    bounds = grid.geobox((200, 3395)).boundingbox
    assert tuple(bounds) == (400000.0, 6790000.0, 402000.0, 6792000.0), "2 km squares from the CRS's origin"
    assert grid.record() == {"crs": CRS, "resolution": 20.0, "size": 100}
    assert TileGrid(**grid.record()) == grid


def test_an_area_that_fits_one_tile_is_not_cut():
    assert layout(AREA, [_scene("a", 400000, 406000)], size=300) is None


def test_the_layout_cuts_tiles_to_the_scenes_grids_rows_from_the_north():
    west, east = _scene("west", 400000, 403000), _scene("east", 404400, 406000)
    tiles = layout(AREA, [west, east], size=100)
    assert [t.id for t in tiles] == ["x200y3396", "x201y3396", "x202y3396", "x200y3395", "x201y3395", "x202y3395"]
    by_id = {t.id: t for t in tiles}
    assert [s.id for s in by_id["x200y3395"].scenes] == ["west"]
    assert [s.id for s in by_id["x202y3396"].scenes] == ["east"]
    assert tuple(by_id["x200y3395"].geobox.shape) == (100, 100)
    assert tuple(by_id["x201y3395"].geobox.shape) == (100, 50), "cut at the west scene's grid (403 km)"
    assert by_id["x202y3395"].geobox.boundingbox.left == 404400 and by_id["x202y3395"].geobox.shape[1] == 80
    record = by_id["x201y3396"].record()
    assert record["id"] == "x201y3396" and record["index"] == [201, 3396] and record["shape"] == [100, 50]
    assert record["transform"] == [20.0, 0.0, 402000.0, 0.0, -20.0, 6794000.0]


def test_the_layout_leaves_out_tiles_no_scene_meets_and_those_outside_the_aoi():
    tiles = layout(AREA, [_scene("west", 400000, 403000)], size=100)
    assert sorted(t.id for t in tiles) == ["x200y3395", "x200y3396", "x201y3395", "x201y3396"]
    aoi = box(400100, 6792100, 401900, 6793900, CRS).to_crs("EPSG:4326")
    (tile,) = layout(AREA, [_scene("west", 400000, 403000)], size=100, aoi=aoi)
    assert isinstance(tile, Tile) and tile.id == "x200y3396"


def test_a_scene_without_a_footprint_or_a_grid_meets_every_tile():
    west = _scene("west", 400000, 403000)
    nowhere = Scene("nowhere", west.datetime, west.day, CRS, "", "", {"B04": AssetGrid("n.tif", None, None, None)}, {})
    tiles = layout(AREA, [west, nowhere], size=100)
    assert len(tiles) == 6 and all("nowhere" in [s.id for s in t.scenes] for t in tiles)


def _geometry(scene: Scene, x0: float, x1: float) -> Scene:
    """``scene`` with its STAC geometry moved to x0..x1 (metres, over the whole AREA's rows)."""
    fp = GeoBox.from_bbox((x0, 6790000, x1, 6794000), crs=CRS, resolution=20).extent.to_crs("EPSG:4326").json
    return dataclasses.replace(scene, footprint=fp)


def test_a_scene_reaches_the_tiles_its_grid_reaches_where_its_geometry_does_not():
    """A geometry that understates the scene's pixels (here: its westmost 400 m of 3 km) does not
    take the scene from the tiles its grid reaches: an untiled run would read it there too."""
    tiles = layout(AREA, [_geometry(_scene("west", 400000, 403000), 400000, 400400)], size=100)
    assert sorted(t.id for t in tiles) == ["x200y3395", "x200y3396", "x201y3395", "x201y3396"]
    assert all([s.id for s in t.scenes] == ["west"] for t in tiles)


def test_tiles_are_cut_to_a_geometry_that_strays_beyond_its_scenes_grid(caplog):
    """``proj:`` fields that understate the pixels (a grid of 1 km where the geometry has 3 km):
    the tiles are cut to the geometry too, and the log names the item; a geometry inside its grid
    (an honest item, a swath-edge wedge) leaves the tiles cut to the grid."""
    short = _geometry(_scene("short", 400000, 401000), 400000, 403000)
    with caplog.at_level(logging.WARNING, logger="cubemosaic"):
        tiles = layout(AREA, [short], size=100)
    assert sorted(t.id for t in tiles) == ["x200y3395", "x200y3396", "x201y3395", "x201y3396"]
    assert max(t.geobox.boundingbox.right for t in tiles) == 403000
    said = [r.getMessage() for r in caplog.records]
    assert said == [
        "plan: the geometry or bbox of 1 item(s) reaches beyond its proj: fields' grid (first: short); their tiles "
        "are cut to both"
    ]
    caplog.clear()
    wedge = _geometry(_scene("wedge", 400000, 403000), 400000, 401000)
    with caplog.at_level(logging.WARNING, logger="cubemosaic"):
        tiles = layout(AREA, [wedge], size=100)
    assert max(t.geobox.boundingbox.right for t in tiles) == 403000 and not caplog.records


def test_a_footprint_is_the_items_geometry_else_an_assets_bbox():
    scene = _scene("west", 400000, 403000)
    assert footprint(scene).crs == "EPSG:4326"
    bare = Scene(
        "b",
        scene.datetime,
        scene.day,
        CRS,
        "",
        "",
        {"B04": AssetGrid("b.tif", None, None, None, bbox=(1, 2, 3, 4))},
        {},
    )
    assert tuple(footprint(bare).boundingbox) == (1, 2, 3, 4)
    assert footprint(Scene("c", scene.datetime, scene.day, CRS, "", "", {}, {})) is None


def test_grid_extents_project_each_grid_once():
    extents = GridExtents(CRS)
    a, b = _scene("a", 400000, 403000), _scene("b", 400000, 403000)
    first = extents.of(a, None)
    assert first.bounds == pytest.approx((400000, 6790000, 403000, 6794000))
    assert extents.of(b, None) is first and len(extents.cache) == 1
    bare = Scene("c", a.datetime, a.day, CRS, "", "", {"B04": AssetGrid("c.tif", None, None, None)}, {})
    assert extents.of(bare, "fallback") == "fallback"


def test_an_items_bbox_reaches_the_tiles_its_grid_and_geometry_understate(caplog):
    """Grid and geometry both 400 m where the item's bbox (and the file) has 3 km: an untiled run
    reads the scene wherever its bbox reaches, so the tiles are given and cut to it too, logged; an
    honest bbox (the envelope of a geometry inside the grid) changes nothing."""
    honest = _scene("honest", 400000, 403000)
    wide = GeoBox.from_bbox((400000, 6790000, 403000, 6794000), crs=CRS, resolution=20).extent.to_crs("EPSG:4326")
    lying = _geometry(_scene("lying", 400000, 400400), 400000, 400400)
    asset = dataclasses.replace(lying.assets["B04"], bbox=tuple(wide.boundingbox))
    lying = dataclasses.replace(lying, assets={"B04": asset})
    with caplog.at_level(logging.WARNING, logger="cubemosaic"):
        tiles = layout(AREA, [lying], size=100)
    assert sorted(t.id for t in tiles) == ["x200y3395", "x200y3396", "x201y3395", "x201y3396"]
    assert max(t.geobox.boundingbox.right for t in tiles) >= 403000
    assert len(caplog.records) == 1 and "(first: lying)" in caplog.records[0].getMessage()
    caplog.clear()
    bbox = tuple(footprint(honest).boundingbox)
    honest = dataclasses.replace(honest, assets={"B04": dataclasses.replace(honest.assets["B04"], bbox=bbox)})
    with caplog.at_level(logging.WARNING, logger="cubemosaic"):
        tiles = layout(AREA, [honest], size=100)
    assert max(t.geobox.boundingbox.right for t in tiles) == 403000 and not caplog.records
