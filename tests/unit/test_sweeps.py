"""cubemosaic.sweeps: the callback that tidies a sweep's folders, driven as Hydra drives it (in this
process: Hydra's order is on_multirun_start, the sweep folder and multirun.yaml, each job's folder,
on_job_start, the job; the command line as a user runs it is tests/integration/test_newcomer's)."""

from __future__ import annotations

from pathlib import Path

import pytest
from omegaconf import OmegaConf

from cubemosaic import sweeps
from cubemosaic.sweeps import RECORD, SweepFolders


@pytest.fixture(autouse=True)
def no_sweep_left():
    yield
    sweeps._active.clear()


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


class Sweep:
    """Hydra's part of a sweep into ``sweep_dir``: jobs in the given subfolders."""

    def __init__(self, sweep_dir: Path) -> None:
        self.dir = sweep_dir
        self.callback = SweepFolders()
        self.callback.on_multirun_start(OmegaConf.create({"hydra": {"sweep": {"dir": str(sweep_dir)}}}))
        sweep_dir.mkdir(parents=True, exist_ok=True)
        (sweep_dir / RECORD).write_text("this sweep\n")

    def job(self, subdir: str, *, writes: bool, outside: Path | None = None, lock: bool = False) -> Path:
        folder = outside if outside is not None else self.dir / subdir
        if outside is not None:
            sweeps.note(folder)  # the run directory's resolver, before Hydra makes it
        folder.mkdir(parents=True, exist_ok=True)
        self.callback.on_job_start(OmegaConf.create({"hydra": {"runtime": {"output_dir": str(folder)}}}))
        if writes:
            (folder / "catalog.json").write_text("{}")
        else:
            sweeps.quiet()
        if lock:  # a run's lock file: a folder holding only it counts as empty
            (folder / ".cubemosaic.lock").write_text("")
        return folder


def test_a_sweep_that_wrote_nothing_leaves_no_folder(tmp_path):
    sweep = Sweep(tmp_path / "new" / "sw")
    sweep.job("resolution=60", writes=False, lock=True)
    sweep.job("resolution=120", writes=False)
    sweep.callback.on_multirun_end(None)
    assert _tree(tmp_path) == []


def test_a_job_refused_with_an_exit_code_is_tidied_by_finish(tmp_path):
    sweep = Sweep(tmp_path / "sw")
    sweep.job("resolution=60", writes=False)
    assert sweeps._active == [sweep.callback]
    assert tmp_path / "sw" in sweeps.finish()
    assert _tree(tmp_path) == [] and sweeps.finish() == [], "once only"


def test_a_partly_successful_sweep_keeps_its_outputs_and_record(tmp_path):
    sweep = Sweep(tmp_path / "sw")
    sweep.job("start_date=2021-12-01", writes=True)
    sweep.job("start_date=2022-02-31", writes=False)
    sweep.callback.on_multirun_end(None)
    assert _tree(tmp_path / "sw") == [RECORD, "start_date=2021-12-01", "start_date=2021-12-01/catalog.json"]


def test_a_folder_the_user_had_keeps_what_it_held(tmp_path):
    mine = tmp_path / "mine"
    (mine / "resolution=60").mkdir(parents=True)
    (mine / "notes.txt").write_text("mine")
    (mine / RECORD).write_text("an earlier sweep\n")
    sweep = Sweep(mine)
    sweep.job("resolution=60", writes=False)
    sweep.job("resolution=120", writes=False)
    sweep.callback.on_multirun_end(None)
    assert _tree(mine) == [RECORD, "notes.txt", "resolution=60"]
    assert (mine / RECORD).read_text() == "an earlier sweep\n", "the earlier record is back"


def test_a_new_record_in_a_folder_the_user_had_goes_when_nothing_was_written(tmp_path):
    (tmp_path / "mine").mkdir()
    sweep = Sweep(tmp_path / "mine")
    sweep.job("resolution=60", writes=False)
    sweeps.finish()
    assert (tmp_path / "mine").is_dir() and _tree(tmp_path / "mine") == []


def test_jobs_that_wrote_outside_the_sweep_folder_leave_it_out(tmp_path):
    sweep = Sweep(tmp_path / "sweep" / "r20")  # output_dir=sweep/r${resolution}: its default names it
    sweep.job("", writes=True, outside=tmp_path / "sweep" / "r60")
    sweep.job("", writes=True, outside=tmp_path / "sweep" / "r120")
    sweep.callback.on_multirun_end(None)
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["r120", "r60"]


def test_outside_a_sweep_notes_and_quiets_do_nothing(tmp_path):
    sweeps.note(tmp_path / "x")
    sweeps.quiet()
    assert sweeps.finish() == [] and not (tmp_path / "x").exists()
