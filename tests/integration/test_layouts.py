"""The same scenes in other catalogs' layouts give the same mosaics (issue: real catalogs).

Earth Search v1 names assets by common name (red, nir, scl), states the offset with
``raster:bands`` (scale 0.0001, offset -0.1) and ``earthsearch:boa_offset_applied``; STAC 1.1
catalogs carry band info in ``bands`` and the CRS as ``proj:code``.
"""

from __future__ import annotations

import copy
import json

from conftest import assert_same_cogs, cli
from servers import serve_stac

ES_KEYS = {"B02": "blue", "B03": "green", "B04": "red", "B08": "nir", "SCL": "scl"}


def _earth_search(features: list[dict]) -> list[dict]:
    out = []
    for feature in copy.deepcopy(features):
        props = feature["properties"]
        applied = props.pop("s2:processing_baseline") >= "04.00"
        props["earthsearch:boa_offset_applied"] = applied
        assets = {}
        for key, asset in feature["assets"].items():
            name = ES_KEYS[key]
            if key != "SCL":
                asset["eo:bands"] = [{"name": name, "common_name": name}]
                asset["raster:bands"] = [
                    {"nodata": 0, "data_type": "uint16", "scale": 0.0001, "offset": -0.1 if applied else 0.0}
                ]
            assets[name] = asset
        feature["assets"] = assets
        out.append(feature)
    return out


def _stac_1_1(features: list[dict]) -> list[dict]:
    out = []
    for feature in copy.deepcopy(features):
        feature["stac_version"] = "1.1.0"
        feature["properties"]["proj:code"] = f"EPSG:{feature['properties'].pop('proj:epsg')}"
        for asset in feature["assets"].values():
            bands = asset.pop("eo:bands", None)
            if bands:
                asset["bands"] = [{"name": b["name"], "eo:common_name": b["common_name"]} for b in bands]
        out.append(feature)
    return out


def test_earth_search_layout_served_by_a_stac_api(demo, demo_run, tmp_path):
    features = json.loads(demo.items_path.read_text())["features"]
    items = tmp_path / "earth-search.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": _earth_search(features)}))
    with serve_stac(items) as url:
        out = tmp_path / "out"
        proc = cli(
            [
                "catalog=earth_search",
                f"catalog.url={url}",
                "start_date=2021-12-01",
                "end_date=2022-03-31",
                "aoi=[-122.325,47.535,-122.265,47.575]",
                f"output_dir={out}",
            ],
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
    assert_same_cogs(demo_run, out)


def test_stac_1_1_layout_from_a_static_file(demo, demo_run, tmp_path):
    features = json.loads(demo.items_path.read_text())["features"]
    items = tmp_path / "stac-1.1.json"
    items.write_text(json.dumps({"type": "FeatureCollection", "features": _stac_1_1(features)}))
    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_cogs(demo_run, out)
