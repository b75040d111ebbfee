"""What a request means before it runs: scenes, days, tiles, pixels, bytes, memory, tasks.

``stage=plan`` searches, cuts the area into tiles and prints these figures (for people in the log,
and on stdout as one JSON object) without writing anything; every real run logs the same figures
in its first lines, and a request whose figures exceed this machine stops before its first read.

The figures are estimates from the STAC items alone (no pixel is read):

- ``read_bytes``: for each tile and each scene that meets it, each asset's pixels under the tile
  at the level the reader decodes (the finest overview that nests in the output pixel, as
  :mod:`cubemosaic.read` picks it), times the asset's bytes per pixel: for a local file, its size
  on disk over its pixels; else :data:`BYTES_PER_PIXEL`.
- ``write_bytes``: the cube (a day a step over each tile), the monthly store and the COGs, at the
  compressed sizes per pixel measured on the benchmark's archives (:data:`CUBE_BYTES_PER_VALUE`...).
- ``peak_memory_mb``: the larger of the job's process and one Dask worker: a base (imports,
  GDAL's cache) plus, per thread, the largest task: a cube block (a shard of every band and a mask
  per scene of the day over its reach) or a month block (a shard's layers, and every day of the
  month of each band for a strip of it: a row of chunks).
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import shapely
from odc.geo.geobox import GeoBox
from odc.geo.geom import Geometry

from .cube import chunk_layout
from .errors import ConfigError
from .scenes import Scene
from .tiling import GridExtents, footprint
from .urls import is_local, local_path

__all__ = ["Figures", "check_feasible", "estimate"]

#: Bytes per pixel of an L2A asset whose size is not known: Planetary Computer's COGs of a
#: tile (10980 x 10980 at 10 m) are 150-250 MB for a reflectance band (deflate, with overviews),
#: 2-6 MB for the SCL at 20 m.
BYTES_PER_PIXEL = {"band": 1.6, "scl": 0.1}
#: Compressed bytes per stored value, measured on the benchmark's archives (year20, region20):
#: the cube (lz4, one uint16 a band and day), the monthly store (zstd), the COGs (zstd level 1
#: with a predictor, overviews 1/3 more).
CUBE_BYTES_PER_VALUE = 1.2
MONTHLY_BYTES_PER_VALUE = 1.3
COG_BYTES_PER_VALUE = 1.6
#: A process before its first task: Python, numpy, dask, rasterio/GDAL, zarr imported, and GDAL's
#: block cache as it fills (measured: the demo's run peaks at ~340 MB).
BASE_PROCESS_MB = 320.0
BASE_WORKER_MB = 250.0


@dataclass(frozen=True)
class Figures:
    """A request's plan."""

    scenes: int
    solar_days: int
    months: int
    tiles: int
    #: Output pixels (each band, each month): the tiles' grids.
    pixels: int
    read_bytes: int
    write_bytes: int
    #: The larger of the two below.
    peak_memory_mb: int
    process_memory_mb: int
    worker_memory_mb: int
    #: Dask tasks of the whole run (cube blocks, month blocks), and of its largest batch.
    tasks: int
    threads: int
    #: The largest tile, (rows, columns).
    largest_tile: tuple[int, int]
    #: Whether the tasks run in this process (a local run), not on a cluster's workers.
    local: bool = True

    def record(self) -> dict:
        """The figures for programs; the largest tile by name (its pair's order is numpy's, the
        log's line says width x height)."""
        h, w = self.largest_tile
        return {**asdict(self), "largest_tile": {"width": w, "height": h}}

    def lines(self) -> list[str]:
        """The plan for people, a figure a line."""
        h, w = self.largest_tile
        return [
            f"plan: {self.scenes} scene(s) on {self.solar_days} solar day(s), {self.months} month(s)",
            f"plan: {self.tiles} tile(s) (largest {w} x {h} px), {self.pixels / 1e6:.1f} Mpx of output a band and month",
            f"plan: about {_size(self.read_bytes)} to read, {_size(self.write_bytes)} to write",
            f"plan: peak memory about {self.process_memory_mb} MB in this process"
            + (
                f" ({self.threads} thread(s) run the tasks here)"
                if self.local
                else f", {self.worker_memory_mb} MB per Dask worker ({self.threads} thread(s) each)"
            )
            + f"; {self.tasks} task(s)",
        ]


def _size(n: float) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if n < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    raise AssertionError


