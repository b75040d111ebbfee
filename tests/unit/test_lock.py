"""cubemosaic.lock: who may read and write an output folder at once."""

from __future__ import annotations

import os

import pytest


def test_readers_share_a_folder_a_writer_waits_for_none_of_them(tmp_path):
    """Locks of one folder: readers together, no writer beside a reader or a writer; the refusal
    names the parameter and the holder."""
    from cubemosaic.errors import OutputError
    from cubemosaic.lock import run_lock

    with run_lock(tmp_path, parameter="zarr_dir", shared=True), run_lock(tmp_path, parameter="zarr_dir", shared=True):
        with pytest.raises(OutputError, match=r"zarr_dir: .* in use by another cubemosaic run \(one or more runs "
                           "reading its stores\\); .* choose another zarr_dir"):  # fmt: skip
            with run_lock(tmp_path, parameter="zarr_dir"):
                pass
    with run_lock(tmp_path, parameter="zarr_dir"):
        with pytest.raises(OutputError, match=rf"cube_url: .* \(pid {os.getpid()} on "):
            with run_lock(tmp_path, parameter="cube_url", shared=True):
                pass
    read_only = tmp_path / "input"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() != 0:  # root writes anyway
        with run_lock(read_only, parameter="cube_url", shared=True):
            pass  # a folder no run can write: read without a lock


def test_a_cube_another_run_is_making_is_in_use_not_missing(tmp_path):
    """A probe: ``stage=mosaic cube_url=`` another run's cube, not yet written, was "not a Zarr
    store"; while that run holds its folder it is named as being written, and after it ends a
    folder without a store is not a Zarr store again."""
    from cubemosaic.config import _cube_url
    from cubemosaic.errors import ConfigError
    from cubemosaic.lock import run_lock

    cube = tmp_path / "zarr" / "cube.zarr"
    with run_lock(cube.parent, parameter="zarr_dir"):
        with pytest.raises(ConfigError, match=rf"is being written by another cubemosaic run \(pid {os.getpid()} on "):
            _cube_url(str(cube), str(tmp_path / "mine"), "mosaic")
        assert _cube_url(str(cube), str(cube.parent), "all") == str(cube)  # a run that makes it: its lock decides
    with pytest.raises(ConfigError, match=r"is not a Zarr store \(no zarr.json\)"):
        _cube_url(str(cube), str(tmp_path / "mine"), "mosaic")
    with run_lock(cube.parent, parameter="cube_url", shared=True):  # a reader is not a writer
        with pytest.raises(ConfigError, match=r"is not a Zarr store"):
            _cube_url(str(cube), str(tmp_path / "mine"), "mosaic")
