"""The temporal stage: hysteresis and bridging over one stream's frame results."""

from __future__ import annotations

from media_ray.chain import StageChain, merge_results, run_local
from media_ray.model import Detection, FrameResult
from media_ray.tracking import DetectionTracker, TrackingConfig


def _frame(n: int, *boxes: tuple[str, tuple[float, float, float, float]]) -> FrameResult:
    return FrameResult(
        t=n * 0.2,
        frame=n * 6,
        width=1280,
        height=720,
        detections=[Detection(label=label, score=0.8, box=box, detector="test") for label, box in boxes],
    )


def _run(tracker: DetectionTracker, frames: list[FrameResult]) -> list[FrameResult]:
    out = []
    for f in frames:
        out += tracker.push(f)
    return out + tracker.flush()


def _moving(n: int) -> tuple[float, float, float, float]:
    return (100.0 + 10 * n, 200.0, 300.0 + 10 * n, 300.0)


def test_a_one_frame_miss_is_bridged_with_an_interpolated_box():
    frames = [_frame(n, ("acme", _moving(n))) if n != 3 else _frame(n) for n in range(7)]
    out = _run(DetectionTracker(TrackingConfig()), frames)
    assert [r.frame for r in out] == [f.frame for f in frames]
    assert all(len(r.detections) == 1 for r in out)
    bridged = out[3].detections[0]
    assert bridged.label == "acme" and bridged.detector == "tracking"
    assert bridged.box == _moving(3)
    assert bridged.score < 0.8


def test_a_one_frame_false_hit_is_suppressed():
    frames = [_frame(n) for n in range(7)]
    frames[3] = _frame(3, ("acme", (500.0, 500.0, 600.0, 560.0)))
    out = _run(DetectionTracker(TrackingConfig()), frames)
    assert all(r.detections == [] for r in out)


def test_a_confirmed_track_keeps_its_first_hit():
    frames = [_frame(n, ("acme", _moving(n))) for n in range(3)] + [_frame(3)]
    out = _run(DetectionTracker(TrackingConfig()), frames)
    assert [len(r.detections) for r in out] == [1, 1, 1, 0]
    assert out[0].detections[0].box == _moving(0)


def test_a_long_miss_is_not_bridged():
    frames = [_frame(n, ("acme", _moving(n))) if n in (0, 1, 5, 6) else _frame(n) for n in range(7)]
    out = _run(DetectionTracker(TrackingConfig(max_gap_frames=2)), frames)
    assert [len(r.detections) for r in out] == [1, 1, 0, 0, 0, 1, 1]


def test_hits_of_another_brand_or_far_away_do_not_confirm_a_track():
    frames = [
        _frame(0, ("acme", (0.0, 0.0, 50.0, 50.0))),
        _frame(1, ("globex", (0.0, 0.0, 50.0, 50.0))),
        _frame(2, ("acme", (900.0, 600.0, 950.0, 650.0))),
        _frame(3),
        _frame(4),
        _frame(5),
    ]
    out = _run(DetectionTracker(TrackingConfig()), frames)
    assert all(r.detections == [] for r in out)


def test_results_leave_with_a_bounded_delay_and_in_order():
    config = TrackingConfig()
    tracker = DetectionTracker(config)
    ready = []
    for n in range(10):
        ready += tracker.push(_frame(n, ("acme", _moving(n))))
        assert len(ready) == max(0, n + 1 - config.delay)
    ready += tracker.flush()
    assert [r.frame for r in ready] == [n * 6 for n in range(10)]


def test_disabled_tracking_passes_results_through():
    tracker = DetectionTracker(TrackingConfig(enabled=False))
    lone = _frame(0, ("acme", (0.0, 0.0, 50.0, 50.0)))
    assert tracker.push(lone) == [lone]


