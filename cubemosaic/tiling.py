"""Tiles as work units: an area larger than one unit is cut on a fixed grid anchored to its CRS.

The grid is odc-geo's :class:`~odc.geo.gridspec.GridSpec` (the output CRS, the resolution and a
square tile of ``tile_size`` pixels, origin at the CRS's origin), as odc-stats cuts its products:
a tile id names the same pixels in every run, whatever the AOI. Pixel edges lie on multiples of the
resolution, as for an untiled grid (:func:`cubemosaic.cube.output_geobox`), so the tiles of an area
and its untiled grid share every pixel.

Each tile keeps the scenes that may reach it, so it reads only those, on only their solar days,
and is cut down to the AOI's grid and those scenes' own grids (their ``proj:`` squares, the MGRS
tiles: stable from one date to the next, where a footprint is not). A scene may reach a tile where
its STAC ``geometry`` or its stated grid does, or its bbox where that reaches beyond the grid: the
trust an untiled run gives a catalog (it reads a scene wherever its ``proj:`` fields or its bbox
reach, :func:`cubemosaic.read.scene_reach`), so a catalog whose geometry or ``proj:`` fields
understate a scene's pixels does not lose them from a tiled run either. A tile no scene reaches
is not a work unit at all, so the cost follows the data, not the AOI's bounding box: an AOI 100
times larger than the data it covers costs what the data does.

An area whose grid fits one tile (``tile_size`` pixels on each side) is one unit: today's untiled
outputs (:func:`layout` returns ``None``).
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import shapely
import shapely.geometry
from affine import Affine
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry, box
from odc.geo.gridspec import GridSpec
from pyproj import Transformer

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
    scenes that may reach it (their footprint or their stated grid meets it), cut to ``geobox``, to
    ``aoi`` (a polygon; the grid's extent without one) and to those scenes' grids (and to a
    footprint where it strays beyond its scene's grid, :meth:`GridExtents.cut`); ``None`` when the
    grid fits one tile.

    Footprints and grids are matched to tiles through a shapely STRtree in the output CRS, so
    thousands of scenes over hundreds of tiles take a fraction of a second; a footprint that cannot
    be projected to the output CRS (far outside its zone's validity) is matched by its bounding box.
    """
    if max(geobox.shape) <= size:
        return None
    crs = str(geobox.crs)
    grid = TileGrid(crs, abs(geobox.resolution.x), size)
    area = (aoi.to_crs(crs) if aoi is not None else geobox.extent).intersection(geobox.extent)
    extents = GridExtents(crs)
    projected = [_projected(scene, crs) for scene in scenes]
    wider = [extents.wider_bbox(scene, grid.resolution) for scene in scenes]
    owners, shapes = [], []
    for i, scene in enumerate(scenes):
        for shape in (projected[i], extents.of(scene, None), wider[i]):
            if shape is not None:
                owners.append(i)
                shapes.append(shape)
    tree = shapely.STRtree(shapes)
    unknown = sorted(set(range(len(scenes))) - set(owners))  # neither: may reach every tile
    cuts: dict[int, shapely.Geometry] = {}
    tiles = []
    for index, whole in grid.spec.tiles_from_geopolygon(area):
        cell = whole.extent.intersection(area)
        if cell.is_empty:
            continue
        hits = sorted({owners[j] for j in tree.query(cell.geom, predicate="intersects")} | set(unknown))
        if not hits:
            continue
        if unknown:  # a scene without a footprint may be anywhere: the whole cell
            region = cell.geom
        else:  # cut to the scenes' grids, not their footprints: see GridExtents
            for i in hits:
                if i not in cuts:
                    cuts[i] = extents.cut(scenes[i], projected[i], grid.resolution, wider[i])
            shared = {id(cuts[i]): cuts[i] for i in hits}  # scenes of one MGRS tile share its grid's object
            region = cell.geom.intersection(shapely.union_all(list(shared.values())))
        if region.is_empty or region.area == 0:
            continue
        cut = _cut(whole, geobox, Geometry(region, crs))
        if cut is None:
            continue
        tiles.append(Tile(index, cut, tuple(scenes[i] for i in hits)))
    tiles.sort(key=lambda t: (-t.index[1], t.index[0]))  # rows from the north, columns from the west
    if extents.strays:
        strays = list(dict.fromkeys(extents.strays))
        log.warning("plan: the geometry or bbox of %d item(s) reaches beyond its proj: fields' grid (first: %s); "
                    "their tiles are cut to both", len(strays), strays[0])  # fmt: skip
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
        self.unions: dict[frozenset, shapely.Geometry | None] = {}
        #: Ids of the scenes whose geometry strays beyond their grid (:meth:`cut`).
        self.strays: list[str] = []

    def grid(self, grid) -> shapely.Geometry | None:
        """``grid`` (an AssetGrid with its transform, shape and CRS) in the output CRS; ``None``
        where it cannot be projected there (far outside the CRS's zone)."""
        key = _grid_key(grid)
        if key not in self.cache:
            try:
                own = GeoBox(grid.shape, Affine(*grid.transform[:6]), grid.crs).extent.to_crs(self.crs).geom
                self.cache[key] = own if own.is_valid else own.buffer(0)
            except Exception:  # noqa: BLE001  (pyproj's errors for points outside the projection)
                self.cache[key] = None
        return self.cache[key]

    def of(self, scene: Scene, fallback):
        """The scene's grid (the union of its assets' stated grids: one square for an honest
        Sentinel-2 item, whose bands share their extent), else ``fallback``."""
        keys = _stated_grids(scene)
        together = frozenset(keys)
        if together not in self.unions:
            own = [p for p in map(self.grid, keys.values()) if p is not None]
            if not own:
                self.unions[together] = None
            elif all(p.equals(own[0]) for p in own[1:]):
                self.unions[together] = own[0]
            else:
                self.unions[together] = shapely.union_all(own)
        found = self.unions[together]
        return fallback if found is None else found

    def cut(self, scene: Scene, footprint, resolution: float, wider=None):
        """What a tile is cut to for ``scene``: its grid (:meth:`of`), and its ``footprint`` (the
        STAC geometry in the output CRS) too where that strays beyond the grid by more than a
        pixel: a catalog that contradicts itself (the geometry or the ``proj:`` fields understate
        the pixels), noted in :attr:`strays` (the layout logs them in one line); and ``wider``,
        the item's bbox where it reaches beyond the grid (:meth:`wider_bbox`). An honest item's
        geometry and bbox lie inside its grid, so its tiles are the grid's, whatever the orbit."""
        own = self.of(scene, None)
        parts = [p for p in (own, wider) if p is not None]
        if footprint is not None and (own is None or _strays(scene, resolution)):
            if own is not None:
                self.strays.append(scene.id)
            parts.append(footprint)
        if not parts:
            return footprint
        return parts[0] if len(parts) == 1 else shapely.union_all(parts)

    def wider_bbox(self, scene: Scene, resolution: float):
        """The item's lon/lat ``bbox`` in the output CRS where it reaches beyond the lon/lat
        envelope of the scene's stated grid by more than a pixel (the ``proj:`` fields understate
        the pixels: an untiled run reads the scene wherever its bbox reaches,
        :func:`cubemosaic.read.scene_reach`), or where the scene states no grid; else None. The
        bbox of any geometry inside the grid lies inside that envelope, so an honest item's is
        never taken (it would widen the tiles at the data's edge, a lon/lat box leaning on the
        UTM square)."""
        bbox = next((g.bbox for g in scene.assets.values() if g.bbox is not None), None)
        if bbox is None or bbox[0] > bbox[2]:  # none, or across the antimeridian: the grid and geometry say
            return None
        grids = _stated_grids(scene)
        if grids:
            bounds = [self.lonlat(g) for g in grids.values()]
            if any(b is None for b in bounds):
                return None
            slack = resolution / 111_000 + 1e-7  # a pixel, in degrees of latitude (less in longitude)
            x0, y0 = min(b[0] for b in bounds) - slack, min(b[1] for b in bounds) - slack
            x1, y1 = max(b[2] for b in bounds) + slack, max(b[3] for b in bounds) + slack
            if x0 <= bbox[0] and y0 <= bbox[1] and bbox[2] <= x1 and bbox[3] <= y1:
                return None
            self.strays.append(scene.id)
        try:
            return box(*bbox[:4], "EPSG:4326").to_crs(self.crs, resolution=0.01).geom
        except Exception:  # noqa: BLE001  (pyproj's errors for points outside the projection)
            return None

    def lonlat(self, grid) -> tuple[float, float, float, float] | None:
        """The lon/lat envelope of ``grid`` (an AssetGrid), once per distinct grid."""
        key = ("lonlat", *_grid_key(grid))
        if key not in self.cache:
            try:
                extent = GeoBox(grid.shape, Affine(*grid.transform[:6]), grid.crs).extent
                self.cache[key] = tuple(extent.to_crs("EPSG:4326", resolution=1000.0).boundingbox)
            except Exception:  # noqa: BLE001
                self.cache[key] = None
        return self.cache[key]


