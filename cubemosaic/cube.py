"""The cube stage: solar days, the grid, and the resumable write of one masked, harmonised day a step.

Each solar day is one time step of ``cube.zarr``. Every scene of the day is read onto the
output grid and masked with its own SCL (so a cloud in one tile never hides a clear pixel of
an overlapping tile), harmonised (the processing-baseline offset removed, valid values kept
>= 1), and the day's scenes are fused (first clear value in scene order): one task per block,
by :func:`cubemosaic.read.day_block`. The day is then stored as uint16 DN and recorded as done,
so an interrupted run resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

import dask.array as da
import numpy as np
import pystac
import xarray as xr
from dask.base import tokenize
from odc.geo.geobox import GeoBox
from odc.geo.geom import box
from odc.geo.xr import xr_zeros

from . import store
from .blocks import lazy_blocks
from .errors import AssetReadError, ReadError
from .read import PLAIN, Access, day_block, read_ways
from .s2 import CloudMask
from .scenes import Scene, SceneSource, parse_scene
from .tuning import DAYS_PER_BATCH

__all__ = [
    "CubeSpec",
    "SolarDay",
    "build_cube",
    "group_by_solar_day",
    "output_geobox",
]

log = logging.getLogger(__name__)

#: 2: reflectance as float32 through a scale filter over uint16 (1: uint16 with a CF scale_factor).
CUBE_FORMAT = 2


@dataclass(frozen=True)
class SolarDay:
    """The scenes of one solar day: one time step of the cube."""

    day: dt.date
    items: tuple[Scene, ...]

    @property
    def time(self) -> np.datetime64:
        return np.datetime64(self.day.isoformat(), "ns")


def group_by_solar_day(items: Sequence[pystac.Item | Scene]) -> list[SolarDay]:
    """Scenes (STAC items, parsed here) grouped into solar days, days in time order, scenes in
    catalog (time, id) order."""
    scenes = [it if isinstance(it, Scene) else parse_scene(it) for it in items]
    days: dict[dt.date, list[Scene]] = {}
    for scene in sorted(scenes, key=lambda s: (s.datetime, s.id)):
        days.setdefault(scene.day, []).append(scene)
    return [SolarDay(d, tuple(v)) for d, v in sorted(days.items())]


def output_geobox(aoi: tuple[float, float, float, float], crs: str, resolution: float):
    """The output grid: ``aoi`` (lon/lat) projected to ``crs``, pixel edges on multiples of ``resolution``."""

    poly = box(*aoi, "EPSG:4326").to_crs(crs)
    return GeoBox.from_geopolygon(poly, resolution=resolution, crs=crs)


def chunk_layout(geobox, chunk_size: int) -> tuple[tuple[int, int], tuple[int, int]]:
    """Zarr chunk and shard (= dask chunk) shapes for the grid.

    Chunks are at most ``chunk_size`` and split each axis evenly (1690 px -> 2 x 845, not
    1024 + 666 padded to 2 x 1024: zarr encodes edge chunks at full size); shards hold 2 x 2.
    """
    chunks, shards = [], []
    for dim in geobox.shape:
        n = -(-dim // chunk_size)
        c = -(-dim // n)
        chunks.append(c)
        shards.append(c * min(2, n))
    return (chunks[0], chunks[1]), (shards[0], shards[1])


def cube_template(geobox, days: Sequence[SolarDay], bands: Sequence[str], shard: tuple[int, int]):
    """An empty (lazy) cube with every coordinate: the store's layout, written before any data."""

    grid = xr_zeros(geobox, dtype="float32", chunks=shard)
    shape = (len(days),) + geobox.shape
    chunks = (1,) + shard
    data = {
        name: (
            ("time", "y", "x"),
            da.zeros(shape, dtype="float32", chunks=chunks),
            {"long_name": f"{name} surface reflectance", "units": "1", "nodata": 0},
        )
        for name in bands
    }
    coords: dict[str, Any] = {
        "time": [d.time for d in days],
        "y": grid.y,
        "x": grid.x,
        "spatial_ref": grid.spatial_ref,
        "item_ids": ("time", np.array([" ".join(i.id for i in d.items) for d in days], dtype=object)),
        "platform": ("time", np.array([" ".join(sorted({i.platform for i in d.items})) for d in days], dtype=object)),
        "processing_baseline": (
            "time",
            np.array([" ".join(sorted({i.baseline for i in d.items})) for d in days], dtype=object),
        ),
    }
    ds = xr.Dataset(data, coords=coords)
    for name in bands:
        ds[name].attrs["grid_mapping"] = "spatial_ref"
    ds.attrs.update(
        title="cubemosaic Sentinel-2 L2A cube (cloud-masked, harmonised surface reflectance)",
        Conventions="CF-1.9",
    )
    return ds


