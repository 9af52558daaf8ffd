"""What a live stream holds is given back: its LiveIngest actor, its RTMP port and its HLS folder,
after it ends (the HLS copy stays for replay until the stream is deleted or the server stops),
after it fails, after it is deleted, and after a start that failed; the last status stays."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest
from conftest import free_port, start_live_app
from test_faults_live import FFMPEG, actors, client, needs_ffmpeg, read_until_closed, short_clip, wait_for, ws_connect


def port_is_free(port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
            return True
        except OSError:
            return False


def ingests_alive() -> int:
    return len(actors("LiveIngest"))


def no_ingest_left(timeout: float = 30) -> bool:
    """Whether every LiveIngest actor is gone within `timeout` (a kill takes a moment)."""
    deadline = time.monotonic() + timeout
    while ingests_alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    return ingests_alive() == 0


def released(app, sid: str, timeout: float = 60) -> dict:
    """The stream's status once its ingest actor is gone (the registry's watch releases it)."""
    status = wait_for(app, sid, lambda s: s["state"] in ("ended", "failed"), timeout, "the end")
    wait_for(app, sid, lambda s: ingests_alive() == 0, timeout, "its ingest released")
    return status


@pytest.fixture(scope="module")
def app(local_ray, sample, tmp_path_factory):
    hls = tmp_path_factory.mktemp("hls-root")
    app = start_live_app(sample, watch_every_s=1, hls_dir=str(hls), source={"max_reconnects": 1})
    app.hls_root = hls
    app.stopped = False
    yield app
    if not app.stopped:
        app.service.stop()


@needs_ffmpeg
def test_a_stream_that_ends_releases_its_actor_and_keeps_its_hls_and_status_until_deleted(app):
    clip = short_clip(app.sample, 3, "short-3s.mp4")
    sid = client(app).post("/api/streams", json={"source": str(clip)}).json()["id"]
    with ws_connect(app, sid) as ws:
        records = read_until_closed(ws, timeout=90)
    status = released(app, sid)
    assert status["state"] == "ended" and status["frames_analysed"] == len(records) > 0
    assert (app.hls_root / sid / "index.m3u8").is_file()  # kept: the player can replay it
    assert client(app).get(f"/streams/{sid}/hls/index.m3u8").status_code == 200
    again = client(app).get(f"/api/streams/{sid}").json()  # the last status stays
    assert again["state"] == "ended" and again["frames_analysed"] == len(records)
    assert client(app).delete(f"/api/streams/{sid}").status_code == 200
    assert not (app.hls_root / sid).exists()
    assert client(app).get(f"/api/streams/{sid}").status_code == 404


def test_a_deleted_rtmp_stream_gives_back_its_actor_port_and_folder(app):
    created = client(app).post("/api/streams", json={"source": "rtmp"}).json()
    sid = created["id"]
    port = urlparse(created.get("publish_url_with_key") or created["publish_url"]).port
    assert ingests_alive() == 1 and not port_is_free(port)
    assert client(app).delete(f"/api/streams/{sid}").status_code == 200
    assert no_ingest_left()
    assert port_is_free(port)
    assert not (app.hls_root / sid).exists()
    assert client(app).get(f"/api/streams/{sid}").status_code == 404


def test_a_start_that_fails_leaves_no_actor_and_no_port_behind(app):
    first, _ = app.config.live.rtmp_ports
    with socket.socket() as taken:  # another program holds the first RTMP port
        taken.bind(("127.0.0.1", first))
        taken.listen(1)
        r = client(app).post("/api/streams", json={"source": "rtmp"})
        assert r.status_code == 422 and "could not start" in r.json()["detail"]
        assert no_ingest_left()
        assert [p.name for p in app.hls_root.iterdir()] == []
    created = client(app).post("/api/streams", json={"source": "rtmp"}).json()  # the port is issued again
    assert urlparse(created.get("publish_url_with_key") or created["publish_url"]).port == first
    assert client(app).delete(f"/api/streams/{created['id']}").status_code == 200


def test_a_stream_that_fails_releases_its_actor_and_its_hls_folder(app):
    nobody = f"http://127.0.0.1:{free_port()}/live/index.m3u8"  # nothing listens there
    sid = client(app).post("/api/streams", json={"source": nobody}).json()["id"]
    status = released(app, sid, timeout=90)
    assert status["state"] == "failed" and "gave up after 1 reconnects" in status["reason"]
    assert not (app.hls_root / sid).exists()
    assert client(app).get(f"/api/streams/{sid}").json()["state"] == "failed"


@needs_ffmpeg
def test_stopping_the_server_removes_the_streams_hls_folders(app):
    clip = short_clip(app.sample, 3, "short-3s.mp4")
    sid = client(app).post("/api/streams", json={"source": str(clip)}).json()["id"]
    released(app, sid)
    assert (app.hls_root / sid).is_dir()
    app.service.stop()
    app.stopped = True
    assert not (Path(app.hls_root) / sid).exists()
    assert no_ingest_left()
    assert FFMPEG
