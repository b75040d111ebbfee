"""One run at a time in an output folder and a Zarr folder: a lock the kernel releases when its run dies.

Platforms retry a step while an earlier pod may still be writing, and people start a job
twice. Two runs writing one cube, monthly store and COGs at once corrupt each other, so a
run holds an exclusive ``flock`` on ``<output_dir>/.cubemosaic.lock`` while it works. The
kernel drops the lock with the process however it ends (SIGKILL, OOM kill, a lost pod), so
a killed run never blocks the next one. A second run refuses at once, with one line naming
the run that holds the folder (host, pid, start time). ``flock`` is what Linux gives on
local disks and on NFSv4 mounts. The same lock, ``<zarr_dir>/.cubemosaic.lock``, holds a local
``zarr_dir`` (and the folder of a ``cube_url`` outside it) that a run writes, so two runs with
different output folders never build one ``cube.zarr`` at once, nor replace each other's stores;
a run that only reads a folder's stores holds its lock shared.

A ``zarr_dir`` on object storage (which has no ``flock``, and may be shared by runs with
different output folders) is held by a lease instead (:func:`store_lease`): an object naming
the run and its expiry, renewed while the run works, so a killed run frees it after a minute
and a half. Object stores have no atomic create-if-absent through fsspec, so two runs
starting within the same second are told apart by reading the lease back after a pause
(the last writer keeps it); that is the one window this does not close.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from .errors import OutputError, one_line

__all__ = ["LEASE_NAME", "LOCK_NAME", "run_lock", "store_lease", "writer_of"]

log = logging.getLogger(__name__)

LOCK_NAME = ".cubemosaic.lock"


@contextmanager
def run_lock(folder: Path, *, parameter: str = "output_dir", shared: bool = False) -> Iterator[None]:
    """Hold ``folder``'s run lock for the duration; :class:`OutputError` naming ``parameter`` and
    the holder if another run holds it.

    ``shared``: a run that only reads the folder's stores (``stage=export`` reading
    ``monthly.zarr``, a composite reading a ``cube_url`` outside ``zarr_dir``) holds it shared:
    many readers at once, no writer meanwhile, so no run replaces (``overwrite=true``) or
    rewrites a store another reads. A folder a reader cannot create the lock file in (a read-only
    input) is not locked: no run can write there either.
    """
    path = folder / LOCK_NAME
    try:
        if not shared:
            folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as e:
        if shared:
            log.debug("lock: %s not locked (%s): read-only", folder, e.strerror)
            yield
            return
        raise OutputError(f"{parameter}: cannot create {path} ({e.strerror or e})") from None
    try:
        try:
            fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
        except BlockingIOError:
            raise OutputError(
                f"{parameter}: {folder} is in use by another cubemosaic run ({_lock_holder(fd, shared)}); "
                f"wait for it to end (rerunning then resumes) or choose another {parameter}"
            ) from None
        if not shared:  # readers leave the last writer's line; a writer blocked by them says so
            os.ftruncate(fd, 0)
            os.pwrite(fd, f"{_holder()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock


def writer_of(folder: Path) -> str | None:
    """The run writing in ``folder`` now (its holder line), or None: a store found incomplete
    there may be one that run is still creating, which is not the same as no store (a probe:
    ``stage=mosaic cube_url=`` another run's cube being made was "not a Zarr store")."""
    try:
        fd = os.open(folder / LOCK_NAME, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        return None
    except BlockingIOError:
        return os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
    finally:
        os.close(fd)


def _lock_holder(fd: int, shared: bool) -> str:
    """Who holds the lock on ``fd``: the writer's line, or (when a shared lock can be had, so only
    readers hold it) that runs read the folder."""
    if not shared:
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
            return "one or more runs reading its stores"
        except BlockingIOError:
            pass
    return os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"


#: Seconds a lease on object storage lasts without renewal (a killed run's lease is free after this).
LEASE_SECONDS = 90.0
#: Seconds between renewals by the holding run.
RENEW_SECONDS = 20.0
#: Seconds to wait before reading a new lease back: a run that wrote its lease at the same time as
#: another sees the other's (the last writer wins), and refuses.
SETTLE_SECONDS = 1.0
LEASE_NAME = ".cubemosaic.lease"


def _read_lease(fs: Any, key: str) -> dict[str, Any] | None:
    try:
        return json.loads(fs.cat_file(key))
    except FileNotFoundError:
        return None
    except ValueError:  # a torn or foreign file: treat as no lease
        return None


@contextmanager
def store_lease(
    url: str,
    *,
    parameter: str = "zarr_dir",
    lease_seconds: float = LEASE_SECONDS,
    renew_seconds: float = RENEW_SECONDS,
) -> Iterator[None]:
    """Hold a lease on ``url`` (a ``zarr_dir`` on object storage, or the folder of a ``cube_url``
    outside it: ``parameter``, named when the lease cannot be had) for the duration.

    Object stores have no ``flock``: the lease is an object, ``<url>/.cubemosaic.lease``, naming
    its run and when it expires; the run renews it while it works and deletes it at the end.
    A run that finds another's unexpired lease refuses in one line; a killed run's lease expires
    after ``lease_seconds``, so it never blocks for good. Written by hand: fsspec has no lease.
    """
    import fsspec  # only for a zarr_dir on object storage: the command line imports this module at start

    fs, root = fsspec.core.url_to_fs(url)
    key = f"{root.rstrip('/')}/{LEASE_NAME}"
    me = uuid.uuid4().hex

    def write() -> None:
        record = {"owner": me, "holder": _holder(), "expires": time.time() + lease_seconds}
        fs.pipe_file(key, json.dumps(record).encode())

    try:
        held = _read_lease(fs, key)
        if held and float(held.get("expires", 0)) > time.time():
            raise OutputError(_in_use(url, held, parameter))
        write()
        time.sleep(SETTLE_SECONDS)
        held = _read_lease(fs, key)
    except OutputError:
        raise
    except Exception as e:  # credentials, a missing bucket, no network: the store is unusable
        raise OutputError(f"{parameter}: cannot write {url} ({type(e).__name__}: {one_line(str(e), 200)})") from None
    if not held or held.get("owner") != me:
        raise OutputError(_in_use(url, held or {}, parameter))
    stop = threading.Event()

    def renew() -> None:
        while not stop.wait(renew_seconds):
            try:
                write()
            except Exception as e:  # a failed renewal is retried; the next write fails the run if it persists
                log.warning("lease: cannot renew %s (%s)", key, type(e).__name__)

    thread = threading.Thread(target=renew, name="cubemosaic-lease", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        try:
            if (_read_lease(fs, key) or {}).get("owner") == me:
                fs.rm_file(key)
        except Exception as e:  # it expires by itself
            log.warning("lease: cannot remove %s (%s); it expires in %.0f s", key, type(e).__name__, lease_seconds)


def _holder() -> str:
    now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    return f"pid {os.getpid()} on {socket.gethostname()}, started {now}"


def _in_use(url: str, held: Mapping[str, Any], parameter: str) -> str:
    until = dt.datetime.fromtimestamp(float(held.get("expires", time.time())), dt.timezone.utc)
    return (
        f"{parameter}: {url} is in use by another cubemosaic run ({held.get('holder', 'another process')}, lease "
        f"renewed until {until.isoformat(timespec='seconds')}); wait for it to end (rerunning then resumes; a "
        f"killed run's lease expires by itself) or choose another {parameter}"
    )
