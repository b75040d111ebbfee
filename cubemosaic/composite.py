"""The composite stage: each month's statistics and provenance layers, block by block.

The statistics (median, percentiles, medoid, geomedian: :mod:`cubemosaic.statistics`) are not
tree-reducible, so the cube is read with time chunks aligned to months (one chunk = one month
of one spatial shard) and each block is reduced in one pass. Nothing is pulled to the client;
each month is written to ``monthly.zarr`` as soon as it is computed and recorded as done, so
memory does not grow with the length of the time range and an interrupted run resumes by month.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from typing import Any

import dask.array as da
import numpy as np
import xarray as xr
from dask.base import tokenize

from . import store
from .blocks import lazy_layers
from .errors import OutputError
from .kernels import count_block, median_block, sorting_network, valid_count
from .statistics import REFLECTANCE, Composite, Layer, MonthBlock
from .statistics import composite as make_composite
from .tuning import MONTHS_PER_BATCH

__all__ = ["build_monthly", "count_block", "median_block", "month_starts", "sorting_network", "valid_count"]

log = logging.getLogger(__name__)
#: 2: reflectance as float32 through a scale filter over uint16 (1: uint16 with a CF scale_factor).
MONTHLY_FORMAT = 2


def month_starts(times: np.ndarray) -> tuple[np.ndarray, list[int]]:
    """Month starts present in sorted ``times`` and the number of time steps in each."""
    months = np.asarray(times).astype("datetime64[M]")
    uniq, counts = np.unique(months, return_counts=True)
    return uniq.astype("datetime64[ns]"), [int(c) for c in counts]


def _template(cube, months: np.ndarray, counts: Sequence[int], layers: Sequence[Layer], shard: tuple[int, int]):

    ids, starts = [], np.cumsum([0, *counts])
    for a, b in zip(starts[:-1], starts[1:], strict=True):
        ids.append(" ".join(str(v) for v in cube["item_ids"].values[a:b]))
    shape = (len(months),) + cube["y"].shape + cube["x"].shape
    chunks = (1,) + shard
    data: dict[str, Any] = {}
    for layer in layers:
        dtype = "float32" if layer.kind is REFLECTANCE else layer.kind.dtype
        for var, band in zip(layer.variables, layer.bands, strict=True):
            attrs = {"long_name": layer.description.format(band=band), "units": layer.kind.unit or "1"}
            if layer.kind.nodata is not None and not np.isnan(layer.kind.nodata):
                attrs["nodata"] = layer.kind.nodata
            attrs["grid_mapping"] = "spatial_ref"
            data[var] = (("time", "y", "x"), da.zeros(shape, dtype=dtype, chunks=chunks), attrs)
    coords = {
        "time": months,
        "y": cube.y,
        "x": cube.x,
        "spatial_ref": cube.spatial_ref,
        "item_ids": ("time", np.array(ids, dtype=object)),
        "n_days": ("time", np.array(counts, dtype="int32")),
    }
    ds = xr.Dataset(data, coords=coords)
    ds.attrs.update(title="cubemosaic monthly cloud-free mosaics", Conventions="CF-1.9")
    return ds


def month_block(
    sources: Mapping[str, Any], days: np.ndarray, t0: int, t1: int, ys: slice, xs: slice, composite: Composite
) -> dict[str, np.ndarray]:
    """Every output variable of one month and block, as (y, x) arrays.

    One task reads the month's days of every band for the block straight from Zarr, so no
    rechunked copies travel between tasks, a strip of chunk rows at a time: every statistic is
    per pixel, and a task holds one strip's days (not the shard's) beside the block's outputs,
    so its memory does not grow with the shard (a region's, many tiles wide) or the days in a
    month. Each stored chunk is still decoded once.
    """
    first = next(iter(sources.values()))
    step = int(first.chunks[1]) if hasattr(first, "chunks") else ys.stop - ys.start  # zarr's chunk rows
    outputs: dict[str, np.ndarray] = {}
    for r0 in range(ys.start, ys.stop, step):
        rows = slice(r0, min(r0 + step, ys.stop))
        blocks = {band: np.asarray(src[t0:t1, rows, xs]) for band, src in sources.items()}
        part = composite.reduce(MonthBlock(blocks, np.asarray(days[t0:t1])))
        del blocks
        if rows == ys:
            return part  # one strip: the block itself
        for name, values in part.items():
            if name not in outputs:
                outputs[name] = np.empty((ys.stop - ys.start,) + values.shape[1:], dtype=values.dtype)
            outputs[name][r0 - ys.start : rows.stop - ys.start] = values
    return outputs


def _reducer(composite: Composite, days: np.ndarray, t0: int, t1: int) -> store.Reduce:
    """For the relay: (the month's band blocks, in the sources' order) -> every output variable."""
    bands = list(composite.bands)

    def reduce(blocks: Sequence[np.ndarray]) -> dict[str, np.ndarray]:
        return composite.reduce(MonthBlock(dict(zip(bands, blocks, strict=True)), np.asarray(days[t0:t1])))

    return reduce


def _month(
    sources: Mapping[str, Any], days: np.ndarray, t0: int, t1: int, composite: Composite, shard: tuple[int, int]
) -> dict[str, Any]:
    """Lazy (1, y, x) arrays of one month: every variable of every layer."""

    def task(ys: slice, xs: slice):
        return month_block, (sources, days, t0, t1, ys, xs, composite)

    dtypes = _dtypes(composite.layers())
    token = tokenize([s.store_path for s in sources.values()], t0, t1, composite)
    first = next(iter(sources.values()))
    return lazy_layers(task, tuple(first.shape[1:]), shard, dtypes, f"month-{token}")


def _dtypes(layers: Sequence[Layer]) -> dict[str, str]:
    """Each variable's dtype as the pipeline computes and writes it (reflectance as stored DN)."""
    return {v: layer.kind.dtype for layer in layers for v in layer.variables}


def build_monthly(
    cube_path: str,
    path: str,
    *,
    statistics: Sequence[str] = ("median",),
    provenance: Sequence[str] = (),
    percentile_method: str = "linear",
    overwrite: bool = False,
    writes: store.Writes = store.DIRECT,
    label: str = "composite",
    cube_parameter: str = "zarr_dir",
) -> str:
    """Write (or resume) the monthly composites of the cube at ``cube_path`` to ``path``.

    ``statistics``: their names, the first the month's mosaic (``median``, ``p<NN>``, ``medoid``,
    ``geomedian``); ``provenance``: layers beside the count (``first_day``, ``last_day``, ``iqr``);
    ``percentile_method``: numpy's ``percentile`` method (:mod:`cubemosaic.statistics`), over
    every band of the cube. ``writes``: how the months reach the store, the run's choice
    (:func:`cubemosaic.reach.choose_writes`); relayed, this process reads the cube and writes the
    months, the workers reduce (:mod:`cubemosaic.relay`). ``cube_parameter``: the parameter that
    places the cube (``zarr_dir`` or ``cube_url``), named if a chunk of the cube does not decode.
    """

    attrs = store.read_attrs(cube_path, cube_parameter)
    if not attrs.get("complete"):
        raise OutputError(f"{cube_parameter}: {cube_path} is not complete; run stage=cube (the same command) first")
    cube = store.open_labels(cube_path, parameter=cube_parameter, remedy=store.CUBE_REMEDY)
    bands = list(attrs["variables"])
    composite = make_composite(bands, statistics, provenance, percentile_method)
    months, counts = month_starts(cube.time.values)
    days = np.asarray(cube.time.values).astype("datetime64[D]").astype(object)
    day_of_month = np.array([d.day for d in days], dtype=np.uint8)
    first = cube[bands[0]]
    shard = tuple(first.encoding.get("shards") or first.encoding["chunks"])[1:]
    chunk = tuple(first.encoding["chunks"])
    layers = composite.layers()
    template = _template(cube, months, counts, layers, shard)
    # Assets the cube stage skipped (on_read_error=skip) travel on to the months' STAC items.
    template.attrs["skipped_assets"] = json.dumps(attrs.get("skipped", []))
    record = composite.record()
    template.attrs["composite"] = json.dumps(record)
    encoding = {
        v: store.zarr_encoding(chunk, (1,) + shard, reflectance=layer.kind is REFLECTANCE, dtype=layer.kind.dtype)
        for layer in layers
        for v in layer.variables
    }
    sig: dict[str, Any] = {"format": MONTHLY_FORMAT, "cube": attrs["signature"], "months": [str(m)[:7] for m in months]}
    if not composite.is_default:  # today's stores resume as they are
        sig["composite"] = {k: record[k] for k in ("statistics", "percentile_method")} | {
            "layers": [layer.key for layer in layers],
            "bands": list(composite.bands),
        }
    state = store.open_or_create(path, template, encoding, sig, overwrite=overwrite, label=label)
    if attrs.get("request") is not None:  # the cube's request travels on, for stage=export to compare
        store.note_request(path, attrs["request"])

    sources = store.dn_arrays(cube_path, composite.bands, parameter=cube_parameter, remedy=store.CUBE_REMEDY)
    starts = np.cumsum([0, *counts])
    spans = {i: (int(starts[i]), int(starts[i + 1])) for i in range(len(months))}  # month -> its days t0:t1
    names = [v for layer in layers for v in layer.variables]
    log.info("%s: %d month(s) from %d day(s); %d to compute (%s)", label, len(months), len(cube.time),
             len(months) - len(state.done), ", ".join(s.name for s in composite.statistics))  # fmt: skip

    def write(batch: list[int]) -> list[dict[str, str]]:
        """The batch's months into the store, each reduced from its days of the cube (none left out)."""
        months_of = store.Reduction(
            sources=list(sources.values()),
            spans={i: spans[i] for i in batch},
            reducer=lambda i: _reducer(composite, day_of_month, *spans[i]),
            lazy=lambda i: _month(sources, day_of_month, *spans[i], composite, shard),
            names=names,
            shard=shard,
        )
        writes.write(path, months_of)
        return []

    store.run_steps(
        state,
        write,
        batch_size=MONTHS_PER_BATCH,
        label=label,
        name=lambda i: f"month {str(months[i])[:7]}",
        unit="months",
    )
    return path