def _strays(scene: Scene, tolerance: float) -> bool:
    """Whether the scene's STAC geometry reaches beyond its stated grid (the bounds of its assets'
    ``proj:`` grids in its own CRS) by more than ``tolerance`` metres (and a native pixel).

    Compared in the scene's own CRS, each vertex projected and the edges kept straight there:
    Sentinel-2 footprints are traced on the tile's UTM pixels, so an honest one lies inside its
    square, while a lon/lat edge of 100 km strays from the square's projected edge by ~300 m. The
    square is north-up there, so comparing the vertices' bounds with it suffices (~0.1 ms a scene)."""
    if scene.footprint is None:
        return False
    grids = list(_stated_grids(scene).values())
    if not grids:
        return False
    crs = grids[0].crs
    edges = [_bounds(g.transform, g.shape) for g in grids if g.crs == crs]
    slack = max(tolerance, *(abs(g.transform[0]) for g in grids))
    try:
        lonlat = shapely.get_coordinates(shapely.geometry.shape(scene.footprint))
        x, y = _transformer(crs)(lonlat)
        x0, y0, x1, y1 = np.min(x), np.min(y), np.max(x), np.max(y)
    except Exception:  # noqa: BLE001  (a footprint that cannot be projected there: nothing to compare)
        return False
    if not all(map(_finite, (x0, y0, x1, y1))):
        return False
    return bool(x0 < min(e[0] for e in edges) - slack or y0 < min(e[1] for e in edges) - slack
                or x1 > max(e[2] for e in edges) + slack or y1 > max(e[3] for e in edges) + slack)  # fmt: skip


