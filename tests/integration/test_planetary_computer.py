"""The Planetary Computer path offline: a SAS-token stand-in and a blob server on loopback.

Items carry blob-storage hrefs (``http://<account>.blob.core.windows.net/<container>/...``),
as the Planetary Computer's do; the planetary-computer package signs them with tokens from
``PC_SDK_SAS_URL`` (the stand-in), and GDAL reaches the "blob storage" through
``GDAL_HTTP_PROXY`` (the asset server, which answers only requests with a working token).
Tokens stop working for new reads after a number of requests (a count the stand-in keeps, not the
clock), so a run outlives several of them however fast or loaded the machine is; the server
answers after 20 ms.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from conftest import assert_monthly_matches_truth, assert_same_cogs, cli
from servers import AssetServer, SasTokenStandIn, rehost_items

ACCOUNT, CONTAINER = "sentinel2l2a01", "sentinel2-l2"
DEMO_AREA = ["start_date=2021-12-01", "end_date=2022-03-31", "aoi=[-122.325,47.535,-122.265,47.575]", "resolution=20"]


def _blob_items(demo, tmp_path: Path) -> Path:
    """The demo's items with their hrefs moved to blob storage (``<container>/<scene>/<band>.tif``)."""
    blob = f"http://{ACCOUNT}.blob.core.windows.net/{CONTAINER}"
    return rehost_items(demo.items_path, demo.root, blob, tmp_path / "items.json")


def _blob_root(demo, tmp_path: Path) -> Path:
    """A folder where ``<container>/...`` is the demo archive."""
    root = tmp_path / "blobs"
    root.mkdir()
    (root / CONTAINER).symlink_to(demo.root)
    return root


def _run(demo, tmp_path: Path, sas: SasTokenStandIn, blobs: AssetServer, *args: str, key: str = "pc-key"):
    out = tmp_path / "out"
    env = {
        "PC_SDK_SAS_URL": sas.url,
        "PC_SDK_SUBSCRIPTION_KEY": key,
        "GDAL_HTTP_PROXY": f"127.0.0.1:{blobs.port}",
        "NO_PROXY": "127.0.0.1,localhost",
    }
    items = _blob_items(demo, tmp_path)
    proc = cli(
        ["catalog=planetary_computer", f"catalog.url={items}", *DEMO_AREA, *args, f"output_dir={out}"],
        env=env,
        cwd=tmp_path,
    )
    return proc, out


#: Requests a token answers before the blob server refuses it for a new read. A run makes ~270
#: (3 per asset read).
TOKEN_USES = 40


@pytest.mark.parametrize(
    "stated_lifetime",
    [
        pytest.param(30, id="tokens-renewed-before-they-expire"),
        pytest.param(3600, id="tokens-expire-before-the-time-they-state"),
    ],
)
def test_a_run_outlives_several_tokens(demo, demo_run, tmp_path, stated_lifetime):
    # Tokens stop working for new reads after TOKEN_USES requests, a count the stand-in keeps, so
    # the verdict does not depend on how fast the run is. The package renews a token when it states less than
    # 60 s left: stating 30 s makes it fetch a fresh one for every read, so none is ever refused;
    # stating an hour makes it keep the token, and only a fresh token after the server's 403
    # saves the run.
    with (
        SasTokenStandIn(stated_lifetime=stated_lifetime, key="pc-key", uses=TOKEN_USES) as sas,
        AssetServer(_blob_root(demo, tmp_path), authorize=sas.valid, latency=0.02) as blobs,
    ):
        proc, out = _run(demo, tmp_path, sas, blobs)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert blobs.hosts == {f"{ACCOUNT}.blob.core.windows.net"}, "every read went to blob storage, through the proxy"
    assert "thread(s) for the cube's remote reads" in proc.stderr, "remote reads get more Dask threads"
    assert sas.containers == {(ACCOUNT, CONTAINER)} and sas.keys_seen == {"pc-key"}
    served = sum(sas.used.values())
    assert served > 3 * TOKEN_USES, f"the run made {served} authorized requests only"
    assert len(sas.issued) >= 3, f"the run outlived {len(sas.issued)} token(s) only"
    if stated_lifetime == 3600:
        assert blobs.refused > 0, "the server refused used-up tokens"
    else:
        assert blobs.refused == 0, "tokens renewed before they stop working are never refused"
    for sig in sas.issued:
        assert sig not in proc.stderr and sig not in proc.stdout, "a token reached the log"
    assert_same_cogs(demo_run, out)


