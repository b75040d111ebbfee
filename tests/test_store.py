"""The resumable store, in this process: create, resume, refuse, extend, and the step runner."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr

from cubemosaic import store
from cubemosaic.errors import OutputError


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
        store.write_steps(path, {i: _step(i + 1) for i in batch})
        return [{"item": "x", "band": "red"}]

    with pytest.raises(RuntimeError):
        store.run_steps(state, fail_on_second, batch_size=2, label="t", name=str)
    attrs = store.read_attrs(path)
    assert attrs["done"] == [0, 1] and not attrs["complete"] and attrs["skipped"] == [{"item": "x", "band": "red"}]

    again = _open(path, 3, sig)
    assert again.done == {0, 1}
    store.run_steps(again, lambda b: store.write_steps(path, {i: _step(i + 1) for i in b}) or [], batch_size=2,
                    label="t", name=str)  # fmt: skip
    attrs = store.read_attrs(path)
    assert attrs["done"] == [0, 1, 2] and attrs["complete"]
    red = xr.open_zarr(path, mask_and_scale=False)["red"].values
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
    store.run_steps(state, lambda b: store.write_steps(path, {i: _step(7) for i in b}) or [], batch_size=4,
                    label="t", name=str)  # fmt: skip
    longer = _open(path, 3, {"days": ["a", "b", "c"]})
    assert longer.steps == 3 and longer.done == {0, 1}
    assert not store.read_attrs(path)["complete"]
    assert xr.open_zarr(path).sizes["time"] == 3
