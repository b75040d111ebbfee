"""The cube stage: odc-stac load, SCL mask, baseline harmonisation, resumable Zarr write.

Each solar day is one time step of ``cube.zarr``. Every scene of the day is loaded by
odc-stac onto the output grid, masked with its own SCL (so a cloud in one tile never
hides a clear pixel of an overlapping tile), harmonised (the processing-baseline offset
removed, valid values kept >= 1), and the day's scenes are fused (first clear value in
scene order). The day is then stored as uint16 DN and recorded as done, so an
interrupted run resumes where it stopped.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from functools import partial
from typing import Any

import dask.array as da
import numpy as np
import odc.stac
import pystac
import rasterio
import xarray as xr
from dask.base import tokenize
from odc.geo.geobox import GeoBox
from odc.geo.geom import box
from odc.geo.xr import xr_zeros
from rasterio.windows import from_bounds

from . import store
from .blocks import lazy_blocks
from .errors import AssetReadError, ReadError, SigningError, WriteError, one_line
from .read import PLAIN, Access, SceneSource, aoi_block, asset_grid, day_block, is_aligned
from .s2 import CloudMask, item_crs, item_offset, solar_day
from .signing import SigningRioDriver

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
#: Resamplings cubemosaic's own reader does where the grids line up (odc-stac does the rest, and
#: every resampling where they do not).
ALIGNED_RESAMPLING = ("nearest", "average")
#: Solar days computed together (one dask.array.store): enough to keep every thread busy.
DAYS_PER_BATCH = 16


@dataclass(frozen=True)
class SolarDay:
    """The scenes of one solar day: one time step of the cube."""

    day: dt.date
    items: tuple[pystac.Item, ...]

    @property
    def time(self) -> np.datetime64:
        return np.datetime64(self.day.isoformat(), "ns")


def group_by_solar_day(items: Sequence[pystac.Item]) -> list[SolarDay]:
    """Scenes grouped into solar days, days in time order, scenes in catalog (time, id) order."""
    days: dict[dt.date, list[pystac.Item]] = {}
    for item in sorted(items, key=lambda it: (it.datetime, it.id)):
        days.setdefault(solar_day(item), []).append(item)
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
        "platform": (
            "time",
            np.array(
                [" ".join(sorted({str(i.properties.get("platform", "")) for i in d.items})) for d in days], dtype=object
            ),
        ),
        "processing_baseline": (
            "time",
            np.array(
                [
                    " ".join(sorted({str(i.properties.get("s2:processing_baseline", "")) for i in d.items}))
                    for d in days
                ],
                dtype=object,
            ),
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


def _clear(loaded, keys: Sequence[str], masked, offset: int, inside) -> list:
    """uint16 DN per band, offset removed (>= 1) where clear, 0 where masked, no data or outside the AOI."""

    valid = inside & ~masked
    raw = [loaded[k].data[0] for k in keys]
    for band in raw:
        valid &= band != 0
    out = []
    for band in raw:
        dn = da.clip(band.astype("int32") - offset, 1, 65535)
        out.append(da.where(valid, dn, 0).astype("uint16"))
    return out


def _warped_mask(load, geobox, scl_key: str, mask: CloudMask, shard: tuple[int, int]):
    """The SCL mask of one scene on the output grid, for odc-stac's path: the SCL is warped onto the
    output grid (widened by the dilation radius so clouds just outside the grid count) and dilated on
    the output pixels, blocks overlapping by the radius."""

    pixel = abs(geobox.resolution.x)
    r = mask.radius_px(pixel)
    scl = load([scl_key], geobox.pad(r) if r else geobox)[scl_key].data[0]
    if not r:
        return scl.map_blocks(partial(mask.masked, pixel_size=pixel), dtype=bool, meta=np.array((), dtype=bool))
    masked = da.map_overlap(
        partial(mask.masked, pixel_size=pixel), scl, depth=r, boundary=0, dtype=bool, meta=np.array((), dtype=bool)
    )
    return masked[r:-r, r:-r].rechunk(shard)


#: Sentinel-2 L2A assets are uint16 with nodata 0, whatever the catalog states (or omits).
_STAC_CFG = {"*": {"assets": {"*": {"data_type": "uint16", "nodata": 0}}}}


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
    """Lazy (dask) uint16 arrays of shape (1, y, x) per band name for one solar day.

    Grids that line up with the output (and nearest resampling) are read by
    :func:`cubemosaic.read.day_block`, one task per block that reads, masks, harmonises and
    fuses; anything else goes through odc-stac's load (which warps).
    """
    geobox, bands, scl_key, mask, resampling, aoi_wkt = (
        spec.geobox,
        spec.band_keys,
        spec.scl_key,
        spec.mask,
        spec.resampling,
        spec.aoi_wkt,
    )
    if not day.items:  # every scene of the day was skipped: no observation
        empty = da.zeros((1,) + tuple(geobox.shape), dtype=np.uint16, chunks=(1,) + shard)
        return {name: empty for name in bands}
    sources = _aligned_sources(day, geobox, bands, scl_key) if resampling in ALIGNED_RESAMPLING else None
    if sources is not None:
        return _aligned_day(sources, geobox, list(bands), mask, shard, access, aoi_wkt, resampling)

    keys = list(bands.values())

    def aoi_task(ys: slice, xs: slice):
        return _aoi_step, (aoi_wkt, geobox[ys, xs])

    name = f"aoi-{tokenize(aoi_wkt, geobox)}"
    inside = lazy_blocks(aoi_task, tuple(geobox.shape), shard, 1, name, dtype=bool)[0]
    fused: list | None = None
    for item in day.items:

        def load(names: list[str], grid, item=item):
            with rasterio.Env(**access.env()):  # odc-stac captures the environment into its tasks
                return odc.stac.load(
                    [item],
                    bands=names,
                    geobox=grid,
                    chunks={"y": shard[0], "x": shard[1]},
                    resampling={"*": resampling, scl_key: "nearest"},
                    groupby="id",
                    dtype="uint16",
                    stac_cfg=_STAC_CFG,
                    driver=SigningRioDriver(access.sign) if access.sign else None,
                    fail_on_error=True,
                    # JPEG2000's resolution levels are wavelet low-pass images, not samples.
                    use_overviews=not any(_is_jpeg2000(item.assets[k]) for k in names),
                )

        masked = _warped_mask(load, geobox, scl_key, mask, shard)
        clear = _clear(load(keys, geobox), keys, masked, item_offset(item, keys[0]), inside)
        fused = clear if fused is None else [_first(a, b) for a, b in zip(fused, clear, strict=True)]
    assert fused is not None
    return {name: arr[None] for name, arr in zip(bands, fused, strict=True)}


def _is_jpeg2000(asset: pystac.Asset) -> bool:
    return (asset.media_type or "").startswith("image/jp2") or asset.href.lower().endswith(".jp2")


def _aoi_step(aoi_wkt: str | None, geobox) -> np.ndarray:

    return aoi_block(aoi_wkt, geobox)[None]


def _aligned_sources(day: SolarDay, geobox, bands: Mapping[str, str], scl_key: str) -> list | None:
    """The day's scenes as :class:`~cubemosaic.read.SceneSource`, if every asset lines up with the grid."""

    keys = list(bands.values())
    sources = []
    for item in day.items:
        crs = item_crs(item)
        grids = [asset_grid(item, key, crs) for key in keys]
        scl = asset_grid(item, scl_key, crs)
        if not all(is_aligned(g, geobox) for g in [*grids, scl]):
            return None
        sources.append(SceneSource(item.id, tuple(grids), scl, item_offset(item, keys[0])))  # type: ignore[arg-type]
    return sources


