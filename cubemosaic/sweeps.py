"""A ``--multirun`` sweep leaves no folder it created and used for nothing (a Hydra callback).

Hydra's sweeper creates the sweep folder and writes ``multirun.yaml`` into it *after* the
callbacks' ``on_multirun_start``, and each job's folder before the job runs. A sweep whose jobs
were all refused or only planned (``stage=plan``) wrote nothing: :class:`SweepFolders` then takes
away what Hydra created (the folders that did not exist before the sweep and hold nothing but
empty folders, lock files and Hydra's ``multirun.yaml``) and, in a sweep folder the user already
had, puts back the ``multirun.yaml`` that was there (or removes Hydra's new one). Nothing a user
had is removed; a partly successful sweep keeps its outputs and its ``multirun.yaml``.

Configured in ``conf/config.yaml`` under ``hydra.callbacks``. Hydra 1.3 calls
``on_multirun_end`` only when every job returned; a job refused with an exit code ends the sweep
with ``SystemExit``, so the command line calls :func:`finish` whichever way the sweep ended.
"""

from __future__ import annotations

import logging
import os
import shutil
from pathlib import Path
from typing import Any

from hydra.experimental.callback import Callback

from .lock import LOCK_NAME

__all__ = ["RECORD", "SweepFolders", "finish", "note", "quiet"]

log = logging.getLogger("cubemosaic")

#: The file Hydra's sweeper writes into the sweep folder.
RECORD = "multirun.yaml"

#: The sweep under way (set by ``on_multirun_start``, cleared once it is tidied).
_active: list[SweepFolders] = []


class SweepFolders(Callback):
    """Records what a sweep's folders were before Hydra touched them; tidies them at its end."""

    def __init__(self) -> None:
        self.sweep_dir: Path | None = None
        self.existed = False
        self.previous_record: bytes | None = None
        self.before: set[str] = set()
        self.created: dict[Path, None] = {}
        self.jobs: dict[Path, bool] = {}  # job folder -> wrote nothing (refused or planned)

    def on_multirun_start(self, config: Any, **kwargs: Any) -> None:
        self.__init__()
        self.sweep_dir = _absolute(config.hydra.sweep.dir)
        self.existed = self.sweep_dir.is_dir()
        if self.existed:
            self.before = set(os.listdir(self.sweep_dir))
            record = self.sweep_dir / RECORD
            self.previous_record = record.read_bytes() if record.is_file() else None
        self.note(self.sweep_dir)
        _active[:] = [self]

    def on_job_start(self, config: Any, **kwargs: Any) -> None:
        job_dir = _absolute(config.hydra.runtime.output_dir)
        self.jobs[job_dir] = False
        # Hydra has just made the job's folder: below the sweep folder, it is new when its first
        # level was not there before the sweep started (one outside it is noted by :func:`note`
        # when Hydra resolves its path, before making it).
        if self.sweep_dir is not None and _within(job_dir, self.sweep_dir) and job_dir != self.sweep_dir:
            first = job_dir.relative_to(self.sweep_dir).parts[0]
            if not self.existed or first not in self.before:
                folder = self.sweep_dir / first
                for part in (folder, *(p for p in job_dir.parents if _within(p, folder))):
                    self.created.setdefault(part, None)
                self.created.setdefault(job_dir, None)

    def on_multirun_end(self, config: Any, **kwargs: Any) -> None:
        self.tidy()

    def note(self, path: str | os.PathLike[str]) -> None:
        """Remember each missing folder of ``path``, before anything creates it."""
        path = _absolute(path)
        for folder in (path, *path.parents):
            if folder.exists():
                break
            self.created.setdefault(folder, None)

    def tidy(self) -> list[Path]:
        """Put the sweep's folders back as they were where its jobs wrote nothing; returns the removed."""
        if _active and _active[0] is self:
            _active.clear()
        if self.sweep_dir is None:
            return []
        wrote = [job for job, nothing in self.jobs.items() if not nothing]
        wrote_here = any(_within(job, self.sweep_dir) for job in wrote)
        if self.existed and not wrote_here:  # the user's folder: Hydra's record goes, theirs comes back
            record = self.sweep_dir / RECORD
            if self.previous_record is None:
                record.unlink(missing_ok=True)
            else:
                record.write_bytes(self.previous_record)
        removed = []
        for folder in sorted(self.created, key=lambda f: len(f.parts), reverse=True):
            if folder.is_dir() and _holds_nothing(folder):
                shutil.rmtree(folder, ignore_errors=True)
                removed.append(folder)
                log.debug("removed %s, which this sweep created and wrote nothing into", folder)
        self.created.clear()
        return removed


def note(path: str | os.PathLike[str]) -> None:
    """A folder Hydra is about to create for the sweep under way (none: nothing to do)."""
    if _active:
        _active[0].note(path)


def quiet() -> None:
    """The job that is running wrote nothing (refused, or ``stage=plan``)."""
    if _active and _active[0].jobs:
        last = list(_active[0].jobs)[-1]
        _active[0].jobs[last] = True


def finish() -> list[Path]:
    """Tidy the sweep under way if Hydra did not (a job ended it with ``SystemExit``)."""
    return _active[0].tidy() if _active else []


def _absolute(path: Any) -> Path:
    return Path(os.path.expanduser(str(path))).absolute()


def _within(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _holds_nothing(folder: Path) -> bool:
    """Only empty folders, lock files and Hydra's record under ``folder``."""
    for _, _, files in os.walk(folder):
        if any(name not in (LOCK_NAME, RECORD) for name in files):
            return False
    return True
