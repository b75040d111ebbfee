"""The embedded demo archive: synthetic Sentinel-2 L2A scenes that know their answer.

:func:`ensure_demo` builds (once, into a cache folder) a small archive shaped like the
Planetary Computer's ``sentinel-2-l2a`` collection: STAC items with asset keys
B02 B03 B04 B08 (10 m) and SCL (20 m), ``eo:bands`` with common names, projection
fields, ``s2:processing_baseline``, and real tiled COGs with overviews, nodata 0.

It holds what real archives hold: clouds brighter than the ground flagged SCL 8/9, thin
cirrus (10), cloud shadows (3), orbit-edge no-data (SCL 0, DN 0), dark water whose true
reflectance falls to or below zero, scenes on both sides of 2022-01-25 (processing
baseline 04.00 adds +1000 to every DN) and two overlapping tiles of the same solar day.

Because the generator knows the ground it drew, it writes the truth beside the items
(``truth.zarr``): per month and 20 m pixel, the clear-sky median of the harmonised DN
(offset removed, kept >= 1) and the number of clear observations. This is written by
hand: no library makes test archives with a known composite. With ``haze_ring_m`` each cloud
gets a ring of haze the SCL does not flag (as Sen2Cor misses cloud edges): the truth leaves it
out, and only a dilated mask (``mask_dilation``) can.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import rasterio
import xarray as xr
from affine import Affine
from pyproj import Transformer
from rasterio.io import MemoryFile
from rasterio.shutil import copy as rio_copy
from scipy.ndimage import distance_transform_edt

from .errors import OutputError
from .s2 import BASELINE_CHANGE, BOA_OFFSET_DN
from .s2 import DEFAULT_MASK_CLASSES as mask_classes
from .tuning import configure
from .urls import is_local, local_path

__all__ = ["DemoArchive", "DemoSpec", "ensure_demo", "make_archive", "default_cache_dir"]

log = logging.getLogger(__name__)

#: Bump when the generator changes so cached archives are rebuilt.
GENERATOR_VERSION = 2
BANDS = {  # asset key: (common name, centre wavelength um, description)
    "B02": ("blue", 0.49, "Band 2 - Blue"),
    "B03": ("green", 0.56, "Band 3 - Green"),
    "B04": ("red", 0.665, "Band 4 - Red"),
    "B08": ("nir", 0.842, "Band 8 - NIR"),
}
SCL_KEY = "SCL"
#: "Within noise" of the truth: three standard deviations of one observation's noise (30 DN).
NOISE_DN = 90
#: Ground reflectance (DN) per band: vegetation, bare soil, water.
_GROUND = {
    "B02": (300, 900, 60),
    "B03": (550, 1200, 45),
    "B04": (350, 1500, 15),
    "B08": (3200, 2400, -25),
}


@dataclass(frozen=True)
class DemoSpec:
    """What archive to generate. The defaults are the CLI demo (``catalog=demo``)."""

    #: UTM zone EPSG code of every scene.
    epsg: int = 32610
    #: Upper-left corner of the archive (metres, in ``epsg``).
    origin: tuple[float, float] = (550000.0, 5270000.0)
    #: Size of the archive in 20 m pixels (the 10 m bands have twice as many).
    size: int = 300
    #: Acquisition days. One item each, except the days in ``pair_days``.
    days: tuple[str, ...] = (
        "2021-12-03",
        "2021-12-08",
        "2021-12-13",
        "2021-12-23",
        "2021-12-28",
        "2022-01-07",
        "2022-01-17",
        "2022-01-22",
        "2022-01-27",
        "2022-01-30",
        "2022-02-06",
        "2022-02-11",
        "2022-02-16",
        "2022-02-26",
        "2022-03-03",
        "2022-03-08",
        "2022-03-18",
        "2022-03-28",
    )
    #: Days covered by two overlapping tiles (west and east) of one datatake.
    pair_days: tuple[str, ...] = ("2022-02-06",)
    #: Days whose scene has orbit-edge no-data over a corner.
    edge_days: tuple[str, ...] = ("2021-12-13", "2022-01-17", "2022-02-16", "2022-03-08")
    #: A day that is almost wholly cloudy (high ``eo:cloud_cover``).
    cloudy_day: str = "2021-12-28"
    #: A month whose scenes are all cloudy over one patch (no clear answer there).
    always_cloudy_month: str = "2022-03"
    #: Per-pixel texture so COGs compress like real ones.
    texture: float = 60.0
    seed: int = 42
    #: Acquisition time of day (UTC); 19:10 UTC is late morning local solar time at -122.
    utc_time: str = "19:10:31"
    #: COG tile size.
    blocksize: int = 256
    #: Width (m) of a ring of haze around every cloud that the SCL does not flag (0: none). The
    #: truth leaves the haze out: it is not clear sky, whatever the SCL says.
    haze_ring_m: float = 0.0
    #: What the haze adds at a cloud's edge (DN), fading to half that at the ring's outer edge.
    haze_dn: int = 400

    @property
    def key(self) -> str:
        """A short fingerprint naming this spec's cache folder."""

        fields = dict(self.__dict__)
        if not self.haze_ring_m:  # without haze the archive is what it was before haze existed
            fields.pop("haze_ring_m"), fields.pop("haze_dn")
        text = json.dumps([GENERATOR_VERSION, fields], sort_keys=True, default=str)
        return hashlib.sha1(text.encode()).hexdigest()[:10]


