"""Large-area cases of ``run.py``: tiles as work units, their scaling, the sparse AOI, the plan.

- ``tiles20``: the 3 x 2-tile region (``area_archive(1)``) and one four times its area
  (``area_archive(2)``) at 20 m, cut into tiles of 512 px: cubemosaic against each one's floor
  (time per output pixel x the floor: the larger <= 1.25x the smaller's), peak memory of the
  process tree (<= 1.2x), correctness through the month VRTs against the region's truth;
- ``sparse20``: the small region under its own AOI and under a box ~100x its area (tiles of the
  default size): time and memory <= 1.5x, the same pixels where the data is;
- ``plan``: ``stage=plan`` of Planetary Computer issue #12's request (600 x 400 km, two months,
  10 m, ``pc12.py``'s items: real MGRS footprints, every revisit of both satellites): < 60 s,
  < 2 GB; and the plan of ``tiles20``'s larger run served over HTTP against what that run
  measures (bytes served, bytes written, peak memory: within 2x);
- ``export2``: the export stage of ``tiles20``'s larger run (20 tiles) in this process and on a
  local Dask cluster of 2 single-threaded worker processes: its time, the COGs identical.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent

TILE = 512


def stage_seconds(stderr: str) -> dict[str, float]:
    """Seconds per stage, the tiles' summed (``timing: cube tile x1y2 1.2 s``)."""
    out: dict[str, float] = {}
    for stage, seconds in re.findall(r"timing: (\w+)(?: tile \S+)? ([\d.]+) s", stderr):
        out[stage] = out.get(stage, 0.0) + float(seconds)
    return out


def vrt_dataset(out: Path):
    """The month VRTs of a tiled run as the monthly store's DN (time, y, x) per band, on their grid."""
    import odc.geo.xr  # noqa: F401
    import rioxarray  # noqa: F401
    import xarray as xr
    from run import NAMES

    vrts = sorted(p for p in out.glob("monthly-mosaic-????-??.vrt"))
    months = []
    for vrt in vrts:
        da = xr.open_dataarray(vrt, engine="rasterio", mask_and_scale=False)
        names = list(da.attrs["long_name"])
        months.append(xr.Dataset({n: (("y", "x"), da.values[names.index(n)]) for n in NAMES}, coords=dict(
            x=da.x, y=da.y, spatial_ref=da.spatial_ref)))  # fmt: skip
    ds = xr.concat(months, dim="time")
    return ds.assign_coords(time=[np.datetime64(f"{v.stem[-7:]}-01") for v in vrts])


def command(archive, items: Path, out: Path, res: int, *extra: str, aoi: str | None = None) -> list[str]:
    """The CLI on ``items`` over the archive's AOI (or ``aoi``) and period."""
    from archive import request_args

    req = request_args(archive)
    return [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={items}", f"aoi={aoi or req['aoi']}",
            f"start_date={req['start_date']}", f"end_date={req['end_date']}", f"resolution={res}",
            f"output_dir={out}", "overwrite=true", *extra]  # fmt: skip


def run_tiled(measure, archive, items: Path, out: Path, res: int, *extra: str, aoi: str | None = None) -> dict:
    """cubemosaic on ``items`` cut into tiles, checked through its VRTs against the region's truth."""
    from run import region_correctness

    m = measure(command(archive, items, out, res, *extra, aoi=aoi))
    m["stages"] = stage_seconds(m["stderr"])
    if m["rc"] == 0:
        m.update(region_correctness(vrt_dataset(out), archive))
        m["tiles"] = len([p for p in out.iterdir() if p.is_dir() and p.name.startswith("x")])
        m["pixels"] = sum(_pixels(t) for t in out.iterdir() if t.is_dir() and t.name.startswith("x"))
    return m


def _pixels(tile: Path) -> int:
    import rasterio

    first = next(iter(sorted(tile.glob("monthly-mosaic-*/monthly-mosaic-????-??.tif"))), None)
    if first is None:
        return 0
    with rasterio.open(first) as ds:
        return ds.width * ds.height


