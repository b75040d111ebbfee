"""One rule for "is this URL on this machine's disk", used by the configuration, the catalog and the reach check."""

from __future__ import annotations

import pytest

from cubemosaic.config import _check_output_dir, _zarr_dir
from cubemosaic.errors import ConfigError
from cubemosaic.urls import is_local, local_path, redact, scheme


@pytest.mark.parametrize(
    ("url", "local", "path"),
    [
        ("/data/x", True, "/data/x"),
        ("relative/x", True, "relative/x"),
        ("file:///data/a%20b", True, "/data/a b"),
        ("file://localhost/data/x", True, "/data/x"),
        ("s3://bucket/x", False, "s3://bucket/x"),
        ("https://example.com/x.json", False, "https://example.com/x.json"),
    ],
)
def test_is_local_and_local_path_agree(url, local, path):
    assert is_local(url) is local
    assert local_path(url) == path


def test_scheme_and_redact():
    assert scheme("s3://bucket/x") == "s3" and scheme("/data/x") == ""
    assert redact("https://user:key@example.com:8080/a/b.tif?sig=secret") == "https://example.com:8080/a/b.tif"
    assert redact("/data/x") == "/data/x"


def test_the_configuration_takes_a_file_url_as_the_folder_it_names(tmp_path):
    assert _check_output_dir(f"file://{tmp_path}/out") == tmp_path / "out"
    assert _zarr_dir(f"file://{tmp_path}/zarr", tmp_path) == str(tmp_path / "zarr")
    with pytest.raises(ConfigError, match="output_dir: s3://bucket/out must be a local folder"):
        _check_output_dir("s3://bucket/out")
