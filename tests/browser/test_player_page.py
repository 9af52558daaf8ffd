"""The player page in headless Chromium, against the real app (the `live_app` fixture).

The page publishes what it shows on `window.mediaRay` at every draw: the media time of the
frame on screen and the boxes drawn over it. The tests read that, and the overlay's pixels.
The page is opened with the API token in its URL fragment (`/#token=...`, as `media-ray serve`
prints it): from then on its session cookie carries every fetch, the HLS player and the sockets.
"""

from __future__ import annotations

import subprocess
import uuid
from pathlib import Path

import pytest

pytest.importorskip("playwright.sync_api", reason="the page tests drive Chromium with playwright")
httpx = pytest.importorskip("httpx")

from browser import chromium_path, headless_chromium  # noqa: E402

if chromium_path() is None:
    pytest.skip("no Chromium on this machine (Debian package 'chromium')", allow_module_level=True)

# media-ray.samples.write_sample: acme is on screen over [1, 6) s and [8, 11) s, globex over [4, 10) s
ACME_ON = (1.5, 5.5)  # well inside the first appearance
ACME_GONE = (6.5, 7.5)  # after it left, before it returns; only globex is on screen
CAMERA_FROM_S, CAMERA_SECONDS = 1.5, 4.0  # the fake camera loops this part of the clip: acme throughout


@pytest.fixture(scope="module")
def app(request):
    try:
        return request.getfixturevalue("live_app")
    except pytest.FixtureLookupError:
        pytest.skip("the live_app fixture (the running app) is not defined yet")


def sample_part(sample, name: str):
    """`live_app.sample` as a dict (the `sample` fixture's shape) or an object with attributes."""
    return sample[name] if isinstance(sample, dict) else getattr(sample, name)


@pytest.fixture(scope="module")
def api(app):
    with httpx.Client(base_url=app.base_url, headers=app.headers, timeout=30.0) as client:
        yield client


@pytest.fixture(scope="module")
def sample_stream(app, api):
    """The sample clip played as live, created through the API; removed afterwards."""
    clip = Path(sample_part(app.sample, "clip"))
    response = api.post("/api/streams", json={"source": str(clip), "name": f"sample-{uuid.uuid4().hex[:6]}"})
    assert response.status_code == 201, response.text
    status = response.json()
    yield status
    api.delete(f"/api/streams/{status['id']}")


@pytest.fixture(scope="module")
def camera_y4m(app, tmp_path_factory) -> Path:
    """A few seconds of the sample clip as raw YUV 4:2:0, the format Chromium's fake camera plays."""
    clip = Path(sample_part(app.sample, "clip"))
    y4m = tmp_path_factory.mktemp("camera") / "camera.y4m"
    subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-y",
            "-ss",
            str(CAMERA_FROM_S),
            "-t",
            str(CAMERA_SECONDS),
            "-i",
            str(clip),
            "-vf",
            "fps=10",
            "-pix_fmt",
            "yuv420p",
            "-f",
            "yuv4mpegpipe",
            str(y4m),
        ],
        check=True,
        timeout=60,
    )
    return y4m


@pytest.fixture(scope="module")
def browser(camera_y4m):
    with headless_chromium(camera=camera_y4m) as b:
        yield b


def open_page(browser, app, path: str):
    context = browser.new_context(viewport={"width": 1280, "height": 900}, base_url=app.base_url)
    context.grant_permissions(["camera"], origin=app.base_url)
    pg = context.new_page()
    pg.set_default_timeout(30_000)
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(path)
    pg.wait_for_function("() => window.mediaRay !== undefined")
    return context, pg, errors


@pytest.fixture
def page(browser, app):
    context, pg, errors = open_page(browser, app, f"/#token={app.token}")
    pg.wait_for_function("() => window.mediaRay.signedIn")
    yield pg
    context.close()
    assert not errors, f"the page raised: {errors}"


@pytest.mark.timeout(120)
def test_without_the_token_the_page_asks_for_it_and_takes_it_from_the_form_or_the_fragment(browser, app):
    context, pg, errors = open_page(browser, app, "/")
    try:
        pg.wait_for_function("() => window.mediaRay.needsToken")
        assert pg.locator("#sign-in").is_visible() and pg.locator("#streams li").count() == 0
        pg.fill('#sign-in [name="token"]', "not-the-token-0123456789")
        pg.click('#sign-in button[type="submit"]')
        pg.wait_for_function("() => document.getElementById('notice').textContent === 'wrong token'")
        assert pg.locator("#sign-in").is_visible()
        pg.fill('#sign-in [name="token"]', app.token)
        pg.click('#sign-in button[type="submit"]')
        pg.wait_for_function("() => window.mediaRay.signedIn")
        assert not pg.locator("#sign-in").is_visible()
        cookies = {c["name"]: c for c in context.cookies()}
        session = cookies["media_ray_session"]
        assert session["httpOnly"] and session["sameSite"] == "Strict" and app.token not in session["value"]
    finally:
        context.close()
    context, pg, more = open_page(browser, app, f"/#token={app.token}")
    try:
        pg.wait_for_function("() => window.mediaRay.signedIn")
        assert not pg.locator("#sign-in").is_visible()
        assert app.token not in pg.url and pg.evaluate("() => location.hash") == ""  # the fragment is cleared
    finally:
        context.close()
    assert not errors + more, f"the page raised: {errors + more}"