def tiles_rows(work: Path, run_peer, measure) -> dict:
    from archive import area_archive

    rows = {}
    for scale, label in ((1, "3 x 2 tiles"), (2, "6 x 4 tiles (4x area)")):
        area = area_archive(scale)
        case = f"tiles20 {label}"
        rows[(case, "floor")] = run_peer("floor", area, area.items_path, work / "tiles20" / str(scale) / "floor", area,
                                         20)  # fmt: skip
        rows[(case, "cubemosaic")] = run_tiled(measure, area, area.items_path, work / "tiles20" / str(scale) /
                                               "cubemosaic", 20, f"tile_size={TILE}")  # fmt: skip
    return rows


def sparse_rows(work: Path, run_cubemosaic, measure) -> dict:
    from archive import area_archive, request_args

    area = area_archive(1)
    rows = {("sparse20", "cubemosaic, tight aoi"): run_cubemosaic(area, area.items_path, work / "sparse20" / "tight",
                                                                   area, 20)}  # fmt: skip
    x0, y0, x1, y1 = json.loads(request_args(area)["aoi"])
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    wide = [round(v, 5) for v in (cx - 5 * w, cy - 5 * h, cx + 5 * w, cy + 5 * h)]
    rows[("sparse20", "cubemosaic, aoi 100x the data")] = run_tiled(
        measure, area, area.items_path, work / "sparse20" / "wide", 20, aoi=json.dumps(wide).replace(" ", "")
    )
    return rows


def sparse_same_pixels(work: Path) -> bool:
    """Whether the wide AOI's VRT holds the tight run's pixels where the tight run has them."""
    import rasterio

    tight = sorted((work / "sparse20" / "tight").glob("monthly-mosaic-*/monthly-mosaic-????-??.tif"))
    for tif in tight:
        with rasterio.open(tif) as a, rasterio.open(work / "sparse20" / "wide" / f"{tif.stem}.vrt") as b:
            got = b.read(window=b.window(*a.bounds), boundless=True, fill_value=0)
            if not np.array_equal(got, a.read()):
                return False
    return bool(tight)


def plan_rows(work: Path, measure) -> dict:
    """``stage=plan`` of PC #12's request, timed and measured."""
    import pc12

    items = pc12.write_items(HERE / "cache" / "pc12" / "items.json") if not (
        HERE / "cache" / "pc12" / "items.json").is_file() else HERE / "cache" / "pc12" / "items.json"  # fmt: skip
    x0, y0, x1, y1 = pc12.AREA
    cmd = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={items}", "start_date=2020-06-01",
           "end_date=2020-07-31", f"aoi=[{x0},{y0},{x1},{y1}]", "resolution=10", "stage=plan",
           f"output_dir={work / 'plan' / 'never'}"]  # fmt: skip
    m = measure(cmd, stdout=True)
    m["plan"] = json.loads(m.pop("stdout") or "{}")
    m["note"] = "PC #12: 600 x 400 km, 2 months, 10 m; " + ", ".join(
        f"{k} {m['plan'].get(k)}" for k in ("scenes", "tiles", "pixels"))  # fmt: skip
    return {("plan", "stage=plan, PC #12"): m}


def planned_against_measured(work: Path, measure, served, area) -> tuple[dict, list[str]]:
    """The plan of ``tiles20``'s larger run over HTTP, then that run: bytes read (served), bytes
    written (the output and Zarr folders), peak memory, each planned / measured."""
    from archive import request_args

    req = request_args(area)
    server, rehost = served(area, work / "planned")
    checks = []
    rows = {}
    with server:
        items = rehost(server.url)
        base = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={items}", f"aoi={req['aoi']}",
                f"start_date={req['start_date']}", f"end_date={req['end_date']}", "resolution=20",
                f"tile_size={TILE}"]  # fmt: skip
        planned = measure([*base, "stage=plan", f"output_dir={work / 'planned' / 'never'}"], stdout=True)
        plan = json.loads(planned.pop("stdout") or "{}")
        before = server.bytes_served
        out = work / "planned" / "run"
        m = measure([*base, f"output_dir={out}", "overwrite=true"])
        read = server.bytes_served - before
    written = sum(p.stat().st_size for p in out.rglob("*") if p.is_file())
    rows[("planned", "the run the plan is of")] = m
    for name, plan_value, real in (("bytes read", plan.get("read_bytes", 0), read),
                                   ("bytes written", plan.get("write_bytes", 0), written),
                                   ("peak memory MB", plan.get("peak_memory_mb", 0), m["peak_mb"])):  # fmt: skip
        ratio = plan_value / real if real else float("inf")
        checks.append(f"plan / measured, {name}: {plan_value:.4g} / {real:.4g} = {ratio:.2f} (target 0.5-2)")
    return rows, checks


