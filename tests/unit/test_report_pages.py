"""report.csv, report.html with its thumbnails, and the annotated video, made from an analysis
of the sample clip in this process (the reference detector, the stage chain, AnalysisWriter)."""

from __future__ import annotations

import csv
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest
from analysis_support import analyse_here, assert_boxes_drawn_as_recorded, decoded_frames, drawn_fraction, read_records
from cli_support import assert_one_line_error, media_ray

from media_ray.annotate import brand_colours, grab_frames
from media_ray.config import MediaRayConfig
from media_ray.config_report import ReportConfig
from media_ray.report_pages import CSV_FIELDS, write_annotated
from media_ray.sources import decode


@pytest.fixture(scope="module")
def analysed(sample, tmp_path_factory):
    out = tmp_path_factory.mktemp("pages")
    config = MediaRayConfig(exposure={"rate_card": {"currency": "EUR", "per_30s": 600}})
    report = analyse_here(Path(sample["clip"]), Path(sample["logos"]), out, config)
    assert report.brands  # the sample's brands were found
    return out, report


def test_report_json_keeps_its_fields_and_adds_the_valuation(analysed):
    out, _ = analysed
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"video", "duration_s", "fps_analysed", "frames_analysed", "cuts", "brands"}
    for brand in report["brands"].values():
        assert {"name", "exposure_s", "appearances", "max_share", "mean_score"} <= set(brand)
        assert {"solus_s", "quality", "quality_s", "media_value", "rate", "position_s"} <= set(brand)
        assert brand["rate"] == {"currency": "EUR", "per_30s": 600.0}
        for a in brand["appearances"]:
            assert {"start", "end", "max_score", "mean_share"} <= set(a)
            assert 0 <= a["quality"] <= 1 and 0 <= a["clarity"] <= 1 and 0 <= a["solus_s"] <= a["end"] - a["start"]
            assert a["position"] in ("centre", "edge", "corner") and a["start"] <= a["best"]["t"] < a["end"]
        assert brand["media_value"] == pytest.approx(sum(a["media_value"] for a in brand["appearances"]), abs=0.01)


def test_solus_time_is_the_time_no_other_brand_is_on_screen(analysed, sample):
    _, report = analysed
    gt = sample["gt"]
    step = 1 / report.fps_analysed
    for bid, brand in report.brands.items():
        alone = 0.0
        for k in range(int(round(report.duration_s * report.fps_analysed))):
            objects = gt["frames"][round(k * step * gt["fps"])]["objects"]
            shown = {o["brand"] for o in objects if o["visible_frac"] >= 0.5}
            alone += step if shown == {bid} else 0.0
        assert brand.solus_s == pytest.approx(alone, abs=3 * step)
        assert brand.solus_s < brand.exposure_s  # the sample's brands share the screen for a while


def test_report_csv_has_a_row_per_appearance_with_its_valuation(analysed):
    out, report = analysed
    with open(out / "report.csv", newline="") as f:
        reader = csv.DictReader(f)
        rows = list(reader)
    assert tuple(reader.fieldnames) == CSV_FIELDS
    assert len(rows) == sum(len(b.appearances) for b in report.brands.values())
    assert [float(r["start"]) for r in rows] == sorted(float(r["start"]) for r in rows)
    for r in rows:
        a = report.brands[r["brand"]].appearances[int(r["appearance"]) - 1]
        assert float(r["start"]) == a.start and float(r["quality"]) == pytest.approx(a.quality, abs=1e-4)
        assert float(r["media_value"]) == pytest.approx(a.media_value) and r["currency"] == "EUR"
        assert r["position"] == a.position and float(r["solus_s"]) == pytest.approx(a.solus_s)
        assert (out / r["thumbnail"]).is_file()


def test_each_thumbnail_is_the_best_frame_of_its_appearance_with_its_box(analysed):
    out, report = analysed
    colours = brand_colours(report.brands)
    video = report.video
    for bid, brand in report.brands.items():
        for k, a in enumerate(brand.appearances):
            thumb = cv2.cvtColor(cv2.imread(str(out / "thumbs" / f"{bid}-{k + 1:03d}.jpg")), cv2.COLOR_BGR2RGB)
            h, w = thumb.shape[:2]
            scale = w / 640
            box = [v * scale for v in a.best.box]
            assert drawn_fraction(thumb, box, colours[bid]) >= 0.7
            # the picture is the frame at the best frame's time, not another
            later = round((a.best.t + 3.0) % report.duration_s, 6)
            frames = grab_frames(video, [a.best.t, later])
            same, other = (cv2.resize(frames[t], (w, h), interpolation=cv2.INTER_AREA) for t in (a.best.t, later))
            assert _difference(thumb, same) < 0.5 * _difference(thumb, other)


def _difference(a: np.ndarray, b: np.ndarray) -> float:
    return float(np.abs(a.astype(int) - b.astype(int)).mean())


def test_grabbed_frames_are_the_frames_the_analysis_decoded(sample):
    decoded = {round(f.t, 6): f.rgb for f in decode(str(sample["clip"]), 5.0)}
    times = [0.0, 3.4, 7.2, 11.8]
    grabbed = grab_frames(str(sample["clip"]), times)
    for t in times:
        assert np.array_equal(grabbed[t], decoded[t])


def test_report_html_is_self_contained_with_a_timeline_bars_and_thumbnails(analysed):
    out, report = analysed
    page = (out / "report.html").read_text()
    assert not re.search(r"(?:src|href)\s*=\s*[\"']?(?:https?:)?//", page)  # nothing fetched from elsewhere
    assert "<script" not in page and "<link" not in page
    sources = re.findall(r'<img[^>]+src="([^"]+)"', page)
    assert len(sources) == sum(len(b.appearances) for b in report.brands.values())
    assert all((out / s).is_file() for s in sources)
    assert page.count('class="appearance"') == 2 * len(sources)  # a timeline bar and a figure each
    assert all(f'data-brand="{bid}"' in page for bid in report.brands)


@pytest.mark.parametrize(
    ("codecs", "used"),
    [(["libx264", "mpeg4"], "libx264"), (["no-such-encoder", "mpeg4"], "mpeg4")],
    ids=["h264", "mpeg4"],
)
def test_the_annotated_video_has_every_frame_and_the_boxes_of_frames_jsonl(analysed, sample, tmp_path, codecs, used):
    out, report = analysed
    config = ReportConfig(annotate={"codecs": codecs})
    path, codec, written = write_annotated(report, out, tmp_path / "annotated.mp4", config)
    frames = decoded_frames(path)
    source_frames = sum(1 for _ in decode(str(sample["clip"]), 1e6))
    assert len(frames) == written == source_frames and codec == used
    assert_boxes_drawn_as_recorded(frames, read_records(out / "frames.jsonl"), brand_colours(report.brands))


def test_annotate_with_several_videos_is_refused_in_one_line(sample, tmp_path):
    proc = media_ray(
        "analyze", sample["clip"], sample["clip"], "--brands", sample["logos"], "--out", tmp_path / "o",
        "--annotate", tmp_path / "a.mp4",
    )  # fmt: skip
    assert_one_line_error(proc, "--annotate", "single video")
    proc = media_ray(
        "analyze", sample["clip"], "--brands", sample["logos"], "--out", tmp_path / "o", "--annotate", sample["clip"]
    )
    assert_one_line_error(proc, "--annotate", "being analysed")
