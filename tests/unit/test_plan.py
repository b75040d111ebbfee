"""cubemosaic.plan: a request's figures on a tiny synthetic plan, worked out by hand, and the refusal
of a plan that needs more memory than there is."""

from __future__ import annotations

import datetime as dt
from dataclasses import replace

import pytest
from odc.geo.geobox import GeoBox

from cubemosaic.errors import ConfigError
from cubemosaic.plan import BYTES_PER_PIXEL, Figures, check_feasible, estimate, months_without_scenes, n_months
from cubemosaic.scenes import AssetGrid, Scene

CRS = "EPSG:32606"
#: One tile of 100 x 100 pixels at 20 m: 2 km a side.
TILE = GeoBox.from_bbox((400000, 6790000, 402000, 6792000), crs=CRS, resolution=20)


def _scene(name: str, day: int, *, href: str | None = None, footprint=None) -> Scene:
    """A scene whose 10 m red band (400 x 400 px) and 20 m SCL cover the tile and more (4 km a side)."""
    red = AssetGrid(
        href or f"https://example.org/{name}/B04.tif", CRS, (10.0, 0, 400000.0, 0, -10.0, 6794000.0), (400, 400)
    )
    scl = AssetGrid(f"https://example.org/{name}/SCL.tif", CRS, (20.0, 0, 400000.0, 0, -20.0, 6794000.0), (200, 200))
    when = dt.datetime(2022, 1, day, 12, tzinfo=dt.timezone.utc)
    return Scene(
        name,
        when,
        when.date(),
        CRS,
        "Sentinel-2A",
        "04.00",
        {"B04": red, "SCL": scl},
        {"B04": 1000, "SCL": 1000},
        footprint,
    )


def _plan(scenes, **kw) -> Figures:
    args = dict(band_keys=["B04"], scl_key="SCL", n_layers=2, months=1, chunk_size=1024, threads=4, local_threads=2)
    return estimate([(TILE, scenes)], **{**args, **kw})


def test_a_tiles_width_and_height_are_said_the_same_way_for_people_and_programs():
    """The JSON once gave (rows, columns) as a bare pair where the log says width x height."""
    figures = replace(_plan([_scene("a", 1)]), largest_tile=(128, 118))
    assert figures.record()["largest_tile"] == {"width": 118, "height": 128}
    assert "(largest 118 x 128 px)" in figures.lines()[1]


def test_the_figures_of_a_tiny_local_plan():
    figures = _plan([_scene("a", 1), _scene("b", 2)])
    assert (figures.scenes, figures.solar_days, figures.months, figures.tiles) == (2, 2, 1, 1)
    assert figures.pixels == 100 * 100 and figures.largest_tile == (100, 100)
    # Each scene: the red band decoded at its 20 m overview (10 000 px x 1.6 B) and the SCL at 20 m (10 000 px x 0.1 B).
    assert figures.read_bytes == 2 * (10_000 * BYTES_PER_PIXEL["band"] + 10_000 * BYTES_PER_PIXEL["scl"]) == 34_000
    # The cube: 2 days x 10 000 values x 1.2 B; the monthly store and COGs: 10 000 px x 2 layers x (1.3 + 1.6) B.
    assert figures.write_bytes == 24_000 + 58_000
    assert figures.tasks == 3, "one block: 2 days' cube tasks and 1 month's"
    # BASE_PROCESS_MB + 2 threads x the larger task (a month block: 10 000 px x (2 days x 2 B x 1.5 + 2 layers x 2 B) = 0.1 MB)
    assert figures.process_memory_mb == figures.peak_memory_mb == figures.worker_memory_mb == 320
    assert figures.threads == 2 and figures.local
    assert figures.record()["largest_tile"] == {"width": 100, "height": 100}
    assert figures.lines()[:3] == [
        "plan: 2 scene(s) on 2 solar day(s), 1 month(s)",
        "plan: 1 tile(s) (largest 100 x 100 px), 0.0 Mpx of output a band and month",
        "plan: about 34.0 kB to read, 82.0 kB to write",
    ]
    assert figures.lines()[3].endswith("(2 thread(s) run the tasks here); 3 task(s)")


def test_a_cluster_plan_counts_its_workers_memory():
    figures = _plan([_scene("a", 1)], local_threads=None, threads=8, chunk_size=25)
    assert not figures.local and figures.threads == 8
    assert figures.process_memory_mb == 320 and figures.worker_memory_mb == 250, "250 MB + 8 x a 0.02 MB task"
    assert figures.tasks == 2 * 2 * (1 + 1), "2 x 2 shards (of 2 x 2 chunks of 25 px), each 1 day and 1 month"
    assert "MB per Dask worker (8 thread(s) each)" in figures.lines()[3]


def test_a_local_assets_size_on_disk_gives_its_bytes_a_pixel(tmp_path):
    red = tmp_path / "B04.tif"
    red.write_bytes(b"\0" * 160_000)  # 1 byte a pixel of 400 x 400
    figures = _plan([_scene("a", 1, href=str(red))])
    assert figures.read_bytes == 10_000 * 1 + 10_000 * BYTES_PER_PIXEL["scl"]


def test_a_scene_covering_half_the_tile_writes_half_its_cube():
    half = GeoBox.from_bbox((400000, 6790000, 401000, 6792000), crs=CRS, resolution=20).extent.to_crs("EPSG:4326").json
    figures = _plan([_scene("a", 1, footprint=half)])
    assert figures.write_bytes == pytest.approx(5_000 * 1.2 + 58_000, rel=1e-3)


def test_a_plan_that_needs_more_memory_than_there_is_is_refused_in_one_line():
    local = _plan([_scene("a", 1)])
    check_feasible(local, process_limit_mb=400)
    with pytest.raises(ConfigError, match="about 320 MB in this process, more than its 300 MB") as refused:
        check_feasible(local, process_limit_mb=300)
    assert refused.value.parameter == "chunk_size"
    cluster = _plan([_scene("a", 1)], local_threads=None)
    with pytest.raises(ConfigError, match="250 MB per Dask worker, more than its 200 MB") as refused:
        check_feasible(cluster, process_limit_mb=1000, worker_limit_mb=200)
    assert refused.value.parameter == "cluster.worker_memory"


def test_the_months_a_period_touches():
    assert n_months(dt.date(2021, 12, 31), dt.date(2022, 1, 1)) == 2
    assert n_months(dt.date(2022, 1, 1), dt.date(2022, 1, 31)) == 1
    assert n_months(dt.date(2021, 1, 15), dt.date(2022, 3, 1)) == 15


def test_the_months_of_the_period_without_a_scene():
    days = [dt.date(2022, 1, 3), dt.date(2022, 1, 20), dt.date(2022, 3, 1)]
    assert months_without_scenes(dt.date(2021, 11, 15), dt.date(2022, 3, 2), days) == ["2021-11", "2021-12", "2022-02"]
    assert months_without_scenes(dt.date(2022, 1, 1), dt.date(2022, 1, 31), days) == []
