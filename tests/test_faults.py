"""Faults a careful user and a platform meet (issue 21): a run owns what it writes, damaged
intermediates are found, malformed input is named; never an exit 0 with a wrong output."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import assert_same_cogs, cli, one_line_error


def _settings(tmp_path: Path, *overrides: str):
    from cubemosaic.__main__ import compose
    from cubemosaic.config import to_settings

    return to_settings(compose(["catalog=demo", f"output_dir={tmp_path / 'out'}", *overrides]))


def _finished_copy(demo_run: Path, out: Path, *, keep_exports: bool = False) -> Path:
    """A copy of the demo's finished output; without its monthly store and exports unless kept."""
    shutil.copytree(demo_run, out)
    if not keep_exports:
        shutil.rmtree(out / "monthly.zarr")
        for folder in out.glob("monthly-mosaic-*"):
            shutil.rmtree(folder)
        for name in ("catalog.json", "overview.png"):
            (out / name).unlink(missing_ok=True)
    return out


# --------------------------------------------------------------------------- what a run owns
def _started(out: Path, *overrides: str) -> subprocess.Popen:
    """A demo run, stopped (SIGSTOP) once it has written its first cube steps: it holds everything."""
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}", *overrides]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=out.parent, env=dict(os.environ))
    assert proc.stderr is not None
    for line in proc.stderr:
        if "written [1/" in line:
            os.kill(proc.pid, signal.SIGSTOP)
            return proc
    raise AssertionError(f"the run ended before it wrote a step: {proc.wait()}")


def test_a_run_owns_its_zarr_dir_another_output_dir_refuses_and_overwrite_removes_nothing(demo_run, tmp_path):
    """Two runs with different output folders and one zarr_dir: the second (with overwrite=true)
    refuses in one line naming the first, removes nothing; the first ends correct; the second,
    rerun once the first is done, resumes from the shared stores and is correct too."""
    zarr_dir = tmp_path / "stores"
    first = _started(tmp_path / "a", f"zarr_dir={zarr_dir}")
    try:
        second = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}", "overwrite=true"],
                     cwd=tmp_path)  # fmt: skip
        one_line_error(second, f"zarr_dir: {zarr_dir} is in use by another cubemosaic run (pid {first.pid} on ")
        assert "replacing" not in second.stderr
        assert (zarr_dir / "cube.zarr" / "zarr.json").is_file()
    finally:
        os.kill(first.pid, signal.SIGCONT)
    _, rest = first.communicate(timeout=300)
    assert first.returncode == 0, rest
    assert_same_cogs(demo_run, tmp_path / "a")

    again = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert "0 day(s) to write" in again.stderr and "0 to compute" in again.stderr
    assert_same_cogs(demo_run, tmp_path / "b")


def test_a_killed_holder_frees_zarr_dir(demo_run, tmp_path):
    """The kernel releases the lock with the process: a run SIGKILLed while it holds zarr_dir
    leaves it free, and a run from another output folder resumes its stores, correct."""
    zarr_dir = tmp_path / "stores"
    first = _started(tmp_path / "a", f"zarr_dir={zarr_dir}")
    first.kill()
    first.communicate(timeout=60)
    second = cli(["catalog=demo", f"output_dir={tmp_path / 'b'}", f"zarr_dir={zarr_dir}"], cwd=tmp_path)
    assert second.returncode == 0, second.stderr
    assert "resuming cube.zarr" in second.stderr
    assert_same_cogs(demo_run, tmp_path / "b")


def test_what_a_run_holds_by_stage(tmp_path):
    """Written folders exclusively, read-only ones shared, each once; output_dir first."""
    from cubemosaic.pipeline import owned

    out, stores, cubes = tmp_path / "out", tmp_path / "stores", tmp_path / "cubes"
    assert owned(_settings(tmp_path)) == [("output_dir", str(out), False)]
    assert owned(_settings(tmp_path, f"zarr_dir={stores}")) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
    ]
    (cubes / "c.zarr").mkdir(parents=True)
    (cubes / "c.zarr" / "zarr.json").write_text("{}")
    mosaic = _settings(tmp_path, f"zarr_dir={stores}", f"cube_url={cubes / 'c.zarr'}", "stage=mosaic")
    assert owned(mosaic) == [
        ("output_dir", str(out), False),
        ("zarr_dir", str(stores), False),
        ("cube_url", str(cubes), True),
    ]
    export = _settings(tmp_path, f"zarr_dir={stores}", "stage=export")
    assert owned(export) == [("output_dir", str(out), False), ("zarr_dir", str(stores), True)]
    on_s3 = _settings(tmp_path, "zarr_dir=s3://bucket/x", "stage=export")
    assert owned(on_s3) == [("output_dir", str(out), False), ("zarr_dir", "s3://bucket/x", False)]


