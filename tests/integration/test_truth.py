"""The oracle: outputs against the demo archive's true clear-sky monthly median and count."""

from __future__ import annotations

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import pytest
import rasterio
import xarray as xr

from cubemosaic.store import open_dn

from conftest import BANDS, assert_monthly_matches_truth, assert_same_cogs


def _truth_on(grid, truth):
    return truth.sel(x=grid.x.values, y=grid.y.values)


def test_monthly_median_matches_truth(demo_run, truth):
    monthly = open_dn(demo_run / "monthly.zarr")
    assert monthly.sizes["time"] == 4 and (monthly.time.values == truth.time.values).all()
    assert_monthly_matches_truth(monthly, truth)


def test_cogs_match_truth_across_baseline_change(demo_run, truth):
    monthly = xr.open_zarr(demo_run / "monthly.zarr")
    t = _truth_on(monthly, truth)
    for i, month in enumerate(["2021-12", "2022-01", "2022-02", "2022-03"]):
        folder = demo_run / f"monthly-mosaic-{month}"
        with rasterio.open(folder / f"monthly-mosaic-{month}.tif") as ds:
            data = ds.read().astype(np.float64)
        with rasterio.open(folder / f"monthly-mosaic-{month}-count.tif") as ds:
            np.testing.assert_array_equal(ds.read(1), t["count"].values[i])
        for b, key in enumerate(BANDS.values()):
            expected = t[key].values[i]
            clear = ~np.isnan(expected)
            assert (data[b][~clear] == 0).all()
            assert np.abs(data[b][clear] - expected[clear]).max() <= 1, (month, key)
    # January mixes baseline 03.01 and 04.00 scenes: an unharmonised median would be ~500 DN off.
    assert (t["count"].values[1] > 0).mean() > 0.9
    # March has a patch that is cloudy in every scene: no clear answer, nodata out.
    assert (t["count"].values[3] == 0).sum() > 100


def test_the_warped_path_matches_truth_too(demo, truth, tmp_path):
    """Grids that do not line up, and resamplings other than nearest and average (here: mode), go
    through odc-loader's warping reader."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "resampling=mode", "stage=cube", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    proc = cli(["catalog=demo", "resampling=mode", "stage=composite", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monthly = open_dn(out / "monthly.zarr")
    assert_monthly_matches_truth(monthly, truth)


def test_many_blocks_per_day_give_the_same_cogs(demo_run, tmp_path):
    """chunk_size=64 makes 128 px shards: 2 x 2 blocks per day and month, edge blocks clipped."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "chunk_size=64", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert_same_cogs(demo_run, out)


