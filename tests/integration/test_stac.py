"""The STAC outputs, untiled and tiled, validated offline against the JSON schemas of STAC 1.1.0
and of every extension they declare (bundled in tests/data/stac-schemas; tests/stac_schemas.py)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import pystac
import pytest

from conftest import cli
from stac_schemas import assert_valid

MONTHS = ["2021-12", "2022-01", "2022-02", "2022-03"]
COLLECTION_EXTENSIONS = {"projection", "raster", "eo"}
ITEM_EXTENSIONS = {"projection", "raster", "eo", "processing"}


@pytest.fixture(scope="module")
def demo_tiled(demo_tiled_run) -> Path:
    """The demo cut into 128-pixel tiles (6 tiles): the session's run (conftest)."""
    return demo_tiled_run


def _documents(root: Path) -> Iterator[tuple[Path, dict]]:
    """``root`` and every STAC document its ``child`` and ``item`` links reach, each once."""
    seen: set[Path] = set()
    todo = [root.resolve()]
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        doc = json.loads(path.read_text())
        yield path, doc
        for link in doc.get("links", []):
            if link["rel"] in ("child", "item"):
                assert not Path(link["href"]).is_absolute(), f"{path}: {link['href']} is absolute"
                todo.append((path.parent / link["href"]).resolve())


def _extensions(doc: dict) -> set[str]:
    """The names of the extensions ``doc`` declares (``.../projection/v2.0.0/schema.json`` -> projection)."""
    return {url.split("/")[-3] for url in doc.get("stac_extensions", [])}


def _validate_tree(root: Path, root_type: str) -> list[dict]:
    """Validate ``root`` (of ``root_type``) and every document under it; returns the items."""
    docs = list(_documents(root))
    assert docs[0][1]["type"] == root_type
    for path, doc in docs:
        assert_valid(doc, str(path))
    return [doc for _, doc in docs if doc["type"] == "Feature"]


def test_the_untiled_collection_catalog_and_items_are_valid_stac(demo_run):
    """collection.json (the root) and catalog.json (kept for earlier users) list the same item
    files; the Collection, the Catalog and every item are valid against the bundled schemas."""
    items = _validate_tree(demo_run / "collection.json", "Collection")
    assert sorted(i["id"] for i in items) == [f"monthly-mosaic-{m}" for m in MONTHS]
    assert _validate_tree(demo_run / "catalog.json", "Catalog") == items, "the same item files"
    for item in items:
        assert item["collection"] == "cubemosaic"
        assert ITEM_EXTENSIONS <= _extensions(item), item["stac_extensions"]
    collection = json.loads((demo_run / "collection.json").read_text())
    assert COLLECTION_EXTENSIONS <= _extensions(collection)
    assert collection["summaries"]["cubemosaic:months"] == MONTHS
    assert collection["summaries"]["proj:code"] == ["EPSG:32610"]
    assert {"mosaic", "count"} <= set(collection["item_assets"])
    assert collection["item_assets"]["mosaic"]["raster:bands"][0]["scale"] == 0.0001
    assert collection["assets"]["overview"]["href"] == "./overview.png"
    assert str(demo_run) not in (demo_run / "collection.json").read_text(), "self-contained: relative hrefs"
    catalog = json.loads((demo_run / "catalog.json").read_text())
    assert {"rel": "related", "href": "./collection.json"}.items() <= next(
        link for link in catalog["links"] if link["rel"] == "related"
    ).items()


def test_pystac_reads_both_roots(demo_run):
    """The Catalog lists the months with get_items() as before, recursive or not, each once; the
    Collection too, with its extent."""
    catalog = pystac.Catalog.from_file(str(demo_run / "catalog.json"))
    ids = [f"monthly-mosaic-{m}" for m in MONTHS]
    assert sorted(i.id for i in catalog.get_items()) == ids
    assert sorted(i.id for i in catalog.get_items(recursive=True)) == ids
    collection = pystac.Collection.from_file(str(demo_run / "collection.json"))
    assert sorted(i.id for i in collection.get_items()) == ids
    assert all(i.collection_id == "cubemosaic" for i in collection.get_items())
    (lon0, lat0, lon1, lat1) = collection.extent.spatial.bboxes[0]
    assert lon0 < -122.3 < lon1 and lat0 < 47.55 < lat1
    assert collection.extent.temporal.intervals[0][0].isoformat().startswith("2021-12-01")


def test_the_tiled_collection_and_items_are_valid_stac(demo_tiled):
    items = _validate_tree(demo_tiled / "collection.json", "Collection")
    tiles = {i["properties"]["grid:code"] for i in items}
    assert len(tiles) == 6
    assert len(items) == 6 * len(MONTHS)
    for item in items:
        assert (ITEM_EXTENSIONS | {"grid"}) <= _extensions(item)
    collection = json.loads((demo_tiled / "collection.json").read_text())
    # The grid extension's scope is the Item: the Collection summarizes grid:code without declaring it.
    assert _extensions(collection) == COLLECTION_EXTENSIONS
    assert collection["summaries"]["grid:code"] == sorted(tiles)
    assert all(not Path(a["href"]).is_absolute() for a in collection["assets"].values()), "VRTs, overview"
    assert not (demo_tiled / "catalog.json").exists(), "a tiled run's root is the Collection only"


def test_reruns_keep_the_collection_in_step(demo_run, tmp_path):
    """A rerun with nothing new rewrites neither root; a shorter period removes the months it no
    longer has from both, and both stay valid."""
    out = tmp_path / "out"
    shutil.copytree(demo_run, out)
    roots = [out / "collection.json", out / "catalog.json"]
    before = [p.stat().st_mtime_ns for p in roots]
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "is up to date, nothing rewritten" in proc.stderr
    assert [p.stat().st_mtime_ns for p in roots] == before
    proc = cli(["catalog=demo", "start_date=2022-02-01", "overwrite=true", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    kept = ["monthly-mosaic-2022-02", "monthly-mosaic-2022-03"]
    assert sorted(p.name for p in out.iterdir() if p.name.startswith("monthly-mosaic-")) == kept
    for root, kind in ((roots[0], "Collection"), (roots[1], "Catalog")):
        assert sorted(i["id"] for i in _validate_tree(root, kind)) == kept
    assert json.loads(roots[0].read_text())["summaries"]["cubemosaic:months"] == ["2022-02", "2022-03"]
