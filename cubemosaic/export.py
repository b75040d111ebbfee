"""The export stage: one COG per month and layer, and a STAC catalog.

For each month of ``monthly.zarr`` with any clear pixel, writes under ``output_dir``::

    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM.tif        the first statistic, one band per requested band
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM-count.tif  clear observations per pixel
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM-<layer>.tif each other layer (p25, medoid, medoid-day, ...)
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM-quicklook.png  true-colour quick-look (item thumbnail)
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM.json       its STAC item, an asset per COG (its file:checksum)
    overview.png                                             every month's quick-look side by side

and ``collection.json``, the root of the outputs: a self-contained STAC Collection with relative
hrefs (extent, summaries, ``item_assets``; the items belong to it), built by
:func:`build_collection` as a tiled run's is. ``catalog.json``, the root earlier versions wrote,
is kept for their users: a STAC Catalog linking the same item files. What the layers are (their
variables, dtype, nodata, scale, titles) is read from the monthly store, which the composite stage
wrote from :mod:`cubemosaic.statistics`. Each COG is streamed from the store a shard at a time
into a tiled GeoTIFF, given its overviews there and copied into a COG by GDAL, validated with
rio-cogeo, then renamed into place: memory does not grow with the grid.
"""

from __future__ import annotations

import calendar
import datetime as dt
import errno
import hashlib
import json
import logging
import os
import shutil
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
import pystac
import rasterio
import rasterio.shutil
import shapely
import xarray as xr
from odc.geo.geobox import GeoBox
from pystac.extensions.eo import Band, EOExtension
from pystac.extensions.file import FileExtension
from pystac.extensions.projection import ProjectionExtension
from pystac.extensions.raster import DataType, RasterBand, RasterExtension
from rasterio.enums import ColorInterp, Resampling
from rasterio.windows import Window
from rio_cogeo.cogeo import cog_validate

from . import __version__, store
from .aoi import aoi_block
from .blocks import block_slices
from .errors import OutputError, WriteError, one_line
from .quicklook import Quicklook, month_quicklook, overview_picture
from .s2 import CloudMask
from .statistics import COUNT_KEY, REFLECTANCE, Composite, Layer, count_layer
from .tiling import GRID_EXTENSION
from .tuning import EXPORT_THREADS, configure

__all__ = [
    "Month",
    "MonthlySource",
    "Written",
    "build_collection",
    "build_item",
    "export_months",
    "month_items",
    "store_layers",
    "write_cog",
    "write_months",
]

log = logging.getLogger(__name__)
PREFIX = "monthly-mosaic"


#: A source of one COG's pixels: (ys, xs) -> the (bands, y, x) block there.
BlockReader = Callable[[slice, slice], np.ndarray]


def write_cog(
    path: Path,
    read: BlockReader,
    *,
    shape: tuple[int, int, int],
    block: tuple[int, int],
    dtype: str,
    crs: Any,
    transform: Any,
    descriptions: Sequence[str],
    nodata: float | None,
    overview_resampling: str,
    scale: float = 1.0,
    tags: Mapping[str, str] | None = None,
) -> None:
    """Write the (bands, y, x) raster of ``shape``, read block by block with ``read``, as a validated
    COG at ``path`` (temp files, validate, rename).

    Streamed, so memory does not grow with the grid: each ``block`` (the store's shard) is read
    and written into an uncompressed tiled GeoTIFF on disk beside ``path``, its overviews are built
    in that file, and GDAL's GTiff driver copies both into the compressed COG
    (``COPY_SRC_OVERVIEWS``, GDAL's own COG layout: IFDs first, the ghost header), all through GDAL's
    block cache (:data:`cubemosaic.tuning.GDAL_CACHE_MB`, set as ``GDAL_CACHEMAX`` in the
    environment by :func:`cubemosaic.tuning.configure` before GDAL's first read; set later as a
    config option it was measured to make GDAL's COG driver 2.5x slower).
    Every band carries ``scale`` (offset 0) as GDAL band metadata, so GDAL, QGIS and rioxarray
    (``mask_and_scale=True``) read reflectance as the Zarr store gives it; bands named red,
    green, blue first are tagged as such (colour interpretation), so viewers show true colour.
    rio-cogeo validates the result.
    """

    configure()  # GDAL's block cache, before GDAL's first use in this process (an export-only run's)
    count, height, width = shape
    tile = 512 if min(height, width) >= 2048 else 256
    # Overviews down to ~128 px, at least one level, so small mosaics get overviews too; but each
    # at least one pixel smaller on both sides: a tile's edge sliver (1 x 26 px) got a "2x" overview
    # of one row, which rio-cogeo refuses (decimation 1), so its every rerun failed.
    levels = min(max(1, int(np.log2(max(height, width) / 128))), int(np.log2(min(height, width))))
    # zstd level 1 with the horizontal predictor, measured on the benchmark's mosaics: 0.13 s a
    # month against 0.21 s at level 3 for files 2% larger; DEFLATE was slower and larger.
    cog_options = dict(
        driver="GTiff",
        copy_src_overviews=True,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        interleave="pixel",
        compress="ZSTD",
        zstd_level=1,
        predictor=3 if np.dtype(dtype).kind == "f" else 2,  # floating-point or horizontal differencing
        num_threads="ALL_CPUS",
        bigtiff="IF_SAFER",
    )
    overviews = ([2**i for i in range(1, levels + 1)], Resampling[overview_resampling.lower()])
    staged = path.with_name(f".{path.name}.stream.tif")
    tmp = path.with_name(f".{path.name}.partial")
    profile = dict(
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype=dtype,
        crs=crs,
        transform=transform,
        nodata=nodata,
        tiled=True,
        blockxsize=tile,
        blockysize=tile,
        bigtiff="IF_SAFER",  # uncompressed: written and read once, on local disk
    )
    try:
        _stream_and_copy(
            staged, tmp, path, read, profile=profile, cog_options=cog_options, overviews=overviews,
            descriptions=descriptions, scale=scale, tags=tags, block=block,
        )  # fmt: skip
    except (OSError, SystemError, rasterio.errors.RasterioError) as e:
        # A full or failing disk: GDAL says so as RasterioIOError, CPLE_* errors or SystemError.
        raise WriteError(f"output_dir: cannot write {path}: {_write_problem(e, path.parent)}") from None
    finally:
        staged.unlink(missing_ok=True)
        tmp.unlink(missing_ok=True)


