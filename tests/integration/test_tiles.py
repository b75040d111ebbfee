"""Large areas as tiles: the two-zone, two-orbit region run cut into tiles, as a user runs it (the
CLI), against the region's truth, through the month VRTs and the STAC Collection; a killed run
resumed tile by tile; an AOI much larger than its data; the plan that writes nothing."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import pystac
import pytest
import rasterio
import rioxarray  # noqa: F401  (registers .rio)
import xarray as xr
from odc.geo.geobox import GeoBox

from cubemosaic.cube import output_geobox
from cubemosaic.regiondemo import RegionArchive

from conftest import BANDS, cli, one_line_error

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))

START, END = "2022-01-01", "2022-02-28"
MONTHS = ("2022-01", "2022-02")


def _args(region: RegionArchive, out: Path, res: int, *extra: str, aoi=None, items=None) -> list[str]:
    box = aoi or region.aoi()
    return [
        "catalog=demo",
        f"catalog.url={items or region.items_path}",
        f"start_date={START}",
        f"end_date={END}",
        f"aoi=[{','.join(map(str, box))}]",
        f"resolution={res}",
        "crs=EPSG:32610",
        f"output_dir={out}",
        *extra,
    ]


@pytest.fixture(scope="module")
def tiled20(region, tmp_path_factory) -> Path:
    """The region at 20 m cut into tiles of 200 px (its 515 x 417 px grid: 3 x 3 tiles)."""
    out = tmp_path_factory.mktemp("tiled20") / "out"
    proc = cli(_args(region, out, 20, "tile_size=200"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    (out / "log.txt").write_text(proc.stderr)
    return out


def _vrt_monthly(out: Path) -> tuple[xr.Dataset, GeoBox]:
    """Each month's VRTs (the mosaic and the count) as one (time, y, x) dataset of DN, as the
    monthly store holds them, and the VRTs' grid."""
    bands: dict[str, list[np.ndarray]] = {name: [] for name in BANDS}
    counts = []
    geobox = None
    for month in MONTHS:
        mosaic = xr.open_dataarray(out / f"monthly-mosaic-{month}.vrt", engine="rasterio", mask_and_scale=False)
        count = xr.open_dataarray(out / f"monthly-mosaic-{month}-count.vrt", engine="rasterio", mask_and_scale=False)
        assert list(mosaic.attrs["long_name"]) == list(BANDS)
        for i, name in enumerate(BANDS):
            bands[name].append(mosaic.values[i])
        counts.append(count.values[0])
        geobox = mosaic.odc.geobox
    data = {name: (("time", "y", "x"), np.stack(v)) for name, v in bands.items()}
    data["count"] = (("time", "y", "x"), np.stack(counts))
    return xr.Dataset(data), geobox


def test_tiles_match_the_truth_through_the_month_vrts(region, tiled20):
    """The tiles' COGs, seen through each month's VRT, are the region's truth on the untiled grid:
    the same pixels an untiled run makes, across the zone boundary and both orbits."""
    log = (tiled20 / "log.txt").read_text()
    assert "tiles: the area is cut into 9 tile(s) of up to 200 x 200 pixels" in log
    assert "done [9/9]" in log
    _assert_truth_through_the_vrts(region, tiled20)


def _assert_truth_through_the_vrts(region: RegionArchive, out: Path) -> None:
    """The month VRTs of ``out`` are the untiled grid and the region's truth on it."""
    monthly, geobox = _vrt_monthly(out)
    assert geobox == output_geobox(region.aoi(), "EPSG:32610", 20), "the tiles together are the untiled grid"
    truth = region.truth(geobox)
    interior = truth["interior"].values
    assert interior.mean() > 0.95
    for name, key in BANDS.items():
        got, expected = monthly[name].values.astype(np.float64), truth[key].values
        clear = ~np.isnan(expected)
        assert (got[interior & ~clear] == 0).all(), f"{name}: a value where no clear observation exists"
        diff = np.abs(got - expected)[interior & clear]
        assert (diff <= 1).all(), f"{name}: {int((diff > 1).sum())} interior pixels off by more than 1 DN"
    np.testing.assert_array_equal(monthly["count"].values[interior], truth["count"].values[interior])


