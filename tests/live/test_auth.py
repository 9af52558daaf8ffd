"""The API token, the session cookie and the streams' own secrets, on a real app over HTTP and
WebSocket: every route of the app's own schema needs the token; RTMP keys and webcam push keys
are told to the creator only, never listed or stored; a rotated RTMP key refuses the old one."""

from __future__ import annotations

import asyncio
import json
import re
import shutil
import subprocess
import time

import cv2
import httpx
import pytest
from conftest import close_code
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import connect

FFMPEG = shutil.which("ffmpeg")
needs_ffmpeg = pytest.mark.skipif(FFMPEG is None, reason="the ffmpeg CLI is not installed (apt-get install ffmpeg)")

#: what anyone may call
OPEN = {("GET", "/api/health"), ("POST", "/api/session"), ("DELETE", "/api/session")}
#: a value for each path parameter: names of nothing, so that an admitted call changes nothing
PLACEHOLDERS = {"sid": "00000000", "brand_id": "no-such-brand", "name": "index.m3u8"}


def healthy(app) -> bool:
    return httpx.get(f"{app.base_url}/api/health", timeout=30).json()["ok"] is True


def schema_routes(app) -> list[tuple[str, str]]:
    """(method, path) of every route of the app's OpenAPI schema, with placeholders filled in,
    and the HLS route (left out of the schema)."""
    schema = httpx.get(f"{app.base_url}/openapi.json", timeout=30).json()
    routes = [("GET", "/streams/{sid}/hls/{name}")]
    for path, methods in schema["paths"].items():
        routes += [(m.upper(), path) for m in methods if m in ("get", "post", "put", "delete", "patch")]
    return [(m, re.sub(r"\{(\w+)\}", lambda g: PLACEHOLDERS[g.group(1)], p)) for m, p in routes if (m, p) not in OPEN]


def jpeg(app) -> bytes:
    cap = cv2.VideoCapture(str(app.sample["clip"]))
    ok, frame = cap.read()
    cap.release()
    assert ok
    return cv2.imencode(".jpg", frame)[1].tobytes()


def test_every_route_needs_the_token(live_app):
    app = live_app
    routes = schema_routes(app)
    assert len(routes) >= 10  # the schema was read: streams, brands, frames, report, key
    for method, path in routes:
        for headers in ({}, {"Authorization": "Bearer not-the-token-0123456789"}, {"Authorization": app.token}):
            r = httpx.request(method, f"{app.base_url}{path}", headers=headers, timeout=30)
            assert r.status_code == 401, (method, path, headers, r.status_code)
            assert r.headers["www-authenticate"] == "Bearer"
            assert app.token not in r.text
        r = app.http.request(method, path)
        assert r.status_code != 401 and r.status_code < 500, (method, path, r.status_code, r.text)
    assert healthy(app)


def test_the_page_health_and_docs_need_no_token(live_app):
    for path in ("/", "/static/player.js", "/api/health", "/docs", "/openapi.json"):
        assert httpx.get(f"{live_app.base_url}{path}", timeout=30).status_code == 200, path
    assert healthy(live_app)


def test_the_session_cookie_stands_for_the_token_without_holding_it(live_app):
    app = live_app
    with httpx.Client(base_url=app.base_url, timeout=30) as browser:
        assert browser.get("/api/streams").status_code == 401
        assert browser.post("/api/session", json={"token": "not-the-token-0123456789"}).status_code == 401
        assert "media_ray_session" not in browser.cookies
        r = browser.post("/api/session", json={"token": app.token})
        assert r.status_code == 200
        cookie = r.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        value = browser.cookies["media_ray_session"]
        assert value and app.token not in value
        assert browser.get("/api/streams").status_code == 200
        assert browser.delete("/api/session").status_code == 200
        assert browser.get("/api/streams").status_code == 401
    with httpx.Client(base_url=app.base_url, timeout=30, cookies={"media_ray_session": app.token}) as forged:
        assert forged.get("/api/streams").status_code == 401  # the token itself is no cookie
    assert healthy(app)


def test_the_follow_socket_needs_the_token(live_app):
    app = live_app
    sid = app.http.post("/api/streams", json={"source": "webcam"}).json()["id"]
    try:
        url = f"{app.ws_url}/ws/streams/{sid}"
        assert close_code(url) == 4401
        assert close_code(url, additional_headers={"Authorization": "Bearer not-the-token-0123456789"}) == 4401
        assert close_code(f"{url}?token=not-the-token-0123456789") == 4401
        assert close_code(url, additional_headers=app.headers) is None
        assert close_code(f"{url}?token={app.token}") is None
    finally:
        app.http.delete(f"/api/streams/{sid}")
    assert healthy(app)


