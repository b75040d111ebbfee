"""cubemosaic: Sentinel-2 L2A monthly cloud-free median mosaics as an xarray/Zarr pipeline.

The stages are plain functions, callable from Python or a notebook::

    from cubemosaic import SearchRequest, search, resolve_bands, build_cube, build_monthly, export_months

Heavy libraries (odc-loader, dask, rasterio) are imported only when a stage runs, and importing
cubemosaic sets nothing and starts nothing: :func:`configure` applies the process-wide settings
(GDAL's block cache, :mod:`cubemosaic.tuning`); the command line and every asset read call it,
a library user who writes COGs before reading anything calls it first.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

__all__ = [
    "SearchRequest",
    "Settings",
    "build_cube",
    "build_monthly",
    "configure",
    "dask_client",
    "ensure_demo",
    "export_months",
    "resolve_bands",
    "run",
    "search",
]

_WHERE = {
    "SearchRequest": "catalog",
    "search": "catalog",
    "resolve_bands": "catalog",
    "build_cube": "cube",
    "build_monthly": "composite",
    "configure": "tuning",
    "export_months": "export",
    "dask_client": "cluster",
    "ensure_demo": "demo",
    "Settings": "config",
    "run": "pipeline",
}


def __getattr__(name: str) -> Any:
    # The stages' modules are imported when first asked for (``from cubemosaic import build_cube``),
    # not with the package: ``import cubemosaic`` (a worker unpickling a task, ``--help``) stays light.
    if name in _WHERE:
        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'cubemosaic' has no attribute {name!r}")
