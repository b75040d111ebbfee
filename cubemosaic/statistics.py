"""The composites: what each statistic produces and how it reduces one month-aligned block.

A statistic declares its outputs as :class:`Layer`\\ s (the variables it adds to
``monthly.zarr``, with dtype, nodata, scale and description; each layer is one COG and one STAC
asset) and reduces a :class:`MonthBlock` (each band's clear observations of one month and
block) to those variables. The composite stage, the monthly store, the export, the quick-looks
and the STAC items are written once over these declarations (odc-stats' plugins and their
``measurements`` are the model), so a new statistic is a class here and its tests.

Statistics (``statistic=``): ``median``; ``p<NN>``, any percentile, as numpy's
``percentile(method=percentile_method)``; ``medoid``, of each pixel's clear observations the one
nearest (Euclidean, across the requested bands) to their band-wise median, every band from that
day, with the day it comes from; ``geomedian``, Geoscience Australia's geometric median with its
three median absolute deviations (the ``geomad`` package, the implementation odc-algo's
``geomedian_with_mads`` uses). The first statistic listed is the month's mosaic (the band names
in ``monthly.zarr``, ``monthly-mosaic-YYYY-MM.tif``, the ``mosaic`` asset); the others add
``<band>_<statistic>`` variables, ``-<statistic>.tif`` COGs and ``<statistic>`` assets.

Provenance layers (``provenance=``): ``count`` always; ``first_day`` and ``last_day`` (day of the
month, 1-31, of the first and last clear observation; 0 none) and ``iqr`` (each band's
inter-quartile range, numpy's linear rule, in reflectance) when asked.
"""

from __future__ import annotations

import functools
import math
import re
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import numpy as np

from . import kernels
from .errors import ConfigError
from .s2 import REFLECTANCE_SCALE

__all__ = [
    "COUNT",
    "COUNT_KEY",
    "DAY",
    "FLOAT",
    "PROVENANCE",
    "REFLECTANCE",
    "Composite",
    "Kind",
    "Layer",
    "MonthBlock",
    "Statistic",
    "composite",
    "count_layer",
    "parse_statistic",
]


@dataclass(frozen=True)
class Kind:
    """How one kind of value is stored and published."""

    #: Name, as written in the monthly store's layer record.
    name: str
    #: The COG's (and, but for reflectance, the store's) data type.
    dtype: str
    #: The no-data value of the COG and the STAC ``raster:bands`` (None: every value is data).
    nodata: float | None
    #: Multiply the COG's integers by this for the physical value (GDAL's band scale).
    scale: float
    #: The value's unit, for STAC ``raster:bands`` (None: unitless).
    unit: str | None
    #: GDAL's overview resampling for its COG.
    overview: str


#: Surface reflectance: uint16 DN (x 10000, offset removed), 0 = none; float32 reflectance in xarray.
REFLECTANCE = Kind("reflectance", "uint16", 0, REFLECTANCE_SCALE, None, "average")
#: A number of observations.
COUNT = Kind("count", "uint16", None, 1.0, None, "nearest")
#: A day of the month, 1-31; 0 = none.
DAY = Kind("day", "uint8", 0, 1.0, "day of month", "nearest")
#: A real number (a spread, a distance) as float32; NaN = none.
FLOAT = Kind("float", "float32", math.nan, 1.0, None, "average")
KINDS = {k.name: k for k in (REFLECTANCE, COUNT, DAY, FLOAT)}


@dataclass(frozen=True)
class Layer:
    """One output: variables of ``monthly.zarr`` that make one COG (their bands, in order) and one
    STAC asset."""

    #: The STAC asset key (``mosaic`` for the first statistic).
    key: str
    #: Appended to ``monthly-mosaic-YYYY-MM`` for the COG's file name (empty for the mosaic).
    suffix: str
    #: The monthly store's variables, one a band of the COG.
    variables: tuple[str, ...]
    #: The COG's band descriptions (the band names, or the variable's name).
    bands: tuple[str, ...]
    kind: Kind
    #: The STAC asset's title.
    title: str
    #: The variables' ``long_name`` (``{band}`` is replaced by the band name).
    description: str
    #: The STAC asset's roles.
    roles: tuple[str, ...] = ("data",)

    def record(self) -> dict[str, Any]:
        """A JSON-able record, kept in the monthly store so the export needs no settings."""
        out = asdict(self)
        out["kind"] = self.kind.name
        return out

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Layer:
        fields = dict(record)
        fields["kind"] = KINDS[fields["kind"]]
        for key in ("variables", "bands", "roles"):
            fields[key] = tuple(fields[key])
        return cls(**fields)


