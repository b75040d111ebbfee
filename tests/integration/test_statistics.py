"""The statistics: each kernel against numpy, each statistic of a run against an oracle made from
the demo archive's files (tests/oracle.py), at 20 m and at 60 m, with the offset change inside January."""

from __future__ import annotations

import numpy as np
import pystac
import pytest
import rasterio

import oracle
from conftest import cli

DEMO_AREA = ["start_date=2021-12-01", "end_date=2022-03-31", "aoi=[-122.325,47.535,-122.265,47.575]"]


def _run(tmp_path, resolution: int, *args: str):
    out = tmp_path / f"r{resolution}"
    proc = cli(["catalog=demo", *DEMO_AREA, f"resolution={resolution}", *args, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return out


@pytest.mark.parametrize("resolution", [20, 60])
def test_every_statistic_of_a_run_against_the_oracle(demo, tmp_path, resolution):
    from cubemosaic.store import open_dn

    stats = "statistic=[p25,medoid,geomedian,median]"
    out = _run(tmp_path, resolution, stats, "provenance=[first_day,last_day,iqr]", "percentile_method=linear")
    monthly = open_dn(out / "monthly.zarr").load()
    months = oracle.clear_observations(demo)
    bands = ["red", "green", "blue", "nir"]
    truth = demo.truth()
    for i, (tag, month) in enumerate(months.items()):
        month = month.sel(x=monthly.x.values, y=monthly.y.values, method="nearest")
        got = monthly.isel(time=i)
        assert str(got.time.values)[:7] == tag
        stack = {b: month[b].values for b in bands}
        for b in bands:
            expected = oracle.percentile(stack[b], 25, "linear")
            has = ~np.isnan(expected)
            assert has.mean() > 0.5
            assert (got[b].values[~has] == 0).all(), "nodata where no clear observation"
            np.testing.assert_array_equal(got[b].values[has], expected[has], err_msg=f"{tag} {b} p25")
            q3, q1 = (oracle.percentile(stack[b], q, "linear", rounded=False) for q in (75, 25))
            np.testing.assert_allclose(got[f"{b}_iqr"].values[has] * 1e4, (q3 - q1)[has], atol=0.01)
            assert np.isnan(got[f"{b}_iqr"].values[~has]).all()
        values, day = oracle.medoid(month, bands)
        has = day > 0
        np.testing.assert_array_equal(got["medoid_day"].values, day, err_msg=f"{tag} medoid day")
        for b in bands:
            np.testing.assert_array_equal(got[f"{b}_medoid"].values[has], values[b][has], err_msg=f"{tag} {b} medoid")
            assert (got[f"{b}_medoid"].values[~has] == 0).all()
        oracle.assert_geomedian(month, bands, np.stack([got[f"{b}_geomedian"].values for b in bands]), tag)
        valid = ~np.isnan(stack["red"])
        days = month["day"].values[:, None, None]
        first = np.where(valid.any(0), np.where(valid, days, 99).min(0), 0)
        last = np.where(valid.any(0), np.where(valid, days, 0).max(0), 0)
        np.testing.assert_array_equal(got["first_day"].values, first)
        np.testing.assert_array_equal(got["last_day"].values, last)
        t = truth.sel(x=monthly.x.values, y=monthly.y.values, method="nearest").isel(time=i)
        np.testing.assert_array_equal(got["count"].values, t["count"].values)
        for b, key in oracle.BANDS.items():  # the median too, against the generator's own truth
            exp = t[key].values
            ok = ~np.isnan(exp)
            assert np.abs(got[f"{b}_median"].values[ok] - exp[ok]).max() <= 1

    # Every layer a COG, every COG an asset with its raster metadata, readable by pystac.
    items = list(pystac.Catalog.from_file(str(out / "catalog.json")).get_items(recursive=True))
    assert len(items) == 4
    expected_assets = {
        "mosaic",
        "medoid",
        "medoid_day",
        "geomedian",
        "mads",
        "median",
        "count",
        "first_day",
        "last_day",
        "iqr",
        "thumbnail",
    }
    for item in items:
        assert set(item.assets) == expected_assets
        for key, asset in item.assets.items():
            if key == "thumbnail":
                continue
            with rasterio.open(asset.get_absolute_href()) as src:
                bands_meta = asset.extra_fields["raster:bands"]
                assert len(bands_meta) == src.count and bands_meta[0]["data_type"] == src.dtypes[0]
                if "scale" in bands_meta[0]:
                    assert src.scales[0] == bands_meta[0]["scale"]
        assert "25th percentile" in item.properties["processing:lineage"]
        with rasterio.open(item.assets["medoid_day"].get_absolute_href()) as src:
            assert src.dtypes[0] == "uint8" and src.nodata == 0
