"""cubemosaic.pipeline: what a run owns and what it tells its user."""

from __future__ import annotations

from pathlib import Path


def _settings(tmp_path: Path, *overrides: str):
    from cubemosaic.__main__ import compose
    from cubemosaic.config import to_settings

    return to_settings(compose(["catalog=demo", f"output_dir={tmp_path / 'out'}", *overrides]))


def test_what_a_run_holds_by_stage(tmp_path):
    """Written folders exclusively, read-only ones shared, each once; output_dir first."""
    from cubemosaic.pipeline import owned

    out, stores, cubes = tmp_path / "out", tmp_path / "stores", tmp_path / "cubes"
    assert owned(_settings(tmp_path)) == [("output_dir", str(out), False)]
    assert owned(_settings(tmp_path, f"zarr_dir={stores}")) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
    ]
    (cubes / "c.zarr").mkdir(parents=True)
    (cubes / "c.zarr" / "zarr.json").write_text("{}")
    mosaic = _settings(tmp_path, f"zarr_dir={stores}", f"cube_url={cubes / 'c.zarr'}", "stage=mosaic")
    assert owned(mosaic) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
        ("cube_url", str(cubes), True),
    ]
    export = _settings(tmp_path, f"zarr_dir={stores}", "stage=export")
    assert owned(export) == [("output_dir", str(out), False), ("zarr_dir", str(stores), True)]
    on_s3 = _settings(tmp_path, "zarr_dir=s3://bucket/x", "stage=export")
    assert owned(on_s3) == [("output_dir", str(out), False), ("zarr_dir", "s3://bucket/x", False)]
