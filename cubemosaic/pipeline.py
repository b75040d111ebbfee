"""The main job: search -> cube -> composite -> export, or any one stage of it.

The stage modules (catalog, cube, composite, export, cluster, ...) are imported inside the
functions that run them, not at the top: the command line imports this module on its start-up
path, and ``--help``, ``--cfg`` or a configuration error answer without loading Dask, xarray,
zarr or GDAL (tests/unit/test_main.py). A run loads each stage's module as the stage starts.
"""

from __future__ import annotations

import errno
import gc
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .config import DEMO_CATALOGS, STAGES, Settings
from .errors import OutputError, WriteError
from .lock import run_lock, store_lease
from .progress import Progress
from .tuning import configure
from .urls import is_local, local_path

if TYPE_CHECKING:  # the store module loads Dask, zarr and xarray: not on the command line's start-up path
    from .store import Writes

__all__ = ["Outputs", "outputs", "resolve_demo", "run"]

log = logging.getLogger(__name__)

#: A disk full, a quota, a read-only file system: the user's to fix, named in one line.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)


@dataclass(frozen=True)
class Outputs:
    """Where a job's outputs live: COGs and catalog under ``root``, Zarr stores under ``zarr_dir``."""

    root: Path
    zarr_dir: str
    cube: str

    @property
    def monthly(self) -> str:
        return f"{self.zarr_dir}/monthly.zarr"

    @property
    def catalog(self) -> Path:
        return self.root / "catalog.json"


def outputs(settings: Settings) -> Outputs:
    return Outputs(settings.output_dir, settings.zarr_dir, settings.cube_url)


def resolve_demo(settings: Settings) -> Settings:
    """For ``catalog=demo`` or ``catalog=demo_region`` without a URL: build (or reuse) that
    embedded archive and point at it."""
    if settings.catalog not in DEMO_CATALOGS or settings.catalog_url:
        return settings
    if settings.catalog == "demo_region":
        from .regiondemo import ensure_region

        archive = ensure_region()
        log.info("demo: region archive (two UTM zones, two orbits) at %s", archive.root)
    else:
        from .demo import ensure_demo

        archive = ensure_demo()
        log.info("demo: archive at %s", archive.root)
    return replace(settings, catalog_url=str(archive.items_path))


@contextmanager
def _timed(stage: str, client: object | None = None) -> Iterator[None]:
    """Log the stage's time and the peak memory so far of this process (the job's pod) and of
    each Dask worker (the Gateway's pods): the figures a pod's memory request is sized from."""
    from .cluster import peak_mb, worker_peaks_mb

    start = time.perf_counter()
    yield
    log.info("timing: %s %.1f s", stage, time.perf_counter() - start)
    workers = worker_peaks_mb(client)
    on_workers = f"; Dask workers up to {max(workers.values()):.0f} MB ({len(workers)})" if workers else ""
    log.info("memory: after %s, this process peaked at %.0f MB%s", stage, peak_mb(), on_workers)


def run(settings: Settings) -> Outputs:
    """Run the stages ``settings.stage`` names; returns the output locations.

    The run holds everything it writes for its whole duration (:func:`owned`): ``output_dir``'s
    lock, the lock of a local ``zarr_dir`` (and of a ``cube_url``'s folder outside it), a lease on
    object storage; the folders it only reads, shared. A second run that would write (or replace)
    what this one holds refuses in one line naming this run.
    """
    configure()  # GDAL's block cache, before any read or write (a library user's call too)
    if settings.stage == "plan":  # searches and plans; writes nothing, holds nothing
        plan_only(settings)
        return outputs(settings)
    with ExitStack() as held:
        for parameter, where, shared in owned(settings):
            if is_local(where):
                held.enter_context(run_lock(Path(local_path(where)), parameter=parameter, shared=shared))
            else:
                held.enter_context(store_lease(where, parameter=parameter))
        try:
            with _collector_skips_what_is_there():
                return _run(settings)
        except OSError as e:
            if e.errno not in FULL_OR_READ_ONLY:
                raise
            where = f" {e.filename}" if e.filename else ""
            raise WriteError(f"output_dir/zarr_dir: cannot write{where}: {e.strerror}") from None


