"""The live API end to end: a real Serve app over HTTP/WebSocket, RTMP pushed with the ffmpeg
CLI, HLS and http pulls served on 127.0.0.1, the embedded and the Redis store."""

from __future__ import annotations

import contextlib
import functools
import http.server
import json
import shutil
import subprocess
import threading
import time

import pytest
from websockets.sync.client import connect

from media_ray.boxes import iou

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed (apt-get install ffmpeg)")
CLIP_FPS = 25


def wait_state(app, sid, states, timeout=60):
    deadline = time.monotonic() + timeout
    status = None
    while time.monotonic() < deadline:
        status = app.http.get(f"/api/streams/{sid}").json()
        if status["state"] in states:
            return status
        time.sleep(0.25)
    raise AssertionError(f"stream {sid} not in {states} after {timeout} s: {status}")


def collect(app, sid, until_states=("ended", "failed"), timeout=90, clients=1):
    """Frame records from `clients` WebSocket clients until the stream ends."""
    got = [[] for _ in range(clients)]
    with contextlib.ExitStack() as stack:
        sockets = [
            stack.enter_context(
                connect(f"{app.ws_url}/ws/streams/{sid}", open_timeout=10, additional_headers=app.headers)
            )
            for _ in range(clients)
        ]
        deadline = time.monotonic() + timeout
        ended_at = None
        while time.monotonic() < deadline:
            for ws, records in zip(sockets, got):
                try:
                    while True:
                        records.append(json.loads(ws.recv(timeout=0.2)))
                except TimeoutError:
                    pass
            if ended_at is None:
                if app.http.get(f"/api/streams/{sid}").json()["state"] in until_states:
                    ended_at = time.monotonic()
            elif time.monotonic() - ended_at > 1.5:
                break
    return got


def check_logo_found(app, records, brand="acme", t0=1.5, t1=5.5):
    gt = app.sample["gt"]
    inside = [r for r in records if t0 <= r["t"] <= t1]
    assert inside, "no frames while the logo was on screen"
    found = 0
    for r in inside:
        truth = [o["bbox_xyxy"] for o in gt["frames"][round(r["t"] * gt["fps"])]["objects"] if o["brand"] == brand]
        boxes = [d["box"] for d in r["detections"] if d["label"] == brand and d["box"]]
        found += bool(truth and boxes and max(iou(b, truth[0]) for b in boxes) >= 0.5)
    assert found >= 0.8 * len(inside)
    outside = [r for r in records if r["t"] < 0.8 or 11.2 < r["t"]]
    assert not any(d["label"] == brand for r in outside for d in r["detections"])


@needs_ffmpeg
def test_rtmp_push_is_analysed_live_with_the_clips_own_times(live_app):
    app = live_app
    created = app.http.post("/api/streams", json={"source": "rtmp", "name": "obs"}).json()
    assert created["publish_url_with_key"].startswith("rtmp://127.0.0.1:") and created["state"] in ("starting", "live")
    sid = created["id"]
    push = subprocess.Popen(
        [
            FFMPEG,
            "-v",
            "error",
            "-re",
            "-i",
            str(app.sample["clip"]),
            "-c",
            "copy",
            "-f",
            "flv",
            created["publish_url_with_key"],
        ]
    )
    try:
        [records] = collect(app, sid)
    finally:
        push.wait(timeout=60)
    assert push.returncode == 0
    assert len(records) >= 50  # 12 s at 5 frames/s, a few may be dropped
    for r in records:
        assert abs(r["t"] * CLIP_FPS - round(r["t"] * CLIP_FPS)) < 1e-3 + 1 / CLIP_FPS  # on a frame of the clip
        assert r["frame"] == round(r["t"] * CLIP_FPS)
    assert [r["t"] for r in records] == sorted(r["t"] for r in records)
    check_logo_found(app, records)
    status = app.http.get(f"/api/streams/{sid}").json()
    assert status["state"] == "ended" and status["frames_analysed"] == len(records)
    history = app.http.get(f"/api/streams/{sid}/frames", params={"since": 5.0, "limit": 5}).json()
    assert [r["t"] for r in history] == [r["t"] for r in records if r["t"] > 5.0][:5]
    report = app.http.get(f"/api/streams/{sid}/report").json()
    assert report["brands"]["acme"]["exposure_s"] > 5


