"""cubemosaic.__main__ (the command line): its argument and error helpers, called in this process
(the command line as a user runs it is tests/integration's: test_hydra, test_newcomer, test_errors)."""

from __future__ import annotations

import gc
import signal
import subprocess
import sys
import warnings

import pytest
from omegaconf import OmegaConf

import cubemosaic
from cubemosaic import __main__ as cli


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        ("bands=red", "bands=[red]"),
        ("bands=red,nir", "bands=[red,nir]"),
        ("+mask_classes=3,8", "+mask_classes=[3,8]"),
        ("bands=[red]", "bands=[red]"),
        ("output_dir=~/x", "output_dir='~/x'"),
        ("output_dir=my out (1)", "output_dir='my out (1)'"),
        ("aoi=POLYGON ((1 2, 3 4, 1 2))", "aoi='POLYGON ((1 2, 3 4, 1 2))'"),
        ("output_dir=it's here~", 'output_dir="it\'s here~"'),
        ("output_dir=plain", "output_dir=plain"),
        ("output_dir='~/quoted'", "output_dir='~/quoted'"),
        ("resolution=60,120", "resolution=60,120"),
        ("--multirun", "--multirun"),
    ],
)
def test_an_override_is_read_as_the_user_meant_it(given, meant):
    assert cli._listify(given) == meant


def test_the_swept_keys_are_those_with_several_values():
    args = [
        "-m",
        "catalog=demo",
        "resolution=60,120",
        "catalog.url=a,b",
        "bands=[red,nir]",
        "output_dir=x",
        "stage=plan",
    ]
    assert cli._swept_keys(args) == ["resolution", "catalog.url"]
    assert cli._swept_keys(["resolution=range(10,30,10)", "x=[[bad"]) == ["resolution"], (
        "a grammar error is Hydra's to say"
    )


@pytest.mark.parametrize(
    ("args", "env", "asked"),
    [
        (["debug=true"], "", True),
        (["+debug=YES"], "", True),
        (["debug=1"], "", True),
        (["debug=false"], "", False),
        (["resolution=20"], "1", True),
        (["resolution=20"], "0", False),
    ],
)
def test_debug_is_asked_on_the_command_line_or_the_environment(args, env, asked, monkeypatch):
    monkeypatch.setenv("CUBEMOSAIC_DEBUG", env)
    assert cli._debug_asked(args) is asked


def test_a_missing_option_of_a_group_lists_the_options_hydra_found():
    e = Exception(
        "In 'config': Could not find 'catalog/nope'\n\nAvailable options in 'catalog':\n\tdemo\n\tmine\n\tcdse\nConfig search path: ..."
    )
    assert cli._explain(e) == ("catalog", "no option 'nope'; choose one of cdse, demo, mine")


def test_an_omegaconf_error_is_named_by_its_key():
    cfg = OmegaConf.create({"resolution": 20})
    OmegaConf.set_struct(cfg, True)
    with pytest.raises(Exception) as unknown:
        cfg.resolutoin  # noqa: B018
    assert cli._explain(unknown.value) == ("resolutoin", "unknown key (python -m cubemosaic --help lists the keys)")
    assert cli._hydra_error(unknown.value) and not cli._hydra_error(ValueError("x"))
    assert cli._explain(ValueError("bad\nmore")) == ("override", "bad")


def test_version_prints_both_versions_and_exits_0(capsys):
    import hydra

    assert cli.main(["--version"]) == 0
    assert capsys.readouterr().out == f"cubemosaic {cubemosaic.__version__} (Hydra {hydra.__version__})\n"


def test_the_command_lines_start_up_loads_no_stage_library():
    """``--help`` and a configuration error answer without Dask, xarray, zarr or GDAL: the
    command line imports the pipeline, which imports each stage's module only to run it."""
    code = (
        "import sys, cubemosaic.__main__; "
        "print(sorted({'dask', 'xarray', 'zarr', 'rasterio', 'odc.stac'} & set(sys.modules)))"
    )
    loaded = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert loaded.strip() == "[]"


def test_after_ctrl_c_a_coroutine_the_interrupt_abandoned_prints_nothing():
    """CI saw it: Ctrl-C landed between zarr making a coroutine and scheduling it, and Python's
    "coroutine 'open_group' was never awaited" followed the one line. Other warnings still show."""

    async def open_group():
        return None

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        with pytest.raises(KeyboardInterrupt):
            cli._interrupt(signal.SIGINT, None)
        abandoned = open_group()
        del abandoned
        gc.collect()
        warnings.warn("a RuntimeWarning of another kind", RuntimeWarning, stacklevel=1)
    assert [str(w.message) for w in seen] == ["a RuntimeWarning of another kind"]


@pytest.mark.parametrize("args", [["--help"], ["--cfg", "job", "catalog=demo"], ["--version"]])
def test_output_piped_to_a_reader_that_stops_early_ends_quietly(args):
    """``--help | head -20``: once, a newcomer's run said "output_dir: None is not writable (Broken
    pipe)" with exit 2. The reader closes the pipe before anything is written: no error line, the
    exit status of a tool that SIGPIPE ends (141), as ``yes | head`` gives."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "cubemosaic", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()
    err = proc.stderr.read()
    assert proc.wait(60) == 141, err
    assert err == ""


@pytest.mark.parametrize(
    ("given", "meant"),
    [
        (["catalog=demo", "--multirun", "resolution=60,120"], ["--multirun", "catalog=demo", "resolution=60,120"]),
        (["catalog=demo", "--cfg", "job", "bands=[red]"], ["--cfg", "job", "catalog=demo", "bands=[red]"]),
        (["a=1", "-c", "job", "b=2"], ["-c", "job", "a=1", "b=2"]),
        (["a=1", "--info", "b=2"], ["a=1", "b=2", "--info"]),  # flags first, it would take a=1
        (["--info", "catalog=demo"], ["catalog=demo", "--info"]),
        (["a=1", "-i", "defaults", "b=2"], ["-i", "defaults", "a=1", "b=2"]),
        (["-m", "a=1,2", "--cfg=job", "~b"], ["-m", "--cfg=job", "a=1,2", "~b"]),
        (["a=1", "--config-d", "/tmp/c", "b=2"], ["--config-dir", "/tmp/c", "a=1", "b=2"]),
        (["a=1", "-sc", "install=bash", "-m", "b=2"], ["-sc", "-m", "a=1", "install=bash", "b=2"]),
    ],
)
def test_hydras_flags_are_read_wherever_they_were_typed(given, meant):
    """What Hydra's own parser reads from the arguments as reordered is what it reads from them
    typed flags first (a review found a bare --info taking the first override as its value)."""
    from hydra._internal.utils import get_args_parser

    parser = get_args_parser()
    assert parser.parse_args(cli._flags_first(given)) == parser.parse_args(meant)


def test_a_flag_after_an_override_is_read_as_hydra_reads_it_before(tmp_path):
    """``catalog=demo --multirun resolution=60,120``: Hydra's parser printed its usage and
    "unrecognized arguments" (a probe's run); the same command with the flag first ran."""
    proc = subprocess.run(
        [sys.executable, "-m", "cubemosaic", "catalog=demo", "--cfg", "job", "resolution=60"],
        capture_output=True, text=True, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert "resolution: 60" in proc.stdout
