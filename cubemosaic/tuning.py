"""The numbers that set how fast a run goes and how much memory it takes, in one place, each with
the measurement behind it (or, where none was recorded, what it was chosen for); and
:func:`configure`, the explicit step that applies the process-wide ones.

The modules that use a constant import it from here; a change of one is a change of this file,
to be made with a new measurement (``benchmarks/``). Nothing is set when cubemosaic is imported:
:func:`configure` does it, as odc-loader's ``configure_rio`` does for its reads. It is called by
the command line before anything else and by every read of an asset (on whichever Dask worker
runs it) before GDAL is used; a library user who writes COGs without reading first (the export
alone) calls ``cubemosaic.configure()`` before touching GDAL.
"""

from __future__ import annotations

import os
import threading

__all__ = [
    "DAYS_PER_BATCH",
    "GDAL_CACHE_MB",
    "IO_THREADS",
    "MAX_IN_FLIGHT",
    "MONTHS_PER_BATCH",
    "NETWORK_MAX",
    "REMOTE_THREADS_PER_CORE",
    "STRIP_PIXELS",
    "STRIP_VALUES",
    "configure",
    "release_memory",
]

# --------------------------------------------------------------------------- GDAL (every process)
#: GDAL's block cache in MB, unless the user set one: GDAL's default (5% of the RAM) lets the
#: export cache as much of a month as fits, so memory grew with the grid (155 MB at 1000 px,
#: 961 MB at 8000 px measured, with GDAL's COG driver); 128 MB keeps it flat (peak 343 MB at
#: 4000 px, 377 MB at 8000 px; ``test_export`` holds it) and was not slower. Set as the
#: environment variable before GDAL first reads it (:func:`configure`): the config option set
#: later (``rasterio.Env(GDAL_CACHEMAX=...)``) was measured to make the COG driver 2.5x slower.
GDAL_CACHE_MB = 128

# --------------------------------------------------------------------------- reads (read, cluster)
#: Reads in flight per process (cubemosaic.read's I/O pool: every scene's SCL of a day at once,
#: then each needed scene's bands): I/O waits on the network, not on a core, so more threads than
#: cores; each holds one asset's window of one block (uint16), so memory stays bounded. No
#: measurement of the number itself was recorded.
IO_THREADS = 12
#: Dask threads per core for the cube stage of a local run whose assets are remote: its tasks wait
#: on the network, not on a core. Measured over HTTP with 40 ms before each response (the
#: benchmark's http20): 6 threads on 2 cores took the cube stage from 17.8 to 13.7 s. The
#: composite, bound by its cores, keeps one thread a core.
REMOTE_THREADS_PER_CORE = 3
#: Native pixels (per band) an averaging strip of ``resampling=average`` holds at once: ~8 MB of
#: uint16, plus its sums. A memory bound (whatever the shrink), not a timing.
STRIP_PIXELS = 4_000_000

# --------------------------------------------------------------------------- batches (cube, composite, relay)
#: Solar days computed together (one dask.array.store): enough to keep every thread busy; an
#: interrupted run resumes after the last batch. No measurement of the number itself was recorded.
DAYS_PER_BATCH = 16
#: Months computed together (one dask.array.store). No measurement of the number was recorded.
MONTHS_PER_BATCH = 4
#: Upper bound of blocks in flight through the relay (each a few tens of MB at the default chunk
#: size; the window is twice the workers' threads, at least 2, at most this): memory on both
#: sides stays that of a few blocks. No measurement of the number was recorded.
MAX_IN_FLIGHT = 8

# --------------------------------------------------------------------------- the median (kernels)
#: Longest time axis sorted with a sorting network; longer months use bottleneck / numpy. On
#: month-long axes the network on uint16 beats bottleneck's ``nanmedian`` on float32 (measured:
#: ~2x at 5 scenes, ~3x at 12, for 1690 x 1618 blocks).
NETWORK_MAX = 24
#: Values (time x pixels) in one strip of the sorting network: a few hundred kB per array, so the
#: network stays in the CPU's cache: 1.9-2.1x faster than whole-block arrays on 1954 x 1980
#: blocks (66 against 125 ms at 4 scenes, 165 against 344 ms at 12).
STRIP_VALUES = 1 << 18

# --------------------------------------------------------------------------- export, tiles
#: Months whose COGs are made at once in this process (threads: GDAL's compression releases the
#: GIL), at most one a core. On a cluster every month of a tile goes to the workers at once.
EXPORT_THREADS = 2
#: Dask tasks (block writes of a batch of days) a tile gives a cluster at once: tiles run side by
#: side until the cluster's threads have this many each (a 2 x 2-shard tile's batch of 16 days is
#: 64 tasks). No measurement of the number was recorded.
TASKS_PER_TILE = 64
#: At most this many tiles in flight in the job's process (each holds its graph and, relayed, its
#: blocks). No measurement of the number was recorded.
MAX_TILES_IN_FLIGHT = 8

#: glibc malloc arenas per process: glibc gives each thread that allocates at once an arena of its
#: own (up to 8 a core), and freed memory stays in them. Measured on a run cut into 20 tiles (the
#: benchmark's tiles20 larger region at 20 m): this process's peak grew tile after tile to 529 MB
#: with glibc's default, to 337 MB with 2 arenas (``MALLOC_ARENA_MAX=2``), flat after the first
#: tiles. Set by :func:`configure` through ``mallopt`` (the environment variable is read only at
#: a process's start), unless the environment sets ``MALLOC_ARENA_MAX``.
MALLOC_ARENAS = 2
#: ``mallopt``'s parameter number for the arena limit (glibc's ``M_ARENA_MAX``).
_M_ARENA_MAX = -8

_configured = threading.Lock()
_done: list[bool] = []


def configure() -> None:
    """Apply the process-wide settings: GDAL's block cache (:data:`GDAL_CACHE_MB`, unless the
    environment sets ``GDAL_CACHEMAX``) and glibc's malloc arenas (:data:`MALLOC_ARENAS`). Idempotent and cheap after the first call; it must run
    before GDAL's first read to take effect."""
    if _done:
        return
    with _configured:
        if not _done:
            os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))
            if "MALLOC_ARENA_MAX" not in os.environ:
                _limit_arenas(MALLOC_ARENAS)
            _done.append(True)


def _libc():
    """The C library's functions as this process already has them loaded (``CDLL(None)``: the
    program's own symbols), or None. Not ``ctypes.util.find_library``, which runs
    ``/sbin/ldconfig -p`` in a child process: forked from a process of several hundred MB, the
    child showed its parent's resident size, so the process tree's measured peak doubled
    (fast10's 1308 MB against 646-663 MB), and it cost ~5 ms each call."""
    import ctypes

    try:
        return ctypes.CDLL(None)
    except OSError:
        return None


def _limit_arenas(n: int) -> None:
    """At most ``n`` glibc malloc arenas from now on (nothing elsewhere: musl, macOS)."""
    try:
        _libc().mallopt(_M_ARENA_MAX, n)
    except AttributeError:  # not glibc
        pass


def release_memory() -> None:
    """Hand freed heap back to the OS after a batch (glibc keeps it otherwise), so the resident
    size of a long run stays that of one batch. A no-op where glibc is not the allocator."""
    try:
        _libc().malloc_trim(0)
    except AttributeError:  # not glibc (or no C library at hand)
        pass
