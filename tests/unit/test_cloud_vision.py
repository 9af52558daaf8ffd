"""The `cloud_vision` detector against a local fake of Vision's REST endpoint on 127.0.0.1
(`tests/vision_fake.py`), which answers from the images it is sent."""

from __future__ import annotations

import numpy as np
import pytest
from cli_support import assert_one_line_error, media_ray
from vision_fake import MARK_BOX, MARK_RGB, FakeVision

from media_ray.catalog import Brand, BrandCatalog
from media_ray.config import MediaRayConfig
from media_ray.detectors import create, default_set
from media_ray.detectors.cloud_vision import CloudVisionDetector, CloudVisionParams, RequestBudget
from media_ray.model import FrameBatch

pytest.importorskip("google.cloud.vision")


@pytest.fixture
def fake_vision():
    fake = FakeVision([("ACME corporation", 0.93), ("Some Brand Nobody Asked For", 0.99)])
    yield fake
    fake.close()


@pytest.fixture(scope="module")
def catalog():
    return BrandCatalog([Brand("acme-co", "Acme", aliases=("Acme Corporation",)), Brand("globex", "Globex")])


def frames(n: int) -> FrameBatch:
    rgb = np.full((720, 1280, 3), 90, np.uint8)
    x0, y0, x1, y1 = MARK_BOX
    rgb[y0:y1, x0:x1] = MARK_RGB
    return FrameBatch.stack("s", 0, [rgb] * n, [i * 0.2 for i in range(n)], list(range(n)))


class Clock:
    def __init__(self, now: float = 1_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


def detector(fake, catalog, clock=None, **params) -> CloudVisionDetector:
    p = CloudVisionParams(endpoint=fake.endpoint, credentials="anonymous", **params)
    return CloudVisionDetector(catalog, p, clock or Clock())


def test_logos_named_by_an_alias_become_the_brand_with_the_box_in_source_pixels(fake_vision, catalog):
    results = detector(fake_vision, catalog, max_side=640, max_results=7).detect(frames(2))
    request = fake_vision.calls[0]["requests"][0]
    assert request["features"] == [{"type": 3, "maxResults": 7}]  # 3: LOGO_DETECTION, as the API numbers it
    assert fake_vision.images[0].shape == (360, 640, 3)  # sent at max_side, a JPEG of the frame
    for r in results:
        assert [d.label for d in r.detections] == ["acme-co"]  # the unknown brand is dropped
        d = r.detections[0]
        assert d.detector == "cloud_vision" and d.score == pytest.approx(0.93)
        assert d.box == pytest.approx(MARK_BOX, abs=3)


def test_a_budget_of_k_frames_a_minute_sends_k_and_skips_the_rest_until_the_minute_has_passed(fake_vision, catalog):
    clock = Clock()
    vision = detector(fake_vision, catalog, clock, frames_per_minute=3, frames_per_day=100, images_per_call=2)
    first = vision.detect(frames(8))
    assert len(fake_vision.images) == 3 and [len(c["requests"]) for c in fake_vision.calls] == [2, 1]
    assert [bool(r.detections) for r in first] == [True] * 3 + [False] * 5
    assert [r.signals.get("cloud_vision") for r in first[3:]] == [{"skipped": "minute"}] * 5
    assert vision.sent == 3 and vision.skipped == {"minute": 5, "day": 0}
    clock.now += 30
    vision.detect(frames(2))
    assert len(fake_vision.images) == 3  # the same minute
    clock.now += 31
    assert sum(bool(r.detections) for r in vision.detect(frames(8))) == 3
    assert len(fake_vision.images) == 6


def test_the_daily_cap_stops_sending_until_the_next_day(fake_vision, catalog):
    clock = Clock(86_400 * 20_000 + 100)
    vision = detector(fake_vision, catalog, clock, frames_per_minute=4, frames_per_day=6)
    vision.detect(frames(5))
    clock.now += 120
    second = vision.detect(frames(5))
    assert len(fake_vision.images) == 6
    assert [r.signals.get("cloud_vision") for r in second] == [None] * 2 + [{"skipped": "day"}] * 3
    clock.now += 86_400
    vision.detect(frames(1))
    assert len(fake_vision.images) == 7
    assert vision.skipped == {"minute": 1, "day": 3}


def test_the_budget_counts_a_sliding_minute():
    clock = Clock(0.0)
    budget = RequestBudget(per_minute=2, per_day=10, clock=clock)
    assert [budget.take() for _ in range(3)] == [None, None, "minute"]
    clock.now = 59.9
    assert budget.take() == "minute"
    clock.now = 60.0
    assert budget.take() is None


def test_the_endpoint_and_budget_come_from_the_config_or_the_environment(fake_vision, catalog, monkeypatch):
    monkeypatch.setenv("MEDIA_RAY_DETECTORS__CLOUD_VISION__ENDPOINT", fake_vision.endpoint)
    monkeypatch.setenv("MEDIA_RAY_DETECTORS__CLOUD_VISION__CREDENTIALS", "anonymous")
    config = MediaRayConfig(detectors={"cloud_vision": {"frames_per_minute": 1}})
    vision = create("cloud_vision", catalog, config.params_for("cloud_vision"))
    assert [bool(r.detections) for r in vision.detect(frames(2))] == [True, False]
    assert len(fake_vision.calls) == 1


def test_it_is_not_in_the_default_set_and_is_placed_on_the_cloud_tier_first():
    config = MediaRayConfig()
    assert "cloud_vision" not in default_set(config.params_for)[0]
    placement = config.placement_for("cloud_vision").ray_actor_options()
    assert placement["label_selector"] == {config.live.tier_label: "cloud"}
    assert placement["fallback_strategy"] == [{"label_selector": {}}]  # then any node
    assert "label_selector" not in config.placement_for("reference").ray_actor_options()


def test_without_credentials_it_is_one_line_and_status_2(sample, tmp_path, monkeypatch):
    for name in ("GOOGLE_APPLICATION_CREDENTIALS", "GOOGLE_CLOUD_PROJECT"):
        monkeypatch.delenv(name, raising=False)
    # no Application Default Credentials anywhere, and no look for a GCE metadata server
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("CLOUDSDK_CONFIG", str(tmp_path / "gcloud"))
    monkeypatch.setenv("NO_GCE_CHECK", "True")
    assert "no Google Cloud credentials" in CloudVisionDetector.unavailable_reason(CloudVisionParams())
    proc = media_ray(
        "analyze", sample["clip"], "--brands", sample["logos"], "--detectors", "cloud_vision", "--out", tmp_path / "o"
    )
    assert_one_line_error(proc, "cloud_vision", "no Google Cloud credentials")
