"""cubemosaic.catalog: search (static files, catalogs, paged APIs and their failures) and band-name resolution."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pystac
import pytest

from cubemosaic.catalog import SearchRequest, asset_key, resolve_bands, search
from cubemosaic.errors import CatalogError, ConfigError, NothingFoundError
from cubemosaic.s2 import item_offset

from conftest import search_request

#: A real Planetary Computer item, as recorded in shared/reference-items.
PC_ITEM = Path(__file__).parents[1] / "data" / "planetary-computer-S2B_MSIL2A_20190629T212529_R043_T06VVN.json"


# --------------------------------------------------------------------------- bands
@pytest.fixture(scope="module")
def pc_item() -> pystac.Item:
    return pystac.Item.from_file(str(PC_ITEM))


def test_planetary_computer_bands_resolve_by_common_name_and_key(pc_item):
    bands, scl = resolve_bands([pc_item], ["red", "green", "blue", "nir", "B8A", "swir16", "coastal"])
    assert bands == {
        "red": "B04",
        "green": "B03",
        "blue": "B02",
        "nir": "B08",
        "B8A": "B8A",
        "swir16": "B11",
        "coastal": "B01",
    }
    assert scl == "SCL"
    assert asset_key(pc_item, "b04") == "B04"  # asset keys case-insensitively


def test_the_visual_asset_never_stands_for_a_band(pc_item):
    assert "visual" in pc_item.assets
    assert asset_key(pc_item, "red") == "B04"


def test_unknown_band_names_the_band(pc_item):
    with pytest.raises(ConfigError, match="'purple' is not a band") as err:
        resolve_bands([pc_item], ["red", "purple"])
    assert "B04" in str(err.value) and "swir16" in str(err.value) and "granule-metadata" not in str(err.value)


def test_ambiguous_common_name_is_refused(pc_item):
    # Planetary Computer gives B05, B06, B07 and B8A the same common name.
    with pytest.raises(ConfigError, match="'rededge' is ambiguous.*B05, B06, B07, B8A"):
        resolve_bands([pc_item], ["rededge"])


def _item(assets: dict, extensions=(), props=None) -> pystac.Item:
    return pystac.Item.from_dict(
        {
            "type": "Feature",
            "stac_version": "1.1.0",
            "id": "x",
            "stac_extensions": list(extensions),
            "geometry": {"type": "Point", "coordinates": [0, 0]},
            "bbox": [0, 0, 0, 0],
            "properties": {"datetime": "2023-05-01T10:00:00Z", **(props or {})},
            "links": [],
            "assets": assets,
        }
    )


def test_earth_search_assets_named_by_common_name():
    item = _item(
        {
            "red": {"href": "r.tif", "eo:bands": [{"name": "red", "common_name": "red"}]},
            "nir": {"href": "n.tif", "eo:bands": [{"name": "nir", "common_name": "nir"}]},
            "scl": {"href": "s.tif"},
            "visual": {
                "href": "v.tif",
                "eo:bands": [{"name": "red", "common_name": "red"}, {"name": "green", "common_name": "green"}],
            },
        }
    )
    assert resolve_bands([item], ["red", "nir"]) == ({"red": "red", "nir": "nir"}, "scl")


def test_stac_1_1_bands_field():
    item = _item(
        {
            "B04": {"href": "r.tif", "bands": [{"name": "B04", "eo:common_name": "red"}]},
            "B08": {"href": "n.tif", "bands": [{"name": "B08", "eo:common_name": "nir"}]},
            "SCL": {"href": "s.tif", "bands": [{"name": "SCL"}]},
        }
    )
    assert resolve_bands([item], ["red", "nir"]) == ({"red": "B04", "nir": "B08"}, "SCL")


def test_an_item_missing_a_band_is_named(demo):
    items = search(str(demo.items_path), search_request())
    del items[2].assets["B04"]
    with pytest.raises(CatalogError, match=f"^catalog.url: item {items[2].id} has no asset 'B04' for band 'red'"):
        resolve_bands(items, ["red"])


# --------------------------------------------------------------------------- search
def test_static_file_filters(demo):
    every = search(str(demo.items_path), search_request())
    assert len(every) == 19
    assert [i.datetime for i in every] == sorted(i.datetime for i in every)
    clear = search(str(demo.items_path), search_request(max_cloud_cover=50))
    assert 0 < len(clear) < len(every)
    assert all(i.properties["eo:cloud_cover"] <= 50 for i in clear)
    assert len(search(str(demo.items_path), search_request(max_items=3))) == 3
    jan = search(str(demo.items_path), search_request(start_date=dt.date(2022, 1, 1), end_date=dt.date(2022, 1, 31)))
    assert {i.datetime.month for i in jan} == {1} and len(jan) == 5
    with pytest.raises(NothingFoundError):
        search(str(demo.items_path), search_request(bbox=(10.0, 10.0, 11.0, 11.0)))
    with pytest.raises(NothingFoundError):
        search(str(demo.items_path), search_request(collection="landsat-c2-l2"))


def test_static_catalog_file(demo, tmp_path):
    catalog = pystac.Catalog(id="local", description="a static catalog")
    for feature in json.loads(demo.items_path.read_text())["features"]:
        catalog.add_item(pystac.Item.from_dict(feature))
    catalog.normalize_hrefs(str(tmp_path / "cat"))
    catalog.save(pystac.CatalogType.SELF_CONTAINED)
    found = search(str(tmp_path / "cat" / "catalog.json"), search_request(max_cloud_cover=50))
    assert [i.id for i in found] == [i.id for i in search(str(demo.items_path), search_request(max_cloud_cover=50))]


DATA = Path(__file__).parents[1] / "data"
LAYOUT = DATA / "cdse-layout-S2B_MSIL2A_20240805T101559_N0511_R065_T32TPT.json"


def test_bands_and_the_mask_resolve_to_the_native_resolution_asset():
    item = pystac.Item.from_dict(json.loads(LAYOUT.read_text()))
    bands, scl = resolve_bands([item], ["red", "green", "blue", "nir", "B8A", "swir16"])
    assert bands == {
        "red": "B04_10m",
        "green": "B03_10m",
        "blue": "B02_10m",
        "nir": "B08_10m",
        "B8A": "B8A_20m",
        "swir16": "B11_20m",
    }
    assert scl == "SCL_20m"
    assert item_offset(item, "B04_10m") == 1000  # raster:offset -0.1 at scale 0.0001


def test_keys_alone_are_enough():
    """Some CDSE records carry no band list: the key (``B04_10m``) still names band and resolution."""
    doc = json.loads(LAYOUT.read_text())
    for asset in doc["assets"].values():
        asset.pop("bands", None)
        asset.pop("gsd", None)
        asset.pop("proj:transform", None)
    item = pystac.Item.from_dict(doc)
    bands, scl = resolve_bands([item], ["B04", "B8A"])
    assert bands == {"B04": "B04_10m", "B8A": "B8A_20m"} and scl == "SCL_20m"


# --------------------------------------------------------------------------- malformed items
def _drop(feature: dict, *path: str) -> None:
    for key in path[:-1]:
        feature = feature[key]
    del feature[path[-1]]


def _set(value):
    def change(feature: dict, *path: str) -> None:
        for key in path[:-1]:
            feature = feature[key]
        feature[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "path", "needle"),
    [
        (_drop, ("properties", "datetime"), "has no datetime (nor start_datetime and end_datetime)"),
        (_set(None), ("properties", "datetime"), "has no datetime"),
        (_set("yesterday"), ("properties", "datetime"), "datetime 'yesterday' is not a date-time"),
        (_set(None), ("assets", "B04", "href"), "asset 'B04' has no href"),
        (_set(None), ("assets", "SCL", "href"), "asset 'SCL' has no href"),
        (_set(""), ("assets", "B08", "href"), "asset 'B08' has no href"),
        (_set(None), ("geometry",), "has no geometry"),
        (_drop, ("geometry",), "has no geometry"),
        (_set({"type": "Polygon", "coordinates": []}), ("geometry",), "has no geometry"),
        # A probe: a TypeError where max_cloud_cover compared it.
        (_set("10.8"), ("properties", "eo:cloud_cover"), "eo:cloud_cover '10.8' is not a number"),
        # A probe: 150 was left out by max_cloud_cover without a word, and let in without one.
        (_set(150), ("properties", "eo:cloud_cover"), "eo:cloud_cover 150 is not a percentage (0-100)"),
        (_set(-3.5), ("properties", "eo:cloud_cover"), "eo:cloud_cover -3.5 is not a percentage (0-100)"),
    ],
)
def test_a_malformed_item_is_named_by_its_id_before_any_read(demo, tmp_path, change, path, needle):
    import datetime as dt
    import json

    from cubemosaic.catalog import search
    from cubemosaic.errors import CatalogError

    doc = json.loads(demo.items_path.read_text())
    item = doc["features"][2]
    change(item, *path)
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
    with pytest.raises(CatalogError) as e:
        search(str(items), request)
    assert str(e.value).startswith(f"catalog.url: item {item['id']} in {items}")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_a_baseline_the_acquisition_date_contradicts_is_refused_naming_the_item(demo, tmp_path):
    """A probe: a scene of 2022-02 stated as baseline 03.01 (no 03.xx was made after 04.00 came on
    2022-01-25) was read without its 1000 DN offset, every pixel wrong, exit 0. Which statement
    lies cannot be told, so the search refuses it; a reprocessed older scene (05.00 before the
    change) and one whose assets state their offset are taken as they say."""
    import datetime as dt
    import json

    from cubemosaic.catalog import search
    from cubemosaic.errors import CatalogError

    doc = json.loads(demo.items_path.read_text())
    late = next(f for f in doc["features"] if f["properties"]["datetime"] >= "2022-01-26")
    early = next(f for f in doc["features"] if f["properties"]["datetime"] < "2022-01-25")
    request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
    items = tmp_path / "items.json"

    late["properties"]["s2:processing_baseline"] = "03.01"
    items.write_text(json.dumps(doc))
    with pytest.raises(CatalogError) as e:
        search(str(items), request)
    said = str(e.value)
    assert said.startswith(f"catalog.url: item {late['id']} in {items}: s2:processing_baseline '03.01'")
    assert "reflectance offset (1000 DN) cannot be told" in said and "\n" not in said

    for asset in late["assets"].values():
        asset["raster:bands"] = [{"scale": 0.0001, "offset": -0.1}]  # stated: the assets decide
    early["properties"]["s2:processing_baseline"] = "05.00"  # reprocessed, with the offset
    items.write_text(json.dumps(doc))
    assert {i.id for i in search(str(items), request)} >= {late["id"], early["id"]}


def test_a_date_time_without_an_offset_is_utc_whatever_the_hosts_time_zone(demo, tmp_path, monkeypatch):
    """A probe: one item's datetime without its offset was a TypeError (it did not sort beside the
    others); every item's so gave other months under another TZ. STAC's date-times are UTC."""
    import datetime as dt
    import json
    import time

    from cubemosaic.catalog import search

    doc = json.loads(demo.items_path.read_text())
    stated = doc["features"][2]["properties"]["datetime"]
    doc["features"][2]["properties"]["datetime"] = stated.replace("Z", "").split("+")[0]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
    found = {}
    for zone in ("UTC", "Pacific/Kiritimati", "America/Los_Angeles"):
        monkeypatch.setenv("TZ", zone)
        time.tzset()
        found[zone] = {i.id: i.datetime for i in search(str(items), request)}
    monkeypatch.delenv("TZ")
    time.tzset()
    assert found["UTC"] == found["Pacific/Kiritimati"] == found["America/Los_Angeles"]
    when = found["UTC"][doc["features"][2]["id"]]
    assert when == pystac.utils.str_to_datetime(stated) and when.tzinfo is not None


def test_the_period_is_of_solar_days_as_the_months_are(demo, tmp_path):
    """A probe: a scene at -122 deg stated at 2021-12-01T05:00Z (its solar day Nov 30) was found
    for a period from Dec 1 by its UTC date and made a November mosaic; one at 2022-04-01T05:00Z
    (solar day Mar 31) was left out of a period ending Mar 31."""
    from cubemosaic.s2 import solar_day

    doc = json.loads(demo.items_path.read_text())
    early = doc["features"][0]
    # A scene of the later baseline, as every scene acquired in April 2022 is.
    late = next(f for f in doc["features"][1:] if f["properties"]["s2:processing_baseline"] >= "04.00")
    early["properties"]["datetime"] = "2021-12-01T05:00:00Z"
    late["properties"]["datetime"] = "2022-04-01T05:00:00Z"
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))

    def found(start: dt.date, end: dt.date) -> set[str]:
        return {i.id for i in search(str(items), SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), start, end))}

    period = found(dt.date(2021, 12, 1), dt.date(2022, 3, 31))
    assert early["id"] not in period and late["id"] in period
    assert early["id"] in found(dt.date(2021, 11, 30), dt.date(2022, 3, 31))
    assert late["id"] not in found(dt.date(2021, 12, 1), dt.date(2022, 3, 30))
    kept = [i for i in search(str(items), SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1),
                                                       dt.date(2022, 3, 31)))]  # fmt: skip
    assert all(dt.date(2021, 12, 1) <= solar_day(i) <= dt.date(2022, 3, 31) for i in kept)


# --------------------------------------------------------------------------- failing searches
class _PagedAPI:
    """A STAC API on loopback answering a search in two pages (the demo's items split in half),
    whose second page fails with ``status`` the first ``failures`` times it is asked for."""

    def __init__(self, features: list[dict], status: int, failures: int) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self
        self.second_page_requests = 0
        half = len(features) // 2

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, doc: dict | None = None) -> None:
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                base = f"http://127.0.0.1:{api.port}"
                if self.path.startswith("/search") and "page=2" in self.path:
                    api.second_page_requests += 1
                    if api.second_page_requests <= failures:
                        return self._send(status)
                    return self._send(200, {"type": "FeatureCollection", "features": features[half:], "links": []})
                if self.path.startswith("/search"):
                    return self._first_page(base)
                landing = {
                    "type": "Catalog",
                    "id": "paged",
                    "description": "two pages",
                    "stac_version": "1.0.0",
                    "conformsTo": [
                        "https://api.stacspec.org/v1.0.0/core",
                        "https://api.stacspec.org/v1.0.0/item-search",
                    ],
                    "links": [
                        {"rel": "self", "href": base, "type": "application/json"},
                        {"rel": "root", "href": base, "type": "application/json"},
                        {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "GET"},
                    ],
                }
                return self._send(200, landing)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return self._first_page(f"http://127.0.0.1:{api.port}")

            def _first_page(self, base: str) -> None:
                next_page = {"rel": "next", "href": f"{base}/search?page=2", "method": "GET"}
                self._send(200, {"type": "FeatureCollection", "features": features[:half], "links": [next_page]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "failures"), [(503, 2), (429, 1), (502, 4)])
def test_a_transient_failure_on_the_second_page_is_retried(demo, monkeypatch, status, failures):
    import datetime as dt
    import json

    from cubemosaic import catalog
    from cubemosaic.catalog import search

    monkeypatch.setattr(catalog, "SEARCH_BACKOFF_S", 0.01)
    features = json.loads(demo.items_path.read_text())["features"]
    api = _PagedAPI(features, status, failures)
    try:
        request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
        found = search(api.url, request)
    finally:
        api.close()
    assert api.second_page_requests == failures + 1
    assert [it.id for it in found] == [it.id for it in search(str(demo.items_path), request)]
    assert len(found) == len(features)


def test_a_search_that_keeps_failing_names_the_status(demo, monkeypatch):
    import datetime as dt
    import json

    from cubemosaic import catalog
    from cubemosaic.catalog import search
    from cubemosaic.errors import CatalogError

    monkeypatch.setattr(catalog, "SEARCH_BACKOFF_S", 0.01)
    features = json.loads(demo.items_path.read_text())["features"]
    api = _PagedAPI(features, 503, 1000)
    try:
        request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
        with pytest.raises(CatalogError) as e:
            search(api.url, request)
    finally:
        api.close()
    assert (
        str(e.value) == f"catalog.url: {api.url} refused the search (HTTP 503 after {catalog.SEARCH_RETRIES + 1} tries)"
    )
    assert api.second_page_requests == catalog.SEARCH_RETRIES + 1


def test_an_item_listed_twice_is_one_scene_and_two_items_of_one_id_are_refused(demo, tmp_path):
    """The same item twice (pages overlapping) is taken once. Two different items of one id (a
    probe's: another day's assets under item 0's id) were both used, the scene counted twice
    (1045 count pixels +1), exit 0: now refused in one line naming the id."""
    doc = json.loads(demo.items_path.read_text())
    first = doc["features"][0]
    twice = tmp_path / "twice.json"
    twice.write_text(json.dumps({**doc, "features": [*doc["features"], first]}))
    assert [i.id for i in search(str(twice), search_request())] == [
        i.id for i in search(str(demo.items_path), search_request())
    ]
    other = json.loads(json.dumps(first))
    other["assets"] = doc["features"][1]["assets"]
    clash = tmp_path / "clash.json"
    clash.write_text(json.dumps({**doc, "features": [*doc["features"], other]}))
    with pytest.raises(CatalogError, match=f"two different items of id {first['id']}") as refused:
        search(str(clash), search_request())
    assert str(refused.value).startswith("catalog.url: ") and "\n" not in str(refused.value)


def test_max_items_counts_scenes_not_copies_of_one(demo, tmp_path):
    """Each item listed twice in a row: max_items=3 gives 3 scenes (the copies were counted, and
    the search stopped at 2 scenes, 1 of them twice)."""
    doc = json.loads(demo.items_path.read_text())
    doubled = tmp_path / "doubled.json"
    doubled.write_text(json.dumps({**doc, "features": [f for f in doc["features"] for _ in (0, 1)]}))
    found = search(str(doubled), search_request(max_items=3))
    assert [i.id for i in found] == [i.id for i in search(str(demo.items_path), search_request(max_items=3))]
