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
