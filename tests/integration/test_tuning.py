"""The tuning constants' one module, and its configure step: nothing is set or started at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from cubemosaic import tuning
from cubemosaic.read import PLAIN

IMPORT_ONLY = textwrap.dedent(
    """
    import os, threading
    import cubemosaic, cubemosaic.read, cubemosaic.cube, cubemosaic.composite, cubemosaic.config

    assert "GDAL_CACHEMAX" not in os.environ, "set at import"
    started = [t.name for t in threading.enumerate() if t.name.startswith("cubemosaic")]
    assert not started, f"threads started at import: {started}"
    cubemosaic.configure()
    print(os.environ["GDAL_CACHEMAX"])
    """
)


def _run(env: dict[str, str]) -> str:
    proc = subprocess.run([sys.executable, "-c", IMPORT_ONLY], capture_output=True, text=True, env=env)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_importing_sets_nothing_and_configure_sets_the_gdal_cache():
    env = {k: v for k, v in os.environ.items() if k != "GDAL_CACHEMAX"}
    assert _run(env) == str(tuning.GDAL_CACHE_MB)


def test_configure_keeps_the_users_gdal_cache(monkeypatch):
    monkeypatch.setattr(tuning, "_done", [])
    monkeypatch.setenv("GDAL_CACHEMAX", "64")
    tuning.configure()
    assert os.environ["GDAL_CACHEMAX"] == "64"


def test_every_read_configures_its_process_first(monkeypatch):
    """A Dask worker gets GDAL's settings at its first read, whoever started it."""
    monkeypatch.setattr(tuning, "_done", [])
    monkeypatch.delenv("GDAL_CACHEMAX", raising=False)
    seen = PLAIN.read("file.tif", lambda url: os.environ.get("GDAL_CACHEMAX"))
    assert seen == str(tuning.GDAL_CACHE_MB)
