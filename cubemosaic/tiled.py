"""Tiled stores: ``cube.zarr`` and ``monthly.zarr`` of an area cut into tiles.

A tiled store is a Zarr group whose members are the tiles' own stores, each a complete cube (or
monthly) store as an untiled run writes it, resumed and verified on its own::

    cube.zarr/            group; attribute ``cubemosaic`` = {"tiled": {"grid": ..., "tiles": [...]}}
    cube.zarr/x142y995/   the tile's cube (time, y, x), its signature, its completion record
    monthly.zarr/x142y995/

so ``xr.open_datatree("cube.zarr", engine="zarr")`` shows every tile, and
``xr.open_zarr("cube.zarr", group="x142y995")`` one. The group's record lists the tiles in their
order (what a later stage, started without a search, works on) and the grid they were cut on.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import fsspec
import zarr

from .errors import OutputError, one_line
from .store import ATTR, damaged, open_group, record_or_none
from .tiling import Tile, TileGrid

__all__ = ["TiledRecord", "member", "note_tiles", "read_tiled", "write_tiled"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class TiledRecord:
    """What a tiled store's group says: the grid and the tiles (their records, in order)."""

    grid: TileGrid
    tiles: tuple[dict[str, Any], ...]

    @property
    def ids(self) -> list[str]:
        return [t["id"] for t in self.tiles]


def member(root: str, tile_id: str) -> str:
    """The path (or URL) of one tile's store in the tiled store at ``root``."""
    return f"{root.rstrip('/')}/{tile_id}"


def read_tiled(root: str, parameter: str = "zarr_dir") -> TiledRecord | None:
    """The record of the tiled store at ``root``; ``None`` if it is not one (nothing there, an
    untiled store, not a Zarr group). Any other failure to read it (permissions, the network, a
    damaged ``zarr.json``) is :class:`OutputError` naming it and ``parameter``, the setting that
    places it: never taken for "not tiled", which would send a later stage down the untiled path
    (or ``overwrite`` to remove the store)."""
    fs, path = fsspec.core.url_to_fs(root)
    try:
        if not fs.exists(f"{path.rstrip('/')}/zarr.json"):
            return None
        raw = open_group(root, "r").attrs.get(ATTR)
    except (
        FileNotFoundError,
        zarr.errors.GroupNotFoundError,
        zarr.errors.ContainsArrayError,
        zarr.errors.NodeTypeValidationError,
    ):
        return None  # an array, or no group: not a tiled store
    except Exception as e:  # noqa: BLE001  (whatever the store's filesystem raises)
        raise OutputError(f"{parameter}: cannot read {root}: {one_line(str(e) or type(e).__name__)}") from None
    record = json.loads(raw) if isinstance(raw, str) else dict(raw or {})
    tiled = record.get("tiled")
    if not tiled:
        return None
    return TiledRecord(TileGrid(**tiled["grid"]), tuple(tiled["tiles"]))


def write_tiled(
    root: str, grid: TileGrid, tiles: Sequence[Tile | dict], *, overwrite: bool, label: str, parameter: str = "zarr_dir"
) -> None:
    """Make ``root`` a tiled store on ``grid`` for ``tiles`` (create it, or keep its tiles' stores to
    resume). A new store's record lists ``tiles`` at once; an earlier one on the same grid keeps
    listing its own tiles (but with ``overwrite``) until the run has written every one of these (:func:`note_tiles`), so a
    run refused at one of its tiles (another request's store) leaves the record as it was, and a
    later stage run alone still works on, and keeps, the earlier request's tiles.

    An untiled store at ``root`` (an earlier request over an area that fitted one tile) is replaced
    only with ``overwrite``; else :class:`OutputError` names it and ``parameter`` (the setting that
    places it). A tiled store made on another grid is replaced the same way: its tiles' pixels are
    not this request's.
    """
    records = [t.record() if isinstance(t, Tile) else dict(t) for t in tiles]
    fs, path = fsspec.core.url_to_fs(root)
    if fs.exists(path):
        earlier = read_tiled(root, parameter)
        other = None
        if earlier is None and record_or_none(root) is None:  # a folder, or a store without its zarr.json
            other = damaged(root) or "is not a cubemosaic store (no zarr.json with a cubemosaic record)"
        elif earlier is None:
            other = "holds an untiled store (an area that fitted one tile)"
        elif earlier.grid != grid:
            other = f"was cut on another grid ({earlier.grid.record()})"
        if other:
            if not overwrite:
                raise OutputError(
                    f"{parameter}: {root} {other}; choose another {parameter} or set overwrite=true to replace it"
                )
            log.info("%s: replacing %s (overwrite=true)", label, root)
            fs.rm(path, recursive=True)
    # A new store (or one just replaced) lists its tiles at once. So does one whose tiles this run
    # replaces (overwrite=true: nothing is refused, and an interrupted run must not leave the
    # earlier list over tiles now this request's). Else it is rewritten once every tile is done.
    if overwrite or read_tiled(root, parameter) is None:
        note_tiles(root, grid, records)


def note_tiles(root: str, grid: TileGrid, tiles: Sequence[Tile | dict]) -> None:
    """Record in the tiled store at ``root`` that it holds ``tiles`` (in order), cut on ``grid``:
    once the run has written every one of them."""
    records = [t.record() if isinstance(t, Tile) else dict(t) for t in tiles]
    group = open_group(root, "a")
    group.attrs[ATTR] = json.dumps({"tiled": {"grid": grid.record(), "tiles": records}})
