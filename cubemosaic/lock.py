"""One run at a time in an output folder: a lock the kernel releases when its run dies.

Platforms retry a step while an earlier pod may still be writing, and people start a job
twice. Two runs writing one cube, monthly store and COGs at once corrupt each other, so a
run holds an exclusive ``flock`` on ``<output_dir>/.cubemosaic.lock`` while it works. The
kernel drops the lock with the process however it ends (SIGKILL, OOM kill, a lost pod), so
a killed run never blocks the next one. A second run refuses at once, with one line naming
the run that holds the folder (host, pid, start time). ``flock`` is what Linux gives on
local disks and on NFSv4 mounts; stores on object storage are not locked by this.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from .errors import OutputError

__all__ = ["LOCK_NAME", "run_lock"]

LOCK_NAME = ".cubemosaic.lock"


@contextmanager
def run_lock(folder: Path) -> Iterator[None]:
    """Hold ``folder``'s run lock for the duration; :class:`OutputError` if another run holds it."""
    path = folder / LOCK_NAME
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 512, 0).decode(errors="replace").strip() or "another process"
            raise OutputError(
                f"output_dir: {folder} is in use by another cubemosaic run ({holder}); "
                "wait for it to end (rerunning then resumes) or choose another output_dir"
            ) from None
        now = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}, started {now}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # closing the descriptor releases the lock
