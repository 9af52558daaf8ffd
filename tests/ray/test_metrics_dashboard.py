"""Observing a running media-ray: its metrics on Ray's metrics port, and the Ray dashboard.

`media-ray serve` runs as a user runs it (a process of its own, Ray's token auth on); an RTMP
stream is pushed to it by `ffmpeg`, looping the sample clip, so that it runs for as long as
Ray's metrics export (every few seconds) takes to show its figures.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx
import psutil
import pytest
from conftest import free_port, free_ports
from prometheus_client.parser import text_string_to_metric_families
from ray.dashboard.consts import DASHBOARD_METRIC_PORT

pytestmark = [pytest.mark.slow, pytest.mark.ray]

TOKEN = "metrics-test-token-0123456789abcdef"
DETECTOR = "reference"


class Served:
    """A `media-ray serve` process and what it has written to stderr so far."""

    def __init__(self, proc: subprocess.Popen, port: int):
        self.proc = proc
        self.url = f"http://127.0.0.1:{port}"
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            self.lines.append(line.rstrip("\n"))

    def wait_for(self, pattern: str, timeout_s: float) -> re.Match:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            for line in list(self.lines):
                if m := re.search(pattern, line):
                    return m
            if self.proc.poll() is not None:
                self._reader.join(5)
                pytest.fail(f"media-ray serve ended ({self.proc.returncode}):\n" + "\n".join(self.lines[-40:]))
            time.sleep(0.2)
        pytest.fail(f"no line matched {pattern!r} in {timeout_s:.0f} s:\n" + "\n".join(self.lines[-40:]))

    def processes(self) -> list[psutil.Process]:
        root = psutil.Process(self.proc.pid)
        return [root, *root.children(recursive=True)]


@contextlib.contextmanager
def serving(sample, tmp_path: Path, ray: dict):
    """`media-ray serve` with the reference detector and `ray` settings, until it is ready."""
    port = free_port()
    config = {
        "http": {"host": "127.0.0.1", "port": port, "auth": {"token": TOKEN}},
        "live": {"sampling": {"fps": 5, "batch_size": 2}, "rtmp_ports": free_ports(2)},
        "placement": {"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        "ray": {"namespace": f"metrics-{port}", "app_prefix": f"metrics{port}", **ray},
    }
    path = tmp_path / "config.yaml"
    path.write_text(json.dumps(config))  # JSON is YAML
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "media_ray.app.cli", "serve"]
        + ["--brands", str(sample["logos"]), "--detectors", DETECTOR, "--config", str(path)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    served = Served(proc, port)
    try:
        served.wait_for(r"is serving on", 300)
        served.wait_for(r"^Ray (dashboard|metrics)", 10)  # the line printed next
        yield served
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(90)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(30)


def _is_dashboard(p: psutil.Process) -> bool:
    """The dashboard's process (`dashboard/dashboard.py`) or one of its modules' (forked by it);
    not the agent every node runs, which exports the metrics whether or not a dashboard runs."""
    cmdline = " ".join(p.cmdline())
    return "dashboard/dashboard.py" in cmdline or "ray.dashboard.subprocesses" in cmdline


def dashboard_sockets(served: Served) -> list:
    """The listening sockets of the Ray dashboard's processes."""
    pids = {p.pid for p in served.processes() if _is_dashboard(p)}
    return [c for c in psutil.net_connections("inet") if c.status == psutil.CONN_LISTEN and c.pid in pids]


def scrape(url: str) -> list:
    """The samples on a Prometheus endpoint that are media-ray's."""
    body = httpx.get(url, timeout=10).text
    return [s for family in text_string_to_metric_families(body) for s in family.samples if "media_ray" in s.name]


def total(samples: list, name: str, **labels) -> float:
    return sum(s.value for s in samples if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()))


