"""The statistics: each kernel against numpy, each statistic of a run against an oracle made from
the demo archive's files (tests/oracle.py), at 20 m and at 60 m, with the offset change inside January."""

from __future__ import annotations

import warnings

import numpy as np
import oracle
import pystac
import pytest
import rasterio

from cubemosaic import kernels
from cubemosaic.errors import ConfigError
from cubemosaic.statistics import DAY, FLOAT, REFLECTANCE, Composite, MonthBlock, composite, parse_statistic

from conftest import cli

DEMO_AREA = ["start_date=2021-12-01", "end_date=2022-03-31", "aoi=[-122.325,47.535,-122.265,47.575]"]


def _block(t: int, seed: int = 0, shape=(40, 30)) -> np.ndarray:
    rng = np.random.default_rng(seed)
    block = rng.integers(1, 9000, (t, *shape)).astype(np.uint16)
    block[rng.random(block.shape) < 0.3] = 0
    block[:, :2, :2] = 0  # pixels without any observation
    return block


@pytest.mark.parametrize("method", sorted(kernels.PERCENTILE_METHODS))
@pytest.mark.parametrize("t", [1, 2, 5, 12, 24, 30])
def test_the_percentile_kernel_is_numpys(method, t):
    block = _block(t, seed=t)
    values = np.where(block == 0, np.nan, block.astype(np.float64))
    for q in (0, 2.5, 25, 50, 75, 90, 100):
        expected = oracle.percentile(values, q, method, rounded=False)  # numpy's percentile
        np.testing.assert_array_equal(kernels.percentile_block(block, q, method), expected, err_msg=f"q={q}")
    with warnings.catch_warnings():  # and nanpercentile itself, on a few pixels (it goes pixel by pixel)
        warnings.simplefilter("ignore", RuntimeWarning)
        some = np.nanpercentile(values[:, :6, :6], 25, axis=0, method=method)
    np.testing.assert_array_equal(kernels.percentile_block(block[:, :6, :6], 25, method), some)


def test_p50_is_the_median():
    block = _block(9, seed=3)
    np.testing.assert_array_equal(kernels.to_dn(kernels.percentile_block(block, 50)), kernels.median_block(block)[0])


def test_the_medoid_takes_every_band_from_one_day():
    rng = np.random.default_rng(5)
    blocks = [_block(7, seed=s) for s in (1, 2, 3)]
    blocks[1][rng.random(blocks[1].shape) < 0.1] = 0  # a band missing on its own: not a clear observation
    values, chosen = kernels.medoid_block(blocks)
    clear = kernels.clear_mask(blocks)
    for y, x in [(5, 5), (10, 20), (39, 29), (0, 0), (20, 3)]:
        obs = [t for t in range(7) if clear[t, y, x]]
        if not obs:
            assert chosen[y, x] == -1 and all(v[y, x] == 0 for v in values)
            continue
        pts = np.array([[b[t, y, x] for b in blocks] for t in obs], dtype=float)
        med = np.median(pts, axis=0)
        best = obs[int(np.argmin(np.linalg.norm(pts - med, axis=1)))]
        assert chosen[y, x] == best
        assert [v[y, x] for v in values] == [b[best, y, x] for b in blocks]


def test_first_and_last_day_and_count():
    block = _block(6, seed=8)
    days = np.array([2, 7, 12, 17, 22, 27], dtype=np.uint8)
    out = Composite(("red",), provenance=("first_day", "last_day")).reduce(MonthBlock({"red": block}, days))
    valid = block != 0
    for y, x in [(0, 0), (3, 4), (30, 20)]:
        seen = days[valid[:, y, x]]
        assert out["first_day"][y, x] == (seen.min() if seen.size else 0)
        assert out["last_day"][y, x] == (seen.max() if seen.size else 0)
        assert out["count"][y, x] == seen.size
    assert out["first_day"].dtype == np.uint8 and out["count"].dtype == np.uint16


def test_each_statistic_declares_its_layers():
    c = composite(["red", "nir"], ["p25", "median", "medoid", "geomedian"], ["first_day", "iqr"])
    layers = {layer.key: layer for layer in c.layers()}
    assert list(layers) == [
        "mosaic",
        "median",
        "medoid",
        "medoid_day",
        "geomedian",
        "mads",
        "count",
        "first_day",
        "iqr",
    ]
    assert layers["mosaic"].variables == ("red", "nir") and layers["mosaic"].kind is REFLECTANCE
    assert layers["median"].variables == ("red_median", "nir_median") and layers["median"].suffix == "-median"
    assert layers["medoid_day"].kind is DAY and layers["mads"].kind is FLOAT
    assert layers["iqr"].variables == ("red_iqr", "nir_iqr")
    out = c.reduce(MonthBlock({"red": _block(5, 1), "nir": _block(5, 2)}, np.arange(1, 6, dtype=np.uint8)))
    declared = {v: layer.kind.dtype for layer in c.layers() for v in layer.variables}
    assert {k: str(v.dtype) for k, v in out.items()} == declared, "every variable computed, of its declared dtype"


