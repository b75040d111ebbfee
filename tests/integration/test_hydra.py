"""The CLI is a Hydra application: Hydra's own flags, sweeps, a user's config folder, run directory."""

from __future__ import annotations

import json
import os

import pytest
import xarray as xr

from conftest import cli

SMALL = ["catalog=demo", "resolution=120"]  # the demo at 120 m: a whole job in about a second


def _ok(proc):
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    return proc


def test_multirun_sweeps_each_job_into_its_own_folder(tmp_path):
    proc = _ok(cli(["--multirun", "catalog=demo", "resolution=60,120", "output_dir=sweep"], cwd=tmp_path))
    for res in (60, 120):
        folder = tmp_path / "sweep" / f"resolution={res}"  # named by the swept keys only
        assert f"done: outputs in {folder}" in proc.stderr
        monthly = xr.open_zarr(folder / "monthly.zarr")
        assert float(abs(monthly.x[1] - monthly.x[0])) == res
        assert json.loads((folder / "catalog.json").read_text())["id"] == "cubemosaic"
    _ok(cli(["-m", *SMALL, "output_dir=short"], cwd=tmp_path))  # -m as --multirun
    assert (tmp_path / "short" / "catalog.json").is_file(), "nothing swept: output_dir itself"
    assert not (tmp_path / "outputs").exists() and not (tmp_path / "multirun").exists(), "no Hydra litter"


def test_a_users_config_folder_and_groups(tmp_path):
    """--config-dir/-cd adds the user's folder: their catalog/mine.yaml is catalog=mine, and
    --config-name/-cn picks their primary config, which extends ours."""
    conf = tmp_path / "myconf"
    (conf / "catalog").mkdir(parents=True)
    (conf / "catalog" / "mine.yaml").write_text(
        "# @package _global_\n"
        "catalog: {name: demo, url: null, collection: sentinel-2-l2a, sign: none}\n"
        "start_date: '2021-12-01'\nend_date: '2022-01-31'\naoi: [-122.325, 47.535, -122.265, 47.575]\n"
    )
    (conf / "myjob.yaml").write_text(
        "defaults:\n  - config\n  - override catalog: mine\n  - _self_\nresolution: 120\noutput_dir: myjob-out\n"
    )
    _ok(cli(["--config-dir", str(conf), "catalog=mine", "resolution=120", "output_dir=a"], cwd=tmp_path))
    assert sorted(p.name for p in (tmp_path / "a").glob("monthly-mosaic-*")) == [
        "monthly-mosaic-2021-12",
        "monthly-mosaic-2022-01",
    ]
    _ok(cli(["-cd", str(conf), "-cn", "myjob"], cwd=tmp_path))
    assert (tmp_path / "myjob-out" / "catalog.json").is_file()
    bad = cli(["--config-dir", str(conf), "catalog=theirs"], cwd=tmp_path)
    assert bad.returncode == 2 and bad.stderr.strip().splitlines()[-1].startswith(
        "cubemosaic: error: catalog: no option 'theirs'; choose one of cdse, demo, demo_region, earth_search, mine, "
        "planetary_computer"
    ), bad.stderr


@pytest.mark.parametrize(
    ("flags", "needles"),
    [
        (
            ["--help"],
            ["usage: python -m cubemosaic", "start_date=YYYY-MM-DD", "catalog: cdse, demo, demo_region, earth_search"],
        ),
        (["--hydra-help"], ["Hydra (", "--multirun"]),
        (["--cfg", "job", *SMALL], ["resolution: 120", "start_date: '2021-12-01'"]),
        (["--cfg", "hydra", *SMALL], ["run:", "output_subdir: null"]),
        (["--cfg", "all", *SMALL], ["hydra:", "resolution: 120"]),
        (["--info", "searchpath"], ["Config search path", "file://"]),
        (["--info", "defaults"], ["catalog/planetary_computer", "cubemosaic_schema"]),
        (["--shell-completion", "install=bash"], ["hydra_bash_completion", "complete -o nospace"]),
        (["--version"], ["cubemosaic 0.1.0 (Hydra 1."]),
    ],
)
def test_hydra_flags(flags, needles, tmp_path):
    proc = _ok(cli(flags, cwd=tmp_path))
    for needle in needles:
        assert needle in proc.stdout, (needle, proc.stdout[-2000:])
    assert not list(tmp_path.iterdir()), "printing the configuration writes nothing"


@pytest.mark.parametrize("override", ["+resolutoin=60", "++resolutoin=60", "resolutoin=60", "+cluster.wokers=2"])
def test_unknown_keys_are_refused_however_added(override, tmp_path):
    proc = cli([*SMALL, override, f"output_dir={tmp_path / 'o'}"], cwd=tmp_path)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cubemosaic: error:") and "unknown key" in last, last
    assert len(proc.stderr.strip().splitlines()) == 1, proc.stderr


def test_output_paths_as_users_type_them(tmp_path):
    """~ is the home folder; hydra.job.chdir=true moves no output of a relative output_dir or zarr_dir."""
    home = tmp_path / "home"
    home.mkdir()
    proc = _ok(cli([*SMALL, "output_dir=~/mosaics"], cwd=tmp_path, env={"HOME": str(home)}))
    assert f"done: outputs in {home / 'mosaics'}" in proc.stderr
    assert (home / "mosaics" / "catalog.json").is_file() and not (tmp_path / "~").exists()
    _ok(cli([*SMALL, "output_dir=rel/out", "zarr_dir=rel/stores", "hydra.job.chdir=true"], cwd=tmp_path))
    assert (tmp_path / "rel" / "out" / "catalog.json").is_file()
    assert (tmp_path / "rel" / "stores" / "cube.zarr").is_dir(), "zarr_dir read against the starting folder"
    assert not (tmp_path / "rel" / "out" / "rel").exists()
    assert not (tmp_path / "rel" / "out" / ".hydra").exists(), "Hydra writes nothing of its own"
    assert os.listdir(tmp_path) and not (tmp_path / "outputs").exists()
    # Values are Hydra's: ${...} is interpolated (an environment variable, another key), as documented.
    base = tmp_path / "from-env"
    proc = _ok(cli([*SMALL, "output_dir=${oc.env:CM_OUT_BASE}/r${resolution}"], cwd=tmp_path,
                   env={"CM_OUT_BASE": str(base)}))  # fmt: skip
    resolution = next(a for a in SMALL if a.startswith("resolution=")).split("=")[1]
    assert (base / f"r{resolution}" / "catalog.json").is_file(), proc.stderr[-2000:]
