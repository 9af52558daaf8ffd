"""Live streams under faults, with real components: a detector replica killed mid-stream, the
LiveIngest worker SIGKILLed, redis-server stopped and started again under a running stream, an
RTMP publisher (the ffmpeg CLI) that stops and comes back, an HLS playlist that stalls. Each test
checks the exact records delivered: times and frame indices strictly increasing, none twice,
every stored record delivered to a WebSocket client once, and the counts in the status."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import httpx
import pytest
from conftest import free_port, start_live_app
from websockets.sync.client import connect

from media_ray.detectors import Detector
from media_ray.model import FrameBatch, FrameResult, empty_results

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed (apt-get install ffmpeg)")
DELAY = "support_detectors:DelayDetector"  # labels each frame with its index; even batches are slow
FLAKY = "test_faults_live:FlakyDetector"


class FlakyDetector(Detector):
    """Fails every third batch with an error of its own, as a detector with a bug would; finds nothing."""

    name = "flaky"

    def detect(self, batch: FrameBatch) -> list[FrameResult]:
        if batch.seq % 3 == 1:
            raise ValueError(f"batch {batch.seq} cannot be read")
        return empty_results(batch)


# -- helpers (test_release.py uses them too) --------------------------------------------------
def client(app) -> httpx.Client:
    """The app's authenticated client (conftest's `app.http`), or one like it."""
    http = getattr(app, "http", None)
    return http or httpx.Client(base_url=app.base_url, headers=getattr(app, "headers", {}), timeout=30)


def ws_connect(app, sid: str, after: str | None = None):
    url = f"{app.ws_url}/ws/streams/{sid}" + (f"?after={after}" if after else "")
    return connect(url, open_timeout=10, additional_headers=getattr(app, "headers", {}))


def status_of(app, sid: str) -> dict:
    r = client(app).get(f"/api/streams/{sid}")
    assert r.status_code == 200, r.text
    return r.json()


def wait_for(app, sid: str, check, timeout: float = 60, what: str = "") -> dict:
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = status_of(app, sid)
        if check(status):
            return status
        time.sleep(0.2)
    raise AssertionError(f"stream {sid}: {what} not seen within {timeout} s: {status}")


def wait_state(app, sid: str, states, timeout: float = 60) -> dict:
    return wait_for(app, sid, lambda s: s["state"] in states, timeout, f"state in {states}")


def read_until_closed(ws, until=None, timeout: float = 120) -> list[dict]:
    """Messages until the server closes the socket (the stream ended), or `until(records)`."""
    records: list[dict] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            records.append(json.loads(ws.recv(timeout=1)))
        except TimeoutError:
            pass
        except Exception:  # closed by the server
            return records
        if until is not None and until(records):
            return records
    raise AssertionError(f"the follow socket was not closed within {timeout} s ({len(records)} records)")


def stored(app, sid: str) -> list[dict]:
    return client(app).get(f"/api/streams/{sid}/frames", params={"limit": 10_000}).json()


def bare(records: list[dict]) -> list[dict]:
    """Records as the store keeps them: without the follow socket's cursor."""
    return [{k: v for k, v in r.items() if k != "cursor"} for r in records]


def assert_in_order_once(records: list[dict]) -> None:
    ts = [r["t"] for r in records]
    frames = [r["frame"] for r in records]
    assert all(a < b for a, b in zip(ts, ts[1:])), "times not strictly increasing"
    assert all(a < b for a, b in zip(frames, frames[1:])), "frame indices not strictly increasing"
    cursors = [r["cursor"] for r in records if "cursor" in r]
    assert len(set(cursors)) == len(cursors)


def actors(class_name: str, alive: bool = True) -> list[dict]:
    """Actors of this Ray by class (the GCS's table: the state API needs the dashboard)."""
    import ray._private.state

    return [
        a
        for a in ray._private.state.actors().values()
        if a["ActorClassName"] == class_name or a["ActorClassName"].startswith(class_name + ":")
        if not alive or a["State"] == "ALIVE"
    ]


def short_clip(sample, seconds: float, name: str) -> Path:
    """The first `seconds` of the sample clip, in the sample's folder (which the policy allows)."""
    out = Path(sample["folder"]) / name
    if not out.exists():
        subprocess.run(
            [FFMPEG, "-v", "error", "-y", "-i", str(sample["clip"]), "-t", str(seconds), "-c", "copy", str(out)],
            check=True,
            timeout=60,
        )
    return out


@contextlib.contextmanager
def running(sample, **options):
    """`media-ray serve` for one test (one Serve at a time: each start replaces the last)."""
    app = start_live_app(sample, **options)
    try:
        yield app
    finally:
        app.service.stop()


# -- a detector replica killed mid-live --------------------------------------------------------
def test_a_detector_replica_killed_mid_stream_loses_only_its_batches_in_flight(local_ray, sample):
    with running(sample, detectors=(DELAY,), watch_every_s=1) as app:
        _replica_killed(app)


