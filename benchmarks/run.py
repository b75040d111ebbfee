"""One command, one run: cubemosaic against the floor and its peers, with the truth known.

    python benchmarks/run.py                      # every case below, one table
    python benchmarks/run.py --case tile10 year20 # some of them
    python benchmarks/run.py --case core          # the single-tile and region cases (CORE)

Cases (archives generated once into ``benchmarks/cache/``, see archive.py):

- ``tile10``: one whole MGRS tile at 10 m (10980 px), 8 scenes over 2 months;
- ``year20``: 12 months x 5 scenes of a 36 km area at 20 m, local files;
- ``http20``: the same, every asset read over HTTP from a server on 127.0.0.1 that waits 40 ms
  before each response (the floor then keeps 16 reads in flight);
- ``year100``: the same at 100 m (the seed's example resolution);
- ``fast10``, ``fast20``, ``fast100``: ``tile10`` and ``year20``/``year100`` again on archives whose
  pixels decode about as fast as real L2A COGs (``archive.FAST_TEXTURE``: ~1.7x faster than the
  textured ones), so the costs beyond decoding show;
- ``memory24``: 24 months at 20 m, cubemosaic alone: its peak against ``year20``'s (flat in months);
- ``region20``, ``region60``: a region as Sentinel-2 covers it (``cubemosaic.regiondemo``): 3 x 2
  tiles of 18 km straddling the UTM 10/11 boundary at -120 deg, two relative orbits with swath-edge
  wedges, 6 months, in EPSG:32610 at 20 m and at 60 m: the zone-10 tiles read directly, the zone-11
  ones warped. Correct = the share of interior truth pixels (``RegionArchive.truth`` on each
  contender's own grid) within 1 DN, nodata where the truth has no clear observation;
- ``area20``: cubemosaic alone on region20's region size (3 x 2 tiles of 18 km, two months) and on
  one of 6 x 4 (four times the area), at 20 m: its peak memory against the area (flat: target
  <= 1.2x). With 9 km tiles both grids were smaller than one Zarr shard, where a task's block
  grows with the grid by construction;
- ``stats20``: ``year20``'s cube once, then the composite stage once per statistic (median, p25,
  medoid, geomedian), each against the median's (``composites.py``).

Contenders: the floor (every needed pixel decoded once, nothing else), cubemosaic (the CLI),
odc-stac direct (what an expert writes), and on ``year20`` the original recipe (stackstac).
Each runs as its own process; wall time and the peak resident memory of its whole process
tree (all workers included, sampled every 50 ms) are measured from outside; correctness is
the share of clear truth pixels within 1 DN. Prints one table and writes
``benchmarks/results/latest.json`` and ``latest.md``, and the documentation's table
(``benchmarks/report.py``: ``docs/performance-table.md``).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from archive import area_archive, bench_archive, fast_archive, region_archive, request_args, tile_archive  # noqa: E402
from large import stage_seconds  # noqa: E402

RESULTS = HERE / "results"
NAMES = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800, stdout: bool = False) -> dict:
    """Run ``cmd``; wall seconds, peak RSS of the process tree (MB), exit code, stderr (and its
    stdout with ``stdout``)."""
    import psutil

    start = time.perf_counter()
    out_file = tempfile.TemporaryFile("w+") if stdout else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=out_file, stderr=subprocess.PIPE, text=True,
                            env=dict(os.environ, **(env or {})))  # fmt: skip
    parent = psutil.Process(proc.pid)
    peak = 0
    lines: list[str] = []
    import threading

    reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
    reader.start()
    timed_out = False
    while proc.poll() is None:
        try:
            tree = [parent, *parent.children(recursive=True)]
            peak = max(peak, sum(p.memory_info().rss for p in tree if p.is_running()))
        except psutil.Error:
            pass
        if time.perf_counter() - start > timeout:
            for p in parent.children(recursive=True):
                p.kill()
            proc.kill()
            timed_out = True
        time.sleep(0.05)
    reader.join(5)
    result = {"seconds": time.perf_counter() - start, "peak_mb": peak / 1e6, "rc": proc.returncode,
              "timed_out": timed_out, "stderr": "".join(lines)}  # fmt: skip
    if stdout:
        out_file.seek(0)
        result["stdout"] = out_file.read()
        out_file.close()
    return result


_TRUTHS: dict[tuple, object] = {}


def region_correctness(ds, archive) -> dict:
    """Against a region's truth on ``ds``'s own grid: the share of interior pixels with a clear
    answer within 1 DN, and interior pixels whose nodata-ness is wrong."""
    counts = _region_counts(ds, archive)
    if counts is None:
        return {"within_1dn": 0.0, "nodata_wrong": -1, "months": int(len(ds.time)), "note": "months differ"}
    within, total, wrong, months, note = counts
    return {"within_1dn": within / total, "nodata_wrong": wrong, "months": months, "note": note}


def _region_counts(ds, archive) -> tuple[int, int, int, int, str] | None:
    """(pixels within 1 DN, clear interior truth pixels, interior pixels whose nodata-ness is wrong,
    months, note) of ``ds`` against a region's truth on its own grid; None when the months differ."""
    import odc.geo.xr  # noqa: F401  (the .odc accessor)

    grid = ds.odc.geobox
    key = (id(archive), str(grid.crs), tuple(grid.transform)[:6], tuple(grid.shape))
    if key not in _TRUTHS:  # the contenders' grids are mostly the same: made once each
        _TRUTHS[key] = archive.truth(grid)
    truth = _TRUTHS[key]
    if len(ds.time) != len(truth.time):
        return None
    interior = truth["interior"].values
    within, total, wrong = 0, 0, 0
    for name, key in NAMES.items():
        got = ds[name].values.astype("float64")
        got = np.where(got == 0, np.nan, got)
        exp = truth[key].values
        clear = ~np.isnan(exp) & interior
        within += int((np.abs(got[clear] - exp[clear]) <= 1).sum())
        total += int(clear.sum())
        wrong += int(((np.isnan(got) != np.isnan(exp)) & interior).sum())
    return within, total, wrong, int(len(ds.time)), f"interior {100 * interior.mean():.2f}% of the pixels"


