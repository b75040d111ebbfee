"""cubemosaic.errors: the exit codes, the messages and one_line's redaction."""

from __future__ import annotations

import pickle

import pytest

from cubemosaic import errors
from cubemosaic.errors import AssetReadError, ConfigError, CubeMosaicError, one_line


def test_a_configuration_error_names_its_parameter_and_exits_2():
    e = ConfigError("resolution", "must be positive")
    assert str(e) == "resolution: must be positive" and (e.parameter, e.problem) == ("resolution", "must be positive")
    assert e.exit_code == 2


@pytest.mark.parametrize(
    "name", [n for n in errors.__all__ if n[0].isupper() and n not in ("ConfigError", "CubeMosaicError")]
)
def test_every_other_error_is_a_cubemosaic_error_with_exit_1(name):
    cls = getattr(errors, name)
    assert issubclass(cls, CubeMosaicError) and cls.exit_code == 1


def test_the_hierarchy_lets_callers_catch_by_kind():
    assert issubclass(errors.WriteError, errors.OutputError) and issubclass(AssetReadError, errors.ReadError)
    assert not issubclass(errors.WriteError, errors.ReadError), "a failed write is never re-read as a read error"


def test_an_asset_read_error_names_the_item_and_band_and_survives_pickling():
    e = AssetReadError("S2A_X", "B04", "HTTP 404")
    assert str(e) == "cannot read asset B04 of item S2A_X: HTTP 404"
    back = pickle.loads(pickle.dumps(e))
    assert type(back) is AssetReadError and (back.item_id, back.band, back.problem) == ("S2A_X", "B04", "HTTP 404")
    assert str(back) == str(e)


def test_one_line_joins_lines_drops_query_strings_and_cuts():
    signed = "GET https://acc.blob.core.windows.net/c/B04.tif?st=2024&se=2025&sig=SECRET failed\n  (HTTP 403)\tretry"
    assert one_line(signed) == "GET https://acc.blob.core.windows.net/c/B04.tif failed (HTTP 403) retry"
    assert "SECRET" not in one_line("'https://x/y?sig=SECRET' and \"https://z?k=SECRET\"")
    assert one_line("x" * 500) == "x" * 300 and one_line("abcdef", limit=3) == "abc"
