"""cubemosaic.tiled: a tiled store's record (the grid and its tiles) written, read back and refused."""

from __future__ import annotations

import pytest
import zarr

from cubemosaic.errors import OutputError
from cubemosaic.tiled import TiledRecord, member, note_tiles, read_tiled, write_tiled
from cubemosaic.tiling import TileGrid

GRID = TileGrid("EPSG:32606", 20.0, 100)
TILES = [
    {
        "id": "x200y3396",
        "index": [200, 3396],
        "shape": [100, 100],
        "transform": [20.0, 0, 400000.0, 0, -20.0, 6794000.0],
    },
    {
        "id": "x201y3396",
        "index": [201, 3396],
        "shape": [100, 50],
        "transform": [20.0, 0, 402000.0, 0, -20.0, 6794000.0],
    },
]


def test_a_tiled_store_reads_back_as_written(tmp_path):
    root = str(tmp_path / "cube.zarr")
    write_tiled(root, GRID, TILES, overwrite=False, label="cube")
    record = read_tiled(root)
    assert isinstance(record, TiledRecord) and record.grid == GRID
    assert record.ids == ["x200y3396", "x201y3396"] and list(record.tiles) == TILES
    assert member(root, "x201y3396") == f"{root}/x201y3396" and member(root + "/", "x1y2") == f"{root}/x1y2"


def test_writing_again_on_the_same_grid_keeps_the_tiles_stores(tmp_path):
    """And the record keeps the earlier tiles until the run has written every new one (a run
    refused at one of its tiles must not leave a record a later stage would act on)."""
    root = str(tmp_path / "cube.zarr")
    write_tiled(root, GRID, TILES[:1], overwrite=False, label="cube")
    zarr.open_group(member(root, "x200y3396"), mode="w").attrs["kept"] = True
    write_tiled(root, GRID, TILES, overwrite=False, label="cube")
    assert read_tiled(root).ids == ["x200y3396"]
    note_tiles(root, GRID, TILES)
    assert read_tiled(root).ids == ["x200y3396", "x201y3396"]
    assert zarr.open_group(member(root, "x200y3396"), mode="r").attrs["kept"] is True


def test_nothing_or_an_untiled_store_is_not_tiled(tmp_path):
    assert read_tiled(str(tmp_path / "nothing")) is None
    zarr.open_group(str(tmp_path / "plain.zarr"), mode="w").attrs["other"] = 1
    assert read_tiled(str(tmp_path / "plain.zarr")) is None


def test_an_array_is_not_a_tiled_store(tmp_path):
    zarr.create_array(str(tmp_path / "array.zarr"), shape=(2,), dtype="u1")
    assert read_tiled(str(tmp_path / "array.zarr")) is None


@pytest.mark.parametrize("earlier", ["untiled", "other-grid"])
def test_another_store_is_replaced_only_with_overwrite(earlier, tmp_path):
    root = str(tmp_path / "cube.zarr")
    if earlier == "untiled":
        zarr.open_group(root, mode="w").attrs["other"] = 1
    else:
        write_tiled(root, TileGrid("EPSG:32606", 10.0, 100), TILES, overwrite=False, label="cube")
    with pytest.raises(OutputError, match="overwrite=true") as refused:
        write_tiled(root, GRID, TILES, overwrite=False, label="cube")
    assert root in str(refused.value) and ("untiled" in str(refused.value)) == (earlier == "untiled")
    write_tiled(root, GRID, TILES, overwrite=True, label="cube")
    assert read_tiled(root).grid == GRID


def test_a_folder_without_zarr_json_is_not_called_an_untiled_store(tmp_path):
    """A tiled store whose root zarr.json was lost (a probe's) is no store of ours, not an untiled one."""
    root = tmp_path / "cube.zarr"
    write_tiled(str(root), GRID, TILES, overwrite=False, label="cube")
    (root / "zarr.json").unlink()
    with pytest.raises(OutputError, match="is not a cubemosaic store .*overwrite=true"):
        write_tiled(str(root), GRID, TILES, overwrite=False, label="cube")


def test_a_damaged_record_is_an_output_error_not_untiled(tmp_path):
    root = tmp_path / "cube.zarr"
    write_tiled(str(root), GRID, TILES, overwrite=False, label="cube")
    (root / "zarr.json").write_text("{not json")
    with pytest.raises(OutputError, match="cannot read"):
        read_tiled(str(root))