def test_a_running_streams_figures_are_on_rays_metrics_port_with_the_dashboard_off(sample, tmp_path):
    ffmpeg = shutil.which("ffmpeg")
    assert ffmpeg, "the test needs the ffmpeg CLI"
    metrics_port = free_port()
    with serving(sample, tmp_path, {"dashboard": False, "metrics_export_port": metrics_port}) as served:
        # no dashboard: nothing said about one, and no page served; of the dashboard's process,
        # which Ray starts either way, only its own metrics port listens
        assert not any(line.startswith("Ray dashboard") for line in served.lines), served.lines
        assert served.wait_for(r"Ray metrics for Prometheus: (http://\S+)", 1)[1].endswith(f":{metrics_port}/metrics")
        assert {c.laddr.port for c in dashboard_sockets(served)} <= {DASHBOARD_METRIC_PORT}

        http = httpx.Client(base_url=served.url, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=30)
        created = http.post("/api/streams", json={"source": "rtmp", "name": "metrics"}).json()
        sid = created["id"]
        push = subprocess.Popen(
            [ffmpeg, "-v", "error", "-re", "-stream_loop", "-1", "-i", str(sample["clip"])]
            + ["-c", "copy", "-f", "flv", created["publish_url_with_key"]],
            stdin=subprocess.DEVNULL,
        )
        brands = {p.stem for p in Path(sample["logos"]).iterdir() if p.suffix == ".png"}
        try:
            deadline = time.monotonic() + 180
            while True:
                samples = scrape(f"http://127.0.0.1:{metrics_port}/metrics")
                found = {
                    "decoded": total(samples, "ray_media_ray_frames_decoded_total", stream=sid),
                    "analysed": total(samples, "ray_media_ray_frames_analysed_total", stream=sid),
                    "detections": sum(
                        total(samples, "ray_media_ray_detections_total", brand=b, detector=DETECTOR) for b in brands
                    ),
                    "calls": total(samples, "ray_media_ray_batch_frames_count", detector=DETECTOR),
                    "latency": total(samples, "ray_media_ray_model_latency_seconds_count", detector=DETECTOR),
                    "live": total(samples, "ray_media_ray_streams", state="live"),
                }
                if all(v > 0 for v in found.values()) or time.monotonic() > deadline:
                    break
                time.sleep(1)
            status = http.get(f"/api/streams/{sid}").json()
        finally:
            push.terminate()
            push.wait(30)
    assert all(v > 0 for v in found.values()), (found, status)
    assert found["live"] == 1
    # what is analysed has been decoded first; a model call holds at least a frame
    assert found["analysed"] <= found["decoded"]
    assert total(samples, "ray_media_ray_model_frames_total", detector=DETECTOR) >= found["calls"]
    # the stream's queue is reported, and brands are the catalogue's (or `other`)
    assert any(s.name == "ray_media_ray_queue_frames" and s.labels.get("stream") == sid for s in samples)
    counted = {s.labels["brand"] for s in samples if s.name == "ray_media_ray_detections_total"}
    assert counted <= brands | {"other"}, counted


def test_serve_prints_the_ray_dashboards_url_and_the_dashboard_answers_on_loopback_only(sample, tmp_path):
    with serving(sample, tmp_path, {}) as served:  # the dashboard is on by default
        url = served.wait_for(r"^Ray dashboard: (http://127\.0\.0\.1:(\d+))(;|$)", 1)
        page = None
        deadline = time.monotonic() + 30
        while page is None and time.monotonic() < deadline:
            try:
                page = httpx.get(url[1] + "/", timeout=10)
            except httpx.TransportError:
                time.sleep(1)
        assert page is not None and page.status_code == 200, page
        # its page is public; its API asks for Ray's token, as every Ray port does
        mode = httpx.get(url[1] + "/api/authentication_mode", timeout=10).json()
        assert mode["authentication_mode"] == "token"
        assert httpx.get(url[1] + "/api/version", timeout=10).status_code == 401
        sockets = dashboard_sockets(served)
        page_sockets = [c for c in sockets if c.laddr.port == int(url[2])]
        # its page and API listen on loopback only: nothing on 0.0.0.0 or the node's address
        assert page_sockets and all(ipaddress.ip_address(c.laddr.ip).is_loopback for c in page_sockets), sockets
        # and so does everything else of it but its own Prometheus metrics (read-only), which Ray
        # binds on every interface, as it does a node's metrics port (for the cluster only)
        wider = {c.laddr.port for c in sockets if not ipaddress.ip_address(c.laddr.ip).is_loopback}
        assert wider <= {DASHBOARD_METRIC_PORT}, sockets