def _replica_killed(app) -> None:
    import ray

    sid = client(app).post("/api/streams", json={"source": str(app.sample["clip"])}).json()["id"]
    with ws_connect(app, sid) as ws:
        before = read_until_closed(ws, until=lambda rs: len(rs) >= 6, timeout=90)
        [replica] = [a for a in actors("ServeReplica") if "DelayDetector" in a["ActorClassName"]]
        killed_at = time.time()
        ray.kill(ray.get_actor(replica["Name"], namespace="serve"), no_restart=True)
        after = read_until_closed(ws, timeout=180)
    records = before + after
    status = wait_state(app, sid, ("ended",), timeout=60)
    assert_in_order_once(records)
    for r in records:  # each record is its own frame's result
        assert [d["label"] for d in r["detections"]] == [f"frame-{r['frame']}"]
    # the stream went on once the deployment had a replica again
    assert any(r["arrival"] > killed_at + 1 for r in records)
    # what was in flight at the kill is lost and counted; every frame received is accounted for
    assert status["frames_analysed"] == len(records)
    assert status["frames_received"] == status["frames_analysed"] + status["frames_dropped"] + status["frames_lost"]
    assert status["batches_lost"] <= status["frames_lost"] <= 2 * status["batches_lost"]  # batch_size 2
    assert bare(records) == stored(app, sid)


def test_batches_a_detector_fails_on_are_counted_lost_and_the_stream_goes_on(local_ray, sample):
    with running(sample, detectors=(FLAKY,), watch_every_s=1) as app:
        sid = client(app).post("/api/streams", json={"source": str(app.sample["clip"])}).json()["id"]
        with ws_connect(app, sid) as ws:
            records = read_until_closed(ws, timeout=120)
        status = wait_state(app, sid, ("ended", "failed"), timeout=60)
    assert status["state"] == "ended"
    assert_in_order_once(records)
    sent = status["frames_received"] - status["frames_dropped"]  # frames put in batches
    assert status["batches_lost"] >= 1  # batches 1, 4, 7, ... (of 1 or 2 frames: batch_size 2)
    assert status["frames_analysed"] == len(records) == sent - status["frames_lost"]
    assert status["batches_lost"] <= status["frames_lost"] <= 2 * status["batches_lost"]


# -- the LiveIngest worker SIGKILLed ------------------------------------------------------------
def test_a_sigkilled_ingest_is_restarted_and_its_records_continue_without_duplicates(local_ray, sample):
    with running(sample, watch_every_s=1) as app:
        _ingest_killed(app)


def _ingest_killed(app) -> None:
    sid = client(app).post("/api/streams", json={"source": str(app.sample["clip"])}).json()["id"]
    with ws_connect(app, sid) as ws:
        before = read_until_closed(ws, until=lambda rs: len(rs) >= 10, timeout=90)
        [ingest] = actors("LiveIngest")
        killed_at = time.time()
        os.kill(ingest["Pid"], signal.SIGKILL)
        restarted = wait_for(app, sid, lambda s: s["restarts"] == 1, timeout=60, what="a restart")
        assert restarted["state"] in ("reconnecting", "live", "ended")
        after = read_until_closed(ws, timeout=180)
    records = before + after
    status = wait_state(app, sid, ("ended",), timeout=60)
    assert status["restarts"] == 1
    assert_in_order_once(records)
    kept = stored(app, sid)
    assert bare(records) == kept  # what was stored before the kill is kept; nothing twice
    assert bare(before) == kept[: len(before)]
    assert any(r["arrival"] > killed_at + 1 for r in records)  # analysed again after the restart
    assert [a["Pid"] for a in actors("LiveIngest")] == []  # the restarted one released once ended


