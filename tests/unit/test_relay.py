"""cubemosaic.relay: the workers compute, this process writes; a bounded window in flight (an in-process cluster)."""

from __future__ import annotations

import dask.array as da
import numpy as np
import pytest
import xarray as xr
from distributed import Client, LocalCluster

from cubemosaic import relay, store
from cubemosaic.relay import MAX_IN_FLIGHT, RelayedWrites, relay_month_blocks, relay_steps


@pytest.fixture(scope="module")
def client():
    with LocalCluster(n_workers=1, threads_per_worker=2, processes=False, dashboard_address=None) as cluster:
        with Client(cluster) as c:
            yield c


class _Threads:
    def __init__(self, *threads: int) -> None:
        self._threads = threads

    def nthreads(self):
        return {f"w{i}": n for i, n in enumerate(self._threads)}


def test_the_window_is_twice_the_threads_within_bounds():
    assert relay._window(_Threads()) == 2
    assert relay._window(_Threads(1)) == 2
    assert relay._window(_Threads(1, 2)) == 6
    assert relay._window(_Threads(16)) == MAX_IN_FLIGHT


def test_relay_steps_writes_every_block_here(client):
    rng = np.random.default_rng(0)
    red = rng.integers(1, 9000, (1, 5, 7)).astype(np.uint16)
    nir = rng.integers(1, 9000, (1, 5, 7)).astype(np.uint16)
    steps = {
        1: {"red": da.from_array(red, chunks=(1, 2, 3)), "nir": da.from_array(nir, chunks=(1, 2, 3))},
        0: {"red": da.from_array(nir, chunks=(1, 2, 3)), "nir": da.from_array(red, chunks=(1, 2, 3))},
    }
    group = {"red": np.zeros((2, 5, 7), np.uint16), "nir": np.zeros((2, 5, 7), np.uint16)}
    relay_steps(client, group, steps)
    np.testing.assert_array_equal(group["red"][1], red[0])
    np.testing.assert_array_equal(group["nir"][1], nir[0])
    np.testing.assert_array_equal(group["red"][0], nir[0])
    np.testing.assert_array_equal(group["nir"][0], red[0])


@pytest.mark.parametrize("by_name", [False, True])
def test_relay_month_blocks_reduces_on_the_workers_and_writes_here(client, by_name):
    rng = np.random.default_rng(1)
    cube = rng.integers(0, 100, (6, 5, 7)).astype(np.uint16)  # steps 0-2: month 0, steps 3-5: month 1

    def reduce(blocks):
        (block,) = blocks
        layers = {"max": block.max(axis=0), "count": (block > 0).sum(axis=0).astype(np.uint16)}
        return layers if by_name else np.stack([layers["max"], layers["count"]])

    group = {"max": np.zeros((2, 5, 7), np.uint16), "count": np.zeros((2, 5, 7), np.uint16)}
    relay_month_blocks(client, reduce, [cube], group, {0: (0, 3), 1: (3, 6)}, ["max", "count"], (2, 3))
    for month, (t0, t1) in enumerate([(0, 3), (3, 6)]):
        np.testing.assert_array_equal(group["max"][month], cube[t0:t1].max(axis=0))
        np.testing.assert_array_equal(group["count"][month], (cube[t0:t1] > 0).sum(axis=0))


class _Chunked:
    """A source stored in chunks of ``rows`` rows (as a zarr array says with ``chunks``)."""

    def __init__(self, values: np.ndarray, rows: int) -> None:
        self.values, self.shape, self.chunks = values, values.shape, (1, rows, values.shape[2])

    def __getitem__(self, key):
        return self.values[key]


class _Writes(dict):
    """A store's arrays that count the writes of each region."""

    def __init__(self, names, shape) -> None:
        super().__init__({n: _Counted(np.zeros(shape, np.uint16)) for n in names})


class _Counted:
    def __init__(self, values: np.ndarray) -> None:
        self.values, self.writes = values, []

    def __setitem__(self, key, value) -> None:
        self.writes.append(key)
        self.values[key] = value


