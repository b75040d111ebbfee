"""cubemosaic.store: the resumable store in this process: create, resume, refuse, extend, and the step runner."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from cubemosaic import store
from cubemosaic.errors import OutputError
from cubemosaic.store import open_dn


def _template(n: int) -> xr.Dataset:
    times = np.array([np.datetime64(f"2022-01-{d + 1:02d}", "ns") for d in range(n)])
    data = da.zeros((n, 8, 8), dtype="float32", chunks=(1, 8, 8))
    ids = np.array([f"scene-{d}" for d in range(n)], dtype=object)
    return xr.Dataset(
        {"red": (("time", "y", "x"), data)},
        coords={"time": times, "y": np.arange(8.0), "x": np.arange(8.0), "item_ids": ("time", ids)},
    )


def _open(path: str, n: int, sig: dict, **kw) -> store.StoreState:
    encoding = {"red": store.zarr_encoding((1, 8, 8), (1, 8, 8))}
    return store.open_or_create(path, _template(n), encoding, sig, overwrite=kw.pop("overwrite", False), label="t")


def _step(value: int) -> dict:
    return {"red": da.full((1, 8, 8), value, dtype=np.uint16, chunks=(1, 8, 8))}


def test_steps_are_recorded_after_their_data_and_a_rerun_resumes(tmp_path):
    path = str(tmp_path / "s.zarr")
    sig = {"days": ["a", "b", "c"], "bands": ["red"]}
    state = _open(path, 3, sig)
    assert state.steps == 3 and state.done == set()
    seen: list[list[int]] = []

    def fail_on_second(batch: list[int]) -> list[dict[str, str]]:
        if seen:
            raise RuntimeError("interrupted")
        seen.append(batch)
        store.DIRECT.write(path, {i: _step(i + 1) for i in batch})
        return [{"item": "x", "band": "red"}]

    with pytest.raises(RuntimeError):
        store.run_steps(state, fail_on_second, batch_size=2, label="t", name=str)
    attrs = store.read_attrs(path)
    assert attrs["done"] == [0, 1] and not attrs["complete"] and attrs["skipped"] == [{"item": "x", "band": "red"}]

    again = _open(path, 3, sig)
    assert again.done == {0, 1}
    store.run_steps(again, lambda b: store.DIRECT.write(path, {i: _step(i + 1) for i in b}) or [], batch_size=2,
                    label="t", name=str)  # fmt: skip
    attrs = store.read_attrs(path)
    assert attrs["done"] == [0, 1, 2] and attrs["complete"]
    red = open_dn(path)["red"].values
    assert [int(red[i, 0, 0]) for i in range(3)] == [1, 2, 3]


def test_another_request_is_refused_naming_what_differs_or_replaced_when_asked(tmp_path):
    path = str(tmp_path / "s.zarr")
    _open(path, 2, {"days": ["a", "b"], "bands": ["red"], "resolution": 20})
    with pytest.raises(OutputError, match=r"was made for another request \(differs in: resolution\)"):
        _open(path, 2, {"days": ["a", "b"], "bands": ["red"], "resolution": 60})
    state = _open(path, 2, {"days": ["a", "b"], "bands": ["red"], "resolution": 60}, overwrite=True)
    assert state.done == set() and store.read_attrs(path)["signature"]["resolution"] == 60


def test_a_later_end_extends_the_store_keeping_the_steps_written(tmp_path):
    path = str(tmp_path / "s.zarr")
    state = _open(path, 2, {"days": ["a", "b"]})
    store.run_steps(state, lambda b: store.DIRECT.write(path, {i: _step(7) for i in b}) or [], batch_size=4,
                    label="t", name=str)  # fmt: skip
    longer = _open(path, 3, {"days": ["a", "b", "c"]})
    assert longer.steps == 3 and longer.done == {0, 1}
    assert not store.read_attrs(path)["complete"]
    assert xr.open_zarr(path).sizes["time"] == 3


def test_reflectance_is_float32_to_xarray_and_uint16_on_disk_and_to_the_pipeline(tmp_path):
    """Plain xr.open_zarr decodes float32 reflectance (0 -> NaN); the chunks hold uint16 DN (the
    pipeline's view, the same chunks read as uint16 without the filter, gives every value
    0..65535 back exactly, as does open_dn)."""
    import zarr

    path = str(tmp_path / "s.zarr")
    values = np.arange(65536, dtype=np.uint16).reshape(256, 256)
    template = xr.Dataset(
        {"red": (("time", "y", "x"), da.zeros((1, 256, 256), dtype="uint16", chunks=(1, 256, 256)))},
        coords={"time": [np.datetime64("2022-01-01", "ns")], "y": np.arange(256.0), "x": np.arange(256.0)},
    )
    encoding = {"red": store.zarr_encoding((1, 128, 128), (1, 256, 256))}
    state = store.open_or_create(path, template, encoding, {"days": ["a"]}, overwrite=False, label="t")
    step = {0: {"red": da.from_array(values[None], chunks=(1, 256, 256))}}
    store.run_steps(state, lambda b: store.DIRECT.write(path, step) or [], batch_size=1, label="t", name=str)

    red = xr.open_zarr(path).red
    assert red.dtype == np.float32
    got = red.values[0]
    assert np.isnan(got[0, 0]) and not np.isnan(got.ravel()[1:]).any()
    np.testing.assert_array_equal(got.ravel()[1:], (values.ravel()[1:] * np.float64(1e-4)).astype(np.float32))
    raw = store.dn_arrays(path, ["red"])["red"]
    assert raw.dtype == np.uint16
    np.testing.assert_array_equal(raw[0], values)
    np.testing.assert_array_equal(store.open_dn(path).red.values[0], values)
    public = zarr.open_group(path, mode="r")["red"]
    assert public.dtype == np.float32 and raw.nbytes == public.nbytes // 2


class Broken:
    """An array whose every read raises ``error`` (module level: it pickles)."""

    shape = (2, 3)

    def __init__(self, error: Exception) -> None:
        self.error = error

    def __getitem__(self, key):
        raise self.error


def test_a_readable_array_travels_to_workers_and_names_its_store_when_a_chunk_does_not_decode():
    """:class:`store.Readable` pickles with its fields; zarrs' RuntimeError is one OutputError, others pass."""
    import pickle

    readable = pickle.loads(pickle.dumps(store.Readable(Broken(RuntimeError("the checksum is invalid")),
                                                        "zarr_dir", "out/monthly.zarr/red", "delete it")))  # fmt: skip
    assert readable.shape == (2, 3)
    with pytest.raises(OutputError, match=r"^zarr_dir: out/monthly.zarr is damaged: a shard of red does not decode "
                       r"\(the checksum is invalid\); delete it$"):  # fmt: skip
        readable[0]
    with pytest.raises(IndexError):
        store.Readable(Broken(IndexError("out of range")), "zarr_dir", "out/m.zarr/red", "delete it")[0]