@dataclass(frozen=True)
class MonthBlock:
    """One month of one block: each band's (t, y, x) uint16 DN (0 = no clear observation) and the
    day of the month of each time step."""

    bands: Mapping[str, np.ndarray]
    days: np.ndarray

    @property
    def shape(self) -> tuple[int, int]:
        return next(iter(self.bands.values())).shape[1:]

    @functools.cached_property
    def valid(self) -> np.ndarray:
        """(y, x) uint16: each pixel's number of clear observations, counted once for every band.
        A cube's pixel of a day is clear in every band or in none (:func:`cubemosaic.read.day_block`
        takes a scene's pixel only where all its bands have data), so the first band's count is
        every band's: counting each band again took a third of the median's time."""
        return kernels.valid_count(next(iter(self.bands.values())))


def _day_of(days: np.ndarray, index: np.ndarray) -> np.ndarray:
    """Day of the month (uint8) of each pixel's time ``index``; 0 where the index is -1."""
    lookup = np.zeros(len(days) + 1, dtype=np.uint8)
    lookup[:-1] = days
    return lookup[index]  # -1 picks the trailing 0


@dataclass(frozen=True)
class Statistic:
    """A per-pixel statistic of a month's clear observations. A subclass says what differs: what the
    lineage calls it (``lineage``), what its reflectance layer names it (``what``, ``note``), the
    layers it adds beside that one (``extra``) and how it reduces a month (:meth:`reduce`).

    The texts are templates filled in with the statistic's fields (a percentile's ``{q:g}`` and
    ``{method}``)."""

    name: str

    #: What the lineage says the month's mosaic is, when this statistic makes it.
    lineage: ClassVar[str]
    #: What it is, as its reflectance layer's title and variables' ``long_name`` say (``median``).
    what: ClassVar[str]
    #: Said in parentheses after that title (how it is computed), if anything.
    note: ClassVar[str] = ""
    #: Its layers after the reflectance one (the same whatever the bands).
    extra: ClassVar[tuple[Layer, ...]] = ()
    #: The fewest bands it is defined on, and why (a statistic across the bands needs two).
    min_bands: ClassVar[tuple[int, str]] = (1, "")

    def _text(self, template: str) -> str:
        return template.format(**asdict(self))

    def summary(self) -> str:
        """What the lineage says the month's mosaic is."""
        return self._text(self.lineage)

    def layers(self, bands: Sequence[str], primary: bool) -> tuple[Layer, ...]:
        """Its reflectance layer (the month's mosaic when ``primary``: the band names, the ``mosaic``
        asset; else ``<band>_<name>`` and ``-<name>``), then its ``extra`` layers."""
        what, note = self._text(self.what), self._text(self.note)
        title = f"Monthly {what} surface reflectance x 10000" + (f" ({note})" if note else "")
        description, roles = f"{{band}} monthly {what} surface reflectance", ("data", "reflectance")
        if primary:
            main = Layer("mosaic", "", tuple(bands), tuple(bands), REFLECTANCE, title, description, roles)
        else:
            variables = tuple(f"{b}_{self.name}" for b in bands)
            main = Layer(self.name, f"-{self.name}", variables, tuple(bands), REFLECTANCE, title, description, roles)
        return (main, *self.extra)

    def reduce(self, month: MonthBlock, layers: Sequence[Layer]) -> dict[str, np.ndarray]:
        """The (y, x) arrays of this statistic's ``layers`` (as :meth:`layers` made them): unless a
        subclass says otherwise, its one reflectance layer, each band on its own (:meth:`reduce_band`)."""
        (layer,) = layers
        return {
            v: self.reduce_band(month.bands[b], month.valid) for v, b in zip(layer.variables, layer.bands, strict=True)
        }

    def reduce_band(self, block: np.ndarray, valid: np.ndarray) -> np.ndarray:
        """One band's (y, x) uint16 DN from its (t, y, x) DN (0 = no clear observation) and each
        pixel's number of clear observations ``valid`` (:attr:`MonthBlock.valid`)."""
        raise NotImplementedError


@dataclass(frozen=True)
class Median(Statistic):
    name: str = "median"

    lineage = "the per-pixel median of the clear observations of the month"
    what = "median"

    def reduce_band(self, block, valid):
        return kernels.median_block(block, valid)[0]


@dataclass(frozen=True)
class Percentile(Statistic):
    q: float = 50.0
    method: str = "linear"

    lineage = "the per-pixel {q:g}th percentile (numpy's method={method}) of the clear observations of the month"
    what = "{q:g}th percentile"
    note = "numpy method={method}"

    def reduce_band(self, block, valid):
        return kernels.to_dn(kernels.percentile_block(block, self.q, self.method, valid))


