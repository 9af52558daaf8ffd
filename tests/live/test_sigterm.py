"""`media-ray serve` as a user starts it: with no token configured it generates one, keeps it
owner-only and prints it once; stopped by SIGTERM (docker stop, systemd, Kubernetes) it shuts down
cleanly: exit status 0, its streams' HLS folders removed, no Ray process of it left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import httpx
import psutil
import yaml
from cli_support import serve_healthy as _health
from cli_support import wait_until as _wait
from conftest import free_port, free_ports, source_policy_for


def test_sigterm_stops_streams_and_removes_their_folders(sample, tmp_path):
    port = free_port()
    hls_root = tmp_path / "hls"
    config = {
        "http": {"host": "127.0.0.1", "port": port},  # no token: one is generated
        "live": {
            "hls_dir": str(hls_root),
            "rtmp_ports": free_ports(2),
            "sampling": {"fps": 2, "batch_size": 2},
            "policy": source_policy_for(sample["folder"]),
        },
        "placement": {"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        "ray": {"namespace": "media-ray-sigterm", "app_prefix": f"sig{port}"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    home = tmp_path / "home"
    home.mkdir()
    env = {**os.environ, "RAY_AUTH_MODE": "disabled", "HOME": str(home)}
    env.pop("MEDIA_RAY_HTTP__AUTH__TOKEN", None)
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "media_ray.app.cli",
            "serve",
            "--brands",
            str(sample["logos"]),
            "--detectors",
            "reference",
            "--config",
            str(tmp_path / "config.yaml"),
        ],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: server.poll() is not None or _health(base), 180, "the server")
        assert server.poll() is None, server.stderr.read()[-2000:]
        token_file = home / ".media-ray" / "token"
        token = token_file.read_text().strip()
        assert oct(token_file.stat().st_mode & 0o777) == "0o600" and len(token) >= 32
        assert httpx.get(f"{base}/api/streams", timeout=30).status_code == 401
        auth = {"Authorization": f"Bearer {token}"}
        created = httpx.post(f"{base}/api/streams", json={"source": str(sample["clip"])}, headers=auth, timeout=60)
        assert created.status_code == 201, created.text
        folder = hls_root / created.json()["id"]
        _wait(lambda: folder.is_dir() and any(folder.glob("*.ts")), 60, "HLS segments")
        children = psutil.Process(server.pid).children(recursive=True)
        assert children  # Ray's processes, started by the server

        server.send_signal(signal.SIGTERM)
        out, err = server.communicate(timeout=120)
        assert server.returncode == 0, err[-2000:]
        assert not folder.exists()
        assert "stopping" in err
        assert err.count(f"#token={token}") == 1  # printed once, as the page's link
        _wait(
            lambda: not any(c.is_running() and c.status() != psutil.STATUS_ZOMBIE for c in children),
            30,
            "Ray's processes to end",
        )
    finally:
        if server.poll() is None:
            server.kill()
            server.wait(timeout=30)
