"""Shot cuts: found between generated scenes, not within one; they end tracks and appearances."""

from __future__ import annotations

import av
import cv2
import numpy as np
import pytest

from media_ray.chain import StageChain, file_batches
from media_ray.config import ExposureConfig, MediaRayConfig, SamplingConfig
from media_ray.exposure import ExposureAggregator
from media_ray.model import Detection, FrameBatch, FrameResult, empty_results
from media_ray.shots import ShotCutFinder, ShotParams, with_cuts
from media_ray.tracking import DetectionTracker, TrackingConfig

W, H = 320, 180


def _scene(seed: int, width: int = W, height: int = H) -> np.ndarray:
    """A generated 'place': a smooth colour field of the seed's own hues, with blobs on it."""
    rng = np.random.default_rng(seed)
    field = rng.integers(0, 256, (6, 10, 3), dtype=np.uint8)
    img = cv2.resize(field, (width, height), interpolation=cv2.INTER_CUBIC)
    for _ in range(12):
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        colour = tuple(int(c) for c in rng.integers(0, 256, 3))
        cv2.circle(img, centre, int(rng.integers(5, max(6, height // 5))), colour, -1)
    return img


def _cuts(frames: list[np.ndarray], params: ShotParams | None = None) -> list[int]:
    flags = ShotCutFinder(params).flags(np.stack(frames))
    assert flags[0], "the first frame of a stream starts a shot"
    return [int(n) for n in np.flatnonzero(flags[1:]) + 1]


def _with_noise(frame: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    return np.clip(frame.astype(np.int16) + rng.integers(-6, 7, frame.shape), 0, 255).astype(np.uint8)


def test_hard_cuts_between_generated_scenes_are_found():
    rng = np.random.default_rng(0)
    frames, starts = [], []
    for scene in range(6):
        starts.append(len(frames))
        frames += [_with_noise(_scene(scene), rng) for _ in range(4)]
    assert _cuts(frames) == starts[1:]


def test_a_smooth_pan_is_not_a_cut():
    wide = _scene(1, width=W * 3)
    frames = [wide[:, x : x + W] for x in range(0, 2 * W, 24)]
    assert _cuts(frames) == []


def test_a_gradual_brightness_change_is_not_a_cut():
    base = _scene(2).astype(np.float32)
    frames = [np.clip(base * f, 0, 255).astype(np.uint8) for f in np.linspace(1.0, 0.3, 15)]
    assert _cuts(frames) == []


def test_a_moving_object_in_one_scene_is_not_a_cut():
    base = _scene(3)
    frames = []
    for n in range(20):
        f = base.copy()
        x = 10 + n * 14
        cv2.rectangle(f, (x, 50), (x + 50, 110), (250, 30, 30), -1)
        frames.append(f)
    assert _cuts(frames) == []


def test_a_logo_that_pops_in_is_not_a_cut():
    base = _scene(6)
    frames = [base] * 3
    for _ in range(3):
        f = base.copy()
        cv2.rectangle(f, (40, 40), (150, 100), (20, 200, 40), -1)
        cv2.putText(f, "ACME", (48, 85), cv2.FONT_HERSHEY_SIMPLEX, 1.1, (255, 255, 255), 3)
        frames.append(f)
    assert _cuts(frames) == []


def test_fast_changing_footage_does_not_cut_at_every_frame():
    """A shot whose frames all differ a lot (say confetti) is measured against itself: at most
    its second frame, with nothing to compare with yet, is taken for a cut."""
    rng = np.random.default_rng(4)
    base = _scene(4)
    frames = []
    for _ in range(20):
        f = base.copy()
        for _ in range(200):
            c = (int(rng.integers(0, W)), int(rng.integers(0, H)))
            cv2.circle(f, c, 14, tuple(int(v) for v in rng.integers(0, 256, 3)), -1)
        frames.append(f)
    finder = ShotCutFinder()
    finder.flags(frames[0][None])
    assert all(d[0] >= finder.params.colour_threshold for d in map(finder.distances, frames[1:]))
    assert _cuts(frames) in ([], [1])


def test_the_finder_remembers_the_previous_frame_across_batches():
    frames = np.stack([_scene(s // 3) for s in range(12)])
    whole = ShotCutFinder().flags(frames)
    finder = ShotCutFinder()
    parts = np.concatenate([finder.flags(frames[i : i + 5]) for i in range(0, 12, 5)])
    assert parts.tolist() == whole.tolist()
    assert whole.sum() == 4  # the first frame and three cuts


def test_a_disabled_finder_flags_nothing():
    frames = np.stack([_scene(s) for s in range(4)])
    assert not ShotCutFinder(ShotParams(enabled=False)).flags(frames).any()
    assert MediaRayConfig().shots.enabled


def _batch(frames: np.ndarray, seq: int = 0, cuts: np.ndarray | None = None) -> FrameBatch:
    n = len(frames)
    return FrameBatch(
        stream_id="s",
        seq=seq,
        frames=frames,
        times=np.arange(n) * 0.2 + seq,
        indices=np.arange(n) * 6,
        cuts=np.zeros(0, bool) if cuts is None else cuts,
    )


def test_batch_cut_flags_reach_results_and_the_frame_record():
    frames = np.stack([_scene(0), _scene(0), _scene(5)])
    batch = next(with_cuts([_batch(frames)]))
    assert batch.cuts.tolist() == [True, False, True]
    results = empty_results(batch)
    assert [r.cut for r in results] == [True, False, True]
    assert results[2].record()["cut"] is True
    assert "cut" not in results[1].record()
    assert set(results[1].record()) == {"t", "frame", "detections"}
    assert [r.cut for r in empty_results(_batch(frames))] == [False] * 3
    with pytest.raises(ValueError, match="cut flags"):
        _batch(frames, cuts=np.array([True, False]))


# -- tracks and appearances end at a cut --------------------------------------------------------

BOX = (100.0, 100.0, 200.0, 160.0)


def _result(n: int, seen: bool, cut: bool = False) -> FrameResult:
    detections = [Detection(label="acme", score=0.8, box=BOX, detector="test")] if seen else []
    return FrameResult(t=n * 0.2, frame=n * 6, width=1280, height=720, detections=detections, cut=cut)


def _track(results: list[FrameResult]) -> list[FrameResult]:
    tracker = DetectionTracker(TrackingConfig())
    out = [o for r in results for o in tracker.push(r)]
    return out + tracker.flush()


def test_no_box_is_bridged_across_a_cut():
    seen = [True, True, True, False, True, True, True]
    plain = _track([_result(n, s) for n, s in enumerate(seen)])
    assert [d.detector for d in plain[3].detections] == ["tracking"]  # the miss is bridged
    cut = _track([_result(n, s, cut=n == 4) for n, s in enumerate(seen)])
    assert cut[3].detections == []
    assert [len(r.detections) for r in cut] == [1, 1, 1, 0, 1, 1, 1]
    assert [r.cut for r in cut] == [n == 4 for n in range(7)]


def test_a_box_on_both_sides_of_a_cut_is_two_tracks():
    # one hit after the cut: part of the track before it would be reported, alone it is not
    seen = [True, True, True, True, False, False]
    assert len(_track([_result(n, s) for n, s in enumerate(seen)])[3].detections) == 1
    out = _track([_result(n, s, cut=n == 3) for n, s in enumerate(seen)])
    assert [len(r.detections) for r in out] == [1, 1, 1, 0, 0, 0]


def test_exposure_counts_cuts_and_splits_appearances_at_them():
    agg = ExposureAggregator(None, fps=5.0, config=ExposureConfig(merge_gap_s=0.5))
    for n in range(10):
        agg.add(_result(n, seen=True, cut=n in (0, 5)))
    report = agg.report("v")
    assert report.cuts == 1
    appearances = report.brands["acme"].appearances
    assert [(a.start, a.end) for a in appearances] == [(0.0, 1.0), (1.0, 2.0)]
    assert report.brands["acme"].exposure_s == pytest.approx(2.0)


def test_the_chain_takes_cuts_from_the_batch_and_reports_them():
    frames = np.stack([_scene(s // 4) for s in range(8)])
    batch = next(with_cuts([_batch(frames)]))
    chain = StageChain(None, 5.0, tracking=TrackingConfig())
    per_detector = [
        [r.model_copy(update={"cut": False, "detections": _result(0, True).detections}) for r in empty_results(batch)]
    ]
    out = chain.push(batch, per_detector) + chain.finish()
    assert [r.cut for r in out] == [n == 4 for n in range(8)]  # the first frame follows no shot
    report = chain.report("v")
    assert report.cuts == 1
    assert len(report.brands["acme"].appearances) == 2


# -- file batches ---------------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_scene_clip(tmp_path_factory):
    """3 s at 25 frames/s: a moving square on one scene for 1.6 s, then another scene."""
    path = tmp_path_factory.mktemp("shots") / "two.mp4"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=25)
        stream.width, stream.height, stream.pix_fmt = W, H, "yuv420p"
        for n in range(75):
            img = _scene(10 if n < 40 else 11)
            cv2.rectangle(img, (10 + 3 * n, 60), (60 + 3 * n, 100), (255, 255, 0), -1)
            for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_file_batches_flag_the_cut_and_a_resumed_run_flags_the_same(two_scene_clip):
    sampling = SamplingConfig(fps=5, batch_size=4)
    batches = list(file_batches(str(two_scene_clip), "s", sampling))
    times = np.concatenate([b.times for b in batches])
    cuts = np.concatenate([b.cuts for b in batches])
    assert [round(float(t), 2) for t in times[cuts]] == [0.0, 1.6]
    resumed = list(file_batches(str(two_scene_clip), "s", sampling, first_seq=1))
    assert np.concatenate([b.cuts for b in resumed]).tolist() == cuts[4:].tolist()
    off = list(file_batches(str(two_scene_clip), "s", sampling, shots=ShotParams(enabled=False)))
    assert all(len(b.cuts) == 0 for b in off)
