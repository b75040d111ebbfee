"""The peers cubemosaic is measured against; each runs as its own process.

    python benchmarks/peers.py floor    ITEMS_JSON OUT_DIR AOI START END
    python benchmarks/peers.py original ITEMS_JSON OUT_DIR AOI START END
    python benchmarks/peers.py odc      ITEMS_JSON OUT_DIR AOI START END

- floor: decode once every input pixel a correct read needs (each asset at the coarsest
  overview level whose pixels nest in the output's, at full resolution where none does or the
  grid is another zone's), a thread per core (over HTTP 16 reads in flight, with the GDAL
  settings for remote reads), and nothing else: the physical floor of the job.
- original: the eoap cloudless-mosaic recipe, step for step: stackstac stack, x > 0,
  persist, group by year-month, median, compute (no SCL mask, no offset harmonisation).
- odc: what an expert writes with odc-stac: load grouped by solar day, SCL mask, offset
  harmonisation, ``resample(time="1MS").median()`` (flox), written to Zarr.

Each writes ``result.json`` with its monthly medians' location for the correctness check.
"""

from __future__ import annotations

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

#: Output resolution (metres) and the floor's reads in flight, set by run.py per case.
RES = float(os.environ.get("BENCH_RES", "20"))
THREADS = int(os.environ.get("BENCH_THREADS", "0")) or (os.cpu_count() or 1)
BANDS = ["B04", "B03", "B02", "B08"]  # red, green, blue, nir
MASK = [0, 1, 2, 3, 8, 9, 10]


def _items(path: str):
    import pystac

    return [pystac.Item.from_dict(f) for f in json.loads(Path(path).read_text())["features"]]


#: The output CRS of every case (the archives' dominant zone).
CRS = "EPSG:32610"


def nesting_level(ds, res: float, crs: str = CRS) -> tuple[int | None, float]:
    """The overview level of the open file ``ds`` a correct read at ``res`` decodes, and its pixel
    size: the coarsest whose pixels nest in the output's (the resolution a whole multiple of the
    level's, the output's pixel edges, on multiples of ``res``, on the level's edges), None (the
    full resolution) where none does or the file is in another CRS (a grid turned against the
    output's: no overview pixel nests, the native pixel under each output centre is needed)."""
    native = ds.res[0]
    same = ds.crs is not None and ds.crs.to_string() == crs
    if not same or res <= native:
        return None, native
    best: tuple[int | None, float] = (None, native)
    for level, factor in enumerate(ds.overviews(1)):
        size = native * factor
        ratio = res / size
        edge = (ds.transform.c % res) / size  # the output's edges in level pixels from the file's
        if abs(ratio - round(ratio)) < 1e-6 and abs(edge - round(edge)) < 1e-6:
            best = (level, size)
    return best


def floor(items, out: Path, aoi, start, end) -> dict:
    """Decode, once, every input pixel a correct read needs, and nothing else: each asset's window of
    the area at its nesting level (:func:`nesting_level`: an overview where one nests, else the
    full resolution; another zone's tiles at full resolution)."""
    import rasterio
    from odc.geo.geom import box
    from rasterio.windows import Window, from_bounds

    area = box(*aoi, "EPSG:4326")
    jobs = [(item.assets[key].href, area) for item in items for key in BANDS + ["SCL"]]

    # GDAL's settings for remote reads that any careful reader sets (no directory listing on open,
    # consecutive ranges merged, multi-range requests in parallel): cubemosaic's own, so that over
    # HTTP the floor is the latency bound of THREADS reads in flight, not GDAL's defaults.
    from cubemosaic.read import GDAL_READ_OPTIONS

    def read(job):
        href, area = job
        with rasterio.Env(**GDAL_READ_OPTIONS):
            with rasterio.open(href) as ds:
                level, size = nesting_level(ds, RES)
                bounds = area.to_crs(ds.crs).boundingbox
            options = {} if level is None else {"OVERVIEW_LEVEL": f"{level}only"}
            with rasterio.open(href, **options) as lvl:
                window = from_bounds(*bounds, transform=lvl.transform).round_offsets().round_lengths()
                # Only the file's own pixels (a region's tile covers part of the area).
                window = window.intersection(Window(0, 0, lvl.width, lvl.height))
                return lvl.read(1, window=window).nbytes

    with ThreadPoolExecutor(THREADS) as pool:
        decoded = sum(pool.map(read, jobs))
    return {"decoded_bytes": decoded, "reads": len(jobs)}


def original(items, out: Path, aoi, start, end) -> dict:
    import stackstac
    import xarray as xr
    from distributed import Client, LocalCluster

    with LocalCluster(dashboard_address=None) as cluster, Client(cluster):
        data = stackstac.stack(items, assets=BANDS, chunksize=(10, 3, 512, 512), resolution=RES,
                               epsg=32610, bounds_latlon=aoi).where(lambda x: x > 0, other=np.nan)  # fmt: skip
        data = data.persist()
        months = data.time.dt.strftime("%Y-%m").rename("month")
        monthly = data.groupby(months).median().compute()
    result = xr.Dataset(
        {name: (("time", "y", "x"), monthly.sel(band=key).values.astype("float32")) for name, key in
         zip(["red", "green", "blue", "nir"], BANDS, strict=True)},
        coords={"time": np.array([f"{m}-01" for m in monthly.month.values], dtype="datetime64[ns]"),
                "y": monthly.y.values, "x": monthly.x.values},
    )  # fmt: skip
    result.to_zarr(out / "monthly.zarr", mode="w")
    return {"monthly": str(out / "monthly.zarr")}


def odc(items, out: Path, aoi, start, end) -> dict:
    import odc.stac
    import xarray as xr

    from cubemosaic.s2 import item_offset

    ds = odc.stac.load(items, bands=BANDS + ["SCL"], crs="EPSG:32610", resolution=RES, bbox=aoi,
                       groupby="solar_day", chunks={"x": 2048, "y": 2048},
                       resampling={"*": "nearest", "SCL": "nearest"})  # fmt: skip
    # One offset per solar day (the tiles of a day are one datatake, of one baseline).
    by_day = {str(i.datetime.date()): item_offset(i) for i in items}
    offsets = xr.DataArray([by_day[str(t)[:10]] for t in ds.time.values], dims="time",
                           coords={"time": ds.time})  # fmt: skip
    valid = ~ds.SCL.isin(MASK)
    for key in BANDS:
        valid &= ds[key] != 0
    out_ds = xr.Dataset()
    for name, key in zip(["red", "green", "blue", "nir"], BANDS, strict=True):
        refl = (ds[key].astype("float32") - offsets).clip(min=1).where(valid)
        out_ds[name] = refl.resample(time="1MS").median()
    out_ds.to_zarr(out / "monthly.zarr", mode="w")
    return {"monthly": str(out / "monthly.zarr")}


def main() -> None:
    kind, items_json, out, aoi, start, end = sys.argv[1:7]
    out_dir = Path(out)
    out_dir.mkdir(parents=True, exist_ok=True)
    bbox = tuple(float(v) for v in aoi.strip("[]").split(","))
    items = [i for i in _items(items_json) if start <= i.datetime.date().isoformat() <= end]
    t = time.perf_counter()
    info = {"floor": floor, "original": original, "odc": odc}[kind](items, out_dir, bbox, start, end)
    info["seconds"] = time.perf_counter() - t
    (out_dir / "result.json").write_text(json.dumps(info))


if __name__ == "__main__":
    main()
