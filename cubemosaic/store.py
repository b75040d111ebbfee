"""Resumable Zarr stores: one template, many region writes, a completion record per step.

Both the cube (one step per solar day) and the monthly store (one step per month) are
written the same way:

1. :func:`create` writes the store's metadata and coordinates from an xarray template
   (no data), tagged with a *signature* of the request that made it;
2. a :class:`Writes` stores a batch of steps' uint16 DN arrays into their regions: the run
   chooses one (:func:`cubemosaic.reach.choose_writes`) for both stages, :class:`DirectWrites`
   (one ``dask.array.store``, each task writing whole shards, so writes never race) or the
   relay's :class:`~cubemosaic.relay.RelayedWrites`;
3. :func:`mark_done` records the steps as done, after their data (completion record last); the
   store is complete when every step is.

:func:`run_steps` is that loop, for both stages: every step the store still lacks, a batch at a
time, written then recorded, with the inputs a batch skipped.

Rerunning with the same signature resumes: :func:`open_or_create` returns the steps
already done. A store made by a different request is never overwritten unless asked.
Reflectance variables are float32 arrays whose chunks hold uint16 DN: a scale filter
(numcodecs' ``FixedScaleOffset``, reflectance x 10000 rounded to uint16) sits before the
compressor, so plain ``xr.open_zarr`` gives float32 reflectance (0 = no data, decoded to NaN
through ``_FillValue``) while the files stay uint16. The pipeline itself reads and writes the
stored DN through :func:`dn_array` (the same bytes without the filter), never converting.
A CF ``scale_factor`` attribute cannot do this: xarray decodes a JSON scale factor to float64.
"""

from __future__ import annotations

import json
import logging
import re
import shutil
import warnings
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, Final

import dask.array as da
import fsspec
import numpy as np
import xarray as xr
import zarr
from zarr.codecs import BloscCodec, Crc32cCodec, ZstdCodec
from zarr.codecs.numcodecs import FixedScaleOffset
from zarr.core.array import AsyncArray
from zarr.core.sync import sync

from .errors import OutputError, WriteError, one_line
from .progress import Progress
from .s2 import REFLECTANCE_SCALE
from .tuning import release_memory
from .urls import is_local

__all__ = [
    "DIRECT",
    "DirectWrites",
    "Readable",
    "Reduction",
    "Steps",
    "StoreState",
    "Writes",
    "batches",
    "check_intact",
    "create",
    "damaged_steps",
    "dn_array",
    "dn_arrays",
    "open_dn",
    "mark_done",
    "open_or_create",
    "run_steps",
    "zarr_encoding",
]

log = logging.getLogger(__name__)
#: zarr's codec pipeline for the arrays the stages read back (:func:`dn_arrays`) and the shards
#: they write with data (:class:`Target`): zarrs, the Rust implementation, encodes, decodes and
#: assembles chunks on its own threads, where zarr-python's pipeline copies every chunk on its one
#: event-loop thread. That bounded the composite: reading the whole-tile cube took 3.9 s on one
#: thread against 1.9 s, the composite stage 23.8 s against 16.3 s.
FAST_PIPELINE = "zarrs.ZarrsCodecPipeline"
ATTR = "cubemosaic"
#: The name of the reflectance scale filter in a Zarr v3 array's codecs.
SCALE_CODEC = "numcodecs.fixedscaleoffset"
DN_PER_REFLECTANCE = round(1 / REFLECTANCE_SCALE)
#: zarr's note on every numcodecs codec (other Zarr implementations may lack it); the stores say
#: so in the README, the pipeline does not repeat it.
CODEC_NOTE = "Numcodecs codecs are not in the Zarr version 3 specification"


@contextmanager
def _quiet() -> Iterator[None]:
    """Silence zarr's notes on consolidated metadata (we write and read it on purpose)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*[Cc]onsolidated metadata.*")
        warnings.filterwarnings("ignore", message=CODEC_NOTE)
        yield


#: For the other modules that open the stores with xarray.
quiet = _quiet


def open_group(path: str, mode: str = "r"):
    """The zarr group at ``path`` (folder or fsspec URL), without zarr's consolidated-metadata notes."""

    with _quiet():
        return zarr.open_group(path, mode=mode)


