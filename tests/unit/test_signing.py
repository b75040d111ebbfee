"""cubemosaic.signing: the signer catalog.sign chooses, a read retried once with a fresh token, and
the token service's failures said in one line without keys (fake signers and responses: no network)."""

from __future__ import annotations

import pytest
import requests

from cubemosaic.errors import SigningError
from cubemosaic.signing import PlanetaryComputerSigner, Refreshable, _token_problem, read_signed, signer


class FakeSigner:
    """Signs with a numbered token; refresh hands out the next one."""

    def __init__(self) -> None:
        self.token = 1
        self.refreshed: list[str] = []

    def __call__(self, href: str) -> str:
        return f"{href}?sig={self.token}"

    def refresh(self, href: str) -> str:
        self.refreshed.append(href)
        self.token += 1
        return self(href)


def test_the_signer_is_chosen_by_catalog_sign(monkeypatch):
    monkeypatch.setenv("PC_SDK_SUBSCRIPTION_KEY", "k3y")
    chosen = signer("planetary_computer")
    assert isinstance(chosen, PlanetaryComputerSigner) and isinstance(chosen, Refreshable)
    assert signer("none") is None
    keyed = PlanetaryComputerSigner(sas_url="https://sas.example/v1", subscription_key="k3y")
    assert "k3y" not in repr(keyed) and "sas.example" in repr(keyed), "no key in logs or Dask's task names"


def test_an_unsigned_read_is_read_as_is_and_its_failure_is_not_retried():
    seen = []

    def read(url):
        seen.append(url)
        raise OSError("IReadBlock failed")

    with pytest.raises(OSError):
        read_signed("https://x/a.tif", None, read)
    assert seen == ["https://x/a.tif"]
    assert read_signed("https://x/a.tif", None, lambda url: url) == "https://x/a.tif"


def test_a_failed_signed_read_is_tried_once_more_with_a_fresh_token():
    fake, seen = FakeSigner(), []

    def read(url):
        seen.append(url)
        if url.endswith("sig=1"):
            raise OSError("not recognized as being in a supported file format")  # an expired token, as GDAL says it
        return "pixels"

    assert read_signed("https://x/a.tif", fake, read) == "pixels"
    assert seen == ["https://x/a.tif?sig=1", "https://x/a.tif?sig=2"] and fake.refreshed == ["https://x/a.tif"]


def test_what_fails_with_a_fresh_token_too_is_a_real_failure():
    fake = FakeSigner()
    with pytest.raises(OSError, match="gone"):
        read_signed("https://x/a.tif", fake, lambda url: (_ for _ in ()).throw(OSError("gone")))
    assert len(fake.refreshed) == 1, "retried once only"


def test_a_plain_function_signer_is_not_retried():
    with pytest.raises(OSError):
        read_signed("h", lambda href: href + "?s", lambda url: (_ for _ in ()).throw(OSError("x")))


def _http_error(status: int, url: str) -> requests.HTTPError:
    response = requests.Response()
    response.status_code = status
    response.url = url
    return requests.HTTPError(response=response)


def test_the_token_services_refusal_is_one_line_without_the_key():
    url = "https://planetarycomputer.microsoft.com/api/sas/v1/token/acc/cont?subscription-key=SECRET"
    line = _token_problem(_http_error(403, url))
    assert line.startswith("catalog.sign: ") and "HTTP 403" in line and "PC_SDK_SUBSCRIPTION_KEY" in line
    assert "SECRET" not in line and "\n" not in line
    assert "answered HTTP 500" in _token_problem(_http_error(500, url))
    assert "cannot reach the SAS token service (ConnectionError)" in _token_problem(requests.ConnectionError())


def test_the_planetary_computer_signer_raises_a_signing_error(monkeypatch):
    import planetary_computer

    def refuse(href):
        raise _http_error(401, "https://pc/api/sas/v1/token/a/c?subscription-key=SECRET")

    monkeypatch.setattr(planetary_computer, "sign", refuse)
    with pytest.raises(SigningError, match="HTTP 401") as refused:
        PlanetaryComputerSigner()("https://a.blob.core.windows.net/c/b.tif")
    assert "SECRET" not in str(refused.value)
