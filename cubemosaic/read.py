"""Reading scenes onto the output grid, with mask and harmonisation fused into the read: the one
place a solar day's scenes become one masked, harmonised, fused block.

One task reads every band and the SCL of every scene of a solar day for one output block,
masks each scene with its own SCL, removes its offset and fuses the scenes (first clear
value), so only the finished uint16 block leaves the task. Each asset is read one of two ways:

- where its pixel grid lines up with the output grid (same CRS, output pixel size an integer
  multiple of the asset's or the reverse, pixel edges on each other) and the resampling is
  nearest or average, with one decimated windowed read (an overview whose pixels nest in the
  output pixels), straight into the block: no warping. odc-loader warps every downsampled read
  (its ``_do_read`` says "TODO: support read with integer shrink"), which costs about 3x the
  decode itself; this is the hand-written part that avoids it;
- anything else (another CRS, a rotated or misaligned grid, a resampling such as bilinear or
  mode) through odc-loader's rasterio reader (``odc.loader.RioReader``, the one odc-stac's load
  uses), which warps onto the block from the native pixels (never an overview: on a grid turned
  against the output none nests in an output pixel).

Which way is decided per asset on the file's own georeferencing, read when it is opened for the
read: where the catalog's ``proj:`` fields disagree with the file, the file wins and the log says
so (once per item and field).

Either way the read is signed in the task, and a failed read raises
:class:`~cubemosaic.errors.AssetReadError` naming the item and band, where it fails. Each
scene's SCL is read on its own pixels when the mask is dilated (:class:`~cubemosaic.s2.CloudMask`),
and pixels outside a polygon AOI are never taken.

JPEG2000 assets (Copernicus Data Space) are always decoded at full resolution: their
"overviews" are wavelet low-pass images, not samples of the band.
"""

from __future__ import annotations

import functools
import logging
import math
import os
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from typing import TypeVar

import numpy as np
import rasterio
from affine import Affine
from odc.geo import CRS
from odc.geo.geobox import GeoBox
from odc.geo.geom import box as geom_box
from odc.loader import RasterLoadParams, RasterSource, RioReader
from rasterio.enums import Resampling
from rasterio.windows import Window

from .aoi import aoi_block
from .errors import AssetReadError, SigningError, one_line
from .s2 import CloudMask
from .scenes import AssetGrid, SceneSource
from .signing import Signer, read_signed
from .tuning import IO_THREADS, STRIP_PIXELS, configure

__all__ = [
    "GDAL_READ_OPTIONS",
    "PLAIN",
    "Access",
    "day_block",
    "is_aligned",
    "read_ways",
]

T = TypeVar("T")

log = logging.getLogger(__name__)

#: GDAL settings for every read, on every worker: retries with backoff for transient HTTP
#: failures (GDAL retries 429, 500, 502, 503 and 504), no directory listing on open.
GDAL_READ_OPTIONS = {
    "GDAL_HTTP_MAX_RETRY": "6",
    "GDAL_HTTP_RETRY_DELAY": "0.5",
    "GDAL_DISABLE_READDIR_ON_OPEN": "EMPTY_DIR",
    "GDAL_HTTP_MERGE_CONSECUTIVE_RANGES": "YES",
    "GDAL_HTTP_MULTIRANGE": "PARALLEL",
}


@dataclass(frozen=True)
class Access:
    """How assets are reached, on whichever worker reads them: an href signer (Planetary Computer)
    and a catalog's own GDAL settings (``catalog.gdal``, e.g. Copernicus Data Space's S3 endpoint)."""

    sign: Signer | None = None
    #: GDAL configuration options, as (name, value) pairs, on top of :data:`GDAL_READ_OPTIONS`.
    gdal: tuple[tuple[str, str], ...] = ()

    def env(self) -> dict[str, str]:
        return {**GDAL_READ_OPTIONS, **dict(self.gdal)}

    def read(self, href: str, read: Callable[[str], T]) -> T:
        """``read(url)`` under these GDAL settings, ``href`` signed close to the read; the process's
        own settings (:func:`cubemosaic.tuning.configure`) applied first, on whichever worker reads."""
        configure()
        with rasterio.Env(**self.env()):
            return read_signed(href, self.sign, read)


