"""Faults a careful user and a platform meet (issue 21): a run owns what it writes, damaged
intermediates are found, malformed input is named; never an exit 0 with a wrong output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_same_cogs, cli, one_line_error


def _finished_copy(demo_run: Path, out: Path, *, keep_exports: bool = False) -> Path:
    """A copy of the demo's finished output; without its monthly store and exports unless kept."""
    shutil.copytree(demo_run, out)
    if not keep_exports:
        shutil.rmtree(out / "monthly.zarr")
        for folder in out.glob("monthly-mosaic-*"):
            shutil.rmtree(folder)
        for name in ("catalog.json", "overview.png"):
            (out / name).unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- what a run owns
def _started(out: Path, *overrides: str) -> subprocess.Popen:
    """A demo run, stopped (SIGSTOP) once it has written its first cube steps: it holds everything."""
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}", *overrides]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=out.parent, env=dict(os.environ))
    assert proc.stderr is not None
    for line in proc.stderr:
        if "written [1/" in line:
            os.kill(proc.pid, signal.SIGSTOP)
            return proc
    raise AssertionError(f"the run ended before it wrote a step: {proc.wait()}")


def test_a_run_owns_its_zarr_dir_another_output_dir_refuses_and_overwrite_removes_nothing(demo_run, tmp_path):
    """Two runs with different output folders and one zarr_dir: the second (with overwrite=true)
    refuses in one line naming the first, removes nothing; the first ends correct; the second,
    rerun once the first is done, resumes from the shared stores and is correct too."""
    zarr_dir = tmp_path / "stores"
    first = _started(tmp_path / "a", f"zarr_dir={zarr_dir}")
    try:
        second = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}", "overwrite=true"],
                     cwd=tmp_path)  # fmt: skip
        one_line_error(second, f"zarr_dir: {zarr_dir} is in use by another cubemosaic run (pid {first.pid} on ")
        assert "replacing" not in second.stderr
        assert (zarr_dir / "cube.zarr" / "zarr.json").is_file()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, rest = first.communicate(timeout=300)
    assert first.returncode == 0, rest
    assert_same_cogs(demo_run, tmp_path / "a")

    again = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 day(s) to write" in again.stderr and "0 to compute" in again.stderr
    assert_same_cogs(demo_run, tmp_path / "b")


def test_a_killed_holder_frees_zarr_dir(demo_run, tmp_path):
    """The kernel releases the lock with the process: a run SIGKILLed while it holds zarr_dir
    leaves it free, and a run from another output folder resumes its stores, correct."""
    zarr_dir = tmp_path / "stores"
    first = _started(tmp_path / "a", f"zarr_dir={zarr_dir}")
    first.kill()
    first.communicate(timeout=60)
    second = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resuming cube.zarr" in second.stderr
    assert_same_cogs(demo_run, tmp_path / "b")


# --------------------------------------------------------------------------- damaged intermediates
def _shard(store: Path, variable: str, step: int) -> Path:
    """The first shard file of ``step`` of ``variable`` (one with data)."""
    shard = store / variable / "c" / str(step) / "0" / "0"
    assert shard.is_file() and shard.stat().st_size > 100
    return shard


def test_a_deleted_cube_shard_is_found_at_resume_and_written_again(demo_run, tmp_path):
    out = _finished_copy(demo_run, tmp_path / "out")
    _shard(out / "cube.zarr", "green", 5).unlink()
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step 6 of cube.zarr is recorded as done but 1 of its" in proc.stderr
    assert "1 day(s) to write" in proc.stderr
    assert_same_cogs(demo_run, out)


def test_a_truncated_cube_shard_is_named_by_the_stage_that_reads_it(demo_run, tmp_path):
    """stage=mosaic cannot write the cube: one line naming the store and the step; stage=all
    then writes the step again and the outputs are correct."""
    out = _finished_copy(demo_run, tmp_path / "out")
    shard = _shard(out / "cube.zarr", "red", 9)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=mosaic"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'cube.zarr'}: step 10 is recorded as done but its shards hold",
                   "run stage=cube")  # fmt: skip
    assert not (out / "monthly.zarr").exists()
    fixed = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 day(s) to write" in fixed.stderr
    assert_same_cogs(demo_run, out)


def test_a_deleted_monthly_shard_is_named_by_the_export_and_computed_again(demo_run, tmp_path):
    out = _finished_copy(demo_run, tmp_path / "out", keep_exports=True)
    _shard(out / "monthly.zarr", "nir", 1).unlink()
    shutil.rmtree(out / "monthly-mosaic-2022-01")
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=export"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'monthly.zarr'}: step 2 is recorded as done", "run stage=mosaic")
    assert not (out / "monthly-mosaic-2022-01").exists()
    fixed = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "step 2 of monthly.zarr is recorded as done but" in fixed.stderr and "1 to compute" in fixed.stderr
    assert_same_cogs(demo_run, out)


def _damage_index(shard: Path) -> None:
    """Zero the last 8 bytes of a shard, its index's crc32c and more: same size, so not seen at resume."""
    data = bytearray(shard.read_bytes())
    data[-8:] = bytes(8)
    shard.write_bytes(data)


