"""The outputs of a tiled run, usable across its tiles: a STAC Collection and a VRT per month.

Under ``output_dir``::

    collection.json                                   STAC Collection: one item per tile and month
    monthly-mosaic-YYYY-MM.vrt                        the month's mosaic over every tile (GDAL VRT)
    monthly-mosaic-YYYY-MM-<layer>.vrt                each other layer (count, p25, ...)
    monthly-mosaic-YYYY-MM-quicklook.png              the month over the whole area, from the VRT
    overview.png                                      every month side by side
    x142y995/monthly-mosaic-YYYY-MM/...               the tile's COGs, item and quick-look

The Collection (what openEO's ``load_stac`` and STAC Browser read) has the area's extent, its
``summaries`` (the tiles' ``grid:code``, the months), ``item_assets`` (every layer's
``raster:bands``) and the month VRTs as its assets. Its items carry ``grid:code`` (STAC grid
extension) and link to it as their collection. It is built by :func:`cubemosaic.export.build_collection`,
as an untiled run's ``collection.json`` is.

The VRTs are written here by hand (a few lines of XML: one ``SimpleSource`` per tile, the tiles
of a fixed grid never overlap): GDAL's ``gdalbuildvrt`` is not among this package's dependencies
(rasterio has no Python API for it, and GDAL's own bindings are not installed with rasterio's
wheels). GDAL, QGIS and rioxarray open them as one raster, with the COGs' overviews.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import NamedTuple
from xml.etree import ElementTree as ET

import numpy as np
import pystac
import rasterio
from odc.geo.geobox import GeoBox
from pystac.layout import CustomLayoutStrategy

from .export import (
    PREFIX,
    Month,
    Written,
    build_collection,
    listed_months,
    listed_tiles,
    month_items,
    picture_area,
    remove_tiled_outputs,
    remove_untiled_outputs,
)
from .quicklook import Quicklook, month_quicklook, overview_picture
from .statistics import count_layer
from .tiling import TileGrid

__all__ = ["TileOutputs", "assemble_collection", "write_vrt"]

log = logging.getLogger(__name__)

#: The media type GDAL's VRT files are served with (GDAL's own documentation's).
VRT_MEDIA_TYPE = "application/x-gdal-vrt"


class TileOutputs(NamedTuple):
    """One tile's written months (its COGs in ``output_dir/<tile id>``), with its grid code."""

    tile: str
    code: str
    written: Written


def assemble_collection(output_dir: Path, tiles: Sequence[TileOutputs], grid: TileGrid) -> dict[Path, float]:
    """Write the items of every tile and month, the month VRTs and quick-looks, the overview
    picture and ``collection.json``; remove tile folders, month VRTs and quick-looks an earlier
    request made that this one does not, and what an untiled run left (its months, its
    ``catalog.json``). Returns the month VRTs of the mosaic, in month order, with the share of
    the area each has a clear observation for."""
    earlier, untiled = listed_tiles(output_dir), listed_months(output_dir)
    layers = tiles[0].written.layers
    items: list[pystac.Item] = []
    months: dict[str, list[tuple[TileOutputs, Month]]] = {}
    for t in tiles:
        for month, (item, _) in zip(t.written.months, month_items(t.written, tile=t.tile, code=t.code), strict=True):
            items.append(item)
            months.setdefault(month.tag, []).append((t, month))
    # The grid extension's scope is the Item (its v1.1.0 schema accepts only "type": "Feature"):
    # the Collection summarizes the items' grid:code without declaring it.
    collection = build_collection(
        items, layers,
        description="Sentinel-2 L2A monthly cloud-free mosaics made by cubemosaic, one item per tile and month",
    )  # fmt: skip
    looks: list[tuple[str, Quicklook]] = []
    vrts: dict[Path, float] = {}
    mosaic, count = layers[0], count_layer(layers)
    # Every month's VRT over the same grid: the extent of every tile, whether or not it has the month.
    boxes = [t.written.source.geobox.extent.boundingbox for t in tiles]
    bounds = (min(b.left for b in boxes), min(b.bottom for b in boxes), max(b.right for b in boxes),
              max(b.top for b in boxes))  # fmt: skip
    # The month VRTs' grid: the tiles' CRS and resolution over their bounds.
    vrt_box = GeoBox.from_bbox(bounds, crs=tiles[0].written.source.geobox.crs,
                               resolution=tiles[0].written.source.geobox.resolution)  # fmt: skip
    area = picture_area(tiles[0].written.source.made.get("aoi_geometry"), vrt_box)
    for tag in sorted(months):
        parts = months[tag]
        name = f"{PREFIX}-{tag}"
        for layer in layers:
            vrt = output_dir / f"{name}{layer.suffix}.vrt"
            write_vrt(vrt, [m.path(t.written.folder, layer) for t, m in parts], bounds)
            collection.add_asset(
                f"{name}{layer.suffix}",
                pystac.Asset(
                    href=str(vrt), media_type=VRT_MEDIA_TYPE, roles=["data"],
                    title=f"{layer.title}, {tag}, every tile (GDAL VRT)",
                ),
            )  # fmt: skip
        look = month_quicklook(
            output_dir / f"{name}{mosaic.suffix}.vrt",
            output_dir / f"{name}{count.suffix}.vrt",
            output_dir / f"{name}-quicklook.png",
            area=area,
        )
        looks.append((tag, look))
        vrts[output_dir / f"{name}{mosaic.suffix}.vrt"] = look.clear_share
    overview = overview_picture(looks, output_dir / "overview.png")
    collection.add_asset(
        "overview",
        pystac.Asset(
            href=str(overview),
            media_type=pystac.MediaType.PNG,
            roles=["overview"],
            title="Every month over the whole area",
        ),  # fmt: skip
    )
    log.info("export: %s shows every month over the whole area", overview)

    def item_href(item: pystac.Item, parent_dir: str) -> str:
        return str(Path(item.assets[mosaic.key].href).with_name(f"{Path(item.assets[mosaic.key].href).stem}.json"))

    collection.normalize_hrefs(f"{output_dir.absolute()}/", strategy=CustomLayoutStrategy(item_func=item_href))
    collection.make_all_asset_hrefs_relative()
    collection.make_asset_hrefs_relative()  # its own (the VRTs, the overview): the call above does the items'
    collection.save(pystac.CatalogType.SELF_CONTAINED)
    remove_untiled_outputs(output_dir, untiled)
    made = {output_dir / f"{PREFIX}-{tag}{layer.suffix}.vrt" for tag in months for layer in layers}
    made |= {output_dir / f"{PREFIX}-{tag}-quicklook.png" for tag in months}
    remove_tiled_outputs(output_dir, earlier - {t.tile for t in tiles}, keep=made)
    log.info("export: %s lists %d item(s): %d tile(s) x %d month(s) at most", output_dir / "collection.json",
             len(items), len(tiles), len(months))  # fmt: skip
    return vrts


