"""Shared fixtures: the demo archive, CLI runs in subprocesses, and the loopback servers of tests/servers.py;
the fast/slow split by folder (tests/unit, tests/integration)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

if TYPE_CHECKING:
    import numpy as np

    from cubemosaic.demo import DemoArchive

# The package, numpy and tests/servers.py are imported where used: pytest-xdist's controller,
# which runs no test, loads this file too and need not wait for them (a second or two each).

BANDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}

UNIT = Path(__file__).parent / "unit"


def pytest_collection_modifyitems(items):
    """Mark ``slow`` every test outside tests/unit/: those of tests/integration/ (the CLI in a
    subprocess, cwltool, a gateway, an S3 or STAC server) and any module not yet filed in either.
    The fast layer, tests/unit/ (the modules' own functions, in this process), runs alone with
    ``python -m pytest -m "not slow"`` or ``python -m pytest tests/unit``."""
    for item in items:
        if UNIT not in item.path.parents:
            item.add_marker(pytest.mark.slow)


def cli(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m cubemosaic`` as a user would, from a folder outside the repo."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cubemosaic", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


def shared_dir(tmp_path_factory, name: str) -> Path:
    """A folder of the session shared by every test process: with ``-n`` (pytest-xdist) each worker
    has its own base folder below the session's, so the session's is their parent."""
    base = tmp_path_factory.getbasetemp()
    if os.environ.get("PYTEST_XDIST_WORKER"):
        base = base.parent
    path = base / name
    path.mkdir(parents=True, exist_ok=True)
    return path


@contextmanager
def one_at_a_time(folder: Path) -> Iterator[None]:
    """Held by one test process at a time (an flock beside ``folder``): the first makes what the
    others, waiting, then find made."""
    with open(f"{folder}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A cache folder for demo archives, shared by every test, subprocess and test process of the session."""
    path = shared_dir(tmp_path_factory, "demo-cache")
    os.environ["CUBEMOSAIC_DEMO_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo(demo_dir) -> DemoArchive:
    from cubemosaic.demo import ensure_demo

    with one_at_a_time(demo_dir):
        return ensure_demo(cache_dir=demo_dir)


@pytest.fixture(scope="session")
def truth(demo):
    return demo.truth()


@pytest.fixture(scope="session")
def region(tmp_path_factory):
    """The region archive (two UTM zones, two orbits; cubemosaic.regiondemo's test defaults), made once."""
    from cubemosaic.regiondemo import RegionSpec, ensure_region

    cache = shared_dir(tmp_path_factory, "region-cache")
    with one_at_a_time(cache):
        return ensure_region(RegionSpec(), cache_dir=cache)


@pytest.fixture(scope="session", autouse=True)
def archives_side_by_side(request) -> None:
    """With two test processes or more (pytest-xdist), the second (gw1) makes the region archive
    first thing, while the first makes the demo's, which both want from their first tests on: else
    the second would wait, idle, for the demo, and one of them make the region after (seconds each,
    the fast layer's longest setups). Only when the session's tests want both."""
    if os.environ.get("PYTEST_XDIST_WORKER") != "gw1":
        return
    wanted = set().union(*(item.fixturenames for item in request.session.items))
    if {"demo", "region"} <= wanted:
        request.getfixturevalue("region")


def _session_run(tmp_path_factory, name: str, *args: str) -> Path:
    """``python -m cubemosaic catalog=demo ARGS`` into ``<session>/NAME/out``, run once for the
    session by the first test process that asks (its stderr beside it, ``stderr.txt``)."""
    folder = shared_dir(tmp_path_factory, name)
    out = folder / "out"
    with one_at_a_time(folder):
        if not (folder / "done").exists():
            shutil.rmtree(out, ignore_errors=True)  # a failed attempt of another test process
            proc = cli(["catalog=demo", *args, f"output_dir={out}"], cwd=folder)
            assert proc.returncode == 0, proc.stderr[-3000:]
            (folder / "stderr.txt").write_text(proc.stderr)
            (folder / "done").touch()
    return out


@pytest.fixture(scope="session")
def demo_run(demo, tmp_path_factory) -> Path:
    """One whole main job on the demo, through the CLI: ``python -m cubemosaic catalog=demo``; run
    once for the session (by the first test process that needs it). Tests read it, never change it."""
    return _session_run(tmp_path_factory, "demo-run")


@pytest.fixture(scope="session")
def demo_tiled_run(demo, tmp_path_factory) -> Path:
    """The main job on the demo cut into tiles of 128 px (6 tiles), through the CLI:
    ``python -m cubemosaic catalog=demo tile_size=128``; run once for the session, as
    :func:`demo_run`. Tests read it (its log beside it, ``stderr.txt``), never change it."""
    return _session_run(tmp_path_factory, "demo-tiled-run", "tile_size=128")


@pytest.fixture(scope="session")
def stac_api(demo) -> str:
    """The demo archive's items behind a real STAC API on loopback."""
    from servers import serve_stac

    with serve_stac(demo.items_path) as url:
        yield url


def assert_same_cogs(expected: Path, got: Path) -> None:
    """The monthly COGs under ``got`` are those under ``expected`` (the demo's 4 months: 8 files):
    same band names, same pixels."""
    import numpy as np
    import rasterio

    tifs = sorted(expected.glob("monthly-mosaic-*/*.tif"))
    assert len(tifs) == 8
    for tif in tifs:
        with rasterio.open(tif) as a, rasterio.open(got / tif.relative_to(expected)) as b:
            assert a.descriptions == b.descriptions
            np.testing.assert_array_equal(a.read(), b.read())


def assert_monthly_matches_truth(
    monthly, truth, *, count: bool = True, nearest: bool = False, min_clear: float = 0.5
) -> None:
    """Every band of ``monthly`` (raw DN, ``cubemosaic.store.open_dn``) within 1 DN of the truth where the
    truth has a clear answer, nodata (0) where it has none, and (``count``) the same clear counts.
    ``nearest``: the truth pixel nearest each output pixel's centre (another resolution than 20 m);
    ``min_clear``: the share of pixels with a clear answer below which the comparison would prove little."""
    import numpy as np

    t = truth.sel(x=monthly.x.values, y=monthly.y.values, method="nearest" if nearest else None)
    for name, key in BANDS.items():
        got, expected = monthly[name].values.astype(np.float64), t[key].values
        clear = ~np.isnan(expected)
        assert clear.mean() > min_clear, name
        assert (got[~clear] == 0).all(), f"{name}: pixels without a clear observation must be nodata"
        assert (got[clear] >= 1).all(), f"{name}: clear pixels must never read as nodata 0"
        assert np.abs(got[clear] - expected[clear]).max() <= 1, name
    if count:
        np.testing.assert_array_equal(monthly["count"].values, t["count"].values)


def truncated_asset_items(demo, tmp_path: Path, index: int = 3, key: str = "B08") -> tuple[Path, dict]:
    """The demo's items with one asset replaced by a truncated copy: (items.json, the item)."""
    doc = json.loads(demo.items_path.read_text())
    item = doc["features"][index]
    src = item["assets"][key]["href"].removeprefix("file://")
    broken = tmp_path / f"{key}-truncated.tif"
    broken.write_bytes(Path(src).read_bytes()[:3000])
    item["assets"][key]["href"] = broken.as_uri()
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    return items, item


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """A real Dask Gateway (dask-gateway-server, UnsafeLocalBackend) on 127.0.0.1 whose workers share our disk."""
    from servers import loopback_gateway

    with loopback_gateway(tmp_path_factory.mktemp("gateway")) as loopback:
        yield loopback


@pytest.fixture(scope="session")
def hidden_dir(tmp_path_factory) -> Path:
    """A folder the ``private_gateway``'s workers cannot see (each has an empty tmpfs over it)."""
    return tmp_path_factory.mktemp("hidden-from-workers")


@pytest.fixture(scope="session")
def private_gateway(tmp_path_factory, hidden_dir):
    """A real Dask Gateway whose workers, like Gateway pods on Kubernetes, do not see the job's
    disk: outputs put under ``hidden_dir`` are invisible to them (the demo assets stay readable).
    Mounting a tmpfs in a mount namespace needs root (as CI and the development machines run)."""
    if os.geteuid() != 0:
        pytest.skip("a gateway whose workers see no job folder needs root (unshare -m, mount -t tmpfs)")
    from servers import loopback_gateway

    with loopback_gateway(tmp_path_factory.mktemp("private-gateway"), hidden=hidden_dir) as loopback:
        yield loopback


@pytest.fixture(scope="session")
def s3():
    """moto's S3 server on 127.0.0.1 with a bucket, and the environment that reaches it."""
    from servers import moto_s3

    with moto_s3("cubes") as env:
        yield env


def one_line_error(proc, *needles: str) -> str:
    """The run failed with one ``cubemosaic: error:`` line, its last, holding every needle; no traceback."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cubemosaic: error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0], "the error is the last line"
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def small_mosaic(tmp_path: Path, names: tuple[str, ...], seed: int = 1):
    """A mosaic COG with bands ``names`` (distinct data each, no data in the first 10 rows) and its count."""
    import numpy as np
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    data = rng.integers(1, 3000, (len(names), 64, 80), dtype="uint16")
    data[:, :10] = 0
    profile = dict(
        driver="GTiff",
        width=80,
        height=64,
        count=len(names),
        dtype="uint16",
        nodata=0,
        crs="EPSG:32633",
        transform=Affine(10, 0, 0, 0, -10, 0),
    )
    with rasterio.open(tmp_path / "m.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
    profile.update(count=1, nodata=None)
    with rasterio.open(tmp_path / "c.tif", "w", **profile) as dst:
        dst.write((data[:1] > 0).astype("uint16"))
    return tmp_path / "m.tif", tmp_path / "c.tif", data


def dn_block(t: int, seed: int = 0, shape=(40, 30)) -> np.ndarray:
    """A random (t, y, x) uint16 block of DN, about 30% nodata (0), none at all in its top-left 2 x 2 pixels."""
    import numpy as np

    rng = np.random.default_rng(seed)
    block = rng.integers(1, 9000, (t, *shape)).astype(np.uint16)
    block[rng.random(block.shape) < 0.3] = 0
    block[:, :2, :2] = 0  # pixels without any observation
    return block


def search_request(**kw):
    """The demo's search (its area and months), with ``kw`` changed."""
    import datetime as dt

    from cubemosaic.catalog import SearchRequest

    base = dict(
        collection="sentinel-2-l2a",
        bbox=(-122.325, 47.535, -122.265, 47.575),
        start_date=dt.date(2021, 12, 1),
        end_date=dt.date(2022, 3, 31),
    )
    return SearchRequest(**(base | kw))


@functools.cache
def _composed_choices(choices: tuple[str, ...]):
    """``cubemosaic.__main__.compose(choices)``: Hydra's composition of the config-group choices
    alone (``catalog=demo``, ``cluster=gateway``), made once per test process."""
    from cubemosaic.__main__ import compose

    return compose(list(choices))


def composed(overrides: list[str]):
    """What ``cubemosaic.__main__.compose(overrides)`` returns (or raises), without running Hydra's
    compose again for every test: Hydra composes the config groups chosen, then applies every
    ``key=value`` override to that, in order (``ConfigLoaderImpl._apply_overrides_to_config``). Here
    the first half is made once per set of group choices (:func:`_composed_choices`) and the
    second is Hydra's own function on a copy, followed by what ``compose`` does after Hydra (resolve,
    refuse unknown keys, a bad override as one ConfigError line). Any other override (``+key``,
    ``~key``, a sweep, a package, ``hydra.*``, a dict) goes to ``compose`` itself.
    ``test_the_tests_compose_as_the_command_line_does`` (tests/unit/test_config.py) holds the two equal."""
    import copy

    from hydra._internal.config_loader_impl import ConfigLoaderImpl
    from hydra.core.override_parser.overrides_parser import OverridesParser
    from omegaconf import OmegaConf

    from cubemosaic.__main__ import _explain, _listify, _refuse_unknown_keys, compose
    from cubemosaic.config import conf_dir
    from cubemosaic.errors import ConfigError

    groups = {p.name for p in conf_dir().iterdir() if p.is_dir()}
    try:
        parsed = OverridesParser.create().parse_overrides([_listify(o) for o in overrides])
    except Exception:  # compose names it
        return compose(overrides)
    plain = [o.is_sweep_override() or o.is_add() or o.is_force_add() or o.is_delete() for o in parsed]
    plain = not any(plain) and not any(
        o.package is not None or o.is_hydra_override() or isinstance(o.value(), dict) for o in parsed
    )
    if not plain:
        return compose(overrides)
    choices = tuple(o.input_line for o in parsed if o.key_or_group in groups)
    cfg = copy.deepcopy(_composed_choices(choices))
    try:
        ConfigLoaderImpl._apply_overrides_to_config([o for o in parsed if o.key_or_group not in groups], cfg)
    except Exception as e:  # as compose explains Hydra's and OmegaConf's errors
        raise ConfigError(*_explain(e)) from None
    OmegaConf.resolve(cfg)
    _refuse_unknown_keys(cfg)
    return cfg


def demo_settings(tmp_path: Path, *overrides: str):
    """The settings ``python -m cubemosaic catalog=demo output_dir=<tmp_path>/out <overrides>`` runs with
    (in this process; composed by :func:`composed`)."""
    from cubemosaic.config import to_settings

    return to_settings(composed(["catalog=demo", f"output_dir={tmp_path / 'out'}", *overrides]))
