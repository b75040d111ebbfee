"""The benchmark archives: the demo generator at the size of one Sentinel-2 tile's worth of pixels.

One 36 km square at 10 m (3600 x 3600 px; SCL 1800 x 1800 at 20 m), five scenes a month,
bands B02 B03 B04 B08 + SCL, with per-pixel texture so the COGs compress like real ones.
Generated once into ``benchmarks/cache/`` (or ``$CUBEMOSAIC_BENCH_DIR``) and reused.
"""

from __future__ import annotations

import datetime as dt
import os
from dataclasses import replace
from pathlib import Path

from cubemosaic.demo import DemoArchive, DemoSpec, ensure_demo
from cubemosaic.regiondemo import RegionArchive, RegionSpec, acquisition_days, ensure_region

CACHE = Path(os.environ.get("CUBEMOSAIC_BENCH_DIR", Path(__file__).parent / "cache"))
SIZE = 1800  # 20 m pixels: 36 km
SCENES_PER_MONTH = 5


def bench_spec(months: int, start: dt.date = dt.date(2021, 7, 1)) -> DemoSpec:
    """``months`` months from ``start``, five scenes each (days 3, 9, 15, 21, 27), the baseline change inside."""
    days: list[str] = []
    year, month = start.year, start.month
    for _ in range(months):
        days += [dt.date(year, month, d).isoformat() for d in (3, 9, 15, 21, 27)]
        year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    return DemoSpec(
        size=SIZE,
        days=tuple(days),
        pair_days=(),
        edge_days=tuple(days[2::7]),
        cloudy_day=days[1],
        always_cloudy_month=days[-1][:7],
        blocksize=512,
    )


def bench_archive(months: int) -> DemoArchive:
    return ensure_demo(bench_spec(months), cache_dir=CACHE)


#: One whole MGRS tile: 109.8 km, 10980 px at 10 m (5490 at 20 m).
TILE_SIZE = 5490


def tile_spec() -> DemoSpec:
    """A whole tile at 10 m: eight scenes over two months (days 4, 12, 20, 28), one cloudy."""
    days = tuple(f"2022-{m:02d}-{d:02d}" for m in (5, 6) for d in (4, 12, 20, 28))
    return DemoSpec(
        origin=(499980.0, 5300040.0),
        size=TILE_SIZE,
        days=days,
        pair_days=(),
        edge_days=(days[2],),
        cloudy_day=days[5],
        always_cloudy_month="",
        blocksize=1024,
    )


def tile_archive() -> DemoArchive:
    return ensure_demo(tile_spec(), cache_dir=CACHE)


#: Per-pixel noise (DN) of the fast-decoding archives, whose pixels decode about as fast as real
#: L2A COGs (issue 19: ~2x faster than the textured archives'). Measured on 2048 px, DEFLATE +
#: predictor, 512 px blocks: texture 60 takes 1.38 bytes a pixel and 0.125 s to decode; 8-15 take
#: 0.91-1.05 bytes and 0.067-0.084 s. There the fixed costs beyond decoding show.
FAST_TEXTURE = 12.0


def fast_archive(kind: str) -> DemoArchive:
    """The ``tile`` (whole tile at 10 m) or ``year`` (12 months) archive with fast-decoding pixels."""
    spec = tile_spec() if kind == "tile" else bench_spec(12)
    return ensure_demo(replace(spec, texture=FAST_TEXTURE), cache_dir=CACHE)


def region_spec() -> RegionSpec:
    """The benchmark's region (region20, region60; as issue 19 measured it): 3 x 2 tiles of 18 km straddling the UTM 10/11 boundary at -120 deg (two
    columns in zone 10, one in zone 11), neighbours overlapping 10 %, two relative orbits with
    swath-edge wedges, 6 months from 2021-11 (the +1000 offset from 2022-01-25), every 15 days per orbit."""
    return RegionSpec(
        tile_px=900,
        orbits=((13, acquisition_days("2021-11-01", 6, 2, 15)), (113, acquisition_days("2021-11-01", 6, 9, 15))),
        cloudy_day="2021-12-02",
        always_cloudy_month="2022-03",
        blocksize=512,
    )


def region_archive() -> RegionArchive:
    return ensure_region(region_spec(), cache_dir=CACHE)


def area_spec(scale: int, tile_px: int = 450) -> RegionSpec:
    """A region of tiles of ``tile_px`` 20 m pixels (450: 9 km), ``scale`` x ``scale`` times the 3 x 2
    tiles (scale 2: four times the area), two months: for the large-area cases (``large.py``) and,
    with 900 (region20's 18 km tiles), peak memory against the region's area (``area20``)."""
    return RegionSpec(tile_px=tile_px, cols=(2 * scale, scale), rows=2 * scale, blocksize=256)


def area_archive(scale: int, tile_px: int = 450) -> RegionArchive:
    return ensure_region(area_spec(scale, tile_px), cache_dir=CACHE)


def request_args(archive: DemoArchive | RegionArchive) -> dict[str, str]:
    """The job's area and dates: the archive, inset ~1.5 km so the UTM grid stays inside it (a
    region: its own AOI, inside every edge of its coverage)."""
    if isinstance(archive, RegionArchive):
        days = [d for d, _ in archive.spec.days]
        return {"aoi": "[{},{},{},{}]".format(*archive.aoi(inset_m=500)), "start_date": days[0], "end_date": days[-1]}
    x0, y0, x1, y1 = archive.bbox_lonlat()
    d = 0.02
    return {
        "aoi": f"[{x0 + d},{y0 + d},{x1 - d},{y1 - d}]",
        "start_date": archive.spec.days[0],
        "end_date": archive.spec.days[-1],
    }


if __name__ == "__main__":
    import logging
    import sys
    import time

    logging.basicConfig(level=logging.INFO)
    args = sys.argv[1:] or ["12", "24"]
    for n in [int(a) for a in args if a.isdigit()]:
        t = time.time()
        a = bench_archive(n)
        print(f"{n} months: {a.root} ({time.time() - t:.0f} s)")
    if "region" in args:
        t = time.time()
        r = region_archive()
        print(f"region: {r.root} ({time.time() - t:.0f} s)")
    if "tile" in args:
        t = time.time()
        a = tile_archive()
        print(f"whole tile at 10 m: {a.root} ({time.time() - t:.0f} s)")
    for kind in ("year", "tile"):
        if f"fast{kind}" in args:
            t = time.time()
            a = fast_archive(kind)
            print(f"fast-decoding {kind}: {a.root} ({time.time() - t:.0f} s)")