def test_a_storage_error_of_zarrs_is_not_called_damage():
    """zarrs raises RuntimeError for its storage's failures too (permissions, a failing disk or
    network): one line that the store cannot be read, without the advice to delete it."""
    readable = store.Readable(Broken(RuntimeError("IO error for operation on c/0/0/0: Permission denied (os error 13)")),
                              "cube_url", "s3://b/cube.zarr/red", "delete it")  # fmt: skip
    with pytest.raises(OutputError) as e:
        readable[0]
    assert str(e.value).startswith("cube_url: cannot read red of s3://b/cube.zarr (IO error")
    assert "delete" not in str(e.value) and "damaged" not in str(e.value)


@pytest.mark.parametrize("parameter", ["zarr_dir", "cube_url"])
def test_a_failed_or_unseen_write_names_the_setting_that_places_the_store(tmp_path, parameter):
    """A cube placed by ``cube_url`` used to be called ``zarr_dir`` when a write to it failed or
    the workers wrote it where this process cannot see it, the one remedy that changes nothing."""
    from cubemosaic.errors import WriteError

    path = str(tmp_path / "cube.zarr")
    _open(path, 2, {"v": 1})
    targets = store.writable_arrays(path, parameter)
    store.DIRECT.write(path, {0: _step(3)}, parameter=parameter)
    store.check_visible(path, targets, {0: ["red"]}, parameter)  # step 0 is there
    with pytest.raises(WriteError, match=rf"^{parameter}: the Dask workers wrote .* \({parameter}=s3://\.\.\.\)$"):
        store.check_visible(path, targets, {1: ["red"]}, parameter)  # step 1 was never written
    targets["red"].array = targets["red"].fast = Unwritable()
    with pytest.raises(WriteError, match=rf"^{parameter}: cannot write {path}/red: PermissionError: read-only"):
        targets["red"][0:1] = np.ones((1, 8, 8), dtype=np.uint16)


