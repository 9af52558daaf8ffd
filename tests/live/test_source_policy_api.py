"""Sources by policy through the API: a source outside `live.policy` is a 422 with the policy's
message, and leaves no stream, actor or HLS folder behind; the server goes on.

The `live_app` fixture's policy (tests/conftest.py) accepts files of the sample's folder and http
servers on 127.0.0.1, as a deployment would configure its own media roots and hosts.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest


def hls_root(app) -> Path:
    """Where the app's registry writes streams' HLS folders (as actors/registry.py chooses it)."""
    return Path(app.config.live.hls_dir or Path(tempfile.gettempdir()) / "media-ray" / "hls")


@pytest.fixture
def outside_file(tmp_path, live_app):
    """A video on the host, outside the media roots (the sample's own clip, copied)."""
    path = tmp_path / "host-secret.mp4"
    path.write_bytes(Path(live_app.sample["clip"]).read_bytes())
    return path


def test_sources_outside_the_policy_are_422_and_leave_nothing(live_app, outside_file):
    app = live_app
    link = Path(app.sample["folder"]) / "link-out.mp4"
    link.symlink_to(outside_file)
    before = {s["id"] for s in app.http.get("/api/streams", timeout=30).json()}
    folders = set(hls_root(app).iterdir()) if hls_root(app).exists() else set()
    sources = {
        str(outside_file): "media roots",
        str(Path(app.sample["folder"]) / ".." / outside_file.parent.name / outside_file.name): "media roots",
        str(link): "media roots",
        "/etc/passwd": "media roots",
        f"concat:{app.sample['clip']}|{outside_file}": "'concat'",
        "pipe:0": "'pipe'",
        "tcp://127.0.0.1:6379": "'tcp'",
        "data:video/mp4;base64,AAAA": "'data'",
        "rtmp://127.0.0.1:1/live/x": "listen",
        "http://169.254.169.254/latest/meta-data": "private",
        "http://10.0.0.1/index.m3u8": "private",
        "http://127.0.0.2:6379/": "private",
        "http://[::1]:6379/": "private",
    }
    try:
        for source, says in sources.items():
            r = app.http.post("/api/streams", json={"source": source}, timeout=60)
            assert r.status_code == 422, (source, r.status_code, r.text)
            detail = r.json()["detail"]
            assert isinstance(detail, str) and detail.startswith("source refused: "), (source, detail)
            assert says in detail, (source, detail)
    finally:
        link.unlink()
    after = app.http.get("/api/streams", timeout=30).json()
    assert {s["id"] for s in after} == before
    assert not [s for s in after if s["source"] in sources]
    assert (set(hls_root(app).iterdir()) if hls_root(app).exists() else set()) == folders
    health = app.http.get("/api/health", timeout=30).json()
    assert health["ok"] is True and health["streams"] == len(before)


def test_a_refusal_says_the_same_for_an_open_and_a_closed_port(live_app):
    """The answer for an internal URL does not depend on whether something listens there."""
    import socket

    app = live_app
    with socket.socket() as listening:
        listening.bind(("127.0.0.1", 0))
        listening.listen(1)
        port = listening.getsockname()[1]
        # 127.0.0.1 is allowed in the tests' policy; the same server as `localhost` is not
        answers = [
            app.http.post("/api/streams", json={"source": f"http://localhost:{p}/x"}, timeout=60) for p in (port, 1)
        ]
    assert [a.status_code for a in answers] == [422, 422]
    details = [a.json()["detail"] for a in answers]
    assert details[0] == details[1] and "private" in details[0]