def _write_problem(e: BaseException, folder: Path) -> str:
    """Why a write into ``folder`` failed, in one line. A full disk is said as such: GDAL's
    errors often say only "Write failed", so the disk's free space is looked at too."""
    text = one_line(str(e) or type(e).__name__)
    try:
        free = shutil.disk_usage(folder).free
    except OSError:
        free = None
    full = getattr(e, "errno", None) == errno.ENOSPC or "No space left" in text or "Free disk space" in text
    if full or (free is not None and free < FULL_DISK_BYTES):
        return f"No space left on device ({(free or 0) // 1024} kB free)"
    return f"{type(e).__name__}: {text}"


#: Free space under which a failed write is said to be a full disk (a COG's staging file needs more).
FULL_DISK_BYTES = 1 << 20


def _stream_and_copy(
    staged: Path,
    tmp: Path,
    path: Path,
    read: BlockReader,
    *,
    profile: Mapping[str, Any],
    cog_options: Mapping[str, Any],
    overviews: tuple[list[int], Resampling],
    descriptions: Sequence[str],
    scale: float,
    tags: Mapping[str, str] | None,
    block: tuple[int, int],
) -> None:
    """Stream the blocks into the tiled GeoTIFF ``staged``, build its ``overviews`` (factors,
    resampling) there, copy both into the COG ``tmp``, validate, rename.

    Not GDAL's COG driver, which makes the same layout from ``staged`` 2.7x slower: 3.7 s against
    1.4 s for a 4096 x 4096 px month of four bands on one thread (0.6 s for the overviews built
    here, 0.8 s for the compressed copy), the same file byte for byte where the sides divide by
    the overview factors. Where they do not, an overview's size is rounded up here (gdaladdo's
    rule: 301 px for a 601 px side at 2x) where the COG driver rounded it down (300 px), so its
    pixels are a little smaller rather than a little larger than 2^k source pixels; either way
    GDAL's nodata-aware average. This is the recipe of GDAL's Cloud Optimized GeoTIFF notes
    (gdaladdo, then a copy with ``COPY_SRC_OVERVIEWS=YES``) and rio-cogeo's own (whose
    ``cog_translate`` took 2.9 s, copying the file once more)."""
    count, height, width = profile["count"], profile["height"], profile["width"]
    with rasterio.open(staged, "w", **profile) as dst:
        for i, desc in enumerate(descriptions, start=1):
            dst.set_band_description(i, desc)
        dst.scales = [scale] * count
        dst.offsets = [0.0] * count
        dst.colorinterp = _colour_interpretation(descriptions)
        dst.update_tags(**dict(tags or {}))
        for row in block_slices((height, width), block):
            for ys, xs in row:
                window = Window(xs.start, ys.start, xs.stop - xs.start, ys.stop - ys.start)
                dst.write(read(ys, xs), window=window)
        dst.build_overviews(*overviews)
    rasterio.shutil.copy(str(staged), str(tmp), **cog_options)
    valid, errors, _ = cog_validate(str(tmp), quiet=True)
    if not valid:
        raise OutputError(f"{path.name} failed COG validation: {'; '.join(errors)}")
    os.replace(tmp, path)


def _any_clear(count: Any, i: int, shard: tuple[int, int]) -> bool:
    """Whether month ``i`` of the count array has any clear observation (read a shard at a time)."""

    return any(bool(count[i, ys, xs].any()) for row in block_slices(tuple(count.shape[1:]), shard) for ys, xs in row)


def _colour_interpretation(names: Sequence[str]) -> list:
    """Red, green, blue for bands so named when they come first (what a GeoTIFF can say without a
    side file), grey for a single band, undefined for the others."""

    lowered = [n.lower() for n in names]
    if lowered[:3] == ["red", "green", "blue"]:
        return [ColorInterp.red, ColorInterp.green, ColorInterp.blue] + [ColorInterp.undefined] * (len(names) - 3)
    if len(names) == 1:
        return [ColorInterp.gray]
    return [ColorInterp.gray] + [ColorInterp.undefined] * (len(names) - 1)


def _month_range(month: np.datetime64) -> tuple[dt.datetime, dt.datetime]:
    start = dt.datetime.fromisoformat(str(month.astype("datetime64[D]"))).replace(tzinfo=dt.timezone.utc)
    last = calendar.monthrange(start.year, start.month)[1]
    end = start.replace(day=last, hour=23, minute=59, second=59, microsecond=999000)
    return start, end


#: STAC processing extension: how each month was made.
PROCESSING_EXTENSION = "https://stac-extensions.github.io/processing/v1.2.0/schema.json"
#: The other extensions the outputs use (the schema versions pystac writes the fields of).
PROJECTION_EXTENSION = "https://stac-extensions.github.io/projection/v2.0.0/schema.json"
RASTER_EXTENSION = "https://stac-extensions.github.io/raster/v1.1.0/schema.json"
EO_EXTENSION = "https://stac-extensions.github.io/eo/v1.1.0/schema.json"
#: The id of the outputs' Collection (and of the Catalog beside it): how a rerun knows its own.
COLLECTION_ID = "cubemosaic"


