"""How much ``mask_dilation`` helps, and what it costs: one table, printed.

On two archives (the demo, whose SCL flags every cloud pixel, and the same ground with a ring of
unflagged haze around each cloud), the whole job is run at several dilations; for each run the
table gives the share of pixel values within noise of the truth (``DemoArchive.agreement``) and
the share of the clear observations (per the SCL) that the dilation leaves out.

    python benchmarks/dilation.py [--ring 200] [--dilations 0,100,200,300]
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from pathlib import Path

import xarray as xr

from cubemosaic.demo import DemoSpec, ensure_demo
from cubemosaic.store import open_dn


def run(items: Path, out: Path, dilation: float) -> xr.Dataset:
    proc = subprocess.run(
        [sys.executable, "-m", "cubemosaic", "catalog=demo", f"catalog.url={items}", f"output_dir={out}",
         f"mask_dilation={dilation:g}", "stage=cube"],
        capture_output=True, text=True,
    )  # fmt: skip
    if proc.returncode:
        raise SystemExit(proc.stderr)
    subprocess.run(
        [sys.executable, "-m", "cubemosaic", f"output_dir={out}", "stage=composite"], check=True, capture_output=True
    )
    return open_dn(out / "monthly.zarr").load()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ring", type=float, default=200.0, help="haze ring width (m) of the haze archive")
    parser.add_argument("--dilations", default="0,100,200,300", help="mask_dilation values (m)")
    args = parser.parse_args()
    dilations = [float(v) for v in args.dilations.split(",")]
    archives = {"demo (SCL flags all)": DemoSpec(), f"haze ring {args.ring:g} m": DemoSpec(haze_ring_m=args.ring)}
    print(f"{'archive':24} {'mask_dilation':>13} {'within noise':>13} {'obs. left out':>14}")
    with tempfile.TemporaryDirectory() as tmp:
        for label, spec in archives.items():
            archive = ensure_demo(spec)
            base = None
            for d in dilations:
                monthly = run(archive.items_path, Path(tmp) / f"{spec.key}-{d:g}", d)
                used = float(monthly["count"].sum())
                base = base if base is not None else used
                share = archive.agreement(monthly)
                print(f"{label:24} {d:>11g} m {100 * share:>12.2f}% {100 * (1 - used / base):>13.2f}%", flush=True)


if __name__ == "__main__":
    main()
