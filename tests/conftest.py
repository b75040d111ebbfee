"""Shared fixtures: the demo archive, CLI runs in subprocesses, a STAC API on loopback."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path

import pytest
import requests

from cubemosaic.demo import DemoArchive, ensure_demo

BANDS = {"red": "B04", "green": "B03", "blue": "B02", "nir": "B08"}

#: Fixtures that start a service on loopback or run the whole job in a subprocess.
SLOW_FIXTURES = {"demo_run", "gateway", "private_gateway", "s3", "stac_api", "full_disk"}
#: Calls in a test's body that start a process (the CLI, cwltool, a helper script, a server).
SLOW_CALLS = (
    "cli(",
    "_run(",
    "_run_main(",
    "_cwltool(",
    "subprocess.",
    "_export_peak_mb(",
    "_monthly(",
    "_loopback_gateway(",
    "Server(",
)


def pytest_collection_modifyitems(items):
    """Mark ``slow`` every test that starts a process or a service, so that the fast layer
    (``python -m pytest -m "not slow"``: the modules' own functions, in this process) runs alone."""
    import inspect

    for item in items:
        function = getattr(item, "function", None)
        source = inspect.getsource(function) if function is not None else ""
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())) or any(call in source for call in SLOW_CALLS):
            item.add_marker(pytest.mark.slow)


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


def wait_for_http(url: str, what: str, tries: int = 200) -> None:
    """Poll ``url`` until it answers 2xx (a server started on loopback is up)."""
    for _ in range(tries):
        try:
            if requests.get(url, timeout=1).ok:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"{what} did not start")


