"""What a user gets under output_dir, and how other tools read it."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pystac
import rasterio
import xarray as xr

MONTHS = ["2021-12", "2022-01", "2022-02", "2022-03"]


def test_every_output_is_written(demo_run):
    assert (demo_run / "cube.zarr").is_dir()
    assert (demo_run / "monthly.zarr").is_dir()
    assert (demo_run / "catalog.json").is_file()
    for month in MONTHS:
        folder = demo_run / f"monthly-mosaic-{month}"
        assert (folder / f"monthly-mosaic-{month}.tif").is_file()
        assert (folder / f"monthly-mosaic-{month}-count.tif").is_file()
    assert not list(demo_run.rglob("*.partial")), "no temp file may be left behind"


def test_cogs_are_valid_with_band_names_nodata_and_overviews(demo_run):
    from rio_cogeo.cogeo import cog_validate

    for month in MONTHS:
        path = demo_run / f"monthly-mosaic-{month}" / f"monthly-mosaic-{month}.tif"
        valid, errors, _ = cog_validate(str(path), quiet=True)
        assert valid, errors
        with rasterio.open(path) as ds:
            assert ds.descriptions == ("red", "green", "blue", "nir")
            assert ds.nodata == 0 and ds.dtypes[0] == "uint16" and ds.count == 4
            assert ds.overviews(1)
            assert ds.crs.to_epsg() == 32610 and ds.res == (20.0, 20.0)
        count = path.with_name(f"monthly-mosaic-{month}-count.tif")
        assert cog_validate(str(count), quiet=True)[0]


def test_catalog_resolves_after_the_folder_is_moved(demo_run, tmp_path):
    moved = tmp_path / "elsewhere"
    shutil.copytree(demo_run, moved)
    shutil.rmtree(demo_run.parent / "gone", ignore_errors=True)
    catalog = pystac.Catalog.from_file(str(moved / "catalog.json"))
    items = list(catalog.get_items(recursive=True))
    assert sorted(i.id for i in items) == [f"monthly-mosaic-{m}" for m in MONTHS]
    for item in items:
        month = item.id.removeprefix("monthly-mosaic-")
        assert item.properties["start_datetime"].startswith(f"{month}-01T00:00:00")
        assert item.properties["end_datetime"][:7] == month
        assert item.properties["proj:code"] == "EPSG:32610"
        assert item.properties["cubemosaic:source_items"]
        for asset in item.assets.values():
            href = asset.get_absolute_href()
            assert href.startswith(str(moved)), href
            with rasterio.open(href) as ds:
                assert ds.count >= 1
        assert [b["name"] for b in item.assets["mosaic"].extra_fields["eo:bands"]] == ["red", "green", "blue", "nir"]
    text = (moved / "catalog.json").read_text()
    assert str(demo_run) not in text


def test_cube_opens_with_plain_open_zarr(demo_run):
    import odc.geo.xr  # noqa: F401  (registers .odc)
    import rioxarray  # noqa: F401  (registers .rio)

    cube = xr.open_zarr(demo_run / "cube.zarr")
    assert list(cube.data_vars) == sorted(["red", "green", "blue", "nir"])
    assert cube.red.dims == ("time", "y", "x")
    assert cube.rio.crs.to_epsg() == 32610
    assert cube.odc.geobox.crs.epsg == 32610
    assert cube.odc.geobox.resolution.x == 20
    red = cube.red.values
    assert np.nanmax(red) < 1.2 and np.nanmin(red) > 0, "decodes to reflectance, 0 -> NaN"
    assert np.isnan(red).any()
    assert cube.sizes["time"] == 18  # 19 scenes, two on one solar day
    pair = [ids for ids in cube.item_ids.values if " " in str(ids)]
    assert len(pair) == 1
    assert set(cube.processing_baseline.values) == {"03.01", "04.00"}
    assert {str(p) for p in cube.platform.values} == {"Sentinel-2A", "Sentinel-2B"}


def test_every_output_lands_inside_output_dir_whatever_it_is_called(demo_run, tmp_path):
    """A dot in the folder's name (run.v2) sent the catalog and items to the parent folder."""
    from conftest import cli

    parent = tmp_path / "parent.d"
    parent.mkdir()
    for name in ("run.v2", "my run.v3"):
        proc = cli(["stage=export", f"zarr_dir={demo_run}", f"output_dir={name}"], cwd=parent)  # relative too
        assert proc.returncode == 0, proc.stderr
        out = parent / name
        assert f"{out}/catalog.json lists 4 monthly mosaic(s)" in proc.stderr
        catalog = pystac.Catalog.from_file(str(out / "catalog.json"))
        items = list(catalog.get_items(recursive=True))
        assert len(items) == 4
        for item in items:
            assert out in Path(item.get_self_href()).parents
            assert Path(item.assets["mosaic"].get_absolute_href()).is_file()
    assert sorted(p.name for p in parent.iterdir()) == ["my run.v3", "run.v2"], "nothing beside the output folders"