def _footprint(geobox, aoi_wkt: str | None) -> tuple[dict[str, Any], list[float]]:
    """(GeoJSON geometry, bbox) in WGS84 of what the mosaic covers: the polygon AOI, else the grid."""
    footprint = geobox.extent.to_crs("EPSG:4326")
    if not aoi_wkt:
        return footprint.json, list(footprint.boundingbox)

    area = shapely.from_wkt(aoi_wkt).intersection(footprint.geom)
    return shapely.geometry.mapping(area), list(area.bounds)


def _lineage(made: Mapping[str, Any], summary: str) -> tuple[str, dict[str, Any]]:
    """(processing:lineage text, the cloud mask record) from the cube's signature and what the
    month's mosaic is (its statistic's summary)."""

    mask = CloudMask(tuple(made.get("mask_classes") or ()), float(made.get("mask_dilation") or 0.0))
    grown = f", clouds, cirrus and cloud shadows grown by {mask.dilation_m:g} m" if mask.dilation_m else ""
    text = (
        f"Sentinel-2 L2A scenes masked with the SCL (classes {', '.join(map(str, mask.classes))} masked{grown}), "
        f"processing-baseline offset removed, same-day scenes fused, then {summary}"
    )
    return text, mask.provenance()


@dataclass(frozen=True)
class Month:
    """One month of the monthly store, as the export writes it."""

    index: int
    #: YYYY-MM.
    tag: str
    time: np.datetime64
    #: The source STAC items of its scenes.
    sources: tuple[str, ...]
    n_days: int

    @property
    def name(self) -> str:
        return f"{PREFIX}-{self.tag}"

    def path(self, output_dir: Path, layer: Layer) -> Path:
        return output_dir / self.name / f"{self.name}{layer.suffix}.tif"


def _raster_band(layer: Layer) -> RasterBand:
    kind = layer.kind
    fields: dict[str, Any] = {"data_type": DataType(kind.dtype)}
    if kind.nodata is not None:
        fields["nodata"] = "nan" if np.isnan(kind.nodata) else kind.nodata
    if kind.scale != 1.0:
        fields.update(scale=kind.scale, offset=0.0)
    if kind.unit:
        fields["unit"] = kind.unit
    return RasterBand.create(**fields)


@dataclass(frozen=True)
class MonthlySource:
    """What a monthly store's months are made of, as every month's STAC item says it: its layers
    and their lineage, its grid, the request its cube was made for (the cube's signature) and the
    assets left out of it."""

    layers: tuple[Layer, ...]
    summary: str
    geobox: GeoBox
    made: Mapping[str, Any]
    skipped: tuple[Mapping[str, str], ...]


def build_item(month: Month, folder: Path, source: MonthlySource) -> pystac.Item:
    """The month's STAC item: its footprint, period, projection, lineage and an asset per layer
    (a COG, with ``raster:bands`` and, for reflectance, ``eo:bands``)."""

    layers, geobox, made, summary = source.layers, source.geobox, source.made, source.summary
    start, end = _month_range(month.time)
    geometry, bbox = _footprint(geobox, made.get("aoi_geometry"))
    lineage, cloud_mask = _lineage(made, summary)
    item = pystac.Item(
        id=month.name,
        geometry=geometry,
        bbox=bbox,
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties={
            "title": f"Sentinel-2 L2A cloud-free mosaic, {month.tag}",
            "cubemosaic:source_items": list(month.sources),
            "cubemosaic:n_days": month.n_days,
            "cubemosaic:cloud_mask": cloud_mask,
            "constellation": "sentinel-2",
            "processing:lineage": lineage,
            "processing:software": {"cubemosaic": __version__},
        },
    )
    item.stac_extensions.append(PROCESSING_EXTENSION)
    for layer in layers:
        asset = pystac.Asset(
            href=str(folder / f"{month.name}{layer.suffix}.tif"),
            media_type=pystac.MediaType.COG,
            title=layer.title,
            roles=list(layer.roles),
        )
        item.add_asset(layer.key, asset)
        RasterExtension.ext(asset, add_if_missing=True).bands = [_raster_band(layer) for _ in layer.variables]
        if layer.kind is REFLECTANCE:
            EOExtension.ext(asset, add_if_missing=True).bands = [
                Band.create(name=b, common_name=b) for b in layer.bands
            ]
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if geobox.crs.epsg:
        proj.code = f"EPSG:{geobox.crs.epsg}"
    else:
        proj.wkt2 = geobox.crs.to_wkt()
    proj.shape = list(geobox.shape)
    proj.transform = list(geobox.transform)[:6]
    proj.bbox = list(geobox.extent.boundingbox)
    return item


def store_layers(monthly: xr.Dataset, variables: Sequence[str]) -> tuple[tuple[Layer, ...], str]:
    """The layers a monthly store holds and what its mosaic is (its composite record; a store
    written before there were statistics holds the median of each band and the count)."""
    record = json.loads(monthly.attrs.get("composite") or "null")
    if record:
        return tuple(Layer.from_record(r) for r in record["layers"]), record["lineage"]
    bands = tuple(v for v in variables if v != COUNT_KEY)
    default = Composite(bands)
    return default.layers(), default.statistics[0].summary()


