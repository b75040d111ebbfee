"""Servers on loopback, for the tests and the benchmarks alike: an asset server (range requests,
failures on demand, a token check, usable as GDAL's HTTP proxy for blob-storage hrefs), a
SAS-token stand-in, a STAC API (``rustac serve``), a Dask Gateway (dask-gateway-server) and an
S3 server (moto). Each picks a free port on 127.0.0.1, so several test processes can run them at
once. Nothing here is a pytest fixture: tests/conftest.py wraps them in fixtures; the benchmarks
import them with ``tests/`` on ``sys.path``."""

from __future__ import annotations

import datetime as dt
import json
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import requests


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
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


class _Server:
    """A threading HTTP server on 127.0.0.1 with a free port, as a context manager."""

    def _start(self, handler: type[BaseHTTPRequestHandler]) -> None:
        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()


class AssetServer(_Server):
    """Serves files under ``root`` with HTTP range requests.

    - every ``fail_every``-th request fails: with the HTTP status ``fail_how`` ("503", "429",
      ...), or with ``fail_how="drop"`` the connection is reset without an answer;
    - ``authorize(query, path) -> bool`` refuses requests (403, as Azure Blob Storage does) whose
      query string it does not accept for that file;
    - every answer waits ``latency`` seconds (a distant server);
    - requests in proxy form (``GET http://host/path``, as GDAL sends them through
      ``GDAL_HTTP_PROXY``) are served from ``root/path``, whatever the host.
    """

    def __init__(
        self,
        root: Path,
        fail_every: int = 0,
        fail_how: str = "503",
        authorize: Callable[[str, str], bool] | None = None,
        latency: float = 0.0,
    ) -> None:
        self.root = root
        self.latency = latency
        self.fail_every = fail_every
        self.fail_how = fail_how
        self.authorize = authorize
        self.requests = 0
        self.failed = 0
        self.refused = 0
        #: Bytes of file content sent (what the clients read over the network).
        self.bytes_served = 0
        self.hosts: set[str] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:  # quiet
                pass

            def do_HEAD(self) -> None:
                self._serve(body=False)

            def do_GET(self) -> None:
                self._serve(body=True)

            def _empty(self, status: int, text: str = "") -> None:
                payload = text.encode()
                self.send_response(status)
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def _serve(self, body: bool) -> None:
                url = urlsplit(self.path)
                time.sleep(server.latency)
                with server._lock:
                    server.requests += 1
                    server.hosts.add(url.hostname or self.headers.get("Host", ""))
                    fail = server.fail_every and server.requests % server.fail_every == 0
                    server.failed += bool(fail)
                if fail and server.fail_how == "drop":  # a reset connection, as a load balancer drops one
                    self.close_connection = True
                    self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                    self.connection.close()
                    return
                if fail:
                    return self._empty(int(server.fail_how))
                if server.authorize and not server.authorize(url.query, url.path):
                    with server._lock:
                        server.refused += 1
                    return self._empty(403, "AuthenticationFailed: Signature not valid in the specified time frame")
                path = server.root / url.path.lstrip("/")
                if not path.is_file():
                    return self._empty(404)
                data = path.read_bytes()
                start, end = 0, len(data) - 1
                ranged = self.headers.get("Range", "").startswith("bytes=")
                if ranged:
                    first, _, last = self.headers["Range"][6:].split(",")[0].partition("-")
                    start = int(first or 0)
                    end = min(int(last), len(data) - 1) if last else len(data) - 1
                self.send_response(206 if ranged else 200)
                self.send_header("Accept-Ranges", "bytes")
                self.send_header("Content-Length", str(end - start + 1))
                if ranged:
                    self.send_header("Content-Range", f"bytes {start}-{end}/{len(data)}")
                self.end_headers()
                if body:
                    self.wfile.write(data[start : end + 1])
                    with server._lock:
                        server.bytes_served += end - start + 1

        self._start(Handler)