_GDAL_TYPES = {"uint8": "Byte", "uint16": "UInt16", "int16": "Int16", "float32": "Float32", "float64": "Float64"}


def write_vrt(path: Path, sources: Sequence[Path], bounds: tuple[float, float, float, float] | None = None) -> Path:
    """A GDAL VRT at ``path`` mosaicking ``sources``: COGs of one grid (CRS, resolution, pixel
    edges; as a tiled run's tiles are), side by side, never overlapping, over ``bounds`` (left,
    bottom, right, top; the sources' own without), so that every month's VRT of a run has the same
    grid. Band descriptions, nodata, scale and colour interpretation are the first source's (every
    tile's are the same)."""
    metas = []
    for src in sources:
        with rasterio.open(src) as ds:
            metas.append((src, ds.profile, ds.bounds, ds.descriptions, ds.scales, ds.offsets, ds.colorinterp,
                          ds.block_shapes[0]))  # fmt: skip
    _, profile, _, descriptions, scales, offsets, colours, _ = metas[0]
    res_x, res_y = profile["transform"].a, profile["transform"].e
    left, bottom, right, top = bounds or (
        min(m[2].left for m in metas),
        min(m[2].bottom for m in metas),
        max(m[2].right for m in metas),
        max(m[2].top for m in metas),
    )
    width, height = round((right - left) / res_x), round((top - bottom) / -res_y)
    root = ET.Element("VRTDataset", rasterXSize=str(width), rasterYSize=str(height))
    ET.SubElement(root, "SRS", dataAxisToSRSAxisMapping="1,2").text = profile["crs"].to_wkt()
    ET.SubElement(root, "GeoTransform").text = ", ".join(repr(float(v)) for v in (left, res_x, 0, top, 0, res_y))
    dtype = _GDAL_TYPES[str(profile["dtype"])]
    nodata = profile.get("nodata")
    for b in range(profile["count"]):
        band = ET.SubElement(root, "VRTRasterBand", dataType=dtype, band=str(b + 1))
        if nodata is not None:
            ET.SubElement(band, "NoDataValue").text = "nan" if np.isnan(nodata) else repr(nodata)
        if descriptions[b]:
            ET.SubElement(band, "Description").text = descriptions[b]
        ET.SubElement(band, "ColorInterp").text = colours[b].name.capitalize()
        if scales[b] != 1.0 or offsets[b] != 0.0:
            ET.SubElement(band, "Offset").text = repr(float(offsets[b]))
            ET.SubElement(band, "Scale").text = repr(float(scales[b]))
        for src, prof, bounds, *_, block in metas:
            source = ET.SubElement(band, "SimpleSource")
            rel = src.resolve().relative_to(path.parent.resolve())
            ET.SubElement(source, "SourceFilename", relativeToVRT="1").text = rel.as_posix()
            ET.SubElement(source, "SourceBand").text = str(b + 1)
            ET.SubElement(source, "SourceProperties", RasterXSize=str(prof["width"]), RasterYSize=str(prof["height"]),
                          DataType=dtype, BlockXSize=str(block[1]), BlockYSize=str(block[0]))  # fmt: skip
            size = dict(xSize=str(prof["width"]), ySize=str(prof["height"]))
            ET.SubElement(source, "SrcRect", xOff="0", yOff="0", **size)
            x_off, y_off = round((bounds.left - left) / res_x), round((top - bounds.top) / -res_y)
            ET.SubElement(source, "DstRect", xOff=str(x_off), yOff=str(y_off), **size)
    ET.indent(root)
    tmp = path.with_name(f".{path.name}.partial")
    ET.ElementTree(root).write(tmp, encoding="unicode")
    tmp.replace(path)
    return path


def tile_summaries(tiles: Sequence[TileOutputs]) -> Mapping[str, int]:
    """Items per month, for the closing lines."""
    counts: dict[str, int] = {}
    for t in tiles:
        for m in t.written.months:
            counts[m.tag] = counts.get(m.tag, 0) + 1
    return counts
