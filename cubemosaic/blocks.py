"""Dask arrays made of one task per output block (a shard): the shape both stages compute in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np

__all__ = ["block_slices", "lazy_blocks"]


def block_slices(shape: tuple[int, int], shard: tuple[int, int]) -> list[list[tuple[slice, slice]]]:
    """The (ys, xs) of each output block (a shard, clipped at the edges), row by row."""
    ny, nx = shape
    return [
        [(slice(y0, min(ny, y0 + shard[0])), slice(x0, min(nx, x0 + shard[1]))) for x0 in range(0, nx, shard[1])]
        for y0 in range(0, ny, shard[0])
    ]


def lazy_blocks(
    task: Callable[[slice, slice], tuple[Callable[..., np.ndarray], tuple[Any, ...]]],
    shape: tuple[int, int],
    shard: tuple[int, int],
    depth: int,
    name: str,
    dtype: Any = np.uint16,
):
    """A lazy (depth, y, x) array of ``dtype`` whose block (ys, xs) is ``func(*args)`` for ``task(ys, xs)``.

    ``name`` must identify the computation (it keys the tasks).
    """

    rows = []
    for tiles in block_slices(shape, shard):
        row = []
        for ys, xs in tiles:
            func, args = task(ys, xs)
            delayed = dask.delayed(func)(*args, dask_key_name=f"{name}-{ys.start}-{xs.start}")
            block_shape = (depth, ys.stop - ys.start, xs.stop - xs.start)
            row.append(da.from_delayed(delayed, shape=block_shape, dtype=dtype))
        rows.append(row)
    return da.concatenate([da.concatenate(row, axis=2) for row in rows], axis=1)