@contextmanager
def _collector_skips_what_is_there() -> Iterator[None]:
    """For the run, Python's cyclic garbage collector leaves alone the objects already there (the
    libraries' modules, most of them): each of its full passes walked them all, 0.77 s of the
    year20 benchmark's run in 5 + 63 + 682 passes (0.40 s so). They are handed back after, so a
    library user's process collects them again."""
    from .store import DIRECT  # noqa: F401  (Dask, xarray and zarr: the bulk of what is frozen)

    if gc.get_freeze_count():  # a caller froze its own (a server before it forks): theirs to undo
        yield
        return
    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def owned(settings: Settings) -> list[tuple[str, str, bool]]:
    """(parameter, folder or URL, shared) of every place the run's stages write or read, once each
    (a folder both written and read is held for writing), ``output_dir`` first.

    Written: ``output_dir`` (COGs, catalog), the cube's folder (stage cube), ``zarr_dir``
    (monthly.zarr, stage composite). Read only: the cube's folder (composite) and ``zarr_dir``
    (export). On object storage, which has no shared lease, ``zarr_dir`` is leased by every stage
    and another folder only when written.
    """
    stages = STAGES[settings.stage]
    cube_folder = settings.cube_url.rstrip("/").rsplit("/", 1)[0]
    cube_parameter = _cube_parameter(settings)
    wanted = [("output_dir", str(settings.output_dir), False)]
    if "cube" in stages:
        wanted.append((cube_parameter, cube_folder, False))
    if "composite" in stages:
        wanted += [("zarr_dir", settings.zarr_dir, False), (cube_parameter, cube_folder, True)]
    if "export" in stages:
        wanted.append(("zarr_dir", settings.zarr_dir, True))
    places: dict[str, tuple[str, str, bool]] = {}
    for parameter, where, shared in wanted:
        if not is_local(where) and shared and parameter != "zarr_dir":
            continue
        key = _place_key(where)
        if key in places:
            first = places[key]
            places[key] = (first[0], first[1], first[2] and shared)
        else:
            places[key] = (parameter, where, shared and is_local(where))
    return list(places.values())


def _cube_parameter(settings: Settings) -> str:
    """The parameter that places the cube: ``zarr_dir``, unless ``cube_url`` puts it elsewhere."""
    cube_folder = settings.cube_url.rstrip("/").rsplit("/", 1)[0]
    return "zarr_dir" if _same_place(cube_folder, settings.zarr_dir) else "cube_url"


def _place_key(where: str) -> str:
    return os.path.realpath(local_path(where)) if is_local(where) else where.rstrip("/")


def _same_place(a: str, b: str) -> bool:
    return _place_key(a) == _place_key(b)


@dataclass(frozen=True)
class Unit:
    """One work unit: the whole area (untiled, ``tile`` None) or one tile, with its stores and folder."""

    tile: str | None
    cube: str
    monthly: str
    root: Path
    #: Its grid and scenes when the run searched (stage cube or all).
    geobox: Any = None
    scenes: tuple[Any, ...] = ()
    #: A tile's ``grid:code`` and (column, row) in the tile grid.
    code: str = ""
    index: tuple[int, int] | None = None

    @property
    def label(self) -> str:
        return f" tile {self.tile}" if self.tile else ""


def units_of(out: Outputs, plan: Plan | None, settings: Settings) -> tuple[list[Unit], Any]:
    """The run's work units and the tile grid (``None`` untiled): from the plan when the run
    searched, else from the tiled stores an earlier stage wrote (the cube for stage composite,
    the monthly store for stage export)."""
    from .tiled import member, read_tiled

    if plan is not None:
        if plan.tiles is None:
            return [Unit(None, out.cube, out.monthly, out.root, plan.geobox, plan.scenes)], None
        return [
            Unit(
                t.id,
                member(out.cube, t.id),
                member(out.monthly, t.id),
                out.root / t.id,
                t.geobox,
                t.scenes,
                plan.grid.code(t.index),
                t.index,
            )  # fmt: skip
            for t in plan.tiles
        ], plan.grid
    stages = STAGES[settings.stage]
    record = read_tiled(out.cube, _cube_parameter(settings)) if "composite" in stages else read_tiled(out.monthly)
    if record is None:
        return [Unit(None, out.cube, out.monthly, out.root)], None
    return [
        Unit(
            t["id"],
            member(out.cube, t["id"]),
            member(out.monthly, t["id"]),
            out.root / t["id"],
            code=record.grid.code(tuple(t["index"])),
            index=(int(t["index"][0]), int(t["index"][1])),
        )  # fmt: skip
        for t in record.tiles
    ], record.grid


