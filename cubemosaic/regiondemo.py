"""A synthetic region as Sentinel-2 covers it, with an exact truth: overlapping MGRS-like tiles in
two UTM zones, two relative orbits with swath-edge no-data wedges, same-day tiles of one datatake.

:func:`ensure_region` builds (once, into a cache folder) an archive shaped like the demo's
(:mod:`cubemosaic.demo`: Planetary Computer asset keys B02 B03 B04 B08 at 10 m and SCL at 20 m,
tiled COGs with overviews, nodata 0, ``s2:processing_baseline``) but over a region:

- tiles of ``tile_px`` 20 m pixels laid out as MGRS lays them, each on its own zone's grid (origins
  on 60 m multiples of its UTM zone), neighbours overlapping by ``overlap``; the west zone's tiles
  and the east zone's reach ``cross`` of a tile across the zone boundary (``boundary_lon``), so
  both zones cover the ground there, in two CRSs (the east zone's grid turned ~4 degrees);
- two relative orbits: each datatake gives one product per tile its swath reaches, all with the
  same sensing time (one solar day); a swath edge (a slanted line) crosses the region, so tiles
  have no-data wedges (SCL 0, DN 0) and tiles wholly outside a swath have no product that day;
- the processing-baseline change (+1000 DN from 2022-01-25) inside the period, clouds (SCL 8/9),
  cloud shadows (3), cirrus (10), water (6), a patch cloudy all month (no clear answer there).

The surface and the weather are fields in world coordinates: constant on the 20 m cells of the
west zone's grid (x, y multiples of 20 m in its UTM CRS), so overlapping tiles agree. A pixel of
any tile takes the value of the cell under its centre; the west zone's pixels nest in the cells.

:meth:`RegionArchive.truth` then gives, for any output grid, the exact answer of reading the
archive with nearest resampling at native resolution: for each output pixel centre, each scene's
native pixel under it (bands at 10 m, SCL at 20 m), that scene's mask, the day's scenes fused
first clear first in (time, id) order, the clear-sky monthly median of the harmonised DN (offset
removed, kept >= 1) and the count of clear days. Output pixels whose answer depends on where in
a native pixel the centre falls (within a quarter of a native pixel of a pixel edge across which
a scene's SCL mask, its coverage or its cell changes: the warper's own sub-pixel approximation
could fall either side) are not ``interior`` and are left out of the comparison.

Written by hand: no library makes a multi-zone, multi-orbit test archive with a known composite.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import warnings
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy

from .demo import BANDS, ITEM_HEAD, SCL_KEY, ArchiveOnDisk, asset_fields, default_cache_dir, generate_atomically
from .s2 import BASELINE_CHANGE, BOA_OFFSET_DN, DEFAULT_MASK_CLASSES
from .tuning import configure

__all__ = ["RegionArchive", "RegionSpec", "Tile", "acquisition_days", "ensure_region", "layout", "make_region"]

log = logging.getLogger(__name__)

#: Bump when the generator changes so cached archives are rebuilt.
GENERATOR_VERSION = 1
#: The world cells: 20 m of the west zone's grid.
CELL_M = 20.0
#: Native pixels of the bands and of the SCL.
BAND_M, SCL_M = 10.0, 20.0
#: Share of a native pixel within which an output pixel centre is too near an edge for an exact answer.
EDGE_PX = 0.25
#: Ground reflectance (DN) per band: vegetation, bare soil, water (as the demo's).
_GROUND = {"B02": (300, 900, 60), "B03": (550, 1200, 45), "B04": (350, 1500, 15), "B08": (3200, 2400, -25)}
_MASKED = np.zeros(256, dtype=bool)
_MASKED[list(DEFAULT_MASK_CLASSES)] = True


def acquisition_days(start: str, months: int, first: int, step: int) -> tuple[str, ...]:
    """Acquisition days from ``start``'s month: every ``step`` days from day ``first``, ``months`` months."""
    d0 = dt.date.fromisoformat(start).replace(day=1)
    y, m = d0.year + (d0.month - 1 + months) // 12, (d0.month - 1 + months) % 12 + 1
    end = dt.date(y, m, 1)
    out, day = [], d0 + dt.timedelta(days=first - 1)
    while day < end:
        out.append(day.isoformat())
        day += dt.timedelta(days=step)
    return tuple(out)


