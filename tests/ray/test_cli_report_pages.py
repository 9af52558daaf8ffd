"""`media-ray analyze --annotate` as a user runs it: report.csv and report.html beside report.json,
and the video with its boxes drawn, playable, its boxes those of frames.jsonl."""

from __future__ import annotations

import csv
import json

import pytest
from analysis_support import assert_boxes_drawn_as_recorded, decoded_frames
from cli_support import media_ray, read_frames

from media_ray.annotate import brand_colours
from media_ray.sources import decode

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_analyze_writes_the_pages_and_an_annotated_video_whose_boxes_are_those_of_frames_jsonl(sample, tmp_path):
    out, annotated = tmp_path / "out", tmp_path / "annotated.mp4"
    proc = media_ray(
        "analyze", sample["clip"], "--brands", sample["logos"], "--detectors", "reference", "--fps", 5,
        "--out", out, "--annotate", annotated, "--no-progress",
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    wrote = [ln for ln in proc.stderr.splitlines() if ln.startswith("wrote ")]
    assert len(wrote) == 1 and all(str(p) in wrote[0] for p in (out / "report.html", out / "report.csv", annotated))
    report = json.loads((out / "report.json").read_text())
    # the ingest measured the marks' sharpness in the frames before the results left them
    assert all(a["sharpness"] is not None for b in report["brands"].values() for a in b["appearances"])
    with open(out / "report.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == sum(len(b["appearances"]) for b in report["brands"].values())
    assert all((out / r["thumbnail"]).is_file() for r in rows)
    assert "<svg" in (out / "report.html").read_text()
    # every source frame is in the annotated video, and it decodes to the end
    frames = decoded_frames(annotated)
    assert len(frames) == sum(1 for _ in decode(str(sample["clip"]), 1e6))
    assert_boxes_drawn_as_recorded(frames, read_frames(out / "frames.jsonl"), brand_colours(report["brands"]))