def _run(settings: Settings) -> Outputs:
    from .cluster import dask_client, worker_failures
    from .reach import choose_writes
    from .request import refuse_ignored_overrides, refuse_other_tiling
    from .store import DIRECT, check_intact
    from .tiled import note_tiles, write_tiled

    started = time.perf_counter()
    out = outputs(settings)
    stages = STAGES[settings.stage]
    plan = None
    if "cube" in stages:
        with _timed("search"):
            settings = resolve_demo(settings)
            plan = _plan(settings)
    units, grid = units_of(out, plan, settings)
    if plan is not None:
        log_plan(settings, plan, units)
    else:  # the stage starts from a written store: what the user asked must be what it holds
        if grid is not None:
            where = out.cube if "composite" in stages else out.monthly
        else:
            where = units[0].cube if "composite" in stages else units[0].monthly
        refuse_other_tiling(settings, where, grid.size if grid else None, monthly="composite" not in stages)
        for unit in units:
            if "composite" in stages:
                refuse_ignored_overrides(settings, unit.cube, monthly=False)
            else:
                refuse_ignored_overrides(settings, unit.monthly, monthly=True)
    if grid is not None:
        log.info("tiles: the area is cut into %d tile(s) of up to %d x %d pixels (%s); each is a work unit, "
                 "resumed and skipped when done", len(units), grid.size, grid.size, grid.name)  # fmt: skip
    mosaics: list[Path] = []
    monthly_tiles = [{"id": u.tile, "index": list(u.index or ())} for u in units]  # the monthly store's record
    progress = Progress(len(units), "tiles", unit="tiles") if grid is not None else None
    with ExitStack() as context:
        client, writes = None, DIRECT
        if "cube" in stages or "composite" in stages or "export" in stages:
            client = context.enter_context(dask_client(settings.cluster))
            context.enter_context(worker_failures(settings.cluster, client))
            writes = choose_writes(client, _store_folders(out))
        if grid is not None and "cube" in stages:
            write_tiled(out.cube, grid, plan.tiles, overwrite=settings.overwrite, label="cube",
                        parameter=_cube_parameter(settings))  # fmt: skip
        if grid is not None and "composite" in stages:
            write_tiled(out.monthly, grid, monthly_tiles, overwrite=settings.overwrite, label="composite")
        if "export" in stages:
            _say_where_cogs_are_made(client, writes)

        def work(unit: Unit) -> list[Any]:
            """The unit's stages; the tile's exported months (untiled: none, its catalog is written)."""
            nonlocal mosaics
            done: list[Any] = []
            if "cube" in stages:
                _cube(settings, unit, plan, client, writes)
            if "composite" in stages:
                from .composite import build_monthly

                if "cube" not in stages:  # written by an earlier run: verified before it is read
                    check_intact(
                        unit.cube, _cube_parameter(settings), "run stage=cube (the same request) to write it again"
                    )
                with _timed(f"composite{unit.label}", client):
                    build_monthly(
                        unit.cube,
                        unit.monthly,
                        statistics=settings.statistics,
                        provenance=settings.provenance,
                        percentile_method=settings.percentile_method,
                        overwrite=settings.overwrite,
                        writes=writes,
                        label=f"composite{unit.label}",
                        cube_parameter=_cube_parameter(settings),
                    )
            if "export" in stages:
                if "composite" not in stages:
                    check_intact(unit.monthly, "zarr_dir", "run stage=mosaic (the same request) to compute it again")
                with _timed(f"export{unit.label}"):
                    cogs = _cluster_cogs(client, unit.monthly, writes)
                    if grid is None:
                        from .export import export_months

                        mosaics = export_months(unit.monthly, unit.root, cluster=cogs)
                    else:
                        done = _export_tile(unit, cogs)
            if progress is not None:
                progress.advance(name=unit.tile)
            return done

        in_flight = tiles_in_flight(client, len(units))
        if in_flight > 1:
            log.info("tiles: %d tile(s) at a time on the cluster's workers", in_flight)
        exported = [t for part in _each(work, units, in_flight) for t in part]
        if grid is not None and "cube" in stages:  # every tile written: the records list this request's
            note_tiles(out.cube, grid, plan.tiles)
        if grid is not None and "composite" in stages:
            note_tiles(out.monthly, grid, monthly_tiles)
    shares: dict[Path, float] = {}
    if grid is not None and "export" in stages:
        from .collection import assemble_collection

        if not exported:
            raise OutputError("no tile has a month with a clear pixel: nothing to export (try a longer period or "
                              "another aoi)")  # fmt: skip
        with _timed("collection"):
            shares = assemble_collection(out.root, exported, grid)
            mosaics = list(shares)
    for line in summary(out, mosaics, time.perf_counter() - started, shares=shares or None):
        log.info("%s", line)
    log.info("done: outputs in %s", out.root)  # the last line of a run
    return out


