"""An area seen from two UTM zones: one output CRS, the other zone's scenes reprojected.

Sentinel-2 tiles overlap across zone borders, so a search returns scenes of the same ground in
two CRSs. Here a third of the demo's scenes are re-gridded into the next zone (EPSG:32611, a
5 m grid rotated ~4 degrees against the output): the mosaic is made in the dominant zone
(EPSG:32610) unless ``crs=`` says otherwise, and still matches the truth. (The demo's 10 m
pixels come in 2x2 blocks of one 20 m value, and a 5 m nearest re-gridding keeps every 20 m
output pixel's centre value, so the truth holds exactly.)
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import pytest
import rasterio
import xarray as xr
from rasterio.warp import Resampling, calculate_default_transform, reproject

from cubemosaic.store import open_dn

from conftest import assert_monthly_matches_truth, cli

OTHER_ZONE = 32611


def _regrid(src_path: Path, dst_path: Path) -> dict:
    """``src_path`` re-gridded into :data:`OTHER_ZONE` at 5 m (nearest); its STAC projection fields."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, f"EPSG:{OTHER_ZONE}", src.width, src.height, *src.bounds, resolution=5
        )
        data = np.zeros((height, width), dtype=src.dtypes[0])
        reproject(
            src.read(1),
            data,
            src_transform=src.transform,
            src_crs=src.crs,
            dst_transform=transform,
            dst_crs=f"EPSG:{OTHER_ZONE}",
            resampling=Resampling.nearest,
            src_nodata=0,
            dst_nodata=0,
        )
        profile = dict(src.profile, crs=f"EPSG:{OTHER_ZONE}", transform=transform, width=width, height=height)
        profile.update(driver="GTiff", tiled=True, blockxsize=256, blockysize=256, compress="deflate")
    with rasterio.open(dst_path, "w", **profile) as dst:
        dst.write(data, 1)
        bounds = dst.bounds
    return {
        "proj:epsg": OTHER_ZONE,
        "proj:shape": [height, width],
        "proj:transform": list(transform)[:6],
        "proj:bbox": [bounds.left, bounds.bottom, bounds.right, bounds.top],
    }


@pytest.fixture(scope="module")
def two_zone_items(demo, tmp_path_factory) -> tuple[Path, set[str]]:
    """The demo's items with every third scene in the next UTM zone: (items.json, moved ids)."""
    folder = tmp_path_factory.mktemp("two-zones")
    doc = json.loads(demo.items_path.read_text())
    moved = set()
    for n, feature in enumerate(doc["features"]):
        if n % 3 != 1:
            continue
        moved.add(feature["id"])
        feature["properties"]["proj:epsg"] = OTHER_ZONE
        for key, asset in feature["assets"].items():
            target = folder / f"{feature['id']}-{key}.tif"
            asset.update(_regrid(Path(asset["href"].removeprefix("file://")), target))
            asset["href"] = target.as_uri()
    items = folder / "items.json"
    items.write_text(json.dumps(doc))
    return items, moved


def test_the_dominant_zone_is_the_output_crs_and_the_truth_holds(two_zone_items, truth, tmp_path):
    items, moved = two_zone_items
    assert 0 < len(moved) < 10
    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "in EPSG:32610" in proc.stderr
    monthly = open_dn(out / "monthly.zarr")
    assert monthly.odc.crs == "EPSG:32610"
    assert_monthly_matches_truth(monthly, truth)
    with rasterio.open(out / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.tif") as ds:
        assert ds.crs.to_epsg() == 32610


def test_crs_chooses_the_output_zone(two_zone_items, tmp_path):
    items, _ = two_zone_items
    out = tmp_path / "out"
    proc = cli(
        ["catalog=demo", f"catalog.url={items}", "crs=EPSG:32611", "stage=cube", f"output_dir={out}"], cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "in EPSG:32611" in proc.stderr
    cube = xr.open_zarr(out / "cube.zarr")
    assert cube.odc.crs == "EPSG:32611"
    # Every scene lands in the 32611 grid: the reprojected zone-10 ones and the native ones.
    assert int((cube["red"] > 0).sum(("y", "x")).min()) > 0
