"""Sentinel-2 L2A rules: the scene classification (SCL) mask and its dilation, and the native
resolution of a band's asset.

The mask rule is written once here and used by both readers (:mod:`cubemosaic.read` for grids
that line up, the odc-stac path in :mod:`cubemosaic.cube` for the rest) and by the provenance
written into each month's STAC item. The dilation uses scipy's binary dilation with a disc;
only choosing which classes grow and by how many SCL pixels is written here.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np

__all__ = ["DEFAULT_MASK_CLASSES", "DILATED_CLASSES", "SCL_CLASSES", "CloudMask", "asset_resolution"]

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
        masked = np.zeros(256, dtype=bool)  # SCL class -> masked, a lookup instead of np.isin
        masked[np.asarray(self.classes, dtype=np.uint8)] = True
        grown = np.zeros(256, dtype=bool)
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
        classes = np.minimum(scl, 255)
        out = masked[classes]
        r = self.radius_px(pixel_size)
        if r:
            from scipy.ndimage import binary_dilation

            yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
            disc = (yy * pixel_size) ** 2 + (xx * pixel_size) ** 2 <= self.dilation_m**2 + 1e-6
            out |= binary_dilation(grown[classes], structure=disc)
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
    for value in (fields.get("gsd"), (fields.get("proj:transform") or [None])[0]):
        if value:
            return abs(float(value))
    for band in fields.get("bands") or fields.get("raster:bands") or []:
        if band.get("raster:spatial_resolution") or band.get("spatial_resolution"):
            return float(band.get("raster:spatial_resolution") or band.get("spatial_resolution"))
    found = _KEY_RESOLUTION.search(key)
    return float(found.group(1)) if found else None
