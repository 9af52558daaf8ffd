"""The `reference` detector on synthetic frames: marks pasted at known places into a texture."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from scenes import paste

from media_ray.boxes import iou
from media_ray.catalog import BrandCatalog
from media_ray.detectors import create
from media_ray.detectors.reference import ReferenceDetector
from media_ray.model import FrameBatch

W, H = 1280, 720


def _logo(seed: int) -> np.ndarray:
    """A textured RGBA mark, 360x240, with transparent corners: shapes and text."""
    rng = np.random.default_rng(seed)
    h, w = 240, 360
    img = np.full((h, w, 3), 245, np.uint8)
    for _ in range(14):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        kind = rng.integers(0, 3)
        x, y = int(rng.integers(20, w - 20)), int(rng.integers(20, h - 20))
        if kind == 0:
            cv2.rectangle(img, (x, y), (x + int(rng.integers(15, 70)), y + int(rng.integers(15, 60))), colour, -1)
        elif kind == 1:
            cv2.circle(img, (x, y), int(rng.integers(8, 40)), colour, -1)
        else:
            pts = rng.integers([0, 0], [w, h], size=(3, 2)).astype(np.int32)
            cv2.fillPoly(img, [pts], colour)
    cv2.putText(img, "ACME" if seed % 2 else "GLOBEX", (30, 140), cv2.FONT_HERSHEY_DUPLEX, 2.2, (20, 20, 120), 5)
    cv2.putText(img, f"est. {1900 + seed}", (60, 210), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (200, 30, 30), 3)
    alpha = np.zeros((h, w), np.uint8)
    cv2.rectangle(alpha, (0, 0), (w - 1, h - 1), 255, -1)
    for cx, cy in ((0, 0), (w, 0), (0, h), (w, h)):  # rounded, transparent corners
        cv2.circle(alpha, (cx, cy), 30, 0, -1)
    return np.dstack([img, alpha])


def _background(seed: int) -> np.ndarray:
    """A noisy, textured scene with shapes of its own."""
    rng = np.random.default_rng(seed)
    noise = rng.integers(0, 256, (H // 8, W // 8, 3), dtype=np.uint8)
    bg = cv2.resize(noise, (W, H), interpolation=cv2.INTER_CUBIC)
    bg = cv2.add(bg, rng.integers(0, 30, (H, W, 3), dtype=np.uint8))
    for _ in range(25):
        colour = tuple(int(c) for c in rng.integers(0, 255, 3))
        cv2.line(
            bg,
            tuple(int(v) for v in rng.integers(0, W, 2)),
            tuple(int(v) for v in rng.integers(0, H, 2)),
            colour,
            int(rng.integers(1, 6)),
        )
    return bg


def _write_catalog(folder, logos: dict[str, np.ndarray], text_only: tuple[str, ...] = ()) -> BrandCatalog:
    folder.mkdir(parents=True, exist_ok=True)
    for brand_id, rgba in logos.items():
        cv2.imwrite(str(folder / f"{brand_id}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    if text_only:
        (folder / "brands.json").write_text(json.dumps([{"id": b} for b in (*logos, *text_only)]))
    return BrandCatalog.from_folder(folder)


def _batch(frames: list[np.ndarray]) -> FrameBatch:
    return FrameBatch.stack("test", 0, frames, [i * 0.2 for i in range(len(frames))], list(range(len(frames))))


@pytest.fixture(scope="module")
def scene():
    """A catalogue of two marks and three frames: one acme, none, two acme."""
    acme, globex = _logo(1), _logo(2)
    one, empty, two = _background(10), _background(11), _background(12)
    boxes_one = [paste(one, acme, (420, 300), 0.8, 6.0)]
    boxes_two = [paste(two, acme, (300, 220), 0.7, -4.0), paste(two, acme, (930, 480), 0.9, 3.0)]
    return {"acme": acme, "globex": globex, "frames": [one, empty, two], "boxes": [boxes_one, [], boxes_two]}


@pytest.fixture(scope="module")
def results(scene, tmp_path_factory):
    catalog = _write_catalog(tmp_path_factory.mktemp("logos"), {"acme": scene["acme"], "globex": scene["globex"]})
    return create("reference", catalog).detect(_batch(scene["frames"]))


def test_finds_a_pasted_mark_with_its_box_in_source_pixels(scene, results):
    (want,) = scene["boxes"][0]
    dets = results[0].detections
    assert [d.label for d in dets] == ["acme"]
    d = dets[0]
    assert d.detector == "reference"
    assert 0.0 < d.score <= 1.0
    assert iou(d.box, want) >= 0.5, (d.box, want)


def test_reports_nothing_on_a_frame_without_a_mark(results):
    assert results[1].detections == []


def test_finds_every_instance_of_a_brand_in_one_frame(scene, results):
    dets = results[2].detections
    assert sorted(d.label for d in dets) == ["acme", "acme"]
    for want in scene["boxes"][2]:
        assert max(iou(d.box, want) for d in dets) >= 0.5, ([d.box for d in dets], want)


def test_gives_one_result_per_frame_in_batch_order(scene, results):
    assert [r.frame for r in results] == [0, 1, 2]
    assert all((r.width, r.height) == (W, H) for r in results)


def test_skips_brands_without_an_image_and_finds_the_others(scene, tmp_path):
    catalog = _write_catalog(tmp_path / "logos", {"acme": scene["acme"]}, text_only=("initech",))
    (result,) = ReferenceDetector(catalog).detect(_batch([scene["frames"][0]]))
    assert [d.label for d in result.detections] == ["acme"]


def test_looks_for_the_new_brands_after_set_catalog(scene, tmp_path):
    detector = ReferenceDetector(_write_catalog(tmp_path / "a", {"globex": scene["globex"]}))
    batch = _batch([scene["frames"][0]])
    assert detector.detect(batch)[0].detections == []
    detector.set_catalog(_write_catalog(tmp_path / "b", {"acme": scene["acme"]}))
    assert [d.label for d in detector.detect(batch)[0].detections] == ["acme"]


def test_orb_features_find_the_mark_too(scene, tmp_path):
    catalog = _write_catalog(tmp_path / "logos", {"acme": scene["acme"], "globex": scene["globex"]})
    detector = create("reference", catalog, {"features": "orb"})
    (result,) = detector.detect(_batch([scene["frames"][0]]))
    (want,) = scene["boxes"][0]
    assert [d.label for d in result.detections] == ["acme"]
    assert iou(result.detections[0].box, want) >= 0.5


def test_rejects_unknown_parameters():
    from media_ray.detectors import DetectorError, parse_params

    with pytest.raises(DetectorError):
        parse_params("reference", {"ratio": 1.5})
    with pytest.raises(DetectorError):
        parse_params("reference", {"no_such_field": 1})


def test_a_blank_frame_gives_nothing(scene, tmp_path):
    catalog = _write_catalog(tmp_path, {"acme": scene["acme"]})
    detector = create("reference", catalog)
    assert detector.detect_frame(np.zeros((H, W, 3), np.uint8)) == []
    assert detector.detect_frame(np.full((H, W, 3), 128, np.uint8)) == []


def test_the_box_covers_the_part_of_the_mark_that_is_seen(scene, tmp_path):
    """A mark of a symbol beside a word, of which a frame shows the symbol alone."""
    symbol = scene["acme"]
    word = np.zeros((240, 300, 4), np.uint8)
    cv2.putText(word, "WORD", (10, 150), cv2.FONT_HERSHEY_DUPLEX, 3.0, (20, 20, 20, 255), 9)
    mark = np.zeros((240, 360 + 80 + 300, 4), np.uint8)
    mark[:, :360] = symbol
    mark[:, 440:] = word
    catalog = _write_catalog(tmp_path, {"acme": mark})
    frame = _background(20)
    truth = paste(frame, symbol, (600, 360), 0.9, 4.0)
    [found] = create("reference", catalog, {"part_min_inliers": 0.15}).detect_frame(frame)
    assert found.label == "acme" and iou(found.box, truth) >= 0.5
    # the whole mark would reach far to the right of the symbol
    assert found.box[2] < truth[2] + 0.25 * (truth[2] - truth[0])


def test_a_brand_of_several_references_is_found_by_any_of_them(scene, tmp_path):
    """Two designs of one brand in its folder; a frame showing the second."""
    folder = tmp_path / "logos"
    (folder / "acme").mkdir(parents=True)
    for n, rgba in enumerate((scene["acme"], _logo(7))):
        cv2.imwrite(str(folder / "acme" / f"{n}.png"), cv2.cvtColor(rgba, cv2.COLOR_RGBA2BGRA))
    cv2.imwrite(str(folder / "globex.png"), cv2.cvtColor(scene["globex"], cv2.COLOR_RGBA2BGRA))
    catalog = BrandCatalog.from_folder(folder)
    frame, empty = _background(21), _background(22)
    truth = paste(frame, _logo(7), (640, 360), 0.8, -5.0)
    detector = create("reference", catalog)
    [found] = detector.detect_frame(frame)
    assert found.label == "acme" and iou(found.box, truth) >= 0.5
    assert detector.detect_frame(empty) == []
