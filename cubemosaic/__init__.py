"""cubemosaic: Sentinel-2 L2A monthly cloud-free median mosaics as an xarray/Zarr pipeline.

The stages are plain functions, callable from Python or a notebook::

    from cubemosaic import SearchRequest, search, resolve_bands, build_cube, build_monthly, export_months

Heavy libraries (odc-loader, dask, rasterio) are imported only when a stage runs.
"""

from __future__ import annotations

import os
from typing import Any

__version__ = "0.1.0"

from .tuning import GDAL_CACHE_MB

os.environ.setdefault("GDAL_CACHEMAX", str(GDAL_CACHE_MB))

__all__ = [
    "SearchRequest",
    "Settings",
    "build_cube",
    "build_monthly",
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
    "export_months": "export",
    "dask_client": "cluster",
    "ensure_demo": "demo",
    "Settings": "config",
    "run": "pipeline",
}


def __getattr__(name: str) -> Any:
    if name in _WHERE:
        import importlib

        return getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
    raise AttributeError(f"module 'cubemosaic' has no attribute {name!r}")
