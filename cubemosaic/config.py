"""Configuration: Hydra structured-config schemas and their validation.

The schemas (:class:`Config`, :class:`CatalogConf`, :class:`~cubemosaic.clusterspec.ClusterSpec`) are registered
in Hydra's ConfigStore so a misspelt key or a value of the wrong type is refused when
the command line is composed. :func:`to_settings` then turns the loose config into a
frozen, typed :class:`Settings` once, at the edge; library code never sees the Hydra
object. All checks here run before any network call.
"""

from __future__ import annotations

import datetime as dt
import math
import os
import shutil
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from .aoi import parse_aoi
from .clusterspec import ClusterSpec, check_spec
from .errors import ConfigError
from .lock import writer_of
from .s2 import DEFAULT_MASK_CLASSES
from .statistics import composite
from .urls import MEMORY_SCHEMES, is_local, local_path, scheme

__all__ = [
    "CatalogConf",
    "Config",
    "Settings",
    "STAGES",
    "Stage",
    "conf_dir",
    "register_schemas",
    "to_settings",
]

#: The one list of stages: each value ``stage=`` takes and the steps it runs, in order (``mosaic``
#: is composite + export, the CWL workflow's second step). The configuration checks ``stage``
#: against it; the pipeline runs its steps.
STAGES: dict[str, tuple[str, ...]] = {
    "cube": ("cube",),
    "composite": ("composite",),
    "export": ("export",),
    "mosaic": ("composite", "export"),
    "all": ("cube", "composite", "export"),
    # Searches and plans (scenes, tiles, bytes, memory), runs no step and writes nothing.
    "plan": (),
}
#: A value of ``stage`` (the keys of :data:`STAGES`), for type checkers.
Stage = Literal["cube", "composite", "export", "mosaic", "all", "plan"]
CLUSTER_KINDS: tuple[str, ...] = ("auto", "local", "gateway")
SIGNERS: tuple[str, ...] = ("none", "planetary_computer")
RESAMPLING: tuple[str, ...] = ("nearest", "average", "bilinear", "cubic", "mode", "min", "max")
#: The largest mask_dilation accepted (metres): beyond it a cloud masks most of a scene.
MAX_DILATION_M = 2000.0
#: The smallest non-zero mask_dilation (metres): one pixel of the 20 m SCL.
MIN_DILATION_M = 20.0
#: The embedded synthetic archives, generated on first use (``catalog.url: null`` with these
#: names): ``demo`` one MGRS-like tile, ``demo_region`` overlapping tiles of two UTM zones.
DEMO_CATALOGS = ("demo", "demo_region")


# --------------------------------------------------------------------------- schemas
@dataclass
class CatalogConf:
    """Where scenes come from (group ``catalog``)."""

    name: str = "planetary_computer"
    #: A STAC API root URL, or a path/URL of a static ItemCollection or catalog JSON.
    #: ``null`` with ``name: demo`` (or ``demo_region``) means that embedded demo archive.
    url: str | None = None
    collection: str = "sentinel-2-l2a"
    #: How asset hrefs are signed before reading: ``none`` or ``planetary_computer``.
    sign: str = "none"
    #: GDAL configuration options for every read of this catalog's assets (e.g. the S3 endpoint
    #: of Copernicus Data Space); credentials stay in the environment (AWS_ACCESS_KEY_ID ...).
    gdal: dict[str, str] = field(default_factory=dict)


