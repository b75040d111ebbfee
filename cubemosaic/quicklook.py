"""Quick-looks: a small true-colour PNG per month, read from the month's COG overviews, and one
overview picture of every month side by side with its date and clear-observation share.

Owns the stretch (2-98 percentile per band over valid pixels), the band choice (red, green, blue;
else the first three, two as R = first and G = B = second, one in grey: said in the returned
title), and the PNG layout. Memory stays small: only
an overview level no larger than ``MAX_SIDE`` is read.
"""

from __future__ import annotations

import logging
import math
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NamedTuple

import numpy as np
import rasterio
from PIL import Image, ImageDraw

__all__ = ["MAX_SIDE", "Quicklook", "clear_percent", "month_quicklook", "overview_picture"]

log = logging.getLogger(__name__)
MAX_SIDE = 1024
PANEL_SIDE = 256
#: zlib level 1 with its run-length strategy. Level 1 alone measured 0.18 s a month on the
#: benchmark, the default level 0.37 s and optimize=True 0.6 s, for files 15% and 20% smaller;
#: the run-length strategy then took a 10 m tile's 1024 px quick-look from 0.36 to 0.23 s and
#: the area's from 0.35 to 0.30 s, for files 15-22% smaller still (Pillow 13).
PNG_OPTIONS = {"compress_level": 1, "compress_type": zlib.Z_RLE}


class Quicklook(NamedTuple):
    """A written month quick-look: its path, the bands shown, a title, its clear-observation share."""

    path: Path
    bands: tuple[str, ...]
    title: str
    clear_share: float


def _out_shape(height: int, width: int, side: int) -> tuple[int, int]:
    factor = max(1.0, max(height, width) / side)
    return max(1, round(height / factor)), max(1, round(width / factor))


def _pick_bands(names: Sequence[str]) -> tuple[list[int], tuple[str, ...], str]:
    """1-based band indexes for red, green and blue of the picture, the bands it shows, and a
    title saying exactly what it shows: red, green, blue if all are there; else the first three
    as R, G, B; two bands as R = the first, G and B = the second; one band in grey."""
    lowered = [n.lower() for n in names]
    if all(c in lowered for c in ("red", "green", "blue")):
        indexes = [lowered.index(c) + 1 for c in ("red", "green", "blue")]
        return indexes, ("red", "green", "blue"), "True colour (red, green, blue)"
    missing = [c for c in ("red", "green", "blue") if c not in lowered]
    lacking = "no red/green/blue bands" if len(missing) == 3 else f"no {'/'.join(missing)} band"
    if len(names) >= 3:
        indexes = [1, 2, 3]
        shown = tuple(names[:3])
        what = f"False colour ({lacking}): showing {', '.join(shown)} as red, green, blue"
    elif len(names) == 2:
        indexes = [1, 2, 2]
        shown = tuple(names[:2])
        what = f"False colour ({lacking}): showing {shown[0]} as red, {shown[1]} as green and blue"
    else:
        indexes = [1, 1, 1]
        shown = (names[0],)
        what = f"Grey ({lacking}): showing {shown[0]}"
    log.warning("quicklook: %s", what)
    return indexes, shown, what


def clear_percent(share: float) -> str:
    """``share`` (0-1) as a percentage floored to one decimal: 100% only when every pixel is clear."""
    if share >= 1:
        return "100%"
    return f"{math.floor(share * 1000) / 10:.1f}%"


