"""RTSP cameras against a real RTSP server: GStreamer's (`tests/rtsp_server.py`, run by the system
Python, which has its bindings) looping a generated clip as a live H.264 stream on 127.0.0.1. The
camera goes away and comes back on the same port: the stream goes `reconnecting`, then `live`
again, and its times go on from where they were, through the outage, never from 0 again."""

from __future__ import annotations

import os
import select
import subprocess
import time
from pathlib import Path

import pytest
from conftest import free_port
from test_faults_live import (
    FFMPEG,
    assert_in_order_once,
    bare,
    client,
    read_until_closed,
    running,
    status_of,
    stored,
    wait_for,
    wait_state,
    ws_connect,
)
from test_live_sources import FAST_BACKOFF, Recorder, drain

from media_ray.live import LiveSource
from media_ray.live_timeline import LiveSourceConfig
from media_ray.streams import StreamState

SYSTEM_PYTHON = "/usr/bin/python3"  # Debian's, with python3-gi and gir1.2-gst-rtsp-server-1.0
RTSP_SERVER = Path(__file__).resolve().parents[1] / "rtsp_server.py"
CLIP_FPS = 25


def _server_missing() -> str | None:
    """Why the RTSP server cannot run here, or None."""
    if FFMPEG is None:
        return "the ffmpeg CLI is not installed (apt-get install ffmpeg)"
    if not os.access(SYSTEM_PYTHON, os.X_OK):
        return f"{SYSTEM_PYTHON} is not here"
    check = subprocess.run(
        [SYSTEM_PYTHON, str(RTSP_SERVER), "--check"], capture_output=True, text=True, timeout=60, env=_server_env()
    )
    if check.returncode:
        why = check.stderr.strip().splitlines()[-1:] or ["no reason given"]
        return f"GStreamer's RTSP server cannot run ({why[0]}): apt-get install python3-gi gir1.2-gst-rtsp-server-1.0"
    return None


def _server_env() -> dict[str, str]:
    # the system Python, not the tests' virtual environment: none of the tests' import paths
    return {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}


_MISSING = _server_missing()
pytestmark = [
    pytest.mark.slow,
    pytest.mark.live,
    pytest.mark.timeout(240),
    pytest.mark.skipif(_MISSING is not None, reason=_MISSING or ""),
]


class RtspCamera:
    """`tests/rtsp_server.py` on a free 127.0.0.1 port; stopped and started again on the same port."""

    def __init__(self, clip: Path):
        self.clip = clip
        self.port = free_port()
        self.url = f"rtsp://127.0.0.1:{self.port}/cam"
        self.proc: subprocess.Popen | None = None

    def start(self, timeout_s: float = 30) -> RtspCamera:
        args = [SYSTEM_PYTHON, str(RTSP_SERVER), "--port", str(self.port), "--clip", str(self.clip)]
        args += ["--fps", str(CLIP_FPS), "--max-s", "200"]
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, text=True, env=_server_env())
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout_s)
        line = self.proc.stdout.readline() if ready else ""
        if not line.startswith("ready"):
            self.stop()
            raise AssertionError(f"the RTSP server did not start on port {self.port}")
        return self

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
            self.proc = None


@pytest.fixture(scope="module")
def camera_clip(sample):
    """The sample clip as a camera encodes it: raw H.264, baseline (no B-frames)."""
    out = Path(sample["folder"]) / "camera.h264"
    cmd = [FFMPEG, "-v", "error", "-y", "-i", str(sample["clip"]), "-an", "-c:v", "libx264", "-profile:v", "baseline"]
    subprocess.run([*cmd, "-preset", "veryfast", "-r", str(CLIP_FPS), "-f", "h264", str(out)], check=True, timeout=120)
    return out


@pytest.fixture
def camera(camera_clip):
    cam = RtspCamera(camera_clip).start()
    yield cam
    cam.stop()