@dataclass(frozen=True)
class RegionSpec:
    """What region archive to generate. The defaults make a small one for tests (seconds)."""

    #: Latitude of the region's centre, and the zone boundary it straddles.
    lat: float = 46.0
    boundary_lon: float = -120.0
    #: UTM zone west of the boundary (north); the east one is the next.
    west_zone: int = 10
    #: Tile edge in 20 m pixels (a real MGRS tile: 5490). 240: 4.8 km, COGs with 2x and 4x overviews.
    tile_px: int = 240
    #: Share of a tile by which neighbours overlap (MGRS: ~0.09).
    overlap: float = 0.1
    #: Tile columns in the west zone and in the east zone, tile rows.
    cols: tuple[int, int] = (2, 1)
    rows: int = 2
    #: Share of a tile by which each zone's tiles reach across the boundary.
    cross: float = 0.3
    #: Acquisition days of the two relative orbits (orbit number, days).
    orbits: tuple[tuple[int, tuple[str, ...]], ...] = (
        (13, acquisition_days("2022-01-01", 2, 2, 15)),
        (113, acquisition_days("2022-01-01", 2, 12, 15)),
    )
    #: Swath edges, as a share of the region's width from its centre (orbit 0 sees what is west of
    #: its edge, orbit 1 what is east of its), and their slope (metres east per metre north).
    swath_edges: tuple[float, float] = (0.3, 0.1)
    swath_slope: float = 0.25
    #: A day almost wholly cloudy, and a month whose scenes are all cloudy over one patch.
    cloudy_day: str = "2022-01-17"
    always_cloudy_month: str = "2022-02"
    #: COG tile size (128 with 480 px bands: overviews 2x and 4x).
    blocksize: int = 128
    seed: int = 7
    #: Acquisition time (UTC): late morning local solar time at -120.
    utc_time: str = "19:05:21"

    @property
    def key(self) -> str:
        text = json.dumps([GENERATOR_VERSION, asdict(self)], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]

    @property
    def west_epsg(self) -> int:
        return 32600 + self.west_zone

    @property
    def days(self) -> list[tuple[str, int]]:
        """(day, orbit index) of every datatake, in time order."""
        return sorted((d, i) for i, (_, days) in enumerate(self.orbits) for d in days)

    @property
    def months(self) -> list[str]:
        return sorted({d[:7] for d, _ in self.days})


@dataclass(frozen=True)
class Tile:
    """One MGRS-like tile: its name, its zone's EPSG code and its upper-left corner there."""

    name: str
    epsg: int
    x0: float
    y0: float
    size_m: float

    def transform(self, res: float) -> Affine:
        return Affine(res, 0.0, self.x0, 0.0, -res, self.y0)

    def shape(self, res: float) -> tuple[int, int]:
        n = round(self.size_m / res)
        return (n, n)


def _snap(v: float, step: float = 60.0) -> float:
    return float(np.floor(v / step) * step)


def layout(spec: RegionSpec) -> list[Tile]:
    """The tiles: the west zone's columns end ``cross`` of a tile east of the boundary, the east
    zone's start ``cross`` west of it; rows centred on ``lat``; origins on 60 m multiples."""
    size = spec.tile_px * CELL_M
    step = _snap(size * (1 - spec.overlap))
    tiles = []
    for zone, ncols, west in ((spec.west_zone, spec.cols[0], True), (spec.west_zone + 1, spec.cols[1], False)):
        epsg = 32600 + zone
        xb, yb = Transformer.from_crs(4326, epsg, always_xy=True).transform(spec.boundary_lon, spec.lat)
        top = _snap(yb + (step * (spec.rows - 1) + size) / 2)
        if west:
            xs = [_snap(xb + spec.cross * size - size) - step * (ncols - 1 - i) for i in range(ncols)]
        else:
            xs = [_snap(xb - spec.cross * size) + step * i for i in range(ncols)]
        for i, x in enumerate(xs):
            for j in range(spec.rows):
                name = f"{zone}T{'WE'[not west]}{chr(65 + i)}{chr(65 + j)}"
                tiles.append(Tile(name, epsg, x, top - j * step, size))
    return tiles


# --------------------------------------------------------------------------- the world fields
def _hash(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """A uniform [0, 1) value per cell and ``salt`` (splitmix64 of the cell's indices)."""
    with np.errstate(over="ignore"):
        z = ix.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15) + iy.astype(np.uint64) * np.uint64(0xC2B2AE3D27D4EB4F)
        z += np.uint64(salt & 0xFFFFFFFF) * np.uint64(0x165667B19E3779F9)
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return (z >> np.uint64(11)).astype(np.float64) / float(1 << 53)


