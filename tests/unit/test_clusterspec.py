"""cubemosaic.clusterspec: the cluster group's schema, its sizing from Calrissian's variables, and its checks."""

from __future__ import annotations

import pytest

from cubemosaic.clusterspec import ENV_SIZING, ClusterSpec, bytes_text, check_spec, sizing
from cubemosaic.errors import ConfigError


@pytest.fixture(autouse=True)
def no_calrissian(monkeypatch):
    for name in ENV_SIZING.values():
        monkeypatch.delenv(name, raising=False)


def test_the_defaults_are_an_automatic_cluster():
    spec = ClusterSpec()
    assert spec.kind == "auto" and spec.memory_limit == "auto" and not spec.processes and not spec.adaptive
    check_spec(spec)


def test_sizing_is_the_key_else_calrissians_variable_else_none(monkeypatch):
    assert sizing(ClusterSpec(), "worker_cores") is None
    monkeypatch.setenv("DASK_GATEWAY_WORKER_CORES", "4")
    assert sizing(ClusterSpec(), "worker_cores") == "4"
    assert sizing(ClusterSpec(worker_cores=2.5), "worker_cores") == "2.5", "the key wins"
    monkeypatch.setenv("DASK_GATEWAY_CLUSTER_MAX_RAM", "")
    assert sizing(ClusterSpec(), "max_memory") is None, "an empty variable is unset"


@pytest.mark.parametrize(("given", "text"), [("16", "16G"), ("1.5", "1.5G"), (" 16G ", "16G"), ("16 GiB", "16 GiB")])
def test_a_bare_number_of_memory_is_gigabytes(given, text):
    assert bytes_text(given) == text


@pytest.mark.parametrize("limit", ["auto", "0", "none", "4GB", "0.5", "2e9", "512MiB"])
def test_a_local_memory_limit_may_be_a_size_a_share_auto_or_none(limit):
    check_spec(ClusterSpec(memory_limit=limit))


@pytest.mark.parametrize("limit", ["lots", "-1", "4XB"])
def test_a_local_memory_limit_that_is_not_one_is_refused_by_its_key(limit):
    with pytest.raises(ConfigError, match="not an amount of memory") as refused:
        check_spec(ClusterSpec(memory_limit=limit))
    assert refused.value.parameter == "cluster.memory_limit"


def test_a_gateway_memory_is_checked_under_the_name_it_came_by(monkeypatch):
    check_spec(ClusterSpec(worker_memory="8", max_memory="64GiB"))
    with pytest.raises(ConfigError) as refused:
        check_spec(ClusterSpec(worker_memory="eight"))
    assert refused.value.parameter == "cluster.worker_memory"
    monkeypatch.setenv("DASK_GATEWAY_CLUSTER_MAX_RAM", "much")
    with pytest.raises(ConfigError) as refused:
        check_spec(ClusterSpec())
    assert refused.value.parameter == "DASK_GATEWAY_CLUSTER_MAX_RAM"
