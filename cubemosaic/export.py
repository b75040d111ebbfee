"""The export stage: one COG per month, its valid-observation count, and a STAC catalog.

For each month of ``monthly.zarr`` with any clear pixel, writes under ``output_dir``::

    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM.tif        one band per requested band
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM-count.tif  clear observations per pixel
    monthly-mosaic-YYYY-MM/monthly-mosaic-YYYY-MM.json       its STAC item

and ``catalog.json``, a self-contained STAC catalog with relative hrefs. Each COG is
written by GDAL's COG driver to a temp file, validated with rio-cogeo, then renamed into place. Only one
month is held in memory at a time.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .errors import OutputError
from .store import REFLECTANCE_SCALE

__all__ = ["export_months", "write_cog"]

log = logging.getLogger(__name__)
PREFIX = "monthly-mosaic"


def write_cog(
    path: Path,
    data: np.ndarray,
    *,
    crs: Any,
    transform: Any,
    descriptions: Sequence[str],
    nodata: int | None,
    overview_resampling: str,
    scale: float = 1.0,
) -> None:
    """Write (bands, y, x) ``data`` as a validated COG at ``path`` (temp file, validate, rename).

    Every band carries ``scale`` (offset 0) as GDAL band metadata, so GDAL, QGIS and rioxarray
    (``mask_and_scale=True``) read reflectance as the Zarr store gives it; bands named red,
    green, blue first are tagged as such (colour interpretation), so viewers show true colour.

    GDAL's COG driver writes it from an in-memory dataset in one pass (measured 1.6x faster
    than rio-cogeo's ``cog_translate``, which compresses the full image twice, for the same
    file); rio-cogeo validates it.
    """
    import rasterio
    import rasterio.shutil
    from rasterio.io import MemoryFile
    from rio_cogeo.cogeo import cog_validate

    block = 512 if min(data.shape[1:]) >= 2048 else 256
    # Overviews down to ~128 px, at least one level, so small mosaics get overviews too.
    levels = max(1, int(np.log2(max(data.shape[1:]) / 128)))
    src_profile = dict(
        driver="MEM",
        width=data.shape[2],
        height=data.shape[1],
        count=data.shape[0],
        dtype=data.dtype.name,
        crs=crs,
        transform=transform,
        nodata=nodata,
    )
    # zstd level 1 with the horizontal predictor, measured on the benchmark's mosaics: 0.13 s a
    # month against 0.21 s at level 3 for files 2% larger; DEFLATE was slower and larger.
    cog_options = dict(
        compress="ZSTD",
        level=1,
        predictor=2,
        blocksize=block,
        overview_resampling=overview_resampling.upper(),
        overview_count=levels,
        num_threads="ALL_CPUS",
        bigtiff="IF_SAFER",
    )
    tmp = path.with_name(f".{path.name}.partial")
    try:
        with MemoryFile() as mem, mem.open(**src_profile) as src:
            src.write(data)
            for i, desc in enumerate(descriptions, start=1):
                src.set_band_description(i, desc)
            src.scales = [scale] * data.shape[0]
            src.offsets = [0.0] * data.shape[0]
            src.colorinterp = _colour_interpretation(descriptions)
            rasterio.shutil.copy(src, str(tmp), driver="COG", **cog_options)
        valid, errors, _ = cog_validate(str(tmp), quiet=True)
        if not valid:
            raise OutputError(f"{path.name} failed COG validation: {'; '.join(errors)}")
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _colour_interpretation(names: Sequence[str]) -> list:
    """Red, green, blue for bands so named when they come first (what a GeoTIFF can say without a
    side file), grey for a single band, undefined for the others."""
    from rasterio.enums import ColorInterp

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


def _item(
    name: str, month: np.datetime64, geobox, bands: Sequence[str], sources: Sequence[str], folder: Path, n_days: int
):
    import pystac
    from pystac.extensions.eo import Band, EOExtension
    from pystac.extensions.projection import ProjectionExtension
    from pystac.extensions.raster import DataType, RasterBand, RasterExtension

    start, end = _month_range(month)
    footprint = geobox.extent.to_crs("EPSG:4326")
    item = pystac.Item(
        id=name,
        geometry=footprint.json,
        bbox=list(footprint.boundingbox),
        datetime=None,
        start_datetime=start,
        end_datetime=end,
        properties={
            "title": f"Sentinel-2 L2A cloud-free median mosaic, {str(month)[:7]}",
            "cubemosaic:source_items": list(sources),
            "cubemosaic:n_days": n_days,
            "constellation": "sentinel-2",
        },
    )
    mosaic = pystac.Asset(
        href=str(folder / f"{name}.tif"),
        media_type=pystac.MediaType.COG,
        title="Monthly median surface reflectance x 10000",
        roles=["data"],
    )
    count = pystac.Asset(
        href=str(folder / f"{name}-count.tif"),
        media_type=pystac.MediaType.COG,
        title="Clear observations in the month",
        roles=["data", "count"],
    )
    item.add_asset("mosaic", mosaic)
    item.add_asset("count", count)
    proj = ProjectionExtension.ext(item, add_if_missing=True)
    if geobox.crs.epsg:
        proj.code = f"EPSG:{geobox.crs.epsg}"
    else:
        proj.wkt2 = geobox.crs.to_wkt()
    proj.shape = list(geobox.shape)
    proj.transform = list(geobox.transform)[:6]
    proj.bbox = list(geobox.extent.boundingbox)
    EOExtension.ext(mosaic, add_if_missing=True).bands = [Band.create(name=b, common_name=b) for b in bands]
    RasterExtension.ext(mosaic, add_if_missing=True).bands = [
        RasterBand.create(nodata=0, data_type=DataType.UINT16, scale=REFLECTANCE_SCALE, offset=0.0) for _ in bands
    ]
    RasterExtension.ext(count, add_if_missing=True).bands = [RasterBand.create(data_type=DataType.UINT16)]
    return item


def export_months(monthly_path: str, output_dir: Path) -> list[Path]:
    """Write the COGs, counts, STAC items and ``catalog.json``; returns the mosaic paths."""
    import odc.geo.xr  # noqa: F401  (registers the .odc accessor)
    import pystac
    import xarray as xr

    from . import store

    attrs = store.read_attrs(monthly_path)
    if not attrs.get("complete"):
        raise OutputError(f"output_dir: {monthly_path} is not complete; run stage=composite first")
    # Without dask: each month is read once, whole, by the thread writing it (measured 3x faster).
    monthly = xr.open_zarr(monthly_path, mask_and_scale=False, consolidated=True, chunks=None)
    bands = [name for name in attrs["variables"] if name != "count"]
    geobox = monthly.odc.geobox
    skipped = json.loads(monthly.attrs.get("skipped_assets", "[]"))
    catalog = pystac.Catalog(
        id="cubemosaic",
        description="Sentinel-2 L2A monthly cloud-free median mosaics made by cubemosaic",
        title="cubemosaic monthly mosaics",
    )
    n = len(monthly.time)

    def export_one(i: int) -> tuple[int, Path] | None:
        """One month's COG and count COG (a thread each: GDAL's compression releases the GIL)."""
        tag = str(monthly.time.values[i])[:7]
        count = monthly["count"].isel(time=i).values
        if not count.any():
            log.info("export: %s has no clear pixel, skipped [%d/%d]", tag, i + 1, n)
            return None
        name = f"{PREFIX}-{tag}"
        folder = output_dir / name
        folder.mkdir(parents=True, exist_ok=True)
        data = np.stack([monthly[b].isel(time=i).values for b in bands])
        common = dict(crs=geobox.crs.to_wkt(), transform=geobox.transform)
        write_cog(
            folder / f"{name}.tif",
            data,
            descriptions=bands,
            nodata=0,
            overview_resampling="average",
            scale=REFLECTANCE_SCALE,
            **common,
        )
        write_cog(
            folder / f"{name}-count.tif",
            count[None],
            descriptions=["count"],
            nodata=None,
            overview_resampling="nearest",
            **common,
        )
        log.info("export: %s written [%d/%d]", folder / f"{name}.tif", i + 1, n)
        return i, folder / f"{name}.tif"

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(2, os.cpu_count() or 1)) as pool:
        done = [r for r in pool.map(export_one, range(n)) if r is not None]
    written: list[Path] = []
    for i, path in done:  # catalog items in month order, one month held in memory per thread
        name = path.stem
        sources = str(monthly["item_ids"].values[i]).split()
        item = _item(
            name, monthly.time.values[i], geobox, bands, sources, path.parent, int(monthly["n_days"].values[i])
        )
        month_skipped = [s for s in skipped if s["day"].startswith(name.removeprefix(f"{PREFIX}-"))]
        if month_skipped:
            item.properties["cubemosaic:skipped_assets"] = month_skipped
            log.warning("export: %s left out %d unreadable asset(s)", name, len(month_skipped))
        catalog.add_item(item)
        written.append(path)
    if not written:
        raise OutputError("no month has any clear pixel: nothing to export (try a longer period or another aoi)")
    # A trailing slash: pystac takes a last name with a dot in it ("run.v2") for a file and
    # would lay the catalog out in the parent folder.
    catalog.normalize_hrefs(f"{output_dir.absolute()}/")
    catalog.make_all_asset_hrefs_relative()
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    log.info("export: %s lists %d monthly mosaic(s)", output_dir / "catalog.json", len(written))
    return written
