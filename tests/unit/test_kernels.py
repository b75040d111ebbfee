"""cubemosaic.kernels: the per-pixel kernels against numpy's definitions."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cubemosaic import kernels
from cubemosaic.composite import median_block

import oracle
from conftest import dn_block


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


@pytest.mark.parametrize("method", sorted(kernels.PERCENTILE_METHODS))
@pytest.mark.parametrize("t", [1, 2, 5, 12, 24, 30])
def test_the_percentile_kernel_is_numpys(method, t):
    block = dn_block(t, seed=t)
    values = np.where(block == 0, np.nan, block.astype(np.float64))
    for q in (0, 2.5, 25, 50, 75, 90, 100):
        expected = oracle.percentile(values, q, method, rounded=False)  # numpy's percentile
        np.testing.assert_array_equal(kernels.percentile_block(block, q, method), expected, err_msg=f"q={q}")
    with warnings.catch_warnings():  # and nanpercentile itself, on a few pixels (it goes pixel by pixel)
        warnings.simplefilter("ignore", RuntimeWarning)
        some = np.nanpercentile(values[:, :6, :6], 25, axis=0, method=method)
    np.testing.assert_array_equal(kernels.percentile_block(block[:, :6, :6], 25, method), some)


def test_p50_is_the_median():
    block = dn_block(9, seed=3)
    np.testing.assert_array_equal(kernels.to_dn(kernels.percentile_block(block, 50)), kernels.median_block(block)[0])


def test_the_medoid_takes_every_band_from_one_day():
    rng = np.random.default_rng(5)
    blocks = [dn_block(7, seed=s) for s in (1, 2, 3)]
    blocks[1][rng.random(blocks[1].shape) < 0.1] = 0  # a band missing on its own: not a clear observation
    values, chosen = kernels.medoid_block(blocks)
    clear = kernels.clear_mask(blocks)
    for y, x in [(5, 5), (10, 20), (39, 29), (0, 0), (20, 3)]:
        obs = [t for t in range(7) if clear[t, y, x]]
        if not obs:
            assert chosen[y, x] == -1 and all(v[y, x] == 0 for v in values)
            continue
        pts = np.array([[b[t, y, x] for b in blocks] for t in obs], dtype=float)
        med = np.median(pts, axis=0)
        best = obs[int(np.argmin(np.linalg.norm(pts - med, axis=1)))]
        assert chosen[y, x] == best
        assert [v[y, x] for v in values] == [b[best, y, x] for b in blocks]


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 8, 13, 24, 25])
def test_the_float_median_is_numpys(t):
    block = dn_block(t, seed=40 + t)
    block[:, -1, :3] = 65535
    values = np.where(block == 0, np.nan, block.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_array_equal(kernels.median_float(block), expected)