def _normal(ix: np.ndarray, iy: np.ndarray, salt: int) -> np.ndarray:
    """About standard normal per cell (the sum of four uniforms, scaled)."""
    return (sum(_hash(ix, iy, salt * 4 + k) for k in range(4)) - 2.0) * np.sqrt(3.0)


@dataclass(frozen=True)
class _Weather:
    """One datatake's clouds (discs in world metres: x, y, radius), shadow shift, cirrus, patch."""

    clouds: tuple[tuple[float, float, float], ...]
    cirrus: tuple[tuple[float, float, float], ...]
    shadow: tuple[float, float]
    patch: tuple[float, float, float, float] | None
    season: tuple[float, ...]


@dataclass(frozen=True)
class _World:
    """The region's fields on the world cells, and its datatakes' weather."""

    spec: RegionSpec
    #: The region's extent in world metres (x0, y0, x1, y1).
    extent: tuple[float, float, float, float]

    @cached_property
    def weather(self) -> list[_Weather]:
        x0, y0, x1, y1 = self.extent
        w, h = x1 - x0, y1 - y0
        out = []
        for i, (day, _) in enumerate(self.spec.days):
            rng = np.random.default_rng([self.spec.seed, i])
            cloudy = day == self.spec.cloudy_day
            n, rmin, rmax = (30, 0.08, 0.2) if cloudy else (6, 0.02, 0.08)
            clouds = tuple(
                (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(rmin, rmax) * min(w, h)))
                for _ in range(n)
            )
            cirrus = tuple(
                (float(rng.uniform(x0, x1)), float(rng.uniform(y0, y1)), float(rng.uniform(0.03, 0.06) * min(w, h)))
                for _ in range(2)
            )
            patch = None
            if day[:7] == self.spec.always_cloudy_month:
                patch = (x0 + 0.55 * w, y0 + 0.55 * h, x0 + 0.7 * w, y0 + 0.7 * h)
            shadow = (float(rng.uniform(150, 300)), float(-rng.uniform(150, 300)))
            out.append(_Weather(clouds, cirrus, shadow, patch, tuple(float(v) for v in rng.normal(0, 25, len(BANDS)))))
        return out

    def in_swath(self, orbit: int, ix: np.ndarray, iy: np.ndarray) -> np.ndarray:
        x, y = (ix + 0.5) * CELL_M, (iy + 0.5) * CELL_M
        x0, y0, x1, y1 = self.extent
        xc, yc = (x0 + x1) / 2, (y0 + y1) / 2
        edge = xc + self.spec.swath_edges[orbit] * (x1 - x0) + self.spec.swath_slope * (y - yc)
        return x < edge if orbit == 0 else x > edge

    def _ground_classes(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        x, y = (ix + 0.5) * CELL_M, (iy + 0.5) * CELL_M
        x0, y0, x1, y1 = self.extent
        water = np.hypot((x - (x0 + 0.3 * (x1 - x0))) / (x1 - x0), (y - (y0 + 0.3 * (y1 - y0))) / (y1 - y0)) < 0.12
        veg = (np.sin(x / 2300.0) + np.cos(y / 1700.0)) > 0
        return water, veg

    def ground(self, ix: np.ndarray, iy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Water, vegetation and each band's ground reflectance (DN, before the day's noise) per cell."""
        water, veg = self._ground_classes(ix, iy)
        x, y = (ix + 0.5) * CELL_M, (iy + 0.5) * CELL_M
        bands = []
        for band, key in enumerate(BANDS):
            v, s, w = _GROUND[key]
            g = np.where(veg, v, s) * (1 + 0.15 * np.sin(x / 1100.0 + y / 2900.0)) + 60 * _normal(ix, iy, 10 + band)
            bands.append(np.where(water, w + 8 * _normal(ix, iy, 20 + band), g))
        return water, veg, np.stack(bands)

    def scl(self, day: int, ix: np.ndarray, iy: np.ndarray, water: np.ndarray, veg: np.ndarray) -> np.ndarray:
        """The SCL class of each cell in datatake ``day`` (before the swath: no 0 here)."""
        weather = self.weather[day]
        x, y = (ix + 0.5) * CELL_M, (iy + 0.5) * CELL_M
        out = np.where(water, 6, np.where(veg, 4, 5)).astype(np.uint8)
        out[_hash(ix, iy, 1000 + day) < 0.01] = 7  # unclassified: valid, kept
        cloud, deep = self._discs(weather.clouds, x, y)
        if weather.patch is not None:
            px0, py0, px1, py1 = weather.patch
            inside = (x >= px0) & (x < px1) & (y >= py0) & (y < py1)
            cloud |= inside
            deep |= inside
        sx, sy = weather.shadow
        shadow, _ = self._discs(weather.clouds, x - sx, y - sy)
        cirrus, _ = self._discs(weather.cirrus, x, y)
        out[cirrus & ~shadow & ~cloud] = 10
        out[shadow & ~cloud] = 3
        out[cloud] = np.where(deep[cloud], 9, 8)
        return out

    @staticmethod
    def _discs(discs, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Inside any disc, and inside 0.6 of its radius. ``x`` a row (1, W) and ``y`` a column
        (H, 1) of cell centres, increasing: each disc is worked out on its bounding box only."""
        inside = np.zeros((y.shape[0], x.shape[1]), dtype=bool)
        deep = np.zeros_like(inside)
        xs, ys = x[0], y[:, 0]
        for cx, cy, r in discs:
            c0, c1 = np.searchsorted(xs, [cx - r, cx + r])
            r0, r1 = np.searchsorted(ys, [cy - r, cy + r])
            if c1 <= c0 or r1 <= r0:
                continue
            d = np.hypot(xs[None, c0:c1] - cx, ys[r0:r1, None] - cy) / r
            inside[r0:r1, c0:c1] |= d < 1
            deep[r0:r1, c0:c1] |= d < 0.6
        return inside, deep

    def observed(self, day: int, band: int, ix: np.ndarray, iy: np.ndarray, ground: np.ndarray, scl: np.ndarray):
        """Reflectance DN (no offset, may be <= 0) of band ``band`` in datatake ``day``, over ``ground``."""
        obs = ground + self.weather[day].season[band] + 30 * _normal(ix, iy, 100 + 8 * day + band)
        obs = np.where(scl == 3, obs * 0.35, obs)
        obs = np.where(scl == 10, obs + 350, obs)
        obs = np.where((scl == 8) | (scl == 9), 4500 + 3000 * _hash(ix, iy, 5000 + day), obs)
        return np.rint(obs)


def _raw_dn(obs: np.ndarray, offset: int) -> np.ndarray:
    """What the archive stores: the offset added (baseline 04.00: negative reflectance representable),
    clipped to the valid DN (>= 1)."""
    return np.clip(obs + offset, 1, 65535)


# --------------------------------------------------------------------------- the archive
@dataclass(frozen=True)
class RegionArchive(ArchiveOnDisk):
    """A generated region archive on disk."""

    spec: RegionSpec = field(default_factory=RegionSpec)

    @cached_property
    def tiles(self) -> list[Tile]:
        return layout(self.spec)

    @cached_property
    def world(self) -> _World:
        return _World(self.spec, _extent(self.tiles, self.spec.west_epsg))

    @cached_property
    def cells(self) -> _Cells:
        return _cells(self.tiles, self.spec.west_epsg)

    def items(self) -> list[dict]:
        return json.loads(self.items_path.read_text())["features"]

    def aoi(self, inset_m: float = 200.0) -> tuple[float, float, float, float]:
        """A lon/lat box inside the region's coverage (``inset_m`` in from its edges)."""
        x0, y0, x1, y1 = self.world.extent
        t = Transformer.from_crs(self.spec.west_epsg, 4326, always_xy=True)
        lon0, lat0 = t.transform(x0 + inset_m, y0 + inset_m)
        lon1, lat1 = t.transform(x1 - inset_m, y1 - inset_m)
        # The west zone's box in lon/lat leans; keep inside both edges at both latitudes.
        lon0 = max(lon0, t.transform(x0 + inset_m, y1 - inset_m)[0])
        lon1 = min(lon1, t.transform(x1 - inset_m, y0 + inset_m)[0])
        return (round(lon0, 5), round(max(lat0, t.transform(x1, y0 + inset_m)[1]), 5),
                round(lon1, 5), round(min(lat1, t.transform(x0, y1 - inset_m)[1]), 5))  # fmt: skip

    def truth(self, geobox) -> xr.Dataset:
        """The exact answer on ``geobox`` (an odc-geo GeoBox), per month: each band's clear-sky median
        of harmonised DN (NaN where no clear observation), ``count`` of clear days, and ``interior``
        (False where the answer depends on sub-pixel sampling: leave those out)."""
        return _truth(self, geobox)


def _extent(tiles: Sequence[Tile], epsg: int) -> tuple[float, float, float, float]:
    """The box (world metres) every point of which some tile covers: the tiles' union's inner box."""
    west = [t for t in tiles if t.epsg == epsg]
    east = [t for t in tiles if t.epsg != epsg]
    to_w = Transformer.from_crs(east[0].epsg, epsg, always_xy=True) if east else None
    y1 = max(t.y0 for t in west)
    y0 = min(t.y0 - t.size_m for t in west)
    x0 = min(t.x0 for t in west)
    x1 = max(t.x0 + t.size_m for t in west)
    if east and to_w is not None:
        ex = max(t.x0 + t.size_m for t in east)
        ey0, ey1 = min(t.y0 - t.size_m for t in east), max(t.y0 for t in east)
        xs, ys = to_w.transform([ex, ex], [ey0, ey1])
        x1 = min(xs)
        # The east zone's box, turned, reaches less far north and south at its corners.
        cx = [min(t.x0 for t in east), ex]
        _, top = to_w.transform(cx, [ey1, ey1])
        _, bottom = to_w.transform(cx, [ey0, ey0])
        y1, y0 = min(y1, *top), max(y0, *bottom)
    return (x0, y0, x1, y1)


def ensure_region(spec: RegionSpec | None = None, cache_dir: Path | None = None) -> RegionArchive:
    """The archive for ``spec``, generated first if the cache lacks it."""
    configure()  # the archive is written with GDAL, often the process's first use of it
    spec = spec or RegionSpec()
    root = (cache_dir or default_cache_dir()) / f"region-{spec.key}"
    archive = RegionArchive(root=root, spec=spec)
    if archive.items_path.is_file():
        return archive
    log.info("region: generating the region archive into %s (first use only)", root)
    return make_region(root, spec)


def make_region(root: Path, spec: RegionSpec) -> RegionArchive:
    """Generate the archive into ``root`` atomically (built in a temp folder, then renamed)."""
    generate_atomically(root, lambda tmp: _generate(tmp, RegionArchive(root=root, spec=spec)))
    return RegionArchive(root=root, spec=spec)


def _pixel_cells(tile: Tile, res: float, west_epsg: int) -> tuple[np.ndarray, np.ndarray]:
    """The world cell (ix, iy) under the centre of each of the tile's ``res`` pixels."""
    n = tile.shape(res)[0]
    centres = (np.arange(n) + 0.5) * res
    xs, ys = np.meshgrid(tile.x0 + centres, tile.y0 - centres)
    if tile.epsg != west_epsg:
        xs, ys = Transformer.from_crs(tile.epsg, west_epsg, always_xy=True).transform(xs, ys)
    return np.floor(xs / CELL_M).astype(np.int64), np.floor(ys / CELL_M).astype(np.int64)


@dataclass(frozen=True)
class _Cells:
    """The world cells every tile's pixels fall in (a window of the cell grid), and each tile's
    pixels as flat indices into it (bands' 10 m pixels and the SCL's 20 m ones)."""

    ix0: int
    iy0: int
    shape: tuple[int, int]
    pixels: dict[tuple[str, float], np.ndarray]

    @property
    def ix(self) -> np.ndarray:
        return np.broadcast_to(self.ix0 + np.arange(self.shape[1])[None, :], self.shape)

    @property
    def iy(self) -> np.ndarray:
        return np.broadcast_to(self.iy0 + np.arange(self.shape[0])[:, None], self.shape)


def _cells(tiles: Sequence[Tile], west_epsg: int) -> _Cells:
    found = {(t.name, res): _pixel_cells(t, res, west_epsg) for t in tiles for res in (BAND_M, SCL_M)}
    ix0 = min(int(ix.min()) for ix, _ in found.values())
    iy0 = min(int(iy.min()) for _, iy in found.values())
    ix1 = max(int(ix.max()) for ix, _ in found.values()) + 1
    iy1 = max(int(iy.max()) for _, iy in found.values()) + 1
    width = ix1 - ix0
    flat = {k: ((iy - iy0) * width + (ix - ix0)).astype(np.int32) for k, (ix, iy) in found.items()}
    return _Cells(ix0, iy0, (iy1 - iy0, width), flat)


@dataclass(frozen=True)
class _Day:
    """One datatake on the cells: its SCL (0 outside the swath) and each band's stored DN (0 there)."""

    scl: np.ndarray
    dn: np.ndarray  # (bands, cells) uint16
    harmonised: np.ndarray  # (bands, cells) float: the DN with the offset removed, kept >= 1


def _day(world: _World, cells: _Cells, d: int, ground: tuple[np.ndarray, np.ndarray, np.ndarray]) -> _Day:
    """Datatake ``d`` on ``cells``, over their ``ground`` (:meth:`_World.ground`, the same every day)."""
    day, orbit = world.spec.days[d]
    shape = cells.shape
    ix = cells.ix0 + np.arange(shape[1], dtype=np.int64)[None, :]  # a row and a column: the
    iy = cells.iy0 + np.arange(shape[0], dtype=np.int64)[:, None]  # fields broadcast them
    water, veg, bands = (g.reshape(-1, *shape) if g.ndim == 2 else g.reshape(shape) for g in ground)
    inside = world.in_swath(orbit, ix, iy)
    scl = world.scl(d, ix, iy, water, veg)
    offset = _offset(day)
    dn = np.stack([_raw_dn(world.observed(d, b, ix, iy, bands[b], scl), offset).ravel() for b in range(len(BANDS))])
    harmonised = np.maximum(dn - offset, 1)
    dn[:, ~inside.ravel()] = 0
    return _Day(np.where(inside, scl, 0).astype(np.uint8).ravel(), dn.astype(np.uint16), harmonised)


def _cog(path: Path, data: np.ndarray, transform: Affine, epsg: int, blocksize: int, desc: str) -> None:
    """A tiled COG with nearest overviews (as the demo writes them)."""
    profile = dict(driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype=data.dtype.name,
                   crs=f"EPSG:{epsg}", transform=transform, nodata=0)  # fmt: skip
    with MemoryFile() as mem, mem.open(**profile) as ds:
        ds.write(data, 1)
        ds.set_band_description(1, desc)
        rio_copy(ds, str(path), driver="COG", compress="DEFLATE", predictor="2", level=1, blocksize=blocksize,
                 overview_resampling="nearest")  # fmt: skip


def _footprint(tile: Tile) -> tuple[list[list[float]], list[float]]:
    t = Transformer.from_crs(tile.epsg, 4326, always_xy=True)
    x0, y1, x1, y0 = tile.x0, tile.y0, tile.x0 + tile.size_m, tile.y0 - tile.size_m
    ring = [list(t.transform(x, y)) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    lons, lats = [p[0] for p in ring], [p[1] for p in ring]
    return ring, [min(lons), min(lats), max(lons), max(lats)]


def _item(spec: RegionSpec, tile: Tile, day: str, orbit: int, folder: Path, cloud_cover: float, offset: int) -> dict:
    ring, bbox = _footprint(tile)
    stamp = day.replace("-", "") + "T" + spec.utc_time.replace(":", "")
    platform = "Sentinel-2A" if orbit == 0 else "Sentinel-2B"
    number = spec.orbits[orbit][0]
    assets = {key: asset_fields(folder, key, tile.shape(BAND_M), list(tile.transform(BAND_M))[:6]) for key in BANDS}
    assets[SCL_KEY] = asset_fields(folder, SCL_KEY, tile.shape(SCL_M), list(tile.transform(SCL_M))[:6])
    return {
        **ITEM_HEAD,
        "id": f"S2{platform[-1]}_MSIL2A_{stamp}_R{number:03d}_T{tile.name}_{stamp}",
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "bbox": bbox,
        "properties": {
            "datetime": f"{day}T{spec.utc_time}.024000Z",
            "platform": platform,
            "constellation": "Sentinel 2",
            "instruments": ["msi"],
            "proj:epsg": tile.epsg,
            "eo:cloud_cover": round(cloud_cover, 4),
            "s2:mgrs_tile": tile.name,
            "s2:processing_baseline": "04.00" if offset else "03.01",
            "s2:product_type": "S2MSI2A",
            "sat:relative_orbit": number,
            "sat:orbit_state": "descending",
        },
        "links": [],
        "assets": assets,
    }


def _offset(day: str) -> int:
    return BOA_OFFSET_DN if dt.date.fromisoformat(day) >= BASELINE_CHANGE else 0


def _generate(tmp: Path, archive: RegionArchive) -> None:
    spec, world, cells = archive.spec, archive.world, archive.cells
    items = []
    writes = []
    ground = world.ground(cells.ix.ravel(), cells.iy.ravel())
    pool = ThreadPoolExecutor(2, thread_name_prefix="region-cog")  # GDAL writes outside the GIL
    for d, (day, orbit) in enumerate(spec.days):
        for done in writes:
            done.result()  # one datatake's files in flight at a time: memory stays that of one day
        writes.clear()
        fields = _day(world, cells, d, ground)
        offset = _offset(day)
        for tile in archive.tiles:
            n10, n20 = tile.shape(BAND_M), tile.shape(SCL_M)
            scl = fields.scl[cells.pixels[(tile.name, SCL_M)]].reshape(n20)
            if not scl.any():
                continue  # the swath misses the tile: no product
            folder = tmp / f"{day}-{tile.name}"
            folder.mkdir()
            pixels = cells.pixels[(tile.name, BAND_M)]
            for band, (key, (common, _, _)) in enumerate(BANDS.items()):
                dn = fields.dn[band][pixels].reshape(n10)
                writes.append(pool.submit(_cog, folder / f"{key}.tif", dn, tile.transform(BAND_M), tile.epsg,
                                          spec.blocksize, f"{key} {common}"))  # fmt: skip
            writes.append(pool.submit(_cog, folder / f"{SCL_KEY}.tif", scl, tile.transform(SCL_M), tile.epsg,
                                      spec.blocksize, "SCL"))  # fmt: skip
            valid = scl != 0
            cc = 100.0 * float(np.isin(scl[valid], (8, 9, 10)).mean())
            items.append(_item(spec, tile, day, orbit, archive.root / folder.name, cc, offset))
    for done in writes:
        done.result()
    pool.shutdown()
    with rasterio.open(next(tmp.glob(f"*/{next(iter(BANDS))}.tif"))) as check:
        assert len(check.overviews(1)) >= 2, "region tiles too small for 2x and 4x overviews"
    items.sort(key=lambda i: (i["properties"]["datetime"], i["id"]))
    (tmp / "items.json").write_text(json.dumps({"type": "FeatureCollection", "features": items}, indent=1))


# --------------------------------------------------------------------------- the truth
@dataclass(frozen=True)
class _Look:
    """Where output pixel centres fall on one of a tile's grids: the cell under each (a flat index
    into :class:`_Cells`) and whether inside the tile; the same for each of four quarter-pixel shifts."""

    cell: np.ndarray
    inside: np.ndarray
    shifted: tuple[tuple[np.ndarray, np.ndarray], ...]


def _look(tile: Tile, res: float, xs: np.ndarray, ys: np.ndarray, pixels: np.ndarray) -> _Look:
    """Output pixel centres ``xs``, ``ys`` (in the tile's CRS) on the tile's ``res`` grid."""
    n = tile.shape(res)[0]
    col, row = (xs - tile.x0) / res, (tile.y0 - ys) / res
    grid = pixels.reshape(n, n)

    def at(c: np.ndarray, r: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        ci, ri = np.floor(c).astype(np.int64), np.floor(r).astype(np.int64)
        inside = (ci >= 0) & (ci < n) & (ri >= 0) & (ri < n)
        return grid[np.clip(ri, 0, n - 1), np.clip(ci, 0, n - 1)], inside

    cell, inside = at(col, row)
    # The diagonals too: an output pixel of twice the native size, read directly, has its centre
    # on the corner of four native pixels, and any of the four is its nearest (the 2x overview
    # gives the top-left one, the truth's floor the bottom-right one).
    shifts = tuple((dc, dr) for dc in (-EDGE_PX, 0, EDGE_PX) for dr in (-EDGE_PX, 0, EDGE_PX) if dc or dr)
    return _Look(cell, inside, tuple(at(col + dc, row + dr) for dc, dr in shifts))


def _clear(fields: _Day, band: tuple[np.ndarray, np.ndarray], scl: tuple[np.ndarray, np.ndarray]) -> np.ndarray:
    """Where a scene is clear: its SCL pixel unmasked (0, masked, outside the tile and the swath)
    and its bands' pixel has data (DN 0 outside the swath)."""
    classes = np.where(scl[1], fields.scl[scl[0]], 0)
    return ~_MASKED[classes] & band[1] & (fields.dn[0][band[0]] != 0)


def _window(tile: Tile, geobox) -> tuple[slice, slice] | None:
    """The output pixels (rows, cols) the tile can reach, one pixel more on each side; None if none."""
    corners = [(tile.x0, tile.y0), (tile.x0 + tile.size_m, tile.y0), (tile.x0, tile.y0 - tile.size_m),
               (tile.x0 + tile.size_m, tile.y0 - tile.size_m)]  # fmt: skip
    to_out = Transformer.from_crs(tile.epsg, str(geobox.crs), always_xy=True)
    xs, ys = to_out.transform([c[0] for c in corners], [c[1] for c in corners])
    inv = ~geobox.transform
    cols, rows = zip(*(inv * (x, y) for x, y in zip(xs, ys, strict=True)), strict=True)
    h, w = geobox.shape
    r0, r1 = max(0, int(np.floor(min(rows))) - 1), min(h, int(np.ceil(max(rows))) + 1)
    c0, c1 = max(0, int(np.floor(min(cols))) - 1), min(w, int(np.ceil(max(cols))) + 1)
    return (slice(r0, r1), slice(c0, c1)) if r1 > r0 and c1 > c0 else None


def _truth(archive: RegionArchive, geobox) -> xr.Dataset:
    spec, cells = archive.spec, archive.cells
    h, w = geobox.shape
    t = geobox.transform
    looks: dict[str, tuple[tuple[slice, slice], _Look, _Look]] = {}
    for tile in archive.tiles:
        window = _window(tile, geobox)
        if window is None:
            continue
        rows, cols = window
        cc, rr = np.meshgrid(np.arange(cols.start, cols.stop) + 0.5, np.arange(rows.start, rows.stop) + 0.5)
        ox, oy = t.c + t.a * cc + t.b * rr, t.f + t.d * cc + t.e * rr
        if geobox.crs.epsg != tile.epsg:
            ox, oy = Transformer.from_crs(str(geobox.crs), tile.epsg, always_xy=True).transform(ox, oy)
        looks[tile.name] = (
            window,
            _look(tile, BAND_M, ox, oy, cells.pixels[(tile.name, BAND_M)]),
            _look(tile, SCL_M, ox, oy, cells.pixels[(tile.name, SCL_M)]),
        )
    scenes: dict[str, list[str]] = {}
    for item in archive.items():  # the tiles each day has, in (time, id) order as the cube fuses them
        scenes.setdefault(item["properties"]["datetime"][:10], []).append(item["properties"]["s2:mgrs_tile"])
    n_bands = len(BANDS)
    months: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    ambiguous = {m: np.zeros((h, w), dtype=bool) for m in spec.months}
    ground = archive.world.ground(cells.ix.ravel(), cells.iy.ravel())
    for d, (day, _) in enumerate(spec.days):
        fields = _day(archive.world, cells, d, ground)
        value = np.full((n_bands, h, w), np.nan, dtype=np.float32)
        empty = np.ones((h, w), dtype=bool)
        for name in scenes.get(day, []):
            if name not in looks:
                continue
            window, band, scl = looks[name]
            clear = _clear(fields, (band.cell, band.inside), (scl.cell, scl.inside))
            unsure = ambiguous[day[:7]][window]
            for b_shift, s_shift in zip(band.shifted, scl.shifted, strict=True):
                other = _clear(fields, b_shift, s_shift)
                moved = (b_shift[1] != band.inside) | (b_shift[0] != band.cell)
                unsure |= (other != clear) | (moved & (clear | other))
            take = empty[window] & clear
            value[(slice(None), *window)][:, take] = fields.harmonised[:, band.cell[take]]
            empty[window] &= ~take
        months.setdefault(day[:7], []).append((value, ~empty))
    data: dict[str, list[np.ndarray]] = {key: [] for key in BANDS}
    counts = []
    for month in spec.months:
        stack = np.stack([v for v, _ in months[month]])  # (days, bands, y, x)
        counts.append(np.stack([c for _, c in months[month]]).sum(axis=0).astype(np.uint16))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(stack.astype(np.float64), axis=0)
        for b, key in enumerate(BANDS):
            data[key].append(median[b].astype(np.float32))
    coords = {
        "time": np.array([np.datetime64(f"{m}-01", "ns") for m in spec.months]),
        "y": t.f + t.e * (np.arange(h) + 0.5),
        "x": t.c + t.a * (np.arange(w) + 0.5),
    }
    variables = {key: (("time", "y", "x"), np.stack(v)) for key, v in data.items()}
    variables["count"] = (("time", "y", "x"), np.stack(counts))
    variables["interior"] = (("time", "y", "x"), ~np.stack([ambiguous[m] for m in spec.months]))
    return xr.Dataset(variables, coords=coords, attrs={"crs": str(geobox.crs)})
