"""Faults a careful user and a platform meet (issue 21): a run owns what it writes, damaged
intermediates are found, malformed input is named; never an exit 0 with a wrong output."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from conftest import assert_same_cogs, cli


def one_line_error(proc, *needles: str) -> str:
    """The run failed with one ``cubemosaic: error:`` line, its last, holding every needle; no traceback."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cubemosaic: error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0], "the error is the last line"
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def _settings(tmp_path: Path, *overrides: str):
    from cubemosaic.__main__ import compose
    from cubemosaic.config import to_settings

    return to_settings(compose(["catalog=demo", f"output_dir={tmp_path / 'out'}", *overrides]))


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


# --------------------------------------------------------------------------- zarr_dir URLs
def test_zarr_dir_as_a_file_url_is_the_folder(tmp_path):
    stores = tmp_path / "my stores"
    assert _settings(tmp_path, f"zarr_dir={stores.as_uri()}").zarr_dir == str(stores)
    assert stores.is_dir()
    cube = tmp_path / "c.zarr"
    cube.mkdir()
    (cube / "zarr.json").write_text("{}")
    assert _settings(tmp_path, f"cube_url={cube.as_uri()}", "stage=mosaic").cube_url == str(cube)


def test_a_run_with_zarr_dir_as_a_file_url(demo_run, tmp_path):
    stores = tmp_path / "stores"
    proc = cli(["catalog=demo", f"output_dir={tmp_path / 'out'}", f"zarr_dir={stores.as_uri()}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (stores / "cube.zarr" / "zarr.json").is_file() and (stores / "monthly.zarr" / "zarr.json").is_file()
    assert_same_cogs(demo_run, tmp_path / "out")


@pytest.mark.parametrize(
    ("zarr_dir", "needles"),
    [
        ("memory://stores", ["zarr_dir: memory:// keeps the stores in this process only"]),
        ("{file}", ["zarr_dir: ", "exists and is not a folder"]),
        ("{file}/below", ["zarr_dir: ", "not writable"]),
    ],
)
def test_zarr_dir_that_cannot_hold_stores_is_refused_as_zarr_dir(tmp_path, zarr_dir, needles):
    from cubemosaic.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    with pytest.raises(ConfigError) as e:
        _settings(tmp_path, f"zarr_dir={zarr_dir.format(file=blocker)}")
    for needle in needles:
        assert needle in str(e.value)
    assert "output_dir" not in str(e.value) and e.value.exit_code == 2
    assert blocker.read_text() == "mine"