def estimate(
    units: Sequence[tuple[GeoBox, Sequence[Scene]]],
    *,
    band_keys: Sequence[str],
    scl_key: str,
    n_layers: int,
    months: int,
    chunk_size: int,
    threads: int,
    local_threads: int | None = None,
    cube_threads: int | None = None,
) -> Figures:
    """The figures of a run over ``units`` (each a grid and the scenes that meet it).

    ``n_layers``: uint16 values a pixel and month the monthly store holds (bands of every
    statistic, the count, provenance). ``threads``: per Dask worker; ``cube_threads``: the cube
    stage's threads in this process when they differ from ``local_threads``; ``local_threads``: the job's
    own, when the tasks run in it (a local run), else ``None``.
    """
    scenes = {s.id: s for _, ss in units for s in ss}
    days = {s.day for s in scenes.values()}
    n_bands = len(band_keys)
    read = 0.0
    cube_values = 0.0
    largest_cube = largest_month = 0.0
    tasks = 0
    sizes: dict[str, float] = {}
    crs = str(units[0][0].crs) if units else "EPSG:4326"
    shapes = _Shapes(crs)
    keys = (*band_keys, scl_key)
    for geobox, unit_scenes in units:
        cell = shapely.box(*geobox.boundingbox)
        res = abs(geobox.resolution.x)
        ny, nx = geobox.shape
        chunk, shard = chunk_layout(geobox, chunk_size)
        shard_px = shard[0] * shard[1]
        strip_px = chunk[0] * shard[1]  # the composite reads a shard a row of chunks at a time
        blocks = math.ceil(ny / shard[0]) * math.ceil(nx / shard[1])
        by_day: dict = {}
        # Each asset's pixels under the tile at the level the reader decodes, times its bytes a pixel.
        grids = [(scene.assets[k], k) for scene in unit_scenes for k in keys if k in scene.assets]
        grids = [(g, k) for g, k in grids if g.transform is not None and g.shape is not None]
        overlaps = shapely.area(shapely.intersection([shapes.grid(g) for g, _ in grids], cell))
        for (grid, key), overlap in zip(grids, overlaps, strict=True):
            if overlap > 0:
                native = abs(grid.transform[0])
                pixels = overlap / (native * _nesting_factor(native, res)) ** 2
                read += pixels * _bytes_per_pixel(grid.href, grid.shape, "scl" if key == scl_key else "band", sizes)
        for scene in unit_scenes:
            by_day.setdefault(scene.day, []).append(scene)
        masks_px = 0.0
        for day_scenes in by_day.values():
            covered = shapely.area(shapely.intersection([shapes.footprint(s, cell) for s in day_scenes], cell))
            cube_values += min(1.0, float(covered.sum()) / cell.area) * ny * nx * n_bands
            # Each scene's mask over its reach in a block: at most the block, at most its footprint.
            masks_px = max(masks_px, float(np.minimum(covered / res**2, shard_px).sum()))
        # A cube block: the fused output and one scene's bands (uint16), a mask per scene of the day
        # over its reach (bool).
        cube_task = shard_px * 2 * n_bands * 2 + masks_px
        # A month block: a strip's days of the month of each band (uint16), sorted in place, and the
        # block's layers.
        month_task = strip_px * _max_days_per_month(by_day) * n_bands * 2 * 1.5 + shard_px * n_layers * 2
        largest_cube, largest_month = max(largest_cube, cube_task), max(largest_month, month_task)
        tasks += blocks * (len(by_day) + months)
    pixels = sum(g.shape[0] * g.shape[1] for g, _ in units)
    write = cube_values * CUBE_BYTES_PER_VALUE + pixels * months * n_layers * (
        MONTHLY_BYTES_PER_VALUE + COG_BYTES_PER_VALUE
    )
    # Per thread, the larger task of either stage; the cube's stage may run more threads than the
    # composite's (``cube_threads``: remote reads wait on the network, cluster.waiting_on_network).
    task_mb = max(largest_cube, largest_month) / 1e6
    local_mb = max(largest_cube * (cube_threads or local_threads or 0), largest_month * (local_threads or 0)) / 1e6
    worker = BASE_WORKER_MB + threads * task_mb
    process = BASE_PROCESS_MB + (local_mb if local_threads else 0.0)
    largest = max((tuple(g.shape) for g, _ in units), key=lambda s: s[0] * s[1], default=(0, 0))
    return Figures(
        scenes=len(scenes),
        solar_days=len(days),
        months=months,
        tiles=len(units),
        pixels=int(pixels),
        read_bytes=int(read),
        write_bytes=int(write),
        peak_memory_mb=int(max(process, worker if local_threads is None else 0)),
        process_memory_mb=int(process),
        worker_memory_mb=int(worker if local_threads is None else process),
        tasks=int(tasks),
        threads=int(local_threads or threads),
        largest_tile=(int(largest[0]), int(largest[1])),
        local=local_threads is not None,
    )