def _grid_key(grid) -> tuple:
    """A stated grid's identity: its CRS, transform and shape."""
    return grid.crs, tuple(grid.transform[:6]), tuple(grid.shape)


def _stated_grids(scene: Scene) -> dict[tuple, object]:
    """The scene's assets' stated grids (those with a CRS, a transform and a shape), each once."""
    return {_grid_key(g): g for g in scene.assets.values()
            if g.transform is not None and g.shape is not None and g.crs is not None}  # fmt: skip


def _bounds(transform, shape) -> tuple[float, float, float, float]:
    """A grid's bounds from its affine ``transform`` and ``(rows, columns)`` (any orientation)."""
    a, b, c, d, e, f = transform[:6]
    xs = [c + a * i + b * j for i in (0, shape[1]) for j in (0, shape[0])]
    ys = [f + d * i + e * j for i in (0, shape[1]) for j in (0, shape[0])]
    return min(xs), min(ys), max(xs), max(ys)


@functools.lru_cache(maxsize=64)
def _transformer(crs: str):
    """lon/lat vertices ((n, 2) array) to ``crs``, vectorised (pyproj)."""
    forward = Transformer.from_crs("EPSG:4326", crs, always_xy=True)
    return lambda xy: forward.transform(xy[:, 0], xy[:, 1])


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
