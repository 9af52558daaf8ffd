"""The `media-ray` command as a user runs it: a subprocess, a real local Ray, real decoding."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys

import av
import numpy as np
import pytest

from media_ray.boxes import iou


def media_ray(*args, cwd=None, timeout=300):
    return subprocess.run(
        [sys.executable, "-m", "media_ray.app.cli", *map(str, args)],
        capture_output=True,
        text=True,
        cwd=cwd,
        timeout=timeout,
    )


def assert_one_line_error(proc, *words):
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("media-ray: error: ") and "Traceback" not in proc.stderr
    for w in words:
        assert w in lines[0]


@pytest.fixture(scope="module")
def audio_only(tmp_path_factory):
    path = tmp_path_factory.mktemp("audio") / "tone.m4a"
    with av.open(str(path), "w") as out:
        stream = out.add_stream("aac", rate=16000)
        samples = (np.sin(np.arange(16000) / 16000 * 2 * np.pi * 440) * 0.3).astype(np.float32)
        frame = av.AudioFrame.from_ndarray(samples[None, :], format="fltp", layout="mono")
        frame.sample_rate = 16000
        for packet in stream.encode(frame):
            out.mux(packet)
        for packet in stream.encode():
            out.mux(packet)
    return path


def test_missing_video_is_one_line_and_status_2(sample, tmp_path):
    proc = media_ray("analyze", tmp_path / "nope.mp4", "--brands", sample["logos"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "nope.mp4", "no such file")


def test_unreadable_video_is_one_line_and_status_2(sample, tmp_path):
    bad = tmp_path / "broken.mp4"
    bad.write_bytes(b"\x00\x01 this is not a video" * 50)
    proc = media_ray("analyze", bad, "--brands", sample["logos"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "broken.mp4", "cannot open")


def test_file_without_a_video_stream_is_one_line_and_status_2(sample, tmp_path, audio_only):
    proc = media_ray("analyze", audio_only, "--brands", sample["logos"], "--out", tmp_path / "o")
    assert_one_line_error(proc, "tone.m4a", "no video stream")


def test_empty_brand_folder_is_one_line_and_status_2(sample, tmp_path):
    (tmp_path / "logos").mkdir()
    proc = media_ray("analyze", sample["clip"], "--brands", tmp_path / "logos", "--out", tmp_path / "o")
    assert_one_line_error(proc, "holds no images")


def test_unreadable_brand_image_is_one_line_and_status_2(sample, tmp_path):
    (tmp_path / "logos").mkdir()
    (tmp_path / "logos" / "acme.png").write_bytes(b"not a png")
    proc = media_ray("analyze", sample["clip"], "--brands", tmp_path / "logos", "--out", tmp_path / "o")
    assert_one_line_error(proc, "cannot read brand image", "acme.png")


def test_missing_brand_folder_is_one_line_and_status_2(sample, tmp_path):
    proc = media_ray("analyze", sample["clip"], "--brands", tmp_path / "none", "--out", tmp_path / "o")
    assert_one_line_error(proc, "does not exist")


def test_unknown_detector_is_one_line_and_status_2(sample, tmp_path):
    proc = media_ray(
        "analyze",
        sample["clip"],
        "--brands",
        sample["logos"],
        "--detectors",
        "reference,yolo",
        "--out",
        tmp_path / "o",
    )
    assert_one_line_error(proc, "unknown detector 'yolo'")


def test_explicit_clip_model_that_cannot_load_is_one_line_and_status_2(sample, tmp_path):
    proc = media_ray(
        "analyze",
        sample["clip"],
        "--brands",
        sample["logos"],
        "--detectors",
        "clip",
        "--clip-model",
        tmp_path / "no-model",
        "--out",
        tmp_path / "o",
    )
    assert_one_line_error(proc, "clip", "--clip-model")


def test_explicit_clip_model_with_broken_weights_is_one_line_and_status_2(sample, tmp_path, tiny_clip_dir):
    broken = tmp_path / "broken-clip"
    shutil.copytree(tiny_clip_dir, broken)
    for weights in broken.glob("*.safetensors"):
        weights.write_bytes(b"garbage")
    proc = media_ray(
        "analyze",
        sample["clip"],
        "--brands",
        sample["logos"],
        "--detectors",
        "clip",
        "--clip-model",
        broken,
        "--out",
        tmp_path / "o",
    )
    assert_one_line_error(proc, "clip")


def read_frames(path):
    rows = [json.loads(line) for line in path.read_text().splitlines()]
    for r in rows:
        assert set(r) == {"t", "frame", "detections"}
        for d in r["detections"]:
            assert set(d) == {"label", "score", "box", "detector"} and 0 <= d["score"] <= 1
    assert [r["t"] for r in rows] == sorted(r["t"] for r in rows)
    return rows


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
    assert set(report) == {"video", "duration_s", "fps_analysed", "frames_analysed", "brands"}
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


def test_analyze_runs_clip_end_to_end_from_a_local_folder_and_several_videos_go_to_their_own_folders(
    sample, tmp_path, tiny_clip_dir
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
        tiny_clip_dir,
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
        assert detectors <= {"reference", "shape", "clip", "tracking"}
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


def test_bench_detectors_measures_each_detector_and_the_set(tmp_path):
    """The benchmark runs on its generated 1280x720 clip and 10-brand catalogue and prints a
    rate for decoding, each detector of the default set, and the set side by side."""
    proc = media_ray("bench-detectors", "--seconds", "2", "--fps", "3", "--batch-size", "2")
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert "(1280x720)" in lines[0] and "10 brands" in lines[0]
    rates = {
        name: float(rate)
        for name, rate in (re.match(r"(.+?)\s+([\d.]+) frames/s", line).groups() for line in lines[1:])
    }
    assert set(rates) == {"decode", "reference alone", "shape alone", "visual alone", "set, side by side"}
    assert all(r > 0 for r in rates.values()), rates
