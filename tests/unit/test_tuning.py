"""cubemosaic.tuning: the constants' bounds and configure's effects (in this process, the state reset)."""

from __future__ import annotations

import pytest

from cubemosaic import tuning


@pytest.fixture
def fresh(monkeypatch):
    """configure() as if not yet called in this process, its calls to mallopt recorded."""
    monkeypatch.setattr(tuning, "_done", [])
    calls = []
    monkeypatch.setattr(tuning, "_limit_arenas", calls.append)
    return calls


def test_configure_sets_the_gdal_cache_and_limits_the_arenas(fresh, monkeypatch):
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    tuning.configure()
    import os

    assert os.environ["GDAL_CACHEMAX"] == str(tuning.GDAL_CACHE_MB) == "128"
    assert fresh == [tuning.MALLOC_ARENAS]


def test_configure_keeps_what_the_environment_sets(fresh, monkeypatch):
    monkeypatch.setenv("GDAL_CACHEMAX", "512")
    monkeypatch.setenv("MALLOC_ARENA_MAX", "4")
    tuning.configure()
    import os

    assert os.environ["GDAL_CACHEMAX"] == "512" and fresh == []


def test_configure_runs_once(fresh, monkeypatch):
    monkeypatch.delenv("MALLOC_ARENA_MAX", raising=False)
    tuning.configure()
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    tuning.configure()
    import os

    assert "GDAL_CACHEMAX" not in os.environ and len(fresh) == 1, "the second call does nothing"


def test_limiting_the_arenas_is_harmless_here():
    tuning._limit_arenas(tuning.MALLOC_ARENAS)  # glibc's mallopt, or nothing elsewhere: never raises


def test_the_constants_are_within_their_stated_bounds():
    assert tuning.NETWORK_MAX >= 1 and tuning.STRIP_VALUES == 262144
    assert tuning.MAX_IN_FLIGHT >= 2, "the relay's window is at least 2"
    assert tuning.EXPORT_THREADS >= 1 and tuning.IO_THREADS >= 1 and tuning.DAYS_PER_BATCH >= 1
    assert set(tuning.__all__) <= set(vars(tuning)), "every listed name exists"


def test_handing_memory_back_starts_no_process(monkeypatch):
    """Not ctypes.util.find_library, which runs ldconfig in a child: forked from a large process,
    the child showed its parent's resident size and the process tree's measured peak doubled."""
    import subprocess

    def refuse(*args, **kwargs):
        raise AssertionError(f"a process was started: {args[0] if args else kwargs}")

    monkeypatch.setattr(subprocess, "Popen", refuse)
    tuning.release_memory()
    tuning._limit_arenas(tuning.MALLOC_ARENAS)


def test_memory_is_handed_back_through_glibc_where_glibc_is_the_allocator():
    import platform

    if platform.libc_ver()[0] != "glibc":
        pytest.skip("not glibc: release_memory is a no-op")
    assert tuning._libc().malloc_trim(0) in (0, 1)