def check_feasible(figures: Figures, *, process_limit_mb: float, worker_limit_mb: float | None = None) -> None:
    """:class:`ConfigError` in one line when the plan needs more memory than a process (or a Dask
    worker) has: the figure, the limit, and what lowers it."""
    remedy = "lower chunk_size (a task holds a shard of 2 x 2 chunks) or cluster.threads_per_worker"
    if figures.process_memory_mb > process_limit_mb:
        raise ConfigError(
            "chunk_size",
            f"the plan needs about {figures.process_memory_mb} MB in this process, more than its "
            f"{process_limit_mb:.0f} MB: {remedy}",
        )
    if worker_limit_mb is not None and figures.worker_memory_mb > worker_limit_mb:
        raise ConfigError(
            "cluster.worker_memory",
            f"the plan needs about {figures.worker_memory_mb} MB per Dask worker, more than its "
            f"{worker_limit_mb:.0f} MB: raise cluster.worker_memory or {remedy}",
        )


def machine_memory_mb() -> float:
    """This machine's memory (or the container's limit, when it sets one), in MB."""
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    for limit_file in ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory/memory.limit_in_bytes"):
        try:
            text = Path(limit_file).read_text().strip()
        except OSError:
            continue
        if text.isdigit():
            total = min(total, int(text))
    return total / 1e6


class _Shapes:
    """Footprints and asset grids as shapely geometries in the output CRS, each projected once
    (odc-geo's reprojection costs ~1 ms a geometry; a plan meets each grid in several tiles)."""

    def __init__(self, crs: str) -> None:
        self.crs = crs
        self.extents = GridExtents(crs)
        self.footprints: dict[str, shapely.Geometry | None] = {}

    def grid(self, grid) -> shapely.Geometry:
        """The asset's grid in the output CRS (empty where it cannot be projected: no read counted)."""
        projected = self.extents.grid(grid)
        return shapely.Polygon() if projected is None else projected

    def footprint(self, scene: Scene, cell: shapely.Geometry) -> shapely.Geometry:
        """The scene's footprint (the whole ``cell`` where it states none)."""
        if scene.id not in self.footprints:
            fp = footprint(scene)
            self.footprints[scene.id] = _to_crs(fp, self.crs) if fp is not None else None
        found = self.footprints[scene.id]
        return cell if found is None else found


def _to_crs(geom: Geometry, crs: str) -> shapely.Geometry:
    """``geom`` in ``crs`` as shapely; empty where it cannot be projected (far outside the CRS's zone)."""
    try:
        out = geom.to_crs(crs).geom
        return out if out.is_valid else out.buffer(0)
    except Exception:  # noqa: BLE001  (pyproj's errors for points outside the projection)
        return shapely.Polygon()


def _nesting_factor(native: float, res: float) -> int:
    """The overview factor the reader decodes for ``res`` m from a ``native`` m asset: the largest
    power of two whose pixel nests in the output pixel (1 when none does)."""
    ratio = res / native
    factor = 1
    while ratio / (factor * 2) >= 1 and abs(ratio / (factor * 2) - round(ratio / (factor * 2))) < 1e-9:
        factor *= 2
    return factor


def _bytes_per_pixel(href: str, shape: tuple[int, int], kind: str, sizes: dict[str, float]) -> float:
    """The asset's bytes per native pixel: a local file's size on disk over its pixels (overviews
    included in the size), else the typical figure."""
    if href in sizes:
        return sizes[href]
    value = BYTES_PER_PIXEL[kind]
    if is_local(href):
        try:
            value = os.path.getsize(local_path(href)) / (shape[0] * shape[1])
        except OSError:
            pass
    sizes[href] = value
    return value


def _max_days_per_month(by_day: dict) -> int:
    counts: dict[tuple[int, int], int] = {}
    for day in by_day:
        counts[(day.year, day.month)] = counts.get((day.year, day.month), 0) + 1
    return max(counts.values(), default=0)


def n_months(start, end) -> int:
    """Calendar months the period touches."""
    return (end.year - start.year) * 12 + end.month - start.month + 1


def months_of(days) -> set[tuple[int, int]]:
    """The (year, month) the solar ``days`` fall in: the months that get a mosaic."""
    return {(d.year, d.month) for d in days}


def months_without_scenes(start, end, days) -> list[str]:
    """The period's months (``YYYY-MM``) in which none of the solar ``days`` falls: they get no
    mosaic, and the plan does not count them."""
    had = months_of(days)
    months = [
        (start.year + (start.month - 1 + i) // 12, (start.month - 1 + i) % 12 + 1) for i in range(n_months(start, end))
    ]
    return [f"{y:04d}-{m:02d}" for y, m in months if (y, m) not in had]