def test_a_monthly_shard_whose_index_does_not_decode_is_one_line_and_deleting_the_store_fixes_it(demo_run, tmp_path):
    """The size check cannot see it; the export's read does: one line naming zarr_dir and the store
    (a rerun would resume it as it is); deleting the store and running stage=mosaic computes it again."""
    out = _finished_copy(demo_run, tmp_path / "out", keep_exports=True)
    _damage_index(_shard(out / "monthly.zarr", "red", 1))
    shutil.rmtree(out / "monthly-mosaic-2022-01")
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=export"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'monthly.zarr'} is damaged: a shard of red does not decode",
                   "delete it, then run stage=mosaic", "overwrite=true")  # fmt: skip
    shutil.rmtree(out / "monthly.zarr")
    fixed = cli(["catalog=demo", f"output_dir={out}", "stage=mosaic"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert_same_cogs(demo_run, out)


def test_a_cube_shard_whose_index_does_not_decode_is_one_line_and_deleting_the_store_fixes_it(demo_run, tmp_path):
    out = _finished_copy(demo_run, tmp_path / "out")
    _damage_index(_shard(out / "cube.zarr", "red", 9))
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=mosaic"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'cube.zarr'} is damaged: a shard of red does not decode",
                   "delete it, then run stage=cube")  # fmt: skip
    again = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)  # resumes the cube as it is: the same line
    one_line_error(again, f"zarr_dir: {out / 'cube.zarr'} is damaged")
    assert "resuming cube.zarr" in again.stderr
    shutil.rmtree(out / "cube.zarr")
    fixed = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert_same_cogs(demo_run, out)


