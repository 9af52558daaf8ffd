"""The live app with its results in Redis (a real redis-server): the same fan-out and history."""

from __future__ import annotations

import shutil
import subprocess
import time

import pytest
from conftest import start_live_app
from test_live_api import collect


@pytest.fixture(scope="module")
def redis_url():
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    from conftest import free_port

    port = free_port()
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        stdout=subprocess.DEVNULL,
    )
    import redis

    client = redis.Redis(port=port)
    for _ in range(100):
        try:
            client.ping()
            break
        except redis.ConnectionError:
            time.sleep(0.1)
    yield f"redis://127.0.0.1:{port}/0"
    proc.terminate()
    proc.wait(timeout=10)


def test_with_the_redis_store_every_websocket_client_gets_every_record(local_ray, sample, redis_url):
    app = start_live_app(sample, store={"kind": "redis", "redis_url": redis_url})
    try:
        created = app.http.post("/api/streams", json={"source": str(sample["clip"])}).json()
        a, b = collect(app, created["id"], clients=2)
        assert len(a) >= 50 and a == b
        history = app.http.get(f"/api/streams/{created['id']}/frames", params={"limit": 1000}).json()
        assert history == [{k: v for k, v in r.items() if k != "cursor"} for r in a]  # the socket adds cursors
    finally:
        app.service.stop()