@dataclass(frozen=True)
class Medoid(Statistic):
    name: str = "medoid"

    lineage = (
        "per pixel, the clear observation of the month nearest (Euclidean, across the bands) to their band-wise median"
    )
    what = "medoid"
    note = "every band of a pixel from one day"
    extra = (
        Layer(
            "medoid_day",
            "-medoid-day",
            ("medoid_day",),
            ("medoid_day",),
            DAY,
            "Day of the month (1-31) of the observation the medoid takes; 0 = none",
            "day of the month of the medoid's observation",
            ("metadata", "date"),
        ),
    )

    def reduce(self, month, layers):
        main, day = layers
        values, chosen = kernels.medoid_block([month.bands[b] for b in main.bands])
        out = dict(zip(main.variables, values, strict=True))
        out[day.variables[0]] = _day_of(month.days, chosen)
        return out


#: The geometric median's stopping rule (geomad's Weiszfeld iteration, on reflectance 0-1):
#: odc-algo's ``geomedian_with_mads`` defaults.
GEOMEDIAN_EPS = 1e-6
GEOMEDIAN_MAXITERS = 1000


@dataclass(frozen=True)
class Geomedian(Statistic):
    name: str = "geomedian"

    lineage = "the per-pixel geometric median (geomad) of the clear observations of the month"
    what = "geometric median"
    note = "geomad"
    min_bands = (2, "it is a median across the bands")
    extra = (
        Layer(
            "mads",
            "-mads",
            ("emad", "smad", "bcmad"),
            ("emad", "smad", "bcmad"),
            FLOAT,
            "Median absolute deviations from the geometric median: Euclidean (reflectance), spectral "
            "(cosine distance), Bray-Curtis (geomad's emad, smad, bcmad)",
            "median absolute deviation from the geometric median",
            ("data", "spread"),
        ),
    )

    def reduce(self, month, layers):
        import geomad  # compiled; imported where used so the package imports without it

        main, mads = layers
        stack = np.stack([month.bands[b] for b in main.bands], axis=-1)  # (t, y, x, bands)
        clear = (stack != 0).all(axis=-1)
        x = stack.astype(np.float32) * np.float32(REFLECTANCE_SCALE)
        x[~clear] = np.nan
        x = np.ascontiguousarray(np.moveaxis(x, 0, -1))  # (y, x, bands, t), geomad's layout
        has = clear.any(axis=0)
        gm = geomad.nangeomedian_pcm(x, maxiters=GEOMEDIAN_MAXITERS, eps=GEOMEDIAN_EPS, num_threads=1)
        out = {}
        for k, v in enumerate(main.variables):
            out[v] = np.where(has, kernels.to_dn(np.nan_to_num(gm[..., k], nan=0.0) / REFLECTANCE_SCALE), 0).astype(
                np.uint16
            )
        for v, mad in zip(mads.variables, (geomad.emad_pcm, geomad.smad_pcm, geomad.bcmad_pcm), strict=True):
            with warnings.catch_warnings():  # pixels without a clear observation: NaN, as meant
                warnings.simplefilter("ignore", RuntimeWarning)
                values = np.asarray(mad(x, gm, num_threads=1), dtype=np.float32)
            out[v] = np.where(has, values, np.float32(np.nan))
        return out


#: The optional provenance layers (``provenance=``); ``count`` is always written.
PROVENANCE = ("first_day", "last_day", "iqr")


#: The count layer's asset key and variable: written with every composite.
COUNT_KEY = "count"


def _count_layer() -> Layer:
    return Layer(
        COUNT_KEY,
        f"-{COUNT_KEY}",
        (COUNT_KEY,),
        (COUNT_KEY,),
        COUNT,
        "Clear observations in the month",
        "number of clear observations in the month",
        ("data", "count"),
    )


def _provenance_layer(name: str, bands: Sequence[str]) -> Layer:
    if name == "iqr":
        return Layer(
            "iqr",
            "-iqr",
            tuple(f"{b}_iqr" for b in bands),
            tuple(bands),
            FLOAT,
            "Inter-quartile range (75th - 25th percentile, numpy's linear rule) of the clear observations, reflectance",
            "{band} inter-quartile range of the month's clear surface reflectance",
            ("data", "spread"),
        )
    which = name.split("_")[0]
    return Layer(
        name,
        f"-{which}-day",
        (name,),
        (name,),
        DAY,
        f"Day of the month (1-31) of the {which} clear observation; 0 = none",
        f"day of the month of the {which} clear observation",
        ("metadata", "date"),
    )


def _reduce_provenance(month: MonthBlock, layer: Layer) -> dict[str, np.ndarray]:
    if layer.key == COUNT_KEY:
        return {COUNT_KEY: month.valid}
    if layer.key == "iqr":
        out = {}
        for v, b in zip(layer.variables, layer.bands, strict=True):
            block = month.bands[b]
            spread = kernels.percentile_block(block, 75.0) - kernels.percentile_block(block, 25.0)
            out[v] = (spread * REFLECTANCE_SCALE).astype(np.float32)
        return out
    clear = kernels.clear_mask(list(month.bands.values()))
    first, last = kernels.first_last_block(clear.view(np.uint8))
    return {layer.variables[0]: _day_of(month.days, first if layer.key == "first_day" else last)}


