"""Catalogs: open a STAC API or a static file, search it, resolve band names.

A ``catalog.url`` is either a STAC API root (searched with pystac-client, cloud cover
through the query extension where the API conforms to it) or a static ItemCollection /
catalog JSON (a path or URL), filtered in-process by the same rules. Either way the
result is a list of :class:`pystac.Item` sorted by time.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import warnings
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pystac
import requests
import shapely
from pystac_client import Client
from pystac_client.conformance import ConformanceClasses
from pystac_client.exceptions import APIError
from pystac_client.stac_api_io import StacApiIO
from shapely.geometry import shape
from urllib3.util.retry import Retry

from .errors import CatalogError, ConfigError, NothingFoundError, one_line
from .s2 import asset_resolution, offset_contradiction, solar_day
from .urls import is_local, local_path, redact

__all__ = [
    "SearchRequest",
    "asset_key",
    "resolve_bands",
    "search",
]

log = logging.getLogger(__name__)

CLOUD_COVER = "eo:cloud_cover"
#: Answers of a catalog that are transient (rate limiting, a server or gateway failing for a
#: moment): every request of a search is retried on them, with backoff.
RETRY_STATUS = (429, 500, 502, 503, 504)
#: Retries of one request (a page of a search) on a transient answer or a failed connection.
SEARCH_RETRIES = 4
#: Backoff factor in seconds: waits of 0, 2x, 4x, 8x it between the tries (urllib3's rule), or
#: what the server's ``Retry-After`` says.
SEARCH_BACKOFF_S = 0.5


@dataclass(frozen=True)
class SearchRequest:
    """What to look for (strict types; built from validated settings)."""

    collection: str
    #: (min_lon, min_lat, max_lon, max_lat), WGS84.
    bbox: tuple[float, float, float, float]
    start_date: dt.date
    #: Inclusive: scenes on this day are found.
    end_date: dt.date
    #: A polygon AOI (WKT, WGS84) inside ``bbox``: only scenes whose footprint meets it are kept.
    geometry: str | None = None
    #: Scene-level cloud cover limit in percent; 100 keeps everything.
    max_cloud_cover: float = 100.0
    #: Stop after this many scenes (in the catalog's order); ``None`` for all.
    max_items: int | None = None

    @property
    def datetime_range(self) -> str:
        """The search's window in UTC: the period a day wider on each side, since a scene belongs
        to its solar day (:func:`cubemosaic.s2.solar_day`, up to 12 h from UTC), as the cube's days
        and months do; :func:`_filter` then keeps the scenes whose solar day is in the period."""
        first, last = self.start_date - dt.timedelta(days=1), self.end_date + dt.timedelta(days=1)
        return f"{first.isoformat()}T00:00:00Z/{last.isoformat()}T23:59:59.999Z"


# --------------------------------------------------------------------------- search
def search(url: str, request: SearchRequest) -> list[pystac.Item]:
    """Items matching ``request`` from the STAC API or static file at ``url``, sorted by time."""
    doc = _read_json(url)
    kind = doc.get("type")
    if kind == "FeatureCollection":
        items = [_item(f, url) for f in doc.get("features", [])]
        found = _filter(items, request, source=url)
    elif kind in ("Catalog", "Collection") and _is_api(doc):
        found = _search_api(url, request)
    elif kind in ("Catalog", "Collection"):
        root = pystac.read_dict(doc, href=_absolute(url))
        try:
            found = _filter(root.get_items(recursive=True), request, source=url)
        except (pystac.STACError, ValueError, TypeError, KeyError) as e:  # pystac reading an item file
            raise CatalogError(
                f"catalog.url: an item of {redact(url)} is malformed ({one_line(str(e), 200)})"
            ) from None
    else:
        raise CatalogError(f"catalog.url: {redact(url)} is not a STAC API, catalog or ItemCollection")
    for item in found:
        _check_usable(item, url)
    found = _one_per_id(found, url)
    if not found:
        raise NothingFoundError(
            f"no scene of collection {request.collection!r} matches aoi={list(request.bbox)}, "
            f"{request.start_date}..{request.end_date}, max_cloud_cover={request.max_cloud_cover:g} "
            f"in {redact(url)}"
        )
    found.sort(key=lambda it: (it.datetime, it.id))
    log.info("search: %d scene(s) found", len(found))
    return found


def _one_per_id(items: list[pystac.Item], source: str) -> list[pystac.Item]:
    """``items`` with each id once. The same item twice (an API's pages overlapping, a file listing
    it twice) is taken once; two items of one id that say different things (other assets, another
    time) are :class:`CatalogError` naming the id: a scene's id is what the cube, its provenance
    and a rerun know it by, and both used would count the scene twice."""
    first: dict[str, tuple[pystac.Item, dict[str, Any]]] = {}
    kept = []
    for item in items:
        d = item.to_dict(include_self_link=False, transform_hrefs=False)
        content = {k: d.get(k) for k in ("geometry", "bbox", "properties", "assets", "collection")}
        # An item re-ingested between two pages of a search differs in its record's times only.
        content["properties"] = {
            k: v for k, v in (content["properties"] or {}).items() if k not in ("updated", "created")
        }
        if item.id not in first:
            first[item.id] = (item, content)
            kept.append(item)
        elif first[item.id][1] != content:
            raise CatalogError(
                f"catalog.url: {redact(source)} holds two different items of id {item.id} (other assets, time "
                "or footprint): which one is the scene cannot be told; remove one"
            )
    return kept


def _absolute(url: str) -> str:
    return str(Path(local_path(url)).expanduser().absolute()) if is_local(url) else url


def _retry():
    """urllib3's retry policy for every request to a catalog: :data:`SEARCH_RETRIES` tries more on
    a failed connection or a :data:`RETRY_STATUS` answer, any method (a search is a POST that
    changes nothing), the last answer returned so that its status is named."""
    return Retry(
        total=SEARCH_RETRIES,
        backoff_factor=SEARCH_BACKOFF_S,
        status_forcelist=RETRY_STATUS,
        allowed_methods=None,
        raise_on_status=False,
    )


def _session() -> requests.Session:
    session = requests.Session()
    adapter = requests.adapters.HTTPAdapter(max_retries=_retry())
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def _status(code: int) -> str:
    """An HTTP status as the messages name it; a transient one says it was retried."""
    return f"HTTP {code} after {SEARCH_RETRIES + 1} tries" if code in RETRY_STATUS else f"HTTP {code}"


def _read_json(url: str) -> dict[str, Any]:

    try:
        if is_local(url):
            text = Path(local_path(url)).expanduser().read_text()
        else:
            with _session() as session:
                resp = session.get(url, timeout=30)
            if resp.status_code >= 400:
                raise CatalogError(f"catalog.url: {redact(url)} answered {_status(resp.status_code)}")
            text = resp.text
        doc = json.loads(text)
    except requests.ConnectionError:
        raise CatalogError(f"catalog.url: cannot reach {redact(url)} (connection failed)") from None
    except requests.Timeout:
        raise CatalogError(f"catalog.url: {redact(url)} did not answer in time") from None
    except requests.RequestException as e:
        raise CatalogError(f"catalog.url: cannot read {redact(url)} ({type(e).__name__})") from None
    except OSError as e:
        raise CatalogError(f"catalog.url: cannot read {redact(url)} ({e.strerror or e})") from None
    except ValueError:
        raise CatalogError(f"catalog.url: {redact(url)} is not JSON") from None
    if not isinstance(doc, dict):
        raise CatalogError(f"catalog.url: {redact(url)} is not a STAC document")
    return doc


def _is_api(doc: dict[str, Any]) -> bool:
    conforms = doc.get("conformsTo") or []
    return any("item-search" in c for c in conforms) or any(
        link.get("rel") == "search" for link in doc.get("links", [])
    )


def _search_api(url: str, request: SearchRequest) -> list[pystac.Item]:

    try:
        client = Client.open(url, stac_io=StacApiIO(max_retries=_retry()))
        use_query = request.max_cloud_cover < 100 and client.conforms_to(ConformanceClasses.QUERY)
        query = {CLOUD_COVER: {"lte": request.max_cloud_cover}} if use_query else None
        # The server can stop at max_items only when it applies every filter itself.
        server_limit = request.max_items if (use_query or request.max_cloud_cover >= 100) else None
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # DoesNotConformTo: handled by the client-side filter
            where = {"intersects": _shape(request.geometry).__geo_interface__} if request.geometry else {}
            result = client.search(
                collections=[request.collection],
                bbox=None if where else list(request.bbox),
                **where,
                datetime=request.datetime_range,
                query=query,
                max_items=server_limit,
                limit=100,
            )
            items: list[pystac.Item] = []
            for n, page in enumerate(result.pages_as_dicts(), start=1):
                items.extend(_item(f, url) for f in page.get("features", []))
                log.info("search: page %d, %d scene(s) so far", n, len(items))
                if request.max_items and len(_filter(items, request, source=url, quiet=True)) >= request.max_items:
                    break
    except APIError as e:
        code = getattr(e, "status_code", None)
        status = _status(code) if code else "no status"
        said = f": {one_line(str(e), 200)}" if str(e).strip() else ""
        raise CatalogError(f"catalog.url: {redact(url)} refused the search ({status}{said})") from None
    except Exception as e:  # connection errors from requests, raised through pystac-client
        if isinstance(e, (CatalogError, ConfigError)):
            raise
        raise CatalogError(f"catalog.url: cannot search {redact(url)} ({type(e).__name__})") from None
    return _filter(items, request, source=url)


# --------------------------------------------------------------------------- malformed items
def _item(feature: Any, source: str) -> pystac.Item:
    """A STAC item from a search result's or a file's feature, or :class:`CatalogError` naming the
    item (its id) and what is wrong: no id, no usable ``datetime`` (nor ``start_datetime`` and
    ``end_datetime``), an asset without an ``href``. What only the kept items need is checked by
    :func:`_check_usable`."""
    where = redact(source)
    if not isinstance(feature, dict) or not isinstance(feature.get("id"), str) or not feature["id"]:
        raise CatalogError(f"catalog.url: an item of {where} has no id")
    name = feature["id"]
    props = feature.get("properties")
    if not isinstance(props, dict):
        raise CatalogError(f"catalog.url: item {name} in {where} has no properties")
    stated = [k for k in ("datetime", "start_datetime", "end_datetime") if props.get(k) is not None]
    if "datetime" not in stated and not {"start_datetime", "end_datetime"} <= set(stated):
        raise CatalogError(f"catalog.url: item {name} in {where} has no datetime (nor start_datetime and end_datetime)")
    for key in stated:
        try:
            when = pystac.utils.str_to_datetime(str(props[key]))
        except (ValueError, OverflowError):
            raise CatalogError(
                f"catalog.url: item {name} in {where}: {key} {props[key]!r} is not a date-time"
            ) from None
        if when.tzinfo is None:
            # STAC's date-times are UTC (RFC 3339 with its offset); one without an offset was read
            # as the host's local time (the same catalog gave other months on another machine)
            # and failed to sort beside the others (a probe): it is taken as UTC.
            props[key] = when.replace(tzinfo=dt.timezone.utc).isoformat()
    cloud = props.get(CLOUD_COVER)
    if cloud is not None and (isinstance(cloud, bool) or not isinstance(cloud, (int, float))):
        raise CatalogError(f"catalog.url: item {name} in {where}: {CLOUD_COVER} {cloud!r} is not a number")
    if cloud is not None and not 0 <= cloud <= 100:
        # A percentage (STAC eo): 150 was taken as above any max_cloud_cover and the scene left
        # out without a word (a probe); no reading of it is right.
        raise CatalogError(f"catalog.url: item {name} in {where}: {CLOUD_COVER} {cloud!r} is not a percentage (0-100)")
    assets = feature.get("assets")
    for key, asset in (assets if isinstance(assets, dict) else {}).items():
        href = asset.get("href") if isinstance(asset, dict) else None
        if not isinstance(href, str) or not href.strip():
            raise CatalogError(f"catalog.url: item {name} in {where}: asset {key!r} has no href")
    try:
        # Not migrated to the newest STAC version: migrating deep-copies every item (measured on PC
        # #12's 997 items: 2.97 s against 1.64 s), and what this package reads of an item it reads
        # in both forms (proj:code or proj:epsg, bands or raster:bands: cubemosaic.s2).
        return pystac.Item.from_dict(feature, preserve_dict=False, migrate=False)
    except (pystac.STACError, ValueError, TypeError, KeyError, AttributeError) as e:  # pystac's parse of the rest
        raise CatalogError(f"catalog.url: item {name} in {where} is malformed ({one_line(str(e), 200)})") from None


def _check_usable(item: pystac.Item, source: str) -> None:
    """:class:`CatalogError` naming ``item`` when a scene the search kept cannot be used: no
    footprint (``geometry``: the search could not tell whether it meets the aoi), an asset
    without an ``href``. Before any pixel is read."""
    where = redact(source)
    geometry = item.geometry
    try:
        footprint = _shape(geometry) if isinstance(geometry, dict) else None
    except (ValueError, TypeError, KeyError, AttributeError, shapely.errors.ShapelyError):
        footprint = None
    if footprint is None or footprint.is_empty:
        raise CatalogError(f"catalog.url: item {item.id} in {where} has no geometry (its footprint)")
    for key, asset in item.assets.items():
        if not isinstance(asset.href, str) or not asset.href.strip():
            raise CatalogError(f"catalog.url: item {item.id} in {where}: asset {key!r} has no href")
    contradiction = offset_contradiction(item)
    if contradiction:
        raise CatalogError(f"catalog.url: item {item.id} in {where}: {contradiction}")


def _filter(
    items: Iterable[pystac.Item], request: SearchRequest, source: str, quiet: bool = False
) -> list[pystac.Item]:
    """Apply ``request`` in-process (static files; APIs without the query extension). The period
    is of solar days (:func:`cubemosaic.s2.solar_day`), as the cube's are.

    ``max_items`` counts scenes, distinct ids: a copy of an item already kept (pages overlapping,
    a file listing it twice) is kept too, for :func:`_one_per_id` to compare, but does not count,
    or a search would stop short of the scenes asked for."""
    x0, y0, x1, y1 = request.bbox
    area = _shape(request.geometry) if request.geometry else None
    out: list[pystac.Item] = []
    ids: set[str] = set()
    for item in items:
        if item.collection_id and item.collection_id != request.collection:
            continue
        # By solar day, as the cube's days and months are: by UTC date a scene near the antimeridian
        # stated at 05:00Z on the first day made a month before the period (a probe), and one
        # whose solar day is the last was left out.
        when = item.datetime or item.common_metadata.start_datetime
        if when is None or not (request.start_date <= solar_day(item) <= request.end_date):
            continue
        if item.bbox:
            bx0, by0, bx1, by1 = item.bbox[0], item.bbox[1], item.bbox[-2], item.bbox[-1]
            if bx0 > x1 or bx1 < x0 or by0 > y1 or by1 < y0:
                continue
        if area is not None and item.geometry and not area.intersects(_shape(item.geometry)):
            continue
        cc = item.properties.get(CLOUD_COVER)
        if request.max_cloud_cover < 100 and cc is not None and cc > request.max_cloud_cover:
            continue
        out.append(item)
        ids.add(item.id)
        if request.max_items and len(ids) >= request.max_items:
            break
    if not quiet:
        log.debug("search: %d item(s) kept of %s", len(out), redact(source))
    return out


def _shape(geometry: str | dict[str, Any]):
    """A shapely geometry from WKT or a GeoJSON mapping."""

    return shapely.from_wkt(geometry) if isinstance(geometry, str) else shape(geometry)


# --------------------------------------------------------------------------- bands
def _band_names(asset: pystac.Asset) -> set[str]:
    """Every name an asset answers to: eo:bands / STAC 1.1 bands names and common names."""
    names: set[str] = set()
    for band in list(asset.extra_fields.get("eo:bands") or []) + list(asset.extra_fields.get("bands") or []):
        for key in ("name", "common_name", "eo:common_name"):
            if band.get(key):
                names.add(str(band[key]).lower())
    return names


def _candidates(item: pystac.Item, name: str) -> list[str]:
    """Asset keys of ``item`` that band ``name`` may mean, best first."""
    if name in item.assets:
        return [name]
    lowered = {k.lower(): k for k in item.assets}
    if name.lower() in lowered:
        return [lowered[name.lower()]]
    matches = [k for k, a in item.assets.items() if name.lower() in _band_names(a) or _key_band(k) == name.lower()]
    # Single-band assets only: a 'visual' TCI asset also carries red, green and blue.
    single = [
        k
        for k in matches
        if len(item.assets[k].extra_fields.get("eo:bands") or item.assets[k].extra_fields.get("bands") or [None]) == 1
    ]
    return _native(item, single) or matches


def _key_band(key: str) -> str:
    """The band a resolution-suffixed key names (Copernicus Data Space: ``B04_10m`` -> ``b04``)."""
    stem, _, suffix = key.rpartition("_")
    return stem.lower() if stem and suffix.endswith("m") and suffix[:-1].isdigit() else ""


def _native(item: pystac.Item, keys: list[str]) -> list[str]:
    """Of several assets of one band at different resolutions (``B04_10m``, ``B04_20m``, ``B04_60m``),
    the native one: the finest. Other lists are returned as they are."""
    if len(keys) < 2:
        return keys
    sizes = {k: asset_resolution(item.assets[k], k) for k in keys}
    if None in sizes.values() or len(set(sizes.values())) != len(keys):
        return keys
    return [min(keys, key=lambda k: sizes[k])]


def asset_key(item: pystac.Item, name: str) -> str | None:
    """The asset key of ``item`` for band ``name`` (asset key, band name or common name), if one."""
    found = _candidates(item, name)
    return found[0] if len(found) == 1 else None


def resolve_bands(
    items: Sequence[pystac.Item], bands: Sequence[str], mask_band: str = "SCL"
) -> tuple[dict[str, str], str]:
    """Map each requested band (and the SCL mask) to an asset key, checked on every item.

    Returns ``({band: asset_key}, scl_asset_key)``; raises :class:`ConfigError` naming
    the band when it is unknown or ambiguous, :class:`CatalogError` when an item lacks it.
    """
    if not items:
        raise NothingFoundError("no scene to resolve bands on")
    first = items[0]
    mapping: dict[str, str] = {}
    for band in bands:
        found = _candidates(first, band)
        if len(found) > 1:
            raise ConfigError(
                "bands", f"{band!r} is ambiguous in item {first.id} ({', '.join(found)}); name the asset instead"
            )
        if not found:
            data = [k for k, a in first.assets.items() if "data" in (a.roles or [])]
            common = {n for k in data for n in _band_names(first.assets[k])} - {k.lower() for k in data}
            raise ConfigError(
                "bands", f"{band!r} is not a band of item {first.id}; known: {', '.join(sorted(data) + sorted(common))}"
            )
        mapping[band] = found[0]
    scl = asset_key(first, mask_band)
    if scl is None:
        raise CatalogError(
            f"catalog.url: item {first.id} has no {mask_band} (scene classification) asset to mask clouds with"
        )
    for item in items[1:]:
        for band, key in list(mapping.items()) + [(mask_band, scl)]:
            if key not in item.assets:
                raise CatalogError(
                    f"catalog.url: item {item.id} has no asset {key!r} for band {band!r} (item {first.id} has); "
                    "remove the item or choose other bands"
                )
    return mapping, scl
