"""cubemosaic.blocks: one task per output block, clipped at the grid's edges."""

from __future__ import annotations

import dask
import numpy as np

from cubemosaic.blocks import block_slices, lazy_blocks, lazy_layers


def test_block_slices_cover_the_grid_once_row_by_row():
    rows = block_slices((5, 7), (2, 3))
    assert [len(row) for row in rows] == [3, 3, 3]
    assert rows[0][0] == (slice(0, 2), slice(0, 3))
    assert rows[-1][-1] == (slice(4, 5), slice(6, 7)), "the last block is clipped at the edges"
    cover = np.zeros((5, 7), dtype=int)
    for row in rows:
        for ys, xs in row:
            cover[ys, xs] += 1
    assert (cover == 1).all()


def test_lazy_blocks_compute_each_block_from_its_own_task():
    def task(ys, xs):
        return (lambda y0, x0, h, w: np.full((2, h, w), 10 * y0 + x0, dtype=np.uint16)), (
            ys.start,
            xs.start,
            ys.stop - ys.start,
            xs.stop - xs.start,
        )

    arr = lazy_blocks(task, (5, 7), (2, 3), depth=2, name="test-blocks")
    assert arr.shape == (2, 5, 7) and arr.dtype == np.uint16
    assert arr.chunks == ((2,), (2, 2, 1), (3, 3, 1))
    got = arr.compute()
    assert got[0, 0, 0] == 0 and got[1, 4, 6] == 46 and got[0, 2, 3] == 23
    assert len(dict(arr.dask)) > 0 and any(str(k).startswith("test-blocks-4-6") for k in dict(arr.dask))


def test_lazy_layers_share_one_task_per_block():
    calls = []

    def reduce(ys, xs):
        calls.append((ys.start, xs.start))
        h, w = ys.stop - ys.start, xs.stop - xs.start
        return {"median": np.full((h, w), 7, dtype=np.uint16), "count": np.full((h, w), 3, dtype=np.uint8)}

    layers = lazy_layers(
        lambda ys, xs: (reduce, (ys, xs)), (4, 4), (2, 2), {"median": np.uint16, "count": np.uint8}, "test-layers"
    )
    assert set(layers) == {"median", "count"}
    median, count = dask.compute(layers["median"], layers["count"], scheduler="sync")
    assert median.shape == count.shape == (1, 4, 4)
    assert median.dtype == np.uint16 and count.dtype == np.uint8
    assert (median == 7).all() and (count == 3).all()
    assert sorted(calls) == [(0, 0), (0, 2), (2, 0), (2, 2)], "each block reduced once for both layers"
