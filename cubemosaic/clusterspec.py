"""How to get a Dask cluster, as the configuration states it: :class:`ClusterSpec` (the Hydra schema
of the ``cluster`` group) and its checks, apart from :mod:`cubemosaic.cluster`, which starts and
connects clusters, so that :mod:`cubemosaic.config` imports no Dask machinery.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .errors import ConfigError
from .tuning import REMOTE_THREADS_PER_CORE

__all__ = ["ENV_SIZING", "ClusterSpec", "bytes_text", "check_spec", "sizing"]

#: The Calrissian environment variable that sizes a started Dask Gateway cluster, per ``cluster.`` key.
ENV_SIZING = {
    "worker_cores": "DASK_GATEWAY_WORKER_CORES",
    "worker_cores_limit": "DASK_GATEWAY_WORKER_CORES_LIMIT",
    "worker_memory": "DASK_GATEWAY_WORKER_MEMORY",
    "max_cores": "DASK_GATEWAY_CLUSTER_MAX_CORES",
    "max_memory": "DASK_GATEWAY_CLUSTER_MAX_RAM",
}


@dataclass
class ClusterSpec:
    """How to get a Dask cluster; also the Hydra schema of the ``cluster`` group (``conf/cluster/``)."""

    #: ``auto``, ``local`` or ``gateway``.
    kind: str = "auto"
    #: Local: worker count (None = 1), threads per worker (None = all cores), processes or threads.
    n_workers: int | None = None
    threads_per_worker: int | None = None
    processes: bool = False
    memory_limit: str = "auto"
    #: Local: a distributed LocalCluster with Dask's dashboard instead of the threaded scheduler.
    dashboard: bool = False
    #: Gateway: address (None = Dask config ``gateway.address``) and cluster name (None = ``DASK_CLUSTER``).
    address: str | None = None
    name: str | None = None
    #: Gateway sizing of a started cluster (None = the Calrissian environment variable, if set).
    worker_cores: float | None = None
    worker_cores_limit: float | None = None
    worker_memory: str | None = None
    max_cores: float | None = None
    max_memory: str | None = None
    #: Gateway: adapt between 1 and the maximum number of workers instead of a fixed scale.
    adaptive: bool = False


def local_layout(spec: ClusterSpec) -> tuple[int, int] | None:
    """(workers, threads each) of the distributed LocalCluster a local run starts
    (``cluster.processes`` or ``cluster.dashboard``); None when it runs on the threaded scheduler
    in this process (:func:`local_threads` threads)."""
    if not (spec.dashboard or spec.processes):
        return None
    workers = int(spec.n_workers or 1)
    return workers, int(spec.threads_per_worker or max(1, (os.cpu_count() or 1) // workers))


def local_threads(spec: ClusterSpec) -> int:
    """The threaded scheduler's threads in this process: ``cluster.threads_per_worker``, else a core each."""
    return int(spec.threads_per_worker or os.cpu_count() or 1)


def remote_read_threads(spec: ClusterSpec) -> int | None:
    """The threads the threaded scheduler gets for a cube stage whose assets are remote (its tasks
    wait on the network: :data:`~cubemosaic.tuning.REMOTE_THREADS_PER_CORE` a core); None when the
    user set ``cluster.threads_per_worker``, which is then kept."""
    if spec.threads_per_worker:
        return None
    return REMOTE_THREADS_PER_CORE * (os.cpu_count() or 1)


def sizing(spec: ClusterSpec, key: str) -> str | None:
    """``cluster.<key>`` as text, else the Calrissian environment variable for it
    (:data:`ENV_SIZING`), else None."""
    value = getattr(spec, key)
    if value is None:
        value = os.environ.get(ENV_SIZING[key]) or None
    return None if value is None else str(value)


def bytes_text(value: str) -> str:
    """'16' (GB, as Calrissian's eoap examples give it) or '16G' / '16 GiB' -> a parse_bytes string."""
    text = str(value).strip()
    return f"{text}G" if text.replace(".", "", 1).isdigit() else text


def check_spec(spec: ClusterSpec) -> None:
    """:class:`ConfigError` naming the key of a memory size that is not one: ``cluster.memory_limit``
    (a local cluster's, per worker: ``auto``, bytes such as ``4GB``, a share of the machine such as
    ``0.5``, or 0 for none), a gateway cluster's ``worker_memory`` and ``max_memory`` (from the
    command line or Calrissian's ``DASK_GATEWAY_*`` variables). Run with the rest of the
    configuration, before any network call (a bad value used to fail after the search)."""
    _memory("cluster.memory_limit", spec.memory_limit, local=True)
    for key in ("worker_memory", "max_memory"):
        value = sizing(spec, key)
        if value is not None:
            _memory(f"cluster.{key}" if getattr(spec, key) is not None else ENV_SIZING[key], bytes_text(value))


def _memory(key: str, value: object, *, local: bool = False) -> None:
    # dask imported where a size is checked: this module is imported by config (and so by the
    # command line's start-up), which does not need dask otherwise.
    from dask.utils import parse_bytes

    text = str(value).strip()
    if local and text.lower() in ("auto", "0", "none"):
        return
    try:
        number = float(text)
    except ValueError:
        number = None
    if local and number is not None and number > 0:
        return
    example = "4GB, 0.5 (of the machine), auto or 0 (no limit)" if local else "4GB, 16Gi"
    try:
        size = parse_bytes(text)
    except (ValueError, TypeError):
        size = 0
    if size <= 0:
        raise ConfigError(key, f"{value!r} is not an amount of memory (e.g. {example})")
