"""cubemosaic.cluster: the cluster's sizing and the failures it names."""

from __future__ import annotations

import os

import pytest

from conftest import demo_settings


@pytest.mark.parametrize(
    ("overrides", "env", "needles"),
    [
        (
            ["cluster.processes=true", "cluster.memory_limit=2GB"],
            {},
            ["cluster.memory_limit=2GB", "raise cluster.memory_limit"],
        ),
        (
            ["cluster.processes=true"],
            {},
            ["cluster.memory_limit=auto (the machine's memory", "raise cluster.memory_limit"],
        ),
        (["cluster=gateway"], {"DASK_GATEWAY_WORKER_MEMORY": "4G"}, ["worker_memory=4G", "DASK_GATEWAY_WORKER_MEMORY"]),
    ],
)
def test_a_worker_killed_for_memory_is_one_line_naming_the_limit(tmp_path, monkeypatch, overrides, env, needles):
    from distributed import KilledWorker

    from cubemosaic.cluster import worker_failures
    from cubemosaic.errors import ClusterError

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = demo_settings(tmp_path, *overrides).cluster
    with pytest.raises(ClusterError) as e, worker_failures(spec, client=object()):
        raise KilledWorker("('month-abc', 0, 0, 0)", "tcp://127.0.0.1:1234", 3)
    line = str(e.value)
    assert line.startswith("cluster: Dask workers died running ('month-abc', 0, 0, 0) (KilledWorker)")
    assert "\n" not in line and all(n in line for n in needles), line


def test_remote_reads_get_more_threads_unless_the_user_set_them():

    import dask

    from cubemosaic.cluster import waiting_on_network
    from cubemosaic.clusterspec import ClusterSpec
    from cubemosaic.tuning import REMOTE_THREADS_PER_CORE

    cores = os.cpu_count() or 1
    with dask.config.set(num_workers=cores):
        with waiting_on_network(ClusterSpec(), None, remote=True):
            assert dask.config.get("num_workers") == REMOTE_THREADS_PER_CORE * cores
        assert dask.config.get("num_workers") == cores, "only for the stage"
        with waiting_on_network(ClusterSpec(), None, remote=False):
            assert dask.config.get("num_workers") == cores
        with waiting_on_network(ClusterSpec(threads_per_worker=1), None, remote=True):
            assert dask.config.get("num_workers") == cores, "the user's setting wins"
        with waiting_on_network(ClusterSpec(), object(), remote=True):
            assert dask.config.get("num_workers") == cores, "a cluster's workers are sized by the cluster"