@dataclass(frozen=True)
class CubeSpec:
    """What a cube is: its grid, its bands, its mask and how scenes are read onto the grid. The
    same spec and the same scenes make the same cube (its signature is made from them)."""

    #: The output grid (an odc-geo GeoBox).
    geobox: Any
    #: (output variable, asset key) pairs, in output order; a mapping is accepted.
    bands: tuple[tuple[str, str], ...]
    #: The SCL asset key.
    scl_key: str
    mask: CloudMask = CloudMask()
    resampling: str = "nearest"
    chunk_size: int = 1024
    #: A polygon (WGS84 WKT) outside which every pixel is no data.
    aoi_wkt: str | None = None

    def __post_init__(self) -> None:
        if isinstance(self.bands, Mapping):
            object.__setattr__(self, "bands", tuple(self.bands.items()))

    @property
    def band_keys(self) -> dict[str, str]:
        """Output variable -> asset key."""
        return dict(self.bands)


def load_day(day: SolarDay, spec: CubeSpec, shard: tuple[int, int], access: Access) -> dict[str, Any]:
    """Lazy (dask) uint16 arrays of shape (1, y, x) per band name for one solar day: one task per
    block (:func:`cubemosaic.read.day_block`) that reads, masks, harmonises and fuses the day's scenes."""
    geobox = spec.geobox
    if not day.items:  # every scene of the day was skipped: no observation
        empty = da.zeros((1,) + tuple(geobox.shape), dtype=np.uint16, chunks=(1,) + shard)
        return {name: empty for name in spec.band_keys}
    sources = _sources(day, spec)
    names = list(spec.band_keys)

    def task(ys: slice, xs: slice):
        return day_block, (sources, geobox[ys, xs], spec.mask, access, spec.aoi_wkt, spec.resampling)

    token = tokenize(sources, geobox, spec.mask.classes, spec.mask.dilation_m, spec.aoi_wkt, spec.resampling)
    arrays = lazy_blocks(task, tuple(geobox.shape), shard, len(names), f"day-block-{token}")
    return {name: arrays[i][None] for i, name in enumerate(names)}


def _sources(day: SolarDay, spec: CubeSpec) -> list[SceneSource]:
    keys = list(spec.band_keys.values())
    return [scene.source(keys, spec.scl_key) for scene in day.items]


def read_counts(days: Sequence[SolarDay], spec: CubeSpec) -> tuple[int, int]:
    """(assets read directly, assets warped) of ``days``: each asset (a band or the SCL of a scene)
    counted once, the way :func:`cubemosaic.read.day_block` reads it (:func:`cubemosaic.read.read_ways`)."""
    ways = [direct for day in days for source in _sources(day, spec) for _, direct in read_ways(source, spec.geobox,
            spec.resampling)]  # fmt: skip
    return sum(ways), len(ways) - sum(ways)


def signature(days: Sequence[SolarDay], spec: CubeSpec) -> dict[str, Any]:
    """What makes a cube: rerunning with the same signature resumes it."""
    return {
        "format": CUBE_FORMAT,
        "days": [[d.day.isoformat(), [i.id for i in d.items]] for d in days],
        "crs": str(spec.geobox.crs),
        "transform": list(spec.geobox.transform)[:6],
        "shape": list(spec.geobox.shape),
        "bands": spec.band_keys,
        "scl": spec.scl_key,
        "mask_classes": list(spec.mask.classes),
        "resampling": spec.resampling,
        "chunk_size": spec.chunk_size,
        # Only when set: a cube made before these options existed still resumes.
        **({"mask_dilation": spec.mask.dilation_m} if spec.mask.dilation_m else {}),
        **({"aoi_geometry": spec.aoi_wkt} if spec.aoi_wkt else {}),
    }


