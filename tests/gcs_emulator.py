"""A Google Cloud Storage emulator on 127.0.0.1 for the tests (`gcp-storage-emulator`, in this
process), and the environment that points the storage client and the `media-ray` command at it."""

from __future__ import annotations

import os

import pytest

#: the project the tests' storage client names (the emulator takes any)
PROJECT = "media-ray-tests"


@pytest.fixture(scope="session")
def gcs():
    """A running emulator, in memory; yields a storage client of it. `STORAGE_EMULATOR_HOST` and
    `GOOGLE_CLOUD_PROJECT` are set for this process and the commands it runs (the client is then
    anonymous)."""
    pytest.importorskip("google.cloud.storage")
    server_module = pytest.importorskip("gcp_storage_emulator.server")
    from conftest import free_port

    port = free_port()
    server = server_module.create_server("127.0.0.1", port, in_memory=True)
    server.start()
    saved = {k: os.environ.get(k) for k in ("STORAGE_EMULATOR_HOST", "GOOGLE_CLOUD_PROJECT")}
    os.environ["STORAGE_EMULATOR_HOST"] = f"http://127.0.0.1:{port}"
    os.environ["GOOGLE_CLOUD_PROJECT"] = PROJECT
    from google.cloud import storage

    from media_ray import cloud_storage

    cloud_storage._gcs_client.cache_clear()
    try:
        yield storage.Client(project=PROJECT)
    finally:
        server.stop()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
        cloud_storage._gcs_client.cache_clear()


def objects(client, bucket: str, prefix: str = "") -> dict[str, bytes]:
    """Every object under a prefix, by name, with its content."""
    return {b.name: b.download_as_bytes() for b in client.list_blobs(bucket, prefix=prefix)}
