"""cubemosaic (the package's __init__): its names, each from the module that defines it, imported when asked for."""

from __future__ import annotations

import importlib

import pytest

import cubemosaic


@pytest.mark.parametrize("name", cubemosaic.__all__)
def test_each_public_name_is_its_modules_own(name):
    module = importlib.import_module(f"cubemosaic.{cubemosaic._WHERE[name]}")
    assert getattr(cubemosaic, name) is getattr(module, name)


def test_every_listed_name_has_a_home_and_others_are_attribute_errors():
    assert set(cubemosaic.__all__) == set(cubemosaic._WHERE)
    with pytest.raises(AttributeError, match="no attribute 'build_cub'"):
        cubemosaic.build_cub  # noqa: B018
    assert isinstance(cubemosaic.__version__, str) and cubemosaic.__version__.count(".") == 2
