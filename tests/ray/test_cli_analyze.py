"""`media-ray analyze` as a user runs it: a subprocess, a real local Ray, real decoding."""

from __future__ import annotations

import csv
import json
import re
import shutil
from pathlib import Path

import pytest
from cli_support import media_ray, read_frames

from media_ray.boxes import iou

pytestmark = [pytest.mark.slow, pytest.mark.ray]


def test_analyze_with_the_reference_detector_finds_the_pasted_logos_at_their_times_and_places(sample, tmp_path):
    out = tmp_path / "out"
    proc = media_ray(
        "analyze",
        sample["clip"],
        "--brands",
        sample["logos"],
        "--detectors",
        "reference",
        "--fps",
        5,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    rows = read_frames(out / "frames.jsonl")
    assert len(rows) == 60
    gt = sample["gt"]
    hits = misses = wrong = 0
    for r in rows:
        objects = gt["frames"][round(r["t"] * gt["fps"])]["objects"]
        truth = {o["brand"]: o["bbox_xyxy"] for o in objects if o["visible_frac"] >= 0.99}
        for d in r["detections"]:
            assert d["detector"] == "reference" and d["box"] is not None
            if d["label"] in truth and iou(d["box"], truth[d["label"]]) >= 0.5:
                hits += 1
            elif d["label"] not in {o["brand"] for o in objects}:
                wrong += 1
        misses += sum(1 for b in truth if not any(d["label"] == b for d in r["detections"]))
    assert wrong == 0
    assert hits >= 0.9 * (hits + misses)
    report = json.loads((out / "report.json").read_text())
    assert set(report) == {"video", "duration_s", "fps_analysed", "frames_analysed", "cuts", "brands"}
    assert report["frames_analysed"] == 60 and report["fps_analysed"] == 5
    assert set(report["brands"]) == {"acme", "globex"}
    acme = report["brands"]["acme"]
    assert acme["name"] == "Acme"
    assert [(round(a["start"]), round(a["end"])) for a in acme["appearances"]] == [(1, 6), (8, 11)]
    assert acme["exposure_s"] == pytest.approx(8.0, abs=0.5)
    assert 0 < acme["max_share"] < 0.2 and 0 < acme["mean_score"] <= 1
    # the table on stdout
    assert "Acme (acme)" in proc.stdout and "on screen (s)" in proc.stdout
    assert "remaining" in proc.stderr  # the progress bar
    # the local Ray's dashboard (on by default, on loopback) and its metrics, in one line
    assert re.search(r"^Ray dashboard: http://127\.0\.0\.1:\d+; Ray metrics for Prometheus: http://", proc.stderr, re.M)


def test_analyze_runs_clip_end_to_end_from_a_local_folder_and_several_videos_go_to_their_own_folders(
    sample, tmp_path, tiny_clip_model_dir
):
    second = tmp_path / "second.mp4"
    shutil.copy(sample["clip"], second)
    out = tmp_path / "out"
    proc = media_ray(
        "analyze",
        sample["clip"],
        second,
        "--brands",
        sample["logos"],
        "--clip-model",
        tiny_clip_model_dir,
        "--fps",
        2,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    assert "note:" not in proc.stderr  # clip's weights load from the folder, so it is in the default set
    for name in ("sample", "second"):
        rows = read_frames(out / name / "frames.jsonl")
        assert len(rows) == 24
        detectors = {d["detector"] for r in rows for d in r["detections"]}
        # one detection per logo: where several detectors agree, the best one's is kept;
        # `tracking` marks a box carried over a short miss
        assert detectors <= {"reference", "shape", "ocr", "clip", "tracking"}
        labels = {d["label"] for r in rows for d in r["detections"]}
        assert labels <= {"acme", "globex", "initech"}
        assert any(d["label"] == "acme" and d["box"] for r in rows if 2 <= r["t"] <= 5 for d in r["detections"])
        for r in rows:
            for d in r["detections"]:
                if d["box"] is not None:
                    x0, y0, x1, y1 = d["box"]
                    assert 0 <= x0 < x1 <= 640 and 0 <= y0 < y1 <= 360
        assert (out / name / "report.json").exists() and (out / name / "signals.jsonl").exists()


def test_default_set_without_clip_weights_says_so_in_one_line_and_goes_on(sample, tmp_path):
    out = tmp_path / "out"
    proc = media_ray(
        "analyze",
        sample["clip"],
        "--brands",
        sample["logos"],
        "--clip-model",
        tmp_path / "absent",
        "--fps",
        1,
        "--out",
        out,
    )
    assert proc.returncode == 0, proc.stderr
    notes = [ln for ln in proc.stderr.splitlines() if ln.startswith("note: clip")]
    assert len(notes) == 1 and "--clip-model" in notes[0]
    assert len(read_frames(out / "frames.jsonl")) == 12


def test_analyze_of_a_folder_runs_files_at_once_reports_a_broken_one_and_matches_one_at_a_time(sample, tmp_path):
    folder = tmp_path / "recordings"
    folder.mkdir()
    for k in range(3):
        shutil.copy(sample["clip"], folder / f"rec{k}.mp4")
    (folder / "broken.mp4").write_bytes(b"not a video at all" * 100)

    def analyze(out, *extra):
        return media_ray(
            "analyze", folder, "--brands", sample["logos"], "--detectors", "reference,shape",
            "--fps", 2, "--out", out, *extra,
        )  # fmt: skip

    together = analyze(tmp_path / "together")
    one_by_one = analyze(tmp_path / "serial", "--concurrency", "1")
    for proc, out in ((together, tmp_path / "together"), (one_by_one, tmp_path / "serial")):
        assert proc.returncode == 1, proc.stderr  # one file failed; the others were analysed
        failed = [ln for ln in proc.stderr.splitlines() if ln.startswith("media-ray: failed:")]
        assert len(failed) == 1 and "broken.mp4" in failed[0]
        assert "3 of 4 videos analysed" in proc.stderr
        with open(out / "summary.csv", newline="") as f:
            rows = {Path(r["video"]).name: r for r in csv.DictReader(f)}
        assert set(rows) == {"broken.mp4", "rec0.mp4", "rec1.mp4", "rec2.mp4"}
        assert rows["broken.mp4"]["status"] == "failed" and rows["broken.mp4"]["error"]
        for k in range(3):
            row = rows[f"rec{k}.mp4"]
            assert row["status"] == "done" and row["frames_analysed"] == "24" and not row["error"]
            assert "acme" in row["brands_found"].split(";") and "acme=" in row["exposure_s"]
            assert (out / f"rec{k}" / "report.json").exists()
    at_once = re.search(r"(\d+) at once", together.stderr)
    assert at_once and int(at_once.group(1)) >= 2 and "1 at once" in one_by_one.stderr
    assert "job: 4/4 files" in together.stderr  # the job's bar
    for k in range(3):  # the same results whether files share the detectors or not
        name = f"rec{k}/frames.jsonl"
        assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "serial" / name).read_bytes()
        assert (tmp_path / "together" / name).read_bytes() == (tmp_path / "together" / "rec0/frames.jsonl").read_bytes()


def test_analyze_takes_a_list_file_and_a_glob(sample, tmp_path):
    folder = tmp_path / "a"
    folder.mkdir()
    shutil.copy(sample["clip"], folder / "one.mp4")
    shutil.copy(sample["clip"], folder / "two.mp4")
    listing = folder / "list.txt"
    listing.write_text("# recordings to analyse\none.mp4\n\ntwo.mp4\n")
    out = tmp_path / "out"
    proc = media_ray("analyze", f"@{listing}", "--brands", sample["logos"], "--detectors", "reference",
                     "--fps", 1, "--out", out, "--no-progress")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert len(read_frames(out / "one" / "frames.jsonl")) == 12 and len(read_frames(out / "two" / "frames.jsonl")) == 12
    missing = media_ray("analyze", str(folder / "*.mkv"), "--brands", sample["logos"], "--out", out)
    assert missing.returncode == 2 and "matches no file" in missing.stderr