#: Unsigned reads with GDAL's and cubemosaic's default settings.
PLAIN = Access()


_IO_POOL: list[ThreadPoolExecutor] = []
_IO_POOL_LOCK = threading.Lock()


def _io_pool() -> ThreadPoolExecutor:
    """This process's pool of :data:`~cubemosaic.tuning.IO_THREADS` read threads, made at its first
    day read, not at import: a process that imports the reader and reads nothing (the command
    line, a Dask scheduler) starts no threads, and a forked child makes its own."""
    if not _IO_POOL:
        with _IO_POOL_LOCK:
            if not _IO_POOL:
                _IO_POOL.append(ThreadPoolExecutor(IO_THREADS, thread_name_prefix="cubemosaic-read"))
    return _IO_POOL[0]


# A pool made before a fork has no threads in the child: the child makes its own.
os.register_at_fork(after_in_child=_IO_POOL.clear)


def _factor(grid: AssetGrid, geobox) -> int | None:
    """How the asset's pixels map on the output grid's, or None when the grids do not line up:
    ``k`` > 0, each output pixel is k x k asset pixels (an integer shrink, read through GDAL's
    overviews); ``-m``, each asset pixel is m x m output pixels (the 20 m SCL on a 10 m grid,
    an integer upsampling: nearest is then exact, a repeat).

    Written by hand: odc-geo's ``compute_reproject_roi`` answers ``paste_ok`` only where the output
    grid falls on the asset's grid shrunk as a whole (a 10 m band onto a 20 m grid that starts one
    10 m pixel further: not paste_ok, though every 20 m pixel is exactly 2 x 2 band pixels, read
    from a window starting there) and never for an upsampling (the 20 m SCL onto a 10 m grid).
    """

    if grid.transform is None or grid.shape is None or grid.crs is None:
        return None
    a, b, c, d, e, f = grid.transform
    out = geobox.transform
    if b or d or out.b or out.d or a <= 0 or e >= 0 or CRS(grid.crs) != geobox.crs:
        return None
    kx, ky = out.a / a, out.e / e
    if abs(kx - ky) > 1e-9:
        return None
    if kx >= 1:  # shrink: the origins must be whole asset pixels apart
        k, exact, steps = round(kx), kx, ((out.c - c) / a, (out.f - f) / e)
    else:  # upsampling: whole output pixels apart
        k, exact, steps = -round(1 / kx), -1 / kx, ((out.c - c) / out.a, (out.f - f) / out.e)
    if k in (0, -1) or abs(exact - k) > 1e-9:
        return None
    if any(abs(v - round(v)) > 1e-6 for v in steps):
        return None
    return k


def _nesting_overview(factors: Sequence[int], k: int, window) -> tuple[int | None, int]:
    """(overview level to open, its factor) for reading a shrink by ``k`` so that every output pixel
    takes its value from inside its own footprint: the coarsest overview whose pixels nest in the
    output pixels (its factor divides ``k`` and the window's offsets); -1 for the full resolution;
    (None, k) when GDAL's own choice (an overview of factor ``k``, or no overviews) already nests.

    GDAL picks the overview closest to the requested size, whose pixels need not nest: at 100 m
    from 10 m bands it takes the 8x (80 m) overview, and nearest resampling then takes values up
    to an overview pixel outside the output pixel. Written by hand: neither GDAL nor rasterio
    chooses overviews by nesting.
    """
    if k in factors or not factors:
        return None, k
    usable = [f for f in factors if k % f == 0 and window.col_off % f == 0 and window.row_off % f == 0]
    if not usable:
        return -1, 1
    best = max(usable)
    return list(factors).index(best), best


def is_aligned(grid: AssetGrid | None, geobox) -> bool:
    return grid is not None and _factor(grid, geobox) is not None