def _aligned_day(
    sources,
    geobox,
    names: Sequence[str],
    mask: CloudMask,
    shard: tuple[int, int],
    access: Access,
    aoi_wkt: str | None,
    resampling: str,
) -> dict[str, Any]:

    def task(ys: slice, xs: slice):
        return day_block, (sources, geobox[ys, xs], mask, access, aoi_wkt, resampling)

    token = tokenize(sources, geobox, mask.classes, mask.dilation_m, aoi_wkt, resampling)
    day = lazy_blocks(task, tuple(geobox.shape), shard, len(names), f"day-block-{token}")
    return {name: day[i][None] for i, name in enumerate(names)}


def _first(a, b):

    return da.where(a != 0, a, b)


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
    items: Sequence[pystac.Item],
    path: str,
    spec: CubeSpec,
    *,
    overwrite: bool = False,
    access: Access = PLAIN,
    on_read_error: str = "fail",
    relay: Any = None,
) -> str:
    """Write (or resume) the cube of ``items`` made as ``spec`` says at ``path``; returns ``path``.

    With ``on_read_error="skip"`` a scene with an unreadable asset is left out of its day, and
    the skipped assets are logged and recorded in the store (then in the months' STAC items).
    ``relay``: a ``distributed.Client`` whose workers cannot see ``path``; they compute the
    days and this process writes them (:mod:`cubemosaic.relay`).
    """
    geobox, bands, scl_key, resampling = spec.geobox, spec.band_keys, spec.scl_key, spec.resampling
    days = group_by_solar_day(items)
    chunk, shard = chunk_layout(geobox, spec.chunk_size)
    template = cube_template(geobox, days, list(bands), shard)
    encoding = {name: store.zarr_encoding((1,) + chunk, (1,) + shard, compressor="lz4") for name in bands}
    sig = signature(days, spec)
    state = store.open_or_create(path, template, encoding, sig, overwrite=overwrite, label="cube")
    todo = [i for i in range(len(days)) if i not in state.done]
    if resampling in ALIGNED_RESAMPLING:
        aligned = sum(_aligned_sources(days[i], geobox, bands, scl_key) is not None for i in todo)
        log.info("cube: %d of %d day(s) to write line up with the grid (read directly), the rest go through "
                 "odc-stac (warped)", aligned, len(todo))  # fmt: skip
    log.info(
        "cube: %d solar day(s), %d scene(s), grid %s at %g m in %s; %d day(s) to write",
        len(days),
        len(items),
        "x".join(map(str, geobox.shape[::-1])),
        geobox.resolution.x,
        geobox.crs,
        len(todo),
    )

    def lazy(day: SolarDay) -> dict[str, Any]:
        return load_day(day, spec, shard, access)

    keys = [*bands.values(), scl_key]

    def write(batch: list[int]) -> list[dict[str, str]]:
        """The batch's days into the store; the assets left out (``on_read_error=skip``)."""
        batch_days = {i: days[i] for i in batch}
        skipped: list[dict[str, str]] = []
        while True:  # each pass leaves out at least one more scene, or ends the loop
            try:
                store.write_steps(path, {i: lazy(day) for i, day in batch_days.items()}, relay)
                return skipped
            except (SigningError, WriteError):
                raise  # no token, no read: not one asset's fault; a failed write is not a failed read
            except AssetReadError as e:  # cubemosaic's reader names the asset where the read failed
                if on_read_error != "skip":
                    raise
                broken = [
                    (d, it, e.band, e.problem) for d in batch_days.values() for it in d.items if it.id == e.item_id
                ]
                if not broken:
                    raise
            except Exception as e:  # odc-stac's warper does not say which file failed: each is tried
                left = list(batch_days.values())
                broken = _broken_assets(left, geobox, keys, access)
                if on_read_error != "skip" or not broken:
                    raise _read_error(e, broken, left) from None
            for day, item, key, problem in broken:
                log.warning("cube: skipped asset %s of item %s (%s)", key, item.id, problem)
                skipped.append({"day": day.day.isoformat(), "item": item.id, "band": key, "problem": problem})
            bad = {item.id for _, item, _, _ in broken}
            if all(it.id in bad for d in batch_days.values() for it in d.items):
                first = broken[0]
                raise ReadError(
                    f"every scene of {len(batch)} day(s) failed to read (on_read_error=skip leaves none); "
                    f"first: cannot read asset {first[2]} of item {first[1].id}: {first[3]}"
                )
            batch_days = {
                i: replace(day, items=tuple(it for it in day.items if it.id not in bad))
                for i, day in batch_days.items()
            }

    def name(i: int) -> str:
        return f"day {i + 1}/{len(days)}: {days[i].day} ({len(days[i].items)} scene(s))"

    store.run_steps(state, write, batch_size=DAYS_PER_BATCH, label="cube", name=name)
    return path