@dataclass
class Config:
    """The whole command line: ``python -m cubemosaic key=value ...``."""

    catalog: CatalogConf = field(default_factory=CatalogConf)
    cluster: ClusterSpec = field(default_factory=ClusterSpec)
    start_date: str | None = None
    end_date: str | None = None
    #: [min_lon,min_lat,max_lon,max_lat], a GeoJSON file, or a WKT POLYGON/MULTIPOLYGON (WGS84).
    aoi: Any = None
    bands: list[str] = field(default_factory=lambda: ["red", "green", "blue", "nir"])
    collection: str | None = None
    #: Metres; an int stays an int (``${resolution}`` in a path reads as typed: 20, not 20.0).
    resolution: int | float = 20
    crs: str | None = None
    max_items: int | None = None
    max_cloud_cover: float = 100.0
    mask_classes: list[int] = field(default_factory=lambda: list(DEFAULT_MASK_CLASSES))
    #: Metres by which clouds, cirrus and cloud shadows are grown in each scene's mask (0: none).
    mask_dilation: float = 0.0
    resampling: str = "nearest"
    #: The composites: ``median``, ``p<NN>`` (e.g. ``p25``), ``medoid``, ``geomedian``, or a list of
    #: them (``[median,p25]``); the first is the month's mosaic.
    statistic: Any = "median"
    #: numpy's ``percentile`` method for the ``p<NN>`` statistics.
    percentile_method: str = "linear"
    #: Per-pixel provenance layers beside the count: ``first_day``, ``last_day``, ``iqr``.
    provenance: list[str] = field(default_factory=list)
    #: A read that still fails after retries: ``fail`` (stop, naming the asset) or ``skip``
    #: (leave the scene out, list it in the log and the month's STAC item).
    on_read_error: str = "fail"
    chunk_size: int = 1024
    #: Pixels a side of a tile, the work unit of a large area (a grid wider or higher is cut into
    #: tiles of a fixed grid anchored to the CRS's origin; one that fits is one unit, untiled).
    tile_size: int = 4096
    output_dir: str = "output"
    #: Where cube.zarr and monthly.zarr go: ``null`` = output_dir, or an fsspec URL (s3://, gs://, az://).
    zarr_dir: str | None = None
    #: Read the cube from here instead of ``{zarr_dir}/cube.zarr`` (e.g. a CWL step's input Directory).
    cube_url: str | None = None
    stage: str = "all"
    overwrite: bool = False
    debug: bool = False


def register_schemas() -> None:
    """Register the schemas in Hydra's ConfigStore (``config.yaml`` extends ``cubemosaic_schema``)."""
    # Hydra imported where the schemas are registered (the command line): a library user builds
    # Settings with to_settings and never needs it.
    from hydra.core.config_store import ConfigStore

    cs = ConfigStore.instance()
    cs.store(name="cubemosaic_schema", node=Config)


def conf_dir() -> Path:
    """The Hydra config folder: inside the installed package, or ``conf/`` beside it in a checkout."""
    here = Path(__file__).resolve().parent
    for candidate in (here / "conf", here.parent / "conf"):
        if (candidate / "config.yaml").is_file():
            return candidate
    raise FileNotFoundError("cubemosaic's config folder (conf/config.yaml) is missing from the install")


# --------------------------------------------------------------------------- settings
@dataclass(frozen=True)
class Settings:
    """Validated job settings; every field strictly typed."""

    #: Catalog name (``planetary_computer``, ``earth_search``, ``cdse``, ``demo`` or a user's own).
    catalog: str
    #: STAC API URL or static file path/URL; ``None`` only for the demo before it is built.
    catalog_url: str | None
    collection: str
    sign: str
    #: GDAL configuration options for reading the catalog's assets, as (name, value) pairs.
    gdal: tuple[tuple[str, str], ...]
    #: Search period and area; ``None`` only for stages that start from a written store.
    start_date: dt.date | None
    end_date: dt.date | None
    #: (min_lon, min_lat, max_lon, max_lat) in WGS84: the search box and the grid's extent.
    aoi: tuple[float, float, float, float] | None
    #: A polygon AOI as WKT (WGS84); pixels outside it are no data. ``None`` for a box.
    aoi_wkt: str | None
    bands: tuple[str, ...]
    resolution: float
    crs: str | None
    max_items: int | None
    max_cloud_cover: float
    mask_classes: tuple[int, ...]
    mask_dilation: float
    resampling: str
    #: The statistics, in order (the first is the mosaic), and the percentile method.
    statistics: tuple[str, ...]
    percentile_method: str
    #: Provenance layers beside the count.
    provenance: tuple[str, ...]
    on_read_error: str
    chunk_size: int
    tile_size: int
    output_dir: Path
    #: Folder or fsspec URL of the Zarr stores (``output_dir`` unless set).
    zarr_dir: str
    #: The cube store: ``{zarr_dir}/cube.zarr`` unless set.
    cube_url: str
    stage: str
    overwrite: bool
    cluster: ClusterSpec
    debug: bool
    #: The keys the user gave (the command line's overrides): a stage that starts from a written
    #: store refuses those that differ from what shaped it (:mod:`cubemosaic.request`).
    given: frozenset[str] = frozenset()


