"""Requests a hostile client sends, answered with a 4xx and a message; the server goes on.

Each test sends the request to the running app (the `live_app` fixture), checks the answer,
and that `/api/health` still answers afterwards.
"""

from __future__ import annotations

import struct
import tempfile
import time
import zlib
from pathlib import Path

import pytest
from test_live_api import wait_state


def healthy(app) -> bool:
    return app.http.get("/api/health", timeout=30).json()["ok"] is True


def png_header(width: int, height: int) -> bytes:
    """A PNG that declares width x height pixels and holds none: a decompression bomb's header."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 6, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def post_brand(app, brand_id: str, image: bytes | None = None, method: str = "POST", **fields):
    files = {"image": ("x.png", image, "image/png")} if image is not None else None
    url = "/api/brands" + (f"/{brand_id}" if method == "PUT" else "")
    data = {**fields} if method == "PUT" else {"id": brand_id, **fields}
    return app.http.request(method, url, data=data, files=files, timeout=60)


def test_an_existing_brand_id_is_a_409_and_put_replaces_it(live_app):
    app = live_app
    png = (app.sample["logos"] / "initech.png").read_bytes()
    assert post_brand(app, "twice", png, name="First").status_code == 201
    try:
        again = post_brand(app, "twice", png, name="Second")
        assert again.status_code == 409 and "PUT" in again.json()["detail"]
        names = {b["id"]: b["name"] for b in app.http.get("/api/brands").json()}
        assert names["twice"] == "First"
        replaced = post_brand(app, "twice", png, method="PUT", name="Second")
        assert replaced.status_code == 200 and replaced.json()["name"] == "Second"
    finally:
        app.http.delete("/api/brands/twice")
    assert healthy(app)


@pytest.mark.parametrize("brand_id", ["a/b", "../up", "x" * 65, "y" * 1_000_000, ""])
def test_a_brand_id_outside_the_pattern_is_refused(live_app, brand_id):
    app = live_app
    before = {b["id"] for b in app.http.get("/api/brands").json()}
    r = post_brand(app, brand_id, name="bad")
    assert r.status_code == 422, r.text
    assert {b["id"] for b in app.http.get("/api/brands").json()} == before
    assert healthy(app)


def test_an_image_over_the_pixel_limit_is_refused_before_it_is_decoded(live_app):
    app = live_app
    r = post_brand(app, "bomb", png_header(12000, 12000))
    assert r.status_code == 413 and "12000x12000" in r.json()["detail"]
    assert "bomb" not in {b["id"] for b in app.http.get("/api/brands").json()}
    assert healthy(app)


def test_an_upload_over_the_byte_limit_is_refused(live_app):
    app = live_app
    limit = app.config.http.limits.max_upload_bytes
    r = post_brand(app, "heavy", b"\0" * (limit + 1))
    assert r.status_code == 413 and str(limit) in r.json()["detail"]
    assert healthy(app)


@pytest.mark.parametrize(
    "body",
    [
        '{"source": "webcam", "fps": NaN}',
        '{"source": "webcam", "fps": Infinity}',
        '{"source": "webcam", "name": "%s"}' % ("n" * 201),
        '{"source": "%s"}' % ("s" * 2049),
        '{"source": ""}',
    ],
)
def test_stream_requests_out_of_bounds_are_422_and_create_nothing(live_app, body):
    app = live_app
    before = len(app.http.get("/api/streams").json())
    r = app.http.post("/api/streams", content=body, headers={"content-type": "application/json"}, timeout=30)
    assert r.status_code == 422, r.text
    assert len(app.http.get("/api/streams").json()) == before
    assert healthy(app)


def test_hls_is_served_only_from_the_streams_own_folder_without_following_links(live_app, tmp_path):
    app = live_app
    secret = tmp_path / "secret.ts"
    secret.write_text("not yours")
    sid = app.http.post("/api/streams", json={"source": str(app.sample["clip"])}, timeout=60).json()["id"]
    try:
        wait_state(app, sid, ("live", "ended"))
        root = Path(app.config.live.hls_dir or Path(tempfile.gettempdir()) / "media-ray" / "hls")
        (root / sid / "link.ts").symlink_to(secret)
        (root / "parent.ts").write_text("beside the streams' folders")
        base = "/streams"
        deadline = time.monotonic() + 30  # the playlist appears with the first segment
        while app.http.get(f"{base}/{sid}/hls/index.m3u8").status_code != 200:
            assert time.monotonic() < deadline, "the stream's own playlist is not served"
            time.sleep(0.5)
        for path in (
            f"{sid}/hls/link.ts",
            "%2E%2E/hls/parent.ts",
            "..%2F/hls/parent.ts",
            "00000000/hls/index.m3u8",
            f"{sid}/hls/%2E%2E%2Fparent.ts",
        ):
            r = app.http.get(f"{base}/{path}")
            assert r.status_code == 404 and "not yours" not in r.text and "beside" not in r.text, path
    finally:
        app.http.delete(f"/api/streams/{sid}")
        (root / "parent.ts").unlink(missing_ok=True)
    assert healthy(app)
