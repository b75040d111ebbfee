"""An oracle for the statistics, made from the demo archive's own files, independently of the pipeline.

:func:`clear_observations` reads every scene's COGs with rasterio (bands at 10 m, SCL at 20 m),
masks with the SCL classes, removes each scene's offset (from its processing baseline) and keeps
valid values >= 1, fusing same-day scenes: per month, the (days, y, x) clear DN of each band on
the archive's 20 m grid (NaN where not clear). The statistics below are computed from it with
numpy alone (the definitions users compare against), never with cubemosaic's kernels.
"""

from __future__ import annotations

import datetime as dt
import json
import warnings
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr

from cubemosaic.s2 import DEFAULT_MASK_CLASSES

BANDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}


def clear_observations(demo, bands=tuple(BANDS)) -> dict[str, xr.Dataset]:
    """Per month (YYYY-MM): a Dataset of each band's (time, y, x) clear harmonised DN (NaN = none),
    with ``day`` (day of month) along time, on the archive's 20 m grid (the truth's coordinates)."""
    truth = demo.truth()
    x0, y0 = float(truth.x[0]) - 10, float(truth.y[0]) + 10
    ny, nx = truth.sizes["y"], truth.sizes["x"]
    items = json.loads(Path(demo.items_path).read_text())["features"]
    days: dict[dt.date, dict[str, np.ndarray]] = {}
    for item in sorted(items, key=lambda f: (f["properties"]["datetime"], f["id"])):
        when = dt.datetime.fromisoformat(item["properties"]["datetime"].replace("Z", "+00:00"))
        baseline = item["properties"].get("s2:processing_baseline", "00.00")
        offset = 1000 if float(baseline) >= 4.0 else 0
        with rasterio.open(_path(item, "SCL")) as src:
            scl = src.read(1)
            col = round((src.transform.c - x0) / 20)
            row = round((y0 - src.transform.f) / 20)
        clear = ~np.isin(scl, DEFAULT_MASK_CLASSES)
        day = days.setdefault(when.date(), {b: np.full((ny, nx), np.nan) for b in bands})
        window = (slice(row, row + scl.shape[0]), slice(col, col + scl.shape[1]))
        for band in bands:
            with rasterio.open(_path(item, BANDS[band])) as src:
                dn = src.read(1)[::2, ::2].astype(np.float64)  # each 20 m pixel is 2 x 2 equal 10 m pixels
            value = np.where(clear & (dn > 0), np.maximum(dn - offset, 1), np.nan)
            target = day[band][window]
            np.copyto(target, value, where=np.isnan(target))  # the day's first clear value
    months: dict[str, list[dt.date]] = {}
    for d in sorted(days):
        months.setdefault(d.strftime("%Y-%m"), []).append(d)
    out = {}
    for month, ds in months.items():
        data = {b: (("time", "y", "x"), np.stack([days[d][b] for d in ds])) for b in bands}
        out[month] = xr.Dataset(
            data,
            coords={
                "time": [np.datetime64(d, "ns") for d in ds],
                "y": truth.y,
                "x": truth.x,
                "day": ("time", [d.day for d in ds]),
            },
        )
    return out


def _quiet():
    ctx = warnings.catch_warnings()
    ctx.__enter__()
    warnings.simplefilter("ignore", RuntimeWarning)
    return ctx


def percentile(stack: np.ndarray, q: float, method: str, rounded: bool = True) -> np.ndarray:
    """numpy's percentile of each pixel's clear values (NaN = not clear), rounded to DN (half to
    even) unless ``rounded`` is false; NaN where none. numpy's ``percentile`` on the pixels with the
    same number of clear values at a time (``nanpercentile`` goes pixel by pixel: minutes here)."""
    values = np.sort(stack, axis=0)  # NaN last
    n = (~np.isnan(stack)).sum(axis=0)
    out = np.full(stack.shape[1:], np.nan)
    for k in range(1, stack.shape[0] + 1):
        where = n == k
        if where.any():
            out[where] = np.percentile(values[:k, where], q, axis=0, method=method)
    return np.rint(out) if rounded else out