def _parse_date(name: str, value: Any) -> dt.date:
    if value is None or value == "":
        raise ConfigError(name, f"required, as YYYY-MM-DD (e.g. {name}=2021-01-01)")
    if isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(str(value))
    except ValueError:
        raise ConfigError(name, f"{value!r} is not a date as YYYY-MM-DD") from None


#: Each folder of the paths a run is about to create (it did not exist when the run first
#: named it): :func:`remove_created` takes away those a refused run left empty.
CREATED: dict[Path, None] = {}

#: What a run leaves in a folder it only locked: such a folder counts as empty.
_LOCK_FILES = (".cubemosaic.lock",)


def note_created(path: str | os.PathLike[str]) -> None:
    """Remember each missing folder of ``path`` (absolute), before anything creates it. A folder
    seen before keeps its first record: a folder this run made is not the user's."""
    path = Path(path).expanduser().absolute()
    for folder in (path, *path.parents):
        if folder.exists():
            break
        CREATED.setdefault(folder, None)


def remove_created(litter: Sequence[str] = ()) -> list[Path]:
    """Remove each folder :func:`note_created` recorded that holds nothing but empty folders, lock
    files and files named in ``litter`` (a refused run's, a sweep's top folder its jobs did not
    use), deepest first; a folder with anything else in it is kept. Returns the removed."""
    removed = []
    for folder in sorted(CREATED, key=lambda f: len(f.parts), reverse=True):
        if folder.is_dir() and _only_locks(folder, litter):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(folder)
    CREATED.clear()
    return removed


def _only_locks(folder: Path, litter: Sequence[str] = ()) -> bool:
    for _, _, files in os.walk(folder):
        if any(name not in _LOCK_FILES and name not in litter for name in files):
            return False
    return True


def _check_output_dir(value: str | os.PathLike[str], parameter: str = "output_dir") -> Path:
    """The folder ``parameter`` names (a path or a ``file://`` URL), made sure it can be written
    (creates it, noted for :func:`remove_created`; writes nothing else)."""
    value = os.fspath(value)
    if not is_local(value):
        raise ConfigError(parameter, f"{value} must be a local folder")
    path = Path(local_path(value)).expanduser().absolute()
    if path.exists() and not path.is_dir():
        raise ConfigError(parameter, f"{path} exists and is not a folder")
    note_created(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path, prefix=".write-test-"):
            pass
    except OSError as e:
        raise ConfigError(parameter, f"{path} is not writable ({e.strerror or e})") from None
    return path


def _zarr_dir(value: str | None, output_dir: Path) -> str:
    if not value:
        return str(output_dir)
    if is_local(value):  # a plain path or file:// URL: the same folder either way
        return str(_check_output_dir(value, "zarr_dir"))
    # fsspec imported where object storage is named (its registry of protocols): about half a
    # second of the command line's start-up otherwise.
    import fsspec

    protocol = scheme(value)
    if protocol in MEMORY_SCHEMES:
        raise ConfigError(
            "zarr_dir",
            f"{protocol}:// keeps the stores in this process only, lost when the run ends; "
            "use a folder or object storage (s3://...)",
        )
    try:
        fsspec.get_filesystem_class(protocol)
    except (ImportError, ValueError) as e:
        raise ConfigError("zarr_dir", f"{protocol}:// is not available ({str(e).splitlines()[0]})") from None
    return value.rstrip("/")


