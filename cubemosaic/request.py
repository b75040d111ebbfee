"""What a stage that starts from a written store would ignore: the user's overrides of what shaped it.

``stage=composite``, ``mosaic`` and ``export`` read a store an earlier run wrote (the cube, or the
monthly store) and make what that store was made for. An override the user gave on the command
line for a key that shaped it (``resolution=20`` on a cube made at 60 m, ``statistic=[p25]`` on a
monthly store of medians) would be ignored, and the run would exit 0 with the other request's
outputs. Each such key is refused in one line that names it, what was asked and what the store
holds. Keys the user did not give (the CWL's second step gives only the composite's) are not
compared: a stage run alone takes them from the store.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping
from typing import Any

from .config import Settings
from .errors import ConfigError

#: The keys that shape the cube, as the command line names them.
CUBE_KEYS = ("resolution", "crs", "bands", "mask_classes", "mask_dilation", "resampling", "start_date", "end_date")
#: The keys that shape the monthly store beyond its cube.
MONTHLY_KEYS = ("statistic", "percentile_method", "provenance")
#: Provenance layers by their key in the monthly store's record.
PROVENANCE = ("first_day", "last_day", "iqr")


def _remedy(stage: str) -> str:
    return (
        f"stage={stage} makes what the store was made for: drop the override, or run the whole job "
        "(stage=all) for this request, into another output_dir or with overwrite=true"
    )


def _cube_differences(settings: Settings, signature: Mapping[str, Any]) -> list[tuple[str, str, str]]:
    """(key, asked, made) for each given key that differs from the cube's signature."""
    given = settings.given
    found: list[tuple[str, str, str]] = []
    transform = signature.get("transform") or []
    if "resolution" in given and transform:
        made = abs(float(transform[0]))
        if abs(made - float(settings.resolution)) > 1e-9 * made:
            found.append(("resolution", f"{settings.resolution:g}", f"{made:g}"))
    if "crs" in given and settings.crs and signature.get("crs"):
        from odc.geo import CRS

        if CRS(settings.crs) != CRS(signature["crs"]):
            found.append(("crs", settings.crs, str(signature["crs"])))
    bands = list(signature.get("bands") or ())  # name -> asset key: the names, in order
    if "bands" in given and bands and list(settings.bands) != bands:
        found.append(("bands", ",".join(settings.bands), ",".join(bands)))
    if "mask_classes" in given and sorted(settings.mask_classes) != sorted(signature.get("mask_classes") or ()):
        found.append(
            ("mask_classes", ",".join(map(str, settings.mask_classes)), ",".join(map(str, signature["mask_classes"])))
        )
    made_dilation = float(signature.get("mask_dilation") or 0.0)
    if "mask_dilation" in given and float(settings.mask_dilation) != made_dilation:
        found.append(("mask_dilation", f"{settings.mask_dilation:g}", f"{made_dilation:g}"))
    if "resampling" in given and signature.get("resampling") and settings.resampling != signature["resampling"]:
        found.append(("resampling", settings.resampling, str(signature["resampling"])))
    days = sorted(dt.date.fromisoformat(d[0]) for d in signature.get("days") or ())
    slack = dt.timedelta(days=1)  # a solar day (local date) can be a day off the UTC dates searched
    if days:
        span = f"days {days[0]} to {days[-1]}"
        if "start_date" in given and settings.start_date and days[0] < settings.start_date - slack:
            found.append(("start_date", str(settings.start_date), span))
        if "end_date" in given and settings.end_date and days[-1] > settings.end_date + slack:
            found.append(("end_date", str(settings.end_date), span))
    return found


def _monthly_differences(settings: Settings, record: Mapping[str, Any] | None) -> list[tuple[str, str, str]]:
    """(key, asked, made) for each given key that differs from the monthly store's composite
    record (a store without one holds the median: it was written before there were statistics)."""
    given = settings.given
    statistics = list((record or {}).get("statistics") or ["median"])
    layers = [layer.get("key") for layer in (record or {}).get("layers") or ()]
    found: list[tuple[str, str, str]] = []
    if "statistic" in given and list(settings.statistics) != statistics:
        found.append(("statistic", ",".join(settings.statistics), ",".join(statistics)))
    method = (record or {}).get("percentile_method")
    if "percentile_method" in given and method and settings.percentile_method != method:
        found.append(("percentile_method", settings.percentile_method, method))
    provenance = [k for k in layers if k in PROVENANCE]
    if "provenance" in given and sorted(settings.provenance) != sorted(provenance):
        found.append(("provenance", ",".join(settings.provenance) or "none", ",".join(provenance) or "none"))
    return found


def _refuse(found: list[tuple[str, str, str]], what: str, path: str, stage: str) -> None:
    if not found:
        return
    key, asked, made = found[0]
    more = f" (and {', '.join(k for k, _, _ in found[1:])})" if len(found) > 1 else ""
    raise ConfigError(key, f"{asked} was asked but {what} {path} was made for {made}{more}; {_remedy(stage)}")


def refuse_ignored_overrides(settings: Settings, path: str, *, monthly: bool) -> None:
    """:class:`ConfigError` naming the first given key that differs from what shaped the store at
    ``path``: the cube, or with ``monthly`` the monthly store (its cube's signature, then its
    composite). Nothing given that shapes a store: nothing is read."""
    keys = CUBE_KEYS + (MONTHLY_KEYS if monthly else ())
    if not settings.given & set(keys):
        return
    from . import store

    signature = store.read_attrs(path).get("signature") or {}
    if monthly:
        with store.quiet():
            record = store.open_group(path, "r").attrs.get("composite")
        found = _cube_differences(settings, signature.get("cube") or {})
        found += _monthly_differences(settings, json.loads(record) if isinstance(record, str) else record)
        _refuse(found, "the monthly store", path, settings.stage)
    else:
        _refuse(_cube_differences(settings, signature), "the cube", path, settings.stage)