def medoid(month: xr.Dataset, bands) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Per pixel, the clear observation (every band clear) nearest in Euclidean distance to the
    band-wise median of those observations, the earliest of equals: its values and its day (0 none)."""
    stack = np.stack([month[b].values for b in bands])  # (bands, t, y, x)
    clear = ~np.isnan(stack).any(axis=0)
    stack = np.where(clear[None], stack, np.nan)
    ctx = _quiet()
    try:
        median = np.nanmedian(stack, axis=1)  # (bands, y, x)
    finally:
        ctx.__exit__(None, None, None)
    distance = np.sqrt(np.nansum((stack - median[:, None]) ** 2, axis=0))
    distance[~clear] = np.inf
    best = np.argmin(distance, axis=0)
    has = clear.any(axis=0)
    values = {
        b: np.where(has, np.take_along_axis(stack[k], best[None], axis=0)[0], np.nan) for k, b in enumerate(bands)
    }
    return values, np.where(has, month["day"].values[best], 0)


def geomedian(month: xr.Dataset, bands, iterations: int = 5000, eps: float = 1e-8) -> np.ndarray:
    """The geometric median of each pixel's clear observations (every band clear), reflectance 0-1,
    by Weiszfeld's iteration in float64 (a reference written here, not geomad's), each pixel
    iterated until its step is below ``eps`` (1e-4 DN): (bands, y, x), NaN where none."""
    x = np.stack([month[b].values for b in bands]) * 1e-4  # (bands, t, y, x)
    nb, _, ny, nx = x.shape
    clear = ~np.isnan(x).any(axis=0)
    pixels = np.nonzero(clear.any(axis=0).ravel())[0]
    pts = x.reshape(nb, -1, ny * nx)[:, :, pixels]  # (bands, t, P)
    ok = clear.reshape(-1, ny * nx)[:, pixels]  # (t, P)
    pts = np.where(ok[None], pts, 0.0)
    estimate = pts.sum(axis=1) / ok.sum(axis=0)  # the mean to start
    active = np.arange(len(pixels))
    for _ in range(iterations):
        p, m, e = pts[:, :, active], ok[:, active], estimate[:, active]
        d = np.sqrt(((p - e[:, None]) ** 2).sum(axis=0))
        w = np.where(m, 1 / np.maximum(d, 1e-12), 0.0)
        new = (p * w[None]).sum(axis=1) / w.sum(axis=0)
        estimate[:, active] = new
        active = active[np.abs(new - e).max(axis=0) > eps]
        if not active.size:
            break
    out = np.full((nb, ny * nx), np.nan)
    out[:, pixels] = estimate
    return out.reshape(nb, ny, nx)


def emad(month: xr.Dataset, bands, gm: np.ndarray) -> np.ndarray:
    """Median over the clear observations of the Euclidean distance to ``gm`` (reflectance)."""
    x = np.stack([month[b].values for b in bands]) * 1e-4
    clear = ~np.isnan(x).any(axis=0)
    d = np.sqrt(np.sum((x - gm[:, None]) ** 2, axis=0))
    d[~clear] = np.nan
    ctx = _quiet()
    try:
        return np.nanmedian(d, axis=0)
    finally:
        ctx.__exit__(None, None, None)


def _path(item: dict, key: str) -> str:
    return item["assets"][key]["href"].removeprefix("file://")


def assert_geomedian(month, bands, got: np.ndarray, tag: str) -> np.ndarray:
    """``got`` (bands, y, x) DN against the Weiszfeld reference: within 1 DN (2 DN at most, for a
    slowly converging pixel) where a pixel has three or more clear observations; with two, the
    geometric median is any point between them (geomad and the reference may pick others), so
    it must lie on that segment; with one, it is that observation; 0 where there is none."""
    reference = geomedian(month, bands)
    x = np.stack([month[b].values for b in bands])  # (bands, t, y, x) DN, NaN = not clear
    clear = ~np.isnan(x).any(axis=0)
    n = clear.sum(axis=0)
    g = got.astype(np.float64)
    assert (got[:, n == 0] == 0).all(), f"{tag}: nodata where no clear observation"
    many = n >= 3
    ref = np.rint(reference * 1e4)
    diff = np.abs(g - ref).max(axis=0)
    assert (diff[many] <= 1).mean() > 0.999, (tag, (diff[many] <= 1).mean())
    # Where they differ by more, geomad's point must be the better minimiser of the sum of
    # distances (the geometric median's definition), up to its rounding to whole DN.
    for y, x_ in zip(*np.nonzero(many & (diff > 1)), strict=True):
        pts = x[:, clear[:, y, x_], y, x_]
        cost = lambda p, pts=pts: np.linalg.norm(pts - p[:, None], axis=0).sum()  # noqa: E731
        slack = 0.5 * np.sqrt(len(bands)) * pts.shape[1]
        assert cost(g[:, y, x_]) <= cost(reference[:, y, x_] * 1e4) + slack, (tag, y, x_)
    two = n == 2
    pts = np.where(clear[None], x, np.nan)[:, :, two]  # (bands, t, P): two clear columns per pixel
    order = np.argsort(~clear[:, two], axis=0, kind="stable")[:2]  # the two clear time steps
    a = np.take_along_axis(pts, order[None, :1], axis=1)[:, 0]
    b = np.take_along_axis(pts, order[None, 1:2], axis=1)[:, 0]
    at = g[:, two]
    detour = np.linalg.norm(at - a, axis=0) + np.linalg.norm(at - b, axis=0) - np.linalg.norm(a - b, axis=0)
    assert not two.any() or detour.max() <= 2 * np.sqrt(len(bands)), (tag, detour.max())  # on the segment
    one = n == 1
    single = np.nansum(np.where(clear[None], x, 0), axis=1)
    assert not one.any() or np.abs(g[:, one] - single[:, one]).max() <= 1, tag
    return reference
