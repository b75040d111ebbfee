"""cubemosaic.workerenv: the client's storage credentials carried to the workers, never shown."""

from __future__ import annotations

import os

from cubemosaic.workerenv import ClientEnvironment, carried, carry_environment


def test_only_the_storage_variables_are_carried_and_no_file_names():
    environ = {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_SHARED_CREDENTIALS_FILE": "/home/me/.aws/credentials",  # a file the workers do not have
        "AWS_SESSION_TOKEN": "",  # empty: not carried
        "AZURE_STORAGE_ACCOUNT": "acct",
        "GOOGLE_CLOUD_PROJECT": "proj",
        "FSSPEC_S3_ENDPOINT_URL": "http://minio:9000",
        "PC_SDK_SUBSCRIPTION_KEY": "pc",
        "HOME": "/home/me",
        "PATH": "/usr/bin",
    }
    assert carried(environ) == {
        "AWS_ACCESS_KEY_ID": "key",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AZURE_STORAGE_ACCOUNT": "acct",
        "GOOGLE_CLOUD_PROJECT": "proj",
        "FSSPEC_S3_ENDPOINT_URL": "http://minio:9000",
        "PC_SDK_SUBSCRIPTION_KEY": "pc",
    }


def test_the_plugin_sets_the_values_and_shows_only_the_names(monkeypatch):
    monkeypatch.delenv("AWS_SECRET_ACCESS_KEY", raising=False)
    plugin = ClientEnvironment({"AWS_SECRET_ACCESS_KEY": "s3cr3t"})
    assert "s3cr3t" not in repr(plugin) and "AWS_SECRET_ACCESS_KEY" in repr(plugin)
    plugin.setup(worker=None)
    assert os.environ["AWS_SECRET_ACCESS_KEY"] == "s3cr3t"


class _Client:
    def __init__(self) -> None:
        self.plugins: list[tuple[object, str]] = []

    def register_plugin(self, plugin, name):
        self.plugins.append((plugin, name))


def test_carry_environment_registers_once_and_logs_no_value(caplog):
    client = _Client()
    with caplog.at_level("INFO", logger="cubemosaic.workerenv"):
        names = carry_environment(client, {"AWS_SECRET_ACCESS_KEY": "s3cr3t", "HOME": "/root"})
    assert names == ["AWS_SECRET_ACCESS_KEY"]
    assert [name for _, name in client.plugins] == [ClientEnvironment.name]
    assert "AWS_SECRET_ACCESS_KEY" in caplog.text and "s3cr3t" not in caplog.text
    empty = _Client()
    assert carry_environment(empty, {"HOME": "/root"}) == [] and empty.plugins == []
