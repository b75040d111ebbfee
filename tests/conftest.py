"""Shared fixtures: the demo archive, CLI runs in subprocesses, a STAC API on loopback."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import requests

from cubemosaic.demo import DemoArchive, ensure_demo

BANDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}


def cli(
    args: list[str], *, env: dict[str, str] | None = None, cwd: Path | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    """Run ``python -m cubemosaic`` as a user would, from a folder outside the repo."""
    full_env = dict(os.environ)
    full_env.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "cubemosaic", *args],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=cwd,
        timeout=timeout,
    )


@pytest.fixture(scope="session")
def demo_dir(tmp_path_factory) -> Path:
    """A cache folder for demo archives, shared by every test and subprocess of the session."""
    path = tmp_path_factory.mktemp("demo-cache")
    os.environ["CUBEMOSAIC_DEMO_DIR"] = str(path)
    return path


@pytest.fixture(scope="session")
def demo(demo_dir) -> DemoArchive:
    return ensure_demo(cache_dir=demo_dir)


@pytest.fixture(scope="session")
def truth(demo):
    return demo.truth()


@pytest.fixture(scope="session")
def demo_run(demo, tmp_path_factory) -> Path:
    """One whole main job on the demo, through the CLI: ``python -m cubemosaic catalog=demo``."""
    out = tmp_path_factory.mktemp("demo-run") / "out"
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=out.parent)
    assert proc.returncode == 0, proc.stderr
    return out


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def stac_api(demo) -> str:
    """A real STAC API (``rustac serve``) on loopback, serving the demo archive's items."""
    exe = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    proc = subprocess.Popen(
        [exe, "serve", "--addr", f"127.0.0.1:{port}", str(demo.items_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if requests.get(url, timeout=1).ok:
                    break
            except requests.ConnectionError:
                time.sleep(0.1)
        else:
            raise RuntimeError("rustac serve did not start")
        yield url
    finally:
        proc.terminate()
        proc.wait(10)