@needs_ffmpeg
def test_a_publish_with_an_unknown_key_is_refused(live_app):
    app = live_app
    created = app.http.post("/api/streams", json={"source": "rtmp"}).json()
    url = created["publish_url_with_key"]
    wrong = url.rsplit("/", 1)[0] + "/not-the-key"
    push = subprocess.run(
        [
            FFMPEG,
            "-v",
            "error",
            "-re",
            "-t",
            "2",
            "-i",
            str(app.sample["clip"]),
            "-c",
            "copy",
            "-f",
            "flv",
            wrong,
        ],
        capture_output=True,
        timeout=60,
    )
    assert push.returncode != 0
    status = app.http.get(f"/api/streams/{created['id']}").json()
    assert status["frames_analysed"] == 0
    app.http.delete(f"/api/streams/{created['id']}")


@pytest.fixture(scope="module")
def served_folder(tmp_path_factory, sample):
    """An HLS playlist and an mp4 of the sample clip, served over http on 127.0.0.1."""
    folder = tmp_path_factory.mktemp("www")
    shutil.copy(sample["clip"], folder / "clip.mp4")
    if FFMPEG:
        subprocess.run(
            [
                FFMPEG,
                "-v",
                "error",
                "-i",
                str(sample["clip"]),
                "-c",
                "copy",
                "-f",
                "hls",
                "-hls_time",
                "2",
                "-hls_playlist_type",
                "vod",
                str(folder / "index.m3u8"),
            ],
            check=True,
        )
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()


@needs_ffmpeg
@pytest.mark.parametrize("path", ["index.m3u8", "clip.mp4"])
def test_pulled_hls_playlists_and_http_files_are_analysed(live_app, served_folder, path):
    app = live_app
    created = app.http.post("/api/streams", json={"source": f"{served_folder}/{path}"}).json()
    [records] = collect(app, created["id"])
    assert len(records) >= 50
    check_logo_found(app, records)
    assert app.http.get(f"/api/streams/{created['id']}").json()["state"] == "ended"


def test_every_websocket_client_gets_every_record(live_app):
    app = live_app
    created = app.http.post("/api/streams", json={"source": str(app.sample["clip"])}).json()
    a, b = collect(app, created["id"], clients=2)
    assert len(a) >= 50 and a == b


def test_the_api_refuses_what_it_cannot_serve(live_app):
    app = live_app
    r = app.http.post("/api/streams", json={"source": "rtmp", "detectors": ["nope"]})
    assert r.status_code == 422 and "nope" in r.json()["detail"]
    assert app.http.get("/api/streams/doesnotexist").status_code == 404
    assert app.http.post("/api/streams", json={"fps": 2}).status_code == 422
    assert app.http.get("/api/health").json()["ok"] is True
    assert app.http.get("/docs").status_code == 200


def test_brands_can_be_listed_added_and_removed_while_running(live_app, tmp_path):
    app = live_app
    ids = {b["id"] for b in app.http.get("/api/brands").json()}
    assert ids == {"acme", "globex", "initech"}
    png = app.sample["logos"] / "initech.png"
    r = app.http.post(
        "/api/brands",
        data={"id": "initech2", "name": "Initech Two", "prompts": "a, b"},
        files={"image": ("x.png", png.read_bytes(), "image/png")},
    )
    assert r.status_code == 201 and r.json()["has_image"] and r.json()["prompts"] == ["a", "b"]
    assert "initech2" in {b["id"] for b in app.http.get("/api/brands").json()}
    assert app.http.delete("/api/brands/initech2").status_code == 200
    assert app.http.delete("/api/brands/initech2").status_code == 404


