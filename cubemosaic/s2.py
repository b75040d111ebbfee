"""Sentinel-2 L2A rules: the scene classification (SCL) mask and its dilation, the processing
baseline's reflectance offset, the solar day of an acquisition, the CRS of a scene, the native
resolution of a band's asset, and the reflectance scale.

Every stage and the demo take these from here. The mask rule is written once here and used by
both of :mod:`cubemosaic.read`'s reads (grids that line up, and the warped read of the rest) and
by the provenance written into each month's STAC item. The dilation uses scipy's binary dilation with a disc;
only choosing which classes grow and by how many SCL pixels is written here.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import pystac

from .errors import ReadError

__all__ = [
    "BASELINE_CHANGE",
    "BOA_OFFSET_DN",
    "DEFAULT_MASK_CLASSES",
    "DILATED_CLASSES",
    "REFLECTANCE_SCALE",
    "SCL_CLASSES",
    "CloudMask",
    "asset_resolution",
    "dominant_crs",
    "item_crs",
    "item_offset",
    "offset_contradiction",
    "solar_day",
    "stated_crs",
]

#: Scenes from this day on (processing baseline 04.00) carry BOA_ADD_OFFSET = -1000 DN.
BASELINE_CHANGE = dt.date(2022, 1, 25)
BOA_OFFSET_DN = 1000
#: Surface reflectance per DN (L2A's BOA_QUANTIFICATION_VALUE = 10000).
REFLECTANCE_SCALE = 1e-4

#: The SCL classes (Sentinel-2 L2A product specification).
SCL_CLASSES: dict[int, str] = {
    0: "no data",
    1: "saturated or defective",
    2: "dark area or cast shadow",
    3: "cloud shadow",
    4: "vegetation",
    5: "not vegetated",
    6: "water",
    7: "unclassified",
    8: "cloud medium probability",
    9: "cloud high probability",
    10: "thin cirrus",
    11: "snow or ice",
}
#: SCL classes masked by default: no data, saturated/defective, dark/cast shadow,
#: cloud shadow, cloud medium and high probability, thin cirrus.
DEFAULT_MASK_CLASSES: tuple[int, ...] = (0, 1, 2, 3, 8, 9, 10)
#: The masked classes that ``mask_dilation`` grows: clouds, cirrus and cloud shadows, whose edges
#: and haze the SCL misses. No data (0), saturated (1) and dark (2) pixels are exact and do not grow
#: (a tile's edge would otherwise eat into its neighbour's valid pixels).
DILATED_CLASSES: tuple[int, ...] = (3, 8, 9, 10)


@dataclass(frozen=True)
class CloudMask:
    """Which SCL classes are masked, and by how many metres clouds and their shadows are grown."""

    classes: tuple[int, ...] = DEFAULT_MASK_CLASSES
    #: Metres (0: no dilation). Applied on the SCL's own pixels, as a disc of this radius.
    dilation_m: float = 0.0

    @cached_property
    def _lookup(self) -> tuple[np.ndarray, np.ndarray]:
        # SCL value -> masked, a lookup instead of np.isin; over every uint16 value (64 kB), so
        # the SCL as read indexes it directly (clipping to 255 first took longer than the lookup).
        masked = np.zeros(1 << 16, dtype=bool)
        masked[np.asarray(self.classes, dtype=np.uint8)] = True
        grown = np.zeros(1 << 16, dtype=bool)
        grown[[c for c in DILATED_CLASSES if c in self.classes]] = True
        return masked, grown

    def radius_px(self, pixel_size: float) -> int:
        """The dilation radius in pixels of ``pixel_size`` metres (0 when there is none)."""
        if self.dilation_m <= 0:
            return 0
        return max(1, math.ceil(self.dilation_m / pixel_size - 1e-9))

    def masked(self, scl: np.ndarray, pixel_size: float) -> np.ndarray:
        """Boolean mask of ``scl`` (a 2-D SCL array of ``pixel_size`` m pixels): True where masked.

        With a dilation, pixels within ``dilation_m`` of a cloud, cirrus or shadow pixel are masked
        too; pixels near the array's edge only see what the array holds, so a caller that wants
        exact edges reads :meth:`radius_px` more pixels on each side.
        """
        masked, grown = self._lookup
        classes = scl if scl.dtype in (np.uint8, np.uint16) else np.clip(scl, 0, 255).astype(np.uint16)
        out = np.take(masked, classes)
        r = self.radius_px(pixel_size)
        if r:
            # scipy's ndimage imported where a mask is dilated: this module is imported by config,
            # and ndimage took about a second of the command line's start-up (``--help`` included).
            from scipy.ndimage import binary_dilation

            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            # At least the pixel's neighbours where the pixels are coarser than the dilation
            # (the warped read dilates on output pixels, which can be 60 or 100 m).
            reach = max(self.dilation_m, pixel_size)
            disc = (yy * pixel_size) ** 2 + (xx * pixel_size) ** 2 <= reach**2 + 1e-6
            out |= binary_dilation(np.take(grown, classes), structure=disc)
        return out

    def provenance(self) -> dict[str, Any]:
        """What the mask was, as a month's STAC item records it."""
        return {
            "classes": list(self.classes),
            "class_names": [SCL_CLASSES[c] for c in self.classes],
            "dilation_m": self.dilation_m,
            "dilated_classes": [c for c in DILATED_CLASSES if c in self.classes] if self.dilation_m else [],
        }


_KEY_RESOLUTION = re.compile(r"_(\d+)m$")