def _broken_assets(
    days: Sequence[SolarDay],
    geobox,
    keys: Sequence[str],
    access: Access,
) -> list[tuple[SolarDay, pystac.Item, str, str]]:
    """Every asset of ``days`` that cannot be read over ``geobox``, with its problem.

    For odc-stac's path only: its warper does not name the file that failed ("Chunk and warp
    failed"), so after a failure there each asset is read again here, at the output resolution.
    cubemosaic's own reader raises :class:`~cubemosaic.errors.AssetReadError` where it fails.
    """
    found = []
    for day in days:
        for item in day.items:
            for key in keys:
                problem = _probe(item.assets[key].get_absolute_href() or item.assets[key].href, geobox, access)
                if problem:
                    found.append((day, item, key, problem))
    return found


def _read_error(e: Exception, broken: Sequence[tuple], days: Sequence[SolarDay]) -> Exception:
    """A :class:`ReadError` naming the first broken asset (item id and band), else the scenes."""
    if isinstance(e, MemoryError):
        return e
    if broken:
        _, item, key, problem = broken[0]
        return ReadError(f"cannot read asset {key} of item {item.id}: {problem}")
    ids = ", ".join(i.id for d in days for i in d.items)
    return ReadError(f"cannot read the scenes {ids}: {one_line(str(e))}")


def _probe(href: str, geobox, access: Access) -> str | None:
    """Read ``href`` over ``geobox`` at its resolution; the problem as one line, or None."""

    def read(url: str) -> None:
        with rasterio.open(url) as src:  # as the readers do: with retries, signed
            bounds = geobox.extent.to_crs(src.crs).boundingbox
            window = from_bounds(*bounds, transform=src.transform).intersection(
                rasterio.windows.Window(0, 0, src.width, src.height)
            )
            scale = abs(src.transform.a) / geobox.resolution.x
            shape = (max(1, round(window.height * scale)), max(1, round(window.width * scale)))
            src.read(1, window=window, out_shape=shape)

    try:
        access.read(href, read)
    except rasterio.errors.WindowError:
        return None  # the asset does not cover the area: not what failed
    except Exception as e:  # rasterio and GDAL raise many types; any of them is the answer
        return one_line(f"{type(e).__name__}: {e}")
    return None
