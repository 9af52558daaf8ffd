"""`live.hls_upload`: a live stream's HLS playback copied to a bucket of a local Cloud Storage
emulator (127.0.0.1) as it is written, and kept there once the stream has ended.

`media-ray serve` runs as a subprocess: its own Ray's workers, where the ingest writes the
playback, inherit the emulator's address from its environment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid

import httpx
import yaml
from cli_support import assert_one_line_error, media_ray
from conftest import TEST_TOKEN, free_port, free_ports, source_policy_for
from gcs_emulator import gcs, objects  # noqa: F401 (the fixture)


def _status(base: str, sid: str | None = None) -> dict | None:
    try:
        answer = httpx.get(
            f"{base}/api/{'streams/' + sid if sid else 'health'}",
            headers={"Authorization": f"Bearer {TEST_TOKEN}"},
            timeout=5,
        )
    except httpx.HTTPError:
        return None
    return answer.json() if answer.status_code == 200 else None


def _wait(predicate, timeout_s: float, what: str, server):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        assert server.poll() is None, server.stderr.read()[-3000:]
        time.sleep(0.5)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_streams_hls_playback_is_copied_under_the_upload_prefix(gcs, sample, tmp_path):  # noqa: F811
    bucket = gcs.create_bucket(f"hls-{uuid.uuid4().hex[:8]}")
    port = free_port()
    config = {
        "http": {"host": "127.0.0.1", "port": port, "auth": {"token": TEST_TOKEN}},
        "live": {
            "hls_dir": str(tmp_path / "hls"),
            "hls_upload": f"gs://{bucket.name}/live/",
            "rtmp_ports": free_ports(2),
            "sampling": {"fps": 2, "batch_size": 2},
            "policy": source_policy_for(sample["folder"]),
        },
        "placement": {"default": {"num_cpus": 0.1}, "ingest": {"num_cpus": 0.1}},
        "ray": {"namespace": "media-ray-hls-gcs", "app_prefix": f"hls{port}"},
    }
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(config))
    args = [
        "serve",
        "--brands",
        str(sample["logos"]),
        "--detectors",
        "reference",
        "--config",
        str(tmp_path / "config.yaml"),
    ]
    server = subprocess.Popen(
        [sys.executable, "-m", "media_ray.app.cli", *args],
        env={**os.environ, "RAY_AUTH_MODE": "disabled"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait(lambda: _status(base), 180, "the server", server)
        created = httpx.post(
            f"{base}/api/streams",
            json={"source": str(sample["clip"])},
            headers={"Authorization": f"Bearer {TEST_TOKEN}"},
            timeout=60,
        )
        assert created.status_code == 201, created.text
        sid = created.json()["id"]
        _wait(lambda: (_status(base, sid) or {}).get("state") in ("ended", "failed"), 120, "the stream's end", server)
        assert _status(base, sid)["state"] == "ended"
        # the mirror's last copy (the ended playlist) follows the stream's end
        _wait(
            lambda: (
                objects(gcs, bucket.name, f"live/{sid}/")
                .get(f"live/{sid}/index.m3u8", b"")
                .rstrip()
                .endswith(b"#EXT-X-ENDLIST")
            ),
            60,
            "the ended playlist",
            server,
        )
        remote = objects(gcs, bucket.name, f"live/{sid}/")
        playlist = remote[f"live/{sid}/index.m3u8"].decode()
        segments = [ln for ln in playlist.splitlines() if ln and not ln.startswith("#")]
        assert len(segments) >= 10  # the 12 s clip in 1 s segments
        assert all(f"live/{sid}/{name}" in remote for name in segments)
        assert playlist == (tmp_path / "hls" / sid / "index.m3u8").read_text()  # what the page plays
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.communicate(timeout=120)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(timeout=30)
    assert objects(gcs, bucket.name, f"live/{sid}/")  # the copy outlives the stream and the server


def test_serve_with_an_upload_bucket_that_does_not_exist_is_one_line_and_status_2(gcs, sample, monkeypatch):  # noqa: F811
    monkeypatch.setenv("MEDIA_RAY_LIVE__HLS_UPLOAD", "gs://no-such-bucket-of-media-ray/live/")
    proc = media_ray("serve", "--brands", sample["logos"], "--detectors", "reference")
    assert_one_line_error(proc, "no such bucket")
