"""Dask Gateway on a real dask-gateway-server on loopback: both modes, and its failures."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import rasterio

from conftest import assert_same_cogs, cli

SIZING = {
    "DASK_GATEWAY_WORKER_CORES": "1",
    "DASK_GATEWAY_WORKER_MEMORY": "1G",
    "DASK_GATEWAY_CLUSTER_MAX_CORES": "2",
    "DASK_GATEWAY_CLUSTER_MAX_RAM": "4G",
}


def _no_cluster_left(gateway, timeout=30.0):
    client = gateway.client()
    deadline = time.time() + timeout
    while client.list_clusters() and time.time() < deadline:
        time.sleep(0.5)
    return client.list_clusters() == []


def test_join_the_cluster_named_by_dask_cluster(gateway, demo_run, tmp_path):
    with gateway.running_cluster() as (cluster, transitions):
        before = transitions()
        out = tmp_path / "out"
        proc = cli(["catalog=demo", f"output_dir={out}"], env=gateway.env(DASK_CLUSTER=cluster.name), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert f"connected to Dask Gateway cluster {cluster.name}" in proc.stderr
        assert proc.stderr.strip().splitlines()[-1].endswith(f"done: outputs in {out}")
        assert transitions() - before > 100, "the work ran on the gateway cluster's scheduler"
        names = [c.name for c in gateway.client().list_clusters()]
        assert names == [cluster.name], "a named cluster is never shut down"
        assert_same_cogs(demo_run, out)
    assert _no_cluster_left(gateway)


def test_start_a_sized_cluster_and_shut_it_down(gateway, demo_run, tmp_path):
    out = tmp_path / "out"
    proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={out}"], env=gateway.env(**SIZING), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert re.search(r"started Dask Gateway cluster \w+ at .* with 2 worker\(s\)", proc.stderr), proc.stderr
    ran = re.search(r"(\d+) task transitions ran on Dask Gateway cluster", proc.stderr)
    assert ran and int(ran.group(1)) > 100
    assert "shut down" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].endswith(f"done: outputs in {out}"), "nothing after the last line"
    assert gateway.password not in proc.stderr
    assert_same_cogs(demo_run, out)
    assert _no_cluster_left(gateway)


@pytest.mark.parametrize("variable", ["DASK_GATEWAY__ADDRESS", "DASK_GATEWAY_URL"])
def test_auto_starts_a_gateway_cluster_when_only_an_address_is_set(gateway, tmp_path, variable):
    """Dask config's gateway.address, or DASK_GATEWAY_URL, which Calrissian sets in the step's pod."""
    env = gateway.env()
    env[variable] = env.pop("DASK_GATEWAY__ADDRESS")
    proc = cli(["catalog=demo", "stage=cube", f"output_dir={tmp_path / 'out'}"], env=env, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "started Dask Gateway cluster" in proc.stderr
    assert _no_cluster_left(gateway)


def test_an_interrupted_job_shuts_its_cluster_down(gateway, tmp_path):
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", "cluster=gateway", f"output_dir={tmp_path / 'out'}"]
    env = dict(os.environ, **gateway.env(**SIZING))
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=tmp_path, env=env)
    assert proc.stderr is not None
    for line in proc.stderr:
        if "cube: day 2/" in line:
            proc.send_signal(signal.SIGTERM)
            break
    rest = proc.stderr.read()
    assert proc.wait(60) != 0
    assert "interrupted" in rest and "Traceback" not in rest
    assert _no_cluster_left(gateway)


def _one_line(proc, *needles):
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cubemosaic: error: cluster:"), proc.stderr
    for needle in needles:
        assert needle in last, last
    return last


def test_unreachable_gateway(tmp_path):
    from servers import free_port

    address = f"http://127.0.0.1:{free_port()}"
    env = {"DASK_GATEWAY__ADDRESS": address, "DASK_GATEWAY__AUTH__TYPE": "basic"}
    proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={tmp_path}"], env=env, cwd=tmp_path)
    _one_line(proc, "cannot reach the Dask Gateway", address)


def test_unknown_cluster_name(gateway, tmp_path):
    proc = cli(
        ["catalog=demo", f"output_dir={tmp_path}"], env=gateway.env(DASK_CLUSTER="no-such-cluster"), cwd=tmp_path
    )
    _one_line(proc, "no cluster named 'no-such-cluster'")


def test_failed_authentication(gateway, tmp_path):
    env = gateway.env(DASK_GATEWAY__AUTH__KWARGS__PASSWORD="wrong-password")
    proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={tmp_path}"], env=env, cwd=tmp_path)
    line = _one_line(proc, "refused the credentials", "401")
    assert "wrong-password" not in proc.stderr and "wrong-password" not in line
    assert _no_cluster_left(gateway)


def test_private_workers_really_do_not_see_the_jobs_folder(private_gateway, hidden_dir):
    """The fixture is what a Kubernetes Gateway is: a file the client writes there is not on the workers."""
    marker = hidden_dir / "client-wrote-this"
    marker.write_text("x")
    with private_gateway.running_cluster() as (cluster, _):
        dask = cluster.get_client()
        try:
            seen = dask.run(os.path.exists, str(marker))
        finally:
            dask.close()
    assert seen and not any(seen.values()), seen


def test_workers_that_cannot_see_the_job_folder_compute_and_the_client_writes(private_gateway, hidden_dir, demo_run):
    """As on Kubernetes: DASK_CLUSTER names a cluster whose workers do not mount the job's folder,
    no object storage. The workers compute, the client does the Zarr I/O: the right answer."""
    out = hidden_dir / "main-job"
    with private_gateway.running_cluster() as (cluster, transitions):
        before = transitions()
        proc = cli(["catalog=demo", f"output_dir={out}"], env=private_gateway.env(DASK_CLUSTER=cluster.name),
                   cwd=hidden_dir)  # fmt: skip
        ran = transitions() - before
    assert proc.returncode == 0, proc.stderr
    assert re.search(rf"1 of 1 Dask worker\(s\) cannot see {re.escape(str(out))} .*\(relay\).*zarr_dir=s3://",
                     proc.stderr), proc.stderr  # fmt: skip
    assert ran > 100, "the work ran on the gateway's workers"
    assert_same_cogs(demo_run, out)
    assert not list(out.glob(".cubemosaic-reach-*")), "no marker left behind"


def test_a_tiled_run_exports_on_workers_that_cannot_see_the_job_folder(private_gateway, hidden_dir, demo_tiled_run):
    """A run cut into tiles, on workers that do not mount the job's folder: the workers make the
    COGs too (this process sends each tile's month and writes the bytes back), and they are the
    COGs the same tiled run makes in one process."""
    local = demo_tiled_run
    assert "export: COGs made in this process" in (local.parent / "stderr.txt").read_text()
    out = hidden_dir / "tiled-job"
    with private_gateway.running_cluster() as (cluster, transitions):
        proc = cli(["catalog=demo", "tile_size=128", f"output_dir={out}"],
                   env=private_gateway.env(DASK_CLUSTER=cluster.name), cwd=hidden_dir)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "export: COGs made on the cluster's Dask workers (this process sends" in proc.stderr
    tifs = sorted(local.glob("x*/monthly-mosaic-*/*.tif"))
    assert len(tifs) == 6 * 4 * 2, "6 tiles x 4 months x (mosaic, count)"
    for tif in tifs:
        with rasterio.open(tif) as a, rasterio.open(out / tif.relative_to(local)) as b:
            assert a.profile == b.profile and a.tags() == b.tags()
            np.testing.assert_array_equal(a.read(), b.read())
    assert (out / "collection.json").is_file() and (out / "monthly-mosaic-2022-01.vrt").is_file()


def test_cube_then_mosaic_on_workers_that_see_no_disk(private_gateway, hidden_dir, demo_run):
    """The CWL steps: stage=cube, then stage=mosaic from a cube only this process sees; own clusters."""
    env = private_gateway.env(**SIZING)
    cube_dir, out = hidden_dir / "step-cube", hidden_dir / "step-mosaic"
    proc = cli(["catalog=demo", "stage=cube", "cluster=gateway", f"output_dir={cube_dir}"], env=env, cwd=hidden_dir)
    assert proc.returncode == 0, proc.stderr
    assert "(relay)" in proc.stderr
    proc = cli(["stage=mosaic", "cluster=gateway", f"cube_url={cube_dir / 'cube.zarr'}", f"output_dir={out}"],
               env=env, cwd=hidden_dir)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "(relay)" in proc.stderr and "shut down" in proc.stderr
    assert_same_cogs(demo_run, out)
    assert _no_cluster_left(private_gateway)


def test_a_stock_gateway_with_its_default_commands(tmp_path, demo_run):
    """dask-gateway-server (and its Helm chart) starts `dask-scheduler` and `dask-worker`, which
    current distributed no longer installs: cubemosaic's environment provides them."""
    from servers import loopback_gateway

    bindir = os.path.dirname(sys.executable)
    with loopback_gateway(tmp_path, default_commands=True, PATH=f"{bindir}:{os.environ.get('PATH', '')}") as stock:
        out = tmp_path / "out"
        proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={out}"], env=stock.env(**SIZING), cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr
        assert re.search(r"(\d{3,}) task transitions ran on Dask Gateway cluster", proc.stderr), proc.stderr
        assert "run the same cubemosaic" in proc.stderr
    for command in ("dask-scheduler", "dask-worker"):  # what the gateway ran: ours, from the package's scripts
        assert shutil.which(command, path=bindir) == os.path.join(bindir, command)
    assert_same_cogs(demo_run, out)


def test_client_scheduler_and_workers_run_the_same_versions(gateway):
    """The image and the client come from one lock file: a gateway cluster reports the same
    dask, distributed, cubemosaic and python on every side (the job checks it at connection)."""
    from cubemosaic.cluster import SAME_VERSIONS, check_versions

    with gateway.running_cluster() as (cluster, _):
        dask = cluster.get_client()
        try:
            mine = check_versions(dask)
            versions = dask.get_versions(packages=["cubemosaic"])
        finally:
            dask.close()
    assert set(mine) == set(SAME_VERSIONS) and mine["cubemosaic"] != "None"
    for info in [versions["scheduler"], *versions["workers"].values()]:
        assert {k: str(info["packages"][k]) for k in SAME_VERSIONS} == mine


def test_object_storage_credentials_reach_workers_that_have_no_environment(gateway, s3, demo_run, tmp_path):
    """Calrissian's workers get no environment: the job's own AWS_* go to them (never printed)."""
    out = tmp_path / "out"
    env = gateway.env(**SIZING, **s3)
    proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={out}", "zarr_dir=s3://cubes/gateway-run"],
               env=env, cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "the Dask workers get this job's AWS_ACCESS_KEY_ID, AWS_DEFAULT_REGION" in proc.stderr, proc.stderr
    assert s3["AWS_SECRET_ACCESS_KEY"] not in proc.stderr + proc.stdout
    assert re.search(r"(\d{3,}) task transitions ran", proc.stderr), proc.stderr
    assert_same_cogs(demo_run, out)


def test_workers_without_our_code_fail_fast_in_one_line(tmp_path, hidden_dir):
    """Neither path can work when the workers' image lacks cubemosaic (they can neither write the
    store nor compute a block for the relay): one line before any compute, no traceback."""
    from servers import loopback_gateway

    stub = tmp_path / "stub" / "cubemosaic"
    stub.mkdir(parents=True)
    (stub / "__init__.py").write_text('raise ImportError("this image has no cubemosaic")\n')
    with loopback_gateway(tmp_path, PYTHONPATH=str(stub.parent)) as bare:
        proc = cli(["catalog=demo", "cluster=gateway", f"output_dir={tmp_path / 'out'}"], env=bare.env(**SIZING),
                   cwd=tmp_path)  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cubemosaic: error: cluster:") and "cubemosaic" in last, proc.stderr
    assert "cube: day" not in proc.stderr, "failed before any compute"
    print(last)


def test_steps_the_workers_wrote_where_this_process_cannot_see_are_an_error(private_gateway, hidden_dir):
    """The safety net behind the reach check: should workers ever write a store directly where
    this process does not see it (a worker joining later from another image, say), the step is
    found missing right after its write, not read back later as no data."""
    import dask.array as da
    import numpy as np
    import xarray as xr

    from cubemosaic import store
    from cubemosaic.errors import WriteError
    from cubemosaic.relay import RelayedWrites

    path = str(hidden_dir / "direct-by-blind-workers.zarr")
    template = xr.Dataset(
        {"red": (("time", "y", "x"), da.zeros((2, 64, 64), dtype="uint16", chunks=(1, 64, 64)))},
        coords={"time": np.array(["2021-01-01", "2021-02-01"], dtype="datetime64[ns]")},
    )
    store.create(path, template, {"red": store.zarr_encoding((1, 32, 32), (1, 64, 64))}, {"format": 0})
    steps = {0: {"red": da.ones((1, 64, 64), dtype="uint16", chunks=(1, 64, 64))}}
    with private_gateway.running_cluster() as (cluster, transitions):
        client = cluster.get_client()
        try:
            before = transitions()
            with client.as_current(), pytest.raises(WriteError, match="cannot see") as failed:
                store.DIRECT.write(path, steps)  # direct: the workers write into their own tmpfs
            assert transitions() > before, "the workers ran the write"
            RelayedWrites(client).write(path, steps)  # the relay: this process writes, and sees it
        finally:
            client.close()
    assert "zarr_dir" in str(failed.value) and "step 0 of red" in str(failed.value)
    assert int(store.open_dn(path).red[0].sum()) == 64 * 64
