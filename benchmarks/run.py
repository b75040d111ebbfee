"""One command, one run: cubemosaic against the floor and its peers, with the truth known.

    python benchmarks/run.py            # 12-month archive for speed, 24-month for memory

Each contender runs as its own process; wall time and the peak resident memory of its
whole process tree (all workers included, sampled every 50 ms) are measured from outside.
Prints one table and writes ``benchmarks/results/latest.json`` and ``latest.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from archive import bench_archive, request_args  # noqa: E402

RESULTS = HERE / "results"
NAMES = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}


def measure(cmd: list[str], env: dict[str, str] | None = None, timeout: float = 1800) -> dict:
    """Run ``cmd``; wall seconds, peak RSS of the process tree (MB), exit code, stderr."""
    import psutil

    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
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
    return {"seconds": time.perf_counter() - start, "peak_mb": peak / 1e6, "rc": proc.returncode,
            "timed_out": timed_out, "stderr": "".join(lines)}  # fmt: skip


def correctness(monthly_path: Path, truth, raw_dn: bool) -> dict:
    """Share of clear truth pixels within 1 DN, and pixels whose nodata-ness is wrong."""
    import xarray as xr

    ds = xr.open_zarr(monthly_path, mask_and_scale=not raw_dn)
    note = ""
    res = float(abs(ds.x[1] - ds.x[0]))
    if not (np.isin(ds.x.values, truth.x.values).all() and np.isin(ds.y.values, truth.y.values).all()):
        # stackstac labels pixels by their top-left corner: compare pixel centres.
        ds = ds.assign_coords(x=ds.x + res / 2, y=ds.y - res / 2)
        note = "coordinates label pixel corners, not centres (half-pixel shift)"
    t = truth.sel(x=ds.x.values, y=ds.y.values)
    if len(ds.time) != len(t.time):
        return {"within_1dn": 0.0, "nodata_wrong": -1, "months": int(len(ds.time)), "note": note}
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
    return {"within_1dn": within / total, "nodata_wrong": wrong, "months": int(len(ds.time)), "note": note}


def run_peer(kind: str, archive, out: Path, truth) -> dict:
    req = request_args(archive)
    cmd = [sys.executable, str(HERE / "peers.py"), kind, str(archive.items_path), str(out), req["aoi"],
           req["start_date"], req["end_date"]]  # fmt: skip
    m = measure(cmd, timeout=1200)
    if m["rc"] == 0 and kind != "floor":
        m.update(correctness(out / "monthly.zarr", truth, raw_dn=False))
    return m


def run_cubemosaic(archive, out: Path, truth) -> dict:
    req = request_args(archive)
    cmd = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={archive.items_path}",
           f"aoi={req['aoi']}", f"start_date={req['start_date']}", f"end_date={req['end_date']}",
           "resolution=20", f"output_dir={out}", "overwrite=true"]  # fmt: skip
    m = measure(cmd)
    m["stages"] = {k: float(v) for k, v in re.findall(r"timing: (\w+) ([\d.]+) s", m["stderr"])}
    if m["rc"] == 0:
        m.update(correctness(out / "monthly.zarr", truth, raw_dn=True))
    return m


def table(rows: dict[str, dict], floor: float) -> str:
    head = "| contender | wall s | x floor | peak MB (tree) | within 1 DN | nodata wrong | notes |"
    lines = [head, "|---|---:|---:|---:|---:|---:|---|"]
    for name, m in rows.items():
        ok = m.get("within_1dn")
        notes = "timed out" if m.get("timed_out") else ("failed" if m["rc"] else m.get("note", ""))
        if m.get("stages"):
            notes = ", ".join(f"{k} {v:.1f}s" for k, v in m["stages"].items())
        lines.append(
            f"| {name} | {m['seconds']:.1f} | {m['seconds'] / floor:.2f} | {m['peak_mb']:.0f} | "
            f"{'' if ok is None else f'{100 * ok:.2f}%'} | {m.get('nodata_wrong', '')} | {notes} |"
        )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--memory-months", type=int, default=24, help="0 skips the memory-flatness run")
    parser.add_argument("--skip", nargs="*", default=[], choices=["original", "odc"], help="peers to leave out")
    args = parser.parse_args()

    work = RESULTS / "work"
    import shutil

    shutil.rmtree(work, ignore_errors=True)
    archive = bench_archive(args.months)
    truth = archive.truth()
    rows: dict[str, dict] = {}
    print(f"archive: {len(archive.spec.days)} scenes, {args.months} months, {archive.spec.size * 2} px at 10 m",
          flush=True)  # fmt: skip
    rows["floor"] = run_peer("floor", archive, work / "floor", truth)
    print(f"floor: {rows['floor']['seconds']:.1f} s", flush=True)
    rows["cubemosaic"] = run_cubemosaic(archive, work / "cubemosaic", truth)
    print(f"cubemosaic: {rows['cubemosaic']['seconds']:.1f} s", flush=True)
    for kind, label in (("odc", "odc-stac direct"), ("original", "original recipe")):
        if kind not in args.skip:
            rows[label] = run_peer(kind, archive, work / kind, truth)
            print(f"{label}: {rows[label]['seconds']:.1f} s", flush=True)
    if args.memory_months:
        long = bench_archive(args.memory_months)
        rows[f"cubemosaic {args.memory_months} months"] = run_cubemosaic(long, work / "cubemosaic-long", long.truth())

    floor = rows["floor"]["seconds"]
    text = table(rows, floor)
    cm = rows["cubemosaic"]
    checks = [f"cubemosaic / floor = {cm['seconds'] / floor:.2f} (target <= 3)"]
    for label in ("original recipe", "odc-stac direct"):
        if label in rows:
            checks.append(f"{label} / cubemosaic = {rows[label]['seconds'] / cm['seconds']:.2f}")
    if args.memory_months:
        long_row = rows[f"cubemosaic {args.memory_months} months"]
        checks.append(f"peak memory {args.memory_months} / {args.months} months = "
                      f"{long_row['peak_mb'] / cm['peak_mb']:.2f} (target <= 1.2)")  # fmt: skip
    report = text + "\n\n" + "\n".join(f"- {c}" for c in checks) + "\n"
    print(report)
    RESULTS.mkdir(exist_ok=True)
    for m in rows.values():
        m.pop("stderr", None) if m["rc"] == 0 else m.update(stderr=m["stderr"][-2000:])
    (RESULTS / "latest.json").write_text(json.dumps({"rows": rows, "checks": checks}, indent=1))
    (RESULTS / "latest.md").write_text(report)
    return 0 if all(m["rc"] == 0 for m in rows.values()) else 1


if __name__ == "__main__":
    sys.exit(main())
