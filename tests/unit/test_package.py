"""The image's build files read as files: the build context kept small, every dependency pinned."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_dockerignore_keeps_the_build_context_small():
    lines = (ROOT / ".dockerignore").read_text().split()
    assert lines[lines.index("*")] == "*" and "!cubemosaic/" in lines and "!conf/" in lines


def test_the_image_installs_pinned_versions_of_every_dependency():
    """constraints.txt (the image's lock, built from pyproject.toml) pins each runtime and cloud
    dependency to a version pyproject accepts, and the Dockerfile installs with it: the job's
    pod and its Gateway workers (the same image) run the same libraries."""
    import re

    import pytest
    from packaging.requirements import Requirement

    tomllib = pytest.importorskip("tomllib")  # Python 3.11+

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    wanted = [Requirement(r) for r in project["dependencies"]]
    for extra in ("s3", "gcs", "azure"):
        wanted += [Requirement(r) for r in project["optional-dependencies"][extra]]
    pins = dict(re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", (ROOT / "constraints.txt").read_text(), re.M))
    pins = {name.lower().replace("_", "-"): version for name, version in pins.items()}
    for req in wanted:
        name = req.name.lower().replace("_", "-")
        assert name in pins, f"{req.name} is not pinned in constraints.txt"
        assert req.specifier.contains(pins[name], prereleases=True), f"{req.name}=={pins[name]} breaks {req}"
    assert pins["dask"] == pins["distributed"], "dask and distributed are released together"
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "--constraint /dist/constraints.txt" in dockerfile and "COPY constraints.txt" in dockerfile
    assert "FROM python:3.11" in dockerfile and "--python-version 3.11" in (ROOT / "constraints.txt").read_text()
    assert "!constraints.txt" in (ROOT / ".dockerignore").read_text().split()