def test_gdal_rioxarray_and_the_zarr_agree_on_reflectance(demo_run):
    """The COG states scale 0.0001 / offset 0 and true-colour bands, as GIS tools read them."""
    import rioxarray
    from rasterio.enums import ColorInterp

    monthly = xr.open_zarr(demo_run / "monthly.zarr")
    for i, month in enumerate(MONTHS):
        path = demo_run / f"monthly-mosaic-{month}" / f"monthly-mosaic-{month}.tif"
        with rasterio.open(path) as ds:
            assert ds.scales == (1e-4,) * 4 and ds.offsets == (0.0,) * 4
            assert ds.colorinterp[:3] == (ColorInterp.red, ColorInterp.green, ColorInterp.blue)
            dn = ds.read(1)
        cog = rioxarray.open_rasterio(path, mask_and_scale=True)
        red = monthly.red.isel(time=i).values
        np.testing.assert_allclose(cog.sel(band=1).values, red, rtol=1e-6, equal_nan=True)
        np.testing.assert_allclose(dn[dn > 0] * 1e-4, red[dn > 0], rtol=1e-6)
        assert np.isnan(cog.sel(band=1).values[dn == 0]).all()


def test_what_xarray_users_type_first_works_on_both_stores(demo_run, tmp_path):
    """ds.chunks, .chunksizes, to_netcdf of a slice; the cube's monthly median is monthly.zarr."""
    cube = xr.open_zarr(demo_run / "cube.zarr")
    monthly = xr.open_zarr(demo_run / "monthly.zarr")
    for ds in (cube, monthly):
        assert {str(ds[b].dtype) for b in ("red", "green", "blue", "nir")} == {"float32"}, "float32 reflectance"
        assert set(ds.chunks["time"]) == {1}
        assert ds.red.chunksizes["time"] == ds.item_ids.chunksizes["time"]
        sliced = ds.isel(time=slice(0, 2), x=slice(0, 50), y=slice(0, 50))
        path = tmp_path / "slice.nc"
        sliced.to_netcdf(path, engine="scipy")
        with xr.open_dataset(path, engine="scipy") as back:
            np.testing.assert_allclose(back.red.values, sliced.red.values, rtol=1e-6, equal_nan=True)
            assert "signature" in back.attrs["cubemosaic"], "provenance travels as a JSON string"
    assert monthly["count"].dtype == np.uint16
    median = cube.red.resample(time="1MS").median().compute()
    np.testing.assert_allclose(median.values, monthly.red.values, atol=0.5e-4 + 1e-7, equal_nan=True)