def _outage(camera: RtspCamera, dropped, down_s: float = 2.0) -> tuple[float, float]:
    """Stops the camera, waits for `dropped()` to say the stream saw it go, and starts the camera
    again on its port once it has been away `down_s`: the (stop, start) wall times."""
    camera.stop()
    down_at = time.time()
    dropped()
    time.sleep(max(0.0, down_at + down_s - time.time()))  # away a while: the outage is stream time too
    up_at = time.time()
    camera.start()
    return down_at, up_at


def _wait(check, timeout_s: float = 30) -> None:
    deadline = time.monotonic() + timeout_s
    while not check():
        assert time.monotonic() < deadline, "not within the time allowed"
        time.sleep(0.1)


def test_an_rtsp_source_that_goes_away_reconnects_and_its_times_go_on(camera):
    states = Recorder()
    config = LiveSourceConfig(fps=5, buffer_size=500, open_timeout_s=3, read_timeout_s=3, backoff=FAST_BACKOFF)
    with LiveSource(camera.url, config, on_state=states) as source:
        _wait(lambda: source.frames >= 10)
        down_at, up_at = _outage(camera, lambda: states.wait_for(StreamState.RECONNECTING))
        assert states.wait_for(StreamState.LIVE, count=2)
        received = source.frames
        _wait(lambda: source.frames >= received + 10)
    assert states.states[:4] == [StreamState.STARTING, StreamState.LIVE, StreamState.RECONNECTING, StreamState.LIVE]
    assert states.states[-1] == StreamState.ENDED and source.reconnects >= 1
    frames = drain(source)
    assert source.dropped == 0 and len(frames) == source.frames
    before = [f for f in frames if f.arrival < up_at]
    after = [f for f in frames if f.arrival > up_at]
    assert len(before) >= 10 and len(after) >= 10
    assert all(a.t < b.t and a.index < b.index for a, b in zip(frames, frames[1:]))
    # the new server's session starts its clock at 0 again: the stream's goes on, past the outage
    assert after[0].t - before[-1].t >= (up_at - down_at) / 2
    assert max(b.t - a.t for a, b in zip(after, after[1:])) < 0.5  # sampled at 5 frames/s again


def _records(app, sid: str, ws, until) -> list[dict]:
    """The follow socket's records until `until(records)`; a failure says where the stream is."""
    try:
        return read_until_closed(ws, until=until, timeout=90)
    except AssertionError as e:
        raise AssertionError(f"{e}: {status_of(app, sid)}, {len(stored(app, sid))} stored") from None


def test_an_rtsp_camera_stream_goes_reconnecting_then_live_with_its_results_times_going_on(local_ray, sample, camera):
    source = {"open_timeout_s": 3, "read_timeout_s": 3, "backoff": {"initial_s": 0.2, "max_s": 1.0, "jitter": 0}}
    with running(sample, watch_every_s=1, source=source) as app:
        sid = client(app).post("/api/streams", json={"source": camera.url}).json()["id"]
        with ws_connect(app, sid) as ws:
            wait_state(app, sid, ("live",), timeout=60)
            records = _records(app, sid, ws, lambda rs: len(rs) >= 10)
            seen: list[dict] = []
            down_at, up_at = _outage(camera, lambda: seen.append(wait_state(app, sid, ("reconnecting",), timeout=30)))
            wait_for(app, sid, lambda s: s["state"] == "live", timeout=60, what="live again")
            records += _records(app, sid, ws, lambda rs: sum(r["arrival"] > up_at for r in rs) >= 5)
            kept = stored(app, sid)
        status = client(app).get(f"/api/streams/{sid}").json()
        assert client(app).delete(f"/api/streams/{sid}").status_code == 200
    assert seen[0]["reason"] and status["state"] == "live"
    assert_in_order_once(records)
    assert bare(records) == kept[: len(records)]  # the socket saw what was stored, in order
    before = [r for r in records if r["arrival"] < up_at]
    after = [r for r in records if r["arrival"] > up_at]
    assert len(before) >= 10 and len(after) >= 5
    assert after[0]["t"] - before[-1]["t"] >= (up_at - down_at) / 2  # the outage, not a reset to 0
