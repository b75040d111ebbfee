"""cubemosaic.read: the read kernel (day_block) in this process: two small scenes of one day, each
with its own SCL and offset, read directly and warped, masked, harmonised and fused."""

from __future__ import annotations

import json
import os

import numpy as np
import odc.geo.xr  # noqa: F401  (the .odc accessor)
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.transform import from_origin

from cubemosaic import tuning
from cubemosaic.errors import AssetReadError
from cubemosaic.read import PLAIN, Access, _masked, day_block, is_aligned
from cubemosaic.s2 import CloudMask
from cubemosaic.scenes import AssetGrid, SceneSource

from conftest import truncated_asset_items

X0, Y0 = 500000.0, 5000000.0
CRS = "EPSG:32610"
N = 40  # 10 m pixels a side (400 m)


def _tif(path, data: np.ndarray, res: float, shift: float = 0.0) -> AssetGrid:
    transform = from_origin(X0 + shift, Y0, res, res)
    with rasterio.open(
        path, "w", driver="GTiff", width=data.shape[1], height=data.shape[0], count=1, dtype="uint16",
        crs=CRS, transform=transform, nodata=0,
    ) as dst:  # fmt: skip
        dst.write(data.astype(np.uint16), 1)
    return AssetGrid(str(path), CRS, tuple(transform)[:6], data.shape, item_id=path.stem.split("-")[0], key=path.stem)


def _scene(tmp_path, name: str, red: np.ndarray, scl: np.ndarray, offset: int, *, warped: bool = False) -> SceneSource:
    # Warped: files whose grids start 0.1 m east of the output's (a hundredth of a pixel: the same
    # pixels under every output pixel centre), stated nowhere in the catalog. The reader goes by the
    # files, which do not line up, so it must warp (odc-loader's RioReader).
    shift = 0.1 if warped else 0.0
    band = _tif(tmp_path / f"{name}-B04.tif", red, 10, shift)
    mask = _tif(tmp_path / f"{name}-SCL.tif", scl, 20, shift)
    if warped:
        band = AssetGrid(band.href, None, None, None, band.item_id, band.key)
        mask = AssetGrid(mask.href, None, None, None, mask.item_id, mask.key)
    return SceneSource(name, (band,), mask, offset)


