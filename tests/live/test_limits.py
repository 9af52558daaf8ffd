"""Request limits and open reads on a real app: the stream after `http.limits.max_streams` is a
429 that leaves nothing behind, the viewer after `max_viewers_per_stream` is refused with 4429
while control calls go on answering, and `http.auth.open_reads` lets reads through but never
writes. The app of this module runs with `open_reads` and the default limits (20 and 20)."""

from __future__ import annotations

import contextlib

import httpx
import pytest
from conftest import close_code, start_live_app
from websockets.sync.client import connect


@pytest.fixture(scope="module")
def open_app(local_ray, sample):
    app = start_live_app(sample, auth={"open_reads": True})
    yield app
    app.stop()


def healthy(app) -> bool:
    return httpx.get(f"{app.base_url}/api/health", timeout=30).json()["ok"] is True


def running(app) -> list[dict]:
    return [s for s in app.http.get("/api/streams").json() if s["state"] not in ("ended", "failed")]


def test_open_reads_let_reads_through_but_not_writes(open_app):
    app = open_app
    anyone = httpx.Client(base_url=app.base_url, timeout=30)
    sid = app.http.post("/api/streams", json={"source": "webcam"}).json()["id"]
    try:
        for path in ("/api/streams", f"/api/streams/{sid}", f"/api/streams/{sid}/frames", "/api/brands"):
            assert anyone.get(path).status_code == 200, path
        assert close_code(f"{app.ws_url}/ws/streams/{sid}") is None  # following is a read
        assert anyone.post("/api/streams", json={"source": "webcam"}).status_code == 401
        assert anyone.delete(f"/api/streams/{sid}").status_code == 401
        assert anyone.post(f"/api/streams/{sid}/key").status_code == 401
        assert anyone.post("/api/brands", data={"id": "x"}).status_code == 401
        assert anyone.delete("/api/brands/acme").status_code == 401
        assert close_code(f"{app.ws_url}/ws/webcam/{sid}") == 4401  # pushing is a write
        assert app.http.get(f"/api/streams/{sid}").json()["state"] == "live"  # still there
    finally:
        app.http.delete(f"/api/streams/{sid}")
        anyone.close()
    assert healthy(app)


def test_the_stream_after_max_streams_is_a_429_and_nothing_is_made_for_it(open_app):
    app = open_app
    limit = app.config.http.limits.max_streams
    made = []
    try:
        while len(running(app)) < limit:  # webcam streams: nothing to decode
            r = app.http.post("/api/streams", json={"source": "webcam"}, timeout=120)
            assert r.status_code == 201, r.text
            made.append(r.json()["id"])
        before = {s["id"] for s in app.http.get("/api/streams").json()}
        refused = app.http.post("/api/streams", json={"source": "webcam"}, timeout=120)
        assert refused.status_code == 429 and "max_streams" in refused.json()["detail"]
        assert {s["id"] for s in app.http.get("/api/streams").json()} == before
        app.http.delete(f"/api/streams/{made.pop()}")
        again = app.http.post("/api/streams", json={"source": "webcam"}, timeout=120)
        assert again.status_code == 201, again.text  # a stopped stream frees its place
        made.append(again.json()["id"])
    finally:
        for sid in made:
            app.http.delete(f"/api/streams/{sid}", timeout=60)
    assert healthy(app)


def test_the_viewer_after_max_viewers_is_refused_and_control_calls_still_answer(open_app):
    app = open_app
    limit = app.config.http.limits.max_viewers_per_stream
    sid = app.http.post("/api/streams", json={"source": "webcam"}).json()["id"]
    url = f"{app.ws_url}/ws/streams/{sid}"
    try:
        with contextlib.ExitStack() as stack:
            viewers = [
                stack.enter_context(connect(url, open_timeout=30, additional_headers=app.headers)) for _ in range(limit)
            ]
            for ws in viewers:  # each is open: nothing to read yet, and no close
                with pytest.raises(TimeoutError):
                    ws.recv(timeout=0.1)
            assert close_code(url, additional_headers=app.headers) == 4429
            # control calls while the viewers wait
            assert healthy(app)
            assert sid in {s["id"] for s in app.http.get("/api/streams").json()}
            other = app.http.post("/api/streams", json={"source": "webcam"}, timeout=120)
            assert other.status_code == 201, other.text
            assert app.http.delete(f"/api/streams/{other.json()['id']}").status_code == 200
            assert close_code(f"{app.ws_url}/ws/streams/{other.json()['id']}") != 4429  # per stream
            viewers.pop().close()
            codes = []  # the server frees the place once it sees the close
            while len(codes) < 10 and (not codes or codes[-1] is not None):
                codes.append(close_code(url, additional_headers=app.headers))
            assert codes[-1] is None and set(codes) <= {4429, None}  # a place came free
    finally:
        app.http.delete(f"/api/streams/{sid}")
    assert healthy(app)
