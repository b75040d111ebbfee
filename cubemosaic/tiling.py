"""Tiles as work units: an area larger than one unit is cut on a fixed grid anchored to its CRS.

The grid is odc-geo's :class:`~odc.geo.gridspec.GridSpec` (the output CRS, the resolution and a
square tile of ``tile_size`` pixels, origin at the CRS's origin), as odc-stats cuts its products:
a tile id names the same pixels in every run, whatever the AOI. Pixel edges lie on multiples of the
resolution, as for an untiled grid (:func:`cubemosaic.cube.output_geobox`), so the tiles of an area
and its untiled grid share every pixel.

Each tile keeps the scenes whose footprints (their STAC ``geometry``) meet it, so it reads only
those, on only their solar days, and is cut down to the AOI's grid and those scenes' own grids
(their ``proj:`` squares, the MGRS tiles: stable from one date to the next, where a footprint is
not). A tile no scene meets is not a work unit at all, so the cost follows the data, not the AOI's
bounding box: an AOI 100 times larger than the data it covers costs what the data does.

An area whose grid fits one tile (``tile_size`` pixels on each side) is one unit: today's untiled
outputs (:func:`layout` returns ``None``).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import shapely
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from odc.geo.gridspec import GridSpec

from .scenes import Scene

__all__ = ["GridExtents", "Tile", "TileGrid", "footprint", "layout"]

log = logging.getLogger(__name__)

#: The STAC grid extension: ``grid:code`` names a tile of a grid.
GRID_EXTENSION = "https://stac-extensions.github.io/grid/v1.1.0/schema.json"


@dataclass(frozen=True)
class TileGrid:
    """The fixed grid the tiles are cut on: the output CRS, the resolution, ``size`` pixels a side."""

    crs: str
    resolution: float
    size: int

    @property
    def spec(self) -> GridSpec:
        return GridSpec(self.crs, tile_shape=(self.size, self.size), resolution=self.resolution)

    def geobox(self, index: tuple[int, int]) -> GeoBox:
        """The whole tile at ``index`` (before it is cut to the AOI and the data)."""
        return self.spec.tile_geobox(index)

    @property
    def name(self) -> str:
        """The grid's part of a ``grid:code``: its CRS, resolution and tile size (``EPSG32610-20m4096px``)."""
        return f"{self.crs.replace(':', '').upper()}-{self.resolution:g}m{self.size}px"

    def code(self, index: tuple[int, int]) -> str:
        """The tile's ``grid:code`` (STAC grid extension): the grid's name and the tile's column and
        row, e.g. ``EPSG32610-20m4096px-x34y243``."""
        return f"{self.name}-{tile_id(index)}"

    def record(self) -> dict:
        return {"crs": self.crs, "resolution": self.resolution, "size": self.size}


def tile_id(index: tuple[int, int]) -> str:
    """The tile's name in folders and item ids: its column and row in the grid (``x34y243``, ``x-2y7``)."""
    return f"x{index[0]}y{index[1]}"


@dataclass(frozen=True)
class Tile:
    """One work unit: its place in the grid, its pixels (cut to the AOI and the data) and the
    scenes that meet it."""

    index: tuple[int, int]
    geobox: GeoBox
    scenes: tuple[Scene, ...]

    @property
    def id(self) -> str:
        return tile_id(self.index)

    def record(self) -> dict:
        """What the later stages need to find the tile again (its store's own attributes hold the rest)."""
        return {
            "id": self.id,
            "index": list(self.index),
            "shape": list(self.geobox.shape),
            "transform": list(self.geobox.transform)[:6],
        }


def footprint(scene: Scene) -> Geometry | None:
    """Where the scene has data, as its STAC item says (``geometry``, else its ``bbox``), in WGS84."""
    if scene.footprint is not None:
        return Geometry(scene.footprint, "EPSG:4326")
    for grid in scene.assets.values():
        if grid.bbox is not None:
            return box(*grid.bbox, "EPSG:4326")
    return None


