"""`media-ray add-references`: crops of footage added to a catalogue's brands."""

from __future__ import annotations

import json

import av
import cv2
import numpy as np
import pytest

from media_ray.app.cli import main
from media_ray.catalog import BrandCatalog
from media_ray.references import Candidate, ReferenceSettings, add_references, choose, from_boxes, from_frames

FPS, SECONDS, W, H = 10, 4, 160, 120
BOX = (40, 30, 100, 90)  # where the square is drawn, every frame


def _shade(i: int) -> int:
    """The square's grey level in frame i: it changes over time, so a crop tells its frame."""
    return 40 + 5 * i


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "square.mp4"
    with av.open(str(path), "w") as out:
        vs = out.add_stream("libx264", rate=FPS)
        vs.width, vs.height, vs.pix_fmt = W, H, "yuv420p"
        vs.options = {"crf": "10"}
        for i in range(FPS * SECONDS):
            img = np.full((H, W, 3), 230, np.uint8)
            x0, y0, x1, y1 = BOX
            img[y0:y1, x0:x1] = _shade(i)
            for p in vs.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
                out.mux(p)
        for p in vs.encode():
            out.mux(p)
    return path


def _catalog(folder, brands=("acme", "globex")):
    folder.mkdir()
    for k, b in enumerate(brands):
        mark = np.zeros((16, 24, 4), np.uint8)
        mark[..., 2 - k] = 255
        mark[..., 3] = 255
        cv2.imwrite(str(folder / f"{b}.png"), mark)
    (folder / "brands.json").write_text(json.dumps([{"id": b, "name": b.title()} for b in brands]))
    return folder


def _frames_jsonl(path, box=BOX, score=0.9, label="acme"):
    with path.open("w") as f:
        for i in range(FPS * SECONDS):
            det = {"label": label, "score": score, "box": list(box), "detector": "reference"}
            f.write(json.dumps({"t": i / FPS, "frame": i, "detections": [det]}) + "\n")
    return path


def test_detections_become_references_spread_over_time(clip, tmp_path):
    logos = _catalog(tmp_path / "logos")
    original = cv2.imread(str(logos / "acme.png"), cv2.IMREAD_UNCHANGED)
    found = from_frames(_frames_jsonl(tmp_path / "frames.jsonl"), 0.5)
    settings = ReferenceSettings(per_brand=3, margin=0.0, min_gap_s=1.0)
    written = add_references(clip, found, logos, settings)
    assert list(written) == ["acme"] and len(written["acme"]) == 3
    assert not (logos / "acme.png").exists() and (logos / "acme" / "acme.png").exists()
    cat = BrandCatalog.from_folder(logos)
    acme = cat["acme"]
    assert len(acme.images) == 4 and np.array_equal(acme.image[..., 3], original[..., 3])
    assert acme.image.shape == original.shape  # the given reference stays first
    assert len(cat["globex"].images) == 1 and cat["globex"].name == "Globex"
    x0, y0, x1, y1 = BOX
    shades = []
    for crop in acme.images[1:]:
        assert crop.shape == (y1 - y0, x1 - x0, 4)
        shades.append(float(np.median(crop[..., 0])))
    frames = sorted(min(range(FPS * SECONDS), key=lambda i: abs(_shade(i) - s)) for s in shades)
    assert all(b - a >= FPS for a, b in zip(frames, frames[1:])), frames  # at least 1 s apart


def test_low_scores_small_boxes_and_repeats_are_left_out(clip, tmp_path):
    logos = _catalog(tmp_path / "logos")
    assert from_frames(_frames_jsonl(tmp_path / "low.jsonl", score=0.3), 0.5) == []
    small = from_frames(_frames_jsonl(tmp_path / "small.jsonl", box=(40, 30, 50, 90)), 0.5)
    assert small and choose(small, ReferenceSettings()) == []
    found = from_frames(_frames_jsonl(tmp_path / "f.jsonl"), 0.5)
    first = add_references(clip, found, logos, ReferenceSettings(per_brand=2))
    before = {p: p.read_bytes() for p in first["acme"]}
    second = add_references(clip, found, logos, ReferenceSettings(per_brand=2))
    assert not set(second["acme"]) & set(before)  # never overwritten: new names
    assert all(p.read_bytes() == data for p, data in before.items())
    assert len(BrandCatalog.from_folder(logos)["acme"].images) == 5


def test_spreading_prefers_distant_moments_and_keeps_the_gap():
    cands = [Candidate(t / 10, "acme", BOX, 0.9 - t / 1000) for t in range(40)]
    picked = choose(cands, ReferenceSettings(per_brand=10, min_gap_s=1.0))
    times = [c.t for c in picked]
    assert len(times) == 4 and all(b - a >= 1.0 - 1e-9 for a, b in zip(times, times[1:]))
    assert min(times) == 0.0 and max(times) == pytest.approx(3.9)


def test_user_drawn_boxes_through_the_command(clip, tmp_path, capsys):
    logos = _catalog(tmp_path / "logos")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(
        json.dumps([{"t": 0.5, "brand": "globex", "box": list(BOX)}, {"t": 3.0, "brand": "globex", "box": list(BOX)}])
    )
    assert len(from_boxes(boxes)) == 2
    assert main(["add-references", str(clip), "--boxes", str(boxes), "--brands", str(logos)]) == 0
    assert "globex: 2 reference(s) added" in capsys.readouterr().out
    assert len(BrandCatalog.from_folder(logos)["globex"].images) == 3


@pytest.mark.parametrize(
    "case",
    ["unknown brand", "both inputs", "neither input", "bad boxes", "bad margin", "no video"],
)
def test_bad_input_is_one_line_and_status_2(clip, tmp_path, capsys, case):
    logos = _catalog(tmp_path / "logos")
    boxes = tmp_path / "boxes.json"
    boxes.write_text(json.dumps([{"t": 0.5, "brand": "initech", "box": list(BOX)}]))
    frames = _frames_jsonl(tmp_path / "frames.jsonl")
    argv = {
        "unknown brand": [str(clip), "--boxes", str(boxes)],
        "both inputs": [str(clip), str(frames), "--boxes", str(boxes)],
        "neither input": [str(clip)],
        "bad boxes": [str(clip), "--boxes", str(frames)],
        "bad margin": [str(clip), str(frames), "--margin", "-1"],
        "no video": [str(tmp_path / "nope.mp4"), str(frames)],
    }[case]
    assert main(["add-references", *argv, "--brands", str(logos)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("media-ray: error: "), err
    assert sorted(p.name for p in logos.iterdir()) == ["acme.png", "brands.json", "globex.png"]
