"""Running the `media-ray` command as a user does: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time


def media_ray(*args, cwd=None, timeout=300):
    """The command as a user runs it: with Ray's token auth on (the test session turns it off
    for its own Ray only)."""
    env = {k: v for k, v in os.environ.items() if k != "RAY_AUTH_MODE"}
    return subprocess.run(
        [sys.executable, "-m", "media_ray.app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
        env=env,
    )


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("media-ray: error: ") and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0]


def read_frames(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        assert set(r) in ({"t", "frame", "detections"}, {"t", "frame", "detections", "cut"})
        for d in r["detections"]:
            assert set(d) == {"label", "score", "box", "detector"} and 0 <= d["score"] <= 1
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    return rows


def wait_until(predicate, timeout_s: float, what: str):
    """The first true value of `predicate()`, polled until `timeout_s` (then a failed assertion)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def serve_healthy(base: str) -> bool:
    """Whether a `media-ray serve` at `base` answers its health check."""
    import httpx

    try:
        return httpx.get(f"{base}/api/health", timeout=5).status_code == 200
    except httpx.HTTPError:
        return False