def read_ways(source: SceneSource, geobox, resampling: str = "nearest") -> list[tuple[AssetGrid, bool]]:
    """Each asset of ``source`` (bands, then the SCL) and whether :func:`day_block` reads it directly
    (True) or warps it, as the catalog states the grids (the file wins where it disagrees).

    The SCL is read with nearest whatever the resampling, so directly wherever it lines up; a band
    directly where it lines up and the resampling is nearest, or ``average`` with every asset of
    the scene lining up (the mean of the clear native pixels); any other band is warped."""
    scl = is_aligned(source.scl, geobox)
    bands = [is_aligned(g, geobox) for g in source.bands]
    if resampling == "average":
        bands = [all(bands) and scl] * len(bands)
    elif resampling != "nearest":
        bands = [False] * len(bands)
    return [*zip(source.bands, bands, strict=True), (source.scl, scl)]


def _read(
    grid: AssetGrid, geobox, access: Access, resampling: str = "nearest", out: np.ndarray | None = None
) -> np.ndarray:
    """The asset on ``geobox``, 0 where it has no pixel (into ``out``, all 0, when given: a view of
    the day's block): where the file's grid lines up with the output grid and the resampling is
    nearest, read directly (via nesting overviews when shrinking, a repeat when upsampling);
    otherwise warped by odc-loader's reader.

    Which way is decided on the file's own georeferencing, read when the file is opened for the
    read anyway: where the catalog's ``proj:`` fields disagree with it, the file wins
    (:func:`_file_grid` says so in the log, once per item and field)."""

    if out is None:
        out = np.zeros(geobox.shape, dtype=np.uint16)
    if not _overlaps(grid, geobox):
        return out  # not opened: a scene far from the block (another UTM zone's tile, say)

    def read(url: str) -> AssetGrid | None:
        with rasterio.open(url) as src:
            actual = _file_grid(grid, src)
            k = _factor(actual, geobox) if resampling == "nearest" else None
            if k is None:
                return actual  # warped below
            _direct(url, src, actual, k, geobox, out)
            return None

    warp = _named(grid, access, read)
    if warp is not None:
        # odc-loader's reader opens the file again: GDAL's cache serves its header a second time.
        _warp(warp, geobox, access, resampling, out)
    return out


