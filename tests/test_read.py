"""The read kernel (read.day_block) on its own, in this process: two small scenes of one day, each
with its own SCL and offset, read directly and warped, masked, harmonised and fused."""

from __future__ import annotations

import numpy as np
import pytest
import rasterio
from odc.geo.geobox import GeoBox
from rasterio.transform import from_origin

from cubemosaic.errors import AssetReadError
from cubemosaic.read import PLAIN, day_block, is_aligned
from cubemosaic.s2 import CloudMask
from cubemosaic.scenes import AssetGrid, SceneSource

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
