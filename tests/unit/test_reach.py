"""cubemosaic.reach: how the Zarr I/O flows, decided from what the workers of a real (in-process) cluster see."""

from __future__ import annotations

import subprocess
import sys

import pytest
from distributed import Client, LocalCluster

from cubemosaic.reach import choose_writes
from cubemosaic.relay import RelayedWrites
from cubemosaic.store import DIRECT


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=1, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


def test_workers_sharing_the_disk_write_themselves(client, tmp_path):
    assert choose_writes(client, [("zarr_dir", str(tmp_path / "stores"))]) is DIRECT
    assert not list((tmp_path / "stores").iterdir()), "the marker is removed"


def test_the_local_scheduler_and_object_storage_need_no_check(client):
    assert choose_writes(None, [("zarr_dir", "/nonexistent")]) is DIRECT
    assert choose_writes(client, [("zarr_dir", "s3://bucket/prefix")]) is DIRECT


def test_a_folder_the_client_cannot_write_is_relayed_not_a_traceback(client, tmp_path):
    """A CWL step's input Directory can be read-only: no marker can be written there."""
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    writes = choose_writes(client, [("cube_url", str(blocker / "cube-parent"))])
    assert isinstance(writes, RelayedWrites) and writes.client is client and writes.relayed


def test_a_worker_importing_this_module_loads_no_arrays_library():
    """The workers import cubemosaic.reach to run the check: kept light (a worker may be small,
    cluster.memory_limit), the store and the relay are imported only where the choice is made."""
    code = "import sys, cubemosaic.reach; print(sorted({'dask.array', 'xarray', 'zarr'} & set(sys.modules)))"
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"
