"""What a newcomer hit (issue 23): the closing summary, refused runs, exit codes, quick-looks,
sweeps and the README's commands."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from conftest import cli

SMALL = ["catalog=demo", "resolution=120"]  # the demo at 120 m: a whole job in about a second


def test_a_run_opens_with_its_plan(tmp_path):
    """Before any stage's work, the run says what it will do: the scenes, days and months, the
    tiles and pixels, the bytes to read and write, the memory: the figures stage=plan prints."""
    out = tmp_path / "out"
    proc = cli([*SMALL, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    lines = [line.split("cubemosaic: ", 1)[1] for line in proc.stderr.splitlines() if "cubemosaic: " in line]
    planned = [i for i, line in enumerate(lines) if line.startswith("plan: ")]
    first_work = next(i for i, line in enumerate(lines) if line.startswith(("cube: ", "composite: ", "export: ")))
    assert len(planned) == 4 and planned[-1] < first_work, lines[: first_work + 1]
    figures = json.loads(cli([*SMALL, "stage=plan", f"output_dir={tmp_path / 'plan'}"], cwd=tmp_path).stdout)
    said = " ".join(lines[i] for i in planned)
    assert f"{figures['scenes']} scene(s) on {figures['solar_days']} solar day(s), {figures['months']} month(s)" in said
    assert f"peak memory about {figures['peak_memory_mb']} MB" in said
    cube = next(line for line in lines if re.match(r"cube: \d+ solar day\(s\)", line))
    assert cube.startswith(f"cube: {figures['solar_days']} solar day(s), {figures['scenes']} scene(s)"), cube


def test_a_run_ends_with_a_summary(tmp_path):
    out = tmp_path / "out"
    proc = cli([*SMALL, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    items = sorted(out.glob("monthly-mosaic-*/monthly-mosaic-*.json"))
    assert items, "the demo writes months"
    lines = [line.split("cubemosaic: ", 1)[1] for line in proc.stderr.splitlines() if "summary:" in line]
    for item in items:
        share = json.loads(item.read_text())["properties"]["cubemosaic:clear_share"]
        name = item.parent.name
        (said,) = [line for line in lines if f"summary: {name} " in line]
        percent = float(re.search(r"clear (\d+(?:\.\d)?)%", said).group(1))
        assert percent <= share * 100 < percent + 0.1 or percent == share * 100 == 100, (said, share)
        assert str(out / name / f"{name}.tif") in said
    assert any(re.fullmatch(rf"summary: {len(items)} month\(s\); run took \d+\.\d s", line) for line in lines), lines
    assert f"summary: overview picture {out / 'overview.png'}" in lines and (out / "overview.png").is_file()
    assert f"summary: catalog {out / 'catalog.json'}" in lines
    last = proc.stderr.strip().splitlines()
    assert last[-1].endswith(f"done: outputs in {out}") and "summary: catalog" in last[-2], "the summary closes the run"


@pytest.mark.parametrize(
    "bad",
    [
        ["start_date=2022-02-31"],  # refused while the configuration is read
        ["start_date=2022-01-31", "end_date=2022-01-01"],
        ["aoi=[10,10,9,9]"],  # a bad AOI
        ["aoi=[100.0,-40.0,100.05,-39.95]"],  # valid, but no scene there: refused by the search
    ],
)
def test_a_refused_run_leaves_no_folder_it_created(bad, tmp_path):
    out = tmp_path / "new" / "out"
    proc = cli([*SMALL, *bad, f"output_dir={out}", f"zarr_dir={tmp_path / 'stores' / 'z'}"], cwd=tmp_path)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("cubemosaic: error: "), proc.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == [], "no folder left behind"


def test_a_refused_run_keeps_the_users_folder(tmp_path):
    mine = tmp_path / "mine"
    mine.mkdir()
    proc = cli([*SMALL, "start_date=2022-02-31", f"output_dir={mine / 'sub'}"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert mine.is_dir() and not (mine / "sub").exists()
    proc = cli([*SMALL, "start_date=2022-02-31", f"output_dir={mine}"], cwd=tmp_path)
    assert proc.returncode == 2 and mine.is_dir(), "an empty folder the user had is kept"


@pytest.mark.parametrize(
    "bad",
    [
        ["start_date=2022-02-31"],  # refused by cubemosaic's validation
        ["resolution=abc"],  # refused by Hydra/OmegaConf's composition
        ["catalog=nowhere"],
    ],
)
def test_debug_keeps_the_exit_code_of_a_configuration_error(bad, tmp_path):
    plain = cli([*SMALL, *bad, f"output_dir={tmp_path / 'o'}"], cwd=tmp_path)
    debug = cli([*SMALL, *bad, f"output_dir={tmp_path / 'o'}", "debug=true"], cwd=tmp_path)
    assert plain.returncode == 2 and "Traceback" not in plain.stderr, plain.stderr
    assert debug.returncode == 2, debug.stderr
    assert "Traceback" in debug.stderr, "debug shows the traceback"
    assert debug.stderr.strip().splitlines()[-1] == plain.stderr.strip().splitlines()[-1]


def test_a_run_with_two_bands_lists_what_its_quicklooks_show(tmp_path):
    out = tmp_path / "out"
    proc = cli([*SMALL, "bands=nir,red", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no red/green/blue" not in proc.stderr and "showing nir as red, red as green and blue" in proc.stderr
    for path in sorted(out.glob("monthly-mosaic-*/monthly-mosaic-*.json")):
        item = json.loads(path.read_text())
        assert item["properties"]["cubemosaic:quicklook_bands"] == ["nir", "red"]
        assert "nir as red, red as green and blue" in item["assets"]["thumbnail"]["title"]


def test_a_sweep_uses_an_output_dir_that_differs_per_job_as_given(tmp_path):
    proc = cli(["--multirun", *SMALL[:1], "resolution=60,120", "output_dir=sweep/r${resolution}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    for res in (60, 120):
        assert f"done: outputs in {tmp_path / 'sweep' / f'r{res}'}\n" in proc.stderr, proc.stderr
        assert (tmp_path / "sweep" / f"r{res}" / "catalog.json").is_file()
    assert sorted(p.name for p in (tmp_path / "sweep").iterdir()) == ["r120", "r60"], "no other level, no litter"


def test_a_sweeps_job_folders_are_named_by_the_swept_keys_safely(demo, tmp_path):
    items = str(demo.items_path)
    other = f"{demo.items_path.parent}/./{demo.items_path.name}"  # the same file, spelt otherwise
    proc = cli(["-m", *SMALL, f"catalog.url={items},{other}", "max_items=100", "output_dir=sweep"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    jobs = sorted((tmp_path / "sweep").iterdir())
    folders = [p for p in jobs if p.is_dir()]
    assert len(folders) == 2, jobs
    for folder in folders:
        assert folder.name.startswith("catalog.url=") and "/" not in folder.name.partition("=")[2]
        assert "resolution" not in folder.name and "max_items" not in folder.name, "only the swept keys"
        assert (folder / "catalog.json").is_file(), "no nested folders"


BAD_DATES = ["start_date=2022-05-01", "end_date=2022-01-01"]


def _tree(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*"))


@pytest.mark.parametrize(
    "args",
    [
        ["resolution=60,120", "output_dir=sw", *BAD_DATES],  # refused: exit 2
        ["resolution=60,120", "output_dir=sw", "stage=plan"],  # planned: writes nothing
        ["resolution=60,120", "output_dir=sweep/r${resolution}", "stage=plan"],  # per-job folders
    ],
    ids=["refused", "planned", "planned-per-job-output-dir"],
)
def test_a_refused_or_planned_sweep_leaves_no_folder(args, tmp_path):
    proc = cli(["-m", "catalog=demo", *args], cwd=tmp_path)
    assert proc.returncode == (2 if BAD_DATES[0] in args else 0), proc.stderr
    assert _tree(tmp_path) == [], "no multirun.yaml, no empty job folder"


@pytest.mark.parametrize("args", [BAD_DATES, ["stage=plan"]], ids=["refused", "planned"])
def test_a_sweep_into_a_folder_that_existed_keeps_it_and_its_files(args, tmp_path):
    mine = tmp_path / "mine"
    (mine / "resolution=60").mkdir(parents=True)  # a job's folder the user already had, empty
    (mine / "notes.txt").write_text("mine")
    (mine / "multirun.yaml").write_text("an earlier sweep's record\n")
    before = _tree(mine)
    proc = cli(["-m", "catalog=demo", "resolution=60,120", f"output_dir={mine}", *args], cwd=tmp_path)
    assert proc.returncode == (2 if args == BAD_DATES else 0), proc.stderr
    assert _tree(mine) == before, "nothing added, nothing taken away"
    assert (mine / "notes.txt").read_text() == "mine"
    assert (mine / "multirun.yaml").read_text() == "an earlier sweep's record\n", "Hydra's record is undone"


def test_a_partly_successful_sweep_keeps_its_outputs(tmp_path):
    dates = "start_date=2021-12-01,2022-02-31"  # the second job is refused: exit 2
    proc = cli(["-m", *SMALL, dates, "end_date=2022-01-31", "output_dir=part"], cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert sorted(p.name for p in (tmp_path / "part").iterdir()) == ["multirun.yaml", "start_date=2021-12-01"]
    assert (tmp_path / "part" / "start_date=2021-12-01" / "catalog.json").is_file()


def _readme_commands(flag: str) -> list[list[str]]:
    """The ``python -m cubemosaic <flag> ...`` commands the README shows (in backticks or a code block)."""
    import shlex

    readme = (Path(__file__).parents[2] / "README.md").read_text()
    found = re.findall(r"python -m cubemosaic (" + re.escape(flag) + r"[^`#\n]*)", readme)
    return [shlex.split(command) for command in dict.fromkeys(found)]


def test_the_readmes_configuration_commands_print_it(tmp_path):
    commands = _readme_commands("--cfg")
    assert ["--cfg", "job", "catalog=demo"] in commands, commands
    for args in commands:
        proc = cli(args, cwd=tmp_path)
        assert proc.returncode == 0 and "Traceback" not in proc.stderr, (args, proc.stderr)
        assert "catalog:" in proc.stdout and "start_date: '2021-12-01'" in proc.stdout, (args, proc.stdout)
        assert not list(tmp_path.iterdir()), "printing the configuration writes nothing"
