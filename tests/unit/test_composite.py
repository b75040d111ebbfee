"""cubemosaic.composite: the median block against flox's, and dark pixels kept valid."""

from __future__ import annotations

import numpy as np
import xarray as xr

from cubemosaic.composite import count_block, median_block, month_starts


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