def _write_month(
    month: Month,
    layers: Sequence[Layer],
    arrays: Mapping[str, Any],
    output_dir: Path,
    source: Mapping[str, str],
    common,
    cluster: ClusterCogs | None = None,
) -> list[Path]:
    """Write the month's COGs, one per layer, that are missing or were made from something else
    (on the cluster's workers with ``cluster``); remove its COGs of layers no longer asked for.
    Returns the COGs written now."""
    i = month.index
    wanted = {month.path(output_dir, layer) for layer in layers}
    stale = [
        p
        for p in (output_dir / month.name).glob(f"{month.name}-*.tif")
        if p not in wanted and _written_from(p, {})  # one of ours: it carries the source tag
    ]
    written: list[Path] = []
    for layer in layers:
        path = month.path(output_dir, layer)
        if _written_from(path, source):
            continue
        path.parent.mkdir(parents=True, exist_ok=True)
        options = dict(
            shape=(len(layer.variables), *common["shape"]),
            block=common["block"],
            dtype=layer.kind.dtype,
            crs=common["crs"],
            transform=common["transform"],
            descriptions=layer.bands,
            nodata=layer.kind.nodata,
            overview_resampling=layer.kind.overview,
            scale=layer.kind.scale,
            tags=source,
        )
        if cluster is not None:
            cluster.write(path, arrays, layer.variables, i, options)
        else:
            write_cog(path, lambda ys, xs, layer=layer: np.stack([arrays[v][i, ys, xs] for v in layer.variables]),
                      **options)  # fmt: skip
        note_checksum(path)
        written.append(path)
    for path in stale:
        path.unlink(missing_ok=True)
        checksum_file(path).unlink(missing_ok=True)
        log.info("export: removed %s, a layer the request no longer asks for", path)
    return written


def _catalog_complete(output_dir: Path, months: Sequence[Month], layers: Sequence[Layer]) -> bool:
    """Whether the catalog in ``output_dir`` lists exactly these months and every file it needs is
    there (items, COGs, quick-looks, the overview): else the rerun rewrites it."""
    if listed_months(output_dir) != {output_dir / m.name for m in months}:
        return False
    needed = [output_dir / "collection.json", output_dir / "catalog.json", output_dir / "overview.png"]
    for m in months:
        folder = output_dir / m.name
        needed += [folder / f"{m.name}.json", folder / f"{m.name}-quicklook.png"]
        needed += [m.path(output_dir, layer) for layer in layers]
    # An item from before the items recorded their COGs' checksums is written again, with them.
    cogs = [m.path(output_dir, layer) for m in months for layer in layers]
    return all(p.is_file() for p in needed) and all(_item_checksum(p) for p in cogs)


@dataclass(frozen=True)
class Written:
    """What :func:`write_months` wrote (or found up to date) in one folder: the months with a
    clear pixel, and what their items are made from."""

    folder: Path
    months: tuple[Month, ...]
    #: Whether any COG was written now (else every one was up to date).
    new: bool
    source: MonthlySource

    @property
    def layers(self) -> tuple[Layer, ...]:
        return self.source.layers

    def paths(self) -> list[Path]:
        """The months' mosaic COGs."""
        return [m.path(self.folder, self.layers[0]) for m in self.months]


def write_months(
    monthly_path: str, folder: Path, *, label: str = "", cluster: ClusterCogs | None = None
) -> Written | None:
    """Write the COGs (one per layer) of every month of the monthly store at ``monthly_path`` with
    a clear pixel into ``folder``; ``None`` when no month has one. COGs made from the same request
    and scenes are kept as they are. With ``cluster``, the COGs are made on its Dask workers, all
    months at once (else two months at a time in this process)."""

    attrs = store.read_attrs(monthly_path)
    if not attrs.get("complete"):
        raise OutputError(f"zarr_dir: {monthly_path} is not complete; run stage=composite first")
    # Coordinates and attributes only; the pixels are read shard by shard from zarr.
    monthly = store.open_labels(monthly_path, remedy=store.MONTHLY_REMEDY)
    layers, summary = store_layers(monthly, attrs["variables"])
    mosaic, count = layers[0], count_layer(layers)
    geobox = monthly.odc.geobox
    n = len(monthly.time)
    months = [
        Month(
            i,
            str(monthly.time.values[i])[:7],
            monthly.time.values[i],
            tuple(str(monthly["item_ids"].values[i]).split()),
            int(monthly["n_days"].values[i]),
        )
        for i in range(n)
    ]
    arrays = store.dn_arrays(
        monthly_path, [v for layer in layers for v in layer.variables], remedy=store.MONTHLY_REMEDY
    )
    first = arrays[mosaic.variables[0]]
    shard = tuple((first.shards or first.chunks)[1:])
    common = dict(block=shard, shape=tuple(first.shape[1:]), crs=geobox.crs.to_wkt(), transform=geobox.transform)

    def export_one(month: Month) -> tuple[Month, bool] | None:
        """One month's COGs (a thread each month: GDAL's compression releases the GIL), read from
        the store one shard at a time: (month, whether any was written now)."""
        where = f"[{month.index + 1}/{n}]{label}"
        if not _any_clear(arrays[count.variables[0]], month.index, shard):
            log.info("export: %s has no clear pixel, skipped %s", month.tag, where)
            return None
        source = {SOURCE_TAG: f"{_made_from(attrs, ' '.join(month.sources))} {month.tag}"}
        written = _write_month(month, layers, arrays, folder, source, common, cluster)
        for path in written:
            log.info("export: %s written %s", path, where)
        if not written:
            log.info("export: %s is up to date %s", month.path(folder, mosaic), where)
        return month, bool(written)

    # On a cluster every month of the tile at once; relayed, each month's layer is held here while
    # it travels (4096 px, 4 bands: 134 MB), so two at a time, as in this process.
    if cluster is None:
        threads = months_at_once_here()
    else:
        threads = min(len(months), EXPORT_THREADS) if cluster.relay else max(1, len(months))
    with ThreadPoolExecutor(threads) as pool:
        done = [r for r in pool.map(export_one, months) if r is not None]
    if not done:
        return None
    made = (attrs.get("signature") or {}).get("cube") or {}
    skipped = tuple(json.loads(monthly.attrs.get("skipped_assets", "[]")))
    source = MonthlySource(layers, summary, geobox, made, skipped)
    return Written(folder, tuple(m for m, _ in done), any(new for _, new in done), source)


