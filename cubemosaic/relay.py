"""The relay: Dask workers compute blocks, this process reads and writes the Zarr stores.

Used when the workers cannot see a local store (Dask Gateway pods do not mount the job's
volume; :mod:`cubemosaic.reach` finds out). Blocks travel over Dask's comms instead of the
disk: the cube's day blocks come back here and are written into their regions; for the
composite, each month-block of the cube is read here and sent to a worker, whose median and
count come back and are written. At most a bounded window of blocks is in flight (twice the
workers' threads, at most :data:`~cubemosaic.tuning.MAX_IN_FLIGHT`), so memory on both sides stays that of a few
blocks, never a month of the whole grid. Written by hand: Dask's ``store`` makes the workers
write, and nothing in dask or xarray streams results to the client's own store.

:class:`RelayedWrites` is the relay as the stages see it, one of the two ways blocks reach a
store (:class:`cubemosaic.store.Writes`).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import dask.array as da
import numpy as np
from distributed import as_completed

from .blocks import block_slices
from .store import Reduction, Steps, Writes, writable_arrays
from .tuning import MAX_IN_FLIGHT, release_memory

__all__ = ["RelayedWrites", "relay_month_blocks", "relay_steps"]

J = TypeVar("J")


def _window(client: Any) -> int:
    threads = sum(client.nthreads().values()) or 1
    return max(2, min(MAX_IN_FLIGHT, 2 * threads))


def _stream(client: Any, jobs: Iterable[J], submit: Callable[[J], Any], done: Callable[[J, Any], None]) -> None:
    """Submit ``jobs`` with at most a window in flight; ``done(job, result)`` here, as each finishes."""

    pending = iter(jobs)
    running: dict[Any, J] = {}
    finished = as_completed()

    def start() -> None:
        job = next(pending, None)
        if job is not None:
            future = submit(job)
            running[future] = job
            finished.add(future)

    for _ in range(_window(client)):
        start()
    for future in finished:
        job = running.pop(future)
        result = future.result()
        future.release()
        done(job, result)
        start()


def _blocks(shape: Sequence[int], shard: Sequence[int]) -> list[tuple[slice, slice]]:
    return [tile for row in block_slices((shape[0], shape[1]), (shard[0], shard[1])) for tile in row]


def relay_steps(client: Any, group: Any, steps: Mapping[int, Mapping[str, Any]]) -> None:
    """Compute each step's lazy (1, y, x) arrays block by block on the workers; write them into ``group`` here."""

    jobs = []
    for index, arrays in steps.items():
        names = list(arrays)
        first = arrays[names[0]]
        shard = (first.chunks[1][0], first.chunks[2][0])
        for ys, xs in _blocks(first.shape[1:], shard):
            jobs.append((index, names, ys, xs, da.stack([arrays[n][0, ys, xs] for n in names])))

    def done(job, data: np.ndarray) -> None:
        index, names, ys, xs, _ = job
        for k, name in enumerate(names):
            group[name][index, ys, xs] = data[k]

    _stream(client, jobs, lambda job: client.compute(job[4]), done)


def relay_month_blocks(
    client: Any,
    reduce: Callable[[list[np.ndarray]], np.ndarray | Mapping[str, np.ndarray]],
    sources: Sequence[Any],
    group: Any,
    months: Mapping[int, tuple[int, int]],
    names: Sequence[str],
    shard: Sequence[int],
) -> None:
    """For each month (index -> cube steps t0:t1) and block: read the cube here, ``reduce`` on a worker,
    write each of ``names`` (the reduced block's layers, in order, or its arrays by name) into ``group`` here.

    A block travels as strips of the sources' chunk rows (as the in-place composite reads it,
    :func:`cubemosaic.composite.month_block`): a worker holds one strip's days, not the shard's, and
    this process assembles the block's outputs and writes each shard once (a strip written into a
    shard would make zarr read, decode and encode the whole shard again, strip after strip)."""
    step = int(sources[0].chunks[1]) if hasattr(sources[0], "chunks") else int(shard[0])
    jobs = [
        (i, t0, t1, ys, xs, slice(r0, min(r0 + step, ys.stop)))
        for i, (t0, t1) in months.items()
        for ys, xs in _blocks(sources[0].shape[1:], shard)
        for r0 in range(ys.start, ys.stop, step)
    ]
    parts: dict[tuple[int, int, int], dict[str, np.ndarray]] = {}  # blocks being assembled
    rows_left: dict[tuple[int, int, int], int] = {}

    def submit(job):
        _, t0, t1, _, xs, rows = job
        blocks = [np.asarray(src[t0:t1, rows, xs]) for src in sources]
        return client.submit(reduce, blocks, pure=False)

    def done(job, data: np.ndarray | Mapping[str, np.ndarray]) -> None:
        i, _, _, ys, xs, rows = job
        key = (i, ys.start, xs.start)
        out = parts.setdefault(key, {})
        if not out:
            rows_left[key] = -(-(ys.stop - ys.start) // step)
        for k, name in enumerate(names):
            values = data[name] if isinstance(data, Mapping) else data[k]
            if rows == ys:
                out[name] = values
                continue
            if name not in out:
                out[name] = np.empty((ys.stop - ys.start,) + values.shape[1:], dtype=values.dtype)
            out[name][rows.start - ys.start : rows.stop - ys.start] = values
        rows_left[key] -= 1
        if rows_left[key] == 0:
            for name in names:
                group[name][i, ys, xs] = parts[key][name]
            del parts[key], rows_left[key]

    _stream(client, jobs, submit, done)


@dataclass(frozen=True)
class RelayedWrites(Writes):
    """The workers of ``client`` (a ``distributed.Client``) compute, this process writes the store
    (they cannot see it): the relay, a bounded window of blocks in flight."""

    client: Any
    relayed = True

    def write(self, path: str, steps: Steps, *, parameter: str = "zarr_dir") -> None:
        """Lazy steps: computed block by block on the workers, sent back and written here
        (:func:`relay_steps`). A :class:`~cubemosaic.store.Reduction`: its sources read here, one
        step at a time, each block sent to a worker to reduce and written here (:func:`relay_month_blocks`)."""

        targets = writable_arrays(path, parameter)
        if isinstance(steps, Reduction):
            for index, span in steps.spans.items():
                relay_month_blocks(
                    self.client, steps.reducer(index), steps.sources, targets, {index: span}, steps.names, steps.shard
                )
        else:
            relay_steps(self.client, targets, steps)
        release_memory()