def test_a_brand_added_through_the_api_keeps_its_colour_and_reads_its_image_as_a_catalogue_does(live_app, tmp_path):
    """The page's form and POST /api/brands take the brand's colour (the `shape` detector needs
    it) and decode a 16-bit PNG exactly as a catalogue folder's file."""
    import cv2
    import numpy as np
    import ray

    from media_ray.catalog import BrandCatalog
    from media_ray.topology import REGISTRY_NAME

    app = live_app
    mark = cv2.imread(str(app.sample["logos"] / "acme.png"), cv2.IMREAD_UNCHANGED)
    folder = tmp_path / "logos"
    folder.mkdir()
    cv2.imwrite(str(folder / "acme16.png"), mark.astype(np.uint16) * 257)
    r = app.http.post(
        "/api/brands",
        data={"id": "acme16", "name": "Acme 16", "hex": "#DC281E"},
        files={"image": ("acme16.png", (folder / "acme16.png").read_bytes(), "image/png")},
    )
    try:
        assert r.status_code == 201, r.text
        assert r.json()["hex"] == "DC281E"
        listed = {b["id"]: b for b in app.http.get("/api/brands").json()}
        assert listed["acme16"]["hex"] == "DC281E"
        registry = ray.get_actor(REGISTRY_NAME, namespace=app.config.ray.namespace)
        brand = ray.get(registry.catalog.remote())["acme16"]
        assert brand.colour == (0xDC, 0x28, 0x1E)
        assert brand.image.dtype == np.uint8
        assert np.array_equal(brand.image, BrandCatalog.from_folder(folder)["acme16"].image)
    finally:
        app.http.delete("/api/brands/acme16")
    assert app.http.get("/api/health").json()["ok"] is True


def test_a_running_stream_picks_up_a_new_brand_without_a_restart(live_app):
    app = live_app
    # only initech in the catalogue at first: acme is not reported
    for bid in ("acme", "globex"):
        app.http.delete(f"/api/brands/{bid}")
    try:
        created = app.http.post("/api/streams", json={"source": str(app.sample["clip"])}).json()
        wait_state(app, created["id"], ("live",))
        time.sleep(0.5)
        png = app.sample["logos"] / "acme.png"
        app.http.post(
            "/api/brands",
            data={"id": "acme", "name": "Acme"},
            files={"image": ("acme.png", png.read_bytes(), "image/png")},
        )
        [records] = collect(app, created["id"])
        assert any(d["label"] == "acme" for r in records for d in r["detections"])
    finally:
        for bid in ("acme", "globex"):
            png = app.sample["logos"] / f"{bid}.png"
            app.http.post(
                "/api/brands",
                data={"id": bid, "name": bid.title()},
                files={"image": (f"{bid}.png", png.read_bytes(), "image/png")},
            )


@needs_ffmpeg
def test_a_pulled_source_that_drops_shows_reconnecting_then_live_again(live_app, tmp_path):
    from test_live_sources import StaticServer

    app = live_app
    hls = tmp_path / "hls"
    hls.mkdir()
    producer = subprocess.Popen(
        [
            FFMPEG,
            "-v",
            "error",
            "-nostdin",
            "-re",
            "-i",
            str(app.sample["clip"]),
            "-c",
            "copy",
            "-f",
            "hls",
            "-hls_time",
            "1",
            "-hls_list_size",
            "0",
            "-hls_playlist_type",
            "event",
            str(hls / "index.m3u8"),
        ]
    )
    server = StaticServer(hls)
    try:
        deadline = time.monotonic() + 10
        while not (hls / "index.m3u8").exists() and time.monotonic() < deadline:
            time.sleep(0.05)
        server.start()
        created = app.http.post("/api/streams", json={"source": server.url("index.m3u8")}).json()
        sid = created["id"]
        wait_state(app, sid, ("live",), timeout=20)
        server.stop()
        dropped = wait_state(app, sid, ("reconnecting",), timeout=20)
        assert dropped["reason"]
        time.sleep(1.0)
        server.start()
        wait_state(app, sid, ("live",), timeout=20)
        assert producer.wait(30) == 0
        ended = wait_state(app, sid, ("ended",), timeout=60)
        assert ended["frames_analysed"] > 0
    finally:
        server.stop()
        producer.kill()
        producer.wait()