def build_cube(
    items: Sequence[pystac.Item | Scene],
    path: str,
    spec: CubeSpec,
    *,
    overwrite: bool = False,
    access: Access = PLAIN,
    on_read_error: str = "fail",
    writes: store.Writes = store.DIRECT,
    label: str = "cube",
    request: Mapping[str, Any] | None = None,
    parameter: str = "zarr_dir",
) -> str:
    """Write (or resume) the cube of ``items`` (STAC items or scenes parsed from them) made as
    ``spec`` says at ``path``; returns ``path``.

    With ``on_read_error="skip"`` a scene with an unreadable asset is left out of its day, and
    the skipped assets are logged and recorded in the store (then in the months' STAC items).
    ``writes``: how the days reach the store, the run's choice (:func:`cubemosaic.reach.choose_writes`);
    relayed, the workers compute the days and this process writes them (:mod:`cubemosaic.relay`).
    ``request``: what was asked (period, area, search filters), noted in the store
    (:func:`cubemosaic.store.note_request`). ``parameter``: the setting that places the store
    (``zarr_dir`` or ``cube_url``), named when it holds another request.
    """
    geobox, bands = spec.geobox, spec.band_keys
    days = group_by_solar_day(items)
    chunk, shard = chunk_layout(geobox, spec.chunk_size)
    template = cube_template(geobox, days, list(bands), shard)
    encoding = {name: store.zarr_encoding((1,) + chunk, (1,) + shard, compressor="lz4") for name in bands}
    sig = signature(days, spec)
    state = store.open_or_create(path, template, encoding, sig, overwrite=overwrite, label=label, parameter=parameter)
    if request is not None:
        store.note_request(path, request)
    todo = [i for i in range(len(days)) if i not in state.done]
    direct, warped = read_counts([days[i] for i in todo], spec)
    log.info("%s: %d asset(s) of the %d day(s) to write line up with the grid and are read directly, %d are "
             "warped (odc-loader's reader, from their native pixels)", label, direct, len(todo), warped)  # fmt: skip
    log.info(
        "%s: %d solar day(s), %d scene(s), grid %s at %g m in %s; %d day(s) to write",
        label,
        len(days),
        len(items),
        "x".join(map(str, geobox.shape[::-1])),
        geobox.resolution.x,
        geobox.crs,
        len(todo),
    )

    def write(batch: list[int]) -> list[dict[str, str]]:
        """The batch's days into the store; the assets left out (``on_read_error=skip``).

        The reader names the asset where a read fails (:class:`AssetReadError`); with
        ``skip`` its scene is left out of its day and the batch written again, until it goes
        through. Signing and write failures are not one asset's fault: they stop the run.
        """
        batch_days = {i: days[i] for i in batch}
        skipped: list[dict[str, str]] = []
        while True:  # each pass leaves out one more scene, or ends the loop
            try:
                steps = {i: load_day(day, spec, shard, access) for i, day in batch_days.items()}
                writes.write(path, steps, parameter=parameter)
                return skipped
            except AssetReadError as e:
                day = next((d for d in batch_days.values() if any(s.id == e.item_id for s in d.items)), None)
                if on_read_error != "skip" or day is None:
                    raise
                log.warning("%s: skipped asset %s of item %s (%s)", label, e.band, e.item_id, e.problem)
                skipped.append({"day": day.day.isoformat(), "item": e.item_id, "band": e.band, "problem": e.problem})
                batch_days = {
                    i: replace(d, items=tuple(s for s in d.items if s.id != e.item_id)) for i, d in batch_days.items()
                }
                if not any(d.items for d in batch_days.values()):
                    first = skipped[0]
                    raise ReadError(
                        f"every scene of {len(batch)} day(s) failed to read (on_read_error=skip leaves none); "
                        f"first: cannot read asset {first['band']} of item {first['item']}: {first['problem']}"
                    ) from None

    def name(i: int) -> str:
        return f"day {i + 1}/{len(days)}: {days[i].day} ({len(days[i].items)} scene(s))"

    store.run_steps(state, write, batch_size=DAYS_PER_BATCH, label=label, name=name, unit="days")
    return path