def correctness(monthly_path: Path, truth, raw_dn: bool) -> dict:
    """Share of clear truth pixels within 1 DN, and pixels whose nodata-ness is wrong (``truth``: a
    demo archive's truth, or a region archive, whose truth is made on each output grid). A tiled
    monthly store (a grid wider than ``tile_size``) is compared tile by tile, the counts summed."""
    import xarray as xr

    from cubemosaic import store
    from cubemosaic.regiondemo import RegionArchive
    from cubemosaic.tiled import member, read_tiled

    record = read_tiled(str(monthly_path))
    paths = [member(str(monthly_path), t["id"]) for t in record.tiles] if record else [str(monthly_path)]
    counts = []
    for path in paths:
        ds = store.open_dn(path) if raw_dn else xr.open_zarr(path)
        if isinstance(truth, RegionArchive):
            counts.append(_region_counts(ds, truth))  # the truth on each tile's own grid
        else:
            counts.append(_demo_counts(ds, truth, raw_dn))
    if any(c is None for c in counts):
        return {"within_1dn": 0.0, "nodata_wrong": -1, "months": -1, "note": "months differ"}
    within, total, wrong = (sum(c[i] for c in counts) for i in range(3))
    note = counts[0][4] + (f"{'; ' if counts[0][4] else ''}{len(paths)} tiles" if record else "")
    return {"within_1dn": within / total, "nodata_wrong": wrong, "months": counts[0][3], "note": note}


