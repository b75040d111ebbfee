"""Where the Dask work runs: one context manager for a local cluster or a Dask Gateway.

- ``cluster=local``: the work runs in this process on Dask's threaded scheduler, a thread per
  core (GDAL and numpy release the GIL, and threads share chunks without copying them between
  processes). Measured on the benchmark (2 cores, 12 months of a tile) against a distributed
  ``LocalCluster`` of threads: 12.5-13.0 s against 14.9-15.3 s for the whole job, the difference
  being the in-process scheduler and worker event loops. ``cluster.dashboard=true`` (or
  ``cluster.processes=true``) asks for a distributed ``LocalCluster`` instead, with Dask's
  dashboard (and worker processes).
- ``cluster=gateway``: a Dask Gateway cluster. When ``DASK_CLUSTER`` (or
  ``cluster.name``) names one, connect to it and never shut it down; otherwise start one,
  sized from ``cluster.worker_*``/``cluster.max_*`` or the environment Calrissian sets
  (``DASK_GATEWAY_WORKER_CORES``, ``DASK_GATEWAY_WORKER_MEMORY``,
  ``DASK_GATEWAY_CLUSTER_MAX_CORES``, ``DASK_GATEWAY_CLUSTER_MAX_RAM``), and shut it down
  when the job ends, fails or is interrupted. The gateway address and credentials come from
  Dask config (``gateway.address``, ``gateway.auth.*``; env ``DASK_GATEWAY__ADDRESS`` ...).
- ``cluster=auto``: a gateway when the environment names a cluster or an address, else local.
"""

from __future__ import annotations

import logging
import os
import resource
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager

import dask
import dask.config
from dask.utils import parse_bytes
from distributed import Client, KilledWorker, LocalCluster

from .clusterspec import ClusterSpec, bytes_text, local_layout, local_threads, remote_read_threads, sizing
from .errors import ClusterError, ConfigError
from .urls import redact
from .workerenv import carry_environment

__all__ = [
    "check_versions",
    "dask_client",
    "gateway_requested",
    "gateway_workers",
    "peak_mb",
    "worker_failures",
    "worker_peaks_mb",
]

log = logging.getLogger(__name__)


def gateway_requested(spec: ClusterSpec | None = None) -> bool:
    """True when the spec or the environment names a Dask Gateway cluster or address."""

    spec = spec or ClusterSpec()
    return bool(spec.name or spec.address or os.environ.get("DASK_CLUSTER") or _address(spec))


def _address(spec: ClusterSpec) -> str | None:
    """The gateway address: ``cluster.address``, Dask config ``gateway.address`` (Calrissian mounts it
    in /etc/dask), or ``DASK_GATEWAY_URL`` (which Calrissian also sets in the step's pod)."""
    return spec.address or dask.config.get("gateway.address", None) or os.environ.get("DASK_GATEWAY_URL") or None


@contextmanager
def dask_client(spec: ClusterSpec) -> Iterator[object]:
    """Yield a ``distributed.Client`` for ``spec`` (None on the local threaded scheduler);
    close (and shut down) what it started."""
    if spec.kind == "gateway" or (spec.kind == "auto" and gateway_requested(spec)):
        with _gateway(spec) as client:
            yield client
    else:
        with _local(spec) as client:
            yield client


@contextmanager
def waiting_on_network(spec: ClusterSpec, client: object | None, remote: bool) -> Iterator[None]:
    """More threads (:data:`~cubemosaic.tuning.REMOTE_THREADS_PER_CORE`) on the local threaded
    scheduler for a stage that reads ``remote`` assets, unless ``cluster.threads_per_worker`` is set
    (or the stage runs on a cluster's workers)."""
    threads = remote_read_threads(spec)
    if client is not None or not remote or threads is None:
        yield
        return
    with dask.config.set(num_workers=threads):
        log.info("cluster: %d thread(s) for the cube's remote reads (cluster.threads_per_worker to set)", threads)
        yield


#: Seconds a local distributed cluster gets to close its workers.
CLOSE_TIMEOUT_S = 20


