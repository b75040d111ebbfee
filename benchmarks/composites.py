"""The statistics side by side on one cube: each one's composite stage, against the median's.

    python benchmarks/run.py --case stats20       # in the one table, with the other cases
    python benchmarks/composites.py               # alone, with geomad against odc-algo

The cube of ``year20`` (12 months x 5 scenes at 20 m) is built once (``stage=cube``); then
``stage=composite`` runs once per statistic on it (``overwrite=true`` replaces the months), each
a process of its own, timed and its peak memory taken from outside as every other case. The
targets (issue 22): p25 within 1.2x of the median's composite time, medoid within 2x, memory
within 1.1x. :func:`geomedian_peers` times geomad's geometric median and MADs, as cubemosaic
calls it, against odc-algo's ``geomedian_with_mads`` on the same month blocks, when odc-algo is
installed (``pip install odc-algo``).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

#: The statistics timed, each against the median.
STATISTICS = ("median", "p25", "medoid", "geomedian")


def composite_rows(year, work: Path, measure_cli) -> dict[tuple[str, str], dict]:
    """One row per statistic: the composite stage on ``year``'s cube at 20 m."""
    out = work / "stats20"
    rows: dict[tuple[str, str], dict] = {}
    cube = measure_cli(year, year.items_path, out, None, 20, "stage=cube")
    rows[("stats20", "cube (once)")] = cube
    for name in STATISTICS:
        rows[("stats20", f"composite statistic={name}")] = measure_cli(
            year, year.items_path, out, None, 20, "stage=composite", f"statistic={name}"
        )
    return rows


def checks(rows: dict[tuple[str, str], dict]) -> list[str]:
    """The targets, as ratios of composite-stage times and peaks measured in the same run."""
    median = rows.get(("stats20", "composite statistic=median"))
    if not median or median["rc"]:
        return []
    base = median["stages"].get("composite") or median["seconds"]
    lines = []
    for name, target in (("p25", 1.2), ("medoid", 2.0), ("geomedian", None)):
        row = rows.get(("stats20", f"composite statistic={name}"))
        if not row or row["rc"]:
            continue
        ratio = (row["stages"].get("composite") or row["seconds"]) / base
        peak = row["peak_mb"] / median["peak_mb"]
        goal = f" (target <= {target})" if target else ""
        lines.append(f"stats20: {name} composite / median composite = {ratio:.2f}{goal}; peak {peak:.2f}x the median's")
    return lines


def geomedian_peers(year, months: int = 2) -> list[str]:
    """geomad (as cubemosaic calls it) against odc-algo's ``geomedian_with_mads`` on the same
    month blocks of ``year``'s scenes (a 1024 x 1024 block, 4 bands)."""
    import xarray as xr

    from cubemosaic.statistics import Composite, MonthBlock, parse_statistic

    cube_path = HERE / "results" / "work" / "stats20" / "cube.zarr"
    if not cube_path.exists():
        return ["geomedian peers: no cube (run the stats20 case first)"]
    cube = xr.open_zarr(cube_path, mask_and_scale=False)
    bands = [b for b in ("red", "green", "blue", "nir") if b in cube]
    times = cube.time.values.astype("datetime64[M]")
    lines = []
    composite = Composite(tuple(bands), (parse_statistic("geomedian"),))
    for month in np.unique(times)[:months]:
        sel = np.nonzero(times == month)[0]
        block = cube.isel(time=sel, y=slice(0, 1024), x=slice(0, 1024))
        raw = {
            b: (block[b].values * 1e4).round().astype(np.uint16) if block[b].dtype.kind == "f" else block[b].values
            for b in bands
        }
        raw = {b: np.nan_to_num(v, nan=0).astype(np.uint16) for b, v in raw.items()}
        start = time.perf_counter()
        composite.reduce(MonthBlock(raw, np.ones(len(sel), dtype=np.uint8)))
        ours = time.perf_counter() - start
        line = (
            f"geomedian {str(month)}: {len(sel)} scenes, 1024 x 1024 x {len(bands)}: cubemosaic (geomad) {ours:.2f} s"
        )
        try:
            from odc.algo import geomedian_with_mads
        except ImportError:
            lines.append(line + "; odc-algo not installed")
            continue
        import dask.array as da

        data = xr.Dataset(
            {b: (("time", "y", "x"), da.from_array(raw[b], chunks=(1, 1024, 1024)), {"nodata": 0}) for b in bands},
            coords={"time": np.arange(len(sel))},
        )
        start = time.perf_counter()
        # odc-algo's defaults for integer input at scale 1e-4 (eps = 0.1 * scale); its "mem" strategy
        # needs a single-worker distributed cluster, so "yxbt", on the synchronous scheduler as ours.
        geomedian_with_mads(data, scale=1e-4, num_threads=1, reshape_strategy="yxbt", work_chunks=(1024, 1024)).compute(
            scheduler="synchronous"
        )
        theirs = time.perf_counter() - start
        lines.append(line + f"; odc-algo geomedian_with_mads {theirs:.2f} s ({theirs / ours:.2f}x ours)")
    return lines


if __name__ == "__main__":
    from archive import bench_archive
    from run import RESULTS, run_cubemosaic, table

    year = bench_archive(12)
    rows = composite_rows(year, RESULTS / "work", run_cubemosaic)
    print(table(rows))
    for line in checks(rows) + geomedian_peers(year):
        print(f"- {line}")