def test_warped_reads_sign_in_the_task_too(demo, truth, tmp_path):
    """Mode resampling goes through odc-loader's warping reader; its reads sign (and re-sign) in the task."""
    from cubemosaic.store import open_dn

    with (
        SasTokenStandIn(stated_lifetime=3600, uses=TOKEN_USES) as sas,
        AssetServer(_blob_root(demo, tmp_path), authorize=sas.valid, latency=0.02) as blobs,
    ):
        proc, out = _run(demo, tmp_path, sas, blobs, "resampling=mode", "stage=cube")
        assert proc.returncode == 0, proc.stderr[-3000:]
        proc, out = _run(demo, tmp_path, sas, blobs, "resampling=mode", "stage=composite")
        assert proc.returncode == 0, proc.stderr[-3000:]
    assert len(sas.issued) >= 3 and blobs.refused > 0
    monthly = open_dn(out / "monthly.zarr")
    assert_monthly_matches_truth(monthly, truth, count=False)


def test_a_refused_subscription_key_is_one_line(demo, tmp_path):
    with (
        SasTokenStandIn(lifetime=60, key="the-right-key") as sas,
        AssetServer(_blob_root(demo, tmp_path), authorize=sas.valid) as blobs,
    ):
        proc, _ = _run(demo, tmp_path, sas, blobs, key="a-wrong-key")
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("cubemosaic: error: catalog.sign: ") and "(HTTP 401)" in last, last
    assert "PC_SDK_SUBSCRIPTION_KEY" in last and "Traceback" not in proc.stderr
    assert "a-wrong-key" not in proc.stderr


def test_the_signer_takes_the_client_settings_to_the_workers(tmp_path):
    """A worker (here a fresh process without PC_SDK_* in its environment) signs with the client's
    token service and key; the key never shows in the signer's repr."""
    import os
    import pickle
    import subprocess
    import sys

    from cubemosaic.signing import PlanetaryComputerSigner

    href = f"https://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/a/B04.tif"
    with SasTokenStandIn(lifetime=60, key="secret-key") as sas:
        sign = PlanetaryComputerSigner(sas_url=sas.url, subscription_key="secret-key")
        assert "secret-key" not in repr(sign)
        payload = tmp_path / "signer.pickle"
        payload.write_bytes(pickle.dumps(sign))
        script = "import pickle, sys; print(pickle.load(open(sys.argv[1], 'rb'))(sys.argv[2]))"
        env = {k: v for k, v in os.environ.items() if not k.startswith("PC_SDK_")}
        env["HOME"] = str(tmp_path)  # no ~/.planetarycomputer/settings.env either
        proc = subprocess.run(
            [sys.executable, "-c", script, str(payload), href], capture_output=True, text=True, env=env, timeout=60
        )
    assert proc.returncode == 0, proc.stderr
    signed = proc.stdout.strip()
    assert signed.startswith(href + "?") and sas.valid(signed.partition("?")[2])
    assert sas.keys_seen == {"secret-key"}


def test_a_missing_blob_is_named_without_its_token(demo, tmp_path):
    items = _blob_items(demo, tmp_path)
    doc = json.loads(items.read_text())
    victim = doc["features"][4]
    victim["assets"]["B02"]["href"] = f"http://{ACCOUNT}.blob.core.windows.net/{CONTAINER}/gone/B02.tif"
    items.write_text(json.dumps(doc))
    with (
        SasTokenStandIn(lifetime=60) as sas,
        AssetServer(_blob_root(demo, tmp_path), authorize=sas.valid) as blobs,
    ):
        env = {"PC_SDK_SAS_URL": sas.url, "GDAL_HTTP_PROXY": f"127.0.0.1:{blobs.port}"}
        args = ["catalog=planetary_computer", f"catalog.url={items}", *DEMO_AREA, f"output_dir={tmp_path / 'out'}"]
        proc = cli(args, env=env, cwd=tmp_path)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith(f"cubemosaic: error: cannot read asset B02 of item {victim['id']}"), last
    assert sas.issued and not any(sig in proc.stderr for sig in sas.issued)
    assert "sig=" not in proc.stderr and "Traceback" not in proc.stderr