@contextmanager
def _local(spec: ClusterSpec) -> Iterator[object]:
    layout = local_layout(spec)
    if layout is None:
        threads = local_threads(spec)
        with dask.config.set(scheduler="threads", num_workers=threads):
            log.info("cluster: local, %d thread(s) in this process (cluster.dashboard=true for a dashboard)", threads)
            yield None
        return
    workers, threads = layout
    with _workers_ignore_interrupts(spec.processes):
        cluster = LocalCluster(
            n_workers=workers,
            threads_per_worker=threads,
            processes=spec.processes,
            memory_limit=spec.memory_limit,
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
        try:
            cluster.close(timeout=CLOSE_TIMEOUT_S)
        except TimeoutError:  # workers its nanny keeps restarting (killed for memory): the run's error says it
            log.warning("cluster: the local cluster did not close within %d s", CLOSE_TIMEOUT_S)


@contextmanager
def _workers_ignore_interrupts(processes: bool) -> Iterator[None]:
    """Start worker processes with SIGINT ignored (Python then installs no KeyboardInterrupt
    handler in them): Ctrl-C reaches the whole process group, and this process alone unwinds and
    closes the cluster, so the workers do not print their own tracebacks on the way."""
    if not processes or threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def gateway_workers(spec: ClusterSpec) -> tuple[dict[str, object], int]:
    """Cluster options and worker count for a cluster we start, within the max cores and memory."""
    options: dict[str, object] = {}
    cores = sizing(spec, "worker_cores")
    limit = sizing(spec, "worker_cores_limit") or cores
    memory = sizing(spec, "worker_memory")
    try:
        if cores:
            options["worker_cores"] = float(cores)
        if limit:
            options["worker_cores_limit"] = float(limit)
        if memory:
            options["worker_memory"] = memory
        counts = []
        max_cores, max_memory = sizing(spec, "max_cores"), sizing(spec, "max_memory")
        if max_cores:
            counts.append(int(float(max_cores) // float(limit or 1)))
        if max_memory and memory:
            counts.append(int(parse_bytes(bytes_text(max_memory)) // parse_bytes(bytes_text(memory))))
    except ValueError as e:
        raise ConfigError("cluster", f"Dask Gateway sizing is not understood ({e})") from None
    return options, max(1, min(counts) if counts else 1)


@contextmanager
def worker_failures(spec: ClusterSpec, client: object | None) -> Iterator[None]:
    """A Dask worker that died under a task (distributed's ``KilledWorker``: its nanny, the kernel
    or Kubernetes stopped it, most often for going over its memory limit, as often as
    ``distributed.scheduler.allowed-failures`` allows) as one line naming the limit and what to
    raise. Nothing on the threaded scheduler (``client`` None), where the kernel kills the run."""
    if client is None:
        yield
        return
    try:
        yield
    except KilledWorker as e:
        raise ClusterError(_killed(spec, e)) from None


def _killed(spec: ClusterSpec, e: Exception) -> str:
    task = e.args[0] if e.args else "a task"
    if spec.kind == "gateway" or (spec.kind == "auto" and gateway_requested(spec)):
        memory = sizing(spec, "worker_memory")
        limit = f"worker_memory={memory}" if memory else "the gateway's default worker memory"
        remedy = "raise cluster.worker_memory (DASK_GATEWAY_WORKER_MEMORY)"
    else:
        limit = f"cluster.memory_limit={spec.memory_limit}" + (
            " (the machine's memory shared by the workers)" if str(spec.memory_limit) == "auto" else ""
        )
        remedy = "raise cluster.memory_limit"
    return (
        f"cluster: Dask workers died running {task} (KilledWorker); most often a worker goes over its memory "
        f"limit, here {limit}: {remedy}, or lower cluster.threads_per_worker or chunk_size"
    )


@contextmanager
def _gateway(spec: ClusterSpec) -> Iterator[object]:
    # dask-gateway imported where a gateway is used: its import (aiohttp, its auth plugins) adds
    # about a second to distributed's, for nothing on a local run or on a worker (which imports
    # this module to run peak_mb).
    from dask_gateway import Gateway

    address = _address(spec)
    if not address:
        raise ConfigError(
            "cluster", "a Dask Gateway needs an address: set DASK_GATEWAY__ADDRESS or cluster.address=http://..."
        )
    where = redact(address)
    name = spec.name or os.environ.get("DASK_CLUSTER") or None
    gateway = Gateway(address=address)
    cluster = None
    owned = False
    try:
        try:
            if name:
                cluster = gateway.connect(name)
                log.info("cluster: connected to Dask Gateway cluster %s at %s", name, where)
            else:
                options, workers = gateway_workers(spec)
                cluster_options = gateway.cluster_options()
                for key, value in options.items():
                    if key in cluster_options:
                        cluster_options[key] = value
                cluster = gateway.new_cluster(cluster_options, shutdown_on_close=True)
                owned = True
                if spec.adaptive:
                    cluster.adapt(minimum=1, maximum=workers)
                else:
                    cluster.scale(workers)
                log.info("cluster: started Dask Gateway cluster %s at %s with %d worker(s)%s", cluster.name, where,
                         workers, " (adaptive)" if spec.adaptive else "")  # fmt: skip
            client = cluster.get_client()
            log.info("cluster: dashboard %s", client.dashboard_link)
            if not spec.adaptive:
                client.wait_for_workers(1, timeout=300)
            check_versions(client)
            carry_environment(client)
        except ClusterError:
            raise
        except Exception as e:
            raise _gateway_error(e, where, name) from None
        try:
            yield client
            transitions = client.run_on_scheduler(_transition_count)
            log.info("cluster: %d task transitions ran on Dask Gateway cluster %s", transitions, cluster.name)
        finally:
            client.close()
    finally:
        if cluster is not None:
            cluster.close(shutdown=owned)  # a cluster we were given by name is never shut down
            if owned:
                log.info("cluster: Dask Gateway cluster %s shut down", cluster.name)
            close_gateway(cluster.gateway)
        close_gateway(gateway)


#: Packages that must be the same version on the client, the scheduler and every worker.
SAME_VERSIONS = ("cubemosaic", "dask", "distributed", "python")


def check_versions(client) -> dict[str, str]:
    """The client's versions of :data:`SAME_VERSIONS`; :class:`ClusterError` naming the first that
    differs on the scheduler or a worker (an image built from another lock file: results or
    pickles could differ). Workers that join later run the same image in any real deployment."""
    versions = client.get_versions(packages=["cubemosaic"])
    mine = {key: str(versions["client"]["packages"].get(key)) for key in SAME_VERSIONS}
    others = {"the scheduler": versions["scheduler"], **{f"worker {w}": v for w, v in versions["workers"].items()}}
    for where, info in others.items():
        for key in SAME_VERSIONS:
            theirs = str((info or {}).get("packages", {}).get(key))
            if theirs != mine[key]:
                raise ClusterError(
                    f"cluster: {where} runs {key} {theirs} and this process {key} {mine[key]}; the Dask "
                    "Gateway image must be built from the same lock file (constraints.txt) as this environment"
                )
    log.info("cluster: client, scheduler and %d worker(s) run the same %s", len(versions["workers"]),
             ", ".join(f"{k} {mine[k]}" for k in SAME_VERSIONS))  # fmt: skip
    return mine


def peak_mb() -> float:
    """This process's peak resident memory so far, in MB: Linux's ``VmHWM`` (``ru_maxrss`` would
    carry over the peak of the process that started this one, across ``exec``)."""
    try:
        with open("/proc/self/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def worker_peaks_mb(client) -> dict[str, float]:
    """Each Dask worker's peak resident memory so far, in MB (none for the local threaded scheduler)."""
    if client is None:
        return {}
    try:
        return client.run(peak_mb)
    except Exception:  # a worker gone meanwhile: the figure is informative, not worth failing a job
        return {}


def close_gateway(gateway) -> None:
    """Close a ``dask_gateway.Gateway`` once and for all.

    Written by hand around a dask-gateway quirk: ``Gateway.__del__`` calls ``close()`` again,
    which fails ("Accessing the loop property while the loop is not running") once the first
    close stopped its loop. Dropping the loop runner after closing makes ``__del__`` skip it.
    """
    if getattr(gateway, "_loop_runner", None) is None:
        return
    try:
        gateway.close()
    except RuntimeError:  # closed before (GatewayCluster.close closes its gateway): its loop is gone
        pass
    finally:
        del gateway._loop_runner


def _transition_count(dask_scheduler) -> int:
    return int(dask_scheduler.transition_counter)


def _gateway_error(e: Exception, where: str, name: str | None) -> Exception:
    """One line for each way a gateway fails a user."""
    status = getattr(e, "status", None)
    if status in (401, 403):
        return ClusterError(
            f"cluster: the Dask Gateway at {where} refused the credentials (HTTP {status}); "
            "check gateway.auth in Dask config (DASK_GATEWAY__AUTH__TYPE, ...)"
        )
    if isinstance(e, ValueError) and name and "not found" in str(e):
        return ClusterError(f"cluster: no cluster named {name!r} on the Dask Gateway at {where} (DASK_CLUSTER)")
    if isinstance(e, OSError) or type(e).__name__.startswith("ClientConnector"):
        return ClusterError(f"cluster: cannot reach the Dask Gateway at {where}")
    if isinstance(e, TimeoutError):
        return ClusterError(f"cluster: the Dask Gateway cluster at {where} got no worker in time")
    return ClusterError(f"cluster: Dask Gateway at {where} failed: {type(e).__name__}: {str(e)[:200]}")
