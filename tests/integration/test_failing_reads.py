"""Failing reads over HTTP: transient failures (503, 429, reset connections) are retried with GDAL's
retry settings and the job succeeds; a read that keeps failing (a missing or truncated file) is
named, or left out with on_read_error=skip."""

from __future__ import annotations

import json

import numpy as np
import pytest
import rasterio

from conftest import assert_same_cogs, cli, truncated_asset_items
from servers import AssetServer, rehost_items


def _http_items(demo, url: str, tmp_path):
    """The demo's items served by an asset server whose root is the demo cache folder."""
    return rehost_items(demo.items_path, demo.root.parent, url, tmp_path / "items.json")


@pytest.mark.parametrize("fail_how", ["503", "429", "drop"])
def test_transient_failures_are_retried(demo, demo_run, tmp_path, fail_how):
    with AssetServer(demo.root.parent, fail_every=7, fail_how=fail_how) as server:
        items = _http_items(demo, server.url, tmp_path)
        out = tmp_path / "out"
        proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={out}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-2000:]
        assert server.failed > 10, "the server did fail requests"
    assert_same_cogs(demo_run, out)


def test_an_asset_that_keeps_failing_is_named(demo, tmp_path):
    with AssetServer(demo.root.parent) as server:
        items = _http_items(demo, server.url, tmp_path)
        doc = json.loads(items.read_text())
        victim = doc["features"][5]
        victim["assets"]["B03"]["href"] = server.url + "/no-such-file.tif"
        items.write_text(json.dumps(doc))
        proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cubemosaic: error: cannot read asset B03 of item " + victim["id"]), last
    assert "Traceback" not in proc.stderr


def test_skip_policy_leaves_the_scene_out_and_says_so(demo, demo_run, tmp_path):
    import pystac

    items, victim = truncated_asset_items(demo, tmp_path)  # a December scene
    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"catalog.url={items}", "on_read_error=skip", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert f"skipped asset B08 of item {victim['id']}" in proc.stderr
    catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
    by_month = {i.id: i for i in catalog.get_items(recursive=True)}
    listed = by_month["monthly-mosaic-2021-12"].properties["cubemosaic:skipped_assets"]
    assert [(s["item"], s["band"]) for s in listed] == [(victim["id"], "B08")]
    assert "cubemosaic:skipped_assets" not in by_month["monthly-mosaic-2022-01"].properties
    # Other months are untouched; December has one observation fewer where the scene was clear.
    for month in ("2022-01", "2022-02", "2022-03"):
        tif = f"monthly-mosaic-{month}/monthly-mosaic-{month}.tif"
        with rasterio.open(demo_run / tif) as a, rasterio.open(out / tif) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    count = "monthly-mosaic-2021-12/monthly-mosaic-2021-12-count.tif"
    with rasterio.open(demo_run / count) as a, rasterio.open(out / count) as b:
        diff = a.read(1).astype(int) - b.read(1)
    assert set(np.unique(diff)) == {0, 1}


def test_bad_skip_policy_is_refused(tmp_path):
    proc = cli(["catalog=demo", "on_read_error=ignore", f"output_dir={tmp_path}"], cwd=tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines()[-1].startswith("cubemosaic: error: on_read_error:")


def test_a_truncated_file_over_http_is_named_or_skipped(demo, tmp_path):
    """A server that serves a cut-short COG (a broken upload): named by default, left out with skip."""
    items, victim = truncated_asset_items(demo, tmp_path)  # B08 of a December scene, cut short
    root = tmp_path / "served"
    root.mkdir()
    (root / demo.root.name).symlink_to(demo.root)
    (root / "B08-truncated.tif").symlink_to(tmp_path / "B08-truncated.tif")
    with AssetServer(root) as server:
        rehost_items(items, demo.root.parent, server.url, items)
        rehost_items(items, tmp_path, server.url, items)  # the truncated copy
        failed = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={tmp_path / 'a'}"], cwd=tmp_path)
        skipped = cli(
            ["catalog=demo", f"catalog.url={items}", "on_read_error=skip", f"output_dir={tmp_path / 'b'}"],
            cwd=tmp_path,
        )
    assert failed.returncode == 1 and "Traceback" not in failed.stderr
    last = failed.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cubemosaic: error: cannot read asset B08 of item {victim['id']}"), last
    assert skipped.returncode == 0, skipped.stderr[-2000:]
    assert f"skipped asset B08 of item {victim['id']}" in skipped.stderr