def export_months(monthly_path: str, output_dir: Path, *, cluster: ClusterCogs | None = None) -> list[Path]:
    """Write every month's COGs (one per layer; on the cluster's workers with ``cluster``), STAC
    items, quick-looks and ``catalog.json``; returns the mosaic paths."""

    written = write_months(monthly_path, output_dir, cluster=cluster)
    if written is None:
        raise OutputError("no month has any clear pixel: nothing to export (try a longer period or another aoi)")
    kept, layers = written.months, written.layers
    paths = written.paths()
    earlier, earlier_tiles = listed_months(output_dir), listed_tiles(output_dir)
    if not written.new and not earlier_tiles and _catalog_complete(output_dir, kept, layers):
        log.info("export: %s is up to date, nothing rewritten", output_dir / "catalog.json")
        return paths
    try:
        _assemble_catalog(output_dir, written)
    except OSError as e:  # a full disk under the items, quick-looks or the catalog
        problem = _write_problem(e, output_dir)
        raise WriteError(f"output_dir: cannot write the STAC catalog in {output_dir}: {problem}") from None
    for folder in sorted(earlier - {output_dir / m.name for m in kept}):  # an earlier request's months
        remove_ours(folder, "a month of the earlier request")
    remove_tiled_outputs(output_dir, earlier_tiles)
    log.info("export: %s lists %d monthly mosaic(s)", output_dir / "catalog.json", len(kept))
    log.info("export: %s, their STAC Collection", output_dir / "collection.json")
    return paths


def months_at_once_here() -> int:
    """How many months' COGs this process makes at once without a cluster (a thread each)."""
    return min(EXPORT_THREADS, os.cpu_count() or 1)


def picture_area(aoi_wkt: str | None, geobox: GeoBox) -> Callable[[tuple[int, int]], np.ndarray] | None:
    """Which pixels of a picture of ``geobox`` (any shape: its quick-look) lie in a polygon AOI,
    for the picture's clear share; None without one (the whole grid)."""
    if not aoi_wkt:
        return None
    return lambda shape: aoi_block(aoi_wkt, geobox.zoom_to(shape))


def month_items(
    written: Written, *, tile: str | None = None, code: str | None = None
) -> list[tuple[pystac.Item, Quicklook]]:
    """Each written month's STAC item (hrefs absolute) and its quick-look (written beside its COGs).
    For a tile: its id is in the item's id (``monthly-mosaic-YYYY-MM-x142y995``), its ``grid:code``
    in its properties (STAC grid extension)."""
    made, geobox, layers = written.source.made, written.source.geobox, written.layers
    area = picture_area(made.get("aoi_geometry"), geobox)
    mosaic, count = layers[0], count_layer(layers)

    def look(month: Month) -> tuple[Quicklook, dict[str, tuple[int, str]]]:
        quicklook = month_quicklook(
            month.path(written.folder, mosaic),
            month.path(written.folder, count),
            written.folder / month.name / f"{month.name}-quicklook.png",
            area=area,
        )
        return quicklook, {layer.key: _file_fields(month.path(written.folder, layer)) for layer in layers}

    # Side by side: a quick-look is an overview read and a PNG encoded, both outside the GIL
    # (rasterio, Pillow), as is hashing a COG. One after the other the quick-looks were a third of
    # this process's own samples in the year20 benchmark's export (py-spy); its 12 months took
    # 3.8-5.1 s so, 2.2-2.7 s two at a time.
    with ThreadPoolExecutor(max(1, min(EXPORT_THREADS, os.cpu_count() or 1, len(written.months)))) as pool:
        done = list(pool.map(look, written.months))
    out = []
    for month, (look, files) in zip(written.months, done, strict=True):
        folder = written.folder / month.name
        item = build_item(month, folder, written.source)
        for key, (size, checksum) in files.items():
            record = FileExtension.ext(item.assets[key], add_if_missing=True)
            record.size, record.checksum = size, checksum
        if tile is not None:
            item.id = f"{month.name}-{tile}"
            item.properties["title"] += f", tile {tile}"
            item.properties["grid:code"] = code
            item.stac_extensions.append(GRID_EXTENSION)
        month_skipped = [s for s in written.source.skipped if s["day"].startswith(month.tag)]
        if month_skipped:
            item.properties["cubemosaic:skipped_assets"] = month_skipped
            log.warning("export: %s left out %d unreadable asset(s)", item.id, len(month_skipped))
        item.add_asset(
            "thumbnail",
            pystac.Asset(href=str(look.path), media_type=pystac.MediaType.PNG, title=look.title, roles=["thumbnail"]),
        )
        item.properties["cubemosaic:quicklook_bands"] = list(look.bands)
        item.properties["cubemosaic:clear_share"] = round(look.clear_share, 4)
        out.append((item, look))
    return out