def _direct(url: str, src, grid: AssetGrid, k: int, geobox, out: np.ndarray) -> None:
    """Read the open file ``src`` (whose pixels are ``grid``, lining up with ``geobox`` by
    :func:`_factor` ``k``) straight into ``out``: a decimated windowed read or a repeat."""
    assert grid.transform is not None and grid.shape is not None
    h, w = geobox.shape
    a, _, c, _, e, f = grid.transform
    # The asset's origin in output pixels.
    col0 = (c - geobox.transform.c) / geobox.transform.a
    row0 = (f - geobox.transform.f) / geobox.transform.e
    if k > 0:  # only output pixels wholly inside the asset are read
        oc0, or0 = max(0, math.ceil(col0 - 1e-9)), max(0, math.ceil(row0 - 1e-9))
        oc1 = min(w, math.floor(col0 + grid.shape[1] / k + 1e-9))
        or1 = min(h, math.floor(row0 + grid.shape[0] / k + 1e-9))
        if oc1 <= oc0 or or1 <= or0:
            return
        window = Window(round((oc0 - col0) * k), round((or0 - row0) * k), (oc1 - oc0) * k, (or1 - or0) * k)
        target = out[or0:or1, oc0:oc1]
    else:
        m = -k
        col0, row0 = round(col0), round(row0)
        oc0, or0 = max(0, col0), max(0, row0)
        oc1, or1 = min(w, col0 + grid.shape[1] * m), min(h, row0 + grid.shape[0] * m)
        if oc1 <= oc0 or or1 <= or0:
            return
        ac0, ar0 = (oc0 - col0) // m, (or0 - row0) // m  # asset pixels under the block, at native size
        ac1, ar1 = -(-(oc1 - col0) // m), -(-(or1 - row0) // m)
        window = Window(ac0, ar0, ac1 - ac0, ar1 - ar0)
        target = np.zeros((ar1 - ar0, ac1 - ac0), dtype=np.uint16)

    if k > 1 and src.driver == "JP2OpenJPEG":  # wavelet levels are not samples: full resolution
        level, step = -1, 1
    else:
        level, step = _nesting_overview(src.overviews(1), k, window) if k > 1 else (None, 1)
    if level is None:
        src.read(1, window=window, out=target, resampling=Resampling.nearest)
    else:
        # Reopened at the chosen level alone ("only": GDAL would otherwise decimate through that
        # level's own coarser overviews) or at none; GDAL's /vsicurl/ cache serves the header again.
        with rasterio.open(url, OVERVIEW_LEVEL=f"{level}only" if level >= 0 else "NONE") as lvl:
            scaled = Window(window.col_off // step, window.row_off // step, window.width // step, window.height // step)
            lvl.read(1, window=scaled, out=target, resampling=Resampling.nearest)
    if k < 0:
        up = target.repeat(m, axis=0).repeat(m, axis=1)
        dy, dx = (or0 - row0) - ar0 * m, (oc0 - col0) - ac0 * m
        out[or0:or1, oc0:oc1] = up[dy : dy + or1 - or0, dx : dx + oc1 - oc0]


#: (item id, field) pairs whose disagreement with the files has been logged (once each per process).
_DISAGREED: set[tuple[str, str]] = set()
_DISAGREED_LOCK = threading.Lock()


def _file_grid(stated: AssetGrid, src) -> AssetGrid:
    """The asset's grid as its open file ``src`` has it (its CRS, transform, shape), logging once
    per item and field where the catalog's ``proj:`` fields stated otherwise. The file is the truth
    about its pixels: a catalog can be wrong (a shifted transform, a halved shape, the other zone's
    EPSG code) and a reader that trusted it would take the wrong pixels."""
    crs = src.crs.to_string() if src.crs else None
    actual = replace(
        stated, crs=crs, transform=tuple(src.transform)[:6] if crs else None, shape=(src.height, src.width)
    )
    if stated.transform is None or stated.shape is None or stated.crs is None:
        return actual  # the catalog states nothing to disagree with
    wrong = []
    if crs is None or CRS(stated.crs) != CRS(crs):
        wrong.append(("proj:epsg", stated.crs, crs))
    pixel = max(abs(src.transform.a), abs(src.transform.e), 1e-9)
    if crs and any(abs(x - y) > 1e-6 * pixel for x, y in zip(stated.transform, actual.transform or (), strict=True)):
        wrong.append(("proj:transform", list(stated.transform), list(actual.transform or ())))
    if tuple(stated.shape) != actual.shape:
        wrong.append(("proj:shape", list(stated.shape), list(actual.shape or ())))
    for name, said, has in wrong:
        with _DISAGREED_LOCK:
            if (stated.item_id, name) in _DISAGREED:
                continue
            _DISAGREED.add((stated.item_id, name))
        log.warning("read: item %s: the catalog's %s (%s) disagrees with asset %s's file (%s); the file's is used",
                    stated.item_id, name, said, stated.key, has)  # fmt: skip
    return actual


def _named(grid: AssetGrid, access: Access, read: Callable[[str], T]) -> T:
    """``read(url)`` of the asset, signed in the task close to the read; a failure is
    :class:`AssetReadError` naming the asset (item id and band)."""
    try:
        return access.read(grid.href, read)
    except (SigningError, MemoryError):
        raise  # not this asset's fault
    except Exception as err:  # rasterio and GDAL raise many types: this asset's problem, named here
        raise AssetReadError(grid.item_id, grid.key, one_line(f"{type(err).__name__}: {err}")) from None


def _warp(grid: AssetGrid, geobox, access: Access, resampling: str, out: np.ndarray | None = None) -> np.ndarray:
    """The asset warped onto ``geobox`` by odc-loader's reader with ``resampling`` (into ``out``);
    0 (the Sentinel-2 nodata, whatever the file states) where it has no pixel and never blended in.

    From the native pixels, never through overviews (``use_overviews=False``): an overview pixel of
    a grid turned against the output (another UTM zone) never nests in an output pixel, and with
    nearest the warper took values from outside it (at 60 m from the 40 m overview of 10 m bands:
    96.9 % of the other zone's pixels right against the region's truth; from the native pixels every
    output pixel takes the native pixel under its centre, 100 %). It costs decoding the native
    pixels: one 18 km tile's 10 m band onto the next zone's grid took 0.67 s at 20 m (0.39 s through
    the 20 m overview) and 0.28 s at 60 m (0.16 s through the 40 m one), about half of it decoding
    and half GDAL's warp. A hand-written nearest gather (the centres projected on a lattice,
    interpolated, the native window decoded once) measured no faster (0.42 s against odc-loader's
    0.42 s for the same pixels), so the warp stays odc-loader's. JPEG2000 has no overviews of
    samples anyway.
    """
    if out is None:
        out = np.zeros(geobox.shape, dtype=np.uint16)
    if not _overlaps(grid, geobox):
        return out  # not opened: a scene far from the block (another UTM zone's tile, say)
    cfg = RasterLoadParams(
        dtype="uint16",
        fill_value=0,
        src_nodata_override=0,
        resampling=resampling,
        use_overviews=False,
        fail_on_error=True,
    )
    # RioReader keeps no state of its own load (its context is unused): one per read.
    _named(grid, access, lambda url: RioReader(RasterSource(url), None).read(cfg, geobox, dst=out))  # type: ignore[arg-type]
    return out


def _footprints(grid: AssetGrid) -> list:
    """Where the asset says it is: its stated footprint (``proj:`` fields) and its item's lon/lat
    bbox, those that are stated."""
    stated = []
    if grid.transform is not None and grid.shape is not None and grid.crs is not None:
        stated.append(GeoBox(grid.shape, Affine(*grid.transform), grid.crs).extent)
    if grid.bbox is not None:
        stated.append(geom_box(*grid.bbox, "EPSG:4326"))
    return stated


def _overlaps(grid: AssetGrid, geobox) -> bool:
    """Whether the asset may reach ``geobox``: its stated footprint (``proj:`` fields) or its item's
    lon/lat bbox does (True when neither is stated). Either suffices, so a catalog whose ``proj:``
    fields are wrong (the file wins, :func:`_file_grid`) still has its scene read where the item is."""
    stated = _footprints(grid)
    if not stated:
        return True
    return any(fp.intersects(geobox.extent.to_crs(fp.crs)) for fp in stated)


#: Output pixels a scene's reach is widened by on each side. Footprints are projected with a
#: vertex every km (0.01 deg for a lon/lat bbox), so a projected edge's curve strays from them by
#: far less than a pixel; the margin is for the pixels the edges cut.
REACH_PAD = 2


def scene_reach(scene: SceneSource, geobox) -> tuple[slice, slice] | None:
    """The rows and columns of ``geobox`` the scene may reach: the bounding box of every stated
    footprint and item bbox of its assets (the trust :func:`_overlaps` gives them), widened by
    :data:`REACH_PAD`; the whole block when an asset states neither; None when none reaches it.

    A day's scenes are read, masked and fused on their reach only, so a block of a region many
    tiles wide holds each scene's arrays at its tile's size, not the block's (measured on the
    benchmark's 6 x 4 tiles of 9 km at 20 m: the cube stage's peak fell from 626 to 355 MB)."""
    h, w = geobox.shape
    crs = str(geobox.crs)
    boxes = set()
    for g in (scene.scl, *scene.bands):
        if (g.transform is None or g.shape is None or g.crs is None) and g.bbox is None:
            return slice(0, h), slice(0, w)
        boxes.add(_world_bounds(g.crs, g.transform, g.shape, g.bbox, crs))
    x0, y0 = min(b[0] for b in boxes), min(b[1] for b in boxes)
    x1, y1 = max(b[2] for b in boxes), max(b[3] for b in boxes)
    # The block's grid is north-up (an output grid): the world box maps to a pixel box.
    inv = ~geobox.affine
    (ca, ra), (cb, rb) = inv @ (x0, y1), inv @ (x1, y0)
    c0, r0 = max(0, math.floor(min(ca, cb)) - REACH_PAD), max(0, math.floor(min(ra, rb)) - REACH_PAD)
    c1, r1 = min(w, math.ceil(max(ca, cb)) + REACH_PAD), min(h, math.ceil(max(ra, rb)) + REACH_PAD)
    if c1 <= c0 or r1 <= r0:
        return None
    return slice(r0, r1), slice(c0, c1)


@functools.lru_cache(maxsize=8192)
def _world_bounds(crs, transform, shape, bbox, dst_crs: str) -> tuple[float, float, float, float]:
    """The bounding box in ``dst_crs`` of an asset's stated footprint and item bbox (those stated),
    projected with a vertex every km (0.01 deg for the bbox): once per asset and output CRS, not
    per block (3.5 ms a scene and block before)."""
    x0, y0, x1, y1 = math.inf, math.inf, -math.inf, -math.inf
    for fp in _footprints(AssetGrid("", crs, transform, shape, bbox=bbox)):
        bx0, by0, bx1, by1 = fp.to_crs(dst_crs, resolution=0.01 if fp.crs.geographic else 1000.0).boundingbox
        x0, y0, x1, y1 = min(x0, bx0), min(y0, by0), max(x1, bx1), max(y1, by1)
    return x0, y0, x1, y1


def _masked(grid: AssetGrid, geobox, mask: CloudMask, access: Access) -> np.ndarray:
    """The scene's SCL mask on ``geobox`` (True where masked).

    Without dilation the SCL is read onto the block like a band (nearest), except where the
    output pixels are finer than the SCL's (10 m): there it is masked on its own pixels, a quarter
    of the lookups, and the mask is put on the block. With a dilation, where the grids line up it
    is read on its own pixels, widened by the dilation radius so the block's edges see clouds just
    outside it, masked and dilated there, then put on the block: each output pixel takes the SCL
    pixel under its centre, or (output pixels coarser than the SCL's) is masked if any SCL pixel
    it covers is. Where they do not, it is warped onto the block widened by the radius and dilated
    on the output pixels (by at least one).
    """

    k = _factor(grid, geobox)
    pixel = abs(geobox.resolution.x)
    if mask.dilation_m <= 0 and (k is None or k >= 1):
        return mask.masked(_read(grid, geobox, access), pixel)
    if k is None:
        r = mask.radius_px(pixel)
        return mask.masked(_warp(grid, geobox.pad(r), access, "nearest"), pixel)[r:-r, r:-r]
    assert grid.transform is not None
    a, _, c, _, e, f = grid.transform
    r = mask.radius_px(a)
    out = geobox.transform
    h, w = geobox.shape
    # The block's edges in SCL pixels (whole pixels: _factor checked that the grids line up).
    col0, col1 = (out.c - c) / a, (out.c + w * out.a - c) / a
    row0, row1 = (out.f - f) / e, (out.f + h * out.e - f) / e
    c0, r0 = math.floor(col0 + 1e-6) - r, math.floor(row0 + 1e-6) - r
    c1, r1 = math.ceil(col1 - 1e-6) + r, math.ceil(row1 - 1e-6) + r
    native = GeoBox((r1 - r0, c1 - c0), Affine(a, 0, c + c0 * a, 0, e, f + r0 * e), geobox.crs)
    masked = mask.masked(_read(grid, native, access), a)
    if k > 1:  # a shrink: any masked SCL pixel masks the output pixel
        inner = masked[r : r + h * k, r : r + w * k]
        return inner.reshape(h, k, w, k).any(axis=(1, 3))
    # The SCL pixel under each output pixel's centre: m output pixels to an SCL pixel, and the
    # block's edges on output pixel edges, so the repeated mask starts at a whole index.
    m = 1 if k == 1 else -k
    up = masked.repeat(m, axis=0).repeat(m, axis=1) if m > 1 else masked
    sr, sc = round((row0 - r0) * m), round((col0 - c0) * m)
    return up[sr : sr + h, sc : sc + w]


def _harmonise(band: np.ndarray, offset: int) -> np.ndarray:
    """``band`` with the baseline offset removed, valid values kept >= 1, in place:
    clip(band - offset, 1, 65535) in uint16 is max(band, offset + 1) - offset."""
    if offset:
        # The floor as a row, broadcast: numpy's uint16 maximum with a scalar was 4x slower.
        np.maximum(band, np.full(band.shape[-1], offset + 1, dtype=np.uint16), out=band)
        band -= np.uint16(offset)
    return band


def day_block(
    sources: Sequence[SceneSource],
    geobox,
    mask: CloudMask,
    access: Access,
    aoi_wkt: str | None = None,
    resampling: str = "nearest",
) -> np.ndarray:
    """(bands, y, x) uint16 of one solar day on ``geobox``: masked, harmonised, fused; 0 outside ``aoi_wkt``.

    ``resampling="average"``: each output pixel is the mean of the clear native pixels of each
    band (mask at the band's resolution, offset removed first), computed in strips of output rows
    so memory stays bounded whatever the shrink (a scene whose grids do not line up: GDAL's
    average, warped). Any other resampling: each band read with it (nearest where the grids line
    up: directly), the SCL always with nearest.
    """
    if resampling == "average":
        out = np.zeros((len(sources[0].bands),) + tuple(geobox.shape), dtype=np.uint16)
        for ys in _strips(sources, geobox):
            out[:, ys] = _average_day(sources, geobox[ys, :], mask, access, aoi_wkt)
        return out
    n = len(sources[0].bands)
    out = np.zeros((n,) + tuple(geobox.shape), dtype=np.uint16)
    empty = aoi_block(aoi_wkt, geobox)  # pixels still without a value (outside the AOI: never)
    if not empty.any():
        return out
    # Each scene on its reach only (a scene that reaches none is not opened): every scene's mask
    # at once, then each needed scene's bands at once, on the I/O pool.
    reached = [(s, roi) for s in sources if (roi := scene_reach(s, geobox)) is not None]
    maskeds = list(_io_pool().map(lambda p: _masked(p[0].scl, geobox[p[1]], mask, access), reached))
    filled = False  # whether a scene has put values into ``out`` yet: until then it is all 0
    for (scene, roi), masked in zip(reached, maskeds, strict=True):
        still = empty[roi]  # a view: taking pixels below marks them in ``empty``
        if not (still & ~masked).any():
            continue  # nothing this scene could fill: its bands are not read
        target = out[(slice(None), *roi)]
        # The first scene's bands are read straight into the block and zeroed where not taken:
        # no arrays of their own and no fuse (py-spy had 10 % of the 10 m cube stage's busy
        # time in the fuse's OR, most of it the block's first touch); later ones are fused.
        bands, clear = _scene_bands(scene, geobox[roi], access, resampling, masked, into=None if filled else target)
        take = still & clear
        if filled:
            _fill(target, bands, take)
        else:
            for band in bands:
                np.multiply(band, take, out=band)
            filled = True
        still &= ~take
        if not empty.any():
            break
    return out


def _fill(out: np.ndarray, values: Sequence[np.ndarray], take: np.ndarray) -> None:
    """The fuse's first clear value: each of a scene's ``values`` (its own arrays, zeroed here
    outside ``take``) into ``out[i]`` where ``take``, pixels still empty, where ``out`` is 0: so a
    multiply and an OR. numpy's masked copy (``np.copyto(..., where=take)``) took 13 ms for a
    2048 px band against 2.6 ms for the multiply; py-spy had 10 % of the cube stage's busy time
    at 10 m in it."""
    for i, v in enumerate(values):
        np.multiply(v, take, out=v)
        out[i] |= v


def _strips(sources: Sequence[SceneSource], geobox) -> list[slice]:
    """Rows of ``geobox`` in strips whose native pixels stay under :data:`~cubemosaic.tuning.STRIP_PIXELS`."""
    k = max(max(_factor(g, geobox) or 1, 1) for s in sources for g in s.bands)
    h, w = geobox.shape
    rows = max(1, STRIP_PIXELS // (w * k * k))
    return [slice(y, min(h, y + rows)) for y in range(0, h, rows)]


def _average_day(sources: Sequence[SceneSource], geobox, mask: CloudMask, access: Access, aoi_wkt: str | None):
    n = len(sources[0].bands)
    out = np.zeros((n,) + tuple(geobox.shape), dtype=np.uint16)
    empty = aoi_block(aoi_wkt, geobox)
    for scene in sources:
        if not empty.any():
            break
        if all(is_aligned(g, geobox) for g in (*scene.bands, scene.scl)):
            values, clear = _average_scene(scene, geobox, mask, access)
        else:
            masked = _masked(scene.scl, geobox, mask, access)
            values, clear = _scene_bands(scene, geobox, access, "average", masked)
        take = empty & clear
        _fill(out, values, take)
        empty &= ~take
    return out


def _average_scene(scene: SceneSource, geobox, mask: CloudMask, access: Access) -> tuple[np.ndarray, np.ndarray]:
    """((bands, y, x) mean of each output pixel's clear native pixels, rounded to whole DN; where every
    band has at least one clear native pixel). Bands whose pixels are the output's or coarser (the
    same pixels, or an upsampling) are read as by nearest. Written by hand: GDAL's and odc-loader's
    average resampling cannot leave out the pixels a per-scene mask at native resolution excludes."""

    h, w = geobox.shape
    out = geobox.transform
    values = np.zeros((len(scene.bands), h, w), dtype=np.uint16)
    clear_all = np.ones((h, w), dtype=bool)
    shrinks = [max(_factor(grid, geobox) or 1, 1) for grid in scene.bands]
    natives = {  # the block on each band's own pixels
        k: geobox if k == 1 else GeoBox((h * k, w * k), Affine(out.a / k, 0, out.c, 0, out.e / k, out.f), geobox.crs)
        for k in shrinks
    }
    # The scene's mask on each band resolution, then every band, on the I/O pool.
    masks = dict(
        zip(natives, _io_pool().map(lambda k: _masked(scene.scl, natives[k], mask, access), natives), strict=True)
    )
    pairs = list(zip(scene.bands, shrinks, strict=True))
    bands = list(_io_pool().map(lambda gk: _read(gk[0], natives[gk[1]], access), pairs))
    for i, (band, k) in enumerate(zip(bands, shrinks, strict=True)):
        clear = ~masks[k] & (band != 0)
        dn = _harmonise(band, scene.offset)
        if k == 1:
            np.multiply(dn, clear, out=values[i])  # dn where clear, else 0 (see _fill)
            clear_all &= clear
            continue
        sums = np.where(clear, dn, 0).astype(np.uint32).reshape(h, k, w, k).sum(axis=(1, 3))
        counts = clear.reshape(h, k, w, k).sum(axis=(1, 3), dtype=np.uint32)
        has = counts > 0
        mean = (2 * sums + counts) // np.maximum(2 * counts, 1)  # rounded half up
        values[i] = np.where(has, mean, 0).astype(np.uint16)
        clear_all &= has
    return values, clear_all


def _scene_bands(
    scene: SceneSource,
    geobox,
    access: Access,
    resampling: str,
    masked: np.ndarray,
    into: np.ndarray | None = None,
) -> tuple[list[np.ndarray], np.ndarray]:
    """The scene's bands on ``geobox`` read with ``resampling`` (on the I/O pool; into the
    (bands, y, x) array ``into``, all 0, when given) and harmonised, and where the scene is clear:
    not ``masked`` and every band has data. The one place the mask / offset rule meets the
    pixels, for both the nearest fuse and a warped average."""
    dests = [None] * len(scene.bands) if into is None else list(into)
    pairs = list(zip(scene.bands, dests, strict=True))
    bands = list(_io_pool().map(lambda p: _read(p[0], geobox, access, resampling, p[1]), pairs))
    clear = ~masked
    for band in bands:
        clear &= band != 0
    return [_harmonise(band, scene.offset) for band in bands], clear