def test_one_logo_found_by_two_detectors_is_reported_once():
    a = [_frame(0, ("acme", (100.0, 100.0, 200.0, 160.0)))]
    b = [_frame(0, ("acme", (104.0, 98.0, 202.0, 158.0)), ("acme", (600.0, 100.0, 700.0, 160.0)))]
    (merged,) = merge_results([a, b])
    assert sorted(d.box[0] for d in merged.detections) == [100.0, 600.0]


def test_a_loose_box_around_another_detectors_tight_box_is_the_same_logo():
    """One detector's box may be loose (a homography from few points) where another's is tight:
    a box of one label lying inside another is one logo, the better-scored kept."""
    tight = [_frame(0, ("acme", (880.0, 570.0, 932.0, 646.0)))]
    loose = [_frame(0, ("acme", (860.0, 556.0, 940.0, 663.0)))]
    tight[0].detections[0].score, loose[0].detections[0].score = 0.9, 0.4
    (merged,) = merge_results([loose, tight])
    assert [d.box for d in merged.detections] == [(880.0, 570.0, 932.0, 646.0)]


def test_run_local_applies_the_chains_tracking():
    import numpy as np

    from media_ray.detectors import Detector
    from media_ray.model import FrameBatch

    class Blinking(Detector):
        """Reports acme on every frame but the fourth."""

        name = "blinking"

        def detect(self, batch):
            return [_frame(int(i), *([] if int(i) == 3 else [("acme", _moving(int(i)))])) for i in batch.indices]

    batches = [
        FrameBatch.stack(
            "s",
            k,
            [np.zeros((4, 4, 3), np.uint8)] * 4,
            [0.2 * (4 * k + j) for j in range(4)],
            [4 * k + j for j in range(4)],
        )
        for k in range(2)
    ]
    out = list(run_local(batches, [Blinking(None)], StageChain(None, 5.0, tracking=TrackingConfig())))
    assert len(out) == 8 and all(len(r.detections) == 1 for r in out)
    plain = list(run_local(batches, [Blinking(None)], StageChain(None, 5.0)))
    assert plain[3].detections == []


def test_run_local_lets_a_quick_detector_run_ahead_and_keeps_the_results_in_order():
    import threading
    import time

    import numpy as np

    from media_ray.detectors import Detector
    from media_ray.model import FrameBatch

    started: list[tuple[str, int]] = []
    lock = threading.Lock()

    class Marker(Detector):
        """Reports its own label on every frame, after a pause; records the batches it takes."""

        name = "marker"

        def __init__(self, label: str, pause: float):
            super().__init__(None)
            self.label, self.pause = label, pause

        def detect(self, batch):
            with lock:
                started.append((self.label, batch.seq))
            time.sleep(self.pause)
            return [_frame(int(i), (self.label, _moving(int(i)))) for i in batch.indices]

    batches = [
        FrameBatch.stack(
            "s",
            k,
            [np.zeros((4, 4, 3), np.uint8)] * 2,
            [0.2 * (2 * k + j) for j in range(2)],
            [2 * k + j for j in range(2)],
        )
        for k in range(6)
    ]
    detectors = [Marker("slow", 0.05), Marker("quick", 0.0)]
    piped = list(run_local(batches, detectors, StageChain(None, 5.0), in_flight=3))
    started_piped = list(started)
    started.clear()
    serial = list(run_local(batches, detectors, StageChain(None, 5.0), concurrent=False))
    assert [r.record() for r in piped] == [r.record() for r in serial]
    assert len(piped) == 12 and [r.frame for r in piped] == sorted({r.frame for r in piped})
    assert all(sorted(d.label for d in r.detections) == ["quick", "slow"] for r in piped)
    for label in ("slow", "quick"):  # each detector takes its batches one at a time, in order
        assert [seq for name, seq in started_piped if name == label] == list(range(6))
    # the quick one ran ahead of the slow one, never by more than the batches in flight
    ahead = [
        sum(1 for n, _ in started_piped[: i + 1] if n == "quick")
        - sum(1 for n, _ in started_piped[: i + 1] if n == "slow")
        for i in range(len(started_piped))
    ]
    assert max(ahead) >= 1 and max(ahead) <= 3
