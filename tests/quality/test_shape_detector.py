"""The `shape` detector on generated frames: flat single-colour marks pasted at known places."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scenes import paste

from media_ray.boxes import iou
from media_ray.catalog import BrandCatalog
from media_ray.detectors import create
from media_ray.model import FrameBatch

W, H = 1280, 720


def _stripes() -> np.ndarray:
    """A black mark of three slanted stripes of rising height, RGBA, transparent around."""
    h, w = 300, 460
    alpha = np.zeros((h, w), np.uint8)
    for n, top in enumerate((190, 100, 10)):
        x = 20 + n * 150
        cv2.fillPoly(
            alpha,
            [
                np.int32(
                    [
                        [x, h - 10],
                        [x + 110, h - 10],
                        [x + 110 + (h - 10 - top) // 3, top],
                        [x + (h - 10 - top) // 3, top],
                    ]
                )
            ],
            255,
        )
    return np.dstack([np.zeros((h, w, 3), np.uint8), alpha])


def _hook(colour: tuple[int, int, int]) -> np.ndarray:
    """A flat mark of one colour: a thick hook, RGBA."""
    h, w = 260, 420
    alpha = np.zeros((h, w), np.uint8)
    cv2.ellipse(alpha, (210, 60), (190, 170), 0, 20, 160, 255, 40)
    cv2.rectangle(alpha, (30, 20), (70, 110), 255, -1)
    return np.dstack([np.full((h, w, 3), colour, np.uint8), alpha])


def _background(seed: int) -> np.ndarray:
    """A muted, textured scene with coloured shapes of its own (none black or orange)."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(90, 200, (H // 16, W // 16, 3), dtype=np.uint8)
    bg = cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    bg = cv2.add(bg, rng.integers(0, 20, (H, W, 3), dtype=np.uint8))
    for _ in range(12):
        colour = tuple(int(c) for c in rng.integers(80, 220, 3))
        cv2.circle(bg, tuple(int(v) for v in rng.integers((0, 0), (W, H))), int(rng.integers(10, 60)), colour, -1)
    return bg


@pytest.fixture(scope="module")
def catalog(tmp_path_factory) -> BrandCatalog:
    folder = tmp_path_factory.mktemp("logos")
    marks = {"stripes": (_stripes(), "000000"), "hook": (_hook((240, 120, 20)), "F07814")}
    for brand_id, (rgba, _) in marks.items():
        cv2.imwrite(str(folder / f"{brand_id}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    (folder / "brands.json").write_text(
        json.dumps([{"id": b, "name": b.title(), "hex": hexv} for b, (_, hexv) in marks.items()])
    )
    return BrandCatalog.from_folder(folder)


@pytest.fixture(scope="module")
def scene():
    """Frames: stripes alone; nothing; the hook and the stripes, rotated; plain blobs of both
    colours."""
    one, empty, two, blobs = (_background(s) for s in (1, 2, 3, 4))
    boxes_one = {"stripes": paste(one, _stripes(), (400, 330), 0.6, 8.0)}
    boxes_two = {
        "hook": paste(two, _hook((240, 120, 20)), (900, 250), 0.5, -25.0),
        "stripes": paste(two, _stripes(), (330, 480), 0.4, 20.0),
    }
    cv2.circle(blobs, (300, 300), 80, (0, 0, 0), -1)
    cv2.rectangle(blobs, (700, 200), (900, 320), (240, 120, 20), -1)
    cv2.ellipse(blobs, (1000, 550), (120, 50), 30, 0, 360, (0, 0, 0), -1)
    return {"frames": [one, empty, two, blobs], "boxes": [boxes_one, {}, boxes_two, {}]}


@pytest.fixture(scope="module")
def results(catalog, scene):
    frames = scene["frames"]
    batch = FrameBatch.stack("test", 0, frames, [i * 0.2 for i in range(len(frames))], list(range(len(frames))))
    return create("shape", catalog).detect(batch)


def test_finds_a_black_mark_of_separate_parts_with_its_box(scene, results):
    dets = results[0].detections
    assert [d.label for d in dets] == ["stripes"]
    assert dets[0].detector == "shape" and 0.0 < dets[0].score <= 1.0
    assert iou(dets[0].box, scene["boxes"][0]["stripes"]) >= 0.5, (dets[0].box, scene["boxes"][0])


def test_reports_nothing_on_a_frame_without_a_mark(results):
    assert results[1].detections == []


def test_finds_rotated_marks_of_two_colours_in_one_frame(scene, results):
    found = {d.label: d.box for d in results[2].detections}
    assert sorted(found) == ["hook", "stripes"]
    for label, want in scene["boxes"][2].items():
        assert iou(found[label], want) >= 0.5, (label, found[label], want)


def test_plain_blobs_of_a_brand_colour_are_not_marks(results):
    assert results[3].detections == []


def test_a_brand_without_a_colour_is_not_looked_for(tmp_path):
    cv2.imwrite(str(tmp_path / "stripes.png"), cv2.cvtColor(_stripes(), cv2.COLOR_RGBA2BGRA))
    detector = create("shape", BrandCatalog.from_folder(tmp_path))
    frame = _background(1)
    paste(frame, _stripes(), (400, 330), 0.6, 8.0)
    (result,) = detector.detect(FrameBatch.stack("test", 0, [frame], [0.0], [0]))
    assert result.detections == []


@pytest.mark.parametrize("mark,shear,angle", [("hook", 0.38, 10.0), ("stripes", 0.46, 20.0)])
def test_a_view_between_the_rendered_ones_is_found_by_refining_its_alignment(catalog, mark, shear, angle):
    """A sheared mark (a turn the rotation and keystone steps do not render) correlates too
    weakly with every rendered silhouette; aligning it (ECC) with the closest finds it."""
    rgba = _hook((240, 120, 20)) if mark == "hook" else _stripes()
    frame = _background(5)
    want = paste(frame, rgba, (640, 360), 0.5, angle, shear=shear)
    batch = FrameBatch.stack("test", 0, [frame], [0.0], [0])
    (unrefined,) = create("shape", catalog, {"max_refinements": 0}).detect(batch)
    assert unrefined.detections == []
    (refined,) = create("shape", catalog).detect(batch)
    assert [d.label for d in refined.detections] == [mark]
    assert iou(refined.detections[0].box, want) >= 0.5
