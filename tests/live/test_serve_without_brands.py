"""`media-ray serve` without `--brands`: it starts with an empty catalogue, and brands added
through the API (with their colour) are listed and analysed for."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import yaml
from cli_support import serve_healthy as _health
from cli_support import wait_until as _wait
from conftest import TEST_TOKEN, free_port, free_ports, source_policy_for

AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def test_serve_without_brands_starts_empty_and_takes_brands_with_their_colour(sample, tmp_path):
    port = free_port()
    config = {
        "http": {"host": "127.0.0.1", "port": port, "auth": {"token": TEST_TOKEN}},
        "live": {
            "hls_dir": str(tmp_path / "hls"),
            "rtmp_ports": free_ports(2),
            "sampling": {"fps": 2, "batch_size": 2},
            "policy": source_policy_for(sample["folder"]),
        },
        "placement": {"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        "ray": {"namespace": f"media-ray-empty-{port}", "app_prefix": f"empty{port}"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env["RAY_AUTH_MODE"] = "disabled"
    command = [sys.executable, "-m", "media_ray.app.cli", "serve", "--detectors", "reference"]
    server = subprocess.Popen(
        [*command, "--config", str(tmp_path / "config.yaml")],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers=AUTH, timeout=30)
    try:
        _wait(lambda: server.poll() is not None or _health(base), 180, "the server")
        assert server.poll() is None, server.stderr.read()[-2000:]
        assert api.get("/api/brands").json() == []

        added = api.post(
            "/api/brands",
            data={"id": "acme", "name": "Acme", "hex": "#dc281e"},
            files={"image": ("acme.png", (sample["logos"] / "acme.png").read_bytes(), "image/png")},
        )
        assert added.status_code == 201, added.text
        assert [(b["id"], b["name"], b["hex"]) for b in api.get("/api/brands").json()] == [("acme", "Acme", "DC281E")]

        sid = api.post("/api/streams", json={"source": str(sample["clip"])}).json()["id"]
        _wait(lambda: api.get(f"/api/streams/{sid}").json()["state"] in ("ended", "failed"), 120, "the stream's end")
        frames = api.get(f"/api/streams/{sid}/frames").json()
        assert any(d["label"] == "acme" for r in frames for d in r["detections"])

        # the last brand may go too: the catalogue is empty again
        assert api.delete("/api/brands/acme").status_code == 200
        assert api.get("/api/brands").json() == []
    finally:
        api.close()
        server.send_signal(signal.SIGTERM)  # stops as Ctrl-C does
        try:
            _, err = server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            _, err = server.communicate(timeout=30)
    assert server.returncode == 0, err[-2000:]
