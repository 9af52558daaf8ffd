"""An analysis in this process, written as `analyze` writes it (frames.jsonl, report.json and
the pages), for the tests of what is made from it without Ray."""

from __future__ import annotations

import json
from pathlib import Path

import av
import numpy as np

from media_ray.catalog import BrandCatalog
from media_ray.chain import StageChain, file_batches, run_local
from media_ray.config import MediaRayConfig
from media_ray.detectors import create
from media_ray.exposure import ExposureReport
from media_ray.output import AnalysisWriter
from media_ray.sources import probe


def analyse_here(
    clip: Path,
    logos: Path,
    out: Path,
    config: MediaRayConfig | None = None,
    detectors: tuple[str, ...] = ("reference",),
) -> ExposureReport:
    """`clip` analysed with `detectors` through the stage chain into `out`, pages included."""
    config = config or MediaRayConfig()
    catalog = BrandCatalog.from_folder(logos)
    chain = StageChain.for_files(config, catalog)
    found = [create(name, catalog, config.params_for(name)) for name in detectors]
    batches = file_batches(str(clip), clip.stem, config.sampling, shots=config.shots)
    with AnalysisWriter(out, pages=config.report) as writer:
        for r in run_local(batches, found, chain):
            writer.write(r)
        report = chain.report(str(clip), probe(str(clip)).duration_s)
        writer.finish(report)
    return report


def read_records(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def edge_points(box, width: int, height: int) -> tuple[np.ndarray, np.ndarray]:
    """(ys, xs) of points along a box's four edges, inside the frame."""
    x0, y0, x1, y1 = (int(round(v)) for v in box)
    xs = np.arange(x0 + 3, x1 - 2, 2)
    ys = np.arange(y0 + 3, y1 - 2, 2)
    pts_x = np.concatenate([xs, xs, np.full(len(ys), x0), np.full(len(ys), x1)])
    pts_y = np.concatenate([np.full(len(xs), y0), np.full(len(xs), y1), ys, ys])
    keep = (pts_x >= 0) & (pts_x < width) & (pts_y >= 0) & (pts_y < height)
    return pts_y[keep], pts_x[keep]


def drawn_fraction(rgb: np.ndarray, box, colour, tolerance: int = 60) -> float:
    """The fraction of points along the box's edges that are the colour (within `tolerance` on
    every channel): near 1 where the box is drawn, low where it is not."""
    ys, xs = edge_points(box, rgb.shape[1], rgb.shape[0])
    diff = np.abs(rgb[ys, xs].astype(int) - np.array(colour)[None, :]).max(axis=1)
    return float((diff <= tolerance).mean()) if len(diff) else 0.0


def decoded_frames(path: Path) -> list[np.ndarray]:
    """Every frame of a video, RGB, in order (PyAV)."""
    with av.open(str(path)) as container:
        return [f.to_ndarray(format="rgb24") for f in container.decode(container.streams.video[0])]


def assert_boxes_drawn_as_recorded(video_frames: list[np.ndarray], records: list[dict], colours: dict) -> None:
    """At each record's frame, each of its boxes is drawn in its brand's colour; at a record
    without detections, no brand's box (any box the brand had in the video) is."""
    boxes_of: dict[str, list] = {}
    for r in records:
        for d in r["detections"]:
            if d["box"] is not None:
                boxes_of.setdefault(d["label"], []).append(d["box"])
    checked_on = checked_off = 0
    for r in records:
        rgb = video_frames[r["frame"]]
        if r["detections"]:
            for d in r["detections"]:
                if d["box"] is not None:
                    assert drawn_fraction(rgb, d["box"], colours[d["label"]]) >= 0.8, (r["t"], d)
                    checked_on += 1
        else:
            for label, boxes in boxes_of.items():
                for box in (boxes[0], boxes[len(boxes) // 2], boxes[-1]):
                    assert drawn_fraction(rgb, box, colours[label]) <= 0.2, (r["t"], label, box)
                    checked_off += 1
    assert checked_on and checked_off
