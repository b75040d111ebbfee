"""Where the Dask work runs: one context manager for every kind of cluster.

``cluster=local`` starts a local Dask cluster sized to the machine (by default one worker
with a thread per core: GDAL and numpy release the GIL, and threads share the chunks
without copying them between processes). ``cluster=auto`` picks a Dask Gateway when the
environment names one, and a local cluster otherwise.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from contextlib import contextmanager

from .errors import ConfigError

__all__ = ["dask_client", "gateway_requested"]

log = logging.getLogger(__name__)


def gateway_requested() -> bool:
    """True when the environment names a Dask Gateway (``DASK_CLUSTER`` or ``gateway.address``)."""
    import dask.config

    return bool(os.environ.get("DASK_CLUSTER") or dask.config.get("gateway.address", None))


@contextmanager
def dask_client(
    kind: str = "auto",
    *,
    n_workers: int | None = None,
    threads_per_worker: int | None = None,
    processes: bool = False,
    memory_limit: str = "auto",
) -> Iterator[object]:
    """Yield a ``distributed.Client`` for ``kind`` (auto, local, gateway); close what it started."""
    if kind == "gateway" or (kind == "auto" and gateway_requested()):
        raise ConfigError("cluster", "Dask Gateway clusters are not supported by this version; use cluster=local")
    with _local(n_workers, threads_per_worker, processes, memory_limit) as client:
        yield client


@contextmanager
def _local(
    n_workers: int | None, threads_per_worker: int | None, processes: bool, memory_limit: str
) -> Iterator[object]:
    from distributed import Client, LocalCluster

    workers = n_workers or 1
    threads = threads_per_worker or max(1, (os.cpu_count() or 1) // workers)
    cluster = LocalCluster(
        n_workers=workers,
        threads_per_worker=threads,
        processes=processes,
        memory_limit=memory_limit,
        dashboard_address="127.0.0.1:0",
        silence_logs=logging.CRITICAL,
    )
    try:
        with Client(cluster) as client:
            log.info(
                "cluster: local, %d worker(s) x %d thread(s); dashboard %s", workers, threads, client.dashboard_link
            )
            yield client
    finally:
        cluster.close()