def zarr_encoding(
    chunks: tuple[int, ...],
    shards: tuple[int, ...],
    *,
    reflectance: bool = True,
    compressor: str = "zstd",
    dtype: str = "uint16",
) -> dict[str, Any]:
    """Encoding of one data variable: Blosc (bit-shuffled) then a crc32c checksum of each inner
    chunk, shards; stored as uint16 and read as float32 reflectance through the scale filter if
    ``reflectance``, else plain ``dtype`` (uint16 counts, uint8 days, float32 with NaN for none).

    The checksum (Zarr v3's ``crc32c`` codec, which zarrs and zarr-python both decode) makes a
    chunk changed in place a read error (:class:`Readable`) instead of pixels: a Blosc stream
    with a flipped byte often still decodes. It costs 4 bytes a chunk and no time that shows
    (writing and reading 64 MB of the cube: within the noise of 0.13 and 0.09 s).

    ``compressor``: ``zstd`` for the monthly store, ``lz4`` for the cube, the large store the
    pipeline writes and reads back once: measured on the benchmark cube, lz4 encodes
    2.5x faster than zstd level 1 (1.1 s against 2.6-3.2 s for 1.3 GB on 2 threads) for a
    store 7% larger. Both are standard Blosc codecs any Zarr reader decodes.
    """

    if compressor not in ("zstd", "lz4"):
        raise ValueError(f"compressor must be zstd or lz4, not {compressor!r}")
    if dtype not in ("uint16", "uint8", "float32"):
        raise ValueError(f"dtype must be uint16, uint8 or float32, not {dtype!r}")
    stored = "uint16" if reflectance else dtype
    enc: dict[str, Any] = {
        "dtype": stored,
        "chunks": chunks,
        "shards": shards,
        # Level 1: for zstd, half the encode time of level 3 for 1-2% less compression (measured on
        # the cube). typesize: the compressor sees the stored values, also behind the scale filter.
        "compressors": [
            BloscCodec(cname=compressor, clevel=1, shuffle="bitshuffle", typesize=np.dtype(stored).itemsize),
            Crc32cCodec(),
        ],
    }
    if reflectance:
        with _quiet():
            scale = FixedScaleOffset(offset=0, scale=DN_PER_REFLECTANCE, dtype="<f4", astype="<u2")
        enc.update({"dtype": "float32", "filters": [scale], "_FillValue": np.float32(0)})
    elif dtype == "float32":
        enc["_FillValue"] = np.float32(np.nan)
    return enc


