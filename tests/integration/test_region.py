"""A region as Sentinel-2 covers it (cubemosaic.regiondemo): overlapping tiles of two UTM zones,
two relative orbits with swath-edge wedges, against the exact truth, at 20 m and at 60 m (whose
overviews do not nest), in the dominant CRS: the zone-10 tiles read directly, the zone-11 ones
warped; the log's count of the reads each way; a catalog whose projection fields lie."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
from pathlib import Path

import numpy as np
import pytest

import cubemosaic.read as read
from cubemosaic.catalog import SearchRequest, resolve_bands, search
from cubemosaic.composite import build_monthly
from cubemosaic.cube import CubeSpec, build_cube, output_geobox
from cubemosaic.regiondemo import RegionArchive
from cubemosaic.s2 import dominant_crs
from cubemosaic.scenes import parse_scene
from cubemosaic.store import open_dn

from conftest import BANDS, cli

WEST, EAST = 32610, 32611


def _run(archive: RegionArchive, items: Path, out: Path, res: int, epsg: int | None = None):
    """The cube and the monthly stores of ``items`` over the region's AOI at ``res`` m, in this
    process, as the CLI plans them (the dominant CRS, or ``epsg``); the monthly store's DN."""
    days = [d for d, _ in archive.spec.days]
    request = SearchRequest("sentinel-2-l2a", archive.aoi(), dt.date.fromisoformat(days[0]),
                            dt.date.fromisoformat(days[-1]))  # fmt: skip
    found = search(str(items), request)
    bands, scl = resolve_bands(found, list(BANDS))
    scenes = [parse_scene(item) for item in found]
    geobox = output_geobox(archive.aoi(), f"EPSG:{epsg}" if epsg else dominant_crs(s.crs for s in scenes), res)
    build_cube(scenes, str(out / "cube.zarr"), CubeSpec(geobox, dict(bands), scl))
    build_monthly(str(out / "cube.zarr"), str(out / "monthly.zarr"))
    return open_dn(out / "monthly.zarr"), scenes


def _assert_matches(monthly, truth, least: float = 0.95) -> None:
    """Every interior pixel (at least ``least`` of them): each band within 1 DN of the truth where
    there is a clear observation, nodata (0) exactly where there is none, the same count of clear days."""
    interior = truth["interior"].values
    assert interior.mean() > least, "too few interior pixels for the comparison to prove much"
    for name, key in BANDS.items():
        got, expected = monthly[name].values.astype(np.float64), truth[key].values
        clear = ~np.isnan(expected)
        assert clear[interior].mean() > 0.5, name
        assert (got[interior & ~clear] == 0).all(), f"{name}: no clear observation, yet a value"
        diff = np.abs(got - expected)[interior & clear]
        assert (diff <= 1).all(), f"{name}: {int((diff > 1).sum())} interior pixels off by more than 1 DN"
    np.testing.assert_array_equal(monthly["count"].values[interior], truth["count"].values[interior])


@pytest.mark.parametrize("res", [20, 60])
def test_both_read_paths_match_the_truth(region, tmp_path, caplog, res):
    """At 20 m and at 60 m (6x the 10 m bands: their 4x overview is the one GDAL picks, and it does
    not nest), the zone-10 tiles read directly and the zone-11 ones warped from native pixels."""
    caplog.set_level(logging.INFO, logger="cubemosaic")
    monthly, _ = _run(region, region.items_path, tmp_path, res)
    assert monthly.odc.crs.epsg == WEST and float(abs(monthly.x[1] - monthly.x[0])) == res
    direct, warped = _logged_counts(caplog.text)
    assert direct > 0 and warped > 0, "both read paths"
    truth = region.truth(monthly.odc.geobox)
    # Pixels only the other zone's tiles cover are part of the comparison.
    assert (monthly.x.values > _west_zone_east_edge(region)).mean() > 0.1
    _assert_matches(monthly, truth)


def test_in_the_other_zones_crs_the_roles_swap_and_it_still_matches_the_truth(region, tmp_path, caplog):
    """crs=EPSG:32611: the zone-11 tiles are read directly and the zone-10 ones warped. A 20 m
    pixel read directly from 10 m bands has its centre on the corner of four native pixels; the
    truth once took one of them and the 2x overview another (a probe: 99.4 % matched), so where
    the four differ the pixel is not interior (any of them is its nearest). The surface's 20 m
    cells lie on the zone-10 grid, so in zone 11 most 2 x 2 blocks straddle two cells: fewer pixels
    are interior here, still tens of thousands, of both zones."""
    caplog.set_level(logging.INFO, logger="cubemosaic")
    monthly, scenes = _run(region, region.items_path, tmp_path, 20, epsg=EAST)
    assert monthly.odc.crs.epsg == EAST
    direct, warped = _logged_counts(caplog.text)
    zone = {s.id: s.crs for s in scenes}
    assert direct == 5 * sum(c == f"EPSG:{EAST}" for c in zone.values()), "the zone-11 scenes' 4 bands + SCL"
    assert warped == 5 * sum(c == f"EPSG:{WEST}" for c in zone.values())
    truth = region.truth(monthly.odc.geobox)
    _assert_matches(monthly, truth, least=0.4)
    interior = truth["interior"].values
    east = monthly.x.values[None, None, :] > min(t.x0 for t in region.tiles if t.epsg == EAST)
    assert (interior & east).sum() > 20_000 and (interior & ~east).sum() > 20_000, "both zones are compared"