def _cube_url(value: str | None, zarr_dir: str, stage: str) -> str:
    if not value:
        return f"{zarr_dir}/cube.zarr"
    if is_local(value):
        path = Path(local_path(value)).expanduser().absolute()
        reads_given_cube = "composite" in STAGES[stage] and "cube" not in STAGES[stage]
        if reads_given_cube and not (path / "zarr.json").is_file():
            writer = writer_of(path.parent)
            if writer:
                raise ConfigError(
                    "cube_url",
                    f"{path} is being written by another cubemosaic run ({writer}); wait for it to end, then run again",
                )
            raise ConfigError("cube_url", f"{path} is not a Zarr store (no zarr.json)")
        return str(path)
    return value.rstrip("/")


def _names(value: Any) -> tuple[str, ...]:
    """A name or a list of names as typed (``p25``, ``[median,p25]``)."""
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.strip("[]").split(",") if v.strip())
    return tuple(str(v).strip() for v in value)


def _composites(cfg: Any, bands: tuple[str, ...]) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """``statistic`` and ``provenance`` checked (names, method, clashes with band names)."""
    statistics = tuple(s.lower() for s in _names(cfg.statistic))
    provenance = tuple(p.lower() for p in _names(cfg.provenance))
    composite(bands, statistics, provenance, str(cfg.percentile_method))  # raises ConfigError
    return statistics, provenance


#: A tile's side in pixels: at least two COG blocks; at most what one unit's stores and COGs hold
#: comfortably (32768 px: a 2 GB uint16 band a month).
MIN_TILE_SIZE = 128
MAX_TILE_SIZE = 32768

#: Pixels the output grid needs on each side: a raster one pixel high gets overviews that fail
#: COG validation (rio-cogeo: "Invalid Decimation"), and a mosaic one pixel wide is most likely a
#: slip in ``aoi`` or ``resolution`` anyway.
MIN_GRID_PIXELS = 2


def _extent_m(bbox: tuple[float, float, float, float]) -> tuple[float, float]:
    """(width, height) in metres of a lon/lat box, on the sphere at its middle latitude (within
    1 % of any UTM zone's, which is all a check against a few pixels needs)."""
    x0, y0, x1, y1 = bbox
    metres_per_degree = 6371008.8 * math.pi / 180
    return (x1 - x0) * metres_per_degree * math.cos(math.radians((y0 + y1) / 2)), (y1 - y0) * metres_per_degree


def check_grid_size(extent_m: tuple[float, float], resolution: float, shape: tuple[int, int] | None = None) -> None:
    """:class:`ConfigError` on ``aoi`` when the output grid would be under :data:`MIN_GRID_PIXELS`
    on a side: before the search from the area's extent (an area over one pixel wide always spans
    two once its edges are put on the pixel grid), after it from the grid's ``shape`` (rows, columns)."""
    width, height = extent_m
    small = min(shape) < MIN_GRID_PIXELS if shape is not None else min(width, height) * 1.02 < resolution
    if small:
        grid = f" (a grid of {shape[1]} x {shape[0]} pixels)" if shape is not None else ""
        raise ConfigError(
            "aoi",
            f"the area is {width:.0f} m x {height:.0f} m{grid}, under {MIN_GRID_PIXELS} pixels on a side at "
            f"resolution={resolution:g}; enlarge it or lower resolution",
        )


def _cluster_spec(cluster: Any) -> ClusterSpec:
    """The ``cluster`` node as a :class:`ClusterSpec` (a composed DictConfig, or one already)."""
    if isinstance(cluster, ClusterSpec):
        return cluster
    from omegaconf import OmegaConf  # a composed config comes with Hydra: only then is it needed

    return OmegaConf.to_object(cluster)