def build_collection(items: Sequence[pystac.Item], layers: Sequence[Layer], *, description: str) -> pystac.Collection:
    """The STAC Collection of ``items`` (one per month, or per tile and month), made of ``layers``:
    the items' extent, ``summaries`` (the months; the tiles' ``grid:code`` where the items have
    one; the projections), an ``item_assets`` entry per layer (its ``raster:bands``, and
    ``eo:bands`` for reflectance) and the items, which belong to it (``collection`` field and
    link). Hrefs are not laid out yet: the caller adds its assets, then normalizes and saves.
    Used by the untiled export and by :func:`cubemosaic.collection.assemble_collection` alike."""
    collection = pystac.Collection(
        id=COLLECTION_ID,
        title="cubemosaic monthly mosaics",
        description=description,
        extent=pystac.Extent.from_items(items),
        license="other",  # Copernicus Sentinel data terms: see the providers
        providers=[
            pystac.Provider("ESA", roles=[pystac.ProviderRole.PRODUCER, pystac.ProviderRole.LICENSOR]),
            pystac.Provider(f"cubemosaic {__version__}", roles=[pystac.ProviderRole.PROCESSOR]),
        ],
    )
    # The extensions of its summaries and item_assets (raster:bands, eo:bands, proj:code); not the
    # grid extension, whose scope is the Item only (grid:code is summarized all the same).
    collection.stac_extensions += [PROJECTION_EXTENSION, RASTER_EXTENSION, EO_EXTENSION]
    for item in items:
        collection.add_item(item)
    summaries: dict[str, Any] = {}
    codes = {i.properties["grid:code"] for i in items if "grid:code" in i.properties}
    if codes:
        summaries["grid:code"] = sorted(codes)
    summaries["cubemosaic:months"] = sorted({i.properties["start_datetime"][:7] for i in items})
    summaries["constellation"] = ["sentinel-2"]
    projections = {i.properties["proj:code"] for i in items if i.properties.get("proj:code")}
    if projections:
        summaries["proj:code"] = sorted(projections)
    # pystac leaves out of the saved file any list of maxcount (25) values or more: a tiled area's
    # tiles or a long period's months would silently lose their summary.
    collection.summaries = pystac.Summaries(summaries, maxcount=1 + max(len(v) for v in summaries.values()))
    collection.item_assets = {
        layer.key: pystac.ItemAssetDefinition.create(
            title=layer.title,
            description=None,
            media_type=pystac.MediaType.COG,
            roles=list(layer.roles),
            extra_fields=_asset_fields(layer),
        )  # fmt: skip
        for layer in layers
    }
    return collection


def _asset_fields(layer: Layer) -> dict:
    fields: dict = {"raster:bands": [_raster_band(layer).to_dict() for _ in layer.variables]}
    if layer.kind is REFLECTANCE:
        fields["eo:bands"] = [{"name": b, "common_name": b} for b in layer.bands]
    return fields


def _assemble_catalog(output_dir: Path, written: Written) -> None:
    """The items (with their quick-looks), the overview picture, ``collection.json`` and
    ``catalog.json``.

    The two roots list the same item files, written once. The items belong to the Collection
    (their ``collection``, ``parent`` and ``root`` links point to ``collection.json``): it is what
    openEO's ``load_stac``, STAC Browser and a tiled run's users read. ``catalog.json`` is the
    Catalog earlier versions wrote, kept as it was for their users: it links each item file
    directly (``rel: item``), so ``Catalog.from_file(...).get_items()`` lists the months with or
    without ``recursive=True``, and a rerun still finds the month folders it lists. It is not made
    the Collection's parent (``rel: child``): a non-recursive ``get_items()`` would then list
    nothing, and a recursive one walking both would list every month twice; it points to the
    Collection with a ``related`` link instead (STAC lets an item be linked from several
    catalogs, its ``parent`` being one of them)."""
    looks: list[tuple[str, Quicklook]] = []
    items: list[pystac.Item] = []
    for month, (item, look) in zip(written.months, month_items(written), strict=True):  # in month order
        looks.append((month.tag, look))
        items.append(item)
    collection = build_collection(
        items,
        written.layers,
        description="Sentinel-2 L2A monthly cloud-free mosaics made by cubemosaic, one item a month",
    )
    overview = overview_picture(looks, output_dir / "overview.png")
    collection.add_asset(
        "overview",
        pystac.Asset(href=str(overview), media_type=pystac.MediaType.PNG, roles=["overview"],
                     title="Every month side by side"),
    )  # fmt: skip
    log.info("export: %s shows every month side by side", overview)
    # A trailing slash: pystac takes a last name with a dot in it ("run.v2") for a file and
    # would lay the collection out in the parent folder.
    collection.normalize_hrefs(f"{output_dir.absolute()}/")
    collection.make_all_asset_hrefs_relative()
    collection.make_asset_hrefs_relative()  # its own (the overview): the call above does the items'
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    _write_catalog(output_dir, [Path(i.get_self_href()) for i in items])


def _write_catalog(output_dir: Path, item_files: Sequence[Path]) -> None:
    """``catalog.json``: a self-contained Catalog (relative hrefs) linking ``item_files`` and the
    Collection beside it; the item files themselves are the Collection's, left as they are."""
    catalog = pystac.Catalog(
        id=COLLECTION_ID,
        description="Sentinel-2 L2A monthly cloud-free mosaics made by cubemosaic",
        title="cubemosaic monthly mosaics",
        catalog_type=pystac.CatalogType.SELF_CONTAINED,
    )
    root = output_dir.absolute()
    catalog.set_self_href(str(root / "catalog.json"))  # its root link; written without a self link
    catalog.add_link(pystac.Link("related", "./collection.json", media_type=pystac.MediaType.JSON,
                                 title="The same items as a STAC Collection"))  # fmt: skip
    for path in item_files:
        href = f"./{Path(path).absolute().relative_to(root).as_posix()}"
        catalog.add_link(pystac.Link(pystac.RelType.ITEM, href, media_type=pystac.MediaType.GEOJSON))
    doc = catalog.to_dict(include_self_link=False)
    tmp = output_dir / ".catalog.json.partial"
    tmp.write_text(json.dumps(doc, indent=2))
    tmp.replace(output_dir / "catalog.json")