def test_a_month_block_travels_as_strips_of_chunk_rows_and_each_shard_is_written_once(client):
    """Workers reduce a strip of the cube's chunk rows at a time (their memory does not grow with
    the shard); the strips' outputs are assembled here and each shard of a month written once."""
    rng = np.random.default_rng(2)
    cube = rng.integers(0, 100, (6, 10, 7)).astype(np.uint16)

    def reduce(blocks):  # each output pixel says how many rows its worker was sent
        (block,) = blocks
        return {
            "max": block.max(axis=0),
            "first": block[0],
            "rows": np.full(block.shape[1:], block.shape[1], np.uint16),
        }

    group = _Writes(["max", "first", "rows"], (2, 10, 7))
    # Shards of 6 x 4 px; chunks of 2 rows: the 6-row shards go as 3 strips, the 4-row edge as 2.
    relay_month_blocks(
        client, reduce, [_Chunked(cube, 2)], group, {0: (0, 3), 1: (3, 6)}, ["max", "first", "rows"], (6, 4)
    )
    for month, (t0, t1) in enumerate([(0, 3), (3, 6)]):
        np.testing.assert_array_equal(group["max"].values[month], cube[t0:t1].max(axis=0))
        np.testing.assert_array_equal(group["first"].values[month], cube[t0])
    assert (group["rows"].values == 2).all()  # a strip of 2 rows, never the shard's 6
    blocks = [(i, ys.start, xs.start) for i, ys, xs in group["max"].writes]
    assert sorted(blocks) == sorted({(i, y, x) for i in (0, 1) for y in (0, 6) for x in (0, 4)})  # once each


def test_no_more_than_the_window_is_in_flight(monkeypatch):
    """``_stream`` keeps at most ``_window`` jobs submitted and not yet done."""
    from concurrent.futures import Future

    in_flight, most = 0, 0
    submitted: list[Future] = []

    class _Finished:
        def __init__(self) -> None:
            self.queue: list[Future] = []

        def add(self, future):
            self.queue.append(future)

        def __iter__(self):
            while self.queue:
                yield self.queue.pop(0)

    def submit(job):
        nonlocal in_flight, most
        in_flight += 1
        most = max(most, in_flight)
        future = Future()
        future.set_result(job * 2)
        future.release = lambda: None
        submitted.append(future)
        return future

    results = []

    def done(job, result):
        nonlocal in_flight
        in_flight -= 1
        results.append((job, result))

    monkeypatch.setattr(relay, "as_completed", _Finished)
    relay._stream(_Threads(1), range(10), submit, done)
    assert sorted(results) == [(j, 2 * j) for j in range(10)]
    assert most == 2, "the window of one thread: two in flight"


def _store(path: str, names: list[str]) -> str:
    """An empty store of two (8, 12) uint16 steps per name, in shards of (4, 8)."""
    template = xr.Dataset(
        {n: (("time", "y", "x"), da.zeros((2, 8, 12), dtype="uint16", chunks=(1, 4, 8))) for n in names},
        coords={"time": np.array(["2021-01-01", "2021-02-01"], dtype="datetime64[ns]")},
    )
    encoding = {n: store.zarr_encoding((1, 4, 4), (1, 4, 8), reflectance=False) for n in names}
    store.create(path, template, encoding, {"format": 0})
    return path


def _max_and_count(blocks: list[np.ndarray]) -> dict[str, np.ndarray]:
    (block,) = blocks
    return {"max": block.max(axis=0), "count": (block > 0).sum(axis=0).astype(np.uint16)}


def test_relayed_writes_store_what_direct_writes_store(client, tmp_path):
    """Both ways blocks reach a store write the same steps: lazy arrays (the cube's days) and a
    Reduction of another store (the months: the relay reads its sources here, the workers reduce)."""
    rng = np.random.default_rng(2)
    cube = rng.integers(0, 100, (6, 8, 12)).astype(np.uint16)
    days = {
        1: {"red": da.from_array(cube[:1], chunks=(1, 4, 8))},
        0: {"red": da.from_array(cube[5:], chunks=(1, 4, 8))},
    }
    spans = {0: (0, 3), 1: (3, 6)}

    def lazy(i: int) -> dict[str, da.Array]:
        month = da.from_array(cube, chunks=(6, 4, 8))[slice(*spans[i])]
        return {"max": month.max(axis=0)[None], "count": (month > 0).sum(axis=0).astype(np.uint16)[None]}

    months = store.Reduction([cube], spans, lambda i: _max_and_count, lazy, ["max", "count"], (4, 8))
    assert set(months) == {0, 1} and len(months) == 2 and set(months[1]) == {"max", "count"}
    for name, writes in [("direct", store.DIRECT), ("relayed", RelayedWrites(client))]:
        writes.write(_store(str(tmp_path / f"{name}-days.zarr"), ["red"]), days)
        writes.write(_store(str(tmp_path / f"{name}-months.zarr"), ["max", "count"]), months)
    for kind in ("days", "months"):
        direct, relayed = (store.open_dn(str(tmp_path / f"{name}-{kind}.zarr")) for name in ("direct", "relayed"))
        xr.testing.assert_identical(direct.load(), relayed.load())
    months_here = store.open_dn(str(tmp_path / "relayed-months.zarr"))
    np.testing.assert_array_equal(months_here["max"][1], cube[3:6].max(axis=0))
    np.testing.assert_array_equal(store.open_dn(str(tmp_path / "relayed-days.zarr"))["red"][0], cube[5])
