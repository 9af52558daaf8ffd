"""Exposure valued as sponsorship analysts value it: solus time, position, clarity, the quality
index and the media value, on generated clips (decoded as `analyze` decodes them) whose marks'
boxes are known, and on hand-made frame results for the arithmetic."""

from __future__ import annotations

from pathlib import Path

import av
import cv2
import numpy as np
import pytest

from media_ray.chain import StageChain, file_batches
from media_ray.config import ExposureConfig, MediaRayConfig
from media_ray.exposure import ExposureAggregator, ExposureReport
from media_ray.model import Detection, FrameResult
from media_ray.samples import make_mark
from media_ray.sharpness import box_sharpness
from media_ray.valuation import QualityParams, RateCard, position_of

W, H, SOURCE_FPS, SECONDS = 640, 360, 25, 2.0
MARKS = {
    "a": make_mark("ALPHA", (200, 50, 40), seed=3)[..., :3],
    "b": make_mark("BETA", (40, 80, 190), seed=4)[..., :3],
}
MARK_SIZE = (144, 90)  # width, height on screen: 5.6 % of the frame


def _background(seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    coarse = rng.integers(40, 200, (9, 16, 3)).astype(np.uint8)
    return cv2.resize(coarse, (W, H), interpolation=cv2.INTER_CUBIC)


def _scene(placed: dict[str, tuple[float, float]], blur: float = 0.0) -> tuple[np.ndarray, dict]:
    """A frame with each brand's mark centred at (fx, fy), fractions of the frame; the boxes."""
    frame = _background()
    boxes = {}
    for brand, (fx, fy) in placed.items():
        w, h = MARK_SIZE
        x0, y0 = int(fx * W - w / 2), int(fy * H - h / 2)
        mark = cv2.resize(MARKS[brand], (w, h), interpolation=cv2.INTER_AREA)
        if blur:
            # blurred in place, as a defocused or moving mark is: its surroundings too
            region = frame.copy()
            region[y0 : y0 + h, x0 : x0 + w] = mark
            frame = np.where(_inside(x0, y0, w, h, margin=12), cv2.GaussianBlur(region, (0, 0), blur), frame)
        else:
            frame[y0 : y0 + h, x0 : x0 + w] = mark
        boxes[brand] = (float(x0), float(y0), float(x0 + w), float(y0 + h))
    return frame, boxes


def _inside(x0: int, y0: int, w: int, h: int, margin: int) -> np.ndarray:
    m = np.zeros((H, W, 1), bool)
    m[max(0, y0 - margin) : y0 + h + margin, max(0, x0 - margin) : x0 + w + margin] = True
    return m


def _clip(path: Path, frame: np.ndarray) -> Path:
    """SECONDS of H.264 showing `frame` (with the grain of a camera, so no two frames are alike)."""
    rng = np.random.default_rng(1)
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=SOURCE_FPS)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        stream.options = {"crf": "20", "preset": "veryfast"}
        for _ in range(int(SECONDS * SOURCE_FPS)):
            grain = rng.normal(0, 2.0, frame.shape)
            shown = np.clip(frame + grain, 0, 255).astype(np.uint8)
            out.mux(stream.encode(av.VideoFrame.from_ndarray(shown, format="rgb24")))
        out.mux(stream.encode(None))
    return path


def _analysed(clip: Path, boxes: dict, config: MediaRayConfig | None = None) -> ExposureReport:
    """The clip decoded as `analyze` decodes it, each brand found in its box on every frame (a
    detector that is always right: what is under test is what the chain makes of its results)."""
    config = config or MediaRayConfig(tracking={"enabled": False}, exposure={"rate_card": {"per_30s": 300}})
    chain = StageChain.for_files(config, None)
    for batch in file_batches(str(clip), clip.stem, config.sampling, shots=config.shots):
        found = [
            FrameResult(
                t=float(t),
                frame=int(i),
                width=W,
                height=H,
                detections=[Detection(label=b, score=0.9, box=box, detector="truth") for b, box in boxes.items()],
            )
            for t, i in zip(batch.times, batch.indices)
        ]
        chain.push(batch, [found])
    chain.finish()
    return chain.report(str(clip), SECONDS)


