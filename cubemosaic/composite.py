"""The composite stage: monthly median and valid-observation count, block by block.

The median is not tree-reducible, so the cube is read with time chunks aligned to months
(one chunk = one month of one spatial shard) and each block is reduced in one pass with
bottleneck's ``nanmedian``. Nothing is pulled to the client; each month is written to
``monthly.zarr`` as soon as it is computed and recorded as done, so memory does not grow
with the length of the time range and an interrupted run resumes by month.
"""

from __future__ import annotations

import logging
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from . import store
from .errors import OutputError

__all__ = ["build_monthly", "median_block", "month_starts"]

log = logging.getLogger(__name__)
MONTHLY_FORMAT = 1
#: Months computed together (one dask.array.store).
MONTHS_PER_BATCH = 4


def median_block(block: np.ndarray) -> np.ndarray:
    """(t, y, x) uint16 DN, 0 = no data -> (1, y, x) uint16 median, rounded, 0 where no data."""
    import bottleneck as bn

    values = block.astype(np.float32)
    values[block == 0] = np.nan
    if values.shape[0] == 0:
        return np.zeros((1,) + block.shape[1:], dtype=np.uint16)
    med = bn.nanmedian(values, axis=0)
    out = np.zeros(med.shape, dtype=np.uint16)
    ok = ~np.isnan(med)
    out[ok] = np.clip(np.rint(med[ok]), 1, 65535)
    return out[None]


def count_block(block: np.ndarray) -> np.ndarray:
    """(t, y, x) uint16 DN -> (1, y, x) number of valid (non-zero) observations."""
    return np.count_nonzero(block, axis=0).astype(np.uint16)[None]


def month_starts(times: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Month starts present in sorted ``times`` and the number of time steps in each."""
    months = np.asarray(times).astype("datetime64[M]")
    uniq, counts = np.unique(months, return_counts=True)
    return uniq.astype("datetime64[ns]"), [int(c) for c in counts]


def _template(cube, months: np.ndarray, counts: Sequence[int], bands: Sequence[str], shard: tuple[int, int]):
    import dask.array as da
    import xarray as xr

    ids, starts = [], np.cumsum([0, *counts])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        ids.append(" ".join(str(v) for v in cube["item_ids"].values[a:b]))
    shape = (len(months),) + cube[bands[0]].shape[1:]
    chunks = (1,) + shard
    data: dict[str, Any] = {
        name: (
            ("time", "y", "x"),
            da.zeros(shape, dtype="float32", chunks=chunks),
            {
                "long_name": f"{name} monthly median surface reflectance",
                "units": "1",
                "nodata": 0,
                "grid_mapping": "spatial_ref",
            },
        )
        for name in bands
    }
    data["count"] = (
        ("time", "y", "x"),
        da.zeros(shape, dtype="uint16", chunks=chunks),
        {"long_name": "number of clear observations in the month", "units": "1", "grid_mapping": "spatial_ref"},
    )
    coords = {
        "time": months,
        "y": cube.y,
        "x": cube.x,
        "spatial_ref": cube.spatial_ref,
        "item_ids": ("time", np.array(ids, dtype=object)),
        "n_days": ("time", np.array(counts, dtype="int32")),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(title="cubemosaic monthly cloud-free median mosaics", Conventions="CF-1.9")
    return ds


def month_block(sources: Sequence[Any], t0: int, t1: int, ys: slice, xs: slice) -> np.ndarray:
    """(bands + 1, y, x): each band's median and the valid count of one month and block.

    One task reads the month's days of every band for the block straight from Zarr (a
    month is one read per shard), so no rechunked copies travel between tasks.
    """
    blocks = [np.asarray(src[t0:t1, ys, xs]) for src in sources]
    out = [median_block(b)[0] for b in blocks]
    out.append(count_block(blocks[0])[0])
    return np.stack(out)


def _month(sources: Sequence[Any], t0: int, t1: int, names: Sequence[str], shard: tuple[int, int]) -> dict[str, Any]:
    """Lazy (1, y, x) uint16 arrays of one month: each band's median, and ``count``."""
    from dask.base import tokenize

    from .blocks import lazy_blocks

    def task(ys: slice, xs: slice):
        return month_block, (sources, t0, t1, ys, xs)

    token = tokenize([s.store_path for s in sources], t0, t1)
    month = lazy_blocks(task, tuple(sources[0].shape[1:]), shard, len(names) + 1, f"month-{token}")
    return {name: month[i][None] for i, name in enumerate([*names, "count"])}


def build_monthly(cube_path: str, path: str, *, overwrite: bool = False) -> str:
    """Write (or resume) the monthly median and count of the cube at ``cube_path`` to ``path``."""
    import xarray as xr

    attrs = store.read_attrs(cube_path)
    if not attrs.get("complete"):
        raise OutputError(f"output_dir: {cube_path} is not complete; run stage=cube (the same command) first")
    cube = xr.open_zarr(cube_path, mask_and_scale=False, consolidated=True, chunks=None)
    bands = list(attrs["variables"])
    months, counts = month_starts(cube.time.values)
    first = cube[bands[0]]
    shard = tuple(first.encoding.get("shards") or first.encoding["chunks"])[1:]
    chunk = tuple(first.encoding["chunks"])
    template = _template(cube, months, counts, bands, shard)
    encoding = {name: store.zarr_encoding(chunk, (1,) + shard) for name in bands}
    encoding["count"] = store.zarr_encoding(chunk, (1,) + shard, reflectance=False)
    sig = {"format": MONTHLY_FORMAT, "cube": attrs["signature"], "months": [str(m)[:7] for m in months]}
    state = store.open_or_create(path, template, encoding, sig, overwrite=overwrite, label="composite")

    import zarr

    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        group = zarr.open_group(cube_path, mode="r")
    sources = [group[name] for name in bands]
    starts = np.cumsum([0, *counts])
    todo = [i for i in range(len(months)) if i not in state.done]
    log.info("composite: %d month(s) from %d day(s); %d to compute", len(months), len(cube.time), len(todo))
    written = len(state.done)
    for batch in store.batches(todo, MONTHS_PER_BATCH):
        steps = {i: _month(sources, int(starts[i]), int(starts[i + 1]), bands, shard) for i in batch}
        store.write_steps(path, steps)
        written += len(batch)
        store.mark_done(path, batch, complete=written == len(months))
        for n, i in enumerate(batch):
            log.info(
                "composite: month %s written [%d/%d]", str(months[i])[:7], written - len(batch) + n + 1, len(months)
            )
    if not todo:
        store.mark_done(path, [], complete=True)
        log.info("composite: %s already complete", path)
    return path
