"""cubemosaic.statistics: each statistic's layers, names and refusals, and the geometric median against an
independent Weiszfeld (tests/oracle.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

from cubemosaic import kernels
from cubemosaic.errors import ConfigError
from cubemosaic.statistics import DAY, FLOAT, REFLECTANCE, Composite, MonthBlock, composite, parse_statistic

import oracle
from conftest import dn_block


def test_first_and_last_day_and_count():
    block = dn_block(6, seed=8)
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
    out = c.reduce(MonthBlock({"red": dn_block(5, 1), "nir": dn_block(5, 2)}, np.arange(1, 6, dtype=np.uint8)))
    declared = {v: layer.kind.dtype for layer in c.layers() for v in layer.variables}
    assert {k: str(v.dtype) for k, v in out.items()} == declared, "every variable computed, of its declared dtype"


def test_each_statistic_names_its_layer_and_lineage():
    c = composite(["red", "nir"], ["p2.5", "median", "medoid", "geomedian"], (), "hazen")
    layers = {layer.key: layer for layer in c.layers()}
    assert [(layers[k].title, layers[k].description) for k in ("mosaic", "median", "medoid", "geomedian")] == [
        ("Monthly 2.5th percentile surface reflectance x 10000 (numpy method=hazen)",
         "{band} monthly 2.5th percentile surface reflectance"),
        ("Monthly median surface reflectance x 10000", "{band} monthly median surface reflectance"),
        ("Monthly medoid surface reflectance x 10000 (every band of a pixel from one day)",
         "{band} monthly medoid surface reflectance"),
        ("Monthly geometric median surface reflectance x 10000 (geomad)",
         "{band} monthly geometric median surface reflectance"),
    ]  # fmt: skip
    assert layers["mosaic"].roles == layers["median"].roles == ("data", "reflectance")
    assert c.record()["lineage"] == (
        "the per-pixel 2.5th percentile (numpy's method=hazen) of the clear observations of the month"
    )
    assert [parse_statistic(s).summary() for s in ("median", "medoid", "geomedian")] == [
        "the per-pixel median of the clear observations of the month",
        "per pixel, the clear observation of the month nearest (Euclidean, across the bands) to their band-wise median",
        "the per-pixel geometric median (geomad) of the clear observations of the month",
    ]


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
    reference = oracle.assert_geomedian(month, bands, np.stack([out[b] for b in bands]), "2021-12")
    n = kernels.clear_mask(list(blocks.values())).sum(axis=0)
    has = n >= 3  # where the geometric median is unique, so the MADs are comparable
    emad = oracle.emad(month, bands, reference)
    # emad is a median of distances to the geometric median, which itself may differ by 1 DN (1e-4)
    np.testing.assert_allclose(out["emad"][has], emad[has], rtol=0, atol=1e-4)


@pytest.mark.parametrize("statistics", [("geomedian",), ("median", "geomedian")])
def test_a_statistic_across_the_bands_refuses_one_band(statistics):
    with pytest.raises(ConfigError) as refused:
        composite(("red",), statistics)
    assert refused.value.parameter == "statistic"
    assert "geomedian needs at least 2 bands" in str(refused.value)
    assert composite(("red", "nir"), statistics).bands == ("red", "nir")


def test_a_month_counts_its_clear_observations_once_for_every_band(monkeypatch):
    """A cube's pixel of a day is clear in every band or in none, so the month's count is taken
    once and shared by every band's median and percentile and by the count layer; each band's
    values are still those of its own sort (against numpy on the same pixels)."""
    rng = np.random.default_rng(3)
    clear = rng.random((5, 40, 30)) < 0.6  # the same pixel-days clear in both bands
    blocks = {b: np.where(clear, rng.integers(1, 9000, clear.shape), 0).astype(np.uint16) for b in ("red", "nir")}
    counted = []
    real = kernels.valid_count
    monkeypatch.setattr(kernels, "valid_count", lambda block: counted.append(block.shape) or real(block))
    c = composite(("red", "nir"), ("median", "p25"))
    out = c.reduce(MonthBlock(blocks, np.arange(1, 6, dtype=np.uint8)))
    assert len(counted) == 1
    np.testing.assert_array_equal(out["count"], clear.sum(axis=0))
    for b, block in blocks.items():
        values = np.where(block == 0, np.nan, block.astype(np.float64))
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            median = np.nanmedian(values, axis=0)
            p25 = np.nanpercentile(values, 25, axis=0)
        np.testing.assert_array_equal(out[b], np.where(np.isnan(median), 0, np.rint(median)).astype(np.uint16))
        np.testing.assert_array_equal(out[f"{b}_p25"], np.where(np.isnan(p25), 0, np.rint(p25)).astype(np.uint16))