def _without_scale(codecs: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    out = []
    for codec in codecs:
        if codec["name"] == SCALE_CODEC:
            continue
        codec = dict(codec)
        if codec["name"] == "sharding_indexed":
            inner = dict(codec["configuration"])
            inner["codecs"] = _without_scale(inner["codecs"])
            codec["configuration"] = inner
        out.append(codec)
    return out


def dn_array(array: zarr.Array) -> zarr.Array:
    """The uint16 DN a reflectance array stores: the same chunks read (and written) without the
    scale filter, so the pipeline moves the stored integers, not float32. Other arrays as they are.

    Written here: zarr has no public way to read an array's stored integers past a filter; this
    is the array's own metadata with the filter taken out and the data type of its output.
    """

    meta = array.metadata.to_dict()
    if SCALE_CODEC not in json.dumps(meta["codecs"], default=str):
        return array
    meta.update(codecs=_without_scale(meta["codecs"]), data_type="uint16", fill_value=0)
    return zarr.Array(AsyncArray(meta, array.store_path, array.config))


#: What writes a damaged store again (:class:`Readable`): its files keep the sizes its record
#: holds, so a rerun, even with overwrite=true (which replaces only a store of another request),
#: resumes it as it is.
_AS_IT_IS = "a rerun, even with overwrite=true, resumes the damaged store as it is"
CUBE_REMEDY = f"delete it, then run stage=cube (the same request) to write it again; {_AS_IT_IS}"
MONTHLY_REMEDY = f"delete it, then run stage=mosaic (the same request) to compute it again; {_AS_IT_IS}"


def dn_arrays(
    path: str,
    names: Iterable[str] | None = None,
    *,
    mode: str = "r",
    parameter: str = "zarr_dir",
    remedy: str = "delete it and run again to write it again",
) -> dict[str, Any]:
    """The store's arrays (or those in ``names``, in that order) as stored uint16 DN (:func:`dn_array`).

    Opened to read (``mode="r"``, how the stages read a store another stage wrote), each is a
    :class:`Readable`: a chunk that does not decode is one :class:`OutputError` naming
    ``parameter`` and the store, ending with ``remedy`` (what writes the store again).
    """
    arrays = _dn_arrays(path, names, mode, fast=mode == "r")
    if mode != "r":
        return arrays
    return {name: Readable(array, parameter, f"{path.rstrip('/')}/{name}", remedy) for name, array in arrays.items()}


class Readable:
    """A stored array read by a stage (the array's attributes, and its ``[...]``), whose chunks that
    do not decode raise :class:`OutputError` naming the store: a shard whose index fails its crc32c
    checksum, a chunk that Blosc cannot decode. zarrs (:data:`FAST_PIPELINE`, the pipeline these
    arrays read with) raises RuntimeError for every codec error; nothing else is caught. A damaged
    chunk keeps the size recorded for its step, so a rerun would resume it as it is: the message
    says what writes it again."""

    def __init__(self, array: Any, parameter: str, where: str, remedy: str) -> None:
        self.array, self.parameter, self.where, self.remedy = array, parameter, where, remedy

    def __reduce__(self) -> tuple[Any, ...]:  # to Dask workers, with its fields
        return (type(self), (self.array, self.parameter, self.where, self.remedy))

    def __getattr__(self, name: str) -> Any:
        try:
            array = self.__dict__["array"]
        except KeyError:
            raise AttributeError(name) from None
        return getattr(array, name)

    def __getitem__(self, key: Any) -> Any:
        try:
            return self.array[key]
        except RuntimeError as e:  # zarrs raises it for codec errors and for the storage's alike
            store_path, _, name = self.where.rpartition("/")
            text = one_line(str(e), 120)
            if not _CODEC_ERROR.search(text):  # permissions, a failing disk or network: not damage
                raise OutputError(f"{self.parameter}: cannot read {name} of {store_path} ({text})") from None
            raise OutputError(
                f"{self.parameter}: {store_path} is damaged: a shard of {name} does not decode ({text}); {self.remedy}"
            ) from None


#: zarrs' messages for bytes that do not decode ("the checksum is invalid", "blosc_decompress_ctx
#: failed", "blosc encoded value is invalid", a codec's or the shard index's decode error), as
#: against its storage errors ("IO error for operation on ...").
_CODEC_ERROR = re.compile(r"checksum|blosc|decod|decompress|corrupt|codec|shard index|invalid", re.IGNORECASE)


def open_labels(path: str, *, parameter: str = "zarr_dir", remedy: str = "delete it and run again") -> xr.Dataset:
    """The store at ``path`` as ``xr.open_zarr`` opens it (pixels lazy, DN), its coordinates and
    per-step variables (time, x, y, ``item_ids``, ``n_days``: every variable of one dimension or
    none) read now: one that does not decode is :class:`OutputError` naming ``parameter`` and the
    store, ending with ``remedy``, not a traceback (those arrays are read by zarr-python and
    numcodecs, whose errors are ValueError and RuntimeError)."""
    reading = ""
    try:
        with _quiet():
            ds = xr.open_zarr(path, mask_and_scale=False, consolidated=True, chunks=None)
            for key, variable in ds.variables.items():
                if variable.ndim <= 1:
                    reading = str(key)
                    variable.load()
    except (RuntimeError, ValueError) as e:
        text = one_line(str(e), 120)
        store_path, _, store_name = path.rstrip("/").rpartition("/")
        if not _CODEC_ERROR.search(text):
            raise OutputError(f"{parameter}: cannot read {store_name} of {store_path} ({text})") from None
        reading = reading or _undecodable_label(path)
        what = f"its {reading} does not decode" if reading else "it does not decode"
        raise OutputError(f"{parameter}: {path} is damaged: {what} ({text}); {remedy}") from None
    return ds


def _undecodable_label(path: str) -> str:
    """The first array of one dimension or none in the store at ``path`` that does not read ("" if
    none): which one :func:`open_labels` met, where xarray read it while opening."""
    try:
        with _quiet():
            group = open_group(path, "r")
            for name, array in group.arrays():
                if array.ndim <= 1:
                    try:
                        array[...]
                    except (RuntimeError, ValueError):
                        return name
    except Exception:  # noqa: BLE001  (only for the message: the error raised is the store's)
        pass
    return ""


def _dn_arrays(path: str, names: Iterable[str] | None, mode: str, *, fast: bool) -> dict[str, zarr.Array]:
    # An array keeps the codec pipeline of the configuration it was opened in.
    with zarr.config.set({"codec_pipeline.path": FAST_PIPELINE}) if fast else nullcontext():
        group = open_group(path, mode)
        wanted = list(names) if names is not None else [name for name, _ in group.arrays()]
        return {name: dn_array(group[name]) for name in wanted}


def _has_scale(encoding: Mapping[str, Any]) -> bool:
    """Whether a variable's Zarr encoding holds the reflectance scale filter (stored as uint16 DN)."""
    filters = encoding.get("filters") or ()
    return any(isinstance(f, FixedScaleOffset) or "fixedscaleoffset" in str(f).lower() for f in filters)


def open_dn(path: str, **kwargs: Any) -> xr.Dataset:
    """A store as xarray with its reflectance variables as the stored uint16 DN (0 = no data),
    lazily; the other variables as ``xr.open_zarr(path, mask_and_scale=False)`` gives them.

    For comparing with Sentinel-2 DN (the demo's truth, a COG's pixels) exactly.
    """
    with _quiet():
        ds = xr.open_zarr(path, mask_and_scale=False, **kwargs)
    for name, var in ds.data_vars.items():
        if var.dtype == np.float32 and var.dims[-2:] == ("y", "x") and _has_scale(var.encoding):
            ds[name] = (var * DN_PER_REFLECTANCE).round().astype(np.uint16)
    return ds


class StoreState:
    """An open store: its path, how many steps it has, and the steps already done."""

    def __init__(self, path: str, done: set[int], steps: int = 0) -> None:
        self.path = path
        self.done = done
        self.steps = steps

    def __repr__(self) -> str:
        return f"StoreState({self.path!r}, {self.steps} steps, done={sorted(self.done)})"


def _read_attrs(path: str) -> dict[str, Any] | None:

    try:
        group = open_group(path, "r")
        return _decode(group.attrs.get(ATTR))
    except (FileNotFoundError, KeyError, ValueError, TypeError, zarr.errors.GroupNotFoundError):
        return None


def _encode(record: Mapping[str, Any]) -> str:
    """The store's record (signature, variables, steps done) as one JSON string attribute: netCDF
    (``ds.to_netcdf``) accepts only scalars, lists and strings as attributes, not a nested dict."""
    return json.dumps(record, default=str)


def _decode(value: Any) -> dict[str, Any]:
    """The record from its attribute (a JSON string; a dict in stores written before)."""
    if isinstance(value, str):
        return dict(json.loads(value))
    return dict(value or {})


def _fs(path: str):
    """(filesystem, path in it) for a local path or an fsspec URL (s3://, gs://, az:// ...)."""

    return fsspec.core.url_to_fs(path)


def open_or_create(
    path: str,
    template,
    encoding: Mapping[str, dict],
    signature: Mapping[str, Any],
    *,
    overwrite: bool,
    label: str,
    parameter: str = "zarr_dir",
) -> StoreState:
    """Open the store at ``path`` (a folder or an fsspec URL) to resume it, or create it.

    ``signature`` is a JSON-able description of the request; a store holding another
    request raises :class:`OutputError` naming ``parameter``, the setting that places the store
    (``zarr_dir`` or ``cube_url``), or is replaced when ``overwrite``.
    """
    sig = json.loads(json.dumps(signature, default=str))
    name = path.rstrip("/").rsplit("/", 1)[-1]
    fs, fspath = _fs(path)
    if fs.exists(fspath):
        attrs = _read_attrs(path)
        if attrs is not None and attrs.get("signature") == sig and not differences(attrs["signature"], sig):
            done = _intact(path, attrs, label)
            if done:
                log.info("%s: resuming %s, %d step(s) already written", label, name, len(done))
            return StoreState(path, done, template.sizes["time"])
        if attrs is not None and not overwrite:
            kept = _extend(path, template, attrs, sig)
            if kept is not None:
                kept = _intact(path, {**attrs, "done": sorted(kept)}, label)
                log.info("%s: extending %s to %d step(s) (a longer period); %d step(s) already written are kept",
                         label, name, template.sizes["time"], len(kept))  # fmt: skip
                return StoreState(path, kept, template.sizes["time"])
        if not overwrite:
            if attrs is None:
                what = damaged(path) or "is not a cubemosaic store"
            elif "tiled" in attrs:  # cubemosaic.tiled's group of tile stores
                what = _tiled_refusal(attrs["tiled"], sig)
            else:
                keys = ", ".join(differences(attrs.get("signature") or {}, sig)) or "format"
                what = f"was made for another request (differs in: {keys})"
            raise OutputError(
                f"{parameter}: {path} {what}; choose another {parameter} or set overwrite=true to replace it"
            )
        log.info("%s: replacing %s (overwrite=true)", label, name)
        fs.rm(fspath, recursive=True)
    try:
        create(path, template, encoding, sig)
    except OSError as e:
        raise WriteError(f"{parameter}: cannot create {path}: {e.strerror or one_line(str(e))}") from None
    return StoreState(path, set(), template.sizes["time"])


def _tiled_refusal(tiled: Any, sig: Mapping[str, Any]) -> str:
    """Why an untiled request cannot use a tiled store: its tile size and resolution, so that the
    user can give both (a probe gave tile_size=128 at another resolution, where the area fits one
    tile, and was told only to give tile_size=128), and the resolution named when it differs."""
    grid = (tiled.get("grid") or {}) if isinstance(tiled, dict) else {}
    size, res = grid.get("size"), grid.get("resolution")
    asked = abs(float(sig["transform"][0])) if len(sig.get("transform") or ()) == 6 else None
    if res is not None and asked is not None and abs(float(res) - asked) > 1e-9:
        return f"was made for another request (differs in: resolution; a tiled store of resolution={float(res):g}" + (
            f", tile_size={size})" if size else ")"
        )
    if size:
        return f"holds a tiled store (an area cut into tiles of tile_size={size}: give that tile_size to work on it)"
    return "holds a tiled store (an area cut into tiles)"


#: Signature keys a longer period changes (the cube's days; the monthly store's months and cube days).
EXTENDING_KEYS = frozenset({"days", "months", "cube.days"})


def _extend(path: str, template, attrs: Mapping[str, Any], signature: Mapping[str, Any]) -> set[int] | None:
    """Extend the store at ``path`` to ``template``'s longer time axis when only the period differs
    and the stored steps are the first steps of the new request; the steps to keep, else None.

    The new steps are appended (``to_zarr(append_dim="time")``, metadata only); the per-step
    coordinates of the old steps are rewritten (a month that gained days has new item ids), and
    an old step is kept as done only if its coordinates did not change.
    """

    changed = differences(attrs.get("signature") or {}, signature)
    if not changed or not set(changed) <= EXTENDING_KEYS:
        return None
    with _quiet():
        old = xr.open_zarr(path, consolidated=True, chunks=None)
    n = old.sizes["time"]
    times = template.time.values
    if len(times) < n or not (old.time.values == times[:n]).all():
        return None  # not a later end: the steps would move
    steps = [c for c in template.coords if template[c].dims == ("time",) and c != "time"]
    kept = {
        int(i) for i in attrs.get("done", []) if i < n and all(old[c].values[i] == template[c].values[i] for c in steps)
    }
    head = xr.Dataset({c: template[c].variable[:n] for c in steps})
    with _quiet():
        head.to_zarr(path, region={"time": slice(0, n)}, mode="r+", consolidated=False)
        if len(times) > n:
            tail = template.isel(time=slice(n, None))
            tail = tail.drop_vars([v for v in tail.variables if "time" not in tail[v].dims])  # x, y: already there
            tail.to_zarr(path, append_dim="time", compute=False, consolidated=False)

        group = open_group(path, "r+")
        record = dict(attrs)
        record.update(signature=dict(signature), done=sorted(kept), steps=len(times), complete=False)
        new_attrs = {k: v for k, v in template.attrs.items() if k != ATTR}
        group.attrs.update({**new_attrs, ATTR: _encode(record)})
        zarr.consolidate_metadata(path)
    return kept


#: Signature keys whose order is part of the request: the bands are the COGs' bands in that order
#: (a dict's ``==`` ignores it: a rerun with the bands reordered resumed, its COGs in the old order).
ORDERED_KEYS = frozenset({"bands"})


def differences(old: Mapping[str, Any], new: Mapping[str, Any], prefix: str = "") -> list[str]:
    """The keys whose values differ between two signatures (dotted into a nested signature,
    as the monthly store's ``cube``); the order of an :data:`ORDERED_KEYS` mapping counts."""
    found = []
    for key in sorted(set(old) | set(new)):
        a, b = old.get(key), new.get(key)
        if isinstance(a, Mapping) and isinstance(b, Mapping) and "format" in a and "format" in b:
            found += differences(a, b, f"{prefix}{key}.")  # a store's signature inside another's
        elif a != b or (
            key in ORDERED_KEYS and isinstance(a, Mapping) and isinstance(b, Mapping) and list(a) != list(b)
        ):
            found.append(f"{prefix}{key}")
    return found


def create(path: str, template, encoding: Mapping[str, dict], signature: Mapping[str, Any]) -> None:
    """Write ``template``'s metadata and coordinates (not its data) and the signature.

    A local store is built beside its final path and renamed, so it appears whole or not at
    all; on object storage (no rename) the signature attribute, written with the metadata,
    is what marks it as ours.
    """

    target = path
    if is_local(path):
        target = path + ".partial"
        if Path(target).exists():
            shutil.rmtree(target)
    ds = template.copy()
    # xarray lists variables alphabetically on reading; keep the order they were asked in.
    variables = list(ds.data_vars)
    record = {
        "signature": dict(signature),
        "variables": variables,
        "steps": ds.sizes["time"],
        "done": [],
        "complete": False,
    }
    ds.attrs[ATTR] = _encode(record)
    encoding = dict(encoding)
    for name, coord in ds.coords.items():
        if coord.dims == ("time",) and name != "time" and name not in encoding:
            # Chunked along time as the data are (one step a chunk), in one shard: xarray's
            # ds.chunks / .chunksizes need every variable chunked alike along a dimension.
            encoding[name] = {"chunks": (1,), "shards": (coord.size,)}
    for name in ds.variables:  # coordinates and per-step labels: checked like the pixels (zarr_encoding)
        if "compressors" not in encoding.get(name, {}):
            encoding[name] = {**encoding.get(name, {}), "compressors": [ZstdCodec(level=0), Crc32cCodec()]}
    with _quiet():
        ds.to_zarr(target, mode="w", compute=False, encoding=encoding, consolidated=True, zarr_format=3)
        zarr.consolidate_metadata(target)
    if target != path:
        Path(target).rename(path)


class Target:
    """A Zarr array as a write target (of ``dask.array.store`` on a worker, or of the relay here)
    whose failures are :class:`WriteError` naming the store: a write that fails is never
    mistaken for a read that failed."""

    def __init__(self, array: Any, fast: Any, where: str, parameter: str = "zarr_dir") -> None:
        self.array = array
        self.fast = fast
        self.where = where
        #: The setting that places the store (``zarr_dir``, or ``cube_url`` for a cube elsewhere).
        self.parameter = parameter

    def __dask_tokenize__(self) -> tuple[str, str]:
        """What names it in a dask graph: its store and variable. Without it ``dask.array.store``
        tokenizes each target by pickling both zarr arrays, rebuilding their codec pipelines:
        0.034 s a target, 5% of the year20 benchmark's samples (py-spy)."""
        return ("cubemosaic.store.Target", self.where)

    def __setitem__(self, key: Any, value: Any) -> None:
        try:
            # zarrs leaves out a shard whose chunks are all fill value even when asked to write
            # empty chunks; zarr-python writes it, an object :func:`check_visible` can look for.
            (self.fast if np.asarray(value).any() else self.array)[key] = value
        except Exception as e:  # zarr, fsspec and the OS raise many types; all are write failures
            problem = f"{type(e).__name__}: {one_line(str(e))}"
            raise WriteError(f"{self.parameter}: cannot write {self.where}: {problem}") from None


def writable_arrays(path: str, parameter: str = "zarr_dir") -> dict[str, Target]:
    """The store's arrays by name, open for writing. Writing empty chunks skips zarr's per-chunk
    "all fill value?" scan (~7% of the cube stage), and makes every written shard an object
    :func:`check_visible` can look for. ``parameter`` is the setting that places the store, named
    when a write fails."""
    fast = _dn_arrays(path, None, "r+", fast=True)
    return {
        name: Target(array.with_config({"write_empty_chunks": True}), fast[name], f"{path}/{name}", parameter)
        for name, array in dn_arrays(path, mode="r+").items()
    }


def check_visible(
    path: str, arrays: Mapping[str, Target], steps: Mapping[int, Iterable[str]], parameter: str = "zarr_dir"
) -> None:
    """Every step's first shard of each of its variables is in the store as this process sees it.

    Dask workers write the store themselves unless relayed; workers that do not share this
    process's disk (a pod without the job's volume) write into their own, and the step would
    read back as no data. This finds that at once, from a listing of one object per step.
    """

    for index, names in steps.items():
        for name in names:
            array = arrays[name].array
            key = f"{array.store_path.path}/{array.metadata.encode_chunk_key((index,) + (0,) * (array.ndim - 1))}"
            if not sync(array.store_path.store.exists(key)):
                raise WriteError(
                    f"{parameter}: the Dask workers wrote {path} where this process cannot see it (step {index} "
                    f"of {name} is missing here): they do not share this folder; use object storage both reach "
                    f"({parameter}=s3://...)"
                )


#: A batch of steps to store: step index -> variable -> lazy (1, y, x) array of that step.
Steps = Mapping[int, Mapping[str, Any]]
#: One block of a :class:`Reduction`'s step: the sources' blocks (in their order) -> its arrays by variable.
Reduce = Callable[[list[np.ndarray]], Mapping[str, np.ndarray]]


@dataclass(frozen=True, eq=False)
class Reduction(Mapping[int, Mapping[str, Any]]):
    """Steps computed from another store's arrays, block by block: the block (ys, xs) of step ``i``
    is ``reducer(i)([src[t0:t1, ys, xs] for src in sources])`` with ``(t0, t1) = spans[i]``, one
    (y, x) array for each of ``names``, in blocks of ``shard``.

    As :data:`Steps` (indexed by step) it gives ``lazy(i)``, the same step as lazy arrays whose
    tasks read the sources themselves; the relay instead reads the blocks in this process and
    sends them to the workers to reduce (:class:`~cubemosaic.relay.RelayedWrites`).
    """

    sources: Sequence[Any]
    spans: Mapping[int, tuple[int, int]]
    reducer: Callable[[int], Reduce]
    lazy: Callable[[int], Mapping[str, Any]]
    names: Sequence[str]
    shard: tuple[int, int]

    def __getitem__(self, index: int) -> Mapping[str, Any]:
        if index not in self.spans:
            raise KeyError(index)
        return self.lazy(index)

    def __iter__(self) -> Iterator[int]:
        return iter(self.spans)

    def __len__(self) -> int:
        return len(self.spans)


class Writes(ABC):
    """How the blocks of a batch of steps reach a store: chosen once for a run
    (:func:`cubemosaic.reach.choose_writes`) and used by both stages, the cube's days and the
    composite's months. A failed write raises :class:`WriteError`."""

    #: Whether this process writes what the workers compute (they cannot see the stores).
    relayed: ClassVar[bool]

    @abstractmethod
    def write(self, path: str, steps: Steps, *, parameter: str = "zarr_dir") -> None:
        """Store ``steps`` (lazy arrays, or a :class:`Reduction` of another store) into their time
        steps of the store at ``path``, then hand the batch's freed memory back (:func:`release_memory`).
        A failure names ``parameter``, the setting that places the store."""


@dataclass(frozen=True)
class DirectWrites(Writes):
    """The workers (or the local threaded scheduler) compute and write the store themselves."""

    relayed = False

    def write(self, path: str, steps: Steps, *, parameter: str = "zarr_dir") -> None:
        """One ``dask.array.store`` of every step's arrays: several steps keep every worker thread
        busy, and each task writes whole shards, so no two tasks write the same object. Then
        :func:`check_visible`: steps the workers wrote where this process cannot see them are a
        :class:`WriteError`."""

        arrays = writable_arrays(path, parameter)
        sources, targets, regions = [], [], []
        for index, step in steps.items():
            for name, array in step.items():
                sources.append(array)
                targets.append(arrays[name])
                regions.append((slice(index, index + 1), slice(None), slice(None)))
        da.store(sources, targets, regions=regions, lock=False, compute=True)
        release_memory()
        check_visible(path, arrays, {index: list(step) for index, step in steps.items()}, parameter)


#: The writes of the local threaded scheduler and of workers that see the stores.
DIRECT: Final = DirectWrites()


def note_request(path: str, request: Mapping[str, Any]) -> None:
    """Record in the store the request it was last written for (``request``: JSON-able; the
    asked period and area, which the signature's days and grid do not say exactly), for a later
    stage to compare the user's overrides with (:mod:`cubemosaic.request`). Not part of the
    signature: another request that makes the same store resumes it, and is then the one noted."""
    value = json.loads(json.dumps(request, default=str))
    with _quiet():
        group = open_group(path, "r+")
        attrs = _decode(group.attrs[ATTR])
        if attrs.get("request") == value:
            return
        attrs["request"] = value
        group.attrs[ATTR] = _encode(attrs)
        zarr.consolidate_metadata(path)


def mark_done(path: str, indices: Iterable[int], *, skipped: Sequence[Mapping[str, str]] = ()) -> None:
    """Record steps as written (after their data), and the inputs they skipped; the store is
    ``complete`` when every one of its steps is done.

    The record also holds, per step, the number of shard objects and their bytes as written
    (``written``: one listing of the step's folder per variable), what :func:`damaged_steps`
    compares with at resume and before a later stage reads the store.
    """

    indices = [int(i) for i in indices]
    with _quiet():
        group = open_group(path, "r+")
        attrs = _decode(group.attrs[ATTR])
        if indices:
            written = _written(path, attrs["variables"], indices)
            attrs["written"] = {**attrs.get("written", {}), **{str(i): written.get(i, [0, 0]) for i in indices}}
        attrs["done"] = sorted(set(attrs.get("done", [])) | set(indices))
        steps = attrs.get("steps") or group[attrs["variables"][0]].shape[0]
        attrs["complete"] = len(attrs["done"]) == steps
        if skipped:
            attrs["skipped"] = [*attrs.get("skipped", []), *map(dict, skipped)]
        group.attrs[ATTR] = _encode(attrs)
        zarr.consolidate_metadata(path)


def run_steps(
    state: StoreState,
    write: Callable[[list[int]], Sequence[Mapping[str, str]]],
    *,
    batch_size: int,
    label: str,
    name: Callable[[int], str],
    unit: str = "steps",
) -> None:
    """Write every step ``state``'s store still lacks, ``batch_size`` at a time: ``write(batch)``
    stores the batch's steps and returns the inputs it left out; then the steps are recorded as
    done (an interrupted run resumes after the last recorded batch). Logs each step by ``name``
    once it is recorded, ``written [done/total]`` with the rate and the time left
    (:class:`~cubemosaic.progress.Progress`, a bar as well on a terminal)."""
    todo = [i for i in range(state.steps) if i not in state.done]
    with Progress(state.steps, label, done=len(state.done), unit=unit, verb="written", log=log) as progress:
        for batch in batches(todo, batch_size):
            skipped = write(batch)
            mark_done(state.path, batch, skipped=skipped)
            for i in batch:
                progress.advance(name=name(i))
    if not todo:
        mark_done(state.path, [])  # a store finished by an older version: its record made whole
        log.info("%s: %s already complete", label, state.path)


def batches(todo: Sequence[int], size: int) -> Iterator[list[int]]:
    """``todo`` in consecutive batches of at most ``size``."""
    for start in range(0, len(todo), size):
        yield list(todo[start : start + size])


def record_or_none(path: str) -> dict[str, Any] | None:
    """The cubemosaic attributes of a store, or None where there is none (no store, not ours)."""
    return _read_attrs(path)


def read_attrs(path: str, parameter: str = "zarr_dir") -> dict[str, Any]:
    """The cubemosaic attributes of a store (signature, variables in order, done, complete);
    :class:`OutputError` naming ``parameter`` (the setting that places it) where there is none."""
    attrs = _read_attrs(path)
    if attrs is None:
        raise OutputError(f"{parameter}: {path} {damaged(path) or 'is missing or not a cubemosaic store'}")
    return attrs


def damaged(path: str) -> str | None:
    """Why the store at ``path`` holds no readable record, where its ``zarr.json`` is there but
    is not a JSON document (cut short or overwritten: a probe's truncated tile store was called
    missing), for a refusal to say so; else None."""
    fs, root = _fs(path)
    try:
        with fs.open(f"{root.rstrip('/')}/zarr.json", "rb") as f:
            json.loads(f.read())
    except (UnicodeDecodeError, ValueError) as e:
        return f"is damaged: its zarr.json is not a JSON document ({one_line(str(e), 120)})"
    except Exception:  # noqa: BLE001  (missing, or whatever else the store's filesystem raises)
        pass
    return None


# --------------------------------------------------------------------------- verification
def _shards_per_step(array: zarr.Array) -> int:
    """Shard objects (chunks when unsharded) one time step of ``array`` has: zarr-python writes
    every shard, fill value or not (:class:`Target`), so each is an object."""
    per = array.shards or array.chunks
    return int(np.prod([-(-n // c) for n, c in zip(array.shape[1:], per[1:], strict=True)]))


def _written(path: str, variables: Sequence[str], steps: Iterable[int] | None) -> dict[int, list[int]]:
    """step -> [shard objects, bytes] in the store now, for ``steps`` (one listing of each step's
    folder of each variable) or, with ``None``, every step (one listing per variable)."""
    fs, root = _fs(path)
    root = root.rstrip("/")
    found: dict[int, list[int]] = {}
    prefixes = [f"{root}/{v}/c" for v in variables] if steps is None else [
        f"{root}/{v}/c/{i}" for v in variables for i in steps
    ]  # fmt: skip
    for prefix in prefixes:
        fs.invalidate_cache(prefix)  # object stores' listings are cached; the workers wrote since
        try:
            listing = fs.find(prefix, detail=True)
        except FileNotFoundError:
            continue
        base = f"{root}/"
        for key, info in listing.items():
            parts = key[key.index(base) + len(base) :].split("/") if base in key else []
            if len(parts) < 3 or parts[1] != "c" or not parts[2].isdigit():
                continue
            entry = found.setdefault(int(parts[2]), [0, 0])
            entry[0] += 1
            entry[1] += int(info.get("size") or 0)
    return found


def damaged_steps(path: str, attrs: Mapping[str, Any] | None = None) -> dict[int, str]:
    """The steps recorded as done in the store at ``path`` whose data are not all there, with what
    is wrong: a shard object missing (deleted, or never written), or shards of another size than
    were written (truncated, or replaced). One listing per variable: on the demo's cube
    (18 steps, 4 variables) a few milliseconds.

    A step recorded by a version that did not keep ``written`` is checked for its number of
    shard objects only. Same-size damage inside a shard is not seen here: the crc32c of its index
    and of each chunk (:func:`zarr_encoding`) find it when it is read.
    """
    attrs = attrs if attrs is not None else _read_attrs(path) or {}
    done = sorted(int(i) for i in attrs.get("done", []))
    if not done:
        return {}
    variables = list(attrs["variables"])
    group = open_group(path, "r")
    expected = sum(_shards_per_step(group[v]) for v in variables)
    found = _written(path, variables, None)
    recorded = attrs.get("written", {})
    damaged = {}
    for i in done:
        objects, size = found.get(i, [0, 0])
        record = recorded.get(str(i))
        if objects < expected:
            damaged[i] = f"{expected - objects} of its {expected} shard object(s) are missing"
        elif record is not None and [objects, size] != list(record):
            damaged[i] = f"its shards hold {size} bytes where {record[1]} were written"
    return damaged


def _intact(path: str, attrs: Mapping[str, Any], label: str) -> set[int]:
    """The steps recorded as done whose data are intact (:func:`damaged_steps`); the others are
    logged, and taken out of the store's record so that it no longer says complete."""
    done = {int(i) for i in attrs.get("done", [])}
    damaged = damaged_steps(path, attrs)
    if not damaged:
        return done
    name = path.rstrip("/").rsplit("/", 1)[-1]
    for i, why in sorted(damaged.items()):
        log.warning("%s: step %d of %s is recorded as done but %s; writing it again", label, i + 1, name, why)
    with _quiet():
        group = open_group(path, "r+")
        record = _decode(group.attrs[ATTR])
        record["done"] = sorted(done - set(damaged))
        record["complete"] = False
        group.attrs[ATTR] = _encode(record)
        zarr.consolidate_metadata(path)
    return done - set(damaged)


def check_intact(path: str, parameter: str, remedy: str) -> None:
    """:class:`OutputError` naming ``parameter``, the store and the first damaged step, if any
    (for a stage about to read a store another stage wrote); ``remedy`` says what rewrites it."""
    damaged = damaged_steps(path)
    if damaged:
        i, why = min(damaged.items())
        more = f" (and {len(damaged) - 1} more step(s))" if len(damaged) > 1 else ""
        raise OutputError(f"{parameter}: {path}: step {i + 1} is recorded as done but {why}{more}; {remedy}")