def plan_only(settings: Settings) -> dict:
    """``stage=plan``: search, cut into tiles, log the plan and print it on stdout as one JSON
    object; nothing is written. Returns the JSON object."""
    with _timed("search"):
        settings = resolve_demo(settings)
        plan = _plan(settings)
    units, _ = units_of(outputs(settings), plan, settings)
    record = log_plan(settings, plan, units).record()
    print(json.dumps(record), flush=True)
    log.info("done: planned only (stage=plan), nothing written")
    return record


def log_plan(settings: Settings, plan: Plan, units: list[Unit]):
    """Log the plan's figures for ``units`` (refused when they exceed the machine), and the
    period's months that no scene falls in (they get no mosaic); returns the figures."""
    from .plan import months_without_scenes

    figures = figures_of(settings, plan, units)
    for line in figures.lines():
        log.info("%s", line)
    assert settings.start_date and settings.end_date
    empty = months_without_scenes(settings.start_date, settings.end_date, [s.day for u in units for s in u.scenes])
    if empty:
        log.info("plan: no scene in %s of the period: no mosaic for %s", ", ".join(empty),
                 "it" if len(empty) == 1 else "them")  # fmt: skip
    return figures


def figures_of(settings: Settings, plan: Plan, units: list[Unit]):
    """The plan's figures for ``units``; :class:`ConfigError` when they exceed this machine (or the
    cluster's workers), before any read."""
    from .cluster import gateway_requested
    from .clusterspec import local_layout, local_threads, remote_read_threads
    from .plan import check_feasible, estimate, machine_memory_mb, months_of
    from .statistics import composite

    spec = settings.cluster
    layers = composite(tuple(plan.bands), settings.statistics, settings.provenance, settings.percentile_method).layers()
    on_gateway = gateway_requested(spec)
    cube_threads = None
    layout = local_layout(spec)
    if on_gateway:
        threads, local = int(spec.worker_cores or 1), None
    elif layout is not None:  # local worker processes, as cluster._local starts them
        workers, threads = layout
        local = threads * workers
    else:  # this process's threads; remote assets get more for the cube (cluster.waiting_on_network)
        threads = local = local_threads(spec)
        if not all(is_local(g.href) for u in units for s in u.scenes for g in s.assets.values()):
            cube_threads = remote_read_threads(spec)
    assert settings.start_date and settings.end_date
    figures = estimate(
        [(u.geobox, u.scenes) for u in units],
        band_keys=list(plan.bands.values()),
        scl_key=plan.scl,
        n_layers=sum(len(layer.variables) for layer in layers),
        months=len(months_of(s.day for u in units for s in u.scenes)),  # those with a scene
        chunk_size=settings.chunk_size,
        threads=threads,
        local_threads=local,
        cube_threads=cube_threads,
    )
    check_feasible(figures, process_limit_mb=machine_memory_mb(), worker_limit_mb=_worker_limit_mb(spec))
    return figures