def _only(report: ExposureReport, brand: str):
    (appearance,) = report.brands[brand].appearances
    return report.brands[brand], appearance


def test_a_mark_alone_has_solus_time_and_a_higher_quality_than_beside_another_brand(tmp_path):
    alone_frame, alone_boxes = _scene({"a": (0.3, 0.5)})
    shared_frame, shared_boxes = _scene({"a": (0.3, 0.5), "b": (0.5, 0.5)})
    alone, a1 = _only(_analysed(_clip(tmp_path / "alone.mp4", alone_frame), alone_boxes), "a")
    shared, a2 = _only(_analysed(_clip(tmp_path / "shared.mp4", shared_frame), shared_boxes), "a")
    assert alone.solus_s == pytest.approx(alone.exposure_s) and alone.exposure_s == pytest.approx(SECONDS)
    assert shared.solus_s == 0.0 and shared.exposure_s == pytest.approx(SECONDS)
    assert a1.quality > a2.quality
    # nothing else about the mark differs
    assert a1.position == a2.position and a1.size == a2.size
    assert a1.sharpness == pytest.approx(a2.sharpness, abs=0.05)


def test_a_centred_mark_is_in_the_centre_and_has_a_higher_quality_than_in_a_corner(tmp_path):
    centre_frame, centre_boxes = _scene({"a": (0.5, 0.5)})
    corner_frame, corner_boxes = _scene({"a": (0.14, 0.16)})
    _, centred = _only(_analysed(_clip(tmp_path / "centre.mp4", centre_frame), centre_boxes), "a")
    _, cornered = _only(_analysed(_clip(tmp_path / "corner.mp4", corner_frame), corner_boxes), "a")
    assert centred.position == "centre" and cornered.position == "corner"
    assert centred.position_s == {"centre": pytest.approx(SECONDS)}
    assert centred.quality > cornered.quality
    assert centred.size == cornered.size


def test_a_blurred_mark_has_a_lower_sharpness_clarity_and_quality_than_a_sharp_one(tmp_path):
    sharp_frame, boxes = _scene({"a": (0.5, 0.5)})
    blurred_frame, _ = _scene({"a": (0.5, 0.5)}, blur=4.0)
    sharp, s = _only(_analysed(_clip(tmp_path / "sharp.mp4", sharp_frame), boxes), "a")
    blurred, b = _only(_analysed(_clip(tmp_path / "blurred.mp4", blurred_frame), boxes), "a")
    assert s.sharpness > 0.7 > b.sharpness + 0.2
    assert s.clarity > b.clarity and s.quality > b.quality
    assert sharp.media_value > blurred.media_value


def test_sharpness_falls_as_the_blur_grows_whatever_the_marks_contrast():
    frame, boxes = _scene({"a": (0.5, 0.5)})
    box = boxes["a"]
    measured = [box_sharpness(cv2.GaussianBlur(frame, (0, 0), s) if s else frame, box) for s in (0, 1, 2, 4, 8)]
    assert measured == sorted(measured, reverse=True) and measured[0] > 0.7 and measured[-1] < 0.3
    faint = (frame.astype(np.float32) * 0.3 + 90).astype(np.uint8)  # the same mark, a third of the contrast
    assert box_sharpness(faint, box) == pytest.approx(measured[0], abs=0.05)
    assert box_sharpness(frame, (10, 10, 14, 14)) is None  # too small to tell


