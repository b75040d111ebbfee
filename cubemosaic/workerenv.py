"""The client's storage credentials, carried to the Dask Gateway workers.

Calrissian gives Gateway workers an image, cores and memory, and nothing else: no volume, no
environment (its ``dask-gateway`` branch, Duke-GCB/calrissian PR #208, the 0.19.0 this project
targets). Workers that write ``zarr_dir=s3://...``
or read private assets need the credentials the job was started with, so a worker plugin
carries the client's own values of the variables the storage libraries read (botocore/s3fs
and GDAL: ``AWS_*`` but those naming files; adlfs: ``AZURE_STORAGE_*``; gcsfs: ``GOOGLE_CLOUD_PROJECT``; fsspec:
``FSSPEC_*``; the Planetary Computer SDK: ``PC_SDK_*``) into each worker's environment, for
workers that join later too. The values travel over Dask's comms (TLS through a Gateway)
and are never logged: the plugin's ``repr`` and the log line name the variables only.

GDAL's settings are not carried: each worker applies cubemosaic's own
(:func:`cubemosaic.tuning.configure`) at its first read of an asset, and a catalog's
(``catalog.gdal``) travel with the read tasks (:class:`cubemosaic.read.Access`).
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping

from distributed.diagnostics.plugin import WorkerPlugin

__all__ = ["CARRIED_PREFIXES", "ClientEnvironment", "carry_environment", "carried"]

log = logging.getLogger(__name__)

#: Prefixes of the variables carried to the workers.
CARRIED_PREFIXES = ("AWS_", "AZURE_STORAGE_", "GOOGLE_CLOUD_PROJECT", "FSSPEC_", "PC_SDK_")
#: Variables that name files on the client's disk, which the workers do not have.
NOT_CARRIED = ("AWS_CA_BUNDLE", "AWS_CONFIG_FILE", "AWS_SHARED_CREDENTIALS_FILE", "AWS_WEB_IDENTITY_TOKEN_FILE")


def carried(environ: Mapping[str, str]) -> dict[str, str]:
    """The variables of ``environ`` the workers get."""
    return {
        key: value
        for key, value in environ.items()
        if key.startswith(CARRIED_PREFIXES) and key not in NOT_CARRIED and value
    }


class ClientEnvironment(WorkerPlugin):
    """Sets the client's storage variables in each worker's environment (values never shown)."""

    name = "cubemosaic-client-environment"

    def __init__(self, values: Mapping[str, str]) -> None:
        self._values = dict(values)

    def __repr__(self) -> str:
        return f"ClientEnvironment({', '.join(sorted(self._values))})"

    def setup(self, worker) -> None:  # noqa: ARG002 (WorkerPlugin's signature)
        os.environ.update(self._values)


def carry_environment(client, environ: Mapping[str, str] | None = None) -> list[str]:
    """Register :class:`ClientEnvironment` on ``client``'s workers; returns the variable names."""
    values = carried(os.environ if environ is None else environ)
    if values:
        client.register_plugin(ClientEnvironment(values), name=ClientEnvironment.name)
        log.info("cluster: the Dask workers get this job's %s (values not shown)", ", ".join(sorted(values)))
    return sorted(values)
