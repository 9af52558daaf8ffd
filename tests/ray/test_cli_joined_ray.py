"""`media-ray analyze` on a Ray kept running between jobs (`ray start --head`, RAY_ADDRESS), as the
README tells users to keep one: the first job deploys its detectors and leaves them, the next one
reuses them, and both write the same results."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import media_ray, wait_until
from conftest import free_port

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


def test_a_second_job_on_a_running_ray_reuses_the_detectors_the_first_left_and_writes_the_same(
    sample, tmp_path, monkeypatch
):
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_AUTH_MODE", "RAY_ADDRESS")}
    ray_cli = str(Path(sys.executable).with_name("ray"))
    head = subprocess.Popen(
        [ray_cli, "start", "--head", "--block", "--node-ip-address=127.0.0.1", f"--port={port}",
         "--num-cpus=2", "--include-dashboard=false", "--disable-usage-stats"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True, env=env,
    )  # fmt: skip
    try:
        wait_until(lambda: _accepts(port), 60, "the Ray head's port")
        monkeypatch.setenv("RAY_ADDRESS", f"127.0.0.1:{port}")
        args = ["analyze", sample["clip"], "--brands", sample["logos"], "--detectors", "reference", "--fps", 2]
        first = media_ray(*args, "--no-progress", "--out", tmp_path / "first")
        assert first.returncode == 0, first.stderr
        assert "a running Ray, 0 of 1 detector applications reused" in first.stderr
        second = media_ray(*args, "--no-progress", "--out", tmp_path / "second")
        assert second.returncode == 0, second.stderr
        assert "a running Ray, 1 of 1 detector applications reused" in second.stderr
        assert re.search(r"first analysed frame after [\d.]+ s", second.stderr)
        one, two = ((tmp_path / d / "frames.jsonl").read_bytes() for d in ("first", "second"))
        assert one == two and one.count(b"\n") == 24
    finally:
        os.killpg(head.pid, signal.SIGTERM)
        head.wait(timeout=120)
