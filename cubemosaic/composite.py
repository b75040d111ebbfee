"""The composite stage: monthly median and valid-observation count, block by block.

The median is not tree-reducible, so the cube is read with time chunks aligned to months
(one chunk = one month of one spatial shard) and each block is reduced in one pass
(:func:`median_block`). Nothing is pulled to the client; each month is written to
``monthly.zarr`` as soon as it is computed and recorded as done, so memory does not grow
with the length of the time range and an interrupted run resumes by month.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from functools import cache
from typing import Any

import bottleneck as bn
import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from . import store
from .blocks import lazy_blocks
from .errors import OutputError
from .relay import relay_month_blocks

__all__ = ["build_monthly", "median_block", "month_starts"]

log = logging.getLogger(__name__)
#: 2: reflectance as float32 through a scale filter over uint16 (1: uint16 with a CF scale_factor).
MONTHLY_FORMAT = 2
#: Months computed together (one dask.array.store).
MONTHS_PER_BATCH = 4


#: Longest time axis sorted with a sorting network; longer months use bottleneck.
NETWORK_MAX = 24


@cache
def sorting_network(n: int) -> tuple[tuple[int, int], ...]:
    """Batcher's odd-even merge sort comparators for ``n`` inputs (padded to a power of two)."""
    size = 1 << max(0, (n - 1).bit_length())
    pairs: list[tuple[int, int]] = []
    p = 1
    while p < size:
        k = p
        while k >= 1:
            for j in range(k % p, size - k, 2 * k):
                for i in range(min(k, size - j - k)):
                    a, b = i + j, i + j + k
                    if a // (2 * p) == b // (2 * p) and b < n:
                        pairs.append((a, b))
            k //= 2
        p *= 2
    return tuple(pairs)