def _damage_chunk(shard: Path) -> None:
    """Flip one byte in the middle of the shard's first stored chunk, found through the shard index
    at the end (an (offset, nbytes) little-endian uint64 pair a chunk, then the index's crc32c): the
    same size and an intact index, so neither the size check nor the index's checksum sees it."""
    import json

    import numpy as np

    meta = json.loads((shard.parents[3] / "zarr.json").read_text())
    inner = meta["codecs"][0]["configuration"]["chunk_shape"]
    outer = meta["chunk_grid"]["configuration"]["chunk_shape"]
    count = int(np.prod([o // i for o, i in zip(outer, inner, strict=True)]))
    data = bytearray(shard.read_bytes())
    index = np.frombuffer(bytes(data[-(16 * count + 4) : -4]), dtype="<u8").reshape(count, 2)
    offset, nbytes = next((int(o), int(n)) for o, n in index if o != 2**64 - 1 and n > 64)
    data[offset + nbytes // 2] ^= 0xFF
    shard.write_bytes(data)


@pytest.mark.parametrize(("store", "step", "stage", "remedy"), [
    ("cube.zarr", 9, "stage=mosaic", "delete it, then run stage=cube"),
    ("monthly.zarr", 1, "stage=export", "delete it, then run stage=mosaic"),
])  # fmt: skip
def test_a_chunk_overwritten_in_place_is_found_by_its_checksum(demo_run, tmp_path, store, step, stage, remedy):
    """A chunk's bytes changed in place (a bit flip, another writer's bytes of the same length):
    every chunk carries its own crc32c, so the stage reading it stops in one line naming the store,
    where a chunk whose Blosc stream still decoded was read as it was, and the outputs were wrong."""
    out = _finished_copy(demo_run, tmp_path / "out", keep_exports=store == "monthly.zarr")
    _damage_chunk(_shard(out / store, "red", step))
    shutil.rmtree(out / "monthly-mosaic-2022-01", ignore_errors=True)  # the month the damaged step makes
    proc = cli(["catalog=demo", f"output_dir={out}", stage], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / store} is damaged: a shard of red does not decode", "checksum", remedy)


@pytest.mark.parametrize(("store", "stage", "remedy"), [
    ("cube.zarr", "stage=mosaic", "delete it, then run stage=cube"),
    ("monthly.zarr", "stage=export", "delete it, then run stage=mosaic"),
])  # fmt: skip
def test_a_damaged_coordinate_is_one_line_naming_the_store(demo_run, tmp_path, store, stage, remedy):
    """A byte flipped in a store's ``x`` coordinate (a probe's: its RuntimeError from zstd was a
    traceback on every rerun): the stage opening the store stops in one line naming it."""
    out = _finished_copy(demo_run, tmp_path / "out", keep_exports=store == "monthly.zarr")
    (coordinate,) = (out / store / "x" / "c").iterdir()
    data = bytearray(coordinate.read_bytes())
    data[len(data) // 2] ^= 0xFF
    coordinate.write_bytes(data)
    shutil.rmtree(out / "monthly-mosaic-2022-01", ignore_errors=True)
    proc = cli(["catalog=demo", f"output_dir={out}", stage], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / store} is damaged: its x does not decode", remedy)


def test_the_record_holds_what_each_step_wrote(demo_run, tmp_path):
    """Per step: its shard objects and their bytes, as the files are; nothing damaged in a finished store."""
    from cubemosaic.store import damaged_steps, read_attrs

    for name in ("cube.zarr", "monthly.zarr"):
        store = demo_run / name
        attrs = read_attrs(str(store))
        assert sorted(map(int, attrs["written"])) == attrs["done"] == list(range(attrs["steps"]))
        for step, (objects, size) in attrs["written"].items():
            files = [p for v in attrs["variables"] for p in (store / v / "c" / step).rglob("*") if p.is_file()]
            assert objects == len(files) and size == sum(p.stat().st_size for p in files)
        assert damaged_steps(str(store)) == {}


def test_a_run_with_zarr_dir_as_a_file_url(demo_run, tmp_path):
    stores = tmp_path / "stores"
    proc = cli(["catalog=demo", f"output_dir={tmp_path / 'out'}", f"zarr_dir={stores.as_uri()}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (stores / "cube.zarr" / "zarr.json").is_file() and (stores / "monthly.zarr" / "zarr.json").is_file()
    assert_same_cogs(demo_run, tmp_path / "out")


def test_an_item_without_an_id_is_named_by_its_catalog(demo, tmp_path):
    import json

    doc = json.loads(demo.items_path.read_text())
    del doc["features"][0]["id"]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, f"catalog.url: an item of {items} has no id")
    assert not (tmp_path / "out" / "cube.zarr").exists()


def test_a_bad_memory_limit_stops_before_the_search(tmp_path):
    proc = cli(["catalog=demo", "cluster.processes=true", "cluster.memory_limit=lots", f"output_dir={tmp_path}"],
               cwd=tmp_path)  # fmt: skip
    one_line_error(proc, "cluster.memory_limit: 'lots'")
    assert proc.returncode == 2 and "search" not in proc.stderr and "demo:" not in proc.stderr


def test_a_worker_killed_for_memory_on_a_real_cluster(tmp_path):
    """A local cluster whose one worker process may use 120 MB: its nanny kills it under the first
    tasks, as often as distributed allows; the run ends in one line naming the limit."""
    proc = cli(["catalog=demo", "cluster.processes=true", "cluster.memory_limit=120MB", f"output_dir={tmp_path}"],
               cwd=tmp_path, timeout=600)  # fmt: skip
    one_line_error(proc, "cluster: Dask workers died running", "(KilledWorker)", "cluster.memory_limit=120MB")
    assert proc.returncode == 1


def test_a_crs_in_degrees_is_refused_before_any_read(tmp_path):
    """crs=EPSG:4326 with resolution=1 once made a grid of 1 x 1 pixels (one degree), refused as too
    small an aoi; resolution is in metres, so the CRS is what is wrong, and said first."""
    proc = cli(["catalog=demo", "crs=EPSG:4326", "resolution=1", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, "crs: EPSG:4326 is not projected (degrees)")
    assert not (tmp_path / "out").exists()


def test_the_smallest_grid_is_written(demo, tmp_path):
    """2 x 2 pixels: COGs and catalog, as for any area."""
    proc = cli(["catalog=demo", "aoi=[-122.3,47.55,-122.2997,47.5502]", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "grid 2x2 at 20 m" in proc.stderr and (tmp_path / "out" / "catalog.json").is_file()
    assert len(list((tmp_path / "out").glob("monthly-mosaic-*/*.tif"))) == 8


def test_a_demo_cache_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    proc = cli(
        ["catalog=demo", f"output_dir={tmp_path / 'out'}"], env={"CUBEMOSAIC_DEMO_DIR": str(blocker)}, cwd=tmp_path
    )
    one_line_error(proc, f"CUBEMOSAIC_DEMO_DIR: cannot write the demo archive into {blocker}")
    assert blocker.read_text() == "mine"


# --------------------------------------------------------------------------- interrupts
def test_ctrl_c_ends_the_run_even_when_its_parent_left_sigint_ignored(tmp_path):
    """A job whose parent ignores SIGINT (a test runner's worker, nohup) inherits that: Python then
    installs no handler, and the run went on to the end and exited 0. cubemosaic installs its own."""
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={tmp_path / 'out'}"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_IGN))  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if "cube: 18 solar day(s)" in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(120) == 130, rest
    assert rest.rstrip().splitlines()[-1] == "cubemosaic: interrupted; run the same command again to resume"


@pytest.mark.parametrize("marker", ["cube: 18 solar day(s)", "composite: 4 month(s) from 18 day(s)"])
def test_ctrl_c_with_worker_processes_is_one_line_and_the_rerun_resumes(demo_run, tmp_path, marker):
    """Ctrl-C reaches the whole process group (the worker processes too): exit 130 and the one
    line, no worker traceback nor asyncio's "Task exception was never retrieved". Sent as the
    stage's first line appears, before its work (seconds of it): never after the run could end,
    however fast or slow the machine."""
    import re

    out = tmp_path / "out"
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}", "cluster.processes=true"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(120) == 130, rest
    others = [line for line in rest.splitlines() if not re.match(r"\d\d:\d\d:\d\d cubemosaic: ", line)]
    assert others == ["cubemosaic: interrupted; run the same command again to resume"], rest
    again = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_same_cogs(demo_run, out)