def asset_resolution(asset: Any, key: str) -> float | None:
    """The pixel size (m) of a STAC asset: ``gsd``, its projection transform, or a ``_20m`` key suffix."""
    fields = asset.extra_fields
    transform = fields.get("proj:transform")
    for value in (fields.get("gsd"), transform[0] if isinstance(transform, (list, tuple)) and transform else None):
        try:
            if value and float(value):
                return abs(float(value))
        except (TypeError, ValueError):  # a catalog's text where a number belongs: the next source says
            continue
    for band in fields.get("bands") or fields.get("raster:bands") or []:
        if band.get("raster:spatial_resolution") or band.get("spatial_resolution"):
            return float(band.get("raster:spatial_resolution") or band.get("spatial_resolution"))
    found = _KEY_RESOLUTION.search(key)
    return float(found.group(1)) if found else None


def solar_day(item: pystac.Item) -> dt.date:
    """Local solar date of an acquisition: UTC time shifted by the scene's longitude."""
    when = item.datetime or item.common_metadata.start_datetime
    if when is None:
        raise ValueError(f"item {item.id} has no datetime")
    lon = 0.0
    if item.bbox:
        lon = (item.bbox[0] + item.bbox[-2]) / 2
    shifted = when.astimezone(dt.timezone.utc) + dt.timedelta(hours=lon / 15)
    return shifted.date()


def item_offset(item: pystac.Item, asset_key: str | None = None) -> int:
    """DN to subtract from ``item``'s reflectance bands to remove the BOA offset.

    Decided per item, by the most explicit statement the catalog makes: the asset's
    scale and offset (STAC 1.0 ``raster:bands``, as Earth Search's scale 0.0001 / offset
    -0.1; STAC 1.1 ``raster:scale``/``raster:offset`` on the asset or in its ``bands``), then
    ``earthsearch:boa_offset_applied``, then the processing baseline >= 04.00
    (``s2:processing_baseline``, or ``processing:version`` as Copernicus Data Space states it), then
    the acquisition date (from 2022-01-25).
    """
    if asset_key and asset_key in item.assets:
        stated = _stated_offset(item.assets[asset_key].extra_fields)
        if stated is not None:
            return stated
    props = item.properties
    if "earthsearch:boa_offset_applied" in props:
        return BOA_OFFSET_DN if props["earthsearch:boa_offset_applied"] else 0
    baseline = _baseline(props)
    if baseline is not None:
        return BOA_OFFSET_DN if baseline >= 4.0 else 0
    when = item.datetime or item.common_metadata.start_datetime
    return BOA_OFFSET_DN if when and when.date() >= BASELINE_CHANGE else 0


def offset_contradiction(item: pystac.Item) -> str | None:
    """Why what ``item`` states of its BOA offset cannot be right, else None: a processing
    baseline older than 04.00 on a scene acquired after 04.00 replaced every older baseline
    (:data:`BASELINE_CHANGE`), where the baseline decides the offset (:func:`item_offset`; no
    asset states its scale and offset, nor ``earthsearch:boa_offset_applied``). Either statement
    may be the wrong one, and the two differ by 1000 DN in every pixel."""
    props = item.properties
    if "earthsearch:boa_offset_applied" in props:
        return None
    if any(_stated_offset(asset.extra_fields) is not None for asset in item.assets.values()):
        return None
    baseline = _baseline(props)
    when = item.datetime or item.common_metadata.start_datetime
    # A day's margin: scenes of the change's own day were processed with either baseline.
    if baseline is None or baseline >= 4.0 or when is None or when.date() <= BASELINE_CHANGE:
        return None
    key = "s2:processing_baseline" if props.get("s2:processing_baseline") else "processing:version"
    return (
        f"{key} {props[key]!r} is older than 04.00, which every scene acquired from {BASELINE_CHANGE} "
        f"on was processed with, yet it was acquired on {when.date()}: its reflectance offset "
        "(1000 DN) cannot be told"
    )


def _stated_offset(fields: Mapping[str, Any]) -> int | None:
    """The DN offset an asset's fields state (scale and offset: STAC 1.0 ``raster:bands``, STAC 1.1
    ``raster:scale``/``raster:offset`` on the asset or in its ``bands``), else None."""
    stated = [(b.get("scale"), b.get("offset")) for b in fields.get("raster:bands") or []]
    stated += [(b.get("raster:scale"), b.get("raster:offset")) for b in fields.get("bands") or []]
    stated.append((fields.get("raster:scale"), fields.get("raster:offset")))
    for scale, offset in stated:
        if scale and offset is not None:
            return int(round(-offset / scale))
    return None


def _baseline(props: Mapping[str, Any]) -> float | None:
    """The processing baseline an item states (``s2:processing_baseline``, or
    ``processing:version`` as Copernicus Data Space states it) as a number, else None."""
    baseline = props.get("s2:processing_baseline") or props.get("processing:version")
    try:
        return float(baseline) if baseline else None
    except (TypeError, ValueError):
        return None


def stated_crs(fields: Mapping[str, Any]) -> str | None:
    """The CRS STAC projection fields state: ``proj:code`` (projection v2), else ``proj:epsg``."""
    if fields.get("proj:code"):
        return str(fields["proj:code"])
    if fields.get("proj:epsg"):
        return f"EPSG:{fields['proj:epsg']}"
    return None


def item_crs(item: pystac.Item) -> str | None:
    """A scene's CRS: stated on the item, else on its first asset that states one."""
    for fields in (item.properties, *(a.extra_fields for a in item.assets.values())):
        if crs := stated_crs(fields):
            return crs
    return None


def dominant_crs(crss: Iterable[str | None]) -> str:
    """The CRS most scenes are in (``crss``: each scene's, None where it states none; ties: the
    first met); other scenes get reprojected."""
    counts = Counter(c for c in crss if c)
    if not counts:
        raise ReadError("crs: the scenes state no projection (proj:epsg / proj:code); set crs=EPSG:XXXX")
    return counts.most_common(1)[0][0]