def _worker_limit_mb(spec: Any) -> float | None:
    """A Gateway worker's memory (``cluster.worker_memory``, e.g. ``4G``), in MB, if set."""
    from dask.utils import parse_bytes

    text = getattr(spec, "worker_memory", None)
    return parse_bytes(text) / 1e6 if text else None


def _cube(settings: Settings, unit: Unit, plan: Plan, client: Any, writes: Writes) -> None:
    """The unit's cube: its scenes on its grid."""
    from .cluster import waiting_on_network
    from .cube import CubeSpec, build_cube
    from .read import Access
    from .request import asked
    from .s2 import CloudMask
    from .signing import signer

    spec = CubeSpec(
        geobox=unit.geobox,
        bands=plan.bands,
        scl_key=plan.scl,
        mask=CloudMask(settings.mask_classes, settings.mask_dilation),
        resampling=settings.resampling,
        chunk_size=settings.chunk_size,
        aoi_wkt=settings.aoi_wkt,
    )
    remote = not all(is_local(grid.href) for scene in unit.scenes for grid in scene.assets.values())
    with _timed(f"cube{unit.label}", client), waiting_on_network(settings.cluster, client, remote):
        build_cube(
            unit.scenes,
            unit.cube,
            spec,
            overwrite=settings.overwrite,
            access=Access(signer(settings.sign), settings.gdal),
            on_read_error=settings.on_read_error,
            writes=writes,
            label=f"cube{unit.label}",
            request=asked(settings),
            parameter=_cube_parameter(settings),
        )


def _cluster_cogs(client: Any, monthly: str, writes: Writes) -> Any:
    """The export's COGs made on the cluster's workers (None: in this process, no cluster)."""
    if client is None:
        return None
    from .export import ClusterCogs

    return ClusterCogs(client, monthly, relay=writes.relayed)


def _say_where_cogs_are_made(client: Any, writes: Writes) -> None:
    if client is None:
        from .export import months_at_once_here

        log.info("export: COGs made in this process (%d month(s) at a time)", months_at_once_here())
        return
    how = "this process sends each month's layer and writes the files" if writes.relayed else (
        "they read the monthly store, this process writes the files")  # fmt: skip
    log.info("export: COGs made on the cluster's Dask workers (%s)", how)


def _export_tile(unit: Unit, cogs: Any = None) -> list[Any]:
    """The tile's COGs (its items are made with the Collection); a tile without any clear month has none."""
    from .collection import TileOutputs
    from .export import write_months

    written = write_months(unit.monthly, unit.root, label=unit.label, cluster=cogs)
    if written is None:
        log.info("export: tile %s has no month with a clear pixel: no item", unit.tile)
        return []
    return [TileOutputs(unit.tile, unit.code, written)]


