"""The two-step CWL workflow: validated and run end to end with cwltool, on loopback services."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pystac
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
import yaml

from conftest import assert_same_cogs

CWL = Path(__file__).resolve().parents[2] / "cwl" / "cubemosaic.cwl"


def _cwltool(*args: str, env: dict[str, str] | None = None, cwd: Path) -> subprocess.CompletedProcess:
    exe = str(Path(sys.executable).parent / "cwltool")
    full_env = dict(os.environ, PATH=f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}")
    full_env.update(env or {})
    return subprocess.run([exe, *args], capture_output=True, text=True, cwd=cwd, env=full_env, timeout=600)


def _hints_copy(tmp_path: Path) -> Path:
    """cwltool knows neither Calrissian's requirement nor --no-container with Docker under
    requirements: run a copy that moves both to hints, as the design guide says."""
    doc = yaml.safe_load(CWL.read_text())
    for proc in doc["$graph"]:
        if proc["class"] == "CommandLineTool":
            hints = proc.setdefault("hints", {})
            for key in ("calrissian:DaskGatewayRequirement", "DockerRequirement"):
                hints[key] = proc["requirements"].pop(key)
    path = tmp_path / "cubemosaic-hints.cwl"
    path.write_text(yaml.safe_dump(doc, sort_keys=False))
    return path


def test_workflow_validates(tmp_path):
    proc = _cwltool("--validate", str(_hints_copy(tmp_path)), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "is valid CWL" in proc.stdout + proc.stderr


DEMO_JOB = {
    "start-date": "2021-12-01",
    "end-date": "2022-03-31",
    "aoi": "-122.325,47.535,-122.265,47.575",
    "bands": ["red", "green", "blue", "nir"],
    "resolution": 20,
}


def _run_main(
    tmp_path: Path, job: dict, env: dict[str, str] | None = None, steps_under: Path | None = None
) -> tuple[subprocess.CompletedProcess, Path]:
    """``cwltool --no-container`` of the workflow's ``main`` on ``job``, passing ``env`` to the tools;
    ``steps_under``: where the steps' folders go (as Calrissian puts them on the job's volume)."""
    job_file = tmp_path / "job.yml"
    job_file.write_text(yaml.safe_dump(job))
    preserve = [arg for var in env or {} for arg in ("--preserve-environment", var)]
    out = tmp_path / "out"
    prefixes = []
    if steps_under is not None:
        prefixes = [f"--tmp-outdir-prefix={steps_under}/out-", f"--tmpdir-prefix={steps_under}/tmp-"]
    proc = _cwltool(
        "--no-container",
        *preserve,
        *prefixes,
        "--outdir",
        str(out),
        f"{_hints_copy(tmp_path)}#main",
        str(job_file),
        env=env,
        cwd=tmp_path,
    )
    return proc, out


def _catalog_matches_the_demo_run(out: Path, demo_run: Path) -> None:
    (catalog_dir,) = [p for p in out.iterdir() if (p / "catalog.json").exists()]
    items = list(pystac.Catalog.from_file(str(catalog_dir / "catalog.json")).get_items(recursive=True))
    assert len(items) == 4
    assert_same_cogs(demo_run, catalog_dir)


def test_workflow_runs_on_a_gateway_cluster(tmp_path, stac_api, gateway, demo_run):
    with gateway.running_cluster() as (cluster, transitions):
        before = transitions()
        job = DEMO_JOB | {"catalog-url": stac_api, "keep-cube": True}
        proc, out = _run_main(tmp_path, job, gateway.env(DASK_CLUSTER=cluster.name))
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert f"connected to Dask Gateway cluster {cluster.name}" in proc.stderr
        assert transitions() - before > 100
    cube = xr.open_zarr(out / "cube.zarr")
    assert cube.sizes["time"] == 18 and cube.rio.crs.to_epsg() == 32610
    _catalog_matches_the_demo_run(out, demo_run)


def test_a_failing_job_fails_the_step(tmp_path):
    proc, _ = _run_main(tmp_path, DEMO_JOB | {"start-date": "2022-03-31", "end-date": "2021-12-01"})
    assert proc.returncode != 0
    assert "end_date: 2021-12-01 is before start_date 2022-03-31" in proc.stderr
    assert "permanentFail" in proc.stderr


def test_workflow_with_the_stores_on_object_storage(tmp_path, stac_api, s3, demo_run):
    """With zarr-dir the stores live in a bucket (as gateway workers need) and the steps meet there."""
    import s3fs

    proc, out = _run_main(tmp_path, DEMO_JOB | {"catalog-url": stac_api, "zarr-dir": "s3://cubes/cwl-run"}, s3)
    assert proc.returncode == 0, proc.stderr[-3000:]
    fs = s3fs.S3FileSystem(key="test-key", secret="test-secret", endpoint_url=s3["AWS_ENDPOINT_URL"])
    assert fs.exists("cubes/cwl-run/cube.zarr/zarr.json") and fs.exists("cubes/cwl-run/monthly.zarr/zarr.json")
    assert not (out / "cube.zarr").exists()
    _catalog_matches_the_demo_run(out, demo_run)


def test_workflow_with_default_inputs_on_workers_that_do_not_mount_the_steps_volume(
    tmp_path, stac_api, private_gateway, hidden_dir, demo_run
):
    """As Calrissian runs it: each step's folder only in the step's pod, no zarr-dir; both steps relay."""
    steps = hidden_dir / "cwl-steps"
    steps.mkdir()
    with private_gateway.running_cluster() as (cluster, transitions):
        before = transitions()
        # With statistics and a provenance layer of other dtypes (uint8 days) through the relay.
        job = DEMO_JOB | {"catalog-url": stac_api, "statistic": ["median", "p25"], "provenance": ["first_day"]}
        proc, out = _run_main(tmp_path, job, private_gateway.env(DASK_CLUSTER=cluster.name), steps)
        assert proc.returncode == 0, proc.stderr[-3000:]
        assert proc.stderr.count("(relay)") == 2, "both steps relay the Zarr I/O"
        assert transitions() - before > 100
    assert not (out / "cube.zarr").exists(), "the cube is not staged out unless asked"
    _catalog_matches_the_demo_run(out, demo_run)  # the median mosaics and counts as the demo's
    (catalog_dir,) = [p for p in out.iterdir() if (p / "catalog.json").exists()]
    items = list(pystac.Catalog.from_file(str(catalog_dir / "catalog.json")).get_items(recursive=True))
    for item in items:
        assert {"mosaic", "p25", "count", "first_day", "thumbnail"} <= set(item.assets), sorted(item.assets)
        with (
            rasterio.open(item.assets["p25"].get_absolute_href()) as p25,
            rasterio.open(item.assets["mosaic"].get_absolute_href()) as median,
        ):
            low, mid = p25.read().astype(int), median.read().astype(int)
        has = mid > 0
        assert (low[has] <= mid[has]).all(), "the first quartile is at most the median"