@pytest.fixture
def day(tmp_path):
    """Scene a (baseline 04.00: +1000 DN) with a cloud over its top-left quarter; scene b (no
    offset) clear, but without data in its first 10 m column."""

    def make(warped: bool = False) -> list[SceneSource]:
        scl_a = np.full((N // 2, N // 2), 4, dtype=np.uint16)
        scl_a[:10, :10] = 9  # cloud high probability: 200 x 200 m
        red_b = np.full((N, N), 700, dtype=np.uint16)
        red_b[:, :2] = 0  # no data in the first 20 m column
        return [
            _scene(tmp_path, "a", np.full((N, N), 1500, dtype=np.uint16), scl_a, 1000, warped=warped),
            _scene(tmp_path, "b", red_b, np.full((N // 2, N // 2), 4, dtype=np.uint16), 0, warped=warped),
        ]

    return make


def _grid(res: float) -> GeoBox:
    return GeoBox.from_bbox((X0, Y0 - N * 10, X0 + N * 10, Y0), CRS, resolution=res)


def _expected(res: float) -> np.ndarray:
    # GDAL's nearest takes the native pixel under each output pixel's centre: at 40 m, not the gap
    n, cloud, gap = int(N * 10 / res), int(200 / res), int(20 / res)
    out = np.full((n, n), 500, dtype=np.uint16)  # scene a, offset removed
    out[:cloud, :cloud] = 700  # under a's cloud: scene b
    out[:cloud, :gap] = 0  # where b has no data either
    return out


@pytest.mark.parametrize("res", [10, 20, 40])
def test_scenes_are_masked_harmonised_and_fused_first_clear_first(day, res):
    sources = day()
    assert all(is_aligned(g, _grid(res)) for s in sources for g in (*s.bands, s.scl))
    got = day_block(sources, _grid(res), CloudMask(), PLAIN)
    assert got.shape == (1, *_grid(res).shape) and got.dtype == np.uint16
    np.testing.assert_array_equal(got[0], _expected(res))


def test_a_warped_read_gives_what_the_direct_read_gives(day, monkeypatch):
    """Files whose grids do not line up are warped onto the block by odc-loader's reader; at the
    bands' own pixels (and coarser, by nearest) the values are the same."""
    import cubemosaic.read as read

    warps = []

    class Counting(read.RioReader):
        def read(self, *args, **kwargs):
            warps.append(self._src.uri)
            return super().read(*args, **kwargs)

    monkeypatch.setattr(read, "RioReader", Counting)
    sources = day(warped=True)
    assert not any(is_aligned(g, _grid(20)) for s in sources for g in (*s.bands, s.scl))
    for res in (10, 20):
        np.testing.assert_array_equal(day_block(sources, _grid(res), CloudMask(), PLAIN)[0], _expected(res))
    assert {uri.rsplit("/", 1)[-1] for uri in warps} == {"a-B04.tif", "a-SCL.tif", "b-B04.tif", "b-SCL.tif"}
    warps.clear()
    day_block(day(), _grid(20), CloudMask(), PLAIN)
    assert warps == [], "grids that line up are read directly"


def test_average_takes_the_mean_of_the_clear_native_pixels(tmp_path):
    red = np.tile(np.array([[1000, 2000], [3000, 4000]], dtype=np.uint16), (N // 2, N // 2))
    red[0, 0] = 0  # one native pixel without data: the mean of the other three
    scene = _scene(tmp_path, "a", red, np.full((N // 2, N // 2), 4, dtype=np.uint16), 0)
    got = day_block([scene], _grid(20), CloudMask(), PLAIN, resampling="average")[0]
    assert got[0, 0] == 3000 and (got.ravel()[1:] == 2500).all()


def test_pixels_outside_the_aoi_are_never_taken(day):
    grid = _grid(20)
    lon_lat = grid.extent.to_crs("EPSG:4326").boundingbox
    half = (lon_lat.left + lon_lat.right) / 2
    west = f"POLYGON(({lon_lat.left - 1} {lon_lat.bottom - 1}, {half} {lon_lat.bottom - 1}, {half} {lon_lat.top + 1}, " \
        f"{lon_lat.left - 1} {lon_lat.top + 1}, {lon_lat.left - 1} {lon_lat.bottom - 1}))"  # fmt: skip
    got = day_block(day(), grid, CloudMask(), PLAIN, aoi_wkt=west)[0]
    assert (got[:, -3:] == 0).all() and (got[:, 3:6] == _expected(20)[:, 3:6]).all()


@pytest.mark.parametrize("warped", [False, True])
def test_a_failed_read_names_the_item_and_band_where_it_fails(day, tmp_path, warped):
    a, b = day(warped=warped)
    (tmp_path / "b-B04.tif").write_bytes(b"not a tiff")
    with pytest.raises(AssetReadError) as failed:
        day_block([a, b], _grid(20), CloudMask(), PLAIN)
    assert (failed.value.item_id, failed.value.band) == ("b", "b-B04")
    assert "cannot read asset b-B04 of item b" in str(failed.value)


def test_a_scene_that_does_not_reach_the_block_is_not_opened(day, tmp_path):
    """A tile of the next UTM zone, 500 km away, stated in its own CRS: never opened (its files
    do not even exist), so it costs no request and cannot fail the block."""
    far = AssetGrid(str(tmp_path / "gone-B04.tif"), "EPSG:32611", (10, 0, X0, 0, -10, Y0), (N, N), "far", "B04")
    far_scl = AssetGrid(str(tmp_path / "gone-SCL.tif"), "EPSG:32611", (20, 0, X0, 0, -20, Y0), (N // 2, N // 2),
                        "far", "SCL")  # fmt: skip
    sources = [*day(), SceneSource("far", (far,), far_scl, 0)]
    np.testing.assert_array_equal(day_block(sources, _grid(20), CloudMask(), PLAIN)[0], _expected(20))
    # The same files where nothing says where they are: opened, and the failure named.
    unknown = [AssetGrid(g.href, None, None, None, "far", g.key) for g in (far, far_scl)]
    with pytest.raises(AssetReadError, match="asset SCL of item far"):
        day_block([SceneSource("far", (unknown[0],), unknown[1], 0)], _grid(20), CloudMask(), PLAIN)


@pytest.mark.parametrize(
    "resolution, origin", [(10, (500130, 4999930)), (20, (500100, 4999940)), (60, (500120, 4999940))]
)
def test_the_aligned_reader_dilates_on_the_scl_pixels_whatever_the_output_grid(tmp_path, resolution, origin):
    """The block's SCL is read on its own 20 m pixels with a margin, dilated there, then put on the
    block: 10 m (starting mid SCL pixel) takes the pixel under each centre, 60 m is masked where any
    of its 3 x 3 SCL pixels is. The margin makes a block's edge see a cloud just outside it."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin

    rng = np.random.default_rng(1)
    native = np.where(rng.random((60, 80)) < 0.01, 9, 4).astype(np.uint16)
    path = tmp_path / "scl.tif"
    transform = from_origin(500000, 5000000, 20, 20)
    with rasterio.open(
        path, "w", driver="GTiff", width=80, height=60, count=1, dtype="uint16", crs="EPSG:32610", transform=transform
    ) as dst:
        dst.write(native, 1)
    grid = AssetGrid(str(path), "EPSG:32610", tuple(transform)[:6], (60, 80))
    mask = CloudMask(dilation_m=60)
    whole = mask.masked(native, 20.0)  # the reference: the whole asset dilated at once
    shape = (600 // resolution, 900 // resolution)
    geobox = GeoBox(shape, Affine(resolution, 0, origin[0], 0, -resolution, origin[1]), "EPSG:32610")
    assert is_aligned(grid, geobox)
    got = _masked(grid, geobox, mask, Access())
    col0, row0 = (origin[0] - 500000) / 20, (5000000 - origin[1]) / 20
    if resolution >= 20:
        k = resolution // 20
        sub = whole[int(row0) : int(row0) + shape[0] * k, int(col0) : int(col0) + shape[1] * k]
        expected = sub.reshape(shape[0], k, shape[1], k).any(axis=(1, 3))
    else:
        rows = np.floor(row0 + (np.arange(shape[0]) + 0.5) / 2).astype(int)
        cols = np.floor(col0 + (np.arange(shape[1]) + 0.5) / 2).astype(int)
        expected = whole[np.ix_(rows, cols)]
    np.testing.assert_array_equal(got, expected)
    assert got.mean() > 0.05


def _days(items_path, *datetimes: str) -> list:
    import pystac

    features = json.loads(items_path.read_text())["features"]
    return [pystac.Item.from_dict(f) for f in features if f["properties"]["datetime"] in datetimes]


def test_the_reader_names_the_asset_it_failed_on_without_reading_anything_again(demo, tmp_path, monkeypatch):
    """cubemosaic's reader raises AssetReadError (item id, band, problem) where the read fails; no
    pass re-reads the batch's assets to find the culprit. With on_read_error=skip the scene is left
    out and recorded, the day written without it; when every scene fails, skipping would leave
    nothing, and that is an error, not an empty mosaic."""
    import cubemosaic.cube as cube
    from cubemosaic import store
    from cubemosaic.errors import AssetReadError, ReadError
    from cubemosaic.s2 import CloudMask

    items_path, victim = truncated_asset_items(demo, tmp_path)
    other = json.loads(items_path.read_text())["features"][0]["properties"]["datetime"]
    items = _days(items_path, victim["properties"]["datetime"], other)
    assert len(items) == 2
    bands = {"red": "B04", "nir": "B08"}
    geobox = cube.output_geobox(demo.bbox_lonlat(), "EPSG:32610", 20)

    def build(name: str, scenes, **kw) -> str:
        return cube.build_cube(scenes, str(tmp_path / name), cube.CubeSpec(geobox, bands, "SCL", CloudMask()), **kw)

    with pytest.raises(AssetReadError) as e:
        build("a.zarr", items)
    assert (e.value.item_id, e.value.band) == (victim["id"], "B08")
    assert str(e.value).startswith(f"cannot read asset B08 of item {victim['id']}: ")
    attrs = store.read_attrs(build("b.zarr", items, on_read_error="skip"))
    assert attrs["complete"] and [(s["item"], s["band"]) for s in attrs["skipped"]] == [(victim["id"], "B08")]
    with pytest.raises(ReadError, match="every scene of 1 day.s. failed to read"):
        build("c.zarr", _days(items_path, victim["properties"]["datetime"]), on_read_error="skip")


def test_grid_alignment_decides_the_reader():
    import pystac
    from odc.geo.geobox import GeoBox

    from cubemosaic.read import is_aligned
    from cubemosaic.scenes import asset_grid

    item = pystac.Item("x", None, None, __import__("datetime").datetime(2022, 1, 1), {"proj:epsg": 32610})
    item.add_asset(
        "B04",
        pystac.Asset(
            "b.tif", extra_fields={"proj:shape": [100, 100], "proj:transform": [10, 0, 500000, 0, -10, 5000000]}
        ),
    )
    grid = asset_grid(item, "B04", "EPSG:32610")
    assert is_aligned(grid, GeoBox.from_bbox((500100, 4999000, 500900, 4999900), "EPSG:32610", resolution=20))
    assert not is_aligned(grid, GeoBox.from_bbox((500105, 4999000, 500905, 4999900), "EPSG:32610", resolution=15))
    assert not is_aligned(grid, GeoBox.from_bbox((500100, 4999000, 500900, 4999900), "EPSG:32611", resolution=20))


def test_a_20m_asset_is_read_at_10m_by_repeating_its_pixels(tmp_path):
    """The aligned reader upsamples by an integer factor (a 20 m SCL at 10 m): exact nearest."""
    from affine import Affine
    from odc.geo.geobox import GeoBox
    from rasterio.transform import from_origin
    from rasterio.warp import Resampling, reproject

    from cubemosaic.read import Access, AssetGrid, _read, is_aligned

    rng = np.random.default_rng(0)
    native = rng.integers(1, 12, size=(30, 40), dtype=np.uint16)
    path = tmp_path / "scl.tif"
    transform = from_origin(500000, 5000000, 20, 20)
    profile = dict(driver="GTiff", width=40, height=30, count=1, dtype="uint16", crs="EPSG:32610")
    with rasterio.open(path, "w", transform=transform, **profile) as dst:
        dst.write(native, 1)
    grid = AssetGrid(str(path), "EPSG:32610", tuple(transform)[:6], (30, 40))
    # Starts mid asset pixel (an odd number of 10 m pixels in) and runs past the asset's edge.
    geobox = GeoBox.from_bbox((500130, 4999550, 500850, 4999930), "EPSG:32610", resolution=10)
    assert is_aligned(grid, geobox)
    shifted = GeoBox(geobox.shape, Affine(10, 0, 500135, 0, -10, 4999930), "EPSG:32610")  # half a 10 m pixel off
    assert not is_aligned(grid, shifted)
    got = _read(grid, geobox, Access())
    want = np.zeros(geobox.shape, dtype=np.uint16)
    reproject(
        native,
        want,
        src_transform=transform,
        src_crs="EPSG:32610",
        dst_transform=geobox.transform,
        dst_crs="EPSG:32610",
        resampling=Resampling.nearest,
        dst_nodata=0,
    )
    np.testing.assert_array_equal(got, want)
    assert (got[:, -1] == 0).all() and got[0, 0] == native[3, 6]


def test_every_read_configures_its_process_first(monkeypatch):
    """A Dask worker gets GDAL's settings at its first read, whoever started it."""
    monkeypatch.setattr(tuning, "_done", [])
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    seen = PLAIN.read("file.tif", lambda url: os.environ.get("GDAL_CACHEMAX"))
    assert seen == str(tuning.GDAL_CACHE_MB)


def test_each_scene_is_read_and_fused_on_its_reach_only(day, monkeypatch):
    """A block five times a tile's side (a region's): each scene is read, masked and fused over the
    pixels its stated footprint reaches (padded), not the block, and lands where it is; a scene
    stating no footprint is read over the block; one far away is not read."""
    from cubemosaic import read

    block = GeoBox.from_bbox((X0 - 800, Y0 - 5 * N * 10 + 800, X0 - 800 + 5 * N * 10, Y0 + 800), CRS, resolution=20)
    sources = day()
    pad = read.REACH_PAD
    reach = read.scene_reach(sources[0], block)
    assert reach == (slice(40 - pad, 60 + pad), slice(40 - pad, 60 + pad))  # the tile: 800 m in, 400 m wide
    stateless = SceneSource("s", sources[0].bands, AssetGrid("x.tif", None, None, None), 0)
    assert read.scene_reach(stateless, block) == (slice(0, 100), slice(0, 100))
    far = AssetGrid("gone.tif", "EPSG:32611", (10, 0, X0, 0, -10, Y0), (N, N))
    assert read.scene_reach(SceneSource("far", (far,), far, 0), block) is None

    shapes = []
    original = read._read

    def recorded(grid, geobox, *args, **kwargs):
        shapes.append(geobox.shape)
        return original(grid, geobox, *args, **kwargs)

    monkeypatch.setattr(read, "_read", recorded)
    got = day_block(sources, block, CloudMask(), PLAIN)
    assert shapes and all(s == (20 + 2 * pad, 20 + 2 * pad) for s in shapes), shapes
    expected = np.zeros(block.shape, dtype=np.uint16)
    expected[40:60, 40:60] = _expected(20)
    np.testing.assert_array_equal(got[0], expected)