def tiles_in_flight(client: Any, n_units: int) -> int:
    """How many tiles run side by side: one on the local threaded scheduler (its threads are the
    machine's, one tile keeps them busy), else as many as the cluster's threads can keep busy."""
    from .tuning import MAX_TILES_IN_FLIGHT, TASKS_PER_TILE

    if client is None or n_units < 2:
        return 1
    threads = sum(client.nthreads().values())
    return max(1, min(n_units, MAX_TILES_IN_FLIGHT, threads // TASKS_PER_TILE))


def _each(work: Any, units: list[Unit], in_flight: int) -> list[Any]:
    """``work`` of every unit, ``in_flight`` at a time, results in the units' order; the first
    failure (or Ctrl-C) stops the run: no tile not yet started starts, and the tiles still running
    fail when the run closes its Dask client."""
    if in_flight == 1:
        return [work(u) for u in units]
    from concurrent.futures import FIRST_EXCEPTION, ThreadPoolExecutor, wait

    pool = ThreadPoolExecutor(in_flight, thread_name_prefix="tile")
    futures = [pool.submit(work, u) for u in units]
    try:
        wait(futures, return_when=FIRST_EXCEPTION)
        failed = [f for f in futures if f.done() and f.exception() is not None]
        if failed:
            raise failed[0].exception()  # type: ignore[misc]
        return [f.result() for f in futures]
    finally:  # a failure, Ctrl-C: no tile not yet started starts; the running ones end with the client
        pool.shutdown(wait=False, cancel_futures=True)


def summary(out: Outputs, mosaics: list[Path], seconds: float, *, shares: dict[Path, float] | None = None) -> list[str]:
    """The closing lines of a run: each month written with its clear share (its STAC item's
    ``cubemosaic:clear_share``; for a tiled run, ``shares``: each month VRT's over the whole area),
    the total time, the overview picture and the catalog (the Collection of a tiled run)."""
    from .quicklook import clear_percent

    lines = []
    for path in mosaics:
        try:
            if shares is not None:
                share = shares[path]
            else:
                share = json.loads(path.with_suffix(".json").read_text())["properties"]["cubemosaic:clear_share"]
            clear = f"clear {clear_percent(float(share))}"
        except (OSError, ValueError, KeyError):
            clear = "clear share unknown"
        name = path.stem if shares is not None else path.parent.name
        lines.append(f"summary: {name} {clear} ({path})")
    if mosaics:
        lines.append(f"summary: {len(mosaics)} month(s); run took {seconds:.1f} s")  # written now or resumed
        lines.append(f"summary: overview picture {out.root / 'overview.png'}")
        lines.append(f"summary: catalog {out.root / 'collection.json' if shares is not None else out.catalog}")
    else:
        lines.append(f"summary: run took {seconds:.1f} s")
    return lines


def _store_folders(out: Outputs) -> list[tuple[str, str]]:
    """(parameter, folder) of every place the Dask workers read or write Zarr."""
    folders = [("zarr_dir", out.zarr_dir)]
    cube_parent = out.cube.rstrip("/").rsplit("/", 1)[0]
    if cube_parent.rstrip("/") != out.zarr_dir.rstrip("/"):
        folders.append(("cube_url", cube_parent))
    return folders


@dataclass(frozen=True)
class Plan:
    """What the search fixed: the scenes (parsed once), the bands and the SCL as asset keys, the grid."""

    scenes: tuple[Any, ...]
    bands: dict[str, str]
    scl: str
    geobox: Any
    #: The tiles (``None``: the grid fits one unit, untiled) and the grid they are cut on.
    tiles: Any = None
    grid: Any = None


def _plan(settings: Settings) -> Plan:
    """Search the catalog and fix the bands and the output grid."""
    import shapely
    from odc.geo.geom import Geometry

    from .catalog import SearchRequest, resolve_bands, search
    from .config import _extent_m, check_grid_size
    from .cube import output_geobox
    from .s2 import dominant_crs
    from .scenes import parse_scene
    from .tiling import TileGrid, layout

    assert settings.catalog_url is not None
    assert settings.start_date and settings.end_date and settings.aoi, "validated by to_settings for stage=cube/all"
    request = SearchRequest(
        collection=settings.collection,
        bbox=settings.aoi,
        geometry=settings.aoi_wkt,
        start_date=settings.start_date,
        end_date=settings.end_date,
        max_cloud_cover=settings.max_cloud_cover,
        max_items=settings.max_items,
    )
    items = search(settings.catalog_url, request)
    bands, scl = resolve_bands(items, settings.bands)
    scenes = tuple(parse_scene(item) for item in items)
    crs = settings.crs or dominant_crs(s.crs for s in scenes)
    geobox = output_geobox(settings.aoi, crs, settings.resolution)
    check_grid_size(_extent_m(settings.aoi), settings.resolution, tuple(geobox.shape))  # before any read
    aoi = Geometry(shapely.from_wkt(settings.aoi_wkt), "EPSG:4326") if settings.aoi_wkt else None
    tiles = layout(geobox, scenes, settings.tile_size, aoi)
    if tiles is None:
        return Plan(scenes, dict(bands), scl, geobox)
    if not tiles:
        raise OutputError("aoi: no scene found meets the area (their footprints lie outside it)")
    return Plan(scenes, dict(bands), scl, geobox, tiles, TileGrid(str(geobox.crs), abs(geobox.resolution.x),
                                                                  settings.tile_size))  # fmt: skip