def test_the_box_centre_places_a_mark_on_the_grid_of_thirds():
    centres = [(x, y) for x in (0.5, 1.5, 2.5) for y in (0.5, 1.5, 2.5)]  # of the cells, in 90 px units
    cells = {(x, y): position_of((x * 90 - 5, y * 90 - 5, x * 90 + 5, y * 90 + 5), 270, 270) for x, y in centres}
    assert cells[(1.5, 1.5)] == "centre"
    assert {cells[k] for k in [(0.5, 0.5), (2.5, 0.5), (0.5, 2.5), (2.5, 2.5)]} == {"corner"}
    assert {cells[k] for k in [(1.5, 0.5), (0.5, 1.5), (2.5, 1.5), (1.5, 2.5)]} == {"edge"}
    assert position_of(None, 270, 270) is None


def _frame(t: float, *seen: tuple[str, tuple[float, float, float, float] | None, float | None]) -> FrameResult:
    return FrameResult(
        t=t,
        frame=round(t * 5),
        width=100,
        height=100,
        detections=[Detection(label=b, score=0.8, box=box, detector="x", sharpness=s) for b, box, s in seen],
    )


def test_media_value_is_seconds_at_full_quality_times_the_rate_per_30_s():
    quality = QualityParams(
        weights={"size": 1, "sharpness": 1, "position": 1, "solus": 1},
        positions={"centre": 1.0, "edge": 0.6, "corner": 0.4},
        full_size_share=0.16,
        full_sharpness=0.8,
        unknown=0.5,
    )
    rate_card = RateCard(currency="EUR", per_30s=300, brands={"b": 600})
    agg = ExposureAggregator(None, fps=5, config=ExposureConfig(quality=quality, rate_card=rate_card))
    a_box, b_box = (35, 35, 55, 55), (45, 45, 65, 65)  # both 4 % of the frame, centred
    for k in range(10):  # a alone over [0, 1) s, with b over [1, 2) s
        t = k / 5
        agg.add(_frame(t, ("a", a_box, 0.6)) if t < 1 else _frame(t, ("a", a_box, 0.6), ("b", b_box, 0.6)))
    report = agg.report("v.mp4", duration_s=2.0)
    # size sqrt(0.04 / 0.16) = 0.5, sharpness 0.6 / 0.8 = 0.75, centre 1.0, solus 1 alone, 1/2 beside b
    alone_q, beside_q = (0.5 + 0.75 + 1 + 1) / 4, (0.5 + 0.75 + 1 + 0.5) / 4
    a, b = report.brands["a"], report.brands["b"]
    assert a.appearances[0].quality_s == pytest.approx(1.0 * alone_q + 1.0 * beside_q)  # 1.5 s at full quality
    assert a.quality == pytest.approx(0.75) and a.solus_s == pytest.approx(1.0)
    assert a.media_value == pytest.approx(1.5 * 300 / 30)  # 15.00
    assert b.quality == pytest.approx(beside_q) and b.solus_s == 0.0
    assert b.media_value == pytest.approx(beside_q * 1.0 * 600 / 30)  # b's own rate: 13.75
    assert a.rate.currency == b.rate.currency == "EUR" and b.rate.per_30s == 600
    assert a.appearances[0].best.t < 1.0  # the best frame is one where a is alone


def test_without_a_rate_there_is_no_media_value_and_what_cannot_be_measured_counts_as_unknown():
    quality = QualityParams(weights={"size": 1, "sharpness": 1, "position": 1, "solus": 1}, unknown=0.5)
    agg = ExposureAggregator(None, fps=5, config=ExposureConfig(quality=quality))
    for k in range(5):
        agg.add(_frame(k / 5, ("a", None, None)))  # a detector without boxes: no size, position, sharpness
    a = agg.report("v.mp4", duration_s=1.0).brands["a"]
    assert a.media_value is None and a.rate is None
    assert a.quality == pytest.approx((0.5 + 0.5 + 0.5 + 1.0) / 4)
    assert a.quality_s == pytest.approx(a.quality * a.exposure_s)
    assert a.appearances[0].position is None and a.appearances[0].sharpness is None