def test_readers_share_a_folder_a_writer_waits_for_none_of_them(tmp_path):
    """Locks of one folder: readers together, no writer beside a reader or a writer; the refusal
    names the parameter and the holder."""
    from cubemosaic.errors import OutputError
    from cubemosaic.lock import run_lock

    with run_lock(tmp_path, parameter="zarr_dir", shared=True), run_lock(tmp_path, parameter="zarr_dir", shared=True):
        with pytest.raises(OutputError, match=r"zarr_dir: .* in use by another cubemosaic run \(one or more runs "
                           "reading its stores\\); .* choose another zarr_dir"):  # fmt: skip
            with run_lock(tmp_path, parameter="zarr_dir"):
                pass
    with run_lock(tmp_path, parameter="zarr_dir"):
        with pytest.raises(OutputError, match=rf"cube_url: .* \(pid {os.getpid()} on "):
            with run_lock(tmp_path, parameter="cube_url", shared=True):
                pass
    read_only = tmp_path / "input"
    read_only.mkdir()
    read_only.chmod(0o555)
    if os.geteuid() != 0:  # root writes anyway
        with run_lock(read_only, parameter="cube_url", shared=True):
            pass  # a folder no run can write: read without a lock


# --------------------------------------------------------------------------- damaged intermediates
def _shard(store: Path, variable: str, step: int) -> Path:
    """The first shard file of ``step`` of ``variable`` (one with data)."""
    shard = store / variable / "c" / str(step) / "0" / "0"
    assert shard.is_file() and shard.stat().st_size > 100
    return shard


def test_a_deleted_cube_shard_is_found_at_resume_and_written_again(demo_run, tmp_path):
    out = _finished_copy(demo_run, tmp_path / "out")
    _shard(out / "cube.zarr", "green", 5).unlink()
    proc = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "step 6 of cube.zarr is recorded as done but 1 of its" in proc.stderr
    assert "1 day(s) to write" in proc.stderr
    assert_same_cogs(demo_run, out)


def test_a_truncated_cube_shard_is_named_by_the_stage_that_reads_it(demo_run, tmp_path):
    """stage=mosaic cannot write the cube: one line naming the store and the step; stage=all
    then writes the step again and the outputs are correct."""
    out = _finished_copy(demo_run, tmp_path / "out")
    shard = _shard(out / "cube.zarr", "red", 9)
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=mosaic"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'cube.zarr'}: step 10 is recorded as done but its shards hold",
                   "run stage=cube")  # fmt: skip
    assert not (out / "monthly.zarr").exists()
    fixed = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "1 day(s) to write" in fixed.stderr
    assert_same_cogs(demo_run, out)


def test_a_deleted_monthly_shard_is_named_by_the_export_and_computed_again(demo_run, tmp_path):
    out = _finished_copy(demo_run, tmp_path / "out", keep_exports=True)
    _shard(out / "monthly.zarr", "nir", 1).unlink()
    shutil.rmtree(out / "monthly-mosaic-2022-01")
    proc = cli(["catalog=demo", f"output_dir={out}", "stage=export"], cwd=tmp_path)
    one_line_error(proc, f"zarr_dir: {out / 'monthly.zarr'}: step 2 is recorded as done", "run stage=mosaic")
    assert not (out / "monthly-mosaic-2022-01").exists()
    fixed = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert fixed.returncode == 0, fixed.stderr
    assert "step 2 of monthly.zarr is recorded as done but" in fixed.stderr and "1 to compute" in fixed.stderr
    assert_same_cogs(demo_run, out)


