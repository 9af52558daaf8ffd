"""The `media-ray` command's answers to mistakes: one line, exit status 2, nothing started."""

from __future__ import annotations

import shutil

import av
import numpy as np
import pytest
from cli_support import assert_one_line_error, media_ray


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


@pytest.mark.slow  # loads torch and a CLIP model in the subprocess
def test_explicit_clip_model_with_broken_weights_is_one_line_and_status_2(sample, tmp_path, tiny_clip_model_dir):
    broken = tmp_path / "broken-clip"
    shutil.copytree(tiny_clip_model_dir, broken)
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
