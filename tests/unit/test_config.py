"""cubemosaic.config: the settings a composed Hydra config becomes, and what they refuse before any search."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from cubemosaic.s2 import CloudMask

from conftest import demo_settings


def test_a_dilation_under_one_scl_pixel_is_refused_and_coarse_pixels_grow_by_one(tmp_path):
    from cubemosaic.errors import ConfigError

    with pytest.raises(ConfigError, match="less than one SCL pixel"):
        demo_settings(tmp_path, "mask_dilation=10")
    scl = np.full((5, 5), 4, dtype=np.uint16)
    scl[2, 2] = 9
    grown = CloudMask(dilation_m=50).masked(scl, 60.0)  # the warped read at 60 m: the neighbours
    assert grown[1:4, 2].all() and grown[2, 1:4].all() and not grown[1, 1]


#: What the command line refuses before any search, by the key its one error line starts with
#: (``<key>: ...``): the overrides given for that key, and what the line then says of each.
REFUSED = {
    "start_date": [("start_date=2021-13-01", "is not a date as YYYY-MM-DD")],
    "end_date": [("end_date=20210101x", "is not a date as YYYY-MM-DD"), ("end_date=2021-01-01", "before start_date")],
    "aoi": [("aoi=[1,2,3]", "4 numbers"), ("aoi=[200,0,201,1]", "longitudes"), ("aoi=[0,10,1,5]", "min must be below")],
    "bands": [("bands=[]", "at least one band"), ("bands=[red,red]", "twice")],
    "resolution": [("resolution=-5", "positive"), ("resolution=abc", "'abc'")],
    "max_cloud_cover": [("max_cloud_cover=150", "0-100")],
    "max_items": [("max_items=0", "at least 1")],
    "resolutoin": [("resolutoin=20", "unknown key"), ("+resolutoin=60", "unknown key")],
    "cluster.workers": [("+cluster.workers=3", "unknown key")],
    "catalog": [("catalog=nope", "no option 'nope'")],
    "stage": [("stage=foo", "'foo'")],
    "crs": [
        ("crs=EPSG:999999", "is not a CRS"),
        ("crs=EPSG:4326", "is not projected (degrees)"),
        ("crs=EPSG:4978", "(geocentric)"),
        ("crs=EPSG:2227", "measures in US survey foot"),  # California zone 3: 20 would be 20 ft pixels
        ("crs='+proj=utm +zone=10 +units=km'", "measures in kilometre"),
    ],
    "mask_classes": [("mask_classes=[3,12]", "0-11")],
}


@pytest.mark.parametrize(
    ("override", "key", "problem"),
    [(override, key, problem) for key, cases in REFUSED.items() for override, problem in cases],
    ids=[override for cases in REFUSED.values() for override, _ in cases],
)
def test_bad_input_is_refused_before_any_network_call(override, key, problem, tmp_path):
    """In this process, as the command line validates: compose, refuse unknown keys, check values.
    A listening socket stands for the catalog: validation must not connect to it."""
    from cubemosaic.__main__ import _refuse_unknown_keys, compose
    from cubemosaic.config import to_settings
    from cubemosaic.errors import ConfigError

    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen()
        server.setblocking(False)
        url = f"http://127.0.0.1:{server.getsockname()[1]}/stac"
        with pytest.raises(ConfigError) as e:
            cfg = compose(["catalog=demo", f"catalog.url={url}", override, f"output_dir={tmp_path / 'out'}"])
            _refuse_unknown_keys(cfg)
            to_settings(cfg)
        line = str(e.value)
        assert "\n" not in line and e.value.exit_code == 2
        assert line.startswith(f"{key}: ") and problem in line.removeprefix(f"{key}: "), line
        with pytest.raises(BlockingIOError):
            server.accept()


@pytest.mark.parametrize(("override", "bands"), [("bands=red", ("red",)), ("bands=red,nir", ("red", "nir"))])
def test_a_bare_band_list_means_a_list(override, bands, tmp_path):
    from cubemosaic.__main__ import compose
    from cubemosaic.config import to_settings

    settings = to_settings(compose(["catalog=demo", override, f"output_dir={tmp_path}", "debug=True"]))
    assert settings.bands == bands and settings.debug is True


@pytest.mark.parametrize(
    "overrides",
    [
        ["output_dir={tmp}/my out", "resolution=60", "bands=red,nir", "debug=True"],
        ["cluster=gateway", "cluster.worker_memory=4G", "zarr_dir=s3://bucket/x", "stage=export"],
        ["cluster.memory_limit=1.5 GiB", "max_items=null", "aoi=[-122.3,47.55,-122.29,47.5501]"],
        ["resolution=abc"],
        ["resolutoin=20"],
        ["catalog=nope"],
        ["+cluster.workers=3"],
    ],
)
def test_the_tests_compose_as_the_command_line_does(tmp_path, overrides):
    """The settings tests compose with conftest's ``composed`` (Hydra's composition of the config
    groups made once, every key=value applied to a copy): the config ``compose`` gives, or its error."""
    from omegaconf import OmegaConf

    from cubemosaic.__main__ import compose
    from cubemosaic.errors import ConfigError

    from conftest import composed

    args = ["catalog=demo", f"output_dir={tmp_path / 'out'}", *(o.format(tmp=tmp_path) for o in overrides)]
    results = []
    for how in (compose, composed):
        try:
            results.append(OmegaConf.to_container(how(args)))
        except ConfigError as e:
            results.append((str(e), e.exit_code))
    assert results[0] == results[1]
    if isinstance(results[0], dict):
        assert composed(args) is not composed(args), "a copy each time: a test may change its own"


# --------------------------------------------------------------------------- zarr_dir URLs
def test_zarr_dir_as_a_file_url_is_the_folder(tmp_path):
    stores = tmp_path / "my stores"
    assert demo_settings(tmp_path, f"zarr_dir={stores.as_uri()}").zarr_dir == str(stores)
    assert stores.is_dir()
    cube = tmp_path / "c.zarr"
    cube.mkdir()
    (cube / "zarr.json").write_text("{}")
    assert demo_settings(tmp_path, f"cube_url={cube.as_uri()}", "stage=mosaic").cube_url == str(cube)


@pytest.mark.parametrize(
    ("zarr_dir", "needles"),
    [
        ("memory://stores", ["zarr_dir: memory:// keeps the stores in this process only"]),
        ("{file}", ["zarr_dir: ", "exists and is not a folder"]),
        ("{file}/below", ["zarr_dir: ", "not writable"]),
    ],
)
def test_zarr_dir_that_cannot_hold_stores_is_refused_as_zarr_dir(tmp_path, zarr_dir, needles):
    from cubemosaic.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    with pytest.raises(ConfigError) as e:
        demo_settings(tmp_path, f"zarr_dir={zarr_dir.format(file=blocker)}")
    for needle in needles:
        assert needle in str(e.value)
    assert "output_dir" not in str(e.value) and e.value.exit_code == 2
    assert blocker.read_text() == "mine"


# --------------------------------------------------------------------------- cluster settings
@pytest.mark.parametrize(
    ("overrides", "env", "needle"),
    [
        (["cluster.processes=true", "cluster.memory_limit=lots"], {}, "cluster.memory_limit: 'lots' is not an amount"),
        (["cluster.memory_limit=-1"], {}, "cluster.memory_limit: '-1' is not an amount"),
        (["cluster=gateway", "cluster.worker_memory=lots"], {}, "cluster.worker_memory: 'lots' is not"),
        (["cluster.max_memory=0"], {}, "cluster.max_memory: '0G' is not"),
        ([], {"DASK_GATEWAY_WORKER_MEMORY": "plenty"}, "DASK_GATEWAY_WORKER_MEMORY: 'plenty' is not"),
    ],
)
def test_memory_sizes_are_validated_with_the_rest(tmp_path, monkeypatch, overrides, env, needle):
    from cubemosaic.errors import ConfigError

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as e:
        demo_settings(tmp_path, *overrides)
    assert str(e.value).startswith(needle) and e.value.exit_code == 2


@pytest.mark.parametrize("value", ["auto", "4GB", "0.5", "2e9", "0", "1.5 GiB"])
def test_memory_limits_that_are_sizes_pass(tmp_path, value):
    limit = demo_settings(tmp_path, "cluster.processes=true", f"cluster.memory_limit={value}").cluster.memory_limit
    assert (
        float(limit) == float(value) if value[0].isdigit() and " " not in value and "B" not in value else limit == value
    )


# --------------------------------------------------------------------------- degenerate grids
def test_a_grid_under_two_pixels_is_refused_by_its_shape():
    """After the search the grid itself is checked (its pixels, not the area's metres)."""
    from cubemosaic.config import check_grid_size
    from cubemosaic.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        check_grid_size((4500.0, 4400.0), 20.0, shape=(1, 225))
    assert str(e.value).startswith("aoi: the area is 4500 m x 4400 m (a grid of 225 x 1 pixels), under 2 pixels")
    check_grid_size((4500.0, 4400.0), 20.0, shape=(2, 2))


@pytest.mark.parametrize(
    "aoi", ["[-122.3,47.55,-122.2999,47.5501]", "[-122.3,47.55,-122.2999,47.5503]", "[-122.3,47.55,-122.29,47.5501]"]
)
def test_an_area_under_a_pixel_is_refused_before_the_search(tmp_path, aoi):
    from cubemosaic.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        demo_settings(tmp_path, f"aoi={aoi}", "resolution=20")
    assert str(e.value).startswith("aoi: the area is ") and "under 2 pixels on a side at resolution=20;" in str(e.value)
    assert (
        demo_settings(tmp_path, f"aoi={aoi}", "resolution=5").resolution == 5
    )  # four times finer: two pixels at least


def test_the_configuration_takes_a_file_url_as_the_folder_it_names(tmp_path):
    from cubemosaic.config import _check_output_dir, _zarr_dir
    from cubemosaic.errors import ConfigError

    assert _check_output_dir(f"file://{tmp_path}/out") == tmp_path / "out"
    assert _zarr_dir(f"file://{tmp_path}/zarr", tmp_path) == str(tmp_path / "zarr")
    with pytest.raises(ConfigError, match="output_dir: s3://bucket/out must be a local folder"):
        _check_output_dir("s3://bucket/out")
