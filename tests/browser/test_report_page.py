"""report.html in headless Chromium, opened from disk as a person opens it: the timeline, the
exposure bars and the thumbnails are drawn, where the report says, from nothing but local files."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("playwright.sync_api", reason="the page tests drive Chromium with playwright")

from analysis_support import analyse_here  # noqa: E402
from browser import chromium_path, headless_chromium  # noqa: E402

from media_ray.annotate import brand_colours  # noqa: E402
from media_ray.config import MediaRayConfig  # noqa: E402

if chromium_path() is None:
    pytest.skip("no Chromium on this machine (Debian package 'chromium')", allow_module_level=True)

_BOXES = "els => els.map(e => { const b = e.getBoundingClientRect(); return {x: b.x, y: b.y, w: b.width, h: b.height, brand: e.dataset.brand, k: Number(e.dataset.k)}; })"  # noqa: E501
_EXPOSURE = (
    "els => els.map(tr => ({brand: tr.dataset.brand, w: tr.querySelector('.track .on').getBoundingClientRect().width}))"  # noqa: E501
)
_IMAGES = "els => els.map(e => ({complete: e.complete, nw: e.naturalWidth, nh: e.naturalHeight, w: e.clientWidth, h: e.clientHeight}))"  # noqa: E501


def test_report_page_draws_the_timeline_bars_and_thumbnails_from_local_files(sample, tmp_path):
    out = tmp_path / "out"
    config = MediaRayConfig(exposure={"rate_card": {"per_30s": 1000}})
    report = analyse_here(Path(sample["clip"]), Path(sample["logos"]), out, config)
    appearances = [(bid, k + 1, a) for bid, b in report.brands.items() for k, a in enumerate(b.appearances)]
    assert appearances
    with headless_chromium() as browser:
        page = browser.new_page(viewport={"width": 1200, "height": 900})
        requested: list[str] = []
        page.on("request", lambda r: requested.append(r.url))
        page.goto((out / "report.html").as_uri())
        page.wait_for_load_state("load")
        bars = page.eval_on_selector_all("#timeline rect.appearance", _BOXES)
        images = page.eval_on_selector_all("img.thumb", _IMAGES)
        exposure = page.eval_on_selector_all("#exposure tr.brand", _EXPOSURE)
        shot = page.screenshot(full_page=True)

    assert requested and all(u.startswith("file://") for u in requested)  # nothing from the network
    # the timeline: a bar per appearance, placed and sized by its times on one scale
    assert len(bars) == len(appearances) and all(b["w"] > 0 and b["h"] > 0 for b in bars)
    by_key = {(b["brand"], b["k"]): b for b in bars}
    starts = np.array([a.start for _, _, a in appearances])
    lefts = np.array([by_key[(bid, k)]["x"] for bid, k, _ in appearances])
    slope, offset = np.polyfit(starts, lefts, 1)
    assert slope > 0 and np.abs(lefts - (slope * starts + offset)).max() < 2.0
    for bid, k, a in appearances:
        assert by_key[(bid, k)]["w"] == pytest.approx(slope * (a.end - a.start), abs=2.0)
    rows = sorted({b["y"] for b in bars})
    assert len(rows) == len(report.brands)  # a row a brand
    # the exposure bars, longest for the most exposed
    assert len(exposure) == len(report.brands) and all(e["w"] > 0 for e in exposure)
    widths = {e["brand"]: e["w"] for e in exposure}
    most = max(report.brands, key=lambda b: report.brands[b].exposure_s)
    assert widths[most] == max(widths.values())
    # the thumbnails loaded
    assert len(images) == len(appearances)
    assert all(i["complete"] and i["nw"] > 0 and i["nh"] > 0 and i["w"] > 0 and i["h"] > 0 for i in images)
    # and the screenshot shows them: not blank, the brands' colours drawn
    picture = cv2.cvtColor(cv2.imdecode(np.frombuffer(shot, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    assert picture.std() > 20
    for colour in brand_colours(report.brands).values():
        near = (np.abs(picture.astype(int) - np.array(colour)).max(axis=2) <= 30).sum()
        assert near > 500  # the brand's timeline bars, exposure bar and boxes
