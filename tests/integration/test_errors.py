"""Every bad input: one line naming the parameter or asset, a non-zero exit, no traceback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess

import pytest

from conftest import cli, one_line_error, truncated_asset_items


@pytest.mark.parametrize(
    ("override", "needles"),
    [
        ("resolution=-5", ["resolution", "positive"]),
        ("+resolutoin=60", ["resolutoin", "unknown key"]),
        ("catalog=nope", ["catalog", "no option 'nope'"]),
    ],
)
def test_the_command_line_refuses_in_one_line_with_exit_2(override, needles, tmp_path):
    """The same refusals through the real entry point: one line, exit 2, no traceback."""
    proc = cli(["catalog=demo", override, f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, *needles)
    assert proc.returncode == 2


def test_unknown_band_is_named(demo, tmp_path):
    proc = cli(["catalog=demo", "bands=[red,purple]", f"output_dir={tmp_path}"], cwd=tmp_path)
    one_line_error(proc, "bands", "'purple'", "known:", "nir")


def test_unreachable_catalog(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = cli(["catalog=demo", f"catalog.url=http://127.0.0.1:{port}/stac", f"output_dir={tmp_path}"], cwd=tmp_path)
    one_line_error(proc, "catalog.url", f"127.0.0.1:{port}", "cannot reach")


def test_missing_catalog_file(tmp_path):
    proc = cli(["catalog=demo", f"catalog.url={tmp_path}/nope.json", f"output_dir={tmp_path}"], cwd=tmp_path)
    one_line_error(proc, "catalog.url", "nope.json")


def test_nothing_found(demo, tmp_path):
    proc = cli(["catalog=demo", "start_date=2010-01-01", "end_date=2010-02-01", f"output_dir={tmp_path}"], cwd=tmp_path)
    one_line_error(proc, "no scene", "2010-01-01")


def test_unwritable_output_dir(tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    proc = cli(["catalog=demo", f"output_dir={blocker}/out"], cwd=tmp_path)
    one_line_error(proc, "output_dir", "not writable")
    assert blocker.read_text() == "mine"


def test_output_of_another_request_is_not_overwritten(demo_run, tmp_path):
    out = tmp_path / "out"
    shutil.copytree(demo_run / "cube.zarr", out / "cube.zarr")
    proc = cli(["catalog=demo", "bands=[red,nir]", "resolution=40", f"output_dir={out}"], cwd=tmp_path)
    one_line_error(
        proc,
        "zarr_dir: ",
        "cube.zarr",
        "choose another zarr_dir",
        "overwrite=true",
        "differs in: bands, shape, transform)",
    )


def test_corrupt_asset_is_named(demo, tmp_path):
    items, item = truncated_asset_items(demo, tmp_path)
    proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, "B08", item["id"])


def test_debug_true_shows_the_traceback(tmp_path):
    proc = cli(["catalog=demo", "debug=True", "resolution=-1", f"output_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode != 0
    assert "Traceback" in proc.stderr and "resolution: must be a positive number" in proc.stderr


@pytest.fixture
def full_disk(tmp_path):
    """A 256 kB file system: room for the stores' metadata, not for the cube (needs root to mount)."""
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root")
    folder = tmp_path / "full"
    folder.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=256k", "tmpfs", str(folder)], check=True)
    yield folder
    subprocess.run(["umount", "-l", str(folder)], check=True)


def test_a_failed_write_is_named_as_a_write_not_a_read(full_disk, tmp_path):
    """A disk that fills up mid-cube: the error names the store and the cause, not the scenes."""
    proc = cli(["catalog=demo", f"output_dir={tmp_path / 'out'}", f"zarr_dir={full_disk}"], cwd=tmp_path)
    line = one_line_error(proc, "zarr_dir: cannot write", str(full_disk / "cube.zarr"), "No space left on device")
    assert "cannot read" not in line and "clear pixel" not in proc.stderr


def test_a_disk_that_fills_during_the_export_is_one_line_and_the_rerun_is_right(full_disk, tmp_path, demo_run):
    """The stores fit elsewhere; the COGs do not fit in output_dir: one line naming the COG, and once
    there is room the same command finishes with the same COGs as the demo's run."""
    from conftest import assert_same_cogs

    args = ["catalog=demo", f"output_dir={full_disk}", f"zarr_dir={tmp_path / 'stores'}"]
    proc = cli(args, cwd=tmp_path)
    line = one_line_error(proc, "output_dir: cannot write", str(full_disk), "No space left on device")
    assert "clear pixel" not in line
    subprocess.run(["mount", "-o", "remount,size=64m", str(full_disk)], check=True)
    again = cli(args, cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    assert_same_cogs(demo_run, full_disk)
