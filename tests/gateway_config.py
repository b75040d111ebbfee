"""dask-gateway-server config for the tests: a real gateway on loopback (UnsafeLocalBackend).

Ports and the password come from the environment the fixture sets. Cluster options mirror
what Calrissian's gateway exposes (worker_cores, worker_cores_limit, worker_memory, image).
"""

import os
import sys

from dask_gateway_server.options import Float, Options, String

c = get_config()  # noqa: F821  (traitlets injects get_config)
bindir = os.path.dirname(sys.executable)
c.DaskGateway.address = f"127.0.0.1:{os.environ['TEST_GATEWAY_API_PORT']}"
c.Proxy.address = f"127.0.0.1:{os.environ['TEST_GATEWAY_PROXY_PORT']}"
c.DaskGateway.backend_class = "dask_gateway_server.backends.local.UnsafeLocalBackend"
c.DaskGateway.authenticator_class = "dask_gateway_server.auth.SimpleAuthenticator"
c.SimpleAuthenticator.password = os.environ["TEST_GATEWAY_PASSWORD"]
if not os.environ.get("TEST_GATEWAY_DEFAULT_COMMANDS"):
    c.ClusterConfig.scheduler_cmd = [os.path.join(bindir, "dask"), "scheduler"]
    c.ClusterConfig.worker_cmd = [os.path.join(bindir, "dask"), "worker"]
# else: dask-gateway-server's defaults, `dask-scheduler` and `dask-worker` found on PATH, as a
# stock gateway (and its Helm chart) starts them.
if os.environ.get("TEST_GATEWAY_HIDDEN_DIR"):
    # Each worker gets a private, empty view of this folder, as a Gateway worker pod does of the
    # job's volume: its own mount namespace with an empty tmpfs over it (needs root).
    hidden = os.environ["TEST_GATEWAY_HIDDEN_DIR"]
    c.ClusterConfig.worker_cmd = [
        "unshare", "-m", "--propagation", "private", "sh", "-c",
        f'mount -t tmpfs tmpfs "{hidden}" && exec "{bindir}/dask" worker "$@"', "sh",
    ]  # fmt: skip
c.ClusterConfig.idle_timeout = 600
c.Backend.cluster_options = Options(
    Float("worker_cores", default=1, min=0.1, max=4),
    Float("worker_cores_limit", default=1, min=0.1, max=4),
    String("worker_memory", default="1 G"),
    String("image", default=""),
    handler=lambda options: {"worker_cores": max(1, int(options.worker_cores)), "worker_memory": options.worker_memory},
)
