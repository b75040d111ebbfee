"""Whether the Dask workers reach the Zarr stores: checked before any Zarr I/O runs on them.

On a Dask Gateway the workers run in pods of their own that do not mount the job's volume
(DESIGN.md, "The platform as it really is"). A worker writing to a local ``zarr_dir`` then
writes to its own disk, where nobody reads it: the whole compute is lost and a later stage
would report a wrong cause. So before a stage runs on a distributed cluster, the client
writes a marker into each local store folder and every worker is asked whether it sees it.
A worker that does not stops the job with one line naming the folder and the way out
(object storage the workers reach, ``zarr_dir=s3://...``). Stores on object storage and the
local threaded scheduler (same process) need no check.
"""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import Iterable
from pathlib import Path

from .errors import OutputError

__all__ = ["check_workers_see"]

log = logging.getLogger(__name__)


def _sees(path: str) -> bool:
    """Runs on each worker: is the client's marker file there?"""
    return os.path.isfile(path)


def check_workers_see(client: object | None, folders: Iterable[tuple[str, str]]) -> None:
    """Raise :class:`OutputError` unless every worker of ``client`` sees each local folder.

    ``folders`` holds (parameter, folder) pairs, the parameter named in the message.
    ``client`` is a ``distributed.Client``, or None for the local threaded scheduler.
    """
    if client is None:
        return
    for parameter, folder in folders:
        if "://" in folder and not folder.startswith("file://"):
            continue  # object storage: reached over the network, not through a shared disk
        base = Path(folder.removeprefix("file://"))
        base.mkdir(parents=True, exist_ok=True)
        marker = base / f".cubemosaic-reach-{uuid.uuid4().hex}"
        marker.write_text("written by the cubemosaic client; the workers look for it\n")
        try:
            seen = client.run(_sees, str(marker))  # type: ignore[attr-defined]
        finally:
            marker.unlink(missing_ok=True)
        blind = sorted(worker for worker, ok in seen.items() if not ok)
        if blind:
            raise OutputError(
                f"{parameter}: the Dask workers cannot see {base} ({len(blind)} of {len(seen)} worker(s) do not "
                "share this machine's disk, so what they wrote there would be lost); put the stores on object "
                "storage the workers reach, e.g. zarr_dir=s3://bucket/prefix"
            )
        log.info("cluster: the %d Dask worker(s) see %s", len(seen), base)
