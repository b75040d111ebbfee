"""cubemosaic.urls: whether a path or URL is on this machine's disk, and where."""

from __future__ import annotations

import pytest

from cubemosaic.urls import is_local, local_path, redact, scheme


@pytest.mark.parametrize(
    ("url", "local"),
    [
        ("/data/out", True),
        ("relative/out", True),
        ("C:/not/a/scheme", True),
        ("file:///data/out", True),
        ("file://localhost/data/out", True),
        ("s3://bucket/prefix", False),
        ("https://example.com/a.tif", False),
        ("gs://bucket/x", False),
        ("memory://stores", False),
    ],
)
def test_is_local(url, local):
    assert is_local(url) is local


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("/data/out", "/data/out"),
        ("file:///data/out", "/data/out"),
        ("file:///my%20stores/x%23y", "/my stores/x#y"),
        ("file://localhost/data", "/data"),
        ("file://otherhost/data", "file://otherhost/data"),  # not this machine's disk: left as typed
        ("s3://bucket/my%20key", "s3://bucket/my%20key"),
    ],
)
def test_local_path(url, path):
    assert local_path(url) == path


def test_a_path_and_its_file_url_are_the_same_folder(tmp_path):
    folder = tmp_path / "a b"
    assert local_path(folder.as_uri()) == str(folder)


def test_scheme_and_redact():
    assert scheme("s3://bucket/x") == "s3" and scheme("/data/x") == ""
    assert redact("https://user:key@example.com:8080/a/b.tif?sig=secret") == "https://example.com:8080/a/b.tif"
    assert redact("/data/x") == "/data/x"