def median_block(block: np.ndarray) -> np.ndarray:
    """(t, y, x) uint16 DN, 0 = no data -> (1, y, x) uint16 median, rounded half to even, 0 where no data.

    Written by hand for speed: on month-long time axes (t <= 24) a sorting network of
    whole-array ``minimum``/``maximum`` ops on uint16 beats bottleneck's ``nanmedian`` on
    float32 (measured here: ~2x at 5 scenes, ~3x at 12, for 1690 x 1618 blocks, with
    whole-block arrays). No data (0) sorts last; the median is picked per pixel from its own
    number of valid values. The block is reduced a strip of rows at a time so that the network's
    arrays stay in the CPU's cache, and the middle values are averaged in uint16: 1.9-2.1x
    faster than whole-block arrays on 1954 x 1980 blocks (66 against 125 ms at 4 scenes, 165
    against 344 ms at 12). Longer axes fall back to bottleneck. Both agree exactly
    (tests/test_stages.py).
    """
    t = block.shape[0]
    out = np.zeros((1,) + block.shape[1:], dtype=np.uint16)
    if t == 0:
        return out
    if t > NETWORK_MAX:
        return _median_bottleneck(block)
    rows = max(1, STRIP_VALUES // max(1, block.shape[2] * t))
    for y in range(0, block.shape[1], rows):
        _network_median(block[:, y : y + rows], out[0, y : y + rows])
    return out


#: Values (time x pixels) in one strip of :func:`median_block`: a few hundred kB per array.
STRIP_VALUES = 1 << 18


def _network_median(block: np.ndarray, out: np.ndarray) -> None:
    """The median of ``block`` (t, y, x) into ``out`` (y, x): see :func:`median_block`."""
    t = block.shape[0]
    # Shift by one: no data (0) wraps to 65535 and sorts last; valid DN 1..65535 become 0..65534.
    values = [layer - np.uint16(1) for layer in block]
    for a, b in sorting_network(t):
        lo = np.minimum(values[a], values[b])
        np.maximum(values[a], values[b], out=values[b])
        values[a] = lo
    # The middle one or two of the n sorted valid values: positions (n - 1) // 2 and n // 2.
    n = valid_count(block)
    lo, hi = values[0].copy(), values[0].copy()
    for k in range(1, (t - 1) // 2 + 1):
        np.copyto(lo, values[k], where=n >= 2 * k + 1)
    for k in range(1, t // 2 + 1):
        np.copyto(hi, values[k], where=n >= 2 * k)
    # Back to DN (no data wraps to 0 again, so a pixel without data gives 0), then their mean in
    # uint16 without overflow, x.5 rounded to the even neighbour as np.rint does.
    lo += np.uint16(1)
    hi += np.uint16(1)
    mean = lo >> 1
    mean += hi >> 1
    both_odd = lo & hi
    both_odd &= 1
    mean += both_odd
    lo ^= hi  # odd sum: a .5 to round
    lo &= mean  # ... up when the floor is odd
    lo &= 1
    mean += lo
    out[...] = mean


def _median_bottleneck(block: np.ndarray) -> np.ndarray:

    values = block.astype(np.float32)
    values[block == 0] = np.nan
    med = bn.nanmedian(values, axis=0)
    out = np.zeros(med.shape, dtype=np.uint16)
    ok = ~np.isnan(med)
    out[ok] = np.clip(np.rint(med[ok]), 1, 65535)
    return out[None]


def valid_count(block: np.ndarray) -> np.ndarray:
    """Number of non-zero values along time, as uint16 (a loop of adds: np.count_nonzero with
    an axis sums int64 and was the slowest step of the composite)."""
    n = np.zeros(block.shape[1:], dtype=np.uint16)
    for layer in block:
        n += layer != 0
    return n


def count_block(block: np.ndarray) -> np.ndarray:
    """(t, y, x) uint16 DN -> (1, y, x) number of valid (non-zero) observations."""
    return valid_count(block)[None]


def month_starts(times: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Month starts present in sorted ``times`` and the number of time steps in each."""
    months = np.asarray(times).astype("datetime64[M]")
    uniq, counts = np.unique(months, return_counts=True)
    return uniq.astype("datetime64[ns]"), [int(c) for c in counts]


def _template(cube, months: np.ndarray, counts: Sequence[int], bands: Sequence[str], shard: tuple[int, int]):

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
    return reduce_month([np.asarray(src[t0:t1, ys, xs]) for src in sources])


def reduce_month(blocks: Sequence[np.ndarray]) -> np.ndarray:
    """(bands + 1, y, x): each (t, y, x) band block's median, and the valid count."""
    out = [median_block(b)[0] for b in blocks]
    out.append(count_block(blocks[0])[0])
    return np.stack(out)


def _month(sources: Sequence[Any], t0: int, t1: int, names: Sequence[str], shard: tuple[int, int]) -> dict[str, Any]:
    """Lazy (1, y, x) uint16 arrays of one month: each band's median, and ``count``."""

    def task(ys: slice, xs: slice):
        return month_block, (sources, t0, t1, ys, xs)

    token = tokenize([s.store_path for s in sources], t0, t1)
    month = lazy_blocks(task, tuple(sources[0].shape[1:]), shard, len(names) + 1, f"month-{token}")
    return {name: month[i][None] for i, name in enumerate([*names, "count"])}


def build_monthly(cube_path: str, path: str, *, overwrite: bool = False, relay: Any = None) -> str:
    """Write (or resume) the monthly median and count of the cube at ``cube_path`` to ``path``.

    ``relay``: a ``distributed.Client`` whose workers cannot see the stores; this process then
    reads the cube and writes the months, the workers reduce (:mod:`cubemosaic.relay`).
    """

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
    # Assets the cube stage skipped (on_read_error=skip) travel on to the months' STAC items.
    template.attrs["skipped_assets"] = json.dumps(attrs.get("skipped", []))
    encoding = {name: store.zarr_encoding(chunk, (1,) + shard) for name in bands}
    encoding["count"] = store.zarr_encoding(chunk, (1,) + shard, reflectance=False)
    sig = {"format": MONTHLY_FORMAT, "cube": attrs["signature"], "months": [str(m)[:7] for m in months]}
    state = store.open_or_create(path, template, encoding, sig, overwrite=overwrite, label="composite")

    sources = list(store.dn_arrays(cube_path, bands).values())
    starts = np.cumsum([0, *counts])
    log.info("composite: %d month(s) from %d day(s); %d to compute", len(months), len(cube.time),
             len(months) - len(state.done))  # fmt: skip

    def write(batch: list[int]) -> list[dict[str, str]]:
        if relay is not None:
            spans = {i: (int(starts[i]), int(starts[i + 1])) for i in batch}
            targets = store.writable_arrays(path)
            relay_month_blocks(relay, reduce_month, sources, targets, spans, [*bands, "count"], shard)
            store.release_memory()
        else:
            steps = {i: _month(sources, int(starts[i]), int(starts[i + 1]), bands, shard) for i in batch}
            store.write_steps(path, steps)
        return []

    store.run_steps(
        state, write, batch_size=MONTHS_PER_BATCH, label="composite", name=lambda i: f"month {str(months[i])[:7]}"
    )
    return path
