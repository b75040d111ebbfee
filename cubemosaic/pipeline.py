"""The main job: search -> cube -> composite -> export, or any one stage of it."""

from __future__ import annotations

import errno
import json
import logging
import os
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .config import Settings
from .errors import WriteError
from .lock import run_lock, store_lease
from .urls import is_local, local_path

__all__ = ["Outputs", "outputs", "resolve_demo", "run"]

log = logging.getLogger(__name__)

#: A disk full, a quota, a read-only file system: the user's to fix, named in one line.
FULL_OR_READ_ONLY = (errno.ENOSPC, errno.EDQUOT, errno.EROFS)

STAGES = {
    "cube": ("cube",),
    "composite": ("composite",),
    "export": ("export",),
    "mosaic": ("composite", "export"),
    "all": ("cube", "composite", "export"),
}


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
    """For ``catalog=demo`` without a URL: build (or reuse) the demo archive and point at it."""
    if settings.catalog != "demo" or settings.catalog_url:
        return settings
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
    with ExitStack() as held:
        for parameter, where, shared in owned(settings):
            if is_local(where):
                held.enter_context(run_lock(Path(local_path(where)), parameter=parameter, shared=shared))
            else:
                held.enter_context(store_lease(where))
        try:
            return _run(settings)
        except OSError as e:
            if e.errno not in FULL_OR_READ_ONLY:
                raise
            where = f" {e.filename}" if e.filename else ""
            raise WriteError(f"output_dir/zarr_dir: cannot write{where}: {e.strerror}") from None


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


def _run(settings: Settings) -> Outputs:
    from .cluster import dask_client, waiting_on_network, worker_failures
    from .reach import choose_relay
    from .store import check_intact

    started = time.perf_counter()
    out = outputs(settings)
    stages = STAGES[settings.stage]
    mosaics: list[Path] = []
    if "cube" in stages:
        with _timed("search"):
            settings = resolve_demo(settings)
            plan = _plan(settings)
    if "cube" in stages or "composite" in stages:
        with dask_client(settings.cluster) as client, worker_failures(settings.cluster, client):
            relay = choose_relay(client, _store_folders(out))
            if "cube" in stages:
                from .cube import CubeSpec, build_cube
                from .read import Access
                from .s2 import CloudMask
                from .signing import signer

                spec = CubeSpec(
                    geobox=plan.geobox,
                    bands=plan.bands,
                    scl_key=plan.scl,
                    mask=CloudMask(settings.mask_classes, settings.mask_dilation),
                    resampling=settings.resampling,
                    chunk_size=settings.chunk_size,
                    aoi_wkt=settings.aoi_wkt,
                )
                remote = not all(is_local(grid.href) for scene in plan.scenes for grid in scene.assets.values())
                with _timed("cube", client), waiting_on_network(settings.cluster, client, remote):
                    build_cube(
                        plan.scenes,
                        out.cube,
                        spec,
                        overwrite=settings.overwrite,
                        access=Access(signer(settings.sign), settings.gdal),
                        on_read_error=settings.on_read_error,
                        relay=relay,
                    )
            if "composite" in stages:
                from .composite import build_monthly

                if "cube" not in stages:  # written by an earlier run: verified before it is read
                    check_intact(
                        out.cube, _cube_parameter(settings), "run stage=cube (the same request) to write it again"
                    )
                with _timed("composite", client):
                    build_monthly(
                        out.cube,
                        out.monthly,
                        statistics=settings.statistics,
                        provenance=settings.provenance,
                        percentile_method=settings.percentile_method,
                        overwrite=settings.overwrite,
                        relay=relay,
                    )
    if "export" in stages:
        from .export import export_months

        if "composite" not in stages:
            check_intact(out.monthly, "zarr_dir", "run stage=mosaic (the same request) to compute it again")
        with _timed("export"):
            mosaics = export_months(out.monthly, out.root)
    for line in summary(out, mosaics, time.perf_counter() - started):
        log.info("%s", line)
    log.info("done: outputs in %s", out.root)  # the last line of a run
    return out


def summary(out: Outputs, mosaics: list[Path], seconds: float) -> list[str]:
    """The closing lines of a run: each month written with its clear share (its STAC item's
    ``cubemosaic:clear_share``), the total time, the overview picture and the catalog."""
    from .quicklook import clear_percent

    lines = []
    for path in mosaics:
        item = path.with_suffix(".json")
        try:
            share = json.loads(item.read_text())["properties"]["cubemosaic:clear_share"]
            clear = f"clear {clear_percent(float(share))}"
        except (OSError, ValueError, KeyError):
            clear = "clear share unknown"
        lines.append(f"summary: {path.parent.name} {clear} ({path})")
    if mosaics:
        lines.append(f"summary: {len(mosaics)} month(s) written in {seconds:.1f} s")
        lines.append(f"summary: overview picture {out.root / 'overview.png'}")
        lines.append(f"summary: catalog {out.catalog}")
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


def _plan(settings: Settings) -> Plan:
    """Search the catalog and fix the bands and the output grid."""
    from .catalog import SearchRequest, resolve_bands, search
    from .config import _extent_m, check_grid_size
    from .cube import output_geobox
    from .s2 import dominant_crs
    from .scenes import parse_scene

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
    return Plan(scenes, dict(bands), scl, geobox)
