"""URLs: where a path or URL points (this machine's disk, or a service reached over the network),
and how one is written in a log line or a message (:func:`redact`).

Standard library only: the workers' read path (:mod:`cubemosaic.signing`) and the cluster set-up
import it without the catalog's clients (pystac-client, requests)."""

from __future__ import annotations

from urllib.parse import unquote, urlsplit, urlunsplit

__all__ = ["MEMORY_SCHEMES", "is_local", "local_path", "redact", "scheme"]

#: fsspec schemes whose files live only in the process that writes them: a store there is lost
#: when the run ends (and Dask worker processes each see their own).
MEMORY_SCHEMES = ("memory",)


def is_local(url: str) -> bool:
    """Whether ``url`` is on this machine's disk: a plain path or a ``file://`` URL (not s3://,
    https://, gs://, ...)."""
    return "://" not in url or url.startswith("file://")


def scheme(url: str) -> str:
    """The scheme of a URL (``s3`` of ``s3://bucket/x``); ``""`` for a plain path."""
    return url.split("://", 1)[0] if "://" in url else ""


def local_path(url: str) -> str:
    """The path on this machine's disk of a plain path or a ``file://`` URL (``file:///a%20b`` ->
    ``/a b``); ``url`` itself for any other scheme."""
    if not url.startswith("file://"):
        return url
    parts = urlsplit(url)
    return unquote(parts.path) if parts.netloc in ("", "localhost") else url


def redact(url: str) -> str:
    """A URL safe to log: no query string (SAS tokens, keys) and no user info."""
    parts = urlsplit(str(url))
    if not parts.scheme:
        return str(url)
    netloc = parts.hostname or ""
    if parts.port:
        netloc += f":{parts.port}"
    return urlunsplit((parts.scheme, netloc, parts.path, "", ""))