@dataclass(frozen=True)
class ArchiveOnDisk:
    """A generated archive's folder: every scene's files and the static ItemCollection listing them
    (what the demo and the region archives share)."""

    root: Path

    @property
    def items_path(self) -> Path:
        """The static ItemCollection (``items.json``) listing every scene."""
        return self.root / "items.json"


@dataclass(frozen=True)
class DemoArchive(ArchiveOnDisk):
    """A generated archive on disk."""

    spec: DemoSpec = field(default_factory=DemoSpec)

    @property
    def truth_path(self) -> Path:
        return self.root / "truth.zarr"

    def truth(self):
        """The true monthly clear-sky median (``<band>`` variables, DN) and ``count`` as xarray."""

        return xr.open_zarr(self.truth_path, consolidated=False).load()

    def agreement(self, monthly) -> float:
        """The share of pixel values of ``monthly`` (a monthly store's DN, as
        :func:`cubemosaic.store.open_dn` opens it, on the truth's 20 m grid) within :data:`NOISE_DN` of the truth, where the truth has a clear
        answer; a no-data pixel there is a miss."""
        truth = self.truth().sel(x=monthly.x.values, y=monthly.y.values)
        hits = total = 0
        for key, (name, _, _) in BANDS.items():
            if name not in monthly:
                continue
            expected = truth[key].values
            got = monthly[name].values.astype(np.float64)
            answer = ~np.isnan(expected)
            hits += int(((np.abs(got - expected) <= NOISE_DN) & answer & (got != 0)).sum())
            total += int(answer.sum())
        return hits / total

    def bbox_lonlat(self) -> tuple[float, float, float, float]:

        x0, y1 = self.spec.origin
        x1, y0 = x0 + self.spec.size * 20, y1 - self.spec.size * 20
        t = Transformer.from_crs(self.spec.epsg, 4326, always_xy=True)
        lons, lats = t.transform([x0, x1, x0, x1], [y0, y0, y1, y1])
        return (min(lons), min(lats), max(lons), max(lats))


def default_cache_dir() -> Path:
    """``$CUBEMOSAIC_DEMO_DIR``, else ``$XDG_CACHE_HOME/cubemosaic``, else ``~/.cache/cubemosaic``."""
    if os.environ.get("CUBEMOSAIC_DEMO_DIR"):
        return Path(os.environ["CUBEMOSAIC_DEMO_DIR"]).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "cubemosaic"


def ensure_demo(spec: DemoSpec | None = None, cache_dir: Path | None = None) -> DemoArchive:
    """Return the archive for ``spec``, generating it first if the cache lacks it (or holds it
    incomplete: its items, an asset file or the truth missing). A cache folder that cannot be
    written is :class:`OutputError` naming it and ``CUBEMOSAIC_DEMO_DIR``."""
    configure()  # the archive is written with GDAL, often the process's first use of it
    spec = spec or DemoSpec()
    root = (cache_dir or default_cache_dir()) / f"demo-{spec.key}"
    archive = DemoArchive(root=root, spec=spec)
    missing = _missing(archive)
    if missing is None:
        return archive
    try:
        if root.exists() or root.is_symlink():
            log.warning("demo: the cached archive %s is incomplete (%s); generating it again", root, missing)
            _set_aside(root)
        log.info("demo: generating the demo archive into %s (first use only)", root)
        return make_archive(root, spec)
    except OSError as e:
        raise OutputError(
            f"CUBEMOSAIC_DEMO_DIR: cannot write the demo archive into {root.parent} ({e.strerror or e}); "
            "set CUBEMOSAIC_DEMO_DIR to a writable folder"
        ) from None