# -- redis-server restarted under a running stream ---------------------------------------------
class RedisServer:
    """A real redis-server on a free 127.0.0.1 port whose data survives a restart (AOF)."""

    def __init__(self, folder: Path):
        self.binary = shutil.which("redis-server")
        self.port = free_port()
        self.folder = folder
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> RedisServer:
        import redis

        args = ["--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "yes"]
        self.proc = subprocess.Popen([self.binary, *args, "--dir", str(self.folder)], stdout=subprocess.DEVNULL)
        client = redis.Redis(port=self.port)
        for _ in range(200):
            try:
                client.ping()
                return self
            except redis.exceptions.RedisError:  # refused, or loading its data back
                time.sleep(0.05)
        raise AssertionError("redis-server did not start")

    def stop(self) -> None:
        if self.proc is not None:
            self.proc.terminate()
            self.proc.wait(timeout=30)
            self.proc = None


@pytest.fixture(scope="module")
def redis_server(tmp_path_factory):
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed (apt-get install redis-server)")
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


def test_a_redis_restart_under_a_running_stream_loses_no_record_and_followers_resume(local_ray, sample, redis_server):
    with running(sample, store={"kind": "redis", "redis_url": redis_server.url}, watch_every_s=1) as app:
        sid = client(app).post("/api/streams", json={"source": str(sample["clip"])}).json()["id"]
        with ws_connect(app, sid) as a:
            with ws_connect(app, sid) as b:  # b leaves before the outage and comes back after it
                b_first = read_until_closed(b, until=lambda rs: len(rs) >= 5, timeout=90)
            a_first = read_until_closed(a, until=lambda rs: len(rs) >= 8, timeout=90)
            redis_server.stop()
            time.sleep(3)  # the stream goes on meanwhile
            assert status_of(app, sid)["state"] == "live"
            redis_server.start()
            with ws_connect(app, sid, after=b_first[-1]["cursor"]) as b:
                try:
                    b_rest = read_until_closed(b, timeout=120)
                except AssertionError as e:
                    raise AssertionError(f"{e}: {status_of(app, sid)}") from None
            a_rest = read_until_closed(a, timeout=60)
        status = wait_state(app, sid, ("ended",), timeout=60)
        kept = stored(app, sid)
        assert status["frames_analysed"] == len(kept)  # every record analysed is in the store
        assert bare(a_first + a_rest) == kept  # the socket that stayed got each one once
        assert bare(b_first + b_rest) == kept  # the one that reconnected resumed right after its last
        assert_in_order_once(a_first + a_rest)
        assert_in_order_once(b_first + b_rest)


# -- sources that drop ---------------------------------------------------------------------------
def publish(app, url: str, seconds: float) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-re",
            "-t",
            str(seconds),
            "-i",
            str(app.sample["clip"]),
            "-c",
            "copy",
            "-f",
            "flv",
            url,
        ],
        capture_output=True,
        timeout=90,
    )


@needs_ffmpeg
def test_an_rtmp_publisher_that_stops_and_comes_back_goes_reconnecting_live_then_ended(local_ray, sample):
    with running(sample, watch_every_s=1, rtmp_patience_s=6) as app:
        _publisher_comes_back(app)


def _publisher_comes_back(app) -> None:
    created = client(app).post("/api/streams", json={"source": "rtmp"}).json()
    sid, url = created["id"], created.get("publish_url_with_key") or created["publish_url"]
    with ws_connect(app, sid) as ws:
        assert publish(app, url, 3).returncode == 0
        first = wait_state(app, sid, ("reconnecting",), timeout=30)
        assert first["reason"] == "publisher disconnected" and first["frames_analysed"] > 0
        again = subprocess.Popen(
            [FFMPEG, "-v", "error", "-re", "-t", "3", "-i", str(app.sample["clip"]), "-c", "copy", "-f", "flv", url]
        )
        try:
            wait_for(app, sid, lambda s: s["state"] == "live", timeout=30, what="live again")
        finally:
            assert again.wait(timeout=60) == 0
        wait_state(app, sid, ("reconnecting",), timeout=30)
        ended = wait_state(app, sid, ("ended", "failed"), timeout=60)
        records = read_until_closed(ws, timeout=60)
    assert ended["state"] == "ended" and ended["reason"] == "publisher disconnected"
    assert_in_order_once(records)
    assert ended["frames_analysed"] == len(records) > first["frames_analysed"]
    assert bare(records) == stored(app, sid)


@needs_ffmpeg
def test_a_live_hls_playlist_that_stalls_reconnects_then_gives_up(local_ray, sample, tmp_path):
    from test_live_sources import StaticServer

    hls = tmp_path / "hls"
    hls.mkdir()
    # a live (event) playlist of 4 s that then stops growing: no ENDLIST ever comes
    subprocess.run(
        [FFMPEG, "-v", "error", "-t", "4", "-i", str(sample["clip"]), "-c", "copy", "-f", "hls"]
        + ["-hls_time", "1", "-hls_list_size", "0", "-hls_playlist_type", "event", str(hls / "index.m3u8")],
        check=True,
        timeout=60,
    )
    playlist = (hls / "index.m3u8").read_text().replace("#EXT-X-ENDLIST\n", "")
    (hls / "index.m3u8").write_text(playlist)
    server = StaticServer(hls).start()
    source = {"read_timeout_s": 3, "max_reconnects": 2, "backoff": {"initial_s": 0.2, "jitter": 0}}
    try:
        _stalls(sample, server, source)
    finally:
        server.stop()


def _stalls(sample, server, source) -> None:
    with running(sample, watch_every_s=1, source=source) as app:
        sid = client(app).post("/api/streams", json={"source": server.url("index.m3u8")}).json()["id"]
        with ws_connect(app, sid) as ws:
            wait_state(app, sid, ("live",), timeout=30)
            stalled = wait_state(app, sid, ("reconnecting",), timeout=30)
            assert stalled["reason"]
            failed = wait_state(app, sid, ("failed", "ended"), timeout=90)
            records = read_until_closed(ws, timeout=60)
        assert failed["state"] == "failed" and "gave up after 2 reconnects" in failed["reason"]
        assert_in_order_once(records)
        assert records and failed["frames_analysed"] == len(records)
        assert max(r["t"] for r in records) < 4.0  # nothing but what the playlist held, once