def test_a_catalog_that_understates_its_scenes_loses_no_pixel_from_a_tiled_run(region, tmp_path):
    """Every scene of one MGRS tile with a geometry of its north-west kilometre only, every scene of
    another (in the other zone) with ``proj:shape`` halved, every scene of a third with both (only
    its bbox is right, a probe's): the tiled run still reads each scene wherever its grid, its
    geometry or its bbox reaches and cuts the tiles to them, so its mosaics are the region's truth,
    as an untiled run's are; one line counts the items that contradict themselves."""
    from pyproj import Transformer

    doc = json.loads(region.items_path.read_text())
    mgrs = sorted({f["properties"]["s2:mgrs_tile"]: f["properties"]["proj:epsg"] for f in doc["features"]}.items())
    small, both = [name for name, epsg in mgrs if epsg == 32610][:2]
    halved = next(name for name, epsg in mgrs if epsg == 32611)
    for feature in doc["features"]:
        props, assets = feature["properties"], feature["assets"]
        if props["s2:mgrs_tile"] in (small, both):
            a, _, x0, _, e, y0 = assets["SCL"]["proj:transform"]
            to_lonlat = Transformer.from_crs(props["proj:epsg"], 4326, always_xy=True)
            corners = [(x0, y0), (x0 + 1000, y0), (x0 + 1000, y0 - 1000), (x0, y0 - 1000), (x0, y0)]
            feature["geometry"] = {"type": "Polygon", "coordinates": [[list(to_lonlat.transform(*c)) for c in corners]]}
        if props["s2:mgrs_tile"] in (halved, both):
            for asset in assets.values():
                if "proj:shape" in asset:
                    asset["proj:shape"] = [n // 2 if props["s2:mgrs_tile"] == halved else 1000 // 20 for n in
                                           asset["proj:shape"]]  # fmt: skip
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    out = tmp_path / "out"
    proc = cli(_args(region, out, 20, "tile_size=200", items=items))
    assert proc.returncode == 0, proc.stderr[-3000:]
    _assert_truth_through_the_vrts(region, out)
    said = [line for line in proc.stderr.splitlines() if "reaches beyond its proj: fields' grid" in line]
    count = sum(f["properties"]["s2:mgrs_tile"] in (halved, both) for f in doc["features"])
    assert len(said) == 1 and f"the geometry or bbox of {count} item(s)" in said[0], said


def test_the_collection_lists_every_tile_and_month(tiled20):
    """``collection.json`` is a STAC Collection pystac reads: an item per tile and month with its
    ``grid:code``, footprint, COGs, count and quick-look; the extent, summaries and item_assets;
    each month's VRT among its assets, opened by rioxarray with the bands' scale."""
    collection = pystac.Collection.from_file(str(tiled20 / "collection.json"))
    items = list(collection.get_items())
    tiles = {p.name for p in tiled20.iterdir() if p.is_dir() and p.name.startswith("x")}
    assert len(tiles) == 9
    assert len(items) == len(tiles) * len(MONTHS)
    codes = {i.properties["grid:code"] for i in items}
    assert codes == set(collection.summaries.lists["grid:code"])
    assert all(c.startswith("EPSG32610-20m200px-x") for c in codes)
    for item in items:
        assert item.collection_id == "cubemosaic"
        assert {"mosaic", "count", "thumbnail"} <= set(item.assets)
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file(), asset.href
        tile = item.id.rsplit("-", 1)[-1]
        assert item.properties["grid:code"].endswith(tile) and tile in tiles
    assert set(collection.item_assets) >= {"mosaic", "count"}
    assert collection.item_assets["mosaic"].properties["raster:bands"][0]["scale"] == 0.0001
    (lon0, lat0, lon1, lat1) = collection.extent.spatial.bboxes[0]
    assert lon0 < -120 < lon1, "the area straddles the zone boundary"
    for month in MONTHS:
        asset = collection.assets[f"monthly-mosaic-{month}"]
        vrt = xr.open_dataarray(asset.get_absolute_href(), engine="rasterio", mask_and_scale=True)
        assert vrt.rio.crs.to_epsg() == 32610 and vrt.shape[0] == len(BANDS)
        assert 0 < float(vrt.mean()) < 1, "reflectance, scaled as the COGs say"
    with rasterio.open(tiled20 / "overview.png") as png:
        assert png.width >= 256