def _missing(archive: DemoArchive) -> str | None:
    """What the cached archive lacks (its items, an asset file, the truth), or None when whole:
    a stat per file, no read of pixels."""
    try:
        doc = json.loads(archive.items_path.read_text())
    except (OSError, ValueError):
        return "no items.json"
    for feature in doc.get("features", []):
        for asset in feature.get("assets", {}).values():
            href = str(asset.get("href", ""))
            if is_local(href) and not Path(local_path(href)).is_file():
                return f"no {local_path(href)}"
    if not (archive.truth_path / "zarr.json").is_file():
        return "no truth.zarr"
    return None


def _set_aside(root: Path) -> None:
    """Move an incomplete archive out of the way (renamed, so a run reading it meanwhile keeps its
    files), then remove it; another process that did the same first wins."""
    aside = Path(tempfile.mkdtemp(prefix=f".{root.name}-incomplete-", dir=root.parent))
    try:
        root.rename(aside / root.name)
    except FileNotFoundError:  # set aside by another process
        pass
    shutil.rmtree(aside, ignore_errors=True)


#: What every generated item starts with (the STAC version and extensions Planetary Computer's state).
ITEM_HEAD = {
    "type": "Feature",
    "stac_version": "1.0.0",
    "stac_extensions": [
        "https://stac-extensions.github.io/eo/v1.0.0/schema.json",
        "https://stac-extensions.github.io/sat/v1.0.0/schema.json",
        "https://stac-extensions.github.io/projection/v1.0.0/schema.json",
    ],
    "collection": "sentinel-2-l2a",
}


def asset_fields(folder: Path, key: str, shape: list, transform: list, bbox: list | None = None) -> dict:
    """One asset of a generated item, as the Planetary Computer states it (a band: its ``eo:bands``;
    the SCL), its file ``folder/<key>.tif``."""
    fields: dict = {
        "href": (folder / f"{key}.tif").as_uri(),
        "type": "image/tiff; application=geotiff; profile=cloud-optimized",
    }
    if key == SCL_KEY:
        fields.update(title="Scene classfication map (SCL)", roles=["data"], gsd=20.0)
    else:
        common, wl, desc = BANDS[key]
        fields.update(title=f"{desc} - 10m", roles=["data"], gsd=10)
        fields["eo:bands"] = [{"name": key, "common_name": common, "description": desc, "center_wavelength": wl}]
    if bbox is not None:
        fields["proj:bbox"] = list(bbox)
    fields.update({"proj:shape": list(shape), "proj:transform": list(transform)})
    return fields


def make_archive(root: Path, spec: DemoSpec) -> DemoArchive:
    """Generate the archive into ``root`` atomically (built in a temp folder, then renamed)."""
    generate_atomically(root, lambda tmp: _generate(tmp, root, spec))
    return DemoArchive(root=root, spec=spec)