class ClusterCogs:
    """Makes COGs on a Dask cluster's workers, this process writing the bytes they send back
    (tmp file, rename): the compression and the overviews, the export's cost, run on the workers.

    Where the workers see the monthly store (``relay`` False: a shared folder, object storage),
    each reads its month's layer itself; else this process reads it and sends it, two months of a
    tile at a time (:func:`write_months`), each bounded by ``tile_size``. Either way the COG is made by the same
    :func:`write_cog` as in this process, so the files are the same.
    """

    def __init__(self, client: Any, monthly_path: str, relay: bool) -> None:
        self.client, self.monthly_path, self.relay = client, monthly_path, relay

    def write(self, path: Path, arrays: Mapping[str, Any], variables: Sequence[str], i: int,
              options: Mapping[str, Any]) -> None:  # fmt: skip
        if self.relay:
            source: Any = np.stack([arrays[v][i] for v in variables])
        else:
            source = self.monthly_path
        future = self.client.submit(cog_bytes, source, tuple(variables), i, path.name, dict(options), pure=False)
        data = future.result()
        tmp = path.with_name(f".{path.name}.partial")
        try:
            tmp.write_bytes(data)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            raise WriteError(f"output_dir: cannot write {path}: {_write_problem(e, path.parent)}") from None


def cog_bytes(source: Any, variables: Sequence[str], i: int, name: str, options: Mapping[str, Any]) -> bytes:
    """On a worker: the COG of month ``i`` of ``variables`` (read from the monthly store at
    ``source``, or given as a (bands, y, x) array), made in a temporary folder; its bytes."""
    import tempfile

    if isinstance(source, str):
        arrays = store.dn_arrays(source, list(variables), remedy=store.MONTHLY_REMEDY)

        def read(ys: slice, xs: slice) -> np.ndarray:
            return np.stack([arrays[v][i, ys, xs] for v in variables])
    else:

        def read(ys: slice, xs: slice) -> np.ndarray:
            return source[:, ys, xs]

    with tempfile.TemporaryDirectory(prefix="cubemosaic-cog-") as folder:
        path = Path(folder) / name
        try:
            write_cog(path, read, **options)
        except WriteError as e:  # the worker's own disk, not output_dir: said as such
            problem = str(e).split(": ", 2)[-1]
            raise WriteError(f"cluster: a Dask worker cannot write {name} in its temporary folder "
                             f"{folder} ({problem}); give the workers more disk (TMPDIR)") from None  # fmt: skip
        return path.read_bytes()


#: GeoTIFF metadata tag naming the monthly store (its request) and month a COG was made from.
SOURCE_TAG = "CUBEMOSAIC_SOURCE"


def _made_from(attrs: Mapping[str, Any], scenes: str) -> str:
    """A fingerprint of what one month's COGs are made from: the request the monthly store holds
    (its signature, but for the period), the order of its variables (the COGs' bands: the sorted
    signature does not keep the order of the bands) and the month's scenes. A longer period
    changes none of them for the months it does not touch, so their COGs are kept."""

    signature = dict(attrs.get("signature") or {})
    signature.pop("months", None)
    signature["cube"] = {k: v for k, v in dict(signature.get("cube") or {}).items() if k != "days"}
    text = json.dumps([signature, list(attrs.get("variables") or ()), scenes], sort_keys=True, default=str)
    return hashlib.sha1(text.encode()).hexdigest()[:16]


def _written_from(path: Path, source: Mapping[str, str]) -> bool:
    """Whether the COG at ``path`` exists and was made from ``source`` (a rerun need not rewrite
    it); with an empty ``source``, whether it is one of ours (it carries the source tag)."""

    if not path.is_file():
        return False
    try:
        with rasterio.open(path) as src:
            tags = src.tags()
    except rasterio.errors.RasterioIOError:  # a torn file: write it again
        return False
    if not source:
        return SOURCE_TAG in tags
    if not all(tags.get(k) == v for k, v in source.items()):
        return False
    recorded = recorded_checksum(path)
    if recorded is None:
        # Written by an older version: no check of the file alone tells a flipped byte from a
        # pixel, so it is made again.
        log.info("export: %s is rewritten: no checksum of it was recorded to check it by", path)
        return False
    if file_record(path)[1] != recorded:
        log.info("export: %s is rewritten: its bytes are not those written (its checksum differs)", path)
        return False
    return True


#: The multihash prefix of a sha2-256 digest (function code 0x12, 32 bytes), as STAC's file
#: extension writes ``file:checksum``.
SHA2_256 = "1220"


def file_record(path: Path) -> tuple[int, str]:
    """(``file:size``, ``file:checksum``) of the file at ``path``: its bytes and their sha2-256
    multihash in hex (STAC file extension), read a few MB at a time (hashlib releases the GIL).
    0.15 s for an 80 MB file on this project's 2-core machine."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 23):
            digest.update(chunk)
    return path.stat().st_size, SHA2_256 + digest.hexdigest()


def _file_fields(path: Path) -> tuple[int, str]:
    """(``file:size``, ``file:checksum``) of a COG this run wrote or found intact: its checksum as
    recorded beside it then (not hashed twice), else hashed now."""
    return path.stat().st_size, recorded_checksum(path) or file_record(path)[1]


def checksum_file(path: Path) -> Path:
    """Where the sha2-256 of the COG at ``path`` is kept beside it as it is written:
    ``.<name>.sha256``, in ``sha256sum``'s format (``sha256sum -c`` checks it)."""
    return path.with_name(f".{path.name}.sha256")


def note_checksum(path: Path) -> None:
    """Record the checksum of the COG just written at ``path`` (:func:`checksum_file`): a rerun
    keeps the COG only when its bytes still have it, even when the run stopped before the COG's
    STAC item (which records it too, as ``file:checksum``) was written, as a tiled run's are
    at its end."""
    digest = file_record(path)[1][len(SHA2_256) :]
    target = checksum_file(path)
    tmp = target.with_name(f"{target.name}.partial")
    try:
        tmp.write_text(f"{digest}  {path.name}\n")
        os.replace(tmp, target)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise WriteError(f"output_dir: cannot write {target}: {_write_problem(e, path.parent)}") from None


