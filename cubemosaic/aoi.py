"""The area of interest as users have it: a lon/lat box, a GeoJSON file or a WKT string.

:func:`parse_aoi` turns ``aoi=`` into a :class:`Aoi`: the box the search and the output grid use,
and, for a polygon, its WKT (WGS84), outside which every pixel is no data. Bad geometry is
refused here, in one line naming ``aoi``, before any search; :func:`aoi_block` says which pixels of
a block are inside the polygon (for the reads and the export). Shapely reads and checks the
geometry; only the choice of what to accept is written here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from shapely.geometry import shape
from shapely.validation import explain_validity

from .errors import ConfigError

__all__ = ["Aoi", "aoi_block", "parse_aoi"]

#: GeoJSON ``crs`` members (the 2008 draft) that still mean WGS84 longitude/latitude.
_WGS84_NAMES = ("urn:ogc:def:crs:OGC:1.3:CRS84", "urn:ogc:def:crs:EPSG::4326", "EPSG:4326", "CRS84")
_WKT_STARTS = ("POLYGON", "MULTIPOLYGON")


@dataclass(frozen=True)
class Aoi:
    """Where to mosaic: the (min_lon, min_lat, max_lon, max_lat) box, and a polygon inside it, if one."""

    bbox: tuple[float, float, float, float]
    #: The polygon (or multipolygon) as WKT in WGS84; ``None`` for a plain box.
    wkt: str | None = None


def parse_aoi(value: Any) -> Aoi:
    """``aoi=`` as a box ``[min_lon,min_lat,max_lon,max_lat]``, a GeoJSON file (Polygon, MultiPolygon,
    Feature or FeatureCollection of them) or a WKT POLYGON/MULTIPOLYGON string, all in WGS84."""
    if value is None:
        raise ConfigError("aoi", "required, as [min_lon,min_lat,max_lon,max_lat], a GeoJSON file or a WKT polygon")
    if isinstance(value, str):
        text = value.strip()
        if text.upper().startswith(_WKT_STARTS):
            return _polygon(_from_wkt(text), "the WKT polygon")
        if not text.startswith("[") and (
            Path(text).expanduser().suffix.lower() in (".geojson", ".json") or Path(text).expanduser().exists()
        ):
            return _polygon(_from_geojson_file(Path(text).expanduser()), str(Path(text).expanduser()))
        value = [v for v in text.replace("[", "").replace("]", "").split(",") if v.strip()]
    return Aoi(_box(value))


def _box(value: Any) -> tuple[float, float, float, float]:
    try:
        vals = tuple(float(v) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(
            "aoi",
            f"{value!r} is neither four numbers [min_lon,min_lat,max_lon,max_lat], a GeoJSON file nor a WKT polygon",
        ) from None
    if len(vals) != 4:
        raise ConfigError("aoi", f"needs 4 numbers [min_lon,min_lat,max_lon,max_lat], got {len(vals)}")
    x0, y0, x1, y1 = vals
    if not (-180 <= x0 <= 180 and -180 <= x1 <= 180):
        raise ConfigError("aoi", f"longitudes must lie in [-180, 180], got {x0} and {x1}")
    if not (-90 <= y0 <= 90 and -90 <= y1 <= 90):
        raise ConfigError("aoi", f"latitudes must lie in [-90, 90], got {y0} and {y1}")
    if x0 >= x1 or y0 >= y1:
        raise ConfigError("aoi", "min must be below max: [min_lon,min_lat,max_lon,max_lat]")
    return (x0, y0, x1, y1)


def _from_wkt(text: str):

    try:
        return shapely.from_wkt(text)
    except shapely.errors.ShapelyError as e:
        raise ConfigError("aoi", f"cannot read the WKT polygon ({str(e).splitlines()[0]})") from None


def _from_geojson_file(path: Path):

    try:
        doc = json.loads(path.read_text())
    except OSError as e:
        raise ConfigError("aoi", f"cannot read {path} ({e.strerror or e})") from None
    except ValueError:
        raise ConfigError("aoi", f"{path} is not JSON (a GeoJSON file is expected)") from None
    if not isinstance(doc, dict) or "type" not in doc:
        raise ConfigError("aoi", f"{path} is not GeoJSON (no 'type')")
    crs = doc.get("crs")
    if isinstance(crs, dict):  # {"type": "name", "properties": {"name": ...}} (GeoJSON 2008)
        properties = crs.get("properties")
        crs = properties.get("name") if isinstance(properties, dict) else None
    name = crs if isinstance(crs, str) else None
    if name and name not in _WGS84_NAMES:
        raise ConfigError("aoi", f"{path} states crs {name!r}; the AOI must be in WGS84 longitude/latitude (EPSG:4326)")
    kind = doc["type"]
    if kind == "FeatureCollection":
        features = doc.get("features") or []
        if not isinstance(features, list) or not all(isinstance(f, dict) for f in features):
            raise ConfigError("aoi", f"{path}: 'features' must be a list of GeoJSON Features")
        geometries = [f.get("geometry") for f in features]
    elif kind == "Feature":
        geometries = [doc.get("geometry")]
    else:
        geometries = [doc]
    shapes = []
    for geometry in geometries:
        if not geometry:
            continue
        if not isinstance(geometry, dict):
            raise ConfigError("aoi", f"{path}: a geometry must be a GeoJSON object, got {type(geometry).__name__}")
        if geometry.get("type") not in ("Polygon", "MultiPolygon"):
            raise ConfigError("aoi", f"{path} holds a {geometry.get('type')}; only Polygon and MultiPolygon are areas")
        try:
            shapes.append(shape(geometry))
        except (ValueError, TypeError, AttributeError, IndexError, shapely.errors.ShapelyError) as e:
            raise ConfigError("aoi", f"{path} has a geometry shapely cannot read ({e})") from None
    if not shapes:
        raise ConfigError("aoi", f"{path} has no geometry")
    return shapely.union_all(shapes) if len(shapes) > 1 else shapes[0]


def _polygon(geom, where: str) -> Aoi:

    if geom.geom_type not in ("Polygon", "MultiPolygon"):
        raise ConfigError("aoi", f"{where} is a {geom.geom_type}; only POLYGON and MULTIPOLYGON are areas")
    if geom.is_empty:
        raise ConfigError("aoi", f"{where} is empty (no area)")
    x0, y0, x1, y1 = geom.bounds
    if not (-180 <= x0 and x1 <= 180 and -90 <= y0 and y1 <= 90):
        raise ConfigError(
            "aoi",
            f"{where} has coordinates outside longitude/latitude ({x0:g}, {y0:g} .. {x1:g}, {y1:g}): "
            "it must be in WGS84 (EPSG:4326), longitude first",
        )
    if not geom.is_valid:
        raise ConfigError("aoi", f"{where} is not a valid polygon ({explain_validity(geom)})")
    if geom.area == 0:
        raise ConfigError("aoi", f"{where} is empty (no area)")
    return Aoi((x0, y0, x1, y1), geom.wkt)


def aoi_block(aoi_wkt: str | None, geobox) -> np.ndarray:
    """True for the pixels of ``geobox`` whose centre is inside the AOI polygon (WGS84 WKT);
    all True without one. The same rule as rasterio's geometry_mask, through shapely's
    ``contains_xy`` (GDAL's rasterizer warns spuriously from Dask's threads); cached per block,
    since every day of a block asks again."""
    if not aoi_wkt:
        return np.ones(geobox.shape, dtype=bool)
    return _inside(aoi_wkt, str(geobox.crs), tuple(geobox.transform)[:6], tuple(geobox.shape)).copy()


@lru_cache(maxsize=64)
def _inside(aoi_wkt: str, crs: str, transform: tuple[float, ...], shape: tuple[int, int]) -> np.ndarray:
    # odc-geo (pyproj) imported here, where a polygon is put on a grid: config imports this module
    # to parse aoi=, and the command line's start-up (``--help``, a refused configuration) does not
    # need pyproj.
    from odc.geo.geom import Geometry

    area = Geometry(shapely.from_wkt(aoi_wkt), "EPSG:4326").to_crs(crs).geom
    shapely.prepare(area)
    a, b, c, d, e, f = transform
    cols, rows = np.arange(shape[1]) + 0.5, np.arange(shape[0]) + 0.5
    xs = c + a * cols[None, :] + b * rows[:, None]
    ys = f + d * cols[None, :] + e * rows[:, None]
    return shapely.contains_xy(area, xs, ys)
