"""Where a path or URL points: this machine's disk, or a service reached over the network."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit

__all__ = ["MEMORY_SCHEMES", "is_local", "local_path"]

#: fsspec schemes whose files live only in the process that writes them: a store there is lost
#: when the run ends (and Dask worker processes each see their own).
MEMORY_SCHEMES = ("memory",)


def is_local(url: str) -> bool:
    """Whether ``url`` is on this machine's disk: a plain path or a ``file://`` URL (not s3://,
    https://, gs://, ...)."""
    return "://" not in url or url.startswith("file://")


def local_path(url: str) -> str:
    """The path on this machine's disk of a plain path or a ``file://`` URL (``file:///a%20b`` ->
    ``/a b``); ``url`` itself for any other scheme."""
    if not url.startswith("file://"):
        return url
    parts = urlsplit(url)
    return unquote(parts.path) if parts.netloc in ("", "localhost") else url