def generate_atomically(root: Path, generate: Callable[[Path], object]) -> None:
    """``generate(tmp)`` into a temp folder beside ``root``, then renamed to ``root``: a reader
    never sees half an archive; when another process wins the race, theirs is kept."""
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}-", dir=root.parent))
    try:
        generate(tmp)
        try:
            tmp.rename(root)
        except OSError:  # another process won the race: keep theirs
            shutil.rmtree(tmp, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise


# --------------------------------------------------------------------------- generator
def _blobs(rng: np.random.Generator, size: int, n: int, rmin: float, rmax: float) -> np.ndarray:
    """Distance-to-radius ratio of ``n`` random discs (< 1 inside a disc)."""
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    ratio = np.full((size, size), np.inf, dtype=np.float32)
    for _ in range(n):
        cy, cx = rng.uniform(0, size, 2)
        r = rng.uniform(rmin, rmax) * size / 300
        ratio = np.minimum(ratio, np.hypot(yy - cy, xx - cx) / r)
    return ratio


def _ground(spec: DemoSpec, rng: np.random.Generator) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Ground reflectance per band (20 m, DN), and the water and vegetation masks."""
    n = spec.size
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    water = np.hypot(yy - 0.7, xx - 0.3) < 0.15
    veg = (np.sin(xx * 9) + np.cos(yy * 7)) > 0
    out = {}
    for key, (v, s, w) in _GROUND.items():
        g = np.where(veg, v, s).astype(np.float32) * (1 + 0.15 * np.sin(xx * 13 + yy * 5))
        g += rng.normal(0, spec.texture, (n, n)).astype(np.float32)
        g = np.where(water, w + rng.normal(0, 8, (n, n)), g)
        out[key] = g
    return out, water, veg


def _scene(spec: DemoSpec, rng, ground, water, veg, day: dt.date, cloud_month_patch: bool):
    """One acquisition over the whole archive: (raw DN per band incl. offset, SCL, cloud %)."""
    n = spec.size
    cloudy = day.isoformat() == spec.cloudy_day
    ratio = _blobs(rng, n, 14 if cloudy else 4, 40 if cloudy else 12, 90 if cloudy else 35)
    cloud = ratio < 1
    if cloud_month_patch:
        cloud[20:70, 200:260] = True
        ratio[20:70, 200:260] = 0.0
    shadow = np.roll(cloud, (12, 9), axis=(0, 1)) & ~cloud
    cirrus = (_blobs(rng, n, 1, 10, 20) < 1) & ~cloud & ~shadow
    haze = np.zeros((n, n), dtype=np.float32)
    if spec.haze_ring_m > 0 and cloud.any():
        metres = distance_transform_edt(~cloud).astype(np.float32) * 20
        ring = (metres > 0) & (metres <= spec.haze_ring_m) & ~shadow & ~cirrus
        haze = np.where(ring, spec.haze_dn * (1 - 0.5 * metres / spec.haze_ring_m), 0).astype(np.float32)
    scl = np.where(water, 6, np.where(veg, 4, 5)).astype(np.uint8)
    scl[rng.random((n, n)) < 0.01] = 7  # unclassified pixels: valid, kept
    scl[cirrus] = 10
    scl[shadow] = 3
    scl[cloud] = np.where(ratio[cloud] < 0.6, 9, 8)
    nodata = np.zeros((n, n), dtype=bool)
    if day.isoformat() in spec.edge_days:
        yy, xx = np.mgrid[0:n, 0:n] / n
        nodata = xx + 0.6 * yy > 1.15
    scl[nodata] = 0

    offset = BOA_OFFSET_DN if day >= BASELINE_CHANGE else 0
    season = rng.normal(0, 25)
    raw = {}
    for key, g in ground.items():
        obs = g + season + rng.normal(0, 30, (n, n)).astype(np.float32)
        obs = np.where(shadow, obs * 0.35, obs)
        obs = np.where(cirrus, obs + 350, obs)
        obs = obs + haze  # unflagged: the SCL says clear
        obs = np.where(cloud, 4500 + 3000 * (1 - np.clip(ratio, 0, 1)) + rng.normal(0, 200, (n, n)), obs)
        obs = np.rint(obs)
        if offset:
            dn = np.clip(obs + offset, 1, 65535)  # baseline 04.00: negative reflectance representable
        else:
            dn = np.clip(obs, 1, 65535)  # older baselines clip at the smallest valid DN
        dn[nodata] = 0
        raw[key] = dn.astype(np.uint16)
    valid = ~nodata
    cloud_cover = 100.0 * float(np.isin(scl[valid], (8, 9, 10)).mean()) if valid.any() else 100.0
    return raw, scl, cloud_cover, offset, haze > 0


def _write_cog(path: Path, data: np.ndarray, transform, epsg: int, blocksize: int, desc: str) -> None:

    profile = dict(
        driver="GTiff",
        width=data.shape[1],
        height=data.shape[0],
        count=1,
        dtype=data.dtype.name,
        crs=f"EPSG:{epsg}",
        transform=transform,
        nodata=0,
    )
    with MemoryFile() as mem, mem.open(**profile) as ds:
        ds.write(data, 1)
        ds.set_band_description(1, desc)
        rio_copy(
            ds,
            str(path),
            driver="COG",
            compress="DEFLATE",
            predictor="2",
            blocksize=blocksize,
            overview_resampling="nearest",
            num_threads="ALL_CPUS",
        )
    with rasterio.open(path) as check:  # fail here, not in a user's run, if GDAL wrote no overviews
        assert check.overviews(1), f"{path} has no overviews"


def _item(
    spec: DemoSpec,
    day: dt.date,
    tile: str,
    col0: int,
    col1: int,
    folder: Path,
    platform: str,
    cloud_cover: float,
    offset: int,
) -> dict:

    x0 = spec.origin[0] + col0 * 20
    x1 = spec.origin[0] + col1 * 20
    y1 = spec.origin[1]
    y0 = y1 - spec.size * 20
    t = Transformer.from_crs(spec.epsg, 4326, always_xy=True)
    ring = [t.transform(x, y) for x, y in ((x0, y0), (x1, y0), (x1, y1), (x0, y1), (x0, y0))]
    lons = [p[0] for p in ring]
    lats = [p[1] for p in ring]
    stamp = day.strftime("%Y%m%d") + "T" + spec.utc_time.replace(":", "")[:6]
    baseline = "04.00" if offset else "03.01"
    pid = f"S2{platform[-1]}_MSIL2A_{stamp}_R013_T{tile}"
    bbox = [x0, y0, x1, y1]
    assets = {
        key: asset_fields(folder, key, [spec.size * 2, (col1 - col0) * 2], [10.0, 0.0, x0, 0.0, -10.0, y1], bbox)
        for key in BANDS
    }
    assets[SCL_KEY] = asset_fields(folder, SCL_KEY, [spec.size, col1 - col0], [20.0, 0.0, x0, 0.0, -20.0, y1], bbox)
    return {
        **ITEM_HEAD,
        "id": f"{pid}_{stamp}",
        "geometry": {"type": "Polygon", "coordinates": [[list(p) for p in ring]]},
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "properties": {
            "datetime": f"{day.isoformat()}T{spec.utc_time}.024000Z",
            "platform": platform,
            "constellation": "Sentinel 2",
            "instruments": ["msi"],
            "proj:epsg": spec.epsg,
            "eo:cloud_cover": round(cloud_cover, 4),
            "s2:mgrs_tile": tile,
            "s2:processing_baseline": baseline,
            "s2:product_type": "S2MSI2A",
            "sat:relative_orbit": 13,
            "sat:orbit_state": "descending",
        },
        "links": [],
        "assets": assets,
    }


def _generate(tmp: Path, final_root: Path, spec: DemoSpec) -> None:

    rng = np.random.default_rng(spec.seed)
    ground, water, veg = _ground(spec, rng)
    n = spec.size
    items: list[dict] = []
    months: dict[str, list[tuple[dict[str, np.ndarray], np.ndarray, int, np.ndarray]]] = {}
    for i, day_s in enumerate(spec.days):
        day = dt.date.fromisoformat(day_s)
        month = day_s[:7]
        raw, scl, cc, offset, haze = _scene(spec, rng, ground, water, veg, day, month == spec.always_cloudy_month)
        months.setdefault(month, []).append((raw, scl, offset, haze))
        platform = "Sentinel-2A" if i % 2 == 0 else "Sentinel-2B"
        if day_s in spec.pair_days:  # two tiles, west and east, overlapping by a fifth
            tiles = [("10TDT", 0, int(n * 0.6)), ("10TET", int(n * 0.4), n)]
        else:
            tiles = [("10TDT", 0, n)]
        for tile, c0, c1 in tiles:
            folder = tmp / f"{day_s}-{tile}"
            folder.mkdir()
            for key, (common, _, _desc) in BANDS.items():
                tr = Affine(10.0, 0.0, spec.origin[0] + c0 * 20, 0.0, -10.0, spec.origin[1])
                band10 = np.repeat(np.repeat(raw[key][:, c0:c1], 2, axis=0), 2, axis=1)
                _write_cog(folder / f"{key}.tif", band10, tr, spec.epsg, spec.blocksize, f"{key} {common}")
            tr = Affine(20.0, 0.0, spec.origin[0] + c0 * 20, 0.0, -20.0, spec.origin[1])
            _write_cog(folder / f"{SCL_KEY}.tif", scl[:, c0:c1], tr, spec.epsg, spec.blocksize, "SCL")
            item = _item(spec, day, tile, c0, c1, final_root / folder.name, platform, cc, offset)
            items.append(item)

    # The truth: per month, median of clear harmonised observations, and their count.

    medians = {key: [] for key in BANDS}
    counts = []
    for scenes in months.values():
        clear = np.stack([~np.isin(scl, mask_classes) & ~haze for _, scl, _, haze in scenes])
        counts.append(clear.sum(axis=0).astype(np.uint16))
        for key in BANDS:
            vals = np.stack([np.maximum(raw[key].astype(np.float64) - off, 1) for raw, _, off, _ in scenes])
            vals[~clear] = np.nan
            with np.errstate(all="ignore"):
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    medians[key].append(np.nanmedian(vals, axis=0))
    xs = spec.origin[0] + 10 + 20 * np.arange(n)
    ys = spec.origin[1] - 10 - 20 * np.arange(n)
    times = np.array([np.datetime64(f"{m}-01", "ns") for m in months])
    truth = xr.Dataset(
        {key: (("time", "y", "x"), np.stack(v).astype(np.float32)) for key, v in medians.items()}
        | {"count": (("time", "y", "x"), np.stack(counts))},
        coords={"time": times, "y": ys, "x": xs},
        attrs={"epsg": spec.epsg, "mask_classes": list(mask_classes)},
    )
    truth.to_zarr(tmp / "truth.zarr", mode="w", consolidated=False)
    collection = {"type": "FeatureCollection", "features": items}
    (tmp / "items.json").write_text(json.dumps(collection, indent=1))  # written last: the completion record