def wait_for(page, expression: str, arg=None, timeout_s: float = 30.0):
    return page.wait_for_function(expression, arg=arg, timeout=timeout_s * 1000, polling=100).json_value()


# Collects, at every draw of the player, the media time, the boxes drawn and how many overlay
# pixels carry acme's colour, until the video is past `until` s, has ended, or time is up.
WATCH_PLAYER = """
async ([until, limitMs, colour]) => {
  const video = document.getElementById("video");
  const canvas = document.getElementById("overlay");
  const rgb = [0, 2, 4].map((i) => parseInt(colour.slice(i, i + 2), 16));
  const samples = [];
  let lastDraw = -1;
  const started = performance.now();
  const acmePixels = () => {
    if (!canvas.width || !canvas.height) return 0;
    const data = canvas.getContext("2d").getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < data.length; i += 4 * 3) {
      if (data[i + 3] > 200 && Math.abs(data[i] - rgb[0]) < 40 && Math.abs(data[i + 1] - rgb[1]) < 40
          && Math.abs(data[i + 2] - rgb[2]) < 40) n++;
    }
    return n;
  };
  while (performance.now() - started < limitMs) {
    const m = window.mediaRay;
    if (m.draws !== lastDraw && m.records > 0) {
      lastDraw = m.draws;
      samples.push({ t: m.currentTime, boxes: m.drawnBoxes, acmePixels: acmePixels() });
    }
    if (m.currentTime >= until || video.ended) break;
    await new Promise((r) => setTimeout(r, 40));
  }
  return samples;
}
"""

# Pauses the player, shows the frame at `t` and returns what is drawn over it.
SHOW_FRAME_AT = """
async ([t, colour]) => {
  const video = document.getElementById("video");
  video.pause();
  const seekable = video.seekable;
  if (!seekable.length || seekable.start(0) > t || seekable.end(seekable.length - 1) < t) {
    return { error: `t=${t} is not seekable` };
  }
  await new Promise((resolve) => {
    video.addEventListener("seeked", resolve, { once: true });
    video.currentTime = t;
  });
  await new Promise((r) => setTimeout(r, 300));  // the draw that follows the seek
  const m = window.mediaRay;
  return { t: m.currentTime, boxes: m.drawnBoxes };
}
"""


def acme_colour(api) -> str:
    return next(b["hex"] for b in api.get("/api/brands").json() if b["id"] == "acme") or "DC281E"


def gt_box(gt: dict, brand: str, t: float):
    frame = gt["frames"][min(len(gt["frames"]) - 1, int(round(t * gt["fps"])))]
    return next((o["bbox_xyxy"] for o in frame["objects"] if o["brand"] == brand), None)


def overlaps(a, b) -> bool:
    return min(a[2], b[2]) > max(a[0], b[0]) and min(a[3], b[3]) > max(a[1], b[1])


def labels(sample: dict) -> set[str]:
    return {b["label"] for b in sample["boxes"]}


@pytest.mark.timeout(120)
def test_the_page_lists_the_streams_with_their_state(page, sample_stream):
    row = page.locator(f'#streams li[data-id="{sample_stream["id"]}"]')
    row.wait_for(timeout=10_000)
    assert sample_stream["name"] in row.inner_text()
    assert row.get_attribute("data-state") in {"starting", "live", "reconnecting", "ended", "failed"}


@pytest.mark.timeout(120)
def test_a_stream_added_with_the_form_is_created_and_listed(page, api):
    name = f"push-{uuid.uuid4().hex[:6]}"
    page.fill('#add-stream [name="source"]', "rtmp")
    page.fill('#add-stream [name="name"]', name)
    page.click('#add-stream button[type="submit"]')
    created = wait_for(
        page,
        "(name) => { const m = window.mediaRay; return m.selected && "
        "document.getElementById('stream-title').textContent === name && m.selected; }",
        name,
    )
    try:
        assert any(s["id"] == created and s["name"] == name for s in api.get("/api/streams").json())
        page.locator(f'#streams li[data-id="{created}"]').wait_for(timeout=10_000)
        assert page.locator("#st-publish-url").inner_text().startswith("rtmp://")
    finally:
        api.delete(f"/api/streams/{created}")