class Unwritable:
    """An array whose every write fails as a read-only disk's does."""

    def __setitem__(self, key, value):
        raise PermissionError("read-only file system")


def test_the_bands_in_another_order_are_another_request(tmp_path):
    """A dict's ``==`` ignores its order: a rerun asking the bands in another order resumed the
    store, and its COGs kept the old order (a probe). The order is the request's."""
    path = str(tmp_path / "s.zarr")
    _open(path, 2, {"bands": {"red": "B04", "nir": "B08"}})
    assert _open(path, 2, {"bands": {"red": "B04", "nir": "B08"}}).done == set()  # the same: resumed
    with pytest.raises(OutputError, match=r"differs in: bands\)"):
        _open(path, 2, {"bands": {"nir": "B08", "red": "B04"}})
    nested = {"format": 1, "cube": {"format": 1, "bands": {"red": "B04", "nir": "B08"}}}
    assert store.differences(nested, {**nested, "cube": {"format": 1, "bands": {"nir": "B08", "red": "B04"}}}) == [
        "cube.bands"
    ]


def test_a_tiled_store_refused_at_another_resolution_names_the_resolution():
    """A probe: tile_size=128 at 60 m into a 20 m tiled folder (the area fits one tile at 60 m)
    was told to give tile_size=128, which it had; the resolution is what differs."""
    tiled = {"grid": {"crs": "EPSG:32610", "resolution": 20.0, "size": 128}, "tiles": []}
    at = {20: [20.0, 0.0, 500000.0, 0.0, -20.0, 5300000.0], 60: [60.0, 0.0, 500000.0, 0.0, -60.0, 5300000.0]}
    assert store._tiled_refusal(tiled, {"transform": at[60]}) == (
        "was made for another request (differs in: resolution; a tiled store of resolution=20, tile_size=128)"
    )
    assert store._tiled_refusal(tiled, {"transform": at[20]}) == (
        "holds a tiled store (an area cut into tiles of tile_size=128: give that tile_size to work on it)"
    )


def test_a_store_whose_zarr_json_is_cut_short_is_called_damaged_not_missing(tmp_path):
    """A probe: a tile store whose zarr.json was truncated was 'missing or not a cubemosaic store';
    the user, told so, looked for a store that is there. The refusals say it is damaged."""
    import os

    path = str(tmp_path / "s.zarr")
    sig = {"days": ["a", "b"], "bands": ["red"]}
    _open(path, 2, sig)
    meta = tmp_path / "s.zarr" / "zarr.json"
    os.truncate(meta, meta.stat().st_size // 2)
    with pytest.raises(OutputError) as e:
        store.read_attrs(path, "cube_url")
    assert str(e.value).startswith(f"cube_url: {path} is damaged: its zarr.json is not a JSON document (")
    with pytest.raises(OutputError, match=r"is damaged: its zarr.json is not a JSON document .*overwrite=true"):
        _open(path, 2, sig)
    assert _open(path, 2, sig, overwrite=True).done == set()
    (tmp_path / "gone.zarr").mkdir()
    with pytest.raises(OutputError, match="is missing or not a cubemosaic store"):
        store.read_attrs(str(tmp_path / "gone.zarr"))
