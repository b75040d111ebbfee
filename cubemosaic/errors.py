"""User-facing errors.

Every failure a user can cause is a :class:`CubeMosaicError`. The CLI prints its
message as one line (``cubemosaic: error: <message>``) and exits non-zero, without a
traceback. Messages name the parameter or asset at fault and never carry secrets.
"""

from __future__ import annotations

import re

__all__ = [
    "AssetReadError",
    "CatalogError",
    "ClusterError",
    "ConfigError",
    "CubeMosaicError",
    "NothingFoundError",
    "OutputError",
    "ReadError",
    "SigningError",
    "WriteError",
    "one_line",
]


class CubeMosaicError(Exception):
    """Base class of every error a user can cause."""

    exit_code: int = 1


class ConfigError(CubeMosaicError):
    """A configuration value is missing or invalid (found before any network call)."""

    exit_code = 2

    def __init__(self, parameter: str, problem: str) -> None:
        self.parameter = parameter
        self.problem = problem
        super().__init__(f"{parameter}: {problem}")


class CatalogError(CubeMosaicError):
    """The catalog could not be opened or searched."""


class ClusterError(CubeMosaicError):
    """The Dask cluster (a Dask Gateway) could not be reached, joined or started."""


class NothingFoundError(CubeMosaicError):
    """The search matched no scene."""


class ReadError(CubeMosaicError):
    """An asset could not be read (named by item id and band)."""


class AssetReadError(ReadError):
    """One asset of one scene could not be read: raised by the reader where the read failed, naming
    the item and the band, so nothing has to find the culprit afterwards."""

    def __init__(self, item_id: str, band: str, problem: str) -> None:
        self.item_id, self.band, self.problem = item_id, band, problem
        super().__init__(f"cannot read asset {band} of item {item_id}: {problem}")

    def __reduce__(self):  # crosses process boundaries (Dask workers) with its fields
        return (type(self), (self.item_id, self.band, self.problem))


class OutputError(CubeMosaicError):
    """The output location cannot be written, or holds something we must not overwrite."""


class SigningError(CubeMosaicError):
    """The token service refused to sign asset hrefs (a wrong subscription key, say)."""


class WriteError(OutputError):
    """A Zarr store could not be written, or what the workers wrote is not where this process
    reads it. Raised where the write fails (on a worker or here), never re-read as a read error."""


def one_line(text: str, limit: int = 300) -> str:
    """``text`` (a library's error message) as one short line without query strings (SAS tokens, keys)."""
    return re.sub(r"\?[^\s'\"]*", "", " ".join(text.split()))[:limit]