def test_every_line_of_a_tiles_work_names_the_tile(tiled20):
    """Tiles run side by side on a cluster, so each line of a tile's cube and composite (its days
    and months written, its read counts) names the tile: ``cube tile x142y995: ...``."""
    import re

    lines = [line.partition(" cubemosaic: ")[2] for line in (tiled20 / "log.txt").read_text().splitlines()]
    work = [line for line in lines if re.match(r"(cube|composite)[ :]", line)]
    steps = [line for line in work if " written [" in line]
    assert len(steps) >= 9 * (3 + len(MONTHS)), "the days and months of every tile"
    tiles = {p.name for p in tiled20.iterdir() if p.is_dir() and p.name.startswith("x")}
    for line in work:
        match = re.match(r"(cube|composite) tile (x\d+y\d+): ", line)
        assert match and match[2] in tiles, line


def test_a_killed_tiled_run_resumes_tile_by_tile(region, tiled20, tmp_path):
    """Killed (SIGKILL) after its second tile, the run started again keeps the tiles already done
    (their COGs up to date, nothing rewritten) and ends with the same pixels."""
    out = tmp_path / "out"
    proc = subprocess.Popen(
        [sys.executable, "-m", "cubemosaic", *_args(region, out, 20, "tile_size=200")],
        stderr=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, start_new_session=True,
    )  # fmt: skip
    assert proc.stderr is not None
    for line in proc.stderr:
        if line.split("cubemosaic: ")[-1].startswith("tiles: ") and "done [2/9]" in line:
            os.killpg(proc.pid, signal.SIGKILL)
            break
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, "killed before the run ended"
    assert not (out / "collection.json").exists()
    again = cli(_args(region, out, 20, "tile_size=200"))
    assert again.returncode == 0, again.stderr[-3000:]
    log = again.stderr
    first_two = sorted({line.split("/")[-3] for line in log.splitlines() if "is up to date" in line})
    assert len(first_two) == 2, log[-3000:]
    assert log.count("resuming") >= 2
    got, _ = _vrt_monthly(out)
    expected, _ = _vrt_monthly(tiled20)
    for name in got.data_vars:
        np.testing.assert_array_equal(got[name].values, expected[name].values)