_PERCENTILE = re.compile(r"^p(\d+(?:\.\d+)?)$")


def parse_statistic(name: str, method: str = "linear") -> Statistic:
    """A statistic by its name: ``median``, ``medoid``, ``geomedian`` or ``p<NN>`` (0 <= NN <= 100).

    Raises ConfigError saying what is accepted."""
    name = str(name).strip().lower()
    if name == "median":
        return Median()
    if name == "medoid":
        return Medoid()
    if name == "geomedian":
        return Geomedian()
    match = _PERCENTILE.match(name)
    if match and 0 <= float(match.group(1)) <= 100:
        if method not in kernels.PERCENTILE_METHODS:
            raise ConfigError("percentile_method", f"{method!r} is not one of {', '.join(kernels.PERCENTILE_METHODS)}")
        return Percentile(name=name, q=float(match.group(1)), method=method)
    raise ConfigError("statistic", f"{name!r} is not one of median, p<NN> (0-100, e.g. p25), medoid, geomedian")


@dataclass(frozen=True)
class Composite:
    """What the composite stage makes of each month: its statistics (the first is the mosaic) and
    provenance layers, over the requested bands."""

    bands: tuple[str, ...]
    statistics: tuple[Statistic, ...] = (Median(),)
    provenance: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        names = [s.name for s in self.statistics]
        if not names:
            raise ConfigError("statistic", "at least one statistic is needed, e.g. statistic=median")
        if len(set(names)) != len(names):
            raise ConfigError("statistic", f"{names} names a statistic twice")
        unknown = [p for p in self.provenance if p not in PROVENANCE]
        if unknown:
            raise ConfigError("provenance", f"{unknown} not among {', '.join(PROVENANCE)} (count is always written)")
        for stat in self.statistics:
            fewest, why = stat.min_bands
            if len(self.bands) < fewest:
                raise ConfigError("statistic", f"{stat.name} needs at least {fewest} bands ({why})")
        clash = {f"{b}_{n}" for b in self.bands for n in names} & set(self.bands)
        if clash:
            raise ConfigError("bands", f"{sorted(clash)} would name two outputs alike")

    @property
    def is_default(self) -> bool:
        """Today's outputs: the median alone, the count."""
        return [s.name for s in self.statistics] == ["median"] and not self.provenance

    def _planned(self) -> list[tuple[Statistic | None, tuple[Layer, ...]]]:
        planned: list[tuple[Statistic | None, tuple[Layer, ...]]] = [
            (stat, stat.layers(self.bands, i == 0)) for i, stat in enumerate(self.statistics)
        ]
        planned.append((None, (_count_layer(),)))
        planned += [(None, (_provenance_layer(p, self.bands),)) for p in self.provenance]
        return planned

    def layers(self) -> tuple[Layer, ...]:
        """Every output layer: the mosaic first, the count after the statistics, then provenance."""
        return tuple(layer for _, layers in self._planned() for layer in layers)

    def reduce(self, month: MonthBlock) -> dict[str, np.ndarray]:
        """Every variable of every layer for one month-aligned block, as (y, x) arrays of its kind's dtype."""
        out: dict[str, np.ndarray] = {}
        for stat, layers in self._planned():
            if stat is not None:
                out.update(stat.reduce(month, layers))
            else:
                out.update(_reduce_provenance(month, layers[0]))
        return out

    def record(self) -> dict[str, Any]:
        """What the monthly store keeps of the composite: statistic names, method, layers."""
        methods = sorted({s.method for s in self.statistics if isinstance(s, Percentile)})
        return {
            "statistics": [s.name for s in self.statistics],
            "percentile_method": methods[0] if methods else None,
            "lineage": self.statistics[0].summary(),
            "layers": [layer.record() for layer in self.layers()],
        }


def count_layer(layers: Sequence[Layer]) -> Layer:
    """The count layer among ``layers``."""
    return next(layer for layer in layers if layer.key == COUNT_KEY)


def composite(
    bands: Sequence[str],
    statistics: Sequence[str] = ("median",),
    provenance: Sequence[str] = (),
    percentile_method: str = "linear",
) -> Composite:
    """A :class:`Composite` from names (``statistic=`` and ``provenance=`` as typed). Raises ConfigError."""
    return Composite(
        tuple(bands),
        tuple(parse_statistic(s, percentile_method) for s in statistics),
        tuple(dict.fromkeys(str(p).strip().lower() for p in provenance)),
    )