@pytest.mark.parametrize(
    ("names", "method", "parameter"),
    [
        (["p101"], "linear", "statistic"),
        (["mean"], "linear", "statistic"),
        (["p25", "p25"], "linear", "statistic"),
        (["p25"], "cubic", "percentile_method"),
        ([], "linear", "statistic"),
    ],
)
def test_unknown_statistics_are_refused_naming_the_parameter(names, method, parameter):
    with pytest.raises(ConfigError) as e:
        composite(["red"], names, (), method)
    assert e.value.parameter == parameter


def test_a_percentile_by_name():
    p = parse_statistic("P2.5", "hazen")
    assert (p.name, p.q, p.method) == ("p2.5", 2.5, "hazen")


def test_geomedian_against_an_independent_weiszfeld(demo):
    month = oracle.clear_observations(demo)["2021-12"].isel(y=slice(0, 60), x=slice(0, 80))
    bands = ["red", "green", "blue", "nir"]
    blocks = {b: np.nan_to_num(month[b].values, nan=0).astype(np.uint16) for b in bands}
    out = Composite(tuple(bands), (parse_statistic("geomedian"),)).reduce(MonthBlock(blocks, month["day"].values))
    reference = _assert_geomedian(month, bands, np.stack([out[b] for b in bands]), "2021-12")
    n = kernels.clear_mask(list(blocks.values())).sum(axis=0)
    has = n >= 3  # where the geometric median is unique, so the MADs are comparable
    emad = oracle.emad(month, bands, reference)
    # emad is a median of distances to the geometric median, which itself may differ by 1 DN (1e-4)
    np.testing.assert_allclose(out["emad"][has], emad[has], rtol=0, atol=1e-4)


def _assert_geomedian(month, bands, got: np.ndarray, tag: str) -> np.ndarray:
    """``got`` (bands, y, x) DN against the Weiszfeld reference: within 1 DN (2 DN at most, for a
    slowly converging pixel) where a pixel has three or more clear observations; with two, the
    geometric median is any point between them (geomad and the reference may pick others), so
    it must lie on that segment; with one, it is that observation; 0 where there is none."""
    reference = oracle.geomedian(month, bands)
    x = np.stack([month[b].values for b in bands])  # (bands, t, y, x) DN, NaN = not clear
    clear = ~np.isnan(x).any(axis=0)
    n = clear.sum(axis=0)
    g = got.astype(np.float64)
    assert (got[:, n == 0] == 0).all(), f"{tag}: nodata where no clear observation"
    many = n >= 3
    ref = np.rint(reference * 1e4)
    diff = np.abs(g - ref).max(axis=0)
    assert (diff[many] <= 1).mean() > 0.999, (tag, (diff[many] <= 1).mean())
    # Where they differ by more, geomad's point must be the better minimiser of the sum of
    # distances (the geometric median's definition), up to its rounding to whole DN.
    for y, x_ in zip(*np.nonzero(many & (diff > 1)), strict=True):
        pts = x[:, clear[:, y, x_], y, x_]
        cost = lambda p, pts=pts: np.linalg.norm(pts - p[:, None], axis=0).sum()  # noqa: E731
        slack = 0.5 * np.sqrt(len(bands)) * pts.shape[1]
        assert cost(g[:, y, x_]) <= cost(reference[:, y, x_] * 1e4) + slack, (tag, y, x_)
    two = n == 2
    pts = np.where(clear[None], x, np.nan)[:, :, two]  # (bands, t, P): two clear columns per pixel
    order = np.argsort(~clear[:, two], axis=0, kind="stable")[:2]  # the two clear time steps
    a = np.take_along_axis(pts, order[None, :1], axis=1)[:, 0]
    b = np.take_along_axis(pts, order[None, 1:2], axis=1)[:, 0]
    at = g[:, two]
    detour = np.linalg.norm(at - a, axis=0) + np.linalg.norm(at - b, axis=0) - np.linalg.norm(a - b, axis=0)
    assert not two.any() or detour.max() <= 2 * np.sqrt(len(bands)), (tag, detour.max())  # on the segment
    one = n == 1
    single = np.nansum(np.where(clear[None], x, 0), axis=1)
    assert not one.any() or np.abs(g[:, one] - single[:, one]).max() <= 1, tag
    return reference


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
        _assert_geomedian(month, bands, np.stack([got[f"{b}_geomedian"].values for b in bands]), tag)
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


@pytest.mark.parametrize("t", [1, 2, 3, 4, 5, 8, 13, 24, 25])
def test_the_float_median_is_numpys(t):
    block = _block(t, seed=40 + t)
    block[:, -1, :3] = 65535
    values = np.where(block == 0, np.nan, block.astype(np.float64))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        expected = np.nanmedian(values, axis=0)
    np.testing.assert_array_equal(kernels.median_float(block), expected)