def _stretch(rgb: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """(3, y, x) pixels to uint8, each band 2-98 percentile of its valid pixels (numpy's linear
    percentiles) to 0-255, the rest clipped."""
    out = np.zeros(rgb.shape, dtype=np.uint8)
    if not valid.any():
        return out
    # Integers: every value of the type scaled once and looked up, the percentiles from a
    # histogram. The three bands of a 1024 px quick-look took 62-64 ms as float32 copies sorted
    # and scaled, 14-15 ms so, for the same picture (year20's export 3.5-3.7 -> 3.4-3.5 s).
    levels = np.arange(np.iinfo(rgb.dtype).max + 1, dtype=np.float32) if rgb.dtype in (np.uint8, np.uint16) else None
    for b in range(rgb.shape[0]):
        band = rgb[b]
        if levels is not None:
            lo, hi = _integer_percentiles(band[valid], (2, 98))
            out[b] = _scaled(levels, lo, hi)[band]
        else:
            lo, hi = np.percentile(band[valid].astype(np.float32), [2, 98])
            out[b] = _scaled(band.astype(np.float32), lo, hi)
    return out


def _scaled(values: np.ndarray, lo: np.float64, hi: np.float64) -> np.ndarray:
    """float32 ``values`` with ``lo`` at 0 and ``hi`` at 255 (in float64), clipped, as uint8."""
    return np.clip((values - lo) / max(float(hi - lo), 1e-6) * 255, 0, 255).astype(np.uint8)


def _integer_percentiles(values: np.ndarray, qs: Sequence[float]) -> list[np.float64]:
    """``np.percentile(values, qs)`` (linear) of unsigned 8 or 16 bit ``values``, from their
    histogram instead of a sort: the value of rank r is where the cumulative count passes r.
    Written here: numpy has no percentile of a histogram."""
    ranks = np.cumsum(np.bincount(values))
    n = int(ranks[-1])
    out = []
    for q in qs:
        pos = q / 100 * (n - 1)
        below = math.floor(pos)
        a, b = np.searchsorted(ranks, [below, min(below + 1, n - 1)], side="right").astype(np.float64)
        t = pos - below
        # numpy's linear interpolation as numpy computes it: from the upper value past the middle.
        out.append(b - (b - a) * (1 - t) if t >= 0.5 else a + (b - a) * t)
    return out


def month_quicklook(
    mosaic: Path,
    count: Path,
    png: Path,
    *,
    max_side: int = MAX_SIDE,
    area: Callable[[tuple[int, int]], np.ndarray] | None = None,
) -> Quicklook:
    """Write ``png`` (RGBA, nodata transparent, long side <= ``max_side``) from the ``mosaic`` COG.

    ``area(shape)``: which pixels of the picture lie in the area asked for (a polygon AOI); the
    clear share is of those. Without it, of the whole grid.
    """

    with rasterio.open(mosaic) as src:
        names = [d or f"band{i}" for i, d in enumerate(src.descriptions, start=1)]
        indexes, shown, title = _pick_bands(names)
        shape = _out_shape(src.height, src.width, max_side)
        rgb = src.read(indexes, out_shape=(3, *shape), resampling=rasterio.enums.Resampling.nearest)
        nodata = src.nodata
    with rasterio.open(count) as src:
        clear = src.read(1, out_shape=shape, resampling=rasterio.enums.Resampling.nearest) > 0
    valid = clear & (rgb != nodata).all(axis=0) if nodata is not None else clear
    pixels = _stretch(rgb, valid)
    alpha = np.where(valid, 255, 0).astype(np.uint8)
    Image.fromarray(np.dstack([*pixels, alpha]), mode="RGBA").save(png, **PNG_OPTIONS)
    inside = area(shape) if area is not None else np.ones(shape, dtype=bool)
    share = float(clear[inside].mean()) if inside.any() else 0.0
    return Quicklook(png, shown, title, share)


def overview_picture(quicklooks: Sequence[tuple[str, Quicklook]], png: Path) -> Path:
    """One picture of every month's quick-look side by side, captioned with its month and the
    share of the area asked for (the grid, or a polygon AOI's pixels) with at least one clear
    observation."""

    caption = 34
    panels = []
    for label, ql in quicklooks:
        with Image.open(ql.path) as im:
            im = im.convert("RGBA")
            im.thumbnail((PANEL_SIDE, PANEL_SIDE))
            panels.append((label, ql, im.copy()))
    width = max(1, sum(p[2].width for p in panels) + 8 * (len(panels) + 1))
    height = max((p[2].height for p in panels), default=1) + caption + 16
    sheet = Image.new("RGBA", (width, height), (255, 255, 255, 255))
    draw = ImageDraw.Draw(sheet)
    x = 8
    for label, ql, im in panels:
        sheet.alpha_composite(im, (x, 8))
        draw.text((x, 12 + im.height), label, fill=(0, 0, 0, 255))
        draw.text((x, 12 + im.height + 14), f"clear {clear_percent(ql.clear_share)}", fill=(60, 60, 60, 255))
        x += im.width + 8
    sheet.save(png, **PNG_OPTIONS)
    return png