@pytest.mark.timeout(180)
def test_boxes_are_drawn_with_the_frames_the_logo_is_in_and_not_after(page, app, api, sample_stream):
    gt = app.sample["gt"] if isinstance(app.sample, dict) else app.sample.gt
    colour = acme_colour(api)
    page.click(f'#streams li[data-id="{sample_stream["id"]}"]')
    wait_for(page, "() => window.mediaRay.playback !== null && window.mediaRay.currentTime > 0", timeout_s=60)

    watched = page.evaluate(WATCH_PLAYER, [ACME_GONE[1] + 0.2, 60_000, colour])
    assert watched, "nothing was drawn while the stream played"

    # judge what a viewer saw while it played; a time the player skipped (it may join a live
    # stream late) is looked at by pausing on it
    def frames_in(window):
        seen = [s for s in watched if window[0] <= s["t"] <= window[1]]
        if seen:
            return seen, "played"
        wait_for(page, "(t) => window.mediaRay.lastRecordT >= t", window[1], timeout_s=60)
        shown = page.evaluate(SHOW_FRAME_AT, [(window[0] + window[1]) / 2, colour])
        assert "error" not in shown, f"{shown['error']}: the HLS playlist must keep the stream from t=0"
        return [shown], "paused"

    on, how_on = frames_in(ACME_ON)
    with_acme = [s for s in on if "acme" in labels(s)]
    assert with_acme, f"no acme box while acme was on screen ({how_on}): {on[:5]}"
    for s in with_acme:
        box = next(b for b in s["boxes"] if b["label"] == "acme")
        assert box["t"] <= s["t"] + 1e-3, "a box was drawn before the frame it was found in"
        truth = gt_box(gt, "acme", box["t"])
        assert truth is not None and overlaps(box["box"], truth), (box, truth)
    if how_on == "played":
        assert max(s["acmePixels"] for s in with_acme) > 50, "the acme box is not on the overlay"

    gone, how_gone = frames_in(ACME_GONE)
    assert not [s for s in gone if "acme" in labels(s)], f"an acme box after acme left ({how_gone})"
    if how_gone == "played":
        assert all(s["acmePixels"] == 0 for s in gone)


@pytest.mark.timeout(180)
def test_the_camera_button_sends_frames_and_draws_the_boxes_that_come_back(page, api):
    page.click("#camera-button")
    webcam = wait_for(
        page,
        "() => { const w = window.mediaRay.webcam; return w.id && w.sent >= 6 && w.received >= 3 && w; }",
        timeout_s=90,
    )
    try:
        assert webcam["frameSize"][0] > 0
        listed = {s["id"]: s for s in api.get("/api/streams").json()}
        assert listed[webcam["id"]]["kind"] == "webcam"
        # the fake camera shows acme all the time: its box comes back and is drawn over the camera
        box = wait_for(page, "() => window.mediaRay.webcam.drawnBoxes.find((b) => b.label === 'acme')", timeout_s=60)
        x0, y0, x1, y1 = box["box"]
        assert 0 <= x0 < x1 <= webcam["frameSize"][0] and 0 <= y0 < y1 <= webcam["frameSize"][1]
        page.click("#camera-button")
        assert page.evaluate("() => window.mediaRay.webcam.active") is False
    finally:
        api.delete(f"/api/streams/{webcam['id']}")


@pytest.mark.timeout(120)
def test_the_page_takes_the_stream_states_from_the_api_schema_and_the_box_scale_from_the_status(
    page, api, sample_stream
):
    """The states are the API's StreamState enum, as its OpenAPI schema serves it; boxes are
    scaled from the analysed frames' size in the stream's status (frame records have none)."""
    from media_ray.streams import StreamState

    schema = api.get("/openapi.json").json()
    assert schema["components"]["schemas"]["StreamState"]["enum"] == [s.value for s in StreamState]
    assert page.evaluate("() => window.mediaRay.states") == [s.value for s in StreamState]

    page.click(f'#streams li[data-id="{sample_stream["id"]}"]')
    size = wait_for(page, "() => window.mediaRay.sourceSize", timeout_s=60)
    status = api.get(f"/api/streams/{sample_stream['id']}").json()
    assert size == [status["frame_width"], status["frame_height"]] == [640, 360]


@pytest.mark.timeout(120)
def test_a_brand_added_with_the_form_keeps_its_colour(page, app, api):
    """The page's brand form sends the colour with the image: the API keeps it and the page's
    list shows the brand in it."""
    brand = f"form-{uuid.uuid4().hex[:6]}"
    logo = Path(sample_part(app.sample, "logos")) / "acme.png"
    page.fill('#add-brand [name="id"]', brand)
    page.fill('#add-brand [name="name"]', "Form Brand")
    page.fill('#add-brand [name="hex"]', "#1E963C")
    page.set_input_files('#add-brand [name="image"]', str(logo))
    page.click('#add-brand button[type="submit"]')
    try:
        item = page.locator(f'#brands li[data-id="{brand}"]')
        item.wait_for(timeout=15_000)
        swatch = item.locator(".swatch").evaluate("(e) => getComputedStyle(e).backgroundColor")
        assert swatch == "rgb(30, 150, 60)"
        listed = {b["id"]: b for b in api.get("/api/brands").json()}
        assert listed[brand]["hex"] == "1E963C" and listed[brand]["has_image"]
        assert listed[brand]["name"] == "Form Brand"
    finally:
        api.delete(f"/api/brands/{brand}")
