"""What a newcomer hit (issue 23): the closing summary, refused runs, exit codes, quick-looks,
sweeps and the README's commands."""

from __future__ import annotations

import json
import re

import pytest

from conftest import cli

SMALL = ["catalog=demo", "resolution=120"]  # the demo at 120 m: a whole job in about a second


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
    assert any(re.fullmatch(rf"summary: {len(items)} month\(s\) written in \d+\.\d s", line) for line in lines), lines
    assert f"summary: overview picture {out / 'overview.png'}" in lines and (out / "overview.png").is_file()
    assert f"summary: catalog {out / 'catalog.json'}" in lines
    assert "summary:" in proc.stderr.strip().splitlines()[-1], "the summary closes the run"


def test_clear_percent_never_rounds_up_to_100():
    from cubemosaic.pipeline import clear_percent

    assert clear_percent(0.9958) == "99.5%"
    assert clear_percent(0.99999) == "99.9%"
    assert clear_percent(1.0) == "100%"
    assert clear_percent(0.0) == "0.0%"


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
