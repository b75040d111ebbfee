"""Servers on loopback for the tests: an asset server (range requests, failures on demand, a
token check, usable as GDAL's HTTP proxy for blob-storage hrefs) and a SAS-token stand-in."""

from __future__ import annotations

import datetime as dt
import json
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit


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
    - ``authorize(query) -> bool`` refuses requests (403, as Azure Blob Storage does) whose
      query string it does not accept;
    - every answer waits ``latency`` seconds (a distant server);
    - requests in proxy form (``GET http://host/path``, as GDAL sends them through
      ``GDAL_HTTP_PROXY``) are served from ``root/path``, whatever the host.
    """

    def __init__(
        self,
        root: Path,
        fail_every: int = 0,
        fail_how: str = "503",
        authorize: Callable[[str], bool] | None = None,
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
                if server.authorize and not server.authorize(url.query):
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

    Tokens work for ``lifetime`` seconds and, with ``uses``, for that many requests only: a
    count the stand-in keeps, so a test of expiring tokens does not depend on how fast the
    run or the machine is. The answer states ``stated_lifetime`` (by default ``lifetime``);
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
            self.containers.add((account, container))
        token = (
            f"st={start:%Y-%m-%dT%H:%M:%SZ}&se={stated:%Y-%m-%dT%H:%M:%SZ}&sp=rl&sv=2024-05-04&sr=c"
            f"&skoid={secrets.token_hex(4)}&sig={sig}"
        )
        return {"msft:expiry": expiry, "token": token}

    def valid(self, query: str) -> bool:
        """Whether ``query`` carries a token issued here that still works (and counts the use)."""
        sig = (parse_qs(query).get("sig") or [""])[0]
        with self._lock:
            until = self.issued.get(sig)
            if until is None or time.time() >= until:
                return False
            if self.uses is not None and self.used[sig] >= self.uses:
                return False
            self.used[sig] += 1
            return True