def _demo_counts(ds, truth, raw_dn: bool) -> tuple[int, int, int, int, str] | None:
    """(pixels within 1 DN, clear truth pixels, pixels whose nodata-ness is wrong, months, note) of
    the monthly store ``ds`` against a demo archive's ``truth``; None when the months differ."""
    note = ""
    res = float(abs(ds.x[1] - ds.x[0]))
    if res == 20 and not (np.isin(ds.x.values, truth.x.values).all() and np.isin(ds.y.values, truth.y.values).all()):
        # stackstac labels pixels by their top-left corner: compare pixel centres.
        ds = ds.assign_coords(x=ds.x + res / 2, y=ds.y - res / 2)
        note = "coordinates label pixel corners, not centres (half-pixel shift)"
    # The truth pixel under each output pixel's centre; NaN (no answer) where the output grid runs
    # past the archive (the grid is the AOI's box in UTM, which can reach past the archive's square).
    nearest = {} if res == 20 else {"method": "nearest", "tolerance": 10.0}
    t = truth.reindex(x=ds.x.values, y=ds.y.values, **nearest)
    if len(ds.time) != len(t.time):
        return None
    within, total, wrong = 0, 0, 0
    for name, key in NAMES.items():
        got = ds[name].values.astype("float64")
        if raw_dn:
            got = np.where(got == 0, np.nan, got)
        exp = t[key].values
        clear = ~np.isnan(exp)
        within += int((np.abs(got[clear] - exp[clear]) <= 1).sum())
        total += int(clear.sum())
        wrong += int((np.isnan(got) != ~clear).sum())
    return within, total, wrong, int(len(ds.time)), note


def run_peer(kind: str, archive, items: Path, out: Path, truth, res: int, threads: int = 0) -> dict:
    req = request_args(archive)
    cmd = [sys.executable, str(HERE / "peers.py"), kind, str(items), str(out), req["aoi"],
           req["start_date"], req["end_date"]]  # fmt: skip
    m = measure(cmd, env={"BENCH_RES": str(res), "BENCH_THREADS": str(threads)}, timeout=1200)
    if m["rc"] == 0 and kind != "floor":
        m.update(correctness(out / "monthly.zarr", truth, raw_dn=False))
    return m


def run_cubemosaic(archive, items: Path, out: Path, truth, res: int, *extra: str) -> dict:
    """The CLI on ``items``; checked against ``truth`` unless it is None (``extra``: more overrides)."""
    req = request_args(archive)
    cmd = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={items}",
           f"aoi={req['aoi']}", f"start_date={req['start_date']}", f"end_date={req['end_date']}",
           f"resolution={res}", f"output_dir={out}", "overwrite=true", *extra]  # fmt: skip
    m = measure(cmd)
    m["stages"] = stage_seconds(m["stderr"])  # a tiled run's tiles summed
    if m["rc"] == 0 and truth is not None:
        m.update(correctness(out / "monthly.zarr", truth, raw_dn=True))
    return m


def table(rows: dict[str, dict]) -> str:
    head = "| case | contender | wall s | x floor | peak MB (tree) | within 1 DN | nodata wrong | notes |"
    lines = [head, "|---|---|---:|---:|---:|---:|---:|---|"]
    for (case, name), m in rows.items():
        floor = rows.get((case, "floor"), {}).get("seconds")
        ok = m.get("within_1dn")
        notes = "timed out" if m.get("timed_out") else ("failed" if m["rc"] else m.get("note", ""))
        if m.get("stages"):
            notes = ", ".join(f"{k} {v:.1f}s" for k, v in m["stages"].items())
        ratio = f"{m['seconds'] / floor:.2f}" if floor else ""
        lines.append(
            f"| {case} | {name} | {m['seconds']:.1f} | {ratio} | {m['peak_mb']:.0f} | "
            f"{'' if ok is None else f'{100 * ok:.2f}%'} | {m.get('nodata_wrong', '')} | {notes} |"
        )
    return "\n".join(lines)


CASES = ("tile10", "year20", "http20", "year100", "fast10", "fast20", "fast100", "memory24", "region20", "region60",
         "area20", "stats20",
         "tiles20", "sparse20", "plan", "export2")  # fmt: skip