@contextmanager
def serve_stac(items_path: Path):
    """A real STAC API (``rustac serve``) on loopback serving ``items_path``; yields its URL."""
    exe = shutil.which("rustac") or str(Path(sys.executable).parent / "rustac")
    port = free_port()
    proc = subprocess.Popen(
        [exe, "serve", "--addr", f"127.0.0.1:{port}", str(items_path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_for_http(f"http://127.0.0.1:{port}", "rustac serve")
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture(scope="session")
def stac_api(demo) -> str:
    """The demo archive's items behind a real STAC API on loopback."""
    with serve_stac(demo.items_path) as url:
        yield url


def assert_same_cogs(expected: Path, got: Path) -> None:
    """The monthly COGs under ``got`` are those under ``expected`` (the demo's 4 months: 8 files):
    same band names, same pixels."""
    import numpy as np
    import rasterio

    tifs = sorted(expected.glob("monthly-mosaic-*/*.tif"))
    assert len(tifs) == 8
    for tif in tifs:
        with rasterio.open(tif) as a, rasterio.open(got / tif.relative_to(expected)) as b:
            assert a.descriptions == b.descriptions
            np.testing.assert_array_equal(a.read(), b.read())


def assert_monthly_matches_truth(
    monthly, truth, *, count: bool = True, nearest: bool = False, min_clear: float = 0.5
) -> None:
    """Every band of ``monthly`` (raw DN, ``cubemosaic.store.open_dn``) within 1 DN of the truth where the
    truth has a clear answer, nodata (0) where it has none, and (``count``) the same clear counts.
    ``nearest``: the truth pixel nearest each output pixel's centre (another resolution than 20 m);
    ``min_clear``: the share of pixels with a clear answer below which the comparison would prove little."""
    import numpy as np

    t = truth.sel(x=monthly.x.values, y=monthly.y.values, method="nearest" if nearest else None)
    for name, key in BANDS.items():
        got, expected = monthly[name].values.astype(np.float64), t[key].values
        clear = ~np.isnan(expected)
        assert clear.mean() > min_clear, name
        assert (got[~clear] == 0).all(), f"{name}: pixels without a clear observation must be nodata"
        assert (got[clear] >= 1).all(), f"{name}: clear pixels must never read as nodata 0"
        assert np.abs(got[clear] - expected[clear]).max() <= 1, name
    if count:
        np.testing.assert_array_equal(monthly["count"].values, t["count"].values)


def rehost_items(items: Path, root: Path, base: str, out: Path) -> Path:
    """``items`` with every asset file below ``root`` served at ``base``/<its path below root>; written to ``out``."""
    doc = json.loads(items.read_text())
    for feature in doc["features"]:
        for asset in feature["assets"].values():
            path = Path(asset["href"].removeprefix("file://"))
            if root in path.parents:
                asset["href"] = f"{base}/{path.relative_to(root).as_posix()}"
    out.write_text(json.dumps(doc))
    return out


def truncated_asset_items(demo, tmp_path: Path, index: int = 3, key: str = "B08") -> tuple[Path, dict]:
    """The demo's items with one asset replaced by a truncated copy: (items.json, the item)."""
    doc = json.loads(demo.items_path.read_text())
    item = doc["features"][index]
    src = item["assets"][key]["href"].removeprefix("file://")
    broken = tmp_path / f"{key}-truncated.tif"
    broken.write_bytes(Path(src).read_bytes()[:3000])
    item["assets"][key]["href"] = broken.as_uri()
    items = tmp_path / "items.json"
    items.write_text(json.dumps(doc))
    return items, item


class LoopbackGateway:
    """A running dask-gateway-server on loopback and the environment that points at it."""

    def __init__(self, address: str, password: str) -> None:
        self.address = address
        self.password = password
        #: Gateway clients and clusters opened by a test, closed at the end of the session.
        self.keep: list[object] = []

    @contextmanager
    def running_cluster(self):
        """A one-worker cluster started as Calrissian would; yields (cluster, transitions()).

        ``transitions()`` reads the scheduler's task-transition counter: proof that work ran there.
        """
        cluster = self.client().new_cluster()
        self.keep.append(cluster)
        try:
            cluster.scale(1)
            dask = cluster.get_client()
            dask.wait_for_workers(1, timeout=120)
            yield cluster, lambda: dask.run_on_scheduler(lambda dask_scheduler: dask_scheduler.transition_counter)
            dask.close()
        finally:
            cluster.shutdown()

    def close(self) -> None:
        from cubemosaic.cluster import close_gateway

        for obj in self.keep:
            close_gateway(getattr(obj, "gateway", obj))

    def env(self, **extra: str) -> dict[str, str]:
        return {
            "DASK_GATEWAY__ADDRESS": self.address,
            "DASK_GATEWAY__AUTH__TYPE": "basic",
            "DASK_GATEWAY__AUTH__KWARGS__USERNAME": "tester",
            "DASK_GATEWAY__AUTH__KWARGS__PASSWORD": self.password,
            **extra,
        }

    def client(self, password: str | None = None):
        from dask_gateway import BasicAuth, Gateway

        client = Gateway(self.address, auth=BasicAuth("tester", password or self.password))
        self.keep.append(client)
        return client


@contextmanager
def _loopback_gateway(workdir: Path, hidden: Path | None = None, default_commands: bool = False, **env: str):
    """A real dask-gateway-server on 127.0.0.1 run in ``workdir``; with ``hidden``, its workers
    each see an empty folder there instead of the client's; with ``default_commands``, it starts
    them with its defaults (``dask-scheduler``, ``dask-worker`` on PATH). ``env``: more environment
    for the server (``PATH`` and ``PYTHONPATH`` reach its schedulers and workers)."""
    exe = str(Path(sys.executable).parent / "dask-gateway-server")
    proxy_port, api_port = free_port(), free_port()
    password = "test-only-password"
    env = dict(
        os.environ,
        TEST_GATEWAY_API_PORT=str(api_port),
        TEST_GATEWAY_PROXY_PORT=str(proxy_port),
        TEST_GATEWAY_PASSWORD=password,
        TEST_GATEWAY_HIDDEN_DIR=str(hidden or ""),
        TEST_GATEWAY_DEFAULT_COMMANDS="1" if default_commands else "",
        **env,
    )
    log = open(workdir / "gateway.log", "w")
    config = Path(__file__).parent / "gateway_config.py"
    proc = subprocess.Popen(
        [exe, "-f", str(config)], cwd=workdir, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
    )
    address = f"http://127.0.0.1:{proxy_port}"
    try:
        wait_for_http(f"{address}/api/health", "dask-gateway-server")
        loopback = LoopbackGateway(address, password)
        yield loopback
        loopback.close()
    finally:
        os.killpg(proc.pid, 15)
        proc.wait(30)
        log.close()


@pytest.fixture(scope="session")
def gateway(tmp_path_factory):
    """A real Dask Gateway (dask-gateway-server, UnsafeLocalBackend) on 127.0.0.1 whose workers share our disk."""
    with _loopback_gateway(tmp_path_factory.mktemp("gateway")) as loopback:
        yield loopback


@pytest.fixture(scope="session")
def hidden_dir(tmp_path_factory) -> Path:
    """A folder the ``private_gateway``'s workers cannot see (each has an empty tmpfs over it)."""
    return tmp_path_factory.mktemp("hidden-from-workers")


@pytest.fixture(scope="session")
def private_gateway(tmp_path_factory, hidden_dir):
    """A real Dask Gateway whose workers, like Gateway pods on Kubernetes, do not see the job's
    disk: outputs put under ``hidden_dir`` are invisible to them (the demo assets stay readable).
    Mounting a tmpfs in a mount namespace needs root (as CI and the development machines run)."""
    if os.geteuid() != 0:
        pytest.skip("a gateway whose workers see no job folder needs root (unshare -m, mount -t tmpfs)")
    with _loopback_gateway(tmp_path_factory.mktemp("private-gateway"), hidden=hidden_dir) as loopback:
        yield loopback


@pytest.fixture(scope="session")
def s3(tmp_path_factory):
    """moto's S3 server on 127.0.0.1 with a bucket, and the environment that reaches it."""
    import boto3
    from moto.server import ThreadedMotoServer

    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    env = {
        "AWS_ACCESS_KEY_ID": "test-key",
        "AWS_SECRET_ACCESS_KEY": "test-secret",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}",
    }
    boto3.client(
        "s3",
        endpoint_url=env["AWS_ENDPOINT_URL"],
        aws_access_key_id="test-key",
        aws_secret_access_key="test-secret",
        region_name="us-east-1",
    ).create_bucket(Bucket="cubes")
    yield env
    server.stop()


def one_line_error(proc, *needles: str) -> str:
    """The run failed with one ``cubemosaic: error:`` line, its last, holding every needle; no traceback."""
    assert proc.returncode not in (0, None), proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("cubemosaic: error:")]
    assert len(errors) == 1, proc.stderr
    assert proc.stderr.rstrip().splitlines()[-1] == errors[0], "the error is the last line"
    for needle in needles:
        assert needle in errors[0], errors[0]
    return errors[0]


def small_mosaic(tmp_path: Path, names: tuple[str, ...], seed: int = 1):
    """A mosaic COG with bands ``names`` (distinct data each, no data in the first 10 rows) and its count."""
    import numpy as np
    import rasterio
    from affine import Affine

    rng = np.random.default_rng(seed)
    data = rng.integers(1, 3000, (len(names), 64, 80), dtype="uint16")
    data[:, :10] = 0
    profile = dict(
        driver="GTiff",
        width=80,
        height=64,
        count=len(names),
        dtype="uint16",
        nodata=0,
        crs="EPSG:32633",
        transform=Affine(10, 0, 0, 0, -10, 0),
    )
    with rasterio.open(tmp_path / "m.tif", "w", **profile) as dst:
        dst.write(data)
        dst.descriptions = names
    profile.update(count=1, nodata=None)
    with rasterio.open(tmp_path / "c.tif", "w", **profile) as dst:
        dst.write((data[:1] > 0).astype("uint16"))
    return tmp_path / "m.tif", tmp_path / "c.tif", data