def test_the_record_holds_what_each_step_wrote(demo_run, tmp_path):
    """Per step: its shard objects and their bytes, as the files are; nothing damaged in a finished store."""
    from cubemosaic.store import damaged_steps, read_attrs

    for name in ("cube.zarr", "monthly.zarr"):
        store = demo_run / name
        attrs = read_attrs(str(store))
        assert sorted(map(int, attrs["written"])) == attrs["done"] == list(range(attrs["steps"]))
        for step, (objects, size) in attrs["written"].items():
            files = [p for v in attrs["variables"] for p in (store / v / "c" / step).rglob("*") if p.is_file()]
            assert objects == len(files) and size == sum(p.stat().st_size for p in files)
        assert damaged_steps(str(store)) == {}


# --------------------------------------------------------------------------- zarr_dir URLs
def test_zarr_dir_as_a_file_url_is_the_folder(tmp_path):
    stores = tmp_path / "my stores"
    assert _settings(tmp_path, f"zarr_dir={stores.as_uri()}").zarr_dir == str(stores)
    assert stores.is_dir()
    cube = tmp_path / "c.zarr"
    cube.mkdir()
    (cube / "zarr.json").write_text("{}")
    assert _settings(tmp_path, f"cube_url={cube.as_uri()}", "stage=mosaic").cube_url == str(cube)