def test_an_aoi_far_larger_than_its_data_costs_what_the_data_does(region, tmp_path):
    """An AOI whose box is ~100 x the region: only the tiles its scenes meet are made, each cut to
    their footprints, and the pixels where the data is are those of the tight AOI's run."""
    x0, y0, x1, y1 = region.aoi()
    cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, x1 - x0, y1 - y0
    wide = (round(cx - 5 * w, 5), round(cy - 5 * h, 5), round(cx + 5 * w, 5), round(cy + 5 * h, 5))
    tight = cli(_args(region, tmp_path / "tight", 60, "stage=plan"))
    sparse = cli(_args(region, tmp_path / "sparse", 60, "tile_size=128", aoi=wide))
    assert tight.returncode == 0 and sparse.returncode == 0, sparse.stderr[-3000:]
    plan = json.loads(tight.stdout)
    assert plan["tiles"] == 1
    made = [p for p in (tmp_path / "sparse").iterdir() if p.is_dir() and p.name.startswith("x")]
    pixels = 0
    for tile in made:
        with rasterio.open(next(tile.glob("monthly-mosaic-2022-01/monthly-mosaic-2022-01.tif"))) as ds:
            pixels += ds.width * ds.height
    assert pixels <= 1.5 * plan["pixels"], "cut to the data, not to the AOI's box"
    untiled = cli(_args(region, tmp_path / "untiled", 60))
    assert untiled.returncode == 0, untiled.stderr[-3000:]
    with rasterio.open(tmp_path / "untiled" / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.tif") as ds:
        expected, bounds = ds.read(), ds.bounds
    with rasterio.open(tmp_path / "sparse" / "monthly-mosaic-2022-01.vrt") as vrt:
        window = vrt.window(*bounds)
        got = vrt.read(window=window, boundless=True, fill_value=0)
    np.testing.assert_array_equal(got, expected)


def test_the_plan_writes_nothing(region, tmp_path):
    """``stage=plan`` prints the plan as one JSON object on stdout and the same for people in the
    log; no output folder, no Zarr folder is made."""
    out, zarr = tmp_path / "never" / "out", tmp_path / "never-zarr"
    proc = cli(_args(region, out, 20, "stage=plan", "tile_size=200", f"zarr_dir={zarr}"))
    assert proc.returncode == 0, proc.stderr[-3000:]
    plan = json.loads(proc.stdout)
    keys = {"scenes", "solar_days", "months", "tiles", "pixels", "read_bytes", "write_bytes", "peak_memory_mb"}
    assert keys <= set(plan)
    assert plan["tiles"] == 9 and plan["months"] == 2
    assert plan["scenes"] == len(region.items())
    assert plan["pixels"] == 515 * 417
    assert 0 < plan["read_bytes"] < sum(
        os.path.getsize(a["href"].removeprefix("file://")) for i in region.items() for k, a in i["assets"].items() if k in (*BANDS.values(), "SCL")
    )  # fmt: skip
    assert "plan: 9 tile(s)" in proc.stderr
    assert not (tmp_path / "never").exists() and not zarr.exists()


def test_an_infeasible_request_stops_in_one_line(tmp_path):
    """A 140 x 185 km request at 10 m with chunks of 8192 px in tiles of 32768: each task would hold
    a 14000 x 12000 px shard, and a row of its chunks of every day of a month, more than this
    machine's memory. It stops before any read, in one line naming the figure and what to change,
    and leaves no folder."""
    import pc12  # benchmarks/pc12.py: PC #12's items, from the recorded real item in tests/data

    items = pc12.write_items(tmp_path / "items.json", area=(5.5, 46.5, 7.5, 48.3))
    proc = cli(["catalog=demo", f"catalog.url={items}", "start_date=2020-06-01", "end_date=2020-07-31",
                "aoi=[5.6,46.55,7.4,48.2]", "resolution=10", "chunk_size=8192", "tile_size=32768",
                f"output_dir={tmp_path / 'out'}"])  # fmt: skip
    line = one_line_error(proc, "chunk_size", "MB in this process")
    assert "lower chunk_size" in line
    assert not (tmp_path / "out").exists()
    ok = cli(["catalog=demo", f"catalog.url={items}", "start_date=2020-06-01", "end_date=2020-07-31",
              "aoi=[5.6,46.55,7.4,48.2]", "resolution=10", "stage=plan", f"output_dir={tmp_path / 'out'}"])  # fmt: skip
    assert ok.returncode == 0, ok.stderr[-2000:]
    assert json.loads(ok.stdout)["tiles"] > 6, "the same area in tiles of the default size plans"


def test_the_two_steps_of_the_workflow_carry_a_tiled_cube(demo_tiled_run, tmp_path):
    """As the CWL workflow runs it: stage=cube (its cube.zarr Directory holds every tile), then
    stage=mosaic from that cube alone: the tiles are found in it, the months are those of one run."""
    step1, step2, whole = tmp_path / "cube-step", tmp_path / "mosaic-step", demo_tiled_run
    assert cli(["catalog=demo", "tile_size=128", "stage=cube", f"output_dir={step1}"]).returncode == 0
    proc = cli(["stage=mosaic", f"cube_url={step1 / 'cube.zarr'}", f"output_dir={step2}"])
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "done [6/6]" in proc.stderr
    for vrt in sorted(whole.glob("monthly-mosaic-*.vrt")):
        with rasterio.open(vrt) as a, rasterio.open(step2 / vrt.name) as b:
            np.testing.assert_array_equal(a.read(), b.read())
    assert len(list(whole.glob("monthly-mosaic-*.vrt"))) == 8


def _ours(out: Path) -> list[str]:
    """What is in ``out`` but the stores, the Hydra record and the log."""
    skip = {"cube.zarr", "monthly.zarr", ".hydra", "cubemosaic.log"}
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if not skip & set(p.relative_to(out).parts))


