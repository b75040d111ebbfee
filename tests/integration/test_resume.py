"""A run killed with SIGKILL halfway and rerun gives the same outputs, reusing what was written."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys

import pytest

from conftest import assert_same_cogs, cli


@pytest.mark.parametrize(
    ("marker", "store", "done_at_least"), [("[6/18]", "cube.zarr", 6), ("[2/4]", "monthly.zarr", 2)]
)
def test_sigkill_then_rerun_resumes(demo_run, tmp_path, marker, store, done_at_least):
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=dict(os.environ))
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            os.kill(proc.pid, signal.SIGKILL)
            break
    proc.wait(60)
    assert proc.returncode == -signal.SIGKILL, "the run finished before it could be killed"
    assert not (out / "catalog.json").exists()

    rerun = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    resumed = re.search(rf"resuming {re.escape(store)}, (\d+) step\(s\) already written", rerun.stderr)
    assert resumed, rerun.stderr
    assert int(resumed.group(1)) >= done_at_least
    if store == "cube.zarr":
        written = re.search(r"(\d+) day\(s\) to write", rerun.stderr)
        assert written and int(written.group(1)) <= 18 - done_at_least
    else:
        assert "cube.zarr already complete" in rerun.stderr
    assert_same_cogs(demo_run, out)
    assert len(list(out.glob("monthly-mosaic-*/*.tif"))) == 8


def test_rerun_of_a_finished_job_reads_nothing_again(demo_run, tmp_path):
    import shutil

    out = tmp_path / "out"
    shutil.copytree(demo_run, out)
    before = _exported(out)
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "0 day(s) to write" in proc.stderr and "0 to compute" in proc.stderr
    assert "is up to date, nothing rewritten" in proc.stderr
    assert _exported(out) == before, "no COG, item or catalog rewritten"


@pytest.mark.parametrize("damage", ["flipped", "truncated, its item lost", "flipped, its records lost"])
def test_a_damaged_cog_is_written_again_on_the_rerun(demo_run, tmp_path, damage):
    """Its tags survive the damage, so it looked up to date. A byte flipped inside its data (a
    probe: 104 pixels wrong, exit 0) or a cut tail is found by the sha2-256 recorded as it was
    written (``.<name>.sha256`` beside it, and its STAC item's ``file:checksum``), with its item
    lost too (a probe: kept, 3039 pixels wrong, its checksum then recorded). With both records
    lost nothing can tell the flip from a pixel, so it is made again. Either way the rerun says
    so and writes it again, pixel for pixel the original, and its item again."""
    import hashlib
    import json
    import shutil

    import numpy as np
    import rasterio

    out = tmp_path / "out"
    shutil.copytree(demo_run, out)
    name = "monthly-mosaic-2022-01/monthly-mosaic-2022-01.tif"
    cog, item = out / name, out / "monthly-mosaic-2022-01/monthly-mosaic-2022-01.json"
    if damage.startswith("flipped"):
        data = bytearray(cog.read_bytes())
        data[len(data) // 2] ^= 0xFF  # the middle of the image's blocks: the IFDs are at the head
        cog.write_bytes(bytes(data))
        with rasterio.open(cog) as src, rasterio.open(demo_run / name) as original:
            assert not np.array_equal(src.read(), original.read()), "the flip changes pixels"
    else:
        os.truncate(cog, cog.stat().st_size - 2000)
    if damage.endswith("lost"):
        item.unlink()
    if damage.endswith("records lost"):
        (cog.parent / f".{cog.name}.sha256").unlink()
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    why = "no checksum of it was recorded" if damage.endswith("records lost") else "its bytes are not those written"
    assert re.search(rf"{re.escape(str(cog))} is rewritten: {why}", proc.stderr), proc.stderr
    assert f"{cog} written" in proc.stderr
    written = [line for line in proc.stderr.splitlines() if re.search(r"export: .* written \[", line)]
    assert len(written) == 1, "the month's count COG and the other months are up to date: " + "\n".join(written)
    assert "is up to date, nothing rewritten" not in proc.stderr  # its item and quick-look too
    with rasterio.open(cog) as src, rasterio.open(demo_run / name) as original:
        assert np.array_equal(src.read(), original.read())
        assert src.tags() == original.tags()
    recorded = json.loads(item.read_text())["assets"]["mosaic"]
    assert recorded["file:size"] == cog.stat().st_size
    assert recorded["file:checksum"] == "1220" + hashlib.sha256(cog.read_bytes()).hexdigest()
    assert (cog.parent / f".{cog.name}.sha256").read_text() == f"{recorded['file:checksum'][4:]}  {cog.name}\n"
    again = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert again.returncode == 0 and "is up to date, nothing rewritten" in again.stderr, again.stderr


def _exported(out):
    """(path, mtime, inode) of every COG and JSON the export wrote."""
    return sorted(
        (str(p.relative_to(out)), p.stat().st_mtime_ns, p.stat().st_ino)
        for p in out.rglob("*")
        if p.suffix in (".tif", ".json") and ".zarr" not in str(p)
    )


def test_overwrite_leaves_nothing_of_the_earlier_request(demo_run, tmp_path):
    """A shorter period with overwrite=true: the earlier request's months are gone, not left beside."""
    import shutil

    import pystac

    out = tmp_path / "out"
    shutil.copytree(demo_run, out)
    mine = out / "notes.txt"
    mine.write_text("the user's own file")
    proc = cli(["catalog=demo", "start_date=2022-02-01", "overwrite=true", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    months = sorted(p.name for p in out.iterdir() if p.name.startswith("monthly-mosaic-"))
    assert months == ["monthly-mosaic-2022-02", "monthly-mosaic-2022-03"], months
    items = list(pystac.Catalog.from_file(str(out / "catalog.json")).get_items(recursive=True))
    assert sorted(i.id for i in items) == months
    assert mine.read_text() == "the user's own file", "nothing cubemosaic did not write is touched"
    assert "removed" in proc.stderr and "monthly-mosaic-2021-12" in proc.stderr


def test_a_second_run_into_the_same_output_refuses_and_a_killed_one_blocks_nothing(demo_run, tmp_path):
    """Platforms retry steps while an earlier pod still writes; people start a job twice."""
    out = tmp_path / "out"
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}"]
    # One thread, and the second run started as soon as the first has found its scenes: the demo
    # job takes ~3 s, and the second process needs ~1.5 s to reach the lock.
    slow = ["cluster=local", "cluster.threads_per_worker=1"]
    first = subprocess.Popen(args + slow, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=dict(os.environ))
    assert first.stderr is not None
    for line in first.stderr:
        if "search: " in line:
            break
    second = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    rest = first.stderr.read()
    assert first.wait(120) == 0, rest
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    last = second.stderr.strip().splitlines()[-1]
    assert last.startswith(
        f"cubemosaic: error: output_dir: {out} is in use by another cubemosaic run (pid {first.pid} on "
    )
    assert_same_cogs(demo_run, out)

    killed = subprocess.Popen(args + ["overwrite=true", "bands=[red,nir]"], stderr=subprocess.PIPE, text=True,
                              cwd=tmp_path, env=dict(os.environ))  # fmt: skip
    assert killed.stderr is not None
    for line in killed.stderr:
        if "cube: day 1/" in line:
            os.kill(killed.pid, signal.SIGKILL)
            break
    assert killed.wait(60) == -signal.SIGKILL
    assert f"pid {killed.pid} " in (out / ".cubemosaic.lock").read_text(), "the dead run's record is still there"
    rerun = cli(["catalog=demo", f"output_dir={out}", "overwrite=true"], cwd=tmp_path)
    assert rerun.returncode == 0, rerun.stderr
    assert_same_cogs(demo_run, out)


def test_a_longer_period_extends_the_finished_stores(demo_run, tmp_path):
    """A finished job to 2022-01-20, then the same job to 2022-03-31: the 7 days already in the
    cube are not read again, December (whose days did not change) is not recomputed, January
    (which gained days) is; the result is the whole-period run's, and plain xarray still opens it."""
    import xarray as xr

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "end_date=2022-01-20", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "extending cube.zarr to 18 step(s) (a longer period); 7 step(s) already written are kept" in proc.stderr
    assert "11 day(s) to write" in proc.stderr
    assert "extending monthly.zarr to 4 step(s) (a longer period); 1 step(s) already written are kept" in proc.stderr
    assert "3 to compute" in proc.stderr
    assert_same_cogs(demo_run, out)
    for store in ("cube.zarr", "monthly.zarr"):
        ds, whole = xr.open_zarr(out / store), xr.open_zarr(demo_run / store)
        assert ds.chunks["time"] == whole.chunks["time"]
        xr.testing.assert_identical(ds.drop_encoding(), whole.drop_encoding())
    # A later start (or an earlier one) would move every step: refused, naming what differs.
    proc = cli(["catalog=demo", "start_date=2021-12-05", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 1 and "differs in: days" in proc.stderr.strip().splitlines()[-1], proc.stderr