def test_a_rerun_restores_every_file_the_catalog_lists(demo_run, tmp_path):
    """A finished output whose item JSON, quick-look or overview went missing: the rerun of the export
    writes them again (before, it said "up to date" and left a catalog pystac could not read)."""
    from conftest import cli

    out = tmp_path / "copy"
    shutil.copytree(demo_run, out)
    (out / "monthly-mosaic-2022-01" / "monthly-mosaic-2022-01.json").unlink()
    (out / "monthly-mosaic-2022-02" / "monthly-mosaic-2022-02-quicklook.png").unlink()
    (out / "overview.png").unlink()
    cogs = {p: p.stat().st_mtime_ns for p in out.glob("monthly-mosaic-*/*.tif")}
    proc = cli(["catalog=demo", "stage=export", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "nothing rewritten" not in proc.stderr
    items = list(pystac.Catalog.from_file(str(out / "catalog.json")).get_items(recursive=True))
    assert sorted(i.id for i in items) == [f"monthly-mosaic-{m}" for m in MONTHS]
    for item in items:
        for asset in item.assets.values():
            assert Path(asset.get_absolute_href()).is_file(), asset.href
    assert (out / "overview.png").is_file()
    assert {p: p.stat().st_mtime_ns for p in cogs} == cogs, "the COGs were whole: none is rewritten"
    again = cli(["catalog=demo", "stage=export", f"output_dir={out}"], cwd=tmp_path)
    assert again.returncode == 0 and "is up to date, nothing rewritten" in again.stderr


def _files(root: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in root.rglob("*") if p.is_file() and p.name != ".cubemosaic.lock"}


def test_a_stage_run_alone_refuses_an_override_its_store_was_not_made_for(demo_run, tmp_path):
    """stage=composite, mosaic and export make what the written store was made for. An override of
    what shaped it used to be ignored: exit 0, "already complete", the other request's outputs
    (a probe's runs: resolution=20 on a 60 m folder, statistic=[p25] on medians). Each such key is
    refused in one line naming it; nothing is written. The same value given is no difference."""
    from conftest import cli

    out = tmp_path / "copy"
    shutil.copytree(demo_run, out)
    before = _files(out)
    refused = [
        (["stage=composite", "resolution=60"], "resolution: 60 was asked but the cube"),
        (["stage=mosaic", "bands=[red,nir]"], "bands: red,nir was asked but the cube"),
        (["stage=composite", "mask_dilation=200"], "mask_dilation: 200 was asked"),
        (["stage=export", "statistic=[p25]"], "statistic: p25 was asked but the monthly store"),
        (["stage=export", "crs=EPSG:32611"], "crs: EPSG:32611 was asked but the monthly store"),
        (["stage=export", "provenance=[iqr]"], "provenance: iqr was asked"),
        (["stage=composite", "start_date=2022-01-01"], "start_date: 2022-01-01 was asked"),
        (["stage=composite", "end_date=2022-12-31"], "end_date: 2022-12-31 was asked"),  # a wider period too
        (["stage=export", "aoi=[-122.33,47.53,-122.26,47.58]"], "aoi: [-122.33,47.53,-122.26,47.58] was asked"),
        (["stage=mosaic", "max_cloud_cover=20"], "max_cloud_cover: 20 was asked"),
        (["stage=mosaic", "tile_size=128"], "tile_size: 128 was asked but the cube"),  # its 228 x 225 px, untiled
        (["stage=export", "tile_size=128"], "tile_size: 128 was asked but the monthly store"),
    ]
    for args, said in refused:
        proc = cli(["catalog=demo", f"output_dir={out}", *args], cwd=tmp_path)
        assert proc.returncode == 2, (args, proc.stderr[-2000:])
        errors = [line for line in proc.stderr.splitlines() if "error" in line or "Traceback" in line]
        assert len(errors) == 1 and errors[0].startswith(f"cubemosaic: error: {said}"), (args, proc.stderr[-2000:])
        assert "was made for" in errors[0] and "overwrite=true" in errors[0]
    assert _files(out) == before, "a refused stage writes nothing"
    same = cli(
        ["catalog=demo", f"output_dir={out}", "stage=mosaic", "resolution=20", "statistic=[median]",
         "start_date=2021-12-01", "end_date=2022-03-31", "aoi=[-122.325,47.535,-122.265,47.575]", "tile_size=512"],
        cwd=tmp_path,
    )  # fmt: skip
    assert same.returncode == 0, same.stderr[-2000:]
    assert {p: t for p, t in _files(out).items() if p.suffix == ".tif"} == {
        p: t for p, t in before.items() if p.suffix == ".tif"
    }


def test_a_store_of_another_request_in_zarr_dir_is_refused_naming_zarr_dir(demo_run, tmp_path):
    """Stores kept apart from the COGs (``zarr_dir``) and holding another request: the one line
    names ``zarr_dir`` and the store, not ``output_dir`` (which holds no store here)."""
    from conftest import cli, one_line_error

    stores = tmp_path / "stores"
    stores.mkdir()
    shutil.copytree(demo_run / "cube.zarr", stores / "cube.zarr")
    args = ["catalog=demo", "resolution=60", f"output_dir={tmp_path / 'out'}", f"zarr_dir={stores}"]
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 1 and one_line_error(proc) == (
        f"cubemosaic: error: zarr_dir: {stores / 'cube.zarr'} was made for another request (differs in: "
        "shape, transform); choose another zarr_dir or set overwrite=true to replace it"
    ), proc.stderr[-2000:]


def test_the_bands_in_another_order_are_refused_then_made_in_that_order(demo_run, tmp_path):
    """A probe's rerun with bands=[nir,red,green,blue] into a red,green,blue,nir folder exited 0,
    "up to date", its COGs in the old order. It is another request: refused naming bands, and made
    in the order asked with overwrite=true."""
    import rasterio

    from conftest import cli, one_line_error

    out = tmp_path / "copy"
    shutil.copytree(demo_run, out)
    args = ["catalog=demo", "bands=[nir,red,green,blue]", f"output_dir={out}"]
    proc = cli(args, cwd=tmp_path)
    assert proc.returncode == 1 and one_line_error(proc).startswith(
        f"cubemosaic: error: zarr_dir: {out / 'cube.zarr'} was made for another request (differs in: bands)"
    ), proc.stderr[-2000:]
    again = cli([*args, "overwrite=true"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr[-2000:]
    name = "monthly-mosaic-2022-01/monthly-mosaic-2022-01.tif"
    with rasterio.open(out / name) as new, rasterio.open(demo_run / name) as old:
        assert new.descriptions == ("nir", "red", "green", "blue")
        assert np.array_equal(new.read(), old.read()[[3, 0, 1, 2]])


def test_a_file_of_the_users_in_a_month_folder_of_an_earlier_request_stays(demo_run, tmp_path):
    """A shorter period into a demo run's folder (overwrite=true): the months it no longer makes
    are removed, but a file the user put in one of their folders stays, with its folder (the
    whole folder was removed)."""
    from conftest import cli

    out = tmp_path / "copy"
    shutil.copytree(demo_run, out)
    notes = out / "monthly-mosaic-2021-12" / "notes.txt"
    notes.write_text("mine")
    proc = cli(["catalog=demo", "start_date=2022-01-01", "overwrite=true", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert notes.read_text() == "mine" and sorted(p.name for p in notes.parent.iterdir()) == ["notes.txt"]
    assert "kept the folder, which holds notes.txt" in proc.stderr
    assert not (out / "monthly-mosaic-2021-12" / "monthly-mosaic-2021-12.tif").exists()
    assert "monthly-mosaic-2021-12" not in (out / "catalog.json").read_text()
