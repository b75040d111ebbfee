"""What a stage that starts from a written store would ignore: the user's overrides of what shaped it.

``stage=composite``, ``mosaic`` and ``export`` read a store an earlier run wrote (the cube, or the
monthly store) and make what that store was made for. An override the user gave on the command
line for a key that shaped it (``resolution=20`` on a cube made at 60 m, ``statistic=[p25]`` on a
monthly store of medians, another period or area) would be ignored, and the run would exit 0 with
the other request's outputs. Each such key is refused in one line that names it, what was asked
and what the store holds, before any cluster starts or anything is written. Keys the user did not
give (the CWL's second step gives only the composite's) are not compared: a stage run alone takes
them from the store. A library caller's :class:`Settings` give none (``given`` is empty).

The grid, bands and mask come from the store's signature; the period, the area and the search
filters from the request the cube stage noted in it (:func:`asked`, :func:`store.note_request`);
a cube written before that note existed is compared by its days only.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Mapping, Sequence
from typing import Any

from .config import Settings
from .errors import ConfigError
from .statistics import PROVENANCE

#: The keys that shape the cube, as the command line names them.
CUBE_KEYS = ("resolution", "crs", "bands", "mask_classes", "mask_dilation", "resampling")
#: The keys of the request the cube stage notes in the store (the period, the area, the search).
REQUEST_KEYS = ("start_date", "end_date", "aoi", "max_cloud_cover", "max_items", "collection")
#: The keys that shape the monthly store beyond its cube.
MONTHLY_KEYS = ("statistic", "percentile_method", "provenance")

Difference = tuple[str, str, str]  # (key, asked, made)


def asked(settings: Settings) -> dict[str, Any]:
    """The request the cube stage notes in its store, by the command line's keys."""
    return {
        "start_date": str(settings.start_date),
        "end_date": str(settings.end_date),
        "aoi": settings.aoi_wkt or (list(settings.aoi) if settings.aoi else None),
        "max_cloud_cover": settings.max_cloud_cover,
        "max_items": settings.max_items,
        "collection": settings.collection,
    }


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, Sequence) and isinstance(b, Sequence) and not isinstance(a, str) and not isinstance(b, str):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, (int, float)) and isinstance(b, (int, float)):
        return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-12)
    return a == b


def _text(value: Any) -> str:
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(map(_text, value)) + "]"
    if isinstance(value, float):
        return f"{value:g}"
    return "none" if value is None else str(value)


def _request_differences(settings: Settings, noted: Mapping[str, Any] | None, days: list[dt.date]):
    given = settings.given
    found: list[Difference] = []
    if noted:
        wanted = asked(settings)
        for key in REQUEST_KEYS:
            if key in given and key in noted and not _same(wanted[key], noted[key]):
                found.append((key, _text(wanted[key]), _text(noted[key])))
        if (
            "catalog.collection" in given
            and "collection" not in given
            and wanted["collection"] != noted.get("collection")
        ):
            found.append(("catalog.collection", _text(wanted["collection"]), _text(noted.get("collection"))))
    elif days:  # a cube from before the note: its days must lie in the period asked
        slack = dt.timedelta(days=1)  # a solar day (local date) can be a day off the UTC dates searched
        span = f"days {days[0]} to {days[-1]}"
        if "start_date" in given and settings.start_date and days[0] < settings.start_date - slack:
            found.append(("start_date", str(settings.start_date), span))
        if "end_date" in given and settings.end_date and days[-1] > settings.end_date + slack:
            found.append(("end_date", str(settings.end_date), span))
    return found


def _cube_differences(settings: Settings, signature: Mapping[str, Any], noted: Mapping[str, Any] | None):
    """(key, asked, made) for each given key that differs from the cube's signature and request."""
    given = settings.given
    found: list[Difference] = []
    transform = signature.get("transform") or []
    if "resolution" in given and transform:
        made = abs(float(transform[0]))
        if not math.isclose(made, float(settings.resolution), rel_tol=1e-9):
            found.append(("resolution", f"{settings.resolution:g}", f"{made:g}"))
    if "crs" in given and settings.crs and signature.get("crs"):
        from odc.geo import CRS

        if CRS(settings.crs) != CRS(signature["crs"]):
            found.append(("crs", settings.crs, str(signature["crs"])))
    bands = list(signature.get("bands") or ())  # name -> asset key: the names, in order
    if "bands" in given and bands and [b.lower() for b in settings.bands] != [b.lower() for b in bands]:
        found.append(("bands", ",".join(settings.bands), ",".join(bands)))
    made_classes = list(signature.get("mask_classes") or ())
    if "mask_classes" in given and made_classes and sorted(settings.mask_classes) != sorted(made_classes):
        found.append(("mask_classes", ",".join(map(str, settings.mask_classes)), ",".join(map(str, made_classes))))
    made_dilation = float(signature.get("mask_dilation") or 0.0)
    if "mask_dilation" in given and float(settings.mask_dilation) != made_dilation:
        found.append(("mask_dilation", f"{settings.mask_dilation:g}", f"{made_dilation:g}"))
    if "resampling" in given and signature.get("resampling") and settings.resampling != signature["resampling"]:
        found.append(("resampling", settings.resampling, str(signature["resampling"])))
    days = sorted(dt.date.fromisoformat(d[0]) for d in signature.get("days") or ())
    return found + _request_differences(settings, noted, days)