def layout(geobox: GeoBox, scenes: Sequence[Scene], size: int, aoi: Geometry | None = None) -> list[Tile] | None:
    """The tiles of the area whose grid is ``geobox`` (the untiled output grid), each with the
    scenes whose footprints meet it, cut to ``geobox``, to ``aoi`` (a polygon; the grid's extent
    without one) and to those scenes' grids; ``None`` when the grid fits one tile.

    Footprints are matched to tiles through a shapely STRtree in the output CRS, so thousands of
    scenes over hundreds of tiles take a fraction of a second; a footprint that cannot be projected
    to the output CRS (far outside its zone's validity) is matched by its bounding box.
    """
    if max(geobox.shape) <= size:
        return None
    crs = str(geobox.crs)
    grid = TileGrid(crs, abs(geobox.resolution.x), size)
    area = (aoi.to_crs(crs) if aoi is not None else geobox.extent).intersection(geobox.extent)
    projected = [_projected(scene, crs) for scene in scenes]
    known = [(i, g) for i, g in enumerate(projected) if g is not None]
    tree = shapely.STRtree([g for _, g in known])
    unknown = [i for i, g in enumerate(projected) if g is None]  # no footprint: meets every tile
    extents = GridExtents(crs)
    tiles = []
    for index, whole in grid.spec.tiles_from_geopolygon(area):
        cell = whole.extent.intersection(area)
        if cell.is_empty:
            continue
        hits = [known[j][0] for j in tree.query(cell.geom, predicate="intersects")] + unknown
        if not hits:
            continue
        if unknown:  # a scene without a footprint may be anywhere: the whole cell
            region = cell.geom
        else:  # cut to the scenes' grids, not their footprints: see _grid_extent
            region = cell.geom.intersection(shapely.union_all([extents.of(scenes[i], projected[i]) for i in hits]))
        if region.is_empty or region.area == 0:
            continue
        cut = _cut(whole, geobox, Geometry(region, crs))
        if cut is None:
            continue
        tiles.append(Tile(index, cut, tuple(scenes[i] for i in sorted(hits))))
    tiles.sort(key=lambda t: (-t.index[1], t.index[0]))  # rows from the north, columns from the west
    return tiles


class GridExtents:
    """Asset grids (their stated ``proj:`` squares) in the output CRS, each distinct grid projected
    once (odc-geo's reprojection costs ~1 ms a geometry; thousands of scenes share a few dozen MGRS
    grids). The layout cuts each tile to its scenes' grids (:meth:`of`), not their footprints: a
    footprint changes with the orbit (swath wedges) while the MGRS tile's square does not, so a
    longer period or another cloud filter gives a tile the same pixels, and its stores resume or
    extend instead of being another request's. The plan measures reads over them (:meth:`grid`)."""

    def __init__(self, crs: str) -> None:
        self.crs = crs
        self.cache: dict[tuple, shapely.Geometry | None] = {}

    def grid(self, grid) -> shapely.Geometry | None:
        """``grid`` (an AssetGrid with its transform, shape and CRS) in the output CRS; ``None``
        where it cannot be projected there (far outside the CRS's zone)."""
        key = (grid.crs, tuple(grid.transform[:6]), tuple(grid.shape))
        if key not in self.cache:
            try:
                own = GeoBox(grid.shape, Affine(*grid.transform[:6]), grid.crs).extent.to_crs(self.crs).geom
                self.cache[key] = own if own.is_valid else own.buffer(0)
            except Exception:  # noqa: BLE001  (pyproj's errors for points outside the projection)
                self.cache[key] = None
        return self.cache[key]

    def of(self, scene: Scene, fallback):
        """The scene's grid (its first asset's that states one), else ``fallback``."""
        grid = next((g for g in scene.assets.values() if g.transform is not None and g.shape is not None
                     and g.crs is not None), None)  # fmt: skip
        projected = self.grid(grid) if grid is not None else None
        return fallback if projected is None else projected


def _projected(scene: Scene, crs: str):
    """The scene's footprint as a shapely geometry in ``crs`` (its bbox where projecting fails)."""
    fp = footprint(scene)
    if fp is None:
        return None
    try:
        geom = fp.to_crs(crs).geom
        if geom.is_valid and not geom.is_empty and all(map(_finite, geom.bounds)):
            return geom
    except Exception:  # noqa: BLE001  (pyproj's errors for a point outside the projection)
        pass
    try:
        return box(*fp.boundingbox, "EPSG:4326").to_crs(crs).geom
    except Exception:  # noqa: BLE001
        return None


def _finite(v: float) -> bool:
    return v == v and abs(v) != float("inf")


def _cut(whole: GeoBox, grid: GeoBox, region: Geometry) -> GeoBox | None:
    """``whole`` (a tile) cut to the pixels of ``grid`` (same pixel edges) that ``region`` touches."""
    x0, y0, x1, y1 = region.boundingbox
    res = abs(grid.resolution.x)
    # The region's box snapped outwards to the pixel edges (multiples of the resolution).
    tight = GeoBox.from_bbox((x0, y0, x1, y1), crs=grid.crs, resolution=res, tight=False)
    try:
        cut = whole[whole.overlap_roi(grid)]
        roi = cut.overlap_roi(tight)
    except ValueError:  # no pixel in common
        return None
    out = cut[roi]
    if min(out.shape) < 1:
        return None
    return out