def test_switching_between_tiled_and_untiled_leaves_nothing_of_the_other(demo_run, demo_tiled_run, tmp_path):
    """The same output_dir, an untiled run, then a tiled one, then untiled again: refused in one
    line naming the store and what it holds, then with overwrite=true (as the refusal says): what each leaves is what the same run leaves in an empty folder, no
    catalog.json listing the months of the run before, no month VRT showing its pixels. A file
    of the user's stays. The same runs in an empty folder are the session's (the default
    tile_size is 4096)."""
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    runs = [["tile_size=4096"], ["tile_size=128"], ["tile_size=4096"]]
    refusals = [
        None,
        "holds an untiled store (an area that fitted one tile)",
        "holds a tiled store (an area cut into tiles of tile_size=128: give that tile_size to work on it)",
    ]
    for i, extra in enumerate(runs):
        if refusals[i]:  # without overwrite=true: refused, in one line, nothing changed
            before = _ours(out)
            refused = cli(["catalog=demo", *extra, f"output_dir={out}"], cwd=tmp_path)
            assert refused.returncode == 1 and one_line_error(refused) == (
                f"cubemosaic: error: zarr_dir: {out / 'cube.zarr'} {refusals[i]}; choose another zarr_dir or set overwrite=true "
                "to replace it"
            ), refused.stderr[-2000:]
            assert _ours(out) == before
        proc = cli(["catalog=demo", *extra, "overwrite=true", f"output_dir={out}"], cwd=tmp_path)
        assert proc.returncode == 0, proc.stderr[-3000:]
        alone = demo_tiled_run if extra == ["tile_size=128"] else demo_run
        assert _ours(out) == sorted([*_ours(alone), "notes.txt"]), extra
        roots = [json.loads((out / name).read_text()) for name in ("collection.json", "catalog.json")
                 if (out / name).exists()]  # fmt: skip
        for root in roots:
            for link in root["links"]:
                if link["rel"] == "item":
                    assert (out / link["href"]).is_file(), link
    assert (out / "notes.txt").read_text() == "mine"


def test_a_run_refused_at_one_of_its_tiles_leaves_the_earlier_tiles_listed(demo_tiled_run, tmp_path):
    """A tiled output, then a request over a smaller area into it: refused at a tile whose store
    another request made (one line, exit 1). The stores' records must still list the earlier
    tiles: a stage=export run alone then exports them all, as before, and removes none (it
    removed the tiles the refused run had not listed)."""
    out = tmp_path / "out"
    shutil.copytree(demo_tiled_run, out)
    tiles = sorted(p.name for p in out.glob("x*y*"))
    vrts = {p.name: rasterio.open(p).read() for p in out.glob("monthly-mosaic-*.vrt")}
    refused = cli(["catalog=demo", "tile_size=128", "aoi=[-122.31,47.54,-122.28,47.565]", f"output_dir={out}"])
    assert refused.returncode == 1 and "was made for another request" in one_line_error(refused), refused.stderr[-2000:]
    again = cli(["catalog=demo", "stage=export", f"output_dir={out}"])
    assert again.returncode == 0, again.stderr[-3000:]
    assert "removed" not in again.stderr
    assert sorted(p.name for p in out.glob("x*y*")) == tiles and len(tiles) > 1
    for name, pixels in vrts.items():
        with rasterio.open(out / name) as vrt:
            np.testing.assert_array_equal(vrt.read(), pixels)
