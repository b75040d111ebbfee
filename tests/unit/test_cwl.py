"""cwl/cubemosaic.cwl read as a file: the workflow's shape, as Calrissian and the OGC application package read it."""

from __future__ import annotations

import re
from pathlib import Path

import rioxarray  # noqa: F401  (registers .rio)
import yaml

CWL = Path(__file__).resolve().parents[2] / "cwl" / "cubemosaic.cwl"
CALRISSIAN_KEYS = {"workerCores", "workerCoresLimit", "workerMemory", "clusterMaxCores", "clusterMaxMemory"}


def test_workflow_shape():
    doc = yaml.safe_load(CWL.read_text())
    graph = {p["id"]: p for p in doc["$graph"]}
    assert set(graph) == {"main", "cube", "mosaic"}
    assert set(graph["main"]["inputs"]) == {
        "start-date",
        "end-date",
        "aoi",
        "bands",
        "collection",
        "resolution",
        "tile-size",
        "max-items",
        "max-cloud-cover",
        "catalog-url",
        "zarr-dir",
        "keep-cube",
        "statistic",
        "percentile-method",
        "provenance",
    }
    assert set(graph["main"]["outputs"]) == {"cube", "stac-catalog"}
    assert graph["main"]["outputs"]["cube"]["outputSource"] == "step_cube/kept-cube", "staged out only when asked"
    assert graph["main"]["inputs"]["keep-cube"]["default"] is False
    assert graph["main"]["steps"]["step_mosaic"]["in"]["cube"] == "step_cube/cube"
    for tool in ("cube", "mosaic"):
        req = graph[tool]["requirements"]
        assert set(req["calrissian:DaskGatewayRequirement"]) == CALRISSIAN_KEYS
        assert {"DockerRequirement", "ResourceRequirement", "NetworkAccess"} <= set(req)
        assert graph[tool]["baseCommand"] == ["python", "-m", "cubemosaic"]


def test_the_workflow_is_what_calrissian_and_the_ogc_app_package_read():
    """Checked against Calrissian's dask-gateway branch (0.19.0: calrissian/dask/custom_schema/schema.yaml,
    dask.py, dask/init-dask.py) and the eoap dask-app-package's CWL."""
    doc = yaml.safe_load(CWL.read_text())
    assert doc["$namespaces"]["calrissian"] == "https://calrissian-cwl.github.io/schema#"
    assert doc["$namespaces"]["s"] == "https://schema.org/"
    assert doc["$schemas"] == ["http://schema.org/version/9.0/schemaorg-current-http.rdf"]
    for key in ("s:softwareVersion", "s:name", "s:description", "s:codeRepository", "s:license", "s:author"):
        assert doc.get(key), key
    import cubemosaic

    assert doc["s:softwareVersion"] == cubemosaic.__version__
    graph = {p["id"]: p for p in doc["$graph"]}
    for tool in ("cube", "mosaic"):
        # Calrissian runs a tool on the Gateway only when the requirement has exactly these five
        # fields (dask_req_validate); its init container parses memory with r"(\d+)([A-Za-z]+)" and
        # divides cores as integers.
        req = graph[tool]["requirements"]["calrissian:DaskGatewayRequirement"]
        for key in ("workerCores", "workerCoresLimit", "clusterMaxCores"):
            assert isinstance(req[key], int), key
        for key in ("workerMemory", "clusterMaxMemory"):
            assert re.fullmatch(r"\d+(G|M|GB|MB)", req[key]), req[key]
        image = graph[tool]["requirements"]["DockerRequirement"]["dockerPull"]
        assert image.endswith(f":{cubemosaic.__version__}"), "the tool's image is also the workers' image"
    # The workflow's Directory output holding the STAC catalog, as an OGC application package has it.
    assert graph["main"]["outputs"]["stac-catalog"]["type"] == "Directory"
    assert graph["mosaic"]["outputs"]["stac-catalog"]["outputBinding"]["glob"] == "."
