"""Whether the Dask workers reach the Zarr stores: checked before any Zarr I/O runs on them.

On a Dask Gateway the workers run in pods of their own that do not mount the job's volume
(Calrissian's ``dask-gateway`` branch gives them none: :mod:`cubemosaic.workerenv`). A worker writing to a local ``zarr_dir`` then
writes to its own disk, where nobody reads it: the whole compute is lost and a later stage
would report a wrong cause. So before a stage runs on a distributed cluster, the client
writes a marker into each local store folder and every worker is asked whether it sees it.
When one does not, the Zarr I/O goes through this process instead (the relay,
:class:`~cubemosaic.relay.RelayedWrites`, slower than object storage the workers reach,
``zarr_dir=s3://...``, which the log line says). Stores on object storage and the local threaded
scheduler (same process) need no check. :func:`choose_writes` makes that choice once for a run;
both stages write through what it returns.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from .errors import ClusterError, one_line
from .urls import is_local, local_path

if TYPE_CHECKING:  # imported where used: the workers import this module to run _sees, and stay light
    from .relay import RelayedWrites
    from .store import Writes

__all__ = ["choose_writes"]

#: Side of the test block sent back by a worker before relaying (one default shard: 2048^2 uint16, 8 MB).
PROBE_SIDE = 2048
#: Seconds a worker has to send the test block back.
PROBE_TIMEOUT = 120

log = logging.getLogger(__name__)


def _sees(path: str) -> bool:
    """Runs on each worker: is the client's marker file there?"""
    return os.path.isfile(path)


def _block(side: int) -> np.ndarray:
    """Runs on a worker: a block of the size the relay sends back."""
    return np.ones((side, side), dtype=np.uint16)


def _unusable(what: str, e: BaseException) -> ClusterError:
    return ClusterError(
        f"cluster: the Dask workers {what} ({type(e).__name__}: {one_line(str(e), 200)}); their image must "
        "have the same cubemosaic, dask and distributed as this process, and reach it over the network"
    )


def _relay_works(client: object) -> None:
    """Fail fast, before any compute, when the workers cannot send blocks back (the relay's path)."""
    try:
        block = client.submit(_block, PROBE_SIDE, pure=False).result(timeout=PROBE_TIMEOUT)  # type: ignore[attr-defined]
    except Exception as e:  # comms, serialization, a worker without our code: all end the same way
        raise _unusable("cannot see the stores and cannot send blocks back to this process either", e) from None
    if not isinstance(block, np.ndarray) or block.shape != (PROBE_SIDE, PROBE_SIDE) or int(block[-1, -1]) != 1:
        raise ClusterError("cluster: a Dask worker sent back a wrong test block; the relay cannot work")


def choose_writes(client: object | None, folders: Iterable[tuple[str, str]]) -> Writes:
    """How both stages' blocks reach the stores: :class:`~cubemosaic.relay.RelayedWrites` of
    ``client`` when some worker cannot see one of the local ``folders`` (the Zarr I/O must then go
    through this process), else :data:`~cubemosaic.store.DIRECT` (the workers, or the local
    threaded scheduler, read and write the stores themselves). ``folders`` holds (parameter,
    folder) pairs; ``client`` is a ``distributed.Client``, or None for the local threaded
    scheduler. Logs the choice and why.
    """
    # Here, not at the top: the store and the relay load Dask's arrays, zarr and xarray (~100 MB),
    # which a worker running _sees would import too.
    from .relay import RelayedWrites
    from .store import DIRECT

    if client is None:
        return DIRECT
    for parameter, folder in folders:
        if not is_local(folder):
            continue  # object storage: reached over the network, not through a shared disk
        base = Path(local_path(folder))
        marker = base / f".cubemosaic-reach-{uuid.uuid4().hex}"
        try:
            base.mkdir(parents=True, exist_ok=True)
            marker.write_text("written by the cubemosaic client; the workers look for it\n")
        except OSError:  # a read-only input (a CWL step's input Directory): ask no worker, relay
            log.info("cluster: %s (%s) is read-only here: this process relays the Zarr I/O", base, parameter)
            return _checked(client)
        try:
            seen = client.run(_sees, str(marker))  # type: ignore[attr-defined]
        except Exception as e:  # a worker that cannot run our code cannot read, write or compute
            raise _unusable("cannot run cubemosaic's code", e) from None
        finally:
            marker.unlink(missing_ok=True)
        if not seen:  # an adaptive cluster with no worker yet: the relay works whoever joins
            log.info("cluster: no Dask worker yet to ask whether it sees %s: this process relays the Zarr I/O", base)
            return RelayedWrites(client)
        blind = sorted(worker for worker, ok in seen.items() if not ok)
        if blind:
            log.info(
                "cluster: %d of %d Dask worker(s) cannot see %s (%s): they compute, this process reads and writes "
                "the Zarr stores (relay); for big jobs object storage the workers reach is faster (zarr_dir=s3://...)",
                len(blind), len(seen), base, parameter,
            )  # fmt: skip
            return _checked(client)
    log.info("cluster: the Dask workers see the stores and read and write them themselves")
    return DIRECT


def _checked(client: object) -> RelayedWrites:
    """The relay of ``client``, once a worker has sent a test block back (:func:`_relay_works`)."""
    from .relay import RelayedWrites  # as in choose_writes: not on a worker's import of this module

    _relay_works(client)
    return RelayedWrites(client)