def test_a_run_with_zarr_dir_as_a_file_url(demo_run, tmp_path):
    stores = tmp_path / "stores"
    proc = cli(["catalog=demo", f"output_dir={tmp_path / 'out'}", f"zarr_dir={stores.as_uri()}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert (stores / "cube.zarr" / "zarr.json").is_file() and (stores / "monthly.zarr" / "zarr.json").is_file()
    assert_same_cogs(demo_run, tmp_path / "out")


@pytest.mark.parametrize(
    ("zarr_dir", "needles"),
    [
        ("memory://stores", ["zarr_dir: memory:// keeps the stores in this process only"]),
        ("{file}", ["zarr_dir: ", "exists and is not a folder"]),
        ("{file}/below", ["zarr_dir: ", "not writable"]),
    ],
)
def test_zarr_dir_that_cannot_hold_stores_is_refused_as_zarr_dir(tmp_path, zarr_dir, needles):
    from cubemosaic.errors import ConfigError

    blocker = tmp_path / "a-file"
    blocker.write_text("mine")
    with pytest.raises(ConfigError) as e:
        _settings(tmp_path, f"zarr_dir={zarr_dir.format(file=blocker)}")
    for needle in needles:
        assert needle in str(e.value)
    assert "output_dir" not in str(e.value) and e.value.exit_code == 2
    assert blocker.read_text() == "mine"


# --------------------------------------------------------------------------- malformed items
def _drop(feature: dict, *path: str) -> None:
    for key in path[:-1]:
        feature = feature[key]
    del feature[path[-1]]


def _set(value):
    def change(feature: dict, *path: str) -> None:
        for key in path[:-1]:
            feature = feature[key]
        feature[path[-1]] = value

    return change


@pytest.mark.parametrize(
    ("change", "path", "needle"),
    [
        (_drop, ("properties", "datetime"), "has no datetime (nor start_datetime and end_datetime)"),
        (_set(None), ("properties", "datetime"), "has no datetime"),
        (_set("yesterday"), ("properties", "datetime"), "datetime 'yesterday' is not a date-time"),
        (_set(None), ("assets", "B04", "href"), "asset 'B04' has no href"),
        (_set(None), ("assets", "SCL", "href"), "asset 'SCL' has no href"),
        (_set(""), ("assets", "B08", "href"), "asset 'B08' has no href"),
        (_set(None), ("geometry",), "has no geometry"),
        (_drop, ("geometry",), "has no geometry"),
        (_set({"type": "Polygon", "coordinates": []}), ("geometry",), "has no geometry"),
    ],
)
def test_a_malformed_item_is_named_by_its_id_before_any_read(demo, tmp_path, change, path, needle):
    import datetime as dt
    import json

    from cubemosaic.catalog import SearchRequest, search
    from cubemosaic.errors import CatalogError

    doc = json.loads(demo.items_path.read_text())
    item = doc["features"][2]
    change(item, *path)
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
    with pytest.raises(CatalogError) as e:
        search(str(items), request)
    assert str(e.value).startswith(f"catalog.url: item {item['id']} in {items}")
    assert needle in str(e.value) and "\n" not in str(e.value)


def test_an_item_without_an_id_is_named_by_its_catalog(demo, tmp_path):
    import json

    doc = json.loads(demo.items_path.read_text())
    del doc["features"][0]["id"]
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    proc = cli(["catalog=demo", f"catalog.url={items}", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, f"catalog.url: an item of {items} has no id")
    assert not (tmp_path / "out" / "cube.zarr").exists()


# --------------------------------------------------------------------------- failing searches
class _PagedAPI:
    """A STAC API on loopback answering a search in two pages (the demo's items split in half),
    whose second page fails with ``status`` the first ``failures`` times it is asked for."""

    def __init__(self, features: list[dict], status: int, failures: int) -> None:
        import json
        import threading
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        api = self
        self.second_page_requests = 0
        half = len(features) // 2

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args):  # quiet
                pass

            def _send(self, code: int, doc: dict | None = None) -> None:
                body = json.dumps(doc).encode() if doc is not None else b""
                self.send_response(code)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                base = f"http://127.0.0.1:{api.port}"
                if self.path.startswith("/search") and "page=2" in self.path:
                    api.second_page_requests += 1
                    if api.second_page_requests <= failures:
                        return self._send(status)
                    return self._send(200, {"type": "FeatureCollection", "features": features[half:], "links": []})
                if self.path.startswith("/search"):
                    return self._first_page(base)
                landing = {
                    "type": "Catalog",
                    "id": "paged",
                    "description": "two pages",
                    "stac_version": "1.0.0",
                    "conformsTo": [
                        "https://api.stacspec.org/v1.0.0/core",
                        "https://api.stacspec.org/v1.0.0/item-search",
                    ],
                    "links": [
                        {"rel": "self", "href": base, "type": "application/json"},
                        {"rel": "root", "href": base, "type": "application/json"},
                        {"rel": "search", "href": f"{base}/search", "type": "application/geo+json", "method": "GET"},
                    ],
                }
                return self._send(200, landing)

            def do_POST(self):
                self.rfile.read(int(self.headers.get("Content-Length") or 0))
                return self._first_page(f"http://127.0.0.1:{api.port}")

            def _first_page(self, base: str) -> None:
                next_page = {"rel": "next", "href": f"{base}/search?page=2", "method": "GET"}
                self._send(200, {"type": "FeatureCollection", "features": features[:half], "links": [next_page]})

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.mark.parametrize(("status", "failures"), [(503, 2), (429, 1), (502, 4)])
def test_a_transient_failure_on_the_second_page_is_retried(demo, monkeypatch, status, failures):
    import datetime as dt
    import json

    from cubemosaic import catalog
    from cubemosaic.catalog import SearchRequest, search

    monkeypatch.setattr(catalog, "SEARCH_BACKOFF_S", 0.01)
    features = json.loads(demo.items_path.read_text())["features"]
    api = _PagedAPI(features, status, failures)
    try:
        request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
        found = search(api.url, request)
    finally:
        api.close()
    assert api.second_page_requests == failures + 1
    assert [it.id for it in found] == [it.id for it in search(str(demo.items_path), request)]
    assert len(found) == len(features)


def test_a_search_that_keeps_failing_names_the_status(demo, monkeypatch):
    import datetime as dt
    import json

    from cubemosaic import catalog
    from cubemosaic.catalog import SearchRequest, search
    from cubemosaic.errors import CatalogError

    monkeypatch.setattr(catalog, "SEARCH_BACKOFF_S", 0.01)
    features = json.loads(demo.items_path.read_text())["features"]
    api = _PagedAPI(features, 503, 1000)
    try:
        request = SearchRequest("sentinel-2-l2a", demo.bbox_lonlat(), dt.date(2021, 12, 1), dt.date(2022, 3, 31))
        with pytest.raises(CatalogError) as e:
            search(api.url, request)
    finally:
        api.close()
    assert (
        str(e.value) == f"catalog.url: {api.url} refused the search (HTTP 503 after {catalog.SEARCH_RETRIES + 1} tries)"
    )
    assert api.second_page_requests == catalog.SEARCH_RETRIES + 1


# --------------------------------------------------------------------------- cluster settings
@pytest.mark.parametrize(
    ("overrides", "env", "needle"),
    [
        (["cluster.processes=true", "cluster.memory_limit=lots"], {}, "cluster.memory_limit: 'lots' is not an amount"),
        (["cluster.memory_limit=-1"], {}, "cluster.memory_limit: '-1' is not an amount"),
        (["cluster=gateway", "cluster.worker_memory=lots"], {}, "cluster.worker_memory: 'lots' is not"),
        (["cluster.max_memory=0"], {}, "cluster.max_memory: '0G' is not"),
        ([], {"DASK_GATEWAY_WORKER_MEMORY": "plenty"}, "DASK_GATEWAY_WORKER_MEMORY: 'plenty' is not"),
    ],
)
def test_memory_sizes_are_validated_with_the_rest(tmp_path, monkeypatch, overrides, env, needle):
    from cubemosaic.errors import ConfigError

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ConfigError) as e:
        _settings(tmp_path, *overrides)
    assert str(e.value).startswith(needle) and e.value.exit_code == 2


@pytest.mark.parametrize("value", ["auto", "4GB", "0.5", "2e9", "0", "1.5 GiB"])
def test_memory_limits_that_are_sizes_pass(tmp_path, value):
    limit = _settings(tmp_path, "cluster.processes=true", f"cluster.memory_limit={value}").cluster.memory_limit
    assert (
        float(limit) == float(value) if value[0].isdigit() and " " not in value and "B" not in value else limit == value
    )


def test_a_bad_memory_limit_stops_before_the_search(tmp_path):
    proc = cli(["catalog=demo", "cluster.processes=true", "cluster.memory_limit=lots", f"output_dir={tmp_path}"],
               cwd=tmp_path)  # fmt: skip
    one_line_error(proc, "cluster.memory_limit: 'lots'")
    assert proc.returncode == 2 and "search" not in proc.stderr and "demo:" not in proc.stderr


@pytest.mark.parametrize(
    ("overrides", "env", "needles"),
    [
        (
            ["cluster.processes=true", "cluster.memory_limit=2GB"],
            {},
            ["cluster.memory_limit=2GB", "raise cluster.memory_limit"],
        ),
        (
            ["cluster.processes=true"],
            {},
            ["cluster.memory_limit=auto (the machine's memory", "raise cluster.memory_limit"],
        ),
        (["cluster=gateway"], {"DASK_GATEWAY_WORKER_MEMORY": "4G"}, ["worker_memory=4G", "DASK_GATEWAY_WORKER_MEMORY"]),
    ],
)
def test_a_worker_killed_for_memory_is_one_line_naming_the_limit(tmp_path, monkeypatch, overrides, env, needles):
    from distributed import KilledWorker

    from cubemosaic.cluster import worker_failures
    from cubemosaic.errors import ClusterError

    for key, value in env.items():
        monkeypatch.setenv(key, value)
    spec = _settings(tmp_path, *overrides).cluster
    with pytest.raises(ClusterError) as e, worker_failures(spec, client=object()):
        raise KilledWorker("('month-abc', 0, 0, 0)", "tcp://127.0.0.1:1234", 3)
    line = str(e.value)
    assert line.startswith("cluster: Dask workers died running ('month-abc', 0, 0, 0) (KilledWorker)")
    assert "\n" not in line and all(n in line for n in needles), line


def test_a_worker_killed_for_memory_on_a_real_cluster(tmp_path):
    """A local cluster whose one worker process may use 120 MB: its nanny kills it under the first
    tasks, as often as distributed allows; the run ends in one line naming the limit."""
    proc = cli(["catalog=demo", "cluster.processes=true", "cluster.memory_limit=120MB", f"output_dir={tmp_path}"],
               cwd=tmp_path, timeout=600)  # fmt: skip
    one_line_error(proc, "cluster: Dask workers died running", "(KilledWorker)", "cluster.memory_limit=120MB")
    assert proc.returncode == 1


# --------------------------------------------------------------------------- degenerate grids
@pytest.mark.parametrize(
    "aoi", ["[-122.3,47.55,-122.2999,47.5501]", "[-122.3,47.55,-122.2999,47.5503]", "[-122.3,47.55,-122.29,47.5501]"]
)
def test_an_area_under_a_pixel_is_refused_before_the_search(tmp_path, aoi):
    from cubemosaic.errors import ConfigError

    with pytest.raises(ConfigError) as e:
        _settings(tmp_path, f"aoi={aoi}", "resolution=20")
    assert str(e.value).startswith("aoi: the area is ") and "under 2 pixels on a side at resolution=20;" in str(e.value)
    assert _settings(tmp_path, f"aoi={aoi}", "resolution=5").resolution == 5  # four times finer: two pixels at least


def test_a_grid_under_two_pixels_is_refused_before_any_read(tmp_path):
    """In a CRS whose units are not metres the area's extent says nothing: the grid itself is checked."""
    proc = cli(["catalog=demo", "crs=EPSG:4326", "resolution=1", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    one_line_error(proc, "aoi: the area is", "(a grid of 1 x 1 pixels), under 2 pixels on a side at resolution=1;")
    assert not (tmp_path / "out" / "cube.zarr").exists()


def test_the_smallest_grid_is_written(demo, tmp_path):
    """2 x 2 pixels: COGs and catalog, as for any area."""
    proc = cli(["catalog=demo", "aoi=[-122.3,47.55,-122.2997,47.5502]", f"output_dir={tmp_path / 'out'}"], cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "grid 2x2 at 20 m" in proc.stderr and (tmp_path / "out" / "catalog.json").is_file()
    assert len(list((tmp_path / "out").glob("monthly-mosaic-*/*.tif"))) == 8


# --------------------------------------------------------------------------- the demo's cache
@pytest.mark.parametrize("damage", ["items.json", "asset", "truth"])
def test_an_incomplete_demo_cache_is_generated_again(demo, tmp_path, damage):
    from cubemosaic.demo import ensure_demo

    cache = tmp_path / "cache"
    shutil.copytree(demo.root, cache / demo.root.name)
    copy = cache / demo.root.name
    items = (demo.items_path.read_text()).replace(demo.root.as_uri(), copy.as_uri())
    (copy / "items.json").write_text(items)
    if damage == "items.json":
        (copy / "items.json").unlink()
    elif damage == "asset":
        next(copy.rglob("B04.tif")).unlink()
    else:
        shutil.rmtree(copy / "truth.zarr")
    archive = ensure_demo(cache_dir=cache)
    assert archive.root == copy and archive.items_path.is_file() and (archive.truth_path / "zarr.json").is_file()
    assert len(list(copy.rglob("B04.tif"))) == len(list(demo.root.rglob("B04.tif")))
    assert [p.name for p in cache.iterdir()] == [copy.name], "nothing left beside it"


def test_a_demo_cache_that_is_a_file_is_one_line(tmp_path):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("mine")
    proc = cli(
        ["catalog=demo", f"output_dir={tmp_path / 'out'}"], env={"CUBEMOSAIC_DEMO_DIR": str(blocker)}, cwd=tmp_path
    )
    one_line_error(proc, f"CUBEMOSAIC_DEMO_DIR: cannot write the demo archive into {blocker}")
    assert blocker.read_text() == "mine"


# --------------------------------------------------------------------------- interrupts
@pytest.mark.parametrize("marker", ["cube: 18 solar day(s)", "written [1/18]"])
def test_ctrl_c_with_worker_processes_is_one_line_and_the_rerun_resumes(demo_run, tmp_path, marker):
    """Ctrl-C reaches the whole process group (the worker processes too): exit 130 and the one
    line, no worker traceback nor asyncio's "Task exception was never retrieved"."""
    import re
    import time

    out = tmp_path / "out"
    args = [sys.executable, "-m", "cubemosaic", "catalog=demo", f"output_dir={out}", "cluster.processes=true"]
    proc = subprocess.Popen(args, stderr=subprocess.PIPE, text=True, cwd=tmp_path, start_new_session=True)
    assert proc.stderr is not None
    for line in proc.stderr:
        if marker in line:
            time.sleep(1)
            os.killpg(proc.pid, signal.SIGINT)
            break
    rest = proc.stderr.read()
    assert proc.wait(120) == 130, rest
    others = [line for line in rest.splitlines() if not re.match(r"\d\d:\d\d:\d\d cubemosaic: ", line)]
    assert others == ["cubemosaic: interrupted; run the same command again to resume"], rest
    again = cli(["catalog=demo", f"output_dir={out}"], cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert_same_cogs(demo_run, out)
