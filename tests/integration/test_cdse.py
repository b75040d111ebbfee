"""Copernicus Data Space Ecosystem: items keyed by band and resolution, JPEG2000 on S3.

``tests/data/cdse-layout-*.json`` holds the layout of a CDSE STAC item
(``https://stac.dataspace.copernicus.eu/v1``, collection ``sentinel-2-l2a``): asset keys
``B04_10m``/``B04_20m``/``B04_60m``/``SCL_20m``, band information in STAC 1.1 ``bands`` with
``eo:common_name``, ``raster:scale``/``raster:offset`` on each asset, ``processing:version`` instead
of ``s2:processing_baseline``, ``s3://eodata/...`` hrefs with an HTTPS alternate. It was written
from CDSE's documented layout (this machine cannot reach CDSE), so its values are illustrative and
its shape is what matters. The end-to-end test serves the demo's pixels the CDSE way: the same
scenes as CDSE-shaped items, each band a lossless JPEG2000 on an S3 stand-in (moto) on loopback.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from pathlib import Path

DATA = Path(__file__).parents[1] / "data"
LAYOUT = DATA / "cdse-layout-S2B_MSIL2A_20240805T101559_N0511_R065_T32TPT.json"


def _jp2(src: str) -> bytes:
    """The COG at ``src`` as a lossless (reversible 5/3 wavelet) JPEG2000, as ESA delivers L2A bands."""
    import rasterio
    from rasterio.io import MemoryFile
    from rasterio.shutil import copy as rio_copy

    with rasterio.open(src) as ds, MemoryFile(ext=".jp2") as mem:
        rio_copy(ds, mem.name, driver="JP2OpenJPEG", QUALITY="100", REVERSIBLE="YES", YCBCR420="NO")
        return bytes(mem.read())


def cdse_items(demo, s3_client, out: Path) -> Path:
    """The demo's scenes as Copernicus Data Space items, their bands as JPEG2000 in ``s3://eodata``.

    Every band also gets 20 m and 60 m assets, and the SCL a 60 m one, whose objects do not exist:
    reading anything but the native asset fails the run.
    """
    from cubemosaic.demo import BANDS

    s3_client.create_bucket(Bucket="eodata")
    features = []
    for feature in json.loads(demo.items_path.read_text())["features"]:
        props = dict(feature["properties"])
        baseline = props.pop("s2:processing_baseline")
        offset = -0.1 if float(baseline) >= 4 else 0.0
        day = dt.date.fromisoformat(props["datetime"][:10])
        tile = props["s2:mgrs_tile"]
        props.update({"processing:version": baseline, "proj:code": f"EPSG:{props.pop('proj:epsg')}"})
        safe = f"Sentinel-2/MSI/L2A/{day:%Y/%m/%d}/{feature['id']}.SAFE/GRANULE/L2A_T{tile}/IMG_DATA"
        assets = {}
        for key, src in feature["assets"].items():
            common = BANDS[key][0] if key in BANDS else None
            native = 20 if key == "SCL" else 10
            for res in (native, 20, 60) if native == 10 else (native, 60):
                name = f"{key}_{res}m"
                path = f"{safe}/R{res}m/T{tile}_{day:%Y%m%d}_{name}.jp2"
                scale = res / native
                asset = {
                    "href": f"s3://eodata/{path}",
                    "type": "image/jp2",
                    "title": f"{key} - {res}m",
                    "roles": ["data", "reflectance"] if common else ["data"],
                    "gsd": res,
                    "proj:code": props["proj:code"],
                    "proj:shape": [round(v / scale) for v in src["proj:shape"]],
                    "proj:transform": [res, 0.0, src["proj:transform"][2], 0.0, -res, src["proj:transform"][5]],
                    "bands": [{"name": key, **({"eo:common_name": common} if common else {})}],
                    "nodata": 0,
                    **({"raster:scale": 0.0001, "raster:offset": offset} if common else {}),
                }
                assets[name] = asset
                if res == native:
                    s3_client.put_object(Bucket="eodata", Key=path, Body=_jp2(src["href"].removeprefix("file://")))
        features.append(
            {**feature, "stac_version": "1.1.0", "stac_extensions": [], "properties": props, "assets": assets}
        )
    out.write_text(json.dumps({"type": "FeatureCollection", "features": features}))
    return out


def test_a_cdse_archive_of_jpeg2000_on_s3_gives_the_same_mosaic(demo, demo_run, s3, tmp_path):
    """``catalog=cdse`` with the S3 endpoint pointed at the stand-in: the same COGs, to the pixel, as
    the same pixels served Planetary-Computer style (COGs, ``B04``/``SCL`` keys, s2:processing_baseline)."""
    import boto3

    from conftest import assert_same_cogs, cli

    client = boto3.client(
        "s3",
        endpoint_url=s3["AWS_ENDPOINT_URL"],
        aws_access_key_id=s3["AWS_ACCESS_KEY_ID"],
        aws_secret_access_key=s3["AWS_SECRET_ACCESS_KEY"],
        region_name=s3["AWS_DEFAULT_REGION"],
    )
    items = cdse_items(demo, client, tmp_path / "cdse-items.json")
    endpoint = s3["AWS_ENDPOINT_URL"].removeprefix("http://")
    out = tmp_path / "out"
    proc = cli(
        [
            "catalog=cdse",
            f"catalog.url={items}",
            f"catalog.gdal.AWS_S3_ENDPOINT={endpoint}",
            "catalog.gdal.AWS_HTTPS=NO",
            "start_date=2021-12-01",
            "end_date=2022-03-31",
            "aoi=[-122.325,47.535,-122.265,47.575]",
            "resolution=20",
            f"output_dir={out}",
        ],
        env=s3,
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "18 day(s) to write line up with the grid and are read directly, 0 are warped" in proc.stderr, proc.stderr
    assert_same_cogs(demo_run, out)


def test_without_credentials_the_failed_read_names_the_asset(s3, tmp_path):
    """No S3 keys: one line naming the item and the asset read first (GDAL's reason: no
    AWS_SECRET_ACCESS_KEY), no traceback."""
    from conftest import cli

    items = json.loads(LAYOUT.read_text())
    items["properties"]["datetime"] = "2024-08-05T10:15:59Z"
    path = tmp_path / "one.json"
    path.write_text(json.dumps({"type": "FeatureCollection", "features": [items]}))
    endpoint = s3["AWS_ENDPOINT_URL"].removeprefix("http://")
    env = {"AWS_ACCESS_KEY_ID": "", "AWS_SECRET_ACCESS_KEY": "", "AWS_NO_SIGN_REQUEST": "NO"}
    proc = cli(
        [
            "catalog=cdse",
            f"catalog.url={path}",
            f"catalog.gdal.AWS_S3_ENDPOINT={endpoint}",
            "catalog.gdal.AWS_HTTPS=NO",
            "start_date=2024-08-01",
            "end_date=2024-08-31",
            "aoi=[12.3,46.3,12.31,46.31]",
            "resolution=60",
            f"output_dir={tmp_path / 'out'}",
        ],
        env=env,
        cwd=tmp_path,
    )
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert re.match(
        r"cubemosaic: error: cannot read asset (B0[48]_10m|SCL_20m) of item S2B_MSIL2A_20240805", lines[-1]
    ), proc.stderr
    assert "AWS_SECRET_ACCESS_KEY" in lines[-1]
    assert "Traceback" not in proc.stderr