def _monthly_differences(settings: Settings, record: Mapping[str, Any] | None) -> list[Difference]:
    """(key, asked, made) for each given key that differs from the monthly store's composite
    record (a store without one holds the median: it was written before there were statistics)."""
    given = settings.given
    statistics = list((record or {}).get("statistics") or ["median"])
    layers = [layer.get("key") for layer in (record or {}).get("layers") or ()]
    found: list[Difference] = []
    if "statistic" in given and list(settings.statistics) != statistics:
        found.append(("statistic", ",".join(settings.statistics), ",".join(statistics)))
    method = (record or {}).get("percentile_method")
    if "percentile_method" in given and method and settings.percentile_method != method:
        found.append(("percentile_method", settings.percentile_method, method))
    provenance = [k for k in layers if k in PROVENANCE]
    if "provenance" in given and sorted(settings.provenance) != sorted(provenance):
        found.append(("provenance", ",".join(settings.provenance) or "none", ",".join(provenance) or "none"))
    return found


def _refuse(found: list[Difference], what: str, path: str) -> None:
    if not found:
        return
    key, wanted, made = found[0]
    more = f" (and {', '.join(k for k, _, _ in found[1:])})" if len(found) > 1 else ""
    # The composite's keys are made again by stage=mosaic from the same cube; the cube's by a whole run.
    again = "stage=mosaic" if all(k in MONTHLY_KEYS for k, _, _ in found) else "the whole job (stage=all)"
    raise ConfigError(
        key,
        f"{wanted} was asked but {what} {path} was made for {made}{more}; a stage run alone makes what its "
        f"store was made for: drop the override, or run {again} for this request, into another output_dir "
        "or with overwrite=true",
    )


def refuse_ignored_overrides(settings: Settings, path: str, *, monthly: bool) -> None:
    """:class:`ConfigError` naming the first given key that differs from what shaped the store at
    ``path``: the cube, or with ``monthly`` the monthly store (its cube's signature and request,
    then its composite). Nothing given that shapes a store, or no store there (the stage's own
    check says so): nothing is compared."""
    keys = CUBE_KEYS + REQUEST_KEYS + ("catalog.collection",) + (MONTHLY_KEYS if monthly else ())
    if not settings.given & set(keys):
        return
    import json

    from . import store

    attrs = store.record_or_none(path)
    if attrs is None:
        return
    signature = attrs.get("signature") or {}
    noted = attrs.get("request")
    if monthly:
        with store.quiet():
            record = store.open_group(path, "r").attrs.get("composite")
        found = _cube_differences(settings, signature.get("cube") or {}, noted)
        found += _monthly_differences(settings, json.loads(record) if isinstance(record, str) else record)
        _refuse(found, "the monthly store", path)
    else:
        _refuse(_cube_differences(settings, signature, noted), "the cube", path)


def refuse_other_tiling(settings: Settings, path: str, tile_size: int | None, *, monthly: bool) -> None:
    """:class:`ConfigError` naming ``tile_size`` when it is given and the store at ``path`` (a tiled
    store cut into tiles of ``tile_size`` px, or, with ``None``, an untiled one) was cut otherwise:
    a stage run alone works on the store's own tiles."""
    if "tile_size" not in settings.given:
        return
    what = "the monthly store" if monthly else "the cube"
    if tile_size is not None:
        if settings.tile_size != tile_size:
            _refuse([("tile_size", str(settings.tile_size), f"tiles of {tile_size} px")], what, path)
        return
    from . import store

    attrs = store.record_or_none(path) or {}
    signature = attrs.get("signature") or {}
    shape = ((signature.get("cube") if monthly else signature) or {}).get("shape")
    if shape and max(shape) > settings.tile_size:  # this tile_size would cut its grid into tiles
        height, width = shape
        _refuse([("tile_size", str(settings.tile_size), f"one untiled grid of {width} x {height} px")], what, path)