def export_rows(work: Path, measure, run_dir: Path) -> tuple[dict, list[str]]:
    """The export stage of a written tiled run, in this process and on 2 local worker processes."""
    import rasterio

    rows = {}
    outs = {}
    for label, extra in (("export in one process", []),
                         ("export on 2 Dask workers", ["cluster=local", "cluster.processes=true", "cluster.n_workers=2",
                                                       "cluster.threads_per_worker=1"])):  # fmt: skip
        out = work / "export2" / label.replace(" ", "-")
        cmd = [sys.executable, "-m", "cubemosaic", "stage=export", f"zarr_dir={run_dir}", f"output_dir={out}",
               *extra]  # fmt: skip
        m = measure(cmd)
        m["stages"] = stage_seconds(m["stderr"])
        rows[("export2", label)] = m
        outs[label] = out
    a, b = outs.values()
    same = True
    for tif in sorted(a.glob("x*/monthly-mosaic-*/*.tif")):
        with rasterio.open(tif) as x, rasterio.open(b / tif.relative_to(a)) as y:
            same &= bool(np.array_equal(x.read(), y.read()) and x.profile == y.profile)
    one, two = (rows[("export2", k)]["stages"].get("export", 0.0) for k in outs)
    checks = [f"export stage on 2 workers / in one process = {two:.1f} / {one:.1f} s = {two / one if one else 0:.2f} "
              f"(target < 1); COGs identical: {same}"]  # fmt: skip
    return rows, checks


def checks(rows: dict, work: Path) -> list[str]:
    out = []
    small, big = ("tiles20 3 x 2 tiles", "cubemosaic"), ("tiles20 6 x 4 tiles (4x area)", "cubemosaic")
    if small in rows and big in rows and rows[small]["rc"] == 0 and rows[big]["rc"] == 0:
        per = []
        for key in (small, big):
            floor = rows[(key[0], "floor")]["seconds"]
            per.append(rows[key]["seconds"] / floor)
        out.append(f"tiles20: x floor at 4x the area / at 1x = {per[1]:.2f} / {per[0]:.2f} = {per[1] / per[0]:.2f} "
                   f"(target <= 1.25); peak {rows[big]['peak_mb']:.0f} / {rows[small]['peak_mb']:.0f} MB = "
                   f"{rows[big]['peak_mb'] / rows[small]['peak_mb']:.2f} (target <= 1.2)")  # fmt: skip
    tight, wide = ("sparse20", "cubemosaic, tight aoi"), ("sparse20", "cubemosaic, aoi 100x the data")
    if tight in rows and wide in rows and rows[wide]["rc"] == 0:
        t = rows[wide]["seconds"] / rows[tight]["seconds"]
        mem = rows[wide]["peak_mb"] / rows[tight]["peak_mb"]
        out.append(f"sparse20: aoi 100x the data / tight = {t:.2f}x time, {mem:.2f}x memory (target <= 1.5); "
                   f"same pixels where the data is: {sparse_same_pixels(work)}")  # fmt: skip
    key = ("plan", "stage=plan, PC #12")
    if key in rows:
        m = rows[key]
        out.append(f"plan of PC #12: {m['seconds']:.1f} s, {m['peak_mb']:.0f} MB (target < 60 s, < 2000 MB); "
                   f"plan: {json.dumps(m.get('plan', {}))}")  # fmt: skip
    return out