def test_the_region_demo_runs_from_the_command_line_and_matches_the_truth(region, tmp_path):
    """``python -m cubemosaic catalog=demo_region``: a newcomer's first run across two UTM zones.
    Its dates and area are the archive's, both read paths are taken, and the mosaic is the truth."""
    out = tmp_path / "out"
    proc = cli(["catalog=demo_region", f"output_dir={out}"], env={"CUBEMOSAIC_DEMO_DIR": str(region.root.parent)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert f"region archive (two UTM zones, two orbits) at {region.root}" in proc.stderr
    direct, warped = _logged_counts(proc.stderr)
    assert direct > 0 and warped > 0, "both zones' tiles, each read its own way"
    shown = cli(["--cfg", "job", "catalog=demo_region"])
    assert f"- {region.aoi()[0]}" in shown.stdout and f"- {region.aoi()[3]}" in shown.stdout, "the archive's area"
    monthly = open_dn(out / "monthly.zarr")
    assert monthly.odc.crs.epsg == WEST and [str(t)[:7] for t in monthly.time.values] == region.spec.months
    assert (monthly.x.values > _west_zone_east_edge(region)).mean() > 0.1, "the other zone's part is mapped"
    _assert_matches(monthly, region.truth(monthly.odc.geobox))
    assert len(list(out.glob("monthly-mosaic-2022-0?/monthly-mosaic-2022-0?.tif"))) == 2


def test_a_month_of_the_period_without_a_scene_is_said_and_not_planned(region):
    """A period that starts a month before the archive: the plan counted that month (its figures,
    its bytes to write) and the run then made no mosaic for it without a word (a probe's run)."""
    proc = cli(
        ["catalog=demo_region", "start_date=2021-12-01", "end_date=2022-01-31", "stage=plan"],
        env={"CUBEMOSAIC_DEMO_DIR": str(region.root.parent)},
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert json.loads(proc.stdout)["months"] == 1
    assert "plan: no scene in 2021-12 of the period: no mosaic for it" in proc.stderr


def _west_zone_east_edge(region) -> float:
    return max(t.x0 + t.size_m for t in region.tiles if t.epsg == WEST)


def _logged_counts(text: str) -> tuple[int, int]:
    found = re.search(r"cube: (\d+) asset\(s\) of the \d+ day\(s\) to write line up with the grid and are read "
                      r"directly, (\d+) are warped", text)  # fmt: skip
    assert found, text[-2000:]
    return int(found.group(1)), int(found.group(2))


def test_the_log_counts_the_assets_read_each_way(region, tmp_path, caplog, monkeypatch):
    """The log line says how many assets are read directly and how many warped: each counted read
    is one of them, made the way the line says (a zone-10 asset directly, a zone-11 one warped)."""
    reads: dict[str, set[tuple[str, str]]] = {"direct": set(), "warped": set()}
    direct_read, warp = read._direct, read._warp

    def counted_direct(url, src, grid, *args):
        reads["direct"].add((grid.item_id, grid.key))
        return direct_read(url, src, grid, *args)

    def counted_warp(grid, *args, **kwargs):
        reads["warped"].add((grid.item_id, grid.key))
        return warp(grid, *args, **kwargs)

    monkeypatch.setattr(read, "_direct", counted_direct)
    monkeypatch.setattr(read, "_warp", counted_warp)
    caplog.set_level(logging.INFO, logger="cubemosaic")
    _, scenes = _run(region, region.items_path, tmp_path, 60)
    direct, warped = _logged_counts(caplog.text)
    per_scene = len(BANDS) + 1
    in_west = sum(s.crs == f"EPSG:{WEST}" for s in scenes)
    assert (direct, warped) == (in_west * per_scene, (len(scenes) - in_west) * per_scene)
    zone = {s.id: s.crs for s in scenes}
    assert all(zone[item] == f"EPSG:{WEST}" for item, _ in reads["direct"])
    assert all(zone[item] == f"EPSG:{EAST}" for item, _ in reads["warped"])
    # Bands a day's earlier scenes already filled are not read at all; nearly all are.
    assert len(reads["direct"]) > 0.8 * direct and len(reads["warped"]) > 0.8 * warped


def test_the_files_win_where_the_catalog_disagrees(region, tmp_path, caplog):
    """One item with a transform shifted by a pixel and a halved shape, another stated in the other
    zone's EPSG: the reader takes each file's own georeferencing, the run still matches the truth,
    and the log names each item and field once."""
    doc = json.loads(region.items_path.read_text())
    features = doc["features"]
    shifted = next(f for f in features if f["properties"]["proj:epsg"] == WEST)
    for key in ("B04", "SCL"):
        transform = shifted["assets"][key]["proj:transform"]
        transform[2] += transform[0]  # a pixel east
        shifted["assets"][key]["proj:shape"] = [n // 2 for n in shifted["assets"][key]["proj:shape"]]
    moved = next(f for f in features if f["properties"]["proj:epsg"] == EAST)
    moved["properties"]["proj:epsg"] = WEST
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    read._DISAGREED.clear()
    caplog.set_level(logging.INFO, logger="cubemosaic")
    monthly, _ = _run(region, items, tmp_path / "out", 60)
    _assert_matches(monthly, region.truth(monthly.odc.geobox))
    said = [r.getMessage() for r in caplog.records if "disagrees with asset" in r.getMessage()]
    for item, field in ((shifted["id"], "proj:transform"), (shifted["id"], "proj:shape"), (moved["id"], "proj:epsg")):
        hits = [m for m in said if f"item {item}: the catalog's {field} " in m]
        assert len(hits) == 1, (item, field, said)
    assert len(said) == 3, said