def to_settings(cfg: Any) -> Settings:
    """Validate a composed config (a :class:`Config`-shaped mapping) into :class:`Settings`."""
    catalog = cfg.catalog
    url = catalog.url
    if cfg.stage not in STAGES:
        raise ConfigError("stage", f"{cfg.stage!r} is not one of {', '.join(STAGES)}")
    searches = "cube" in STAGES[cfg.stage] or cfg.stage == "plan"  # the others start from a written store
    if searches and catalog.name not in DEMO_CATALOGS and not url:
        raise ConfigError("catalog.url", "required: a STAC API URL or a static ItemCollection/catalog file")
    if url and is_local(url) and not Path(local_path(url)).expanduser().exists():
        raise ConfigError("catalog.url", f"{url} is neither a URL nor an existing file")
    if catalog.sign not in SIGNERS:
        raise ConfigError("catalog.sign", f"{catalog.sign!r} is not one of {', '.join(SIGNERS)}")

    start = end = aoi = None
    if searches or cfg.start_date or cfg.end_date:
        start = _parse_date("start_date", cfg.start_date)
        end = _parse_date("end_date", cfg.end_date)
        if end < start:
            raise ConfigError("end_date", f"{end} is before start_date {start}")
    if searches or cfg.aoi is not None:
        aoi = parse_aoi(cfg.aoi)

    bands = tuple(str(b) for b in (cfg.bands or ()))
    if not bands:
        raise ConfigError("bands", "at least one band is needed, e.g. bands=[red,green,blue,nir]")
    if len(set(b.lower() for b in bands)) != len(bands):
        raise ConfigError("bands", f"{list(bands)} names a band twice")
    if any(b.lower() == "scl" for b in bands):
        raise ConfigError("bands", "SCL is the cloud mask, not an output band")

    if not cfg.resolution > 0:
        raise ConfigError("resolution", f"must be a positive number of metres, got {cfg.resolution}")
    if aoi is not None:
        check_grid_size(_extent_m(aoi.bbox), float(cfg.resolution))
    if cfg.max_items is not None and cfg.max_items < 1:
        raise ConfigError("max_items", f"must be at least 1 (or null for no limit), got {cfg.max_items}")
    if not 0 <= cfg.max_cloud_cover <= 100:
        raise ConfigError("max_cloud_cover", f"must lie in 0-100 (percent), got {cfg.max_cloud_cover}")
    mask = tuple(int(c) for c in cfg.mask_classes)
    if any(not 0 <= c <= 11 for c in mask):
        raise ConfigError("mask_classes", f"SCL classes are 0-11, got {list(mask)}")
    if not 0 <= cfg.mask_dilation <= MAX_DILATION_M:
        raise ConfigError("mask_dilation", f"must lie in 0-{MAX_DILATION_M:g} metres, got {cfg.mask_dilation}")
    if 0 < cfg.mask_dilation < MIN_DILATION_M:
        raise ConfigError(
            "mask_dilation",
            f"{cfg.mask_dilation:g} m is less than one SCL pixel ({MIN_DILATION_M:g} m): use 0 or at least {MIN_DILATION_M:g}",
        )
    if cfg.resampling not in RESAMPLING:
        raise ConfigError("resampling", f"{cfg.resampling!r} is not one of {', '.join(RESAMPLING)}")
    statistics, provenance = _composites(cfg, bands)
    if cfg.on_read_error not in ("fail", "skip"):
        raise ConfigError("on_read_error", f"{cfg.on_read_error!r} is not one of fail, skip")
    if cfg.chunk_size < 64 or cfg.chunk_size > 8192:
        raise ConfigError("chunk_size", f"must lie in 64-8192 pixels, got {cfg.chunk_size}")
    if cfg.tile_size < MIN_TILE_SIZE or cfg.tile_size > MAX_TILE_SIZE:
        raise ConfigError("tile_size", f"must lie in {MIN_TILE_SIZE}-{MAX_TILE_SIZE} pixels, got {cfg.tile_size}")
    if cfg.crs is not None:
        from odc.geo import CRS  # only for a crs= given: odc-geo imports pyproj, slow to import

        try:
            crs = CRS(cfg.crs)
        except Exception:  # pyproj raises several types for a bad CRS string
            raise ConfigError("crs", f"{cfg.crs!r} is not a CRS (e.g. crs=EPSG:32610)") from None
        if not crs.projected:  # geographic (degrees), or geocentric
            raise ConfigError(
                "crs",
                f"{cfg.crs} is not projected ({'degrees' if crs.geographic else 'geocentric'}) and resolution "
                "is in metres: choose a projected CRS "
                "(the AOI's UTM zone, e.g. EPSG:32610, or leave crs unset to get it)",
            )
        units = {(axis.unit_name, axis.unit_conversion_factor) for axis in crs.proj.axis_info}
        if any(factor != 1.0 for _, factor in units):  # feet, kilometres: resolution would be read in them
            raise ConfigError(
                "crs",
                f"{cfg.crs} measures in {', '.join(sorted(name for name, _ in units))}, and resolution and "
                "mask_dilation are in metres: choose a CRS in metres (the AOI's UTM zone, e.g. EPSG:32610, "
                "or leave crs unset to get it)",
            )
    cluster = cfg.cluster
    if cluster.kind not in CLUSTER_KINDS:
        raise ConfigError("cluster.kind", f"{cluster.kind!r} is not one of {', '.join(CLUSTER_KINDS)}")
    for key in ("n_workers", "threads_per_worker"):
        value = getattr(cluster, key)
        if value is not None and value < 1:
            raise ConfigError(f"cluster.{key}", f"must be at least 1, got {value}")
    for key in ("worker_cores", "worker_cores_limit", "max_cores"):
        value = getattr(cluster, key)
        if value is not None and value <= 0:
            raise ConfigError(f"cluster.{key}", f"must be positive, got {value}")
    spec = _cluster_spec(cluster)
    check_spec(spec)
    if cfg.stage == "plan":  # writes nothing: the folders are named, not made or tried
        output_dir = Path(local_path(os.fspath(cfg.output_dir))).expanduser().absolute()
        zarr_dir = str(cfg.zarr_dir).rstrip("/") if cfg.zarr_dir else str(output_dir)
    else:
        output_dir = _check_output_dir(cfg.output_dir)
        zarr_dir = _zarr_dir(cfg.zarr_dir, output_dir)

    return Settings(
        catalog=catalog.name,
        catalog_url=url,
        collection=cfg.collection or catalog.collection,
        sign=catalog.sign,
        gdal=tuple((str(k), str(v)) for k, v in (catalog.gdal or {}).items()),
        start_date=start,
        end_date=end,
        aoi=aoi.bbox if aoi else None,
        aoi_wkt=aoi.wkt if aoi else None,
        bands=bands,
        resolution=float(cfg.resolution),
        crs=cfg.crs,
        max_items=cfg.max_items,
        max_cloud_cover=float(cfg.max_cloud_cover),
        mask_classes=mask,
        mask_dilation=float(cfg.mask_dilation),
        resampling=cfg.resampling,
        statistics=statistics,
        percentile_method=str(cfg.percentile_method),
        provenance=provenance,
        on_read_error=cfg.on_read_error,
        chunk_size=int(cfg.chunk_size),
        tile_size=int(cfg.tile_size),
        output_dir=output_dir,
        zarr_dir=zarr_dir,
        cube_url=_cube_url(cfg.cube_url, zarr_dir, cfg.stage),
        stage=cfg.stage,
        overwrite=bool(cfg.overwrite),
        cluster=spec,
        debug=bool(cfg.debug),
    )
