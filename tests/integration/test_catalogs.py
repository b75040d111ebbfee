"""The same job through a real STAC API on loopback and through a static file."""

from __future__ import annotations

import numpy as np
import rasterio

from conftest import cli


def test_stac_api_and_static_file_give_identical_cogs(demo_run, stac_api, tmp_path):
    out = tmp_path / "api"
    proc = cli(["catalog=demo", f"catalog.url={stac_api}", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "search: page 1" in proc.stderr
    for tif in sorted(demo_run.glob("monthly-mosaic-*/*.tif")):
        other = out / tif.relative_to(demo_run)
        with rasterio.open(tif) as a, rasterio.open(other) as b:
            assert a.profile == b.profile
            np.testing.assert_array_equal(a.read(), b.read())
            assert a.descriptions == b.descriptions
    assert len(list(out.glob("monthly-mosaic-*/*.tif"))) == 8
