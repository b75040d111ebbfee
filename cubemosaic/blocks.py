"""Dask arrays made of one task per output block (a shard): the shape both stages compute in."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import dask
import dask.array as da
import numpy as np

__all__ = ["block_slices", "lazy_blocks", "lazy_layers"]


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


def lazy_layers(
    task: Callable[[slice, slice], tuple[Callable[..., dict[str, np.ndarray]], tuple[Any, ...]]],
    shape: tuple[int, int],
    shard: tuple[int, int],
    dtypes: dict[str, Any],
    name: str,
) -> dict[str, Any]:
    """Lazy (1, y, x) arrays, one per name in ``dtypes``, whose block (ys, xs) is
    ``func(*args)[name]`` for ``task(ys, xs)``: one task per block makes every array's block
    (of its own dtype), so arrays computed together compute each block once."""

    rows: dict[str, list] = {n: [] for n in dtypes}
    for tiles in block_slices(shape, shard):
        row: dict[str, list] = {n: [] for n in dtypes}
        for ys, xs in tiles:
            func, args = task(ys, xs)
            delayed = dask.delayed(func)(*args, dask_key_name=f"{name}-{ys.start}-{xs.start}")
            block_shape = (1, ys.stop - ys.start, xs.stop - xs.start)
            for n, dtype in dtypes.items():
                part = dask.delayed(_layer)(delayed, n, dask_key_name=f"{name}-{n}-{ys.start}-{xs.start}")
                row[n].append(da.from_delayed(part, shape=block_shape, dtype=dtype))
        for n in dtypes:
            rows[n].append(row[n])
    return {n: da.concatenate([da.concatenate(r, axis=2) for r in rows[n]], axis=1) for n in dtypes}


def _layer(arrays: dict[str, np.ndarray], name: str) -> np.ndarray:
    return arrays[name][None]
