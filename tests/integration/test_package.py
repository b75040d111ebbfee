"""What the Docker image does, without Docker: a wheel installed in a fresh venv, used outside the repo."""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _run(args, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(args, capture_output=True, text=True, timeout=900, **kw)


def test_wheel_installs_and_runs_the_demo_outside_the_repo(tmp_path):
    dist = tmp_path / "dist"
    built = _run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", str(dist), str(ROOT)])
    assert built.returncode == 0, built.stderr
    (wheel,) = dist.glob("cubemosaic-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    assert "cubemosaic/conf/config.yaml" in names and "cubemosaic/conf/catalog/demo.yaml" in names

    venv = tmp_path / "venv"
    assert _run([sys.executable, "-m", "venv", str(venv)]).returncode == 0
    py = venv / "bin" / "python"
    installed = _run([str(py), "-m", "pip", "install", "--disable-pip-version-check", "-q", str(wheel)])
    assert installed.returncode == 0, installed.stderr[-3000:]

    away = tmp_path / "elsewhere"
    away.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["CUBEMOSAIC_DEMO_DIR"] = str(tmp_path / "demo-cache")
    where = _run(
        [str(py), "-c", "import cubemosaic.config as c; print(c.__file__); print(c.conf_dir())"], cwd=away, env=env
    )
    assert where.returncode == 0, where.stderr
    assert str(venv) in where.stdout and str(ROOT) not in where.stdout

    helped = _run([str(py), "-m", "cubemosaic", "--help"], cwd=away, env=env)
    assert helped.returncode == 0 and "catalog=" in helped.stdout
    for tool in (["dask", "scheduler", "--help"], ["dask", "worker", "--help"]):
        assert _run([str(venv / "bin" / tool[0]), *tool[1:]], cwd=away, env=env).returncode == 0, tool

    demo = _run([str(py), "-m", "cubemosaic", "catalog=demo"], cwd=away, env=env)
    assert demo.returncode == 0, demo.stderr[-3000:]
    assert len(list((away / "output").glob("monthly-mosaic-*/monthly-mosaic-*.tif"))) == 8
    assert (away / "output" / "catalog.json").is_file()


def test_dockerfile_lints():
    import shutil

    exe = shutil.which("hadolint") or str(Path(sys.executable).parent / "hadolint")
    proc = _run([exe, str(ROOT / "Dockerfile")])
    assert proc.returncode == 0, proc.stdout + proc.stderr
