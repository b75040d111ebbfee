"""Where a path or URL points: this machine's disk, or a service reached over the network."""

from __future__ import annotations

__all__ = ["is_local"]


def is_local(url: str) -> bool:
    """Whether ``url`` is on this machine's disk: a plain path or a ``file://`` URL (not s3://,
    https://, gs://, ...)."""
    return "://" not in url or url.startswith("file://")
