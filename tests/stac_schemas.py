"""STAC validation offline: the JSON schemas bundled in tests/data/stac-schemas (its README says
where each came from), in a ``referencing`` Registry that maps each schema's https URL to its
file. The Registry's ``retrieve`` refuses every URL it does not hold, so no request leaves the
machine and a schema missing from the bundle fails the validation by name instead of being
fetched."""

from __future__ import annotations

import json
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any

from jsonschema import Draft7Validator
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource

SCHEMAS = Path(__file__).parent / "data" / "stac-schemas"
STAC = "https://schemas.stacspec.org/v1.1.0"
#: The core schema of each STAC object ``type``.
CORE = {
    "Feature": f"{STAC}/item-spec/json-schema/item.json",
    "Collection": f"{STAC}/collection-spec/json-schema/collection.json",
    "Catalog": f"{STAC}/catalog-spec/json-schema/catalog.json",
}


def _urls(path: Path, doc: Mapping[str, Any]) -> set[str]:
    """The URLs a bundled schema is referred to by: its ``$id`` and, for the core files, where the
    spec publishes it (common.json's ``$id`` in stac-spec 1.1.0 reads ``.../commonjson``, but
    item.json refers to it as ``common.json``)."""
    urls = {str(doc["$id"]).rstrip("#")}
    if path.parent == SCHEMAS / "stac-spec" / "v1.1.0":
        spec = {"catalog": "catalog-spec", "collection": "collection-spec"}.get(path.stem, "item-spec")
        urls.add(f"{STAC}/{spec}/json-schema/{path.name}")
    return urls


def _refuse(uri: str) -> Resource:
    raise NoSuchResource(ref=f"{uri} (not in {SCHEMAS}: bundle it, nothing is fetched)")


@cache
def registry() -> Registry:
    """Every bundled schema under each URL it is referred to by."""
    resources = []
    for path in sorted(SCHEMAS.rglob("*.json")):
        doc = json.loads(path.read_text())
        resource = Resource.from_contents(doc)
        resources += [(url, resource) for url in _urls(path, doc)]
    return Registry(retrieve=_refuse).with_resources(resources)  # type: ignore[call-arg]


def schema_errors(doc: Mapping[str, Any]) -> list[str]:
    """What is wrong with the STAC ``doc`` (an item, a collection or a catalog) against its core
    schema and the schema of every extension it declares; empty when it is valid."""
    kind = doc.get("type")
    if kind not in CORE:
        return [f"type {kind!r} is none of {sorted(CORE)}"]
    errors = []
    for url in [CORE[kind], *doc.get("stac_extensions", [])]:
        if url.rstrip("#") not in registry():
            errors.append(f"{url}: not in {SCHEMAS}: bundle it (nothing is fetched)")
            continue
        validator = Draft7Validator({"$ref": url}, registry=registry())
        try:
            found = sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path))
        except Exception as e:  # an unresolvable $ref: a schema not bundled
            errors.append(f"{url}: {type(e).__name__}: {e}")
            continue
        for e in found:
            leaf = e
            while leaf.context:  # a oneOf/anyOf's deepest reason, not the whole document
                leaf = max(leaf.context, key=lambda c: len(c.absolute_path))
            errors.append(f"{url}: at {leaf.json_path}: {leaf.message[:300]}")
    return errors


def assert_valid(doc: Mapping[str, Any], name: str = "") -> None:
    errors = schema_errors(doc)
    assert not errors, f"{name or doc.get('id')} is not valid STAC:\n" + "\n".join(errors)
