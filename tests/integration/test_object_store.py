"""The Zarr stores on object storage (an S3-compatible server on loopback), written by the workers."""

from __future__ import annotations

import numpy as np
import xarray as xr

from conftest import assert_same_cogs, cli


def test_cube_and_monthly_stores_on_s3(s3, demo_run, tmp_path):
    import s3fs

    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"output_dir={out}", "zarr_dir=s3://cubes/run-1"], env=s3, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert not (out / "cube.zarr").exists() and not (out / "monthly.zarr").exists()
    fs = s3fs.S3FileSystem(key="test-key", secret="test-secret", endpoint_url=s3["AWS_ENDPOINT_URL"])
    assert fs.exists("cubes/run-1/cube.zarr/zarr.json") and fs.exists("cubes/run-1/monthly.zarr/zarr.json")
    options = {"key": "test-key", "secret": "test-secret", "endpoint_url": s3["AWS_ENDPOINT_URL"]}
    cube = xr.open_zarr("s3://cubes/run-1/cube.zarr", storage_options=options)
    local = xr.open_zarr(demo_run / "cube.zarr")
    np.testing.assert_array_equal(cube.red.values, local.red.values)
    assert_same_cogs(demo_run, out)
    assert (out / "catalog.json").is_file()

    # Rerunning resumes from the object store too.
    again = cli(["catalog=demo", f"output_dir={out}", "zarr_dir=s3://cubes/run-1"], env=s3, cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 day(s) to write" in again.stderr


def test_unknown_protocol_is_refused(tmp_path):
    proc = cli(["catalog=demo", f"output_dir={tmp_path}", "zarr_dir=nosuchfs://bucket/x"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("cubemosaic: error: zarr_dir:")


def test_two_runs_into_one_object_store_the_second_refuses_a_killed_one_expires(s3, demo_run, tmp_path, monkeypatch):
    """Object storage has no flock: a lease object, renewed while a run works, gone when it ends,
    expiring when a killed run cannot remove it."""
    import json
    import os
    import signal
    import subprocess
    import sys
    import time

    import pytest
    import s3fs

    from cubemosaic.errors import OutputError
    from cubemosaic.lock import LEASE_NAME, store_lease

    url = "s3://cubes/shared-store"
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"zarr_dir={url}"]
    first = subprocess.Popen(args + [f"output_dir={tmp_path / 'a'}"], stderr=subprocess.PIPE, text=True,
                             cwd=tmp_path, env={**os.environ, **s3})  # fmt: skip
    assert first.stderr is not None
    for line in first.stderr:
        if "cube: day 1/" in line:
            os.kill(first.pid, signal.SIGSTOP)  # holds its lease (90 s) however fast it would finish
            break
    try:
        second = cli(["catalog=demo", f"zarr_dir={url}", f"output_dir={tmp_path / 'b'}"], env=s3, cwd=tmp_path)
    finally:
        os.kill(first.pid, signal.SIGCONT)
    rest = first.stderr.read()
    assert first.wait(120) == 0, rest
    assert second.returncode == 1 and "Traceback" not in second.stderr, second.stderr
    assert (
        second.stderr.strip()
        .splitlines()[-1]
        .startswith(f"cubemosaic: error: zarr_dir: {url} is in use by another cubemosaic run (pid {first.pid} on ")
    ), second.stderr
    assert_same_cogs(demo_run, tmp_path / "a")
    fs = s3fs.S3FileSystem(key="test-key", secret="test-secret", endpoint_url=s3["AWS_ENDPOINT_URL"])
    assert not fs.exists(f"cubes/shared-store/{LEASE_NAME}"), "the lease is gone with its run"

    for key, value in s3.items():
        monkeypatch.setenv(key, value)
    lease_url = "s3://cubes/leases"
    lease = f"cubes/leases/{LEASE_NAME}"
    with store_lease(lease_url, lease_seconds=60, renew_seconds=0.2):
        # Renewed while held: its expiry moves on (waited for, not slept for, so no race with the clock).
        first_expiry = json.loads(fs.cat_file(lease))["expires"]
        for _ in range(300):
            if json.loads(fs.cat_file(lease))["expires"] > first_expiry:
                break
            time.sleep(0.1)
        else:
            raise AssertionError("the lease was never renewed")
        with pytest.raises(OutputError, match="is in use by another cubemosaic run"), store_lease(lease_url):
            pass
    # A run killed while holding it leaves its lease: free once it expires.
    dead = {"owner": "killed", "holder": "pid 1 on elsewhere", "expires": time.time() - 1}
    fs.pipe_file(lease, json.dumps(dead).encode())
    with store_lease(lease_url):
        assert json.loads(fs.cat_file(lease))["owner"] != "killed"