#: The single-tile and region cases, checked against the floor and odc-stac (issue 19's table).
CORE = ("tile10", "year20", "http20", "year100", "fast10", "fast20", "fast100", "region20", "region60")


def _served(archive, work: Path):
    """``archive``'s items rehosted on a loopback server that waits 40 ms before each response."""
    sys.path.insert(0, str(HERE.parent / "tests"))
    from servers import AssetServer, rehost_items

    server = AssetServer(archive.root, latency=0.04)
    work.mkdir(parents=True, exist_ok=True)
    return server, lambda url: rehost_items(archive.items_path, archive.root, url, work / "items-http.json")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--case",
        nargs="*",
        default=list(CASES),
        choices=(*CASES, "core"),
        help="cases to run (default all; core: the single-tile and region ones)",
    )
    parser.add_argument("--skip", nargs="*", default=[], choices=["original", "odc"], help="peers to leave out")
    args = parser.parse_args()
    if "core" in args.case:
        args.case = [c for c in CASES if c in CORE or c in args.case]

    work = RESULTS / "work"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    rows: dict[tuple[str, str], dict] = {}

    def run_case(case: str, archive, res: int, items: Path, threads: int = 0, peers=("odc",)) -> None:
        from cubemosaic.regiondemo import RegionArchive

        if isinstance(archive, RegionArchive):  # its truth is made on each output's own grid
            truth = archive
            print(f"{case}: {len(archive.items())} scenes of {len(archive.tiles)} tiles in two UTM zones, "
                  f"{len(archive.spec.days)} datatakes, output {res} m", flush=True)  # fmt: skip
        else:
            truth = archive.truth()
            print(f"{case}: {len(archive.spec.days)} scenes, {archive.spec.size * 2} px at 10 m, output {res} m",
                  flush=True)  # fmt: skip
        rows[(case, "floor")] = run_peer("floor", archive, items, work / case / "floor", truth, res, threads)
        rows[(case, "cubemosaic")] = run_cubemosaic(archive, items, work / case / "cubemosaic", truth, res)
        labels = {"odc": "odc-stac direct", "original": "original recipe"}
        for kind in peers:
            if kind not in args.skip:
                rows[(case, labels[kind])] = run_peer(kind, archive, items, work / case / kind, truth, res)
        for (c, name), m in rows.items():
            if c == case:
                print(f"  {name}: {m['seconds']:.1f} s, {m['peak_mb']:.0f} MB", flush=True)

    if "tile10" in args.case:
        tile = tile_archive()
        run_case("tile10", tile, 10, tile.items_path)
    year = bench_archive(12) if {"year20", "http20", "year100", "stats20"} & set(args.case) else None
    if "year20" in args.case:
        run_case("year20", year, 20, year.items_path, peers=("odc", "original"))
    if "http20" in args.case:
        server, rehost = _served(year, work / "http20")
        with server:
            run_case("http20", year, 20, rehost(server.url), threads=16)
    if "year100" in args.case:
        run_case("year100", year, 100, year.items_path)
        # The mean of each output pixel's clear native pixels: not the 20 m truth under its centre
        # (its own oracle is in tests/integration/test_truth.py), so timed, not compared.
        rows[("year100", "cubemosaic, resampling=average")] = run_cubemosaic(
            year, year.items_path, work / "year100" / "average", None, 100, "resampling=average"
        )
    if "fast10" in args.case:
        fast = fast_archive("tile")
        run_case("fast10", fast, 10, fast.items_path)
    fast_year = fast_archive("year") if {"fast20", "fast100"} & set(args.case) else None
    for case, res in (("fast20", 20), ("fast100", 100)):
        if case in args.case:
            run_case(case, fast_year, res, fast_year.items_path)
    for case, res in (("region20", 20), ("region60", 60)):
        if case in args.case:
            region = region_archive()
            run_case(case, region, res, region.items_path)
    if "area20" in args.case:
        for scale, name in ((1, "cubemosaic, 3 x 2 tiles"), (2, "cubemosaic, 6 x 4 tiles")):
            area = area_archive(scale, tile_px=900)
            rows[("area20", name)] = run_cubemosaic(area, area.items_path, work / "area20" / str(scale), area, 20)
    if "memory24" in args.case:
        long = bench_archive(24)
        rows[("memory24", "cubemosaic")] = run_cubemosaic(long, long.items_path, work / "memory24", long.truth(), 20)

    import large  # benchmarks/large.py: tiles, the sparse AOI, the plan, the export on workers

    large_checks: list[str] = []
    if "tiles20" in args.case or "export2" in args.case:
        rows.update(large.tiles_rows(work, run_peer, measure))
    if "sparse20" in args.case:
        rows.update(large.sparse_rows(work, run_cubemosaic, measure))
    if "plan" in args.case:
        from archive import area_archive as _area

        rows.update(large.plan_rows(work, measure))
        planned, more = large.planned_against_measured(work, measure, _served, _area(2))
        rows.update(planned)
        large_checks += more
    if "export2" in args.case:
        exported, more = large.export_rows(work, measure, work / "tiles20" / "2" / "cubemosaic")
        rows.update(exported)
        large_checks += more
    large_checks = large.checks(rows, work) + large_checks

    stat_checks: list[str] = []
    if "stats20" in args.case:
        import composites as stats_case  # benchmarks/composites.py

        rows.update(stats_case.composite_rows(year, work, run_cubemosaic))
        stat_checks = stats_case.checks(rows) + stats_case.geomedian_peers(year)

    text = table(rows)
    checks = []
    for case in CORE:
        if (case, "cubemosaic") not in rows:
            continue
        cm, floor = rows[(case, "cubemosaic")], rows[(case, "floor")]["seconds"]
        target = 2 if case == "year20" else 3
        line = f"{case}: cubemosaic / floor = {cm['seconds'] / floor:.2f} (target <= {target})"
        if (case, "odc-stac direct") in rows:
            line += f"; odc-stac direct / cubemosaic = {rows[(case, 'odc-stac direct')]['seconds'] / cm['seconds']:.2f}"
            if case.startswith("region"):
                line += " (target >= 2)"
        line += f"; peak {cm['peak_mb']:.0f} MB (target <= {1000 if case.startswith('region') else 2000})"
        checks.append(line)
    small, big = ("area20", "cubemosaic, 3 x 2 tiles"), ("area20", "cubemosaic, 6 x 4 tiles")
    if small in rows and big in rows:
        ratio = rows[big]["peak_mb"] / rows[small]["peak_mb"]
        checks.append(f"peak memory at 4x the region's area = {ratio:.2f}x (target <= 1.2)")
    if ("memory24", "cubemosaic") in rows and ("year20", "cubemosaic") in rows:
        ratio = rows[("memory24", "cubemosaic")]["peak_mb"] / rows[("year20", "cubemosaic")]["peak_mb"]
        checks.append(f"peak memory 24 / 12 months = {ratio:.2f} (target <= 1.2)")
    checks += stat_checks + large_checks
    report = text + "\n\n" + "\n".join(f"- {c}" for c in checks) + "\n"
    print(report)
    RESULTS.mkdir(exist_ok=True)
    for m in rows.values():
        m.pop("stderr", None) if m["rc"] == 0 else m.update(stderr=m["stderr"][-2000:])
    serial = {f"{case} / {name}": m for (case, name), m in rows.items()}
    (RESULTS / "latest.json").write_text(json.dumps({"rows": serial, "checks": checks}, indent=1))
    (RESULTS / "latest.md").write_text(report)
    import report as docs_table  # benchmarks/report.py: the documentation's table, from these results

    print(docs_table.record(rows, checks))
    return 0 if all(m["rc"] == 0 for m in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
