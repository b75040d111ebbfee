"""Unit checks of the stage functions: median block vs flox, offsets, solar days, laziness."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pystac
import pytest
import xarray as xr

from cubemosaic.composite import count_block, median_block, month_starts
from cubemosaic.cube import group_by_solar_day
from cubemosaic.s2 import item_offset, solar_day


def test_median_block_matches_flox_resample_median():
    rng = np.random.default_rng(0)
    times = np.array(
        ["2022-01-03", "2022-01-08", "2022-01-13", "2022-01-28", "2022-02-02", "2022-02-12"], dtype="datetime64[ns]"
    )
    dn = rng.integers(1, 5000, size=(6, 40, 50)).astype(np.uint16)
    dn[rng.random(dn.shape) < 0.35] = 0  # masked / no data
    dn[:4, :3, :3] = 0  # a January patch with no observation at all
    da = xr.DataArray(dn, dims=("time", "y", "x"), coords={"time": times})
    oracle = da.where(da != 0).resample(time="1MS").median(engine="flox")
    months, counts = month_starts(times)
    assert counts == [4, 2] and list(months) == list(oracle.time.values)
    for i, (a, b) in enumerate([(0, 4), (4, 6)]):
        got = median_block(dn[a:b])[0].astype(float)
        expected = oracle.values[i]
        has = ~np.isnan(expected)
        assert (got[~has] == 0).all()
        assert np.abs(got[has] - expected[has]).max() <= 0.5
        np.testing.assert_array_equal(count_block(dn[a:b])[0], (dn[a:b] != 0).sum(0))
    assert (median_block(dn[:4])[0, :3, :3] == 0).all()


def test_median_of_dark_pixels_stays_valid():
    block = np.array([[[1]], [[2]], [[0]]], dtype=np.uint16)
    assert median_block(block)[0, 0, 0] == 2  # 1.5 rounds to even, never to 0


def _item(when: str, lon: float = -122.3, **props) -> pystac.Item:
    return pystac.Item(
        id=f"s-{when}-{lon}",
        geometry=None,
        bbox=[lon - 0.5, 47, lon + 0.5, 48],
        datetime=dt.datetime.fromisoformat(when),
        properties=dict(props),
    )


@pytest.mark.parametrize(
    ("props", "when", "offset"),
    [
        ({"s2:processing_baseline": "03.01"}, "2022-01-20T19:00:00+00:00", 0),
        ({"s2:processing_baseline": "04.00"}, "2022-01-27T19:00:00+00:00", 1000),
        ({"s2:processing_baseline": "05.09"}, "2023-06-01T19:00:00+00:00", 1000),
        ({}, "2022-01-24T19:00:00+00:00", 0),  # no statement: by date
        ({}, "2022-01-25T19:00:00+00:00", 1000),
        ({"earthsearch:boa_offset_applied": True}, "2022-03-01T19:00:00+00:00", 1000),
        ({"earthsearch:boa_offset_applied": False}, "2022-03-01T19:00:00+00:00", 0),
    ],
)
def test_item_offset(props, when, offset):
    assert item_offset(_item(when, **props)) == offset


def test_raster_bands_offset_wins():
    item = _item("2022-03-01T19:00:00+00:00", **{"s2:processing_baseline": "04.00"})
    item.add_asset("red", pystac.Asset("r.tif", extra_fields={"raster:bands": [{"scale": 0.0001, "offset": -0.1}]}))
    item.add_asset("nir", pystac.Asset("n.tif", extra_fields={"raster:bands": [{"scale": 0.0001, "offset": 0}]}))
    assert item_offset(item, "red") == 1000
    assert item_offset(item, "nir") == 0


def test_solar_day_groups_adjacent_tiles_and_splits_at_local_midnight():
    # 23:30 UTC at lon 150 E is the next local morning; at lon 120 W still the same day.
    assert solar_day(_item("2022-03-01T23:30:00+00:00", lon=150)) == dt.date(2022, 3, 2)
    assert solar_day(_item("2022-03-01T19:10:00+00:00", lon=-122)) == dt.date(2022, 3, 1)
    days = group_by_solar_day(
        [
            _item("2022-03-01T19:10:05+00:00", lon=-122.9),
            _item("2022-03-01T19:10:00+00:00"),
            _item("2022-03-06T19:10:00+00:00"),
        ]
    )
    assert [len(d.items) for d in days] == [2, 1]
    assert days[0].items[0].datetime < days[0].items[1].datetime


@pytest.mark.parametrize("t", [1, 2, 3, 5, 8, 12, 17, 24, 25, 31])
def test_sorting_network_median_equals_bottleneck(t):
    from cubemosaic.kernels import _median_bottleneck

    rng = np.random.default_rng(t)
    # Tall enough to be reduced in several strips of rows (tuning.STRIP_VALUES) when t > 2.
    block = rng.integers(1, 65535, (t, 3000, 50), endpoint=True).astype(np.uint16)
    block[rng.random(block.shape) < 0.4] = 0
    block[:, :3, :3] = 0
    block[:, -1, :2] = 65535  # the largest DN: sums that overflow uint16
    np.testing.assert_array_equal(median_block(block), _median_bottleneck(block))


def test_remote_reads_get_more_threads_unless_the_user_set_them():
    import os

    import dask

    from cubemosaic.cluster import waiting_on_network
    from cubemosaic.clusterspec import ClusterSpec
    from cubemosaic.tuning import REMOTE_THREADS_PER_CORE

    cores = os.cpu_count() or 1
    with dask.config.set(num_workers=cores):
        with waiting_on_network(ClusterSpec(), None, remote=True):
            assert dask.config.get("num_workers") == REMOTE_THREADS_PER_CORE * cores
        assert dask.config.get("num_workers") == cores, "only for the stage"
        with waiting_on_network(ClusterSpec(), None, remote=False):
            assert dask.config.get("num_workers") == cores
        with waiting_on_network(ClusterSpec(threads_per_worker=1), None, remote=True):
            assert dask.config.get("num_workers") == cores, "the user's setting wins"
        with waiting_on_network(ClusterSpec(), object(), remote=True):
            assert dask.config.get("num_workers") == cores, "a cluster's workers are sized by the cluster"


def test_one_list_of_stages():
    """``stage=`` is checked against config.STAGES, and the pipeline runs the same steps for each."""
    import typing

    from cubemosaic import pipeline
    from cubemosaic.config import STAGES, Stage

    assert set(typing.get_args(Stage)) == set(STAGES)
    assert pipeline.STAGES is STAGES
    assert STAGES["plan"] == (), "stage=plan runs no step"
