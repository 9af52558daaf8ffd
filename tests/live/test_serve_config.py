"""`serve run deployments/serve_config.yaml`, as Ray's own CLI runs it: the applications of
`media-ray serve` built by their builders from the file's arguments, on a local Ray of that
command, driven over HTTP: health, an empty catalogue filled through the API, a stream from a
file; Ctrl-C stops it and the streams' folders go with it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import yaml
from cli_support import wait_until as _wait
from conftest import TEST_TOKEN, free_port, free_ports, source_policy_for

ROOT = Path(__file__).resolve().parents[2]
SERVE_CONFIG = ROOT / "deployments" / "serve_config.yaml"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def _serve_command() -> list[str]:
    """Ray's `serve` command of this Python."""
    found = shutil.which("serve", path=os.path.dirname(sys.executable)) or shutil.which("serve")
    return [found] if found else [sys.executable, "-c", "from ray.serve.scripts import cli; cli()"]


def _all_running(base: str) -> dict | None:
    try:
        r = httpx.get(f"{base}/api/health", timeout=5)
    except httpx.HTTPError:
        return None
    apps = r.json().get("applications", {}) if r.status_code == 200 else {}
    return apps if apps and all(s == "RUNNING" for s in apps.values()) else None


def _local_copy(tmp_path: Path, sample) -> tuple[Path, int, Path]:
    """The committed file, bound to 127.0.0.1 on a free port, every application given a media-ray
    config of this test (its token, namespace, source policy, HLS folder); no brands."""
    port = free_port()
    hls = tmp_path / "hls"
    media_ray_config = {
        "http": {"host": "127.0.0.1", "port": port, "auth": {"token": TEST_TOKEN}},
        "live": {
            "hls_dir": str(hls),
            "rtmp_ports": free_ports(2),
            "sampling": {"fps": 2, "batch_size": 2},
            "policy": source_policy_for(sample["folder"]),
        },
        "placement": {"default": {"num_cpus": 0.1}},
        "ray": {"namespace": f"media-ray-serve-config-{port}"},
    }
    (tmp_path / "media-ray.yaml").write_text(yaml.safe_dump(media_ray_config))
    serve_config = yaml.safe_load(SERVE_CONFIG.read_text())
    serve_config["http_options"] = {"host": "127.0.0.1", "port": port}
    for app in serve_config["applications"]:
        app["args"]["config"] = str(tmp_path / "media-ray.yaml")
    path = tmp_path / "serve_config.yaml"
    path.write_text(yaml.safe_dump(serve_config, sort_keys=False))
    return path, port, hls


def test_serve_run_of_the_config_file_serves_the_api_and_analyses_a_stream(sample, tmp_path):
    config_path, port, hls = _local_copy(tmp_path, sample)
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("MEDIA_RAY_") and k != "RAY_ADDRESS"}
    env.update({"HOME": str(home), "RAY_AUTH_MODE": os.environ.get("RAY_AUTH_MODE", "disabled")})
    log = (tmp_path / "serve.log").open("w")
    # `-a local`: a Ray of this command, never one that another process of this machine runs
    server = subprocess.Popen(
        [*_serve_command(), "run", "-a", "local", str(config_path)],
        cwd=ROOT,
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    api = httpx.Client(base_url=base, headers=AUTH, timeout=30)
    try:
        apps = _wait(lambda: server.poll() is not None or _all_running(base), 240, "the applications")
        assert server.poll() is None, (tmp_path / "serve.log").read_text()[-3000:]
        expected = [a["name"] for a in yaml.safe_load(SERVE_CONFIG.read_text())["applications"]]
        assert sorted(apps) == sorted(expected)
        assert httpx.get(f"{base}/api/brands", timeout=10).status_code == 401  # the config's token guards it
        assert api.get("/api/brands").json() == []  # no `brands` argument: an empty catalogue

        added = api.post(
            "/api/brands",
            data={"id": "acme", "name": "Acme", "hex": "DC281E"},
            files={"image": ("acme.png", (sample["logos"] / "acme.png").read_bytes(), "image/png")},
        )
        assert added.status_code == 201, added.text
        assert [(b["id"], b["hex"]) for b in api.get("/api/brands").json()] == [("acme", "DC281E")]

        created = api.post("/api/streams", json={"source": str(sample["clip"])})
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        status = _wait(
            lambda: (s := api.get(f"/api/streams/{sid}").json())["state"] in ("ended", "failed") and s, 120, "the end"
        )
        assert status["state"] == "ended" and status["frames_analysed"] > 0 and status["batches_lost"] == 0, status
        frames = api.get(f"/api/streams/{sid}/frames").json()
        found = [r["t"] for r in frames if any(d["label"] == "acme" for d in r["detections"])]
        assert found  # the brand added while running is found by the detectors of the file
        assert (hls / sid).is_dir()

        server.send_signal(signal.SIGINT)  # Ctrl-C
        server.wait(timeout=120)
        assert not (hls / sid).exists()  # the registry's host stopped the streams on its way out
    finally:
        api.close()
        if server.poll() is None:
            os.killpg(server.pid, signal.SIGINT)
            try:
                server.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(server.pid, signal.SIGKILL)
                server.wait(timeout=30)
        log.close()
