"""cubemosaic.demo: the embedded demo archive and its cache."""

from __future__ import annotations

import shutil

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import pytest
import rasterio

from cubemosaic.demo import DemoArchive, DemoSpec, ensure_demo

# --------------------------------------------------------------------------- the demo's cache
#: A small archive (96 x 96 pixels at 20 m, five scenes over two months, an edge day and a pair
#: day): regenerated in a second, where the CLI demo takes several.
SMALL = DemoSpec(
    size=96,
    days=("2021-12-03", "2021-12-08", "2022-01-27", "2022-01-30"),
    pair_days=("2022-01-30",),
    edge_days=("2021-12-08",),
    cloudy_day="2021-12-03",
    always_cloudy_month="2022-01",
    blocksize=32,
)


@pytest.fixture(scope="module")
def small_demo(tmp_path_factory) -> DemoArchive:
    return ensure_demo(SMALL, cache_dir=tmp_path_factory.mktemp("small-demo"))


@pytest.mark.parametrize("damage", ["items.json", "asset", "truth"])
def test_an_incomplete_demo_cache_is_generated_again(small_demo, tmp_path, damage):
    demo = small_demo
    cache = tmp_path / "cache"
    shutil.copytree(demo.root, cache / demo.root.name)
    copy = cache / demo.root.name
    items = (demo.items_path.read_text()).replace(demo.root.as_uri(), copy.as_uri())
    (copy / "items.json").write_text(items)
    if damage == "items.json":
        (copy / "items.json").unlink()
    elif damage == "asset":
        next(copy.rglob("B04.tif")).unlink()
    else:
        shutil.rmtree(copy / "truth.zarr")
    archive = ensure_demo(SMALL, cache_dir=cache)
    assert archive.root == copy and archive.items_path.is_file() and (archive.truth_path / "zarr.json").is_file()
    assert len(list(copy.rglob("B04.tif"))) == len(list(demo.root.rglob("B04.tif")))
    assert [p.name for p in cache.iterdir()] == [copy.name], "nothing left beside it"


def test_demo_has_what_real_archives_have(demo, truth):
    import json

    items = json.loads(demo.items_path.read_text())["features"]
    baselines = {i["properties"]["s2:processing_baseline"] for i in items}
    assert baselines == {"03.01", "04.00"}
    days = [i["properties"]["datetime"][:10] for i in items]
    assert any(d < "2022-01-25" for d in days) and any(d >= "2022-01-25" for d in days)
    assert len(days) > len(set(days)), "two tiles of the same solar day"
    with rasterio.open(items[0]["assets"]["B04"]["href"]) as ds:
        assert ds.profile["tiled"] and ds.overviews(1) and ds.nodata == 0 and ds.res == (10, 10)
    with rasterio.open(items[0]["assets"]["SCL"]["href"]) as ds:
        assert ds.res == (20, 20)
    scl_classes = set()
    for it in items:
        with rasterio.open(it["assets"]["SCL"]["href"]) as ds:
            scl_classes |= set(np.unique(ds.read(1)).tolist())
    assert {0, 3, 8, 9, 10}.issubset(scl_classes)
    # The truth has pixels without a clear answer, and most pixels with one.
    assert (truth["count"] == 0).any() and float((truth["count"] > 0).mean()) > 0.8
