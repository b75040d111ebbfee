"""cubemosaic.pipeline: what a run owns and what it tells its user."""

from __future__ import annotations

from conftest import demo_settings


def test_what_a_run_holds_by_stage(tmp_path):
    """Written folders exclusively, read-only ones shared, each once; output_dir first."""
    from cubemosaic.pipeline import owned

    out, stores, cubes = tmp_path / "out", tmp_path / "stores", tmp_path / "cubes"
    assert owned(demo_settings(tmp_path)) == [("output_dir", str(out), False)]
    assert owned(demo_settings(tmp_path, f"zarr_dir={stores}")) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
    ]
    (cubes / "c.zarr").mkdir(parents=True)
    (cubes / "c.zarr" / "zarr.json").write_text("{}")
    mosaic = demo_settings(tmp_path, f"zarr_dir={stores}", f"cube_url={cubes / 'c.zarr'}", "stage=mosaic")
    assert owned(mosaic) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
        ("cube_url", str(cubes), True),
    ]
    export = demo_settings(tmp_path, f"zarr_dir={stores}", "stage=export")
    assert owned(export) == [("output_dir", str(out), False), ("zarr_dir", str(stores), True)]
    on_s3 = demo_settings(tmp_path, "zarr_dir=s3://bucket/x", "stage=export")
    assert owned(on_s3) == [("output_dir", str(out), False), ("zarr_dir", "s3://bucket/x", False)]


def test_the_summary_lists_each_month_with_its_clear_share(tmp_path):
    import json

    from cubemosaic.pipeline import Outputs, summary

    out = Outputs(tmp_path, str(tmp_path), str(tmp_path / "cube.zarr"))
    mosaics = []
    for month, share in (("2021-12", 0.9958), ("2022-01", 1.0)):
        folder = tmp_path / f"monthly-mosaic-{month}"
        folder.mkdir()
        tif = folder / f"monthly-mosaic-{month}.tif"
        tif.with_suffix(".json").write_text(json.dumps({"properties": {"cubemosaic:clear_share": share}}))
        mosaics.append(tif)
    unknown = tmp_path / "monthly-mosaic-2022-02" / "monthly-mosaic-2022-02.tif"  # no item beside it
    lines = summary(out, [*mosaics, unknown], 12.34)
    assert lines[0].startswith("summary: monthly-mosaic-2021-12 clear 99.5") and "100" not in lines[0]
    assert lines[1].startswith("summary: monthly-mosaic-2022-01 clear 100")
    assert lines[2].startswith("summary: monthly-mosaic-2022-02 clear share unknown")
    assert lines[3] == "summary: 3 month(s); run took 12.3 s"
    assert lines[4] == f"summary: overview picture {tmp_path / 'overview.png'}"
    assert lines[5] == f"summary: catalog {tmp_path / 'catalog.json'}"
    assert summary(out, [], 1.0) == ["summary: run took 1.0 s"]


def test_one_list_of_stages():
    """``stage=`` is checked against config.STAGES, and the pipeline runs the same steps for each."""
    import typing

    from cubemosaic import pipeline
    from cubemosaic.config import STAGES, Stage

    assert set(typing.get_args(Stage)) == set(STAGES)
    assert pipeline.STAGES is STAGES
    assert STAGES["plan"] == (), "stage=plan runs no step"
