"""Running the `media-ray` command as a user does: a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys


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
