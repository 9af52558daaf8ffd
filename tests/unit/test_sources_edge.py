"""Awkward files, decoded for real (ffmpeg CLI, PyAV): truncated ones and rotated phone videos."""

from __future__ import annotations

import subprocess

import numpy as np
import pytest

from media_ray.chain import StageChain, file_batches
from media_ray.config import SamplingConfig
from media_ray.model import Detection, empty_results
from media_ray.sources import DecodedTimeline, analysed_duration, decode, probe

W, H, SQUARE_W, SQUARE_H = 160, 96, 40, 32


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-hide_banner", "-loglevel", "error", "-y", *args], check=True, timeout=120)


@pytest.fixture(scope="module")
def long_clip(tmp_path_factory):
    """10 s at 25 frames/s, its index first (faststart), so a cut file still opens."""
    path = tmp_path_factory.mktemp("trunc") / "whole.mp4"
    ffmpeg(
        "-f", "lavfi", "-i", "testsrc2=size=320x180:rate=25:duration=10",
        "-c:v", "libx264", "-preset", "ultrafast", "-g", "25", "-pix_fmt", "yuv420p",
        "-movflags", "+faststart", str(path),
    )  # fmt: skip
    return path


def cut(path, fraction: float, out):
    data = path.read_bytes()
    out.write_bytes(data[: int(len(data) * fraction)])
    return out


def test_a_complete_file_reports_the_duration_its_container_states(long_clip):
    info = probe(str(long_clip))
    timeline = DecodedTimeline()
    frames = list(decode(str(long_clip), 5, timeline=timeline))
    assert len(frames) == 50 and timeline.frames == 250
    assert info.duration_s == pytest.approx(10.0, abs=0.05)
    assert analysed_duration(info.duration_s, timeline) == pytest.approx(info.duration_s)


def test_a_truncated_file_reports_the_duration_of_what_was_decoded_not_what_it_claims(long_clip, tmp_path):
    broken = cut(long_clip, 0.5, tmp_path / "cut.mp4")
    info = probe(str(broken))
    assert info.duration_s == pytest.approx(10.0, abs=0.05)  # the index still claims it all
    timeline = DecodedTimeline()
    batches = list(file_batches(str(broken), "cut", SamplingConfig(fps=5, batch_size=4), timeline=timeline))
    last_t = float(batches[-1].times[-1])
    assert 1.0 < last_t < 8.0  # decoding stopped well before the claimed end
    # the decoded timeline ends with the last decoded source frame (25 frames/s)
    assert timeline.end_s == pytest.approx(timeline.frames / 25, abs=1e-6)
    assert last_t < timeline.end_s <= last_t + 0.2 + 1e-6

    # the report of what was analysed: its duration and an appearance running to the end
    chain = StageChain(None, 5)
    for b in batches:
        results = empty_results(b)
        for r in results:
            r.detections.append(Detection(label="x", score=0.9, detector="test"))
        chain.push(b, [results])
    chain.finish()
    report = chain.report("cut", analysed_duration(info.duration_s, timeline))
    assert report.duration_s == pytest.approx(timeline.end_s)
    assert report.frames_analysed == sum(len(b) for b in batches)
    (appearance,) = report.brands["x"].appearances
    assert appearance.start == 0 and appearance.end <= report.duration_s + 1e-6


def test_a_file_cut_before_any_frame_is_an_error_not_an_empty_analysis(long_clip, tmp_path):
    from media_ray.sources import SourceError

    broken = cut(long_clip, 0.002, tmp_path / "stub.mp4")
    with pytest.raises(SourceError):
        probe(str(broken))


# rotation -------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def coded_clip(tmp_path_factory):
    """A W x H clip, black with a red square in the top-left corner of the coded picture."""
    path = tmp_path_factory.mktemp("rot") / "coded.mp4"
    ffmpeg(
        "-f", "lavfi",
        "-i", f"color=c=black:s={W}x{H}:r=10:d=1,drawbox=x=0:y=0:w={SQUARE_W}:h={SQUARE_H}:color=red:t=fill",
        "-c:v", "libx264", "-pix_fmt", "yuv444p", "-qp", "0", str(path),
    )  # fmt: skip
    return path


def rotated(coded, rotate: int, folder):
    """The same video with phone-style rotation metadata (a display matrix)."""
    out = folder / f"rot{rotate}.mp4"
    ffmpeg("-i", str(coded), "-c", "copy", "-metadata:s:v:0", f"rotate={rotate}", str(out))
    return out


def ffmpeg_upright(path, width: int, height: int) -> np.ndarray:
    """The first frame as the ffmpeg CLI shows it (it applies the display matrix itself)."""
    raw = subprocess.run(
        ["ffmpeg", "-loglevel", "error", "-i", str(path), "-frames:v", "1", "-f", "rawvideo", "-pix_fmt", "rgb24", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(raw, np.uint8).reshape(height, width, 3)


def red(rgb: np.ndarray) -> np.ndarray:
    return (rgb[..., 0] > 150) & (rgb[..., 1] < 100) & (rgb[..., 2] < 100)


def box_of(mask: np.ndarray) -> tuple[int, int, int, int]:
    ys, xs = np.nonzero(mask)
    return int(xs.min()), int(ys.min()), int(xs.max()) + 1, int(ys.max()) + 1


@pytest.mark.parametrize("rotate", [90, 180, 270])
def test_a_rotated_video_is_decoded_upright_as_ffmpeg_shows_it(coded_clip, tmp_path, rotate):
    clip = rotated(coded_clip, rotate, tmp_path)
    info = probe(str(clip))
    upright_w, upright_h = (H, W) if rotate % 180 else (W, H)
    assert (info.width, info.height) == (upright_w, upright_h)
    assert info.rotation % 360 in (90, 180, 270)

    frames = list(decode(str(clip), 10))
    assert len(frames) == 10
    assert all(f.rgb.shape == (upright_h, upright_w, 3) and f.rgb.flags.c_contiguous for f in frames)
    reference = ffmpeg_upright(clip, upright_w, upright_h)
    ours = red(frames[0].rgb)
    theirs = red(reference)
    # the square covers the same pixels as in ffmpeg's own upright picture
    assert (ours & theirs).sum() >= 0.95 * theirs.sum() and (ours ^ theirs).sum() <= 0.05 * theirs.sum()
    # and it lies in a corner other than the coded top-left, with its sides turned as the frame was
    x0, y0, x1, y1 = box_of(ours)
    assert (x0, y0) != (0, 0)
    assert {x1 - x0, y1 - y0} == {SQUARE_W, SQUARE_H}
    assert (x1 - x0 == SQUARE_H) == bool(rotate % 180)


def test_rotate_90_puts_the_top_left_square_where_a_quarter_turn_puts_it(coded_clip, tmp_path):
    clip = rotated(coded_clip, 90, tmp_path)
    frame = next(decode(str(clip), 10))
    turns = probe(str(clip)).rotation // 90 % 4
    # a counter-clockwise quarter turn takes the top-left corner to the bottom-left, clockwise to the top-right
    expected = (0, W - SQUARE_W, SQUARE_H, W) if turns == 1 else (H - SQUARE_H, 0, H, SQUARE_W)
    assert box_of(red(frame.rgb)) == expected


def test_an_unrotated_video_is_left_as_coded(coded_clip):
    info = probe(str(coded_clip))
    assert (info.width, info.height, info.rotation) == (W, H, 0)
    frame = next(decode(str(coded_clip), 10))
    assert box_of(red(frame.rgb)) == (0, 0, SQUARE_W, SQUARE_H)
