"""The tuning constants' one module, and its configure step: nothing is set or started at import."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from cubemosaic import tuning

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