def wait_for(predicate, timeout_s: float, what: str):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    raise AssertionError(f"timed out waiting for {what}")


def test_a_webcam_push_needs_the_streams_push_key(live_app):
    app = live_app
    created = app.http.post("/api/streams", json={"source": "webcam"}).json()
    sid, key = created["id"], created["push_key"]
    assert key and key not in app.http.get("/api/streams").text and key not in app.http.get(f"/api/streams/{sid}").text
    frame = jpeg(app)
    try:
        url = f"{app.ws_url}/ws/webcam/{sid}"
        assert close_code(f"{url}?key={key}") == 4401  # the push key is no API token
        for bad in (url, f"{url}?key=not-the-key", f"{url}?key={app.token}"):
            with connect(bad, open_timeout=10, additional_headers=app.headers) as ws:
                with pytest.raises(ConnectionClosed) as closed:
                    ws.send(frame)
                    ws.recv(timeout=10)
                assert closed.value.rcvd is not None and closed.value.rcvd.code == 4403
        assert app.http.get(f"/api/streams/{sid}").json()["frames_received"] == 0  # none was taken
        with connect(f"{url}?key={key}", open_timeout=10, additional_headers=app.headers) as ws:
            ws.send(frame)
            wait_for(lambda: app.http.get(f"/api/streams/{sid}").json()["frames_received"] >= 1, 30, "the frame")
            ws.send("not a frame")
            with pytest.raises(ConnectionClosed) as closed:
                ws.recv(timeout=10)
            assert closed.value.rcvd is not None and closed.value.rcvd.code == 1003 and closed.value.rcvd.reason
    finally:
        app.http.delete(f"/api/streams/{sid}")
    assert healthy(app)


def publish(app, url: str, seconds: float = 3) -> subprocess.CompletedProcess:
    cmd = [FFMPEG, "-v", "error", "-re", "-t", str(seconds), "-i", str(app.sample["clip"]), "-c", "copy", "-f", "flv"]
    return subprocess.run([*cmd, url], capture_output=True, timeout=90)


@needs_ffmpeg
def test_rtmp_keys_go_to_the_creator_only_and_rotation_refuses_the_old_one(live_app):
    app = live_app
    r = app.http.post("/api/streams", json={"source": "rtmp"})
    assert r.status_code == 201, r.text
    created = r.json()
    sid, old = created["id"], created["stream_key"]
    try:
        assert re.fullmatch(r"rtmp://127\.0\.0\.1:\d+/live", created["publish_url"])
        assert created["publish_url_with_key"] == f"{created['publish_url']}/{old}"
        listed, one = app.http.get("/api/streams").text, app.http.get(f"/api/streams/{sid}").text
        assert old not in listed and old not in one and "stream_key" not in listed
        assert sid in listed

        rotated = app.http.post(f"/api/streams/{sid}/key")
        assert rotated.status_code == 200, rotated.text
        new = rotated.json()["stream_key"]
        assert new != old and rotated.json()["publish_url_with_key"] == f"{created['publish_url']}/{new}"
        assert publish(app, f"{created['publish_url']}/{old}").returncode != 0
        assert app.http.get(f"/api/streams/{sid}").json()["frames_received"] == 0
        admitted = publish(app, rotated.json()["publish_url_with_key"])
        assert admitted.returncode == 0, admitted.stderr[-500:]
        wait_for(lambda: app.http.get(f"/api/streams/{sid}").json()["frames_analysed"] > 0, 60, "frames analysed")

        statuses = app.http.get("/api/streams").text + app.http.get(f"/api/streams/{sid}").text
        meta = json.dumps(asyncio.run(app.service.store.get_meta(sid)))  # what a GET after the end reads
        for text in (statuses, meta):
            assert old not in text and new not in text
    finally:
        app.http.delete(f"/api/streams/{sid}")
    assert app.http.post(f"/api/streams/{sid}/key").status_code == 404
    webcam = app.http.post("/api/streams", json={"source": "webcam"}).json()
    assert app.http.post(f"/api/streams/{webcam['id']}/key").status_code == 409  # no RTMP key to rotate
    app.http.delete(f"/api/streams/{webcam['id']}")
    assert healthy(app)


def test_a_wrong_token_of_any_length_is_refused_alike(live_app):
    app = live_app
    wrong = ("x", app.token[:-1], app.token + "x", app.token.upper(), "a" * 4096)
    for header in ("Bearer", f"Basic {app.token}", *(f"Bearer {token}" for token in wrong)):
        r = httpx.get(f"{app.base_url}/api/streams", headers={"Authorization": header}, timeout=30)
        assert r.status_code == 401, header
    assert healthy(app)