def recorded_checksum(path: Path) -> str | None:
    """The sha2-256 multihash recorded for the COG at ``path`` when it was written: its
    :func:`checksum_file`, else its STAC item's ``file:checksum``; None where neither holds one."""
    try:
        digest = checksum_file(path).read_text().split()[0]
        if len(digest) == 64 and all(c in "0123456789abcdef" for c in digest):
            return SHA2_256 + digest
    except (OSError, IndexError, UnicodeDecodeError):
        pass
    return _item_checksum(path)


def _item_checksum(path: Path) -> str | None:
    """The ``file:checksum`` that the STAC item beside the COG at ``path`` (the month folder's
    ``<folder name>.json``, in either layout) records for it; None where there is no such item,
    or it records none (written by an older version)."""
    item = path.parent / f"{path.parent.name}.json"
    try:
        assets = json.loads(item.read_text()).get("assets") or {}
    except (OSError, ValueError, AttributeError):
        return None
    for asset in assets.values() if isinstance(assets, dict) else ():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or (item.parent / href).resolve() != path.resolve():
            continue
        checksum = asset.get("file:checksum")
        if isinstance(checksum, str):
            return checksum
    return None


def _listed_items(output_dir: Path) -> list[tuple[str, ...]]:
    """The item links (their paths' parts, below ``output_dir``) of the ``collection.json`` and
    ``catalog.json`` already in ``output_dir``, where they are ours: both, so an output is found
    whichever root an earlier version, a torn run or the other layout left."""
    links = []
    root = output_dir.resolve()
    for name in ("collection.json", "catalog.json"):
        try:
            doc = json.loads((output_dir / name).read_text())
        except (OSError, ValueError):
            continue
        if doc.get("id") != COLLECTION_ID:
            continue
        for link in doc.get("links", []):
            if link.get("rel") != "item":
                continue
            try:  # relative or absolute, resolved: only what lies below output_dir
                links.append((output_dir / link.get("href", "")).resolve().relative_to(root).parts)
            except ValueError:
                continue
    return links


def listed_months(output_dir: Path) -> set[Path]:
    """The month folders of an untiled run (``output_dir/monthly-mosaic-YYYY-MM``) our roots in
    ``output_dir`` list."""
    return {
        output_dir / parts[0]
        for parts in _listed_items(output_dir)
        if len(parts) == 2 and parts[0].startswith(f"{PREFIX}-")
    }


def listed_tiles(output_dir: Path) -> set[str]:
    """The tile folders of a tiled run (``output_dir/x142y995/monthly-mosaic-YYYY-MM``) our roots in
    ``output_dir`` list."""
    return {parts[0] for parts in _listed_items(output_dir) if len(parts) == 3 and parts[1].startswith(f"{PREFIX}-")}


def remove_ours(folder: Path, what: str) -> None:
    """Remove what the export wrote in ``folder`` (a month's or a tile's: its ``monthly-mosaic-*``
    COGs, quick-looks and items, its temp files, its month folders), then the folder if that
    empties it. A file of the user's in it stays, and so does the folder, said in the log. A
    symbolic link is the user's (a month moved to another disk): never followed, kept."""
    if folder.is_symlink() or not folder.is_dir():
        return
    for path in sorted(folder.iterdir()):
        if path.is_symlink():
            continue
        if path.is_dir() and path.name.startswith(f"{PREFIX}-"):
            remove_ours(path, what)
        elif path.is_file() and path.name.startswith((f"{PREFIX}-", f".{PREFIX}-")):
            try:
                path.unlink(missing_ok=True)
            except OSError as e:
                log.warning("export: could not remove %s (%s)", path, e.strerror or e)
    try:
        folder.rmdir()
        log.info("export: removed %s, %s", folder, what)
    except OSError:  # not empty: something of the user's is in it (or not ours to remove)
        kept = sorted(p.name for p in folder.iterdir()) if folder.is_dir() else []
        log.info("export: removed what the export wrote in %s, %s; kept the folder, which holds %s",
                 folder, what, ", ".join(kept[:5]))  # fmt: skip


def remove_tiled_outputs(output_dir: Path, tiles: Iterable[str], *, keep: Collection[Path] = ()) -> None:
    """Remove what a tiled request left in ``output_dir`` and this run does not make: the ``tiles``
    its collection listed, its month VRTs and its month quick-looks over the whole area, but those
    in ``keep`` (this tiled run's own). Left, they would show an earlier request's pixels beside
    this one's."""
    for tile in sorted(tiles):
        remove_ours(output_dir / tile, "a tile of the earlier request")
    for stale in sorted(
        set(output_dir.glob(f"{PREFIX}-????-??*.vrt")) | set(output_dir.glob(f"{PREFIX}-????-??-quicklook.png"))
    ):
        if stale not in keep:
            stale.unlink(missing_ok=True)
            log.info("export: removed %s, of the earlier request", stale)


def remove_untiled_outputs(output_dir: Path, months: Iterable[Path]) -> None:
    """Remove what an untiled run left in ``output_dir`` (a tiled run now writes there): the month
    folders its roots listed and its ``catalog.json``, which would list them."""
    for folder in sorted(months):
        remove_ours(folder, "a month of the earlier (untiled) request")
    catalog = output_dir / "catalog.json"
    try:
        ours = json.loads(catalog.read_text()).get("id") == COLLECTION_ID
    except (OSError, ValueError, AttributeError):
        ours = False
    if ours:
        catalog.unlink()
        log.info("export: removed %s, the earlier (untiled) request's catalog", catalog)
