"""cubemosaic.request: which of the user's overrides a stage run alone refuses, against a store's
record (the end to end runs are tests/integration/test_outputs.py's)."""

from __future__ import annotations

import functools
from dataclasses import replace

import pytest

from cubemosaic.__main__ import _given_keys, compose
from cubemosaic.config import to_settings
from cubemosaic.errors import ConfigError
from cubemosaic.request import _cube_differences, _monthly_differences, asked

SIGNATURE = {
    "crs": "EPSG:32610",
    "transform": [20.0, 0.0, 548000.0, 0.0, -20.0, 5266000.0],
    "bands": {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"},
    "mask_classes": [0, 1, 2, 3, 8, 9, 10],
    "resampling": "nearest",
    "days": [["2021-12-04", ["a"]], ["2022-03-29", ["b"]]],
}


@functools.cache
def _composed(overrides: tuple[str, ...]):
    return to_settings(compose(["catalog=demo", "output_dir=out", "stage=composite", *overrides]))


def _settings(tmp_path, *overrides: str):
    """The demo's settings with ``overrides`` given on the command line (composed once each)."""
    return replace(_composed(tuple(overrides)), given=_given_keys(overrides))


@pytest.mark.parametrize(
    "override",
    ["resolution=20.0", "crs=epsg:32610", "mask_classes=[10,9,8,3,2,1,0]", "bands=[RED,green,blue,nir]",
     "start_date=2021-12-01", "end_date=2022-03-31", "++resolution=20", "aoi=[-122.325,47.535,-122.265,47.575]"],
)  # fmt: skip
def test_the_same_request_written_otherwise_is_no_difference(override, tmp_path):
    noted = asked(_settings(tmp_path))
    assert _cube_differences(_settings(tmp_path, override), SIGNATURE, noted) == []


@pytest.mark.parametrize(
    ("override", "key"),
    [("resolution=60", "resolution"), ("crs=EPSG:32611", "crs"), ("bands=[nir,red,green,blue]", "bands"),
     ("start_date=2021-11-01", "start_date"), ("end_date=2022-06-30", "end_date"), ("max_items=3", "max_items"),
     ("collection=other", "collection")],
)  # fmt: skip
def test_another_request_is_a_difference_named_by_its_key(override, key, tmp_path):
    noted = asked(_settings(tmp_path))
    assert [k for k, _, _ in _cube_differences(_settings(tmp_path, override), SIGNATURE, noted)] == [key]


def test_a_cube_from_before_the_note_is_compared_by_its_days(tmp_path):
    """Its period is not recorded: a day outside the period asked is a difference, a wider period
    cannot be told from the days (its months might have had no scene)."""
    assert [k for k, _, _ in _cube_differences(_settings(tmp_path, "start_date=2022-01-01"), SIGNATURE, None)] == [
        "start_date"
    ]
    assert _cube_differences(_settings(tmp_path, "start_date=2021-06-01"), SIGNATURE, None) == []


def test_keys_not_given_are_not_compared(tmp_path):
    """The CWL's mosaic step gives the composite's keys only; the catalog group's resolution is
    not the user's override."""
    settings = replace(_settings(tmp_path, "statistic=[median]"), resolution=60)
    assert _cube_differences(settings, SIGNATURE, {"start_date": "1999-01-01"}) == []
    assert _monthly_differences(settings, {"statistics": ["median"], "layers": []}) == []
    assert [k for k, _, _ in _monthly_differences(_settings(tmp_path, "statistic=[p25]"), None)] == ["statistic"]


def test_a_refusal_is_a_config_error_of_one_line(tmp_path, monkeypatch):
    import cubemosaic.request as request
    import cubemosaic.store as store

    monkeypatch.setattr(store, "record_or_none", lambda path: {"signature": SIGNATURE, "request": None})
    with pytest.raises(ConfigError) as e:
        request.refuse_ignored_overrides(_settings(tmp_path, "resolution=60"), "x/cube.zarr", monthly=False)
    assert str(e.value).startswith("resolution: 60 was asked but the cube x/cube.zarr was made for 20;")
    assert "\n" not in str(e.value) and "stage=all" in str(e.value)


def test_a_tile_size_other_than_the_stores_is_refused(tmp_path):
    """A stage run alone works on its store's own tiles: another tile_size given is refused (a
    probe's stage=mosaic tile_size=256 on a cube of 128 px tiles wrote 128 px tiles, exit 0)."""
    from cubemosaic.request import refuse_other_tiling

    with pytest.raises(ConfigError, match="tile_size: 256 was asked but the cube c.zarr was made for tiles of 128 px"):
        refuse_other_tiling(_settings(tmp_path, "tile_size=256"), "c.zarr", 128, monthly=False)
    refuse_other_tiling(_settings(tmp_path, "tile_size=128"), "c.zarr", 128, monthly=False)
    refuse_other_tiling(_settings(tmp_path), "c.zarr", 128, monthly=False)  # not given: not compared