class SasTokenStandIn(_Server):
    """The Planetary Computer's SAS endpoint (``GET <url>/<account>/<container>``) on loopback.

    Tokens work for ``lifetime`` seconds and, with ``uses``, for reads they start within their
    first ``uses`` requests only: a count the stand-in keeps, so a test of expiring tokens does
    not depend on how fast the run or the machine is. A used-up token is refused for a file it
    has not served yet, and still served for one it has: it expires between reads, never within
    one, as a real token (an hour long) does for reads of milliseconds. (Refused within a read,
    the fresh token a retry just fetched could be used up by the other threads sharing it
    before the retry's last request, on a loaded machine only.) The answer states ``stated_lifetime`` (by default ``lifetime``);
    the planetary-computer package renews a token whose stated expiry is less than 60 s away,
    so a stated lifetime under 60 s makes it fetch a new token on every signing, whatever the
    clock. A ``key`` makes it require that ``Ocp-Apim-Subscription-Key`` (401 otherwise).
    """

    def __init__(
        self,
        lifetime: float = 3600.0,
        stated_lifetime: float | None = None,
        key: str | None = None,
        uses: int | None = None,
    ) -> None:
        self.lifetime = lifetime
        self.stated_lifetime = lifetime if stated_lifetime is None else stated_lifetime
        self.key = key
        self.uses = uses
        self.issued: dict[str, float] = {}  # signature -> time it stops working
        self.used: dict[str, int] = {}  # signature -> requests it authorized
        self.files: dict[str, set[str]] = {}  # signature -> paths it has served
        self.containers: set[tuple[str, str]] = set()
        self.keys_seen: set[str | None] = set()
        self._lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                *_, account, container = self.path.rstrip("/").split("/")
                key = self.headers.get("Ocp-Apim-Subscription-Key")
                with server._lock:
                    server.keys_seen.add(key)
                if server.key and key != server.key:
                    payload = b'{"message": "Access denied due to invalid subscription key."}'
                    self.send_response(401)
                else:
                    payload = json.dumps(server._issue(account, container)).encode()
                    self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

        self._start(Handler)
        self.url = f"{self.url}/api/sas/v1/token"

    def _issue(self, account: str, container: str) -> dict:
        now = time.time()
        sig = secrets.token_hex(16)
        stated = dt.datetime.fromtimestamp(now + self.stated_lifetime, dt.timezone.utc)
        start = dt.datetime.fromtimestamp(now, dt.timezone.utc)
        expiry = stated.isoformat(timespec="milliseconds").replace("+00:00", "Z")
        with self._lock:
            self.issued[sig] = now + self.lifetime
            self.used[sig] = 0
            self.files[sig] = set()
            self.containers.add((account, container))
        token = (
            f"st={start:%Y-%m-%dT%H:%M:%SZ}&se={stated:%Y-%m-%dT%H:%M:%SZ}&sp=rl&sv=2024-05-04&sr=c"
            f"&skoid={secrets.token_hex(4)}&sig={sig}"
        )
        return {"msft:expiry": expiry, "token": token}

    def valid(self, query: str, path: str = "") -> bool:
        """Whether ``query`` carries a token issued here that still works for the file at ``path``
        (and counts the use)."""
        sig = (parse_qs(query).get("sig") or [""])[0]
        with self._lock:
            until = self.issued.get(sig)
            if until is None or time.time() >= until:
                return False
            started = path in self.files[sig]
            if self.uses is not None and self.used[sig] >= self.uses and not started:
                return False
            self.used[sig] += 1
            self.files[sig].add(path)
            return True


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
def loopback_gateway(workdir: Path, hidden: Path | None = None, default_commands: bool = False, **env: str):
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


@contextmanager
def moto_s3(bucket: str = "cubes") -> Iterator[dict[str, str]]:
    """moto's S3 server on 127.0.0.1 with ``bucket``; yields the environment that reaches it."""
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
    try:
        boto3.client(
            "s3",
            endpoint_url=env["AWS_ENDPOINT_URL"],
            aws_access_key_id="test-key",
            aws_secret_access_key="test-secret",
            region_name="us-east-1",
        ).create_bucket(Bucket=bucket)
        yield env
    finally:
        server.stop()
