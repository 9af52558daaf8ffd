"""`media-ray analyze --detectors cloud_vision` through Ray: its Serve replica (placed on the
cloud tier first, here on the one unlabelled node) calls a local fake of Vision's REST endpoint,
its request budget holds, and skipped frames are written to signals.jsonl."""

from __future__ import annotations

import json

import av
import numpy as np
import pytest
import yaml
from cli_support import media_ray, read_frames
from vision_fake import MARK_BOX, MARK_RGB, FakeVision

pytestmark = [pytest.mark.slow, pytest.mark.ray]
pytest.importorskip("google.cloud.vision")


def write_clip(path, seconds: int = 2, rate: int = 10) -> None:
    """1280x720 grey frames with the fake's mark at MARK_BOX."""
    with av.open(str(path), "w") as out:
        stream = out.add_stream("libx264", rate=rate)
        stream.width, stream.height, stream.pix_fmt = 1280, 720, "yuv420p"
        rgb = np.full((720, 1280, 3), 90, np.uint8)
        x0, y0, x1, y1 = MARK_BOX
        rgb[y0:y1, x0:x1] = MARK_RGB
        for _ in range(seconds * rate):
            for packet in stream.encode(av.VideoFrame.from_ndarray(rgb, format="rgb24")):
                out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)


def test_analyze_with_cloud_vision_maps_its_logos_and_keeps_to_the_budget(tmp_path):
    fake = FakeVision([("ACME Corporation", 0.9), ("A Brand Not In The Catalogue", 0.95)])
    try:
        clip, logos = tmp_path / "mark.mp4", tmp_path / "logos"
        write_clip(clip)
        logos.mkdir()
        (logos / "brands.json").write_text(json.dumps({"acme-co": {"name": "Acme", "aliases": ["Acme Corporation"]}}))
        config = tmp_path / "config.yaml"
        config.write_text(
            yaml.safe_dump(
                {
                    "detectors": {
                        "cloud_vision": {"endpoint": fake.endpoint, "credentials": "anonymous", "frames_per_day": 4}
                    },
                    "tracking": {"enabled": False},  # each frame as the detector found it
                }
            )
        )
        out = tmp_path / "out"
        proc = media_ray(
            "analyze", clip, "--brands", logos, "--detectors", "cloud_vision", "--fps", 5, "--config", config,
            "--out", out, "--no-progress",
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr
    finally:
        fake.close()
    rows = read_frames(out / "frames.jsonl")
    assert len(rows) == 10
    found = [r for r in rows if r["detections"]]
    assert len(found) == 4 == len(fake.images)  # the budget: 4 frames a day sent, the rest skipped
    for r in found:
        [d] = r["detections"]
        assert d["label"] == "acme-co" and d["detector"] == "cloud_vision"
        assert d["box"] == pytest.approx(MARK_BOX, abs=3)
    signals = [json.loads(line) for line in (out / "signals.jsonl").read_text().splitlines()]
    assert [s["cloud_vision"] for s in signals] == [{"skipped": "day"}] * 6
    assert {s["t"] for s in signals} == {r["t"] for r in rows if not r["detections"]}
