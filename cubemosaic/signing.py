"""Signing asset hrefs in the task that reads them; a fresh token when a server refuses the old one.

Planetary Computer assets are private blobs read with SAS tokens that expire. Tokens put in
the task graph at search time are stale by the time a long run's last task reads, so the
signer travels with the tasks and is called right before each open, on whichever worker
runs the read (:func:`read_signed`, around both of :mod:`cubemosaic.read`'s ways of reading).
When a read still fails (a server answering 403 for a token revoked, or
expired before the time it stated), the cached token is dropped, the href signed again and
the read tried once more.

The planetary-computer package does the signing and caches tokens per storage container;
what is written here is only that retry with a fresh token (the package has none), carrying
and its settings (``PC_SDK_SAS_URL``, ``PC_SDK_SUBSCRIPTION_KEY``) from the client to the
workers.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol, TypeVar, runtime_checkable
from urllib.parse import urlparse

from .errors import SigningError
from .urls import redact

__all__ = ["PlanetaryComputerSigner", "Refreshable", "read_signed", "signer"]

T = TypeVar("T")
Signer = Callable[[str], str]


@runtime_checkable
class Refreshable(Protocol):
    """A signer that can fetch a fresh token for an href whose token a server refused."""

    def __call__(self, href: str) -> str: ...

    def refresh(self, href: str) -> str: ...


@dataclass(frozen=True)
class PlanetaryComputerSigner:
    """Signs hrefs with the planetary-computer package, with the client's settings on every worker."""

    #: The SAS token endpoint (``PC_SDK_SAS_URL`` on the client); None for the package's default.
    sas_url: str | None = None
    #: The Planetary Computer subscription key (``PC_SDK_SUBSCRIPTION_KEY``), if the user has one.
    subscription_key: str | None = field(default=None, repr=False)

    @classmethod
    def from_environment(cls) -> PlanetaryComputerSigner:
        """The settings the planetary-computer package reads here (environment, settings file)."""
        # The planetary-computer package is imported where a signer uses it, not with this module:
        # it imports pystac-client and requests, which a worker reading another catalog's assets
        # (this module is on every read's path) does not need.
        from planetary_computer.settings import Settings

        settings = Settings.get()
        return cls(sas_url=settings.sas_url, subscription_key=settings.subscription_key)

    def _configure(self) -> None:
        from planetary_computer.settings import Settings  # lazy: see from_environment

        settings = Settings.get()
        if self.sas_url and settings.sas_url != self.sas_url:
            settings.sas_url = self.sas_url
        if self.subscription_key and settings.subscription_key != self.subscription_key:
            settings.subscription_key = self.subscription_key

    def __call__(self, href: str) -> str:
        import planetary_computer  # lazy: see from_environment
        import requests

        self._configure()
        try:
            return planetary_computer.sign(href)
        except requests.RequestException as e:
            raise SigningError(_token_problem(e)) from None

    def refresh(self, href: str) -> str:
        """Sign ``href`` with a new token (the cached one for its container is dropped)."""
        from planetary_computer import sas  # lazy: see from_environment
        from planetary_computer.settings import Settings
        from planetary_computer.utils import parse_blob_url

        self._configure()
        parsed = urlparse(href)
        if parsed.netloc.endswith(sas.BLOB_STORAGE_DOMAIN):
            account, container = parse_blob_url(parsed)
            sas.TOKEN_CACHE.pop(f"{Settings.get().sas_url}/{account}/{container}", None)
        return self(href)


def _token_problem(e) -> str:
    """One line on why the token service did not give a token (without keys or tokens)."""

    response = getattr(e, "response", None)
    where = redact(response.url) if response is not None else "the SAS token service"
    if response is not None and response.status_code in (401, 403):
        return (
            f"catalog.sign: {where} refused to issue a token (HTTP {response.status_code}); "
            "check PC_SDK_SUBSCRIPTION_KEY"
        )
    if response is not None:
        return f"catalog.sign: {where} answered HTTP {response.status_code} for a token"
    return f"catalog.sign: cannot reach the SAS token service ({type(e).__name__}); check PC_SDK_SAS_URL"


def signer(kind: str) -> Signer | None:
    """The href signer for ``catalog.sign``: ``planetary_computer`` or ``none``."""
    if kind == "planetary_computer":
        return PlanetaryComputerSigner.from_environment()
    return None


def read_signed(href: str, sign: Signer | None, read: Callable[[str], T]) -> T:
    """``read(url)`` with ``href`` signed now; on a failure, signed with a fresh token and read once more.

    A server refusing an expired token answers 403, but GDAL does not always say so: a
    header cached from an earlier open turns the 403 into "IReadBlock failed" or "not
    recognized as being in a supported file format". So any failed read under a signer that
    can refresh is tried once more with a new token; what fails twice is a real failure.
    """
    url = sign(href) if sign else href
    try:
        return read(url)
    except Exception:
        if not isinstance(sign, Refreshable):
            raise
    return read(sign.refresh(href))
