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
