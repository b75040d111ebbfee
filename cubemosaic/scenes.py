"""STAC items parsed once into scenes: what the readers, the cube's signature and its provenance use.

The reader's inputs are defined here, where they are made: :class:`AssetGrid` (where an asset's
pixels are) and :class:`SceneSource` (what one scene gives a day's read); :mod:`cubemosaic.read`
takes them, and this module does not import the reader.

After the search (and the band resolution) in :mod:`cubemosaic.catalog`, this is the one module
that reads an item's raw STAC fields: its id and time, its CRS, platform and processing
baseline, and for each asset where its pixels are (:class:`AssetGrid`) and the
offset its reflectance carries. The Sentinel-2 rules it applies (solar day, CRS, offset) are
:mod:`cubemosaic.s2`'s.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import pystac

from .s2 import item_crs, item_offset, solar_day, stated_crs

__all__ = ["AssetGrid", "Scene", "SceneSource", "asset_grid", "parse_scene"]


@dataclass(frozen=True)
class AssetGrid:
    """Where an asset's pixels are: href, CRS and affine transform (a, b, c, d, e, f), shape (None
    where the catalog does not state them: the asset is then read through odc-loader's warping
    reader); whose they are (item id and asset key), to name them when a read fails; and whether
    it is JPEG2000 (whose reduced resolution levels are wavelet low-pass images, not samples)."""

    href: str
    crs: str | None
    transform: tuple[float, float, float, float, float, float] | None
    shape: tuple[int, int] | None
    item_id: str = ""
    key: str = ""
    jpeg2000: bool = False
    #: The item's lon/lat bbox (where the scene is, whatever its ``proj:`` fields say), if stated.
    bbox: tuple[float, float, float, float] | None = None


@dataclass(frozen=True)
class SceneSource:
    """What one scene contributes to a day: its bands (in output order), its SCL, its offset."""

    item_id: str
    bands: tuple[AssetGrid, ...]
    scl: AssetGrid
    offset: int


@dataclass(frozen=True)
class Scene:
    """One Sentinel-2 L2A scene (a STAC item), parsed."""

    id: str
    datetime: dt.datetime
    #: The local solar day of the acquisition (the cube's time step).
    day: dt.date
    crs: str | None
    platform: str
    #: The processing baseline as the catalog states it ("" when it does not).
    baseline: str
    #: Asset key -> where its pixels are.
    assets: Mapping[str, AssetGrid]
    #: Asset key -> DN to subtract to remove the baseline offset.
    offsets: Mapping[str, int]
    #: Where the scene has data: its item's GeoJSON ``geometry`` (WGS84), if stated.
    footprint: Mapping[str, Any] | None = None

    def source(self, keys: Sequence[str], scl_key: str) -> SceneSource:
        """What the scene gives a day's read: the bands ``keys`` (in output order) and the SCL."""
        return SceneSource(self.id, tuple(self.assets[k] for k in keys), self.assets[scl_key], self.offsets[keys[0]])


def parse_scene(item: pystac.Item) -> Scene:
    """``item`` as a :class:`Scene`."""
    crs = item_crs(item)
    props = item.properties
    return Scene(
        id=item.id,
        datetime=item.datetime or item.common_metadata.start_datetime,  # type: ignore[arg-type]
        day=solar_day(item),
        crs=crs,
        platform=str(props.get("platform", "")),
        baseline=str(props.get("s2:processing_baseline", "")),
        assets={key: asset_grid(item, key, crs) for key in item.assets},
        offsets={key: item_offset(item, key) for key in item.assets},
        footprint=item.geometry or None,
    )


def asset_grid(item: pystac.Item, key: str, crs: str | None) -> AssetGrid:
    """The asset's grid from its STAC projection fields (transform, shape, CRS; the item's ``crs``
    where the asset states none); without them, only its href (the reader then warps)."""
    asset = item.assets[key]
    fields = asset.extra_fields
    transform = _numbers(fields.get("proj:transform") or item.properties.get("proj:transform"), 6)
    shape = _numbers(fields.get("proj:shape") or item.properties.get("proj:shape"), 2)
    if shape is not None and (min(shape) < 1 or any(v != int(v) for v in shape)):
        shape = None
    if transform is not None and (transform[0] == 0 or transform[4] == 0):
        transform = None
    asset_crs = stated_crs(fields) or crs
    known = bool(transform and shape and asset_crs)
    return AssetGrid(
        asset.get_absolute_href() or asset.href,
        str(asset_crs) if asset_crs else None,
        transform if known else None,
        (int(shape[0]), int(shape[1])) if known and shape else None,
        item.id,
        key,
        _is_jpeg2000(asset),
        _lonlat_bbox(item),
    )


def _numbers(values: Any, n: int) -> tuple[float, ...] | None:
    """The first ``n`` of ``values`` as finite numbers, or None where a catalog states fewer, or
    anything else (text, null): a grid stated so is no grid, and the asset is read as its file
    says, as one the catalog states nothing of."""
    if not isinstance(values, (list, tuple)) or len(values) < n:
        return None
    try:
        out = tuple(float(v) for v in values[:n])
    except (TypeError, ValueError):
        return None
    return out if all(math.isfinite(v) for v in out) else None


def _lonlat_bbox(item: pystac.Item) -> tuple[float, float, float, float] | None:
    """The item's bbox as (min lon, min lat, max lon, max lat) (a 3-D bbox without its heights)."""
    box = item.bbox or []
    if len(box) == 4:
        return (float(box[0]), float(box[1]), float(box[2]), float(box[3]))
    if len(box) == 6:
        return (float(box[0]), float(box[1]), float(box[3]), float(box[4]))
    return None


def _is_jpeg2000(asset: pystac.Asset) -> bool:
    return (asset.media_type or "").startswith("image/jp2") or asset.href.lower().endswith(".jp2")
