"""Memory per pod on a Dask Gateway: the job's process (the CWL step's pod) and each worker.

    python benchmarks/pods.py                # 20 m, 12 months of the benchmark tile (3600 px at 10 m)
    python benchmarks/pods.py --months 24    # memory must not grow with the months
    python benchmarks/pods.py --tile         # one whole MGRS tile at 10 m (10980 px), 8 scenes

Starts a real dask-gateway-server on 127.0.0.1 twice: once with workers that share this
machine's disk (the job's Zarr I/O runs on the workers: "direct"), once, as root, with workers
that each see an empty tmpfs over the job's folder, as Gateway pods on Kubernetes do (the job
relays the Zarr I/O: "relay"). Each runs the whole job with ``cluster=gateway`` (two workers of
one core) and reads the peaks the job logs after each stage ("memory: after <stage>, this
process peaked at ... MB; Dask workers up to ... MB"). Prints one table; the CWL
ResourceRequirement and the default worker memory are sized from these figures.
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent / "tests"))

from archive import bench_archive, request_args, tile_archive  # noqa: E402

from servers import loopback_gateway  # noqa: E402  (the loopback servers of tests/servers.py)

SIZING = {
    "DASK_GATEWAY_WORKER_CORES": "1",
    "DASK_GATEWAY_WORKER_MEMORY": "4G",
    "DASK_GATEWAY_CLUSTER_MAX_CORES": "2",
    "DASK_GATEWAY_CLUSTER_MAX_RAM": "8G",
}
LINE = re.compile(r"memory: after (\w+), this process peaked at (\d+) MB(?:; Dask workers up to (\d+) MB)?")


def run_job(gateway, archive, out: Path, resolution: int) -> dict:
    req = request_args(archive)
    cmd = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={archive.items_path}",
           f"aoi={req['aoi']}", f"start_date={req['start_date']}", f"end_date={req['end_date']}",
           f"resolution={resolution}", "cluster=gateway", f"output_dir={out}"]  # fmt: skip
    start = time.perf_counter()
    proc = subprocess.run(
        cmd, capture_output=True, text=True, env={**os.environ, **gateway.env(**SIZING)}, cwd=out.parent
    )
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        raise SystemExit(f"the job failed:\n{proc.stderr[-3000:]}")
    stages = {m[0]: (int(m[1]), int(m[2]) if m[2] else None) for m in LINE.findall(proc.stderr)}
    mode = "relay" if "(relay)" in proc.stderr else "direct"
    return {"mode": mode, "seconds": seconds, "stages": stages}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--months", type=int, default=12)
    parser.add_argument("--resolution", type=int, default=20)
    parser.add_argument("--tile", action="store_true", help="the whole-tile archive at 10 m")
    args = parser.parse_args()
    archive = tile_archive() if args.tile else bench_archive(args.months)
    if args.tile:
        args.resolution = 10
    rows = []
    with tempfile.TemporaryDirectory(prefix="cubemosaic-pods-") as tmp:
        root = Path(tmp)
        hidden = root / "job"
        hidden.mkdir()
        kinds = [("shared", None)] + ([("private", hidden)] if os.geteuid() == 0 else [])
        for name, private in kinds:
            work = root / f"gateway-{name}"
            work.mkdir()
            with loopback_gateway(work, hidden=private) as gateway:
                rows.append(run_job(gateway, archive, hidden / f"out-{name}", args.resolution))
            subprocess.run(["sync"], check=False)
    what = "one whole tile, 8 scenes over 2 months" if args.tile else f"{args.months} months"
    print(f"\n{what} at {args.resolution} m, 2 Gateway workers x 1 core\n")
    print("| I/O path | stage | job process peak MB | worker peak MB | job wall s |")
    print("|---|---|---:|---:|---:|")
    for row in rows:
        for stage, (client, worker) in row["stages"].items():
            print(
                f"| {row['mode']} | {stage} | {client} | {worker if worker is not None else '-'} | {row['seconds']:.0f} |"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