@pytest.mark.parametrize("cluster", ["cluster.dashboard=true", "cluster.processes=true"])
def test_a_distributed_local_cluster_gives_the_same_cogs(demo_run, tmp_path, cluster):
    """The default local run uses Dask's threaded scheduler; a LocalCluster (threads with a
    dashboard, or worker processes) computes the same mosaics."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "cluster=local", cluster, f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "; dashboard http" in proc.stderr
    assert_same_cogs(demo_run, out)


def test_at_10_m_the_20_m_scl_is_upsampled_on_the_aligned_reader(demo, truth, tmp_path):
    """10 m output: the bands are native, the 20 m SCL is repeated 2 x 2 (nearest upsampling by an
    integer is exact), so no day goes through odc-loader's warping reader; each 10 m pixel equals the
    truth of the 20 m pixel it lies in (the demo's 10 m bands repeat their 20 m ground)."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", "resolution=10", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "18 day(s) to write line up with the grid and are read directly, 0 are warped" in proc.stderr, proc.stderr
    monthly = open_dn(out / "monthly.zarr")
    assert float(abs(monthly.x[1] - monthly.x[0])) == 10
    assert_monthly_matches_truth(monthly, truth, nearest=True)


@pytest.mark.parametrize("resolution", [60, 100])
def test_coarse_grids_take_each_value_from_inside_its_output_pixel(demo, truth, tmp_path, resolution):
    """60 m (a 6x shrink of the 10 m bands, 3x of the SCL) and 100 m (10x and 5x): GDAL alone would
    read the 4x or 8x overview, whose pixels straddle the output pixels. The reader picks overviews
    that nest, so each output pixel is the truth of the 20 m pixel at its centre (the pixel nearest
    resampling takes; its mask and its bands from the same 20 m pixel)."""
    from conftest import cli

    out = tmp_path / "out"
    proc = cli(["catalog=demo", f"resolution={resolution}", "stage=cube", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "18 day(s) to write line up with the grid and are read directly, 0 are warped" in proc.stderr, proc.stderr
    proc = cli(["catalog=demo", f"resolution={resolution}", "stage=composite", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    monthly = open_dn(out / "monthly.zarr")
    assert float(abs(monthly.x[1] - monthly.x[0])) == resolution
    # The 20 m pixel nearest resampling takes: the one at the output pixel's centre (odd shrinks of 20 m).
    assert_monthly_matches_truth(monthly, truth, nearest=True)


def _paste(data: np.ndarray, origin: tuple[float, float], res: float, grid, k: int) -> np.ndarray:
    """``data`` (a file's pixels at ``res`` m, upper-left corner ``origin``) on ``grid``'s extent at the
    grid's pixels / ``k``; 0 where the file has no pixel."""
    h, w = grid.shape[0] * k, grid.shape[1] * k
    step = abs(grid.transform.a) / k
    rep = int(round(res / step))
    data = np.repeat(np.repeat(data, rep, axis=0), rep, axis=1)
    col = int(round((origin[0] - grid.transform.c) / step))
    row = int(round((grid.transform.f - origin[1]) / step))
    out = np.zeros((h, w), dtype=data.dtype)
    r0, c0 = max(row, 0), max(col, 0)
    r1, c1 = min(h, row + data.shape[0]), min(w, col + data.shape[1])
    if r1 > r0 and c1 > c0:
        out[r0:r1, c0:c1] = data[r0 - row : r1 - row, c0 - col : c1 - col]
    return out


@pytest.mark.parametrize("resolution", [60, 100])
def test_average_resampling_is_the_mean_of_each_pixels_clear_native_pixels(demo, tmp_path, resolution):
    """``resampling=average`` on grids that line up: each scene's output pixel is the mean of the
    clear 10 m pixels under it (its own SCL applied at 10 m, offset removed first), rounded; the
    day's scenes are fused and the month's median taken as always. The oracle is computed here from
    the archive's files with plain numpy."""
    import datetime as dt
    import json

    from conftest import cli

    out = tmp_path / "out"
    for stage in ("cube", "composite"):
        proc = cli(
            ["catalog=demo", f"resolution={resolution}", "resampling=average", f"stage={stage}", f"output_dir={out}"],
            cwd=tmp_path,
        )
        assert proc.returncode == 0, proc.stderr
        if stage == "cube":
            assert "18 day(s) to write line up with the grid and are read directly, 0 are warped" in proc.stderr, (
                proc.stderr
            )
    monthly = open_dn(out / "monthly.zarr")
    grid = monthly.odc.geobox
    k = resolution // 10
    h, w = grid.shape
    mask = (0, 1, 2, 3, 8, 9, 10)
    keys = list(BANDS.values())
    days: dict[dt.date, list[dict]] = {}
    for item in sorted(
        json.loads(demo.items_path.read_text())["features"], key=lambda i: (i["properties"]["datetime"], i["id"])
    ):
        days.setdefault(dt.date.fromisoformat(item["properties"]["datetime"][:10]), []).append(item)
    per_month: dict[str, list[np.ndarray]] = {}
    for day, items in days.items():
        fused = np.zeros((len(keys), h, w))
        empty = np.ones((h, w), dtype=bool)
        for item in items:
            offset = 1000 if item["properties"]["s2:processing_baseline"] >= "04.00" else 0
            with rasterio.open(item["assets"]["SCL"]["href"]) as ds:
                scl = _paste(ds.read(1), (ds.transform.c, ds.transform.f), 20, grid, k)
            values, clear_all = [], np.ones((h, w), dtype=bool)
            for key in keys:
                with rasterio.open(item["assets"][key]["href"]) as ds:
                    band = _paste(ds.read(1), (ds.transform.c, ds.transform.f), 10, grid, k).astype(np.float64)
                clear = ~np.isin(scl, mask) & (band != 0)
                dn = np.where(clear, np.maximum(band - offset, 1), 0)
                sums = dn.reshape(h, k, w, k).sum(axis=(1, 3))
                counts = clear.reshape(h, k, w, k).sum(axis=(1, 3))
                values.append(np.floor(sums / np.maximum(counts, 1) + 0.5))
                clear_all &= counts > 0
            take = empty & clear_all
            fused[:, take] = np.stack(values)[:, take]
            empty &= ~take
        per_month.setdefault(day.isoformat()[:7], []).append(np.where(empty, np.nan, fused))
    assert len(per_month) == monthly.sizes["time"]
    for t, (month, stack) in enumerate(per_month.items()):
        with np.errstate(all="ignore"), __import__("warnings").catch_warnings():
            __import__("warnings").simplefilter("ignore", RuntimeWarning)
            expected = np.nanmedian(np.stack(stack), axis=0)
        for b, name in enumerate(BANDS):
            got = monthly[name].values[t].astype(np.float64)
            answer = ~np.isnan(expected[b])
            assert answer.mean() > 0.5
            assert (got[~answer] == 0).all(), (month, name)
            assert np.abs(got[answer] - expected[b][answer]).max() <= 1, (month, name)
