"""cubemosaic.cube: building a day's or a month's arrays reads nothing; only the store's compute does."""

from __future__ import annotations

import json

import numpy as np
import pystac

import cubemosaic.read as read
from cubemosaic.composite import _month
from cubemosaic.cube import CubeSpec, group_by_solar_day, load_day, output_geobox
from cubemosaic.read import Access
from cubemosaic.s2 import CloudMask
from cubemosaic.statistics import Composite
from cubemosaic.statistics import composite as make_composite

BANDS = {"red": "B04", "nir": "B08"}


def test_a_day_reads_nothing_until_computed(demo, monkeypatch):
    items = [pystac.Item.from_dict(f) for f in json.loads(demo.items_path.read_text())["features"]]
    day = group_by_solar_day(items)[10]  # the day with two overlapping tiles
    geobox = output_geobox((-122.325, 47.535, -122.265, 47.575), "EPSG:32610", 20)
    calls = []
    real = read._read
    monkeypatch.setattr(read, "_read", lambda *a: calls.append(a[0].href) or real(*a))
    arrays = load_day(day, CubeSpec(geobox, BANDS, "SCL", CloudMask()), (128, 128), Access())
    assert calls == [], "building the graph must not read"
    assert arrays["red"].shape == (1,) + tuple(geobox.shape) and arrays["red"].dtype == np.uint16
    import dask

    with dask.config.set(scheduler="synchronous"):
        red, nir = dask.compute(arrays["red"], arrays["nir"])
    assert calls, "computing reads"
    assert red.shape == nir.shape and (red > 0).mean() > 0.5


class CountingSource:
    """A stand-in Zarr array that counts the reads made of it."""

    def __init__(self, data: np.ndarray) -> None:
        self.data, self.reads = data, 0
        self.shape, self.dtype, self.store_path = data.shape, data.dtype, f"mem://{id(self)}"

    def __getitem__(self, key):
        self.reads += 1
        return self.data[key]


def test_a_month_reads_nothing_until_computed():
    rng = np.random.default_rng(1)
    cube = {b: CountingSource(rng.integers(0, 3000, (6, 70, 90)).astype(np.uint16)) for b in ("red", "nir")}
    days = np.arange(1, 7, dtype=np.uint8)
    arrays = _month(cube, days, 1, 4, Composite(("red", "nir"), provenance=("first_day",)), (32, 64))
    assert [c.reads for c in cube.values()] == [0, 0]
    import dask

    red, count, first = dask.compute(arrays["red"], arrays["count"], arrays["first_day"], scheduler="synchronous")
    assert all(c.reads == 6 for c in cube.values()), "one read per block and band, for every output"  # 3 x 2 blocks
    data = cube["red"].data[1:4]
    expected = np.where(data == 0, np.nan, data).astype("float64")
    np.testing.assert_array_equal(count[0], (data != 0).sum(0))
    has = ~np.isnan(np.nanmax(expected, axis=0))
    assert np.abs(red[0][has] - np.nanmedian(expected, axis=0)[has]).max() <= 0.5
    assert first.dtype == np.uint8 and set(np.unique(first)) <= {0, 2, 3, 4}


def test_a_month_block_is_reduced_a_row_of_chunks_at_a_time():
    """A source with chunks of 16 rows in shards of 32 x 64: each block is read and reduced a strip
    of 16 rows at a time (a task holds a strip's days, not the shard's), and gives what one read of
    the block gives, for the median, the count and the provenance."""
    rng = np.random.default_rng(2)
    data = {b: rng.integers(0, 3000, (6, 70, 90)).astype(np.uint16) for b in ("red", "nir")}
    data["red"][:, 5:20, 10:30] = 0  # no data across a strip's edge
    composite = make_composite(("red", "nir"), ("median", "p90"), ("first_day", "iqr"))
    days = np.arange(1, 7, dtype=np.uint8)

    class Chunked(CountingSource):
        chunks = (1, 16, 32)

        def __getitem__(self, key):
            assert key[1].stop - key[1].start <= 16, "one row of chunks at a time"
            return super().__getitem__(key)

    import dask

    outputs = []
    for kind in (CountingSource, Chunked):
        cube = {b: kind(v) for b, v in data.items()}
        arrays = _month(cube, days, 1, 5, composite, (32, 64))
        outputs.append(dict(zip(arrays, dask.compute(*arrays.values(), scheduler="synchronous"), strict=True)))
        if kind is Chunked:
            # Rows of blocks 32, 32 and 6 high: 2 + 2 + 1 strips, in each of 2 columns of blocks.
            assert all(c.reads == 5 * 2 for c in cube.values()), [c.reads for c in cube.values()]
    whole, strips = outputs
    assert whole.keys() == strips.keys() and len(whole) >= 6
    for name in whole:
        assert whole[name].dtype == strips[name].dtype
        np.testing.assert_array_equal(whole[name], strips[name], err_msg=name)
